// The exact-kernel Monte Carlo input (input_kernel = "exact", sim/input.hpp, docs/simulate.md).
// Tags: [sim] every test here; [stochastic] the Monte Carlo against the theory in standard errors
// (fixed seed, never retried); [report] the report key and the cell hash; [cli] the option.
// Together they take about a second (the [stochastic] case most of it).
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <tuple>
#include <cmath>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "mc/backends.hpp"
#include "mc/engine.hpp"
#include "reports/config.hpp"
#include "reports/sweep.hpp"
#include "shared/cli_run.hpp"
#include "sim/input.hpp"
#include "sim/reference.hpp"
#include "theory/engine.hpp"

using sigprop::StackSpec;
using sigprop::sim::InputKernel;
using sigprop::sim::MonteCarloEngine;
using sigprop::sim::SimSettings;

namespace {

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

StackSpec input_spec(int T, int d, double q0, double rho0) {
  StackSpec s;
  s.blocks = sigprop::Blocks::Mlp;
  s.depth = 1;
  s.tokens = T;
  s.width = d;
  s.heads = 1;
  s.mlp_ratio = 1;
  s.q0 = q0;
  s.rho0 = rho0;
  s.validate();
  return s;
}

RowMat as_mat(const std::vector<double>& v, int T, int d) { return Eigen::Map<const RowMat>(v.data(), T, d); }

// max |X X^T / d - K0| / q0, K0 = q0 ((1 - rho0) I + rho0 11^T).
double gram_error(const std::vector<double>& X, const StackSpec& s) {
  const RowMat M = as_mat(X, s.tokens, s.width);
  const Eigen::MatrixXd K = M * M.transpose() / s.width;
  Eigen::MatrixXd K0 = Eigen::MatrixXd::Constant(s.tokens, s.tokens, s.q0 * s.rho0);
  K0.diagonal().array() = s.q0;
  return (K - K0).cwiseAbs().maxCoeff() / s.q0;
}

std::unique_ptr<sigprop::sim::StackBackend> backend(const StackSpec& s, uint64_t seed, const std::string& name,
                                                    const std::string& precision, InputKernel k) {
  return sigprop::sim::make_stack_backend(s, seed, name, precision, sigprop::sim::WeightSampling::Explicit, "", k);
}

SimSettings exact_settings(int samples, uint64_t seed, const std::string& backend, const std::string& precision) {
  SimSettings st;
  st.samples = samples;
  st.seed = seed;
  st.backend = backend;
  st.precision = precision;
  st.threads = 2;
  st.input_kernel = "exact";
  return st;
}

std::string config_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const sigprop::ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError");
  return {};
}

}  // namespace

TEST_CASE("exact input: every sample's Gram is K0 to rounding, reference and cpu", "[sim]") {
  // T = 1 through the shared helper itself (a spec needs two tokens): d = 2, 64, 1024
  for (int d : {2, 64, 1024})
    for (double rho0 : {0.0, 0.1, 1.0})
      for (double q0 : {0.5, 2.0}) {
        std::vector<double> G(static_cast<size_t>(d)), g(static_cast<size_t>(d));
        for (int i = 0; i < d; ++i) {
          G[i] = std::sin(1.0 + i);
          g[i] = std::cos(2.0 + 3.0 * i);
        }
        const std::vector<double> X = sigprop::sim::exact_kernel_input(G, g, 1, d, q0, rho0);
        double sq = 0;
        for (double x : X) sq += x * x;
        INFO("T = 1, d = " << d << ", rho0 = " << rho0 << ", q0 = " << q0);
        CHECK(std::abs(sq / d - q0) <= 1e-12 * q0);
      }
  for (int T : {2, 16, 64})
    for (int d : {T + 1, 64, 1024}) {
      if (d < T + 1) continue;
      for (double rho0 : {0.0, 0.1, 1.0})
        for (double q0 : {0.5, 2.0}) {
          const StackSpec s = input_spec(T, d, q0, rho0);
          INFO("T = " << T << ", d = " << d << ", rho0 = " << rho0 << ", q0 = " << q0);
          const auto ref = backend(s, 7, "reference", "double", InputKernel::Exact);
          const auto cpu = backend(s, 7, "cpu", "double", InputKernel::Exact);
          for (int sample : {0, 3}) {
            const std::vector<double> X = ref->input(sample);
            CHECK(gram_error(X, s) <= 1e-12);
            CHECK(cpu->input(sample) == X);  // the same streams through the same helper: bitwise
          }
          // float: the double input rounded once, so its Gram is K0 to float rounding
          const auto cpuf = backend(s, 7, "cpu", "float", InputKernel::Exact);
          CHECK(gram_error(cpuf->input(1), s) <= 2e-6);
        }
    }
}

