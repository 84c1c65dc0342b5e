// The reference Monte Carlo backend (sim/reference.hpp, mc/engine.hpp).
// Tags: [sim] every test here; [gradcheck] backward against central differences;
// [repro] seeds and threads; [stochastic] Monte Carlo against the theory engine in
// standard errors (fixed seeds, never retried); [cli] the `simulate` subcommand.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/rng.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "shared/cli_run.hpp"
#include "sim/reference.hpp"
#include "theory/engine.hpp"

using sigprop::StackSpec;
using sigprop::sim::MonteCarloEngine;
using sigprop::sim::ReferenceStack;
using sigprop::sim::SimSettings;

namespace {

// Monte Carlo settings with these fields and the others at their defaults.
SimSettings sim_settings(int samples, std::uint64_t seed, const std::string& backend, int threads,
                         const std::string& precision = "double") {
  SimSettings s;
  s.samples = samples;
  s.seed = seed;
  s.backend = backend;
  s.threads = threads;
  s.precision = precision;
  return s;
}

// A small stack for derivative checks: T = 3, d = 8, H = 2 (dh = 4), R = 16.
StackSpec tiny(const std::vector<std::string>& sets) {
  StackSpec s;
  s.depth = 3;
  s.tokens = 3;
  s.width = 8;
  s.heads = 2;
  s.mlp_ratio = 2;
  s.sigma_b2 = 0.1;  // exercise the biases
  s.rho0 = 0.3;
  for (auto& a : sets) sigprop::apply_override(s, a);
  s.validate();
  return s;
}

std::vector<double> normals(size_t n, uint64_t seed, uint64_t stream) {
  std::vector<double> v(n);
  sigprop::NormalStream(seed, stream).fill(v.data(), n);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// max_i |J^T dY - central difference of <dY, f(X)>|_i / max_i |J^T dY|_i for block `layer`
// at a random X (so relu's kink is hit with probability ~0).
double block_grad_error(const StackSpec& s, int layer, uint64_t seed) {
  ReferenceStack st(s, seed);
  const size_t n = static_cast<size_t>(s.tokens) * s.width;
  std::vector<double> X = normals(n, seed, 1001), dY = normals(n, seed, 1002);
  for (auto& x : X) x *= 1.3;
  std::vector<double> g = st.block_backward(0, layer, X, dY);
  // Central differences: truncation h^2 f'''/6 ~ 1e-10, round-off eps |f| / h ~ 1e-10;
  // both far below the 1e-6 relative tolerance, which leaves room for large f''' near saturation.
  const double h = 1e-5;
  double worst = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> Xp = X, Xm = X;
    Xp[i] += h;
    Xm[i] -= h;
    double fd = (dot(dY, st.block_forward(0, layer, Xp)) - dot(dY, st.block_forward(0, layer, Xm))) / (2 * h);
    worst = std::max(worst, std::abs(fd - g[i]));
    scale = std::max(scale, std::abs(g[i]));
  }
  return worst / std::max(scale, 1e-300);
}

constexpr double kGradTol = 1e-6;  // relative to max |J^T dY|, see block_grad_error

}  // namespace

TEST_CASE("backward is J^T: every block type, norm placement and norm type", "[sim][gradcheck]") {
  const char* blocks[] = {"attn+mlp", "attn", "mlp", "dense"};
  const char* norms[] = {"pre", "post", "none", "lns", "deepnorm"};
  const char* types[] = {"layernorm", "rmsnorm"};
  const char* acts[] = {"gelu", "tanh", "silu", "erf", "relu", "linear"};
  int k = 0;
  for (auto* b : blocks)
    for (auto* n : norms)
      for (auto* t : types) {
        const char* a = acts[k++ % 6];
        std::vector<std::string> sets{fmt::format("stack.blocks={}", b), fmt::format("stack.norm={}", n),
                                      fmt::format("stack.norm_type={}", t), fmt::format("stack.activation={}", a)};
        if (std::string(n) != "deepnorm") sets.push_back("stack.branch_scale=0.7");  // deepnorm fixes its own
        StackSpec s = tiny(sets);
        // layer 2: LayerNorm Scaling's 1/sqrt(l) differs from 1
        double err = block_grad_error(s, 2, 11 + k);
        INFO(b << " " << n << " " << t << " " << a << ": relative error " << err);
        CHECK(err < kGradTol);
      }
}

