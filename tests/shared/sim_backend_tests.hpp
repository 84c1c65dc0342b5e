#pragma once
/// @file Backend-neutral test bodies for the Monte Carlo backends (OpenMM's tests/Test*.h,
/// qsim's simulator_testfixture.h): every function takes the backend under test by name and
/// precision, goes through sim::StackBackend / MonteCarloEngine only, and compares with the
/// reference backend on identical random streams. SIGPROP_SIM_BACKEND_TESTS(backend,
/// precision) instantiates them as Catch test cases; tests/test_sim_parity.cpp does so for
/// reference, cpu x {float, double}; a CUDA backend adds one line.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/profile.hpp"
#include "core/rng.hpp"
#include "core/spec.hpp"
#include "sim/backend.hpp"
#include "mc/engine.hpp"
#include "tests/tolerance.hpp"

namespace sigprop::test::sim_shared {

using Vec = std::vector<double>;

/// The backend under test.
struct Backend {
  std::string name;       ///< "reference", "cpu", ...
  std::string precision;  ///< "double" | "float"
  /// Makes the backend under test when set (a backend make_stack_backend does not know, e.g. the
  /// host emulation of the CUDA backend); otherwise make_stack_backend(s, seed, name, precision).
  std::function<std::unique_ptr<sim::StackBackend>(const StackSpec&, uint64_t)> factory{};
  /// Explicit, or Conditional: then the reference it is compared with samples conditionally too
  /// (both regenerate the same conditional draws from the same X; parity on identical streams).
  sim::WeightSampling sampling = sim::WeightSampling::Explicit;
  [[nodiscard]] std::unique_ptr<sim::StackBackend> make(const StackSpec& s, uint64_t seed) const {
    return factory ? factory(s, seed) : sim::make_stack_backend(s, seed, name, precision, sampling);
  }
  [[nodiscard]] double eps() const {
    return precision == "float" ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  }
  [[nodiscard]] bool is_float() const { return precision == "float"; }
};

/// Backend `name` in `precision` with conditional sampling.
inline Backend conditional(const std::string& name, const std::string& precision) {
  Backend b{name, precision};
  b.sampling = sim::WeightSampling::Conditional;
  return b;
}

inline std::unique_ptr<sim::StackBackend> reference(const StackSpec& s, uint64_t seed,
                                                    sim::WeightSampling w = sim::WeightSampling::Explicit) {
  return sim::make_stack_backend(s, seed, "reference", "double", w);
}

/// A small stack: T = 3, d = 8, H = 2 (dh = 4), R = 16, L = 3, with biases.
inline StackSpec tiny_spec(const std::vector<std::string>& sets) {
  StackSpec s;
  s.depth = 3;
  s.tokens = 3;
  s.width = 8;
  s.heads = 2;
  s.mlp_ratio = 2;
  s.sigma_b2 = 0.1;
  s.rho0 = 0.3;
  for (auto& a : sets) apply_override(s, a);
  s.validate();
  return s;
}

/// A stack with realistic contraction lengths: T = 8, d = 64, H = 4 (dh = 16), R = 256, L = 4.
inline StackSpec mid_spec(const std::vector<std::string>& sets) {
  StackSpec s;
  s.depth = 4;
  s.tokens = 8;
  s.width = 64;
  s.heads = 4;
  s.mlp_ratio = 4;
  s.sigma_b2 = 0.05;
  s.rho0 = 0.2;
  for (auto& a : sets) apply_override(s, a);
  s.validate();
  return s;
}

/// Relative (max-norm) parity tolerance of the streams X_l and gradients Delta_l after L blocks.
/// Derivation: an entry of a block output is a chain of at most g GEMM stages (forward: QKV,
/// scores, A V, O, W1, W2 = 6; the backward adds as many) with contraction length K <=
/// max(d, R, T), each rounding in Real with error ~ sqrt(K) eps (random-walk accumulation),
/// and the errors add over stages and blocks:  err ~ sqrt(K) eps g L.  The factor 16 covers the
/// gain of a block's Jacobian (norm rescaling, softmax with strong logits, DeepNorm's lambda)
/// that this count ignores. (Measured: 10-100x below the bound, see the WARN lines.)
///
/// Conditional sampling adds the token factorisation of every matrix input and cotangent: its
/// factor C is computed to ~ eps kappa (kappa the condition number of the T token rows, by the
/// reference's Gram-Schmidt and by the cpu backend's CholQR2 or Gram-Schmidt, in different
/// orders of rounding), and a float backend factors its own float rows. Measured kappa on these
/// stacks stays below ~10, hence a factor 10.
inline double parity_tol(const Backend& b, const StackSpec& s) {
  const double K = std::max({s.width, s.mlp_width(), s.tokens});
  const double g = s.blocks == Blocks::AttnMlp ? 12 : s.blocks == Blocks::Attn ? 8 : s.blocks == Blocks::Mlp ? 4 : 2;
  const double cond = b.sampling == sim::WeightSampling::Conditional ? 10.0 : 1.0;
  return cond * 16 * std::sqrt(K) * b.eps() * g * s.depth;
}

/// max_i |got_i - ref_i| / max_i |ref_i|
inline double rel_err(const Vec& got, const Vec& ref) {
  REQUIRE(got.size() == ref.size());
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::max(e, std::abs(got[i] - ref[i]));
    m = std::max(m, std::abs(ref[i]));
  }
  return m > 0 ? e / m : e;
}

