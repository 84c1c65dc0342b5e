// [stochastic]: finite-width Monte Carlo converges to the infinite-width theory as the width
// grows, at the rate finite-width corrections predict.
//
// For a metric m at layer l, D(d) = E_d[m] - m_theory is the finite-width bias. It is
// O(1/d) for MLP branches and for attention with qk_scale = 1/dh at fixed H (the logits
// concentrate; head-to-head fluctuations of the kernel are O(1/(H dh)) = O(1/d)). For
// qk_scale = 1/sqrt(dh) the theory is the limit dh -> inf, then H -> inf, and the bias is
// O(1/dh) + O(1/H) (non-Gaussian logits; a kernel averaged over H random heads entering
// nonlinear maps) + O(1/d): with H = dh = sqrt(d), c1 d^-1/2 + c2 d^-1 (both are seen:
// eff_rank's bias is dominated by the 1/d term).
//
// Test: the Monte Carlo mean at three widths (MC standard error s_MC; the theory's own
// numerical error s_th for 1/sqrt(dh) attention) must fit D(d) = sum_k c_k d^-p_k with free
// c_k: weighted least squares, chi^2 = sum ((D_i - fit_i) / s_i)^2 with 3 - k degrees of
// freedom under the hypothesis that theory and Monte Carlo are right. A width-independent
// disagreement (a wrong theory or a wrong simulator) leaves D ~ const, which fails the fit
// as soon as it exceeds a few standard errors at the largest width. Threshold: chi^2_2 >
// 18.42 (2 dof) or 15.14 (1 dof), p = 1e-4; with 5 specs x 7 metrics x 2 layers = 70 checks the false-alarm rate
// over seeds is <= 0.7% (Bonferroni), and the seeds are fixed, so the outcome is stable.
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/profile.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "theory/engine.hpp"

namespace {

struct ConvSpec {
  std::string name;
  std::vector<std::string> sets;
  bool heads_grow;  ///< H = dh = sqrt(d) (1/sqrt(dh) attention), else H = 4
  std::vector<double> rates;  ///< p_k in D(d) = sum_k c_k d^-p_k
};

std::vector<ConvSpec> conv_specs() {
  const std::vector<std::string> base = {"stack.depth=3", "stack.tokens=6", "input.rho0=0.3",
                                         "stack.qk_scale=1/dh", "stack.mlp_ratio=2"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> s = base;
    s.insert(s.end(), extra.begin(), extra.end());
    return s;
  };
  return {
      {"Pre-LN causal gelu", with({"stack.norm=pre", "stack.mask=causal"}), false, {1.0}},
      {"Post-LN relu, no mask", with({"stack.norm=post", "stack.mask=none", "stack.activation=relu"}), false, {1.0}},
      {"Pre-RMSNorm causal tanh 1/sqrt(L)",
       with({"stack.norm=pre", "stack.norm_type=rmsnorm", "stack.activation=tanh", "stack.branch_scale=1/sqrt(L)"}),
       false, {1.0}},
      {"Pre-LN causal, 1/sqrt(dh) attention", with({"stack.norm=pre", "stack.qk_scale=1/sqrt(dh)"}), true, {0.5, 1.0}},
      {"no-norm relu MLP with biases",
       with({"stack.norm=none", "stack.blocks=mlp", "stack.activation=relu", "init.sigma_b2=0.2",
             "stack.branch_scale=0.5"}),
       false, {1.0}},
  };
}

struct FitResult {
  std::vector<double> c;  ///< coefficients of d^-p for each rate p
  double chi2 = 0;
  int dof = 0;
};

// Weighted least squares of D(d) = sum_k c_k d^-p_k (errors s), with its chi^2.
FitResult fit_rate(const std::vector<double>& d, const std::vector<double>& D, const std::vector<double>& s,
                   const std::vector<double>& rates) {
  const auto n = static_cast<Eigen::Index>(d.size()), k = static_cast<Eigen::Index>(rates.size());
  Eigen::MatrixXd A(n, k);
  Eigen::VectorXd b(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < k; ++j) A(i, j) = std::pow(d[i], -rates[j]) / s[i];
    b(i) = D[i] / s[i];
  }
  const Eigen::VectorXd c = A.colPivHouseholderQr().solve(b);
  FitResult r;
  r.c.assign(c.data(), c.data() + k);
  r.chi2 = (A * c - b).squaredNorm();
  r.dof = static_cast<int>(n - k);
  return r;
}

// chi^2 quantiles at p = 1e-4 for 1 and 2 degrees of freedom.
double chi2_threshold(int dof) { return dof == 1 ? 15.14 : 18.42; }