TEST_CASE("backward is J^T: every activation in mlp and dense blocks", "[sim][gradcheck]") {
  for (auto* a : {"relu", "gelu", "tanh", "erf", "silu", "linear"})
    for (auto* b : {"mlp", "dense"})
      for (auto* r : {"true", "false"}) {
        StackSpec s = tiny({fmt::format("stack.blocks={}", b), fmt::format("stack.activation={}", a),
                            fmt::format("stack.residual={}", r), "stack.norm=none"});
        double err = block_grad_error(s, 1, 5);
        INFO(a << " " << b << " residual=" << r << ": relative error " << err);
        CHECK(err < kGradTol);
      }
}

TEST_CASE("backward is J^T: attention masks, qk scales and strong logits", "[sim][gradcheck]") {
  for (auto* m : {"causal", "none"})
    for (auto* q : {"1/sqrt(dh)", "1/dh"})
      for (double qk2 : {0.0, 1.0, 6.0}) {
        StackSpec s = tiny({"stack.blocks=attn", fmt::format("stack.mask={}", m), fmt::format("stack.qk_scale=\"{}\"", q),
                            fmt::format("init.sigma_qk2={}", qk2), "stack.norm=pre"});
        double err = block_grad_error(s, 1, 7);
        INFO(m << " " << q << " sigma_qk2=" << qk2 << ": relative error " << err);
        CHECK(err < kGradTol);
      }
  // One head (dh = d) and one head per coordinate (dh = 1).
  for (int H : {1, 8}) {
    StackSpec s = tiny({"stack.blocks=attn", fmt::format("stack.heads={}", H), "stack.norm=post"});
    double err = block_grad_error(s, 1, 9);
    INFO("heads " << H << ": relative error " << err);
    CHECK(err < kGradTol);
  }
}

TEST_CASE("backward through the whole stack: grad_var of Delta_0 from chained blocks", "[sim][gradcheck]") {
  // <Delta_L, X_L(X_0)> differentiated in X_0 by central differences against Delta_0,
  // whose mean square run_sample reports as grad_var at layer 0.
  StackSpec s = tiny({"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu"});
  ReferenceStack st(s, 3);
  auto forward = [&](std::vector<double> X) {
    for (int l = 1; l <= s.depth; ++l) X = st.block_forward(0, l, X);
    return X;
  };
  const std::vector<double> X0 = st.input(0), DL = st.output_grad(0);
  std::vector<double> D = DL;
  {
    std::vector<std::vector<double>> Xs{X0};
    for (int l = 1; l <= s.depth; ++l) Xs.push_back(st.block_forward(0, l, Xs.back()));
    for (int l = s.depth; l >= 1; --l) D = st.block_backward(0, l, Xs[l - 1], D);
  }
  const double h = 1e-5;
  double worst = 0, scale = 0, ms = 0;
  for (size_t i = 0; i < X0.size(); ++i) {
    auto Xp = X0, Xm = X0;
    Xp[i] += h;
    Xm[i] -= h;
    double fd = (dot(DL, forward(Xp)) - dot(DL, forward(Xm))) / (2 * h);
    worst = std::max(worst, std::abs(fd - D[i]));
    scale = std::max(scale, std::abs(D[i]));
    ms += D[i] * D[i];
  }
  CHECK(worst / scale < kGradTol);
  sigprop::sim::SampleMetrics r = st.run_sample(0);
  CHECK(r.values[0].back() == Approx(ms / X0.size()).epsilon(1e-14));
  CHECK(r.forward_nonfinite == -1);
  CHECK(r.backward_nonfinite == -1);
}