struct Parity {
  double stream = 0;  ///< worst rel_err of X_l over l = 0..L
  double grad = 0;    ///< worst rel_err of Delta_l over l = 0..L
};

/// Runs sample `sample` forward and backward block by block in both backends, each on its own
/// streams (so errors compound through depth as in run_sample), and compares every layer.
inline Parity stack_parity(const Backend& b, const StackSpec& s, uint64_t seed, int sample = 0) {
  auto ref = reference(s, seed, b.sampling);
  auto got = b.make(s, seed);
  const int L = s.depth;
  std::vector<Vec> Xr{ref->input(sample)}, Xg{got->input(sample)};
  Parity p;
  p.stream = rel_err(Xg[0], Xr[0]);
  for (int l = 1; l <= L; ++l) {
    Xr.push_back(ref->block_forward(sample, l, Xr.back()));
    Xg.push_back(got->block_forward(sample, l, Xg.back()));
    p.stream = std::max(p.stream, rel_err(Xg.back(), Xr.back()));
  }
  Vec Dr = ref->output_grad(sample), Dg = got->output_grad(sample);
  p.grad = rel_err(Dg, Dr);
  for (int l = L; l >= 1; --l) {
    Dr = ref->block_backward(sample, l, Xr[l - 1], Dr);
    Dg = got->block_backward(sample, l, Xg[l - 1], Dg);
    p.grad = std::max(p.grad, rel_err(Dg, Dr));
  }
  return p;
}

/// Conditional sampling only: how far the reference's block results move, relative, when a
/// block's input moves by one unit roundoff (each entry times 1 +- 2^-52), divided by 2^-52;
/// the worst over the blocks of the sample's forward and backward. Conditional draws depend on
/// the span of each matrix's input: where a token's deviation is nearly a combination of the
/// earlier ones (a residual r much smaller than the tokens' norm |x|, as in a collapsing causal
/// stack), the basis direction it opens turns by ~u |x| / r, and the matrix's seen part Q^T G and
/// unseen part (I - Q^T Q) W' turn with it. Equal in law; sample by sample the backends' roundings
/// then part by about this factor times their unit roundoff, however correct both are.
inline double cond_amplification(const StackSpec& s, uint64_t seed, int sample = 0) {
  const auto ref = reference(s, seed, sim::WeightSampling::Conditional);
  const double u = 0x1p-52;
  auto nudge = [u](Vec x) {
    for (size_t i = 0; i < x.size(); ++i) x[i] *= 1 + ((i % 3 == 0) ? u : -u);
    return x;
  };
  std::vector<Vec> X{ref->input(sample)};
  double amp = 1;
  for (int l = 1; l <= s.depth; ++l) {
    X.push_back(ref->block_forward(sample, l, X.back()));
    amp = std::max(amp, rel_err(ref->block_forward(sample, l, nudge(X[l - 1])), X.back()) / u);
  }
  Vec D = ref->output_grad(sample);
  for (int l = s.depth; l >= 1; --l) {
    const Vec Dn = ref->block_backward(sample, l, X[l - 1], D);
    amp = std::max(amp, rel_err(ref->block_backward(sample, l, nudge(X[l - 1]), D), Dn) / u);
    D = Dn;
  }
  return amp;
}