TEST_CASE("exact input: same seed same input, other samples and seeds other inputs, close to sampled", "[sim]") {
  const StackSpec s = input_spec(16, 1024, 1.0, 0.1);
  const auto a = backend(s, 5, "reference", "double", InputKernel::Exact);
  const auto b = backend(s, 5, "reference", "double", InputKernel::Exact);
  const auto other_seed = backend(s, 6, "reference", "double", InputKernel::Exact);
  const auto sampled = backend(s, 5, "reference", "double", InputKernel::Sampled);
  CHECK(sigprop::sim::ReferenceStack(s, 5).input_kernel() == InputKernel::Sampled);  // the default
  CHECK(sigprop::sim::ReferenceStack(s, 5).input(0) == sampled->input(0));
  const std::vector<double> X0 = a->input(0);
  CHECK(b->input(0) == X0);
  CHECK(a->input(1) != X0);
  CHECK(other_seed->input(0) != X0);
  // The Gram-Schmidt basis of the same Gaussians (R's diagonal positive) is within O(sqrt(T/d))
  // of the sampled input: measured ~0.1 here; a flipped sign would give > 1.
  const RowMat E = as_mat(X0, 16, 1024), S = as_mat(sampled->input(0), 16, 1024);
  const double rel = (E - S).norm() / S.norm();
  INFO("||exact - sampled|| / ||sampled|| = " << rel);
  CHECK(rel < 0.25);
  CHECK(rel > 1e-3);  // and it did change
  CHECK(gram_error(sampled->input(0), s) > 1e-3);  // the sampled kernel's O(1/sqrt d) noise
}

TEST_CASE("exact input: layer-0 q and rho are q0 and rho0 with no sampling error", "[sim]") {
  StackSpec s = input_spec(8, 64, 1.7, 0.3);
  s.blocks = sigprop::Blocks::AttnMlp;
  s.heads = 4;
  s.depth = 2;
  for (const auto& [be, prec, tol] : {std::tuple{"reference", "double", 1e-12}, std::tuple{"cpu", "double", 1e-12},
                                      std::tuple{"cpu", "float", 2e-6}}) {
    INFO(be << " " << prec);
    const sigprop::Profile p = MonteCarloEngine(exact_settings(6, 3, be, prec)).run(s);
    CHECK(p.settings["input_kernel"] == "exact");
    CHECK(std::abs(p.at(0, "q") - s.q0) <= tol * s.q0);
    CHECK(std::abs(p.at(0, "rho") - s.rho0) <= tol);
    CHECK(p.at(0, "q_se") <= tol * s.q0);
    CHECK(p.at(0, "rho_se") <= tol);
    CHECK(p.at(1, "rho_se") > 0);  // the layers above still vary with the weights
  }
  // The default profile neither records the key nor changes: "sampled" is the same run.
  SimSettings def = exact_settings(4, 3, "cpu", "double");
  def.input_kernel.clear();
  SimSettings named = def;
  named.input_kernel = "sampled";
  const sigprop::Profile pd = MonteCarloEngine(def).run(s), pn = MonteCarloEngine(named).run(s);
  CHECK_FALSE(pd.settings.contains("input_kernel"));
  CHECK(pd.to_json().dump() == pn.to_json().dump());
  CHECK(pd.at(0, "rho_se") > 1e-3);
}

TEST_CASE("exact input: errors name input_kernel", "[sim]") {
  const StackSpec narrow = input_spec(8, 8, 1.0, 0.1);
  std::string m = config_error([&] { (void)MonteCarloEngine(exact_settings(2, 0, "cpu", "double")).run(narrow); });
  CHECK_THAT(m, Catch::Contains("input_kernel") && Catch::Contains("stack.tokens = 8") &&
                    Catch::Contains("stack.width = 8"));
  m = config_error([&] { (void)backend(narrow, 0, "reference", "double", InputKernel::Exact); });
  CHECK_THAT(m, Catch::Contains("input_kernel"));
  // d = T + 1 is enough
  CHECK_NOTHROW(MonteCarloEngine(exact_settings(2, 0, "cpu", "double")).run(input_spec(8, 9, 1.0, 0.1)));
  // cuda: refused before any plug-in is looked for
  m = config_error([&] { (void)MonteCarloEngine(exact_settings(2, 0, "cuda", "float")); });
  CHECK_THAT(m, Catch::Contains("input_kernel") && Catch::Contains("cuda"));
  m = config_error([&] { (void)backend(narrow, 0, "cuda", "float", InputKernel::Exact); });
  CHECK_THAT(m, Catch::Contains("input_kernel") && Catch::Contains("cuda"));
  SimSettings typo = exact_settings(2, 0, "cpu", "double");
  typo.input_kernel = "exakt";
  m = config_error([&] { (void)MonteCarloEngine(typo); });
  CHECK_THAT(m, Catch::Contains("input_kernel") && Catch::Contains("\"exakt\"") &&
                    Catch::Contains("did you mean \"exact\""));
}