TEST_CASE("input stream has the moments of MODEL.md §1", "[sim][analytic]") {
  // Over many samples, x_t . x_s / d has mean q0 rho0 (t != s) and q0 (t == s).
  StackSpec s = tiny({"stack.width=64", "stack.tokens=4", "input.q0=2.5", "input.rho0=0.4"});
  ReferenceStack st(s, 8);
  double diag = 0, off = 0;
  const int N = 400;
  for (int i = 0; i < N; ++i) {
    auto X = st.input(i);
    for (int t = 0; t < 4; ++t)
      for (int u = 0; u < 4; ++u) {
        double k = 0;
        for (int j = 0; j < 64; ++j) k += X[t * 64 + j] * X[u * 64 + j];
        (t == u ? diag : off) += k / 64;
      }
  }
  diag /= 4.0 * N;
  off /= 12.0 * N;
  // sd of the diagonal mean ~ q0 sqrt(2/(64 * 4 N)) ~ 0.01; off-diagonal entries share g, sd ~ 0.02.
  CHECK(std::abs(diag - 2.5) < 0.06);
  CHECK(std::abs(off - 1.0) < 0.1);
}

TEST_CASE("same seed: same numbers for any thread count; another seed: other numbers", "[sim][repro]") {
  StackSpec s = tiny({"stack.width=32", "stack.tokens=4", "stack.heads=4", "stack.depth=3"});
  auto run = [&](uint64_t seed, int threads) {
    MonteCarloEngine e(sim_settings(7, seed, "reference", threads));
    return e.run(s);
  };
  sigprop::Profile a = run(42, 1), b = run(42, 2), c = run(42, 3), d = run(43, 2);
  CHECK(a.to_json().dump() == b.to_json().dump());
  CHECK(a.to_json().dump() == c.to_json().dump());
  CHECK(a.to_csv() == b.to_csv());
  CHECK(a.at(3, "q") != d.at(3, "q"));
  CHECK(a.at(0, "rho") != d.at(0, "rho"));
  CHECK(a.warnings.empty());
  CHECK(a.engine == "simulate");
  CHECK(a.settings["backend"] == "reference");
  CHECK(a.settings["precision"] == "double");
  CHECK(a.settings["samples"] == 7);
  CHECK(a.settings["seed"] == 42);
  CHECK(a.settings["width"] == 32);
  CHECK(a.settings.contains("version"));
  for (auto& m : sigprop::metric_names()) {
    CHECK(a.has(m));
    CHECK(a.has(m + "_se"));
    CHECK(std::isfinite(a.at(3, m)));
    CHECK(a.at(3, m + "_se") > 0);
  }
  CHECK(std::isnan(a.at(0, "update_ratio")));
  // One sample has no standard error.
  MonteCarloEngine one(sim_settings(1, 42, "reference", 1));
  sigprop::Profile p1 = one.run(s);
  CHECK(std::isfinite(p1.at(1, "q")));
  CHECK(std::isnan(p1.at(1, "q_se")));
  // Sample i of a run is sample i of any larger run with the same seed.
  CHECK(p1.settings["weights_sampling"] == "conditional");  // the default for T < min(d, r d)
  CHECK(p1.at(2, "rho") ==
        ReferenceStack(s, 42, sigprop::sim::WeightSampling::Conditional).run_sample(0).values[2][1]);
}