/// parity_tol, widened for conditional sampling to 10 L (amplification) eps where a sample's
/// draws are ill-conditioned (cond_amplification); the widening counts into *widened.
inline double parity_tol_cond(const Backend& b, const StackSpec& s, uint64_t seed, int sample, int* widened,
                              double* worst_amp) {
  const double tol = parity_tol(b, s);
  if (b.sampling != sim::WeightSampling::Conditional) return tol;
  const double amp = cond_amplification(s, seed, sample);
  *worst_amp = std::max(*worst_amp, amp);
  const double t = 10.0 * s.depth * amp * b.eps();
  if (t <= tol) return tol;
  ++*widened;
  return t;
}

// ---------------------------------------------------------------------------------------------
// test bodies

/// The random numbers are the reference's: X_0 and Delta_L are the reference's values rounded
/// once to the backend's precision (bit for bit).
inline void test_identical_streams(const Backend& b) {
  const StackSpec s = mid_spec({"input.q0=2.5", "input.rho0=0.4"});
  for (int sample : {0, 1, 65535}) {
    auto ref = reference(s, 77);
    auto got = b.make(s, 77);
    const Vec xr = ref->input(sample), xg = got->input(sample);
    const Vec dr = ref->output_grad(sample), dg = got->output_grad(sample);
    REQUIRE(xg.size() == xr.size());
    size_t bad = 0;
    for (size_t i = 0; i < xr.size(); ++i) {
      const double rx = b.is_float() ? static_cast<double>(static_cast<float>(xr[i])) : xr[i];
      const double rd = b.is_float() ? static_cast<double>(static_cast<float>(dr[i])) : dr[i];
      bad += (xg[i] != rx) + (dg[i] != rd);
    }
    INFO(b.name << "/" << b.precision << " sample " << sample);
    CHECK(bad == 0);
  }
}