// [stochastic] With the input conditioned on K0 the Monte Carlo estimates the stack's propagation
// alone; on a small Pre-LN attn+mlp stack it agrees with the theory as the sampled input does
// (tests/test_sim_reference.cpp "Monte Carlo against the infinite-width theory"): per layer and
// metric |MC - theory| <= k SE + c_bias (l + 1) / d * scale, k = 4.5 (two-sided 6.8e-6 per
// comparison; 7 metrics x 4 layers = 28 comparisons, family-wise false-alarm rate <= 1.9e-4,
// Bonferroni), c_bias = 3, scale = max(|theory|, 1) for q and grad_var, T for eff_rank, else 1.
// Layer 0 has SE 0, so there the check is the finite-width allowance 3/d only.
TEST_CASE("exact input: Monte Carlo agrees with theory, Pre-LN attn+mlp d = 256", "[sim][stochastic]") {
  StackSpec s;
  s.blocks = sigprop::Blocks::AttnMlp;
  s.norm = sigprop::Norm::Pre;
  s.depth = 3;
  s.tokens = 8;
  s.width = 256;
  s.heads = 4;
  s.mlp_ratio = 1;
  s.rho0 = 0.1;
  s.validate();
  const sigprop::Profile p = MonteCarloEngine(exact_settings(96, 211, "cpu", "double")).run(s);
  const sigprop::Profile t = sigprop::theory::TheoryEngine().run(s);
  REQUIRE(p.warnings.empty());
  for (const auto& m : sigprop::metric_names())
    for (int l = 0; l <= s.depth; ++l) {
      const double ref = t.at(l, m);
      if (std::isnan(ref)) continue;
      const double got = p.at(l, m);
      const double se = std::hypot(p.at(l, m + "_se"), t.has(m + "_se") ? t.at(l, m + "_se") : 0.0);
      const double scale = (m == "q" || m == "grad_var") ? std::max(std::abs(ref), 1.0)
                           : m == "eff_rank"              ? s.tokens
                                                          : 1.0;
      const double bias = 3.0 * (l + 1) / s.width * scale;
      INFO(m << " layer " << l << ": MC " << got << " +- " << p.at(l, m + "_se") << ", theory " << ref
             << ", z = " << (got - ref) / se);
      CHECK(std::abs(got - ref) <= 4.5 * se + bias);
    }
}

TEST_CASE("exact input: [engines.simulate] input_kernel enters the cell hash", "[sim][report]") {
  const std::string base = R"(
[report]
title = "t"
[stack]
tokens = 4
width = 16
heads = 2
[sweep]
stack.depth = [2, 3]
[engines.theory]
[engines.simulate]
samples = 2
)";
  const auto a = sigprop::reports::parse_report_config(base, "a.toml");
  const auto b = sigprop::reports::parse_report_config(base + "input_kernel = \"exact\"\n", "b.toml");
  const auto c = sigprop::reports::parse_report_config(base + "input_kernel = \"sampled\"\n", "c.toml");
  CHECK(a.simulate.input_kernel == "sampled");
  CHECK(b.simulate.input_kernel == "exact");
  CHECK(sigprop::reports::to_toml(a).find("input_kernel") == std::string::npos);
  CHECK(sigprop::reports::parse_report_config(sigprop::reports::to_toml(b), "b2.toml").simulate.input_kernel ==
        "exact");
  const auto ja = sigprop::reports::make_jobs(a, sigprop::reports::expand_cells(a));
  const auto jb = sigprop::reports::make_jobs(b, sigprop::reports::expand_cells(b));
  const auto jc = sigprop::reports::make_jobs(c, sigprop::reports::expand_cells(c));
  REQUIRE(ja.size() == jb.size());
  for (size_t i = 0; i < ja.size(); ++i) {
    CHECK(ja[i].hash == jc[i].hash);  // "sampled" is the default: existing cells are reused
    CHECK((ja[i].hash == jb[i].hash) == (ja[i].engine == sigprop::reports::EngineKind::Theory));
  }
  std::string m = config_error([&] { (void)sigprop::reports::parse_report_config(base + "input_kernel = \"exac\"\n", "d.toml"); });
  CHECK_THAT(m, Catch::Contains("engines.simulate.input_kernel") && Catch::Contains("did you mean \"exact\"") &&
                    Catch::Contains("d.toml"));
  // a cell too narrow for T + 1 directions is named before anything runs
  m = config_error([&] {
    const auto narrow = sigprop::reports::parse_report_config(
        base + "input_kernel = \"exact\"\n" + "width = 4\nheads = 1\n", "e.toml");
    (void)sigprop::reports::make_jobs(narrow, sigprop::reports::expand_cells(narrow));
  });
  CHECK_THAT(m, Catch::Contains("input_kernel") && Catch::Contains("e.toml"));
}

TEST_CASE("exact input: sigprop simulate --input-kernel", "[sim][cli]") {
  const auto dir = sigprop::test::cli::scratch_dir("sim_input");
  auto run = [&](const std::string& args) { return sigprop::test::cli::run_sigprop(args, dir); };
  const std::string sets = "--set stack.depth=2 --set stack.tokens=4 --set stack.width=16 --set stack.heads=2";
  auto r = run("simulate " + sets + " --samples 2 --seed 1 --backend cpu --input-kernel exact");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("exact input kernel"));
  r = run("simulate " + sets + " --samples 2 --seed 1 --backend cpu --input-kernel exactt");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("input_kernel") && Catch::Contains("did you mean \"exact\""));
}