TEST_CASE("double Monte Carlo follows rank collapse below 1e-8 (res from the stream)", "[sim][analytic]") {
  // Post-LN attention with uniform softmax (sigma_qk2 = 0), no mask: every token's branch output
  // is W_O W_V x-bar, the same for all tokens, so the centred part passes unchanged while the norm
  // divides by sqrt(q + sigma_w2^2 kbar); once collapsed (kbar -> q) res shrinks by
  // 1/sqrt(1 + sigma_w2^2) per layer (infinite width; per-layer fluctuations O(1/sqrt(d)) average
  // out over 30 layers to ~0.4%). res passes 1e-8 near layer 55 and reaches ~1e-14 at 95: the
  // kernel form floored it at ~1e-8 there, and the decay rate read from layers 60-90 was 1.
  StackSpec s = tiny({"stack.blocks=attn", "stack.norm=post", "stack.mask=none", "init.sigma_qk2=0",
                      "init.sigma_w2=1", "stack.depth=95", "stack.tokens=4", "stack.width=256", "stack.heads=4"});
  for (const char* backend : {"reference", "cpu"}) {
    CAPTURE(backend);
    sigprop::Profile p = MonteCarloEngine(sim_settings(4, 11, backend, 1)).run(s);
    const double rate = std::pow(p.at(90, "res") / p.at(60, "res"), 1.0 / 30);
    CHECK(rate == Approx(1 / std::sqrt(2.0)).epsilon(0.03));
    CHECK(p.at(90, "res") < 1e-12);
    CHECK(p.at(90, "res") > 0);
  }
}

TEST_CASE("theory and double Monte Carlo agree on a causal collapse from res 1e-1 to 1e-12", "[sim][stochastic]") {
  // Post-RMSNorm causal attention with sampled softmax: the theory's general T x T recursion
  // carries the collapse gap in its (Kc, v, m) form (docs/theory.md "res below 1e-8"); before, its
  // res was ~1e-8 or 0 from layer ~55 on. Double Monte Carlo (floor ~5e-16), conditional sampling
  // (resolves res down to its rank threshold 1e-12; layer 80 is at ~4e-12), d = 1024, 64 samples.
  // Measured over seeds 5-9: log(MC / theory) within -0.03..+0.05 at layers 30-80 (finite-width
  // excess ~+0.01..0.02), relative s.e. 0.02-0.04; |log ratio| <= 0.2 is >= 4 s.e. per layer,
  // family of 4 correlated layers < 1e-4 (fixed seed).
  StackSpec s = tiny({"stack.blocks=attn", "stack.norm=post", "stack.norm_type=rmsnorm", "stack.mask=causal",
                      "init.sigma_qk2=1", "init.sigma_w2=1.4", "stack.tokens=6", "stack.depth=100",
                      "stack.width=1024", "stack.heads=16", "input.rho0=0.1"});
  sigprop::Profile mc = MonteCarloEngine(sim_settings(64, 5, "cpu", 2)).run(s);
  sigprop::Profile th = sigprop::theory::TheoryEngine().run(s);
  for (int l : {30, 50, 70, 80}) {
    CAPTURE(l, th.at(l, "res"), mc.at(l, "res"), mc.at(l, "res_se"));
    CHECK(std::abs(std::log(mc.at(l, "res") / th.at(l, "res"))) <= 0.2);
  }
  CHECK(th.at(80, "res") < 1e-11);
  CHECK(th.at(90, "res") < 1e-12);
}

TEST_CASE("bad backend, samples or threads are named errors", "[sim][config]") {
  auto msg = [](SimSettings st) -> std::string {
    try {
      MonteCarloEngine e(st);
    } catch (const sigprop::ConfigError& e) {
      return e.what();
    }
    return "";
  };
  // "cuda" is a listed backend in every build (a run-time plug-in): tests/test_cuda.cpp and
  // tests/test_cuda_plugin.cpp check its errors.
  CHECK(msg(sim_settings(4, 0, "cuda", 1, "float")).empty());
  CHECK_THAT(msg(sim_settings(4, 0, "refrence", 1)), Catch::Contains("did you mean \"reference\""));
  CHECK_THAT(msg(sim_settings(0, 0, "reference", 1)), Catch::Contains("samples:"));
  CHECK_THAT(msg(sim_settings(70000, 0, "reference", 1)), Catch::Contains("samples:"));
  CHECK_THAT(msg(sim_settings(4, 0, "reference", -1)), Catch::Contains("threads:"));
  StackSpec deep = tiny({});
  deep.depth = 70000;
  CHECK_THROWS_AS(ReferenceStack(deep, 0), sigprop::ConfigError);
}