/// Per-layer streams and gradients equal to the reference's, for every block type x norm
/// placement x norm type x activation x mask x qk scale x residual on the tiny stack
/// (1728 valid stacks of 3 blocks, ~0.5 s per backend), then a few stacks of realistic width.
inline void test_block_parity(const Backend& b) {
  const char* blocks[] = {"attn+mlp", "attn", "mlp", "dense"};
  const char* norms[] = {"pre", "post", "none", "lns", "deepnorm"};
  const char* types[] = {"layernorm", "rmsnorm"};
  const char* acts[] = {"gelu", "tanh", "silu", "erf", "relu", "linear"};
  const char* masks[] = {"causal", "none"};
  const char* qks[] = {"1/sqrt(dh)", "1/dh"};
  double worst_ratio = 0, worst_amp = 1;
  std::string worst;
  int k = 0, widened = 0;
  for (auto* bl : blocks)
    for (auto* n : norms)
      for (auto* t : types)
        for (auto* a : acts)
          for (auto* m : masks)
            for (auto* q : qks)
              for (bool res : {true, false}) {
                if (!res && std::string(n) == "deepnorm") continue;  // invalid spec: DeepNorm needs the residual
                // Conditional sampling on stacks that collapse to one token (no residual, no mask: after a
                // block the T = 3 tokens agree to rounding) is not continuous sample by sample: which
                // near-equal token opens a direction (kCondRankTol), and which rounding-noise direction
                // it opens, decide which normals a later token uses. Equal in law there
                // (tests/test_sim_conditional.cpp), but the backends' roundings pick different samples.
                if (b.sampling == sim::WeightSampling::Conditional && !res && std::string(m) == "none") continue;
                std::vector<std::string> sets{fmt::format("stack.blocks={}", bl), fmt::format("stack.norm={}", n),
                                              fmt::format("stack.norm_type={}", t),
                                              fmt::format("stack.activation={}", a), fmt::format("stack.mask={}", m),
                                              fmt::format("stack.qk_scale=\"{}\"", q),
                                              fmt::format("stack.residual={}", res ? "true" : "false")};
                if (std::string(n) != "deepnorm") sets.push_back("stack.branch_scale=0.7");
                // Strong logits on every fourth stack: the softmax amplifies logit errors.
                if (k % 4 == 3) sets.push_back("init.sigma_qk2=6");
                const StackSpec s = tiny_spec(sets);
                const uint64_t seed = 1000 + k++;
                const Parity p = stack_parity(b, s, seed);
                const double tol = parity_tol_cond(b, s, seed, 0, &widened, &worst_amp);
                const double ratio = std::max(p.stream, p.grad) / tol;
                if (ratio > worst_ratio) {
                  worst_ratio = ratio;
                  worst = fmt::format("{} {} {} {} {} {} residual={}", bl, n, t, a, m, q, res);
                }
                INFO(bl << " " << n << " " << t << " " << a << " mask=" << m << " qk=" << q << " residual=" << res
                        << ": stream error " << p.stream << ", gradient error " << p.grad << ", tolerance " << tol);
                CHECK(p.stream <= tol);
                CHECK(p.grad <= tol);
              }
  WARN(fmt::format("{}/{}: {} tiny stacks, worst error / tolerance = {:.3g} ({}); conditional draws' worst "
                   "amplification of a unit roundoff {:.3g}, tolerance widened for {} stacks",
                   b.name, b.precision, k, worst_ratio, worst, worst_amp, widened));
  // Ill-conditioned draws are the exception (9 of the 1344 conditional stacks, collapsing causal
  // ones), not the rule: at most 2% of the stacks.
  CHECK(widened * 50 <= k);

  // Realistic contraction lengths (d = 64, R = 256, T = 8), depth 4.
  const std::vector<std::vector<std::string>> mids = {
      {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu"},
      {"stack.blocks=attn+mlp", "stack.norm=post", "stack.norm_type=rmsnorm", "stack.activation=relu",
       "stack.mask=none"},
      {"stack.blocks=attn+mlp", "stack.norm=deepnorm", "stack.activation=silu", "stack.qk_scale=1/dh"},
      {"stack.blocks=attn", "stack.norm=lns", "stack.residual=false", "init.sigma_qk2=4"},
      {"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=tanh", "init.sigma_w2=1.5"},
  };
  for (size_t i = 0; i < mids.size(); ++i) {
    const StackSpec s = mid_spec(mids[i]);
    const Parity p = stack_parity(b, s, 31 + i, 5);
    const double tol = parity_tol_cond(b, s, 31 + i, 5, &widened, &worst_amp);
    INFO("mid stack " << i << ": stream error " << p.stream << ", gradient error " << p.grad << ", tolerance "
                      << tol);
    CHECK(p.stream <= tol);
    CHECK(p.grad <= tol);
  }
}

/// Every metric of every layer from run_sample equal to the reference's. The metrics are
/// computed in double from the streams, so their error follows from the streams' error
/// delta = parity_tol (max-norm relative; the Frobenius-relative error is at most sqrt(T d)
/// times larger, in practice about the same):
///   q, grad_var: relative 2 delta;  rho, res, update_ratio: cosines and norm ratios, absolute
///   ~ 2 delta (1 + |ref|);  ang_dist = arccos(c)/pi and eff_rank (sqrt of eigenvalues near 0)
///   are 1/2-Hoelder near their edges: absolute sqrt(2 delta) (T for eff_rank).
/// A factor 10 on delta absorbs the Frobenius-vs-max ratio.
inline void test_metric_parity(const Backend& b) {
  const std::vector<std::vector<std::string>> cases = {
      {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu"},
      {"stack.blocks=attn+mlp", "stack.norm=post", "stack.activation=relu", "stack.mask=none"},
      {"stack.blocks=mlp", "stack.norm=none", "stack.activation=erf", "stack.branch_scale=\"1/sqrt(L)\""},
      {"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=tanh"},
  };
  const auto& names = metric_names();
  for (size_t c = 0; c < cases.size(); ++c) {
    const StackSpec s = mid_spec(cases[c]);
    const double delta = 10 * parity_tol(b, s);
    for (int sample : {0, 3}) {
      const sim::SampleMetrics r = reference(s, 5, b.sampling)->run_sample(sample);
      const sim::SampleMetrics g = b.make(s, 5)->run_sample(sample);
      CHECK(g.forward_nonfinite == r.forward_nonfinite);
      CHECK(g.backward_nonfinite == r.backward_nonfinite);
      for (int l = 0; l <= s.depth; ++l)
        for (size_t m = 0; m < names.size(); ++m) {
          const double ref = r.values[l][m], got = g.values[l][m];
          INFO("case " << c << " sample " << sample << " layer " << l << " " << names[m]);
          if (std::isnan(ref)) {
            CHECK(std::isnan(got));
            continue;
          }
          const std::string& n = names[m];
          Tol tol{0, 0};
          if (n == "q" || n == "grad_var")
            tol = {0, 2 * delta};
          else if (n == "ang_dist")
            tol = {std::sqrt(2 * delta), 0};
          else if (n == "eff_rank")
            tol = {s.tokens * std::sqrt(2 * delta), 0};
          else
            tol = {2 * delta, 2 * delta};
          SIGPROP_CHECK_CLOSE(got, ref, tol);
        }
    }
  }
}

/// Same seed: the same profile for 1 and 2 threads; the settings name backend and precision.
inline void test_threads(const Backend& b) {
  const StackSpec s = tiny_spec({"stack.width=32", "stack.tokens=4", "stack.heads=4", "stack.depth=3"});
  auto run = [&](int threads) {
    sim::SimSettings st;
    st.samples = 7;
    st.seed = 42;
    st.backend = b.name;
    st.precision = b.precision;
    st.threads = threads;
    st.weights_sampling = sim::to_string(b.sampling);
    return sim::MonteCarloEngine(st).run(s);
  };
  const Profile p1 = run(1), p2 = run(2);
  CHECK(p1.settings["weights_sampling"] == sim::to_string(b.sampling));
  CHECK(p1.to_json().dump() == p2.to_json().dump());
  CHECK(p1.to_csv() == p2.to_csv());
  CHECK(p1.settings["backend"] == b.name);
  CHECK(p1.settings["precision"] == b.precision);
  CHECK(p1.warnings.empty());
  for (auto& m : metric_names()) CHECK(std::isfinite(p1.at(3, m)));
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// max_i |J^T dY - central difference of <dY, f(X)>|_i / max_i |J^T dY|_i for block `layer`,
/// in the backend's own precision.
inline double block_grad_error(const Backend& b, const StackSpec& s, int layer, uint64_t seed, double h) {
  auto st = b.make(s, seed);
  const size_t n = static_cast<size_t>(s.tokens) * s.width;
  Vec X(n), dY(n);
  NormalStream(seed, 1001).fill(X.data(), n);
  NormalStream(seed, 1002).fill(dY.data(), n);
  for (auto& x : X) x *= 1.3;
  const Vec g = st->block_backward(0, layer, X, dY);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    Vec Xp = X, Xm = X;
    Xp[i] += h;
    Xm[i] -= h;
    const double fd =
        (dot(dY, st->block_forward(0, layer, Xp)) - dot(dY, st->block_forward(0, layer, Xm))) / (Xp[i] - Xm[i]);
    worst = std::max(worst, std::abs(fd - g[i]));
    scale = std::max(scale, std::abs(g[i]));
  }
  return worst / std::max(scale, 1e-300);
}

/// The backward pass is J^T of the backend's own forward (central differences).
///   double: h = 1e-5, truncation h^2 f'''/6 ~ 1e-10 and round-off eps |f| / h ~ 1e-10, tolerance 1e-6.
///   float:  h = 1e-2 (X ~ 1 is rounded to float, so smaller steps drown in round-off):
///           truncation h^2 f'''/6 ~ 2e-5 f''', round-off eps |f| / h ~ 6e-6 |f| with |f| = |<dY, Y>|
///           ~ sqrt(T d) ~ 5, tolerance 2e-3. relu is skipped in float: at h = 1e-2 the
///           difference quotient crosses its kink often (double's 1e-5 almost never does).
inline void test_gradcheck(const Backend& b) {
  const double h = b.is_float() ? 1e-2 : 1e-5, tol = b.is_float() ? 2e-3 : 1e-6;
  const char* blocks[] = {"attn+mlp", "attn", "mlp", "dense"};
  const char* norms[] = {"pre", "post", "none", "lns", "deepnorm"};
  const char* types[] = {"layernorm", "rmsnorm"};
  const char* acts[] = {"gelu", "tanh", "silu", "erf", "relu", "linear"};
  int k = 0;
  for (auto* bl : blocks)
    for (auto* n : norms)
      for (auto* t : types) {
        const char* a = acts[k++ % 6];
        if (b.is_float() && std::string(a) == "relu") a = "gelu";
        std::vector<std::string> sets{fmt::format("stack.blocks={}", bl), fmt::format("stack.norm={}", n),
                                      fmt::format("stack.norm_type={}", t), fmt::format("stack.activation={}", a),
                                      k % 2 ? "stack.mask=causal" : "stack.mask=none"};
        if (std::string(n) != "deepnorm") sets.push_back("stack.branch_scale=0.7");
        const StackSpec s = tiny_spec(sets);
        const double err = block_grad_error(b, s, 2, 11 + k, h);  // layer 2: LNS's 1/sqrt(l) != 1
        INFO(bl << " " << n << " " << t << " " << a << ": relative error " << err);
        CHECK(err < tol);
      }
}

}  // namespace sigprop::test::sim_shared

/// Instantiates every backend-neutral Monte Carlo test for one backend and precision.
#define SIGPROP_SIM_BACKEND_TESTS(BACKEND, PRECISION)                                                      \
  TEST_CASE(BACKEND "/" PRECISION ": X_0 and Delta_L are the reference's random numbers", "[sim][parity]") { \
    sigprop::test::sim_shared::test_identical_streams({BACKEND, PRECISION});                              \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION ": per-layer streams and gradients equal the reference's",              \
            "[sim][parity]") {                                                                             \
    sigprop::test::sim_shared::test_block_parity({BACKEND, PRECISION});                                   \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION ": every metric of run_sample equals the reference's", "[sim][parity]") { \
    sigprop::test::sim_shared::test_metric_parity({BACKEND, PRECISION});                                  \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION ": same profile for 1 and 2 threads", "[sim][parity][repro]") {          \
    sigprop::test::sim_shared::test_threads({BACKEND, PRECISION});                                        \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION ": backward is J^T of the backend's forward", "[sim][parity][gradcheck]") { \
    sigprop::test::sim_shared::test_gradcheck({BACKEND, PRECISION});                                      \
  }

/// The same bodies with conditional sampling on both sides (no gradcheck: a conditional forward
/// is a different random map at every X, so finite differences of it are not its backward).
#define SIGPROP_SIM_CONDITIONAL_TESTS(BACKEND, PRECISION)                                                   \
  TEST_CASE(BACKEND "/" PRECISION " conditional: per-layer streams and gradients equal the reference's",  \
            "[sim][parity]") {                                                                             \
    sigprop::test::sim_shared::test_block_parity(                                                         \
        sigprop::test::sim_shared::conditional(BACKEND, PRECISION));                                 \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION " conditional: every metric of run_sample equals the reference's",      \
            "[sim][parity]") {                                                                             \
    sigprop::test::sim_shared::test_metric_parity(                                                        \
        sigprop::test::sim_shared::conditional(BACKEND, PRECISION));                                 \
  }                                                                                                        \
  TEST_CASE(BACKEND "/" PRECISION " conditional: same profile for 1 and 2 threads", "[sim][parity][repro]") { \
    sigprop::test::sim_shared::test_threads(sigprop::test::sim_shared::conditional(BACKEND, PRECISION)); \
  }