// Runs every spec at the given widths and checks the fit; returns a table for the log.
std::string check_convergence(const std::vector<int>& widths, int samples, const std::string& sampling) {
  std::ostringstream table;
  table << fmt::format("| spec | metric | layer | theory | D(d) = MC - theory (s.e.) at d = {} | c | chi2 |\n",
                       fmt::join(widths, ", "));
  for (const auto& cs : conv_specs()) {
    std::vector<sigprop::Profile> mc;
    sigprop::Profile th;
    for (int d : widths) {
      sigprop::StackSpec s;
      for (const auto& a : cs.sets) sigprop::apply_override(s, a);
      s.width = d;
      s.heads = cs.heads_grow ? static_cast<int>(std::lround(std::sqrt(d))) : 4;
      s.validate();
      sigprop::sim::SimSettings st;
      st.samples = samples;
      st.seed = 20261127;
      st.backend = "cpu";
      st.precision = "double";
      st.weights_sampling = sampling;
      mc.push_back(sigprop::sim::MonteCarloEngine(st).run(s));
      if (th.rows.empty()) th = sigprop::theory::TheoryEngine().run(s);  // width-free
    }
    const int L = th.layers() - 1;
    for (const auto& m : sigprop::metric_names()) {
      for (int l : {1, L}) {
        std::vector<double> dd, D, se;
        const double t = th.at(l, m);
        const double ts = th.has(m + "_se") && std::isfinite(th.at(l, m + "_se")) ? th.at(l, m + "_se") : 0.0;
        std::string cells;
        for (std::size_t i = 0; i < widths.size(); ++i) {
          dd.push_back(widths[i]);
          D.push_back(mc[i].at(l, m) - t);
          se.push_back(std::hypot(mc[i].at(l, m + "_se"), ts));
          cells += fmt::format("{}{:+.4f} ({:.4f})", i ? ", " : "", D.back(), se.back());
        }
        const FitResult f = fit_rate(dd, D, se, cs.rates);
        table << fmt::format("| {} | {} | {} | {:.4f} | {} | {:+.3f} | {:.2f} ({} dof) |\n", cs.name, m, l, t, cells,
                             fmt::join(f.c, ", "), f.chi2, f.dof);
        INFO(cs.name << ": " << m << " at layer " << l << ", theory " << t << ", deviations " << cells
                     << ", fitted c = " << fmt::format("{:+.4f}", fmt::join(f.c, ", ")) << " for rates d^-"
                     << fmt::format("{}", fmt::join(cs.rates, ", d^-")));
        CHECK(mc.back().settings["weights_sampling"] == sampling);
        CHECK(std::isfinite(f.chi2));
        CHECK(f.chi2 < chi2_threshold(f.dof));
      }
    }
  }
  return table.str();
}

}  // namespace

TEST_CASE("Monte Carlo converges to theory at the finite-width rate: d = 16 64 256", "[stochastic][sim]") {
  const std::string t = check_convergence({16, 64, 256}, 48, "explicit");
  SUCCEED(t);
}

TEST_CASE("Monte Carlo converges to theory at the finite-width rate, conditional sampling: d = 16 64 256",
          "[stochastic][sim]") {
  const std::string t = check_convergence({16, 64, 256}, 48, "conditional");
  SUCCEED(t);
}

// A width explicit sampling could not afford in a test (d^2 = 2.7e8 weights per matrix): the
// conditional Monte Carlo at d = 16384 on the same fit. Separate checks from the tests above
// (another 70, same p = 1e-4 each).
TEST_CASE("conditional Monte Carlo converges to theory: d = 256 1024 16384", "[stochastic][sim][.slow]") {
  const std::string t = check_convergence({256, 1024, 16384}, 48, "conditional");
  WARN(t);
}

TEST_CASE("Monte Carlo converges to theory at the finite-width rate: d = 64 256 1024", "[stochastic][sim][.slow]") {
  const std::string t = check_convergence({64, 256, 1024}, 64, "explicit");
  WARN(t);  // the table for the record (docs/simulate.md)
}

TEST_CASE("the convergence check rejects a width-independent disagreement", "[stochastic][sim]") {
  // Power of the test above: a constant offset of 5 standard errors at the largest width
  // fails the one-rate fit (c/d); the two-rate fit (c1 d^-1/2 + c2/d, used for 1/sqrt(dh)
  // attention) is weaker and needs 20 standard errors. An exact c/d bias passes.
  const std::vector<double> d = {16, 64, 256}, s = {0.02, 0.01, 0.005};
  const std::vector<double> offset = {0.025, 0.025, 0.025};
  CHECK(fit_rate(d, offset, s, {1.0}).chi2 > chi2_threshold(2));
  CHECK(fit_rate(d, offset, s, {0.5, 1.0}).chi2 < chi2_threshold(1));
  const std::vector<double> big_offset = {0.1, 0.1, 0.1};
  CHECK(fit_rate(d, big_offset, s, {0.5, 1.0}).chi2 > chi2_threshold(1));
  const std::vector<double> exact = {1.0 / 16, 1.0 / 64, 1.0 / 256};
  const FitResult f = fit_rate(d, exact, s, {1.0});
  CHECK(f.chi2 == Approx(0).margin(1e-20));
  CHECK(f.c[0] == Approx(1.0));
}