TEST_CASE("non-finite values are reported with the layer where they first appear", "[sim]") {
  // Linear dense stack with sigma_w2 = 1e300: q_1 ~ 1e300, q_2 = X X^T/d overflows (X_2 ~ 1e300
  // is still finite), X_3 ~ 1e450 overflows.
  StackSpec s = tiny({"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=linear",
                      "init.sigma_w2=1e300", "init.sigma_b2=0", "stack.depth=5"});
  MonteCarloEngine e(sim_settings(3, 1, "reference", 1));
  sigprop::Profile p = e.run(s);
  REQUIRE(p.warnings.size() == 2);
  CHECK_THAT(p.warnings[0], Catch::Contains("first at layer 3") && Catch::Contains("3 of 3 samples"));
  CHECK_THAT(p.warnings[1], Catch::Contains("first at layer 2"));
  CHECK(std::isfinite(p.at(1, "q")));
  CHECK(std::isfinite(p.at(1, "q_se")));
  CHECK(std::isnan(p.at(2, "q")));
  for (int l = 3; l <= 5; ++l)
    for (auto& m : sigprop::metric_names()) CHECK(std::isnan(p.at(l, m)));
  for (int l = 0; l <= 5; ++l) CHECK(std::isnan(p.at(l, "grad_var")));
  auto j = p.to_json();
  CHECK(j["layers"][2]["q"].is_null());
  CHECK(j["layers"][1]["q"].is_number());
}

// ---------------------------------------------------------------------------------------------
// Monte Carlo against the infinite-width theory.
//
// For each layer l and metric m: |MC - theory| <= k * SE + bias, with
//   SE   = sqrt(se_MC^2 + se_theory^2) (the theory's own error for sampled attention),
//   k    = 4.5: two-sided Gaussian tail 6.8e-6 per comparison; with at most 7 metrics x 7 layers
//          = 49 comparisons per run and 7 runs, the family-wise false-alarm rate is <= 2.3e-3
//          (Bonferroni; the comparisons are positively correlated, so it is smaller). The sample
//          count is large enough (>= 96) that SE itself is known to ~10%.
//   bias = c_bias * (l + 1) / d * scale_m: the finite-width bias, O(depth / width) (each layer
//          adds O(1/d) corrections: LayerNorm's rho (1 - 1/d), Jensen terms of the nonlinear
//          metrics, 1/H head fluctuations), with scale_m = max(|theory|, 1) for q and grad_var
//          and 1 for the bounded metrics, T for eff_rank (see bias_scale); c_bias = 3 (stated
//          per test where it differs).
// Seeds are fixed; a failure is investigated, never retried.
namespace {

struct McCheck {
  double k = 4.5;
  double c_bias = 3.0;
};

// Scale of the finite-width bias of metric m (see the comment above).
double bias_scale(const std::string& m, double ref, const StackSpec& s) {
  if (m == "q" || m == "grad_var") return std::max(std::abs(ref), 1.0);
  // The T singular values of X (T x d) spread by ~2 sqrt(T/d) around their limits
  // (Marchenko-Pastur), so the entropy behind eff_rank is biased by O(T/d), not O(1/d).
  if (m == "eff_rank") return s.tokens;
  return 1.0;
}

void compare_with_theory(const StackSpec& s, int samples, uint64_t seed, McCheck c = {},
                         std::vector<std::string> metrics = sigprop::metric_names()) {
  MonteCarloEngine mc(sim_settings(samples, seed, "reference", 2));
  sigprop::Profile p = mc.run(s);
  sigprop::theory::TheoryEngine th;
  sigprop::Profile t = th.run(s);
  REQUIRE(p.warnings.empty());
  std::string summary;
  for (auto& m : metrics) {
    double zmax = 0;
    int lmax = -1;
    for (int l = 0; l <= s.depth; ++l) {
      double ref = t.at(l, m);
      if (std::isnan(ref)) continue;
      double got = p.at(l, m);
      double se_t = t.has(m + "_se") ? t.at(l, m + "_se") : 0.0;
      double se = std::hypot(p.at(l, m + "_se"), se_t);
      double bias = c.c_bias * (l + 1) / s.width * bias_scale(m, ref, s);
      double z = (got - ref) / se;
      if (std::abs(z) > std::abs(zmax)) {
        zmax = z;
        lmax = l;
      }
      INFO(m << " layer " << l << ": MC " << got << " +- " << p.at(l, m + "_se") << ", theory " << ref << " +- "
             << se_t << ", z = " << z << ", bias allowance " << bias);
      CHECK(std::abs(got - ref) <= c.k * se + bias);
    }
    summary += fmt::format(" {} {:+.1f}(l{})", m, zmax, lmax);
  }
  WARN(fmt::format("{} {} {} norm={} act={} d={} N={}: worst z per metric:{}", sigprop::to_string(s.blocks),
                   sigprop::to_string(s.qk_scale), sigprop::to_string(s.mask), sigprop::to_string(s.norm),
                   sigprop::to_string(s.activation), s.width, samples, summary));
}

StackSpec mc_spec(const std::vector<std::string>& sets) {
  StackSpec s;
  s.depth = 4;
  s.tokens = 8;
  s.width = 256;
  s.heads = 4;
  s.mlp_ratio = 1;  // theory does not depend on r; r = 1 keeps the weight draws cheap
  for (auto& a : sets) sigprop::apply_override(s, a);
  s.validate();
  return s;
}

}  // namespace

TEST_CASE("Monte Carlo converges to theory: Pre-LN MLP relu", "[sim][stochastic]") {
  compare_with_theory(mc_spec({"stack.blocks=mlp", "stack.norm=pre", "stack.activation=relu", "init.sigma_b2=0.1"}),
                      160, 101);
}

TEST_CASE("Monte Carlo converges to theory: Post-LN MLP gelu", "[sim][stochastic]") {
  compare_with_theory(mc_spec({"stack.blocks=mlp", "stack.norm=post", "stack.activation=gelu"}), 160, 102);
}

TEST_CASE("Monte Carlo converges to theory: attention 1/dh causal", "[sim][stochastic]") {
  compare_with_theory(mc_spec({"stack.blocks=attn", "stack.norm=pre", "stack.qk_scale=1/dh", "stack.mask=causal"}),
                      128, 103);
}

TEST_CASE("Monte Carlo converges to theory: attention 1/sqrt(dh)", "[sim][stochastic]") {
  compare_with_theory(mc_spec({"stack.blocks=attn", "stack.norm=pre", "stack.qk_scale=1/sqrt(dh)",
                               "stack.mask=none", "init.sigma_qk2=1"}),
                      128, 104);
}

TEST_CASE("Monte Carlo converges to theory: dense tanh (mean field)", "[sim][stochastic]") {
  compare_with_theory(mc_spec({"stack.blocks=dense", "stack.norm=none", "stack.residual=false",
                               "stack.activation=tanh", "init.sigma_w2=1.5", "init.sigma_b2=0.05",
                               "stack.depth=6"}),
                      160, 105);
}

TEST_CASE("Monte Carlo converges to theory: DeepNorm and LayerNorm Scaling with RMSNorm, full blocks",
          "[sim][stochastic]") {
  // Checks the forward conventions the gradient checks cannot see: lambda, beta, 1/sqrt(l), RMSNorm.
  // d = 128 keeps the two-half blocks cheap; the bias allowance grows as 1/d accordingly.
  // DeepNorm's update_ratio at layer 1 sits ~18 SE above theory, a known finite-width effect:
  // the post-norm rescales each input token (norm^2 = d q0 (1 +- sqrt(2/d))) to norm^2 = d, which
  // adds ~1/(2d) to update_ratio^2 (0.125 measured vs 0.127 predicted at d = 128, 0.116 vs 0.115
  // at d = 512, theory 0.111); inside the allowance 3 (l+1)/d = 0.047.
  compare_with_theory(mc_spec({"stack.blocks=attn+mlp", "stack.norm=deepnorm", "stack.norm_type=rmsnorm",
                               "stack.qk_scale=1/dh", "stack.width=128", "stack.depth=3"}),
                      96, 106);
  compare_with_theory(mc_spec({"stack.blocks=attn+mlp", "stack.norm=lns", "stack.norm_type=rmsnorm",
                               "stack.qk_scale=1/dh", "stack.activation=silu", "stack.width=128", "stack.depth=3"}),
                      96, 107);
}

// ---------------------------------------------------------------------------------------------
// The `simulate` subcommand.
namespace {

using CliRun = sigprop::test::cli::Run;
using sigprop::test::cli::slurp;

std::filesystem::path sim_scratch() {
  static const std::filesystem::path dir = sigprop::test::cli::scratch_dir("sim_test");
  return dir;
}

CliRun cli(const std::string& args) {
  return sigprop::test::cli::run_sigprop(args, sim_scratch());
}

const std::string kSmall =
    "--set stack.depth=3 --set stack.width=16 --set stack.heads=2 --set stack.tokens=4 --samples 5 --seed 9";

}  // namespace

TEST_CASE("simulate writes JSON and CSV, identical for any thread count", "[sim][cli]") {
  auto js1 = sim_scratch() / "s1.json", js2 = sim_scratch() / "s2.json", cs = sim_scratch() / "s.csv";
  CliRun a = cli("simulate " + kSmall + " --threads 1 --json " + js1.string() + " --csv " + cs.string());
  REQUIRE(a.code == 0);
  CliRun b = cli("simulate " + kSmall + " --threads 2 --backend reference --json " + js2.string());
  REQUIRE(b.code == 0);
  CHECK(slurp(js1) == slurp(js2));
  sigprop::Profile p = sigprop::read_profile_json(js1);
  CHECK(p.engine == "simulate");
  CHECK(p.layers() == 4);
  CHECK(p.settings["samples"] == 5);
  CHECK(p.settings["seed"] == 9);
  for (auto& m : sigprop::metric_names()) CHECK(p.has(m + "_se"));
  CHECK_THAT(slurp(cs), Catch::Contains("grad_var_se"));
  CliRun t = cli("simulate " + kSmall);
  CHECK(t.code == 0);
  CHECK_THAT(t.out, Catch::Contains("sigprop simulate") && Catch::Contains("standard error over 5 samples"));
}

TEST_CASE("simulate: bad backend or key is a named error with exit code 2 and no output", "[sim][cli][config]") {
  auto js = sim_scratch() / "bad.json";
  for (auto* b : {"gpu"}) {  // cuda is a listed backend (tests/test_cuda.cpp checks its errors)
    CliRun r = cli("simulate " + kSmall + " --backend " + b + " --json " + js.string());
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains(fmt::format("\"{}\"", b)));
    CHECK(!std::filesystem::exists(js));
  }
  CliRun k = cli("simulate " + kSmall + " --set stack.widht=8");
  CHECK(k.code == 2);
  CHECK_THAT(k.err, Catch::Contains("widht"));
  CliRun n = cli("simulate --set stack.depth=2");  // --samples and --seed are required
  CHECK(n.code != 0);
  CHECK_THAT(n.err, Catch::Contains("--samples"));
}
