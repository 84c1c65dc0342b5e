// Jacobian spectra: free-probability theory (theory/spectrum.hpp) against closed forms, and the
// finite-width Monte Carlo (sim/jacobian.hpp) against exact finite-d results, the theory, and
// the hand-written backward pass.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "sim/jacobian.hpp"
#include "theory/engine.hpp"
#include "theory/gauss.hpp"
#include "theory/spectrum.hpp"
#include "tolerance.hpp"

using namespace sigprop;

namespace {

constexpr double kPi = std::numbers::pi;

StackSpec dense(const std::string& act, int depth, double sw2, bool residual = false,
                const std::string& weights = "gaussian") {
  StackSpec s;
  for (const std::string& o :
       {std::string("stack.blocks=dense"), std::string("stack.norm=none"), "stack.activation=" + act,
        "stack.depth=" + std::to_string(depth), "init.sigma_w2=" + std::to_string(sw2),
        std::string("stack.residual=") + (residual ? "true" : "false"), "init.weights=" + weights,
        std::string("stack.tokens=2"), std::string("stack.heads=1")})
    apply_override(s, o);
  return s;
}

// Fuss-Catalan law of the squared singular values of a product of s square Ginibre matrices
// (variance 1/d): parametrisation of Haagerup & Moller 2012 / Neuschel 2014, phi in (0, pi/(s+1)).
double fc_x(int s, double p) {
  return std::pow(std::sin((s + 1) * p), s + 1) / (std::sin(p) * std::pow(std::sin(s * p), s));
}
double fc_density(int s, double p) {
  return std::pow(std::sin(p), 2) * std::pow(std::sin(s * p), s - 1) / (kPi * std::pow(std::sin((s + 1) * p), s));
}
double binom(int n, int k) {
  double r = 1;
  for (int i = 1; i <= k; ++i) r = r * (n - k + i) / i;
  return r;
}

// Grid x_i = hi t_i^p, t_i = i/n (i = 1..n): integrable singularities rho ~ x^{-1+e} at 0 (products
// of Gaussian factors: x^{-L/(L+1)}) become bounded integrands in t when p e >= 1.
std::vector<double> power_grid(double hi, int n, int p) {
  std::vector<double> x(n);
  for (int i = 1; i <= n; ++i) x[i - 1] = hi * std::pow(static_cast<double>(i) / n, p);
  return x;
}

// Cumulative integral of rho over [0, x_i] on a power_grid (trapezoid in t; the integrand
// rho(x) dx/dt -> 0 at t = 0 is taken as 0 there).
std::vector<double> power_grid_cdf(const std::vector<double>& x, const std::vector<double>& rho, int p) {
  const size_t n = x.size();
  std::vector<double> c(n);
  auto f = [&](size_t i) {  // rho(x) dx/dt at t_i = (i+1)/n; unsolved points (NaN) count as 0
    const double t = static_cast<double>(i + 1) / n;
    return std::isfinite(rho[i]) ? rho[i] * p * x[i] / t : 0.0;
  };
  c[0] = 0.5 * f(0) / n;
  for (size_t i = 1; i < n; ++i) c[i] = c[i - 1] + 0.5 * (f(i) + f(i - 1)) / n;
  return c;
}

// Moments k = 0, 1, 2 of rho on a power_grid.
std::vector<double> power_grid_moments(const std::vector<double>& x, const std::vector<double>& rho, int p) {
  std::vector<double> m(3);
  for (int k = 0; k < 3; ++k) {
    std::vector<double> r(rho.size());
    for (size_t i = 0; i < rho.size(); ++i) r[i] = rho[i] * std::pow(x[i], k);
    m[k] = power_grid_cdf(x, r, p).back();
  }
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [analytic]: free-probability moments and densities against closed forms

TEST_CASE("linear Gaussian products: mean sigma^{2l}, variance l sigma^{4l} (Fuss-Catalan)", "[analytic][spectrum]") {
  for (double sw2 : {1.0, 0.7}) {
    const auto m = theory::spectrum_moments(dense("linear", 12, sw2));
    for (int l = 0; l <= 12; ++l) {
      const double mean = std::pow(sw2, l);
      SIGPROP_CHECK_CLOSE(m.mean[l], mean, (test::Tol{0, 1e-14}));
      SIGPROP_CHECK_CLOSE(m.var[l], l * mean * mean, (test::Tol{1e-15, 1e-13}));  // FC_l(2) - 1 = l at sigma_w2 = 1
    }
  }
  // A branch scale a without the residual scales each layer's Jacobian by a: mean (a^2 sigma_w2)^l.
  StackSpec s = dense("linear", 5, 1.0);
  apply_override(s, "stack.branch_scale=0.5");
  const auto m = theory::spectrum_moments(s);
  SIGPROP_CHECK_CLOSE(m.mean[5], std::pow(0.25, 5), (test::Tol{0, 1e-14}));
  SIGPROP_CHECK_CLOSE(m.var[5], 5 * std::pow(0.25, 10), (test::Tol{0, 1e-13}));
  // Its density is the Fuss-Catalan one rescaled: rho_a(x) = rho(x / c) / c, c = a^{2L}.
  const double c = std::pow(0.25, 5), x = 0.5;
  const auto da = theory::spectrum_density(s, {x * c});
  const auto d1 = theory::spectrum_density(dense("linear", 5, 1.0), {x});
  SIGPROP_CHECK_CLOSE(da.density[0] * c, d1.density[0], (test::Tol{0, 1e-7}));
}

TEST_CASE("linear orthogonal products are exactly isometric; relu is never", "[analytic][spectrum]") {
  const auto lin = theory::spectrum_moments(dense("linear", 50, 1.0, false, "orthogonal"));
  for (int l = 0; l <= 50; ++l) {
    CHECK(lin.mean[l] == 1.0);
    CHECK(std::abs(lin.var[l]) <= 1e-15);
  }
  // relu at criticality (sigma_w2 = 2): mu1 = 1/2, mu2 = 1/2, so Var = l (mu2/mu1^2 - 1) = l for
  // orthogonal W and l mu2/mu1^2 = 2 l for Gaussian W (Pennington et al. 2017, eqs. 16-17).
  for (const char* w : {"gaussian", "orthogonal"}) {
    const auto r = theory::spectrum_moments(dense("relu", 40, 2.0, false, w));
    const double per_layer = std::string(w) == "gaussian" ? 2.0 : 1.0;
    for (int l = 0; l <= 40; ++l) {
      SIGPROP_CHECK_CLOSE(r.mean[l], 1.0, (test::Tol{0, 1e-14}));
      SIGPROP_CHECK_CLOSE(r.var[l], per_layer * l, (test::Tol{1e-14, 1e-13}));
    }
    CHECK(r.atom0 == 0.5);  // half the derivatives vanish: rank d/2
  }
}

TEST_CASE("tanh with orthogonal weights approaches isometry as q* -> 0; with Gaussian weights it cannot",
          "[analytic][spectrum]") {
  // Critical line chi1 = sigma_w2 E[phi'(h)^2] = 1: at small q the law of phi'^2 concentrates at 1,
  // so the per-layer variance mu2/mu1^2 - 1 -> 0 (orthogonal) while Gaussian W adds 1 per layer.
  double prev = 1e9;
  for (double q : {1.0, 0.1, 0.01}) {
    const theory::DiscreteLaw law = theory::deriv_sq_law(Activation::Tanh, q);
    StackSpec s = dense("tanh", 20, 1.0, false, "orthogonal");
    s.sigma_w2 = 1.0 / law.mu1;
    s.q0 = q;
    // Keep q at q0 for every layer: sigma_b2 = q - sigma_w2 E[tanh(h)^2].
    const theory::ActKernel ak(Activation::Tanh);
    const double sb2 = q - s.sigma_w2 * ak.k(q, q, q);
    REQUIRE(sb2 >= 0);
    s.sigma_b2 = sb2;
    const auto o = theory::spectrum_moments(s);
    SIGPROP_CHECK_CLOSE(o.mean.back(), 1.0, (test::Tol{0, 1e-9}));
    CHECK(o.var.back() < prev);
    prev = o.var.back();
    s.weights = WeightDist::Gaussian;
    CHECK(theory::spectrum_moments(s).var.back() > 20.0);
  }
  CHECK(prev < 0.05);
}

TEST_CASE("law of phi'^2: mean is the dual kernel kd(q, q, q); E[phi'^4] in closed form for erf and relu",
          "[analytic][spectrum]") {
  for (Activation a : {Activation::Tanh, Activation::Erf, Activation::Gelu, Activation::Silu, Activation::Relu}) {
    const theory::ActKernel ak(a);
    for (double q : {0.05, 1.0, 7.0}) {
      const auto law = theory::deriv_sq_law(a, q);
      INFO(to_string(a) << " q=" << q);
      SIGPROP_CHECK_CLOSE(law.mu1, ak.kd(q, q, q), (test::Tol{1e-13, 1e-11}));
    }
  }
  for (double q : {0.05, 1.0, 7.0}) {
    // erf: phi'^4 = (16/pi^2) exp(-4 h^2), E = 16 / (pi^2 sqrt(1 + 8 q)).
    SIGPROP_CHECK_CLOSE(theory::deriv_sq_law(Activation::Erf, q).mu2, 16.0 / (kPi * kPi * std::sqrt(1 + 8 * q)), (test::Tol{0, 1e-12}));
  }
}

TEST_CASE("density of linear Gaussian products is the Fuss-Catalan law", "[analytic][spectrum]") {
  for (int s : {1, 2, 3, 6}) {
    // The parametrisation itself: its moments are the Fuss-Catalan numbers C(k(s+1), k)/(sk+1).
    const double b = kPi / (s + 1);
    const int N = 20000;
    double m[3] = {0, 0, 0};
    for (int i = 0; i < N; ++i) {
      const double p = b * (i + 0.5) / N, h = 1e-7;
      const double dx = std::abs(fc_x(s, p + h) - fc_x(s, p - h)) / (2 * h);
      for (int k = 0; k < 3; ++k) m[k] += fc_density(s, p) * std::pow(fc_x(s, p), k) * dx * b / N;
    }
    for (int k = 0; k < 3; ++k) SIGPROP_CHECK_CLOSE(m[k], binom((s + 1) * k, k) / (s * k + 1), (test::Tol{0, 2e-4}));
    // The solver's density at the same points.
    std::vector<double> x, ref;
    for (double f : {0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98}) {
      x.push_back(fc_x(s, f * b));
      ref.push_back(fc_density(s, f * b));
    }
    const auto d = theory::spectrum_density(dense("linear", s, 1.0), x);
    CHECK(d.failed == 0);
    for (size_t i = 0; i < x.size(); ++i) {
      INFO("s=" << s << " x=" << x[i]);
      SIGPROP_CHECK_CLOSE(d.density[i], ref[i], (test::Tol{1e-12, 1e-6}));  // eta = 1e-9 x smoothing and Newton tolerance
    }
  }
}

TEST_CASE("densities integrate to 1 - atom0 and reproduce the free-probability moments", "[analytic][spectrum]") {
  // The density is solved independently at each grid point; its integrals must give the mass
  // 1 - atom0 and the moments, which come from the S-transform's first two coefficients only.
  StackSpec tanh_o = dense("tanh", 6, 1.3, false, "orthogonal");
  tanh_o.sigma_b2 = 0.05;
  // Gaussian W with a smooth phi: small q keeps the law of phi'^2 away from 0 (its tail towards 0,
  // where the discretised law is coarse, then carries no visible mass).
  StackSpec erf_g = dense("erf", 3, 0.8);
  erf_g.q0 = 0.05;
  StackSpec relu_o = dense("relu", 3, 2.0, false, "orthogonal");
  StackSpec relu_g = dense("relu", 2, 2.0);
  StackSpec lin_g = dense("linear", 3, 1.0);
  for (const StackSpec& s : {tanh_o, erf_g, relu_o, relu_g, lin_g}) {
    const auto mom = theory::spectrum_moments(s);
    // Support within [0, prod_l sigma_w2 max phi'^2 (x 4 per Gaussian layer: Marchenko-Pastur edge)].
    const double gmax = s.activation == Activation::Erf ? 4.0 / kPi : 1.0;
    const double wmax = s.weights == WeightDist::Gaussian ? 4.0 : 1.0;
    const double hi = std::min(std::pow(s.sigma_w2 * gmax * wmax, s.depth),
                               mom.mean.back() + 40 * std::sqrt(mom.var.back()));
    const int p = 4;
    const auto x = power_grid(hi, 1500, p);
    const auto d = theory::spectrum_density(s, x);
    INFO(to_string(s.activation) << " " << to_string(s.weights));
    // Far below the smallest atoms of the discretised law of phi'^2 (x < 1e-9 hi) the solver may give
    // up (NaN); that region holds < 1e-4 of the mass here.
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(d.density[i])) CHECK(x[i] < 1e-9 * hi);
    const auto m = power_grid_moments(x, d.density, p);
    // Trapezoid in t on 1500 points of densities with square-root edges: error well below 1e-3.
    SIGPROP_CHECK_CLOSE(m[0], 1.0 - d.atom0, (test::Tol{1e-3, 0}));
    SIGPROP_CHECK_CLOSE(m[1], mom.mean.back(), (test::Tol{0, 1e-3}));
    SIGPROP_CHECK_CLOSE(m[2], mom.var.back() + mom.mean.back() * mom.mean.back(), (test::Tol{0, 2e-3}));
  }
}

TEST_CASE("residual linear stacks: free multiplicative closed forms per layer", "[analytic][spectrum]") {
  // (I + a W)(I + a W)^T per layer: mean 1 + s, Var/mean^2 = (2s + s^2)/(1+s)^2 (Gaussian, circular W)
  // or 2s/(1+s)^2 (orthogonal: eigenvalues 1 + a^2 + 2a cos(theta), theta uniform), s = a^2 sigma_w2;
  // free layers add Var/mean^2.
  for (const char* w : {"gaussian", "orthogonal"}) {
    StackSpec sp = dense("linear", 16, 1.0, true, w);
    apply_override(sp, "stack.branch_scale=\"1/sqrt(L)\"");
    const auto m = theory::spectrum_moments(sp);
    const double s = 1.0 / 16, v = std::string(w) == "gaussian" ? (2 * s + s * s) : 2 * s;
    for (int l = 0; l <= 16; ++l) {
      const double mean = std::pow(1 + s, l);
      SIGPROP_CHECK_CLOSE(m.mean[l], mean, (test::Tol{0, 1e-13}));
      SIGPROP_CHECK_CLOSE(m.var[l], mean * mean * l * v / ((1 + s) * (1 + s)), (test::Tol{1e-14, 1e-12}));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Monte Carlo: exact at finite width, parity with the backward pass, approach to the theory

TEST_CASE("Monte Carlo of linear Gaussian products matches the exact finite-d moments", "[stochastic][spectrum]") {
  // For P' = P W, W d x d iid N(0, 1/d), A = P^T P, s = E[tau(A)^2], t = E[tau(A^2)] (Wick):
  //   s' = s + 2 t / d^2,  t' = (1 + 1/d) t + s,   E tau(A) = 1.
  // The per-sample variance tau(A^2) - tau(A)^2 has expectation t - s. 5 standard errors: two-sided
  // false-alarm rate 6e-7 per check (normal approximation, 64 samples), 2 x 5 checks.
  const int d = 32, L = 5;
  StackSpec s = dense("linear", L, 1.0);
  s.width = d;
  sim::JacobianSettings st;
  st.samples = 64;
  st.seed = 11;
  const Profile p = sim::jacobian_profile(s, st, {});
  double S = 1, T = 1;
  for (int l = 1; l <= L; ++l) {
    const double S2 = S + 2 * T / (double(d) * d), T2 = (1 + 1.0 / d) * T + S;
    S = S2;
    T = T2;
    INFO("layer " << l);
    CHECK(std::abs(p.at(l, "sv2_mean") - 1.0) <= 5 * p.at(l, "sv2_mean_se"));
    CHECK(std::abs(p.at(l, "sv2_var") - (T - S)) <= 5 * p.at(l, "sv2_var_se"));
  }
}

TEST_CASE("Monte Carlo with orthogonal weights: linear stacks are isometric to rounding", "[analytic][spectrum]") {
  StackSpec s = dense("linear", 6, 1.3, false, "orthogonal");
  s.width = 48;
  sim::JacobianSettings st;
  st.samples = 2;
  std::vector<std::vector<double>> sv2;
  sim::jacobian_profile(s, st, {}, &sv2);
  for (auto& v : sv2)
    for (double x : v) SIGPROP_CHECK_CLOSE(x, std::pow(1.3, 6), (test::Tol{0, 1e-12}));
}

TEST_CASE("explicit Jacobian equals the one built from the hand-written backward pass", "[parity][spectrum]") {
  // Same Philox streams: the explicit per-token product and the reference backend's block_backward
  // applied to unit vectors must give the same squared singular values (to rounding).
  for (const char* act : {"relu", "tanh", "gelu"})
    for (bool residual : {false, true})
      for (const char* map : {"token", "full"}) {
        StackSpec s = dense(act, 3, 1.5, residual);
        apply_override(s, "stack.branch_scale=0.8");
        s.width = 12;
        s.tokens = 3;
        s.sigma_b2 = 0.1;
        sim::JacobianSettings a;
        a.samples = 1;
        a.seed = 5;
        a.map = map;
        a.method = "explicit";
        sim::JacobianSettings b = a;
        b.method = "backward";
        const auto ja = sim::jacobian_sample(s, a, 0), jb = sim::jacobian_sample(s, b, 0);
        INFO(act << " residual=" << residual << " map=" << map);
        REQUIRE(ja.sv2.size() == jb.sv2.size());
        const double scale = ja.sv2.back();
        for (size_t i = 0; i < ja.sv2.size(); ++i) SIGPROP_CHECK_CLOSE(ja.sv2[i], jb.sv2[i], (test::Tol{1e-12 * scale, 1e-10}));
        for (int l = 0; l <= s.depth; ++l) {
          SIGPROP_CHECK_CLOSE(ja.m1[l], jb.m1[l], (test::Tol{0, 1e-11}));
          SIGPROP_CHECK_CLOSE(ja.m2[l], jb.m2[l], (test::Tol{0, 1e-11}));
        }
      }
}

TEST_CASE("Jacobian Monte Carlo is identical for any thread count", "[repro][spectrum]") {
  StackSpec s = dense("tanh", 4, 1.5, true, "orthogonal");
  s.width = 24;
  sim::JacobianSettings a;
  a.samples = 5;
  a.seed = 3;
  a.threads = 1;
  sim::JacobianSettings b = a;
  b.threads = 3;
  const std::vector<double> grid{0.5, 1.0, 1.5, 2.0, 2.5};
  CHECK(sim::jacobian_profile(s, a, grid).to_json().dump() == sim::jacobian_profile(s, b, grid).to_json().dump());
}

TEST_CASE("finite-width Jacobian moments approach the free-probability prediction", "[stochastic][spectrum]") {
  // |MC - theory| <= 5 SE + c L/d |theory|: 5 SE (two-sided normal tail 6e-7 per check) for the
  // sampling error, plus a finite-size allowance c L/d with c = 1 (corrections to these moments are
  // O(L/d) relative, Hanin & Rolnick 2018; the exact linear case above has (L-1)L/(2d) in Var/l,
  // and the measured bias at d = 64..512 for these stacks is below 0.5 L/d).
  struct Case {
    const char* name;
    StackSpec s;
  };
  StackSpec relu_g = dense("relu", 6, 2.0);
  StackSpec tanh_o = dense("tanh", 6, 1.5, false, "orthogonal");
  StackSpec relu_res = dense("relu", 6, 1.0, true);
  apply_override(relu_res, "stack.branch_scale=\"1/sqrt(L)\"");
  StackSpec gelu_res_o = dense("gelu", 6, 1.0, true, "orthogonal");
  apply_override(gelu_res_o, "stack.branch_scale=0.5");
  for (const Case& c : {Case{"relu dense gaussian", relu_g}, Case{"tanh dense orthogonal", tanh_o},
                        Case{"relu residual gaussian", relu_res}, Case{"gelu residual orthogonal", gelu_res_o}}) {
    const auto th = theory::spectrum_moments(c.s);
    for (int d : {48, 128}) {
      StackSpec s = c.s;
      s.width = d;
      sim::JacobianSettings st;
      st.samples = 16;
      st.seed = 2024;
      const Profile p = sim::jacobian_profile(s, st, {});
      for (int l = 1; l <= s.depth; ++l) {
        INFO(c.name << " d=" << d << " layer " << l);
        const double fs = 1.0 * l / d;
        CHECK(std::abs(p.at(l, "sv2_mean") - th.mean[l]) <= 5 * p.at(l, "sv2_mean_se") + fs * th.mean[l]);
        CHECK(std::abs(p.at(l, "sv2_var") - th.var[l]) <= 5 * p.at(l, "sv2_var_se") + fs * th.var[l]);
      }
    }
  }
}

TEST_CASE("finite-width spectra match the free-probability density (Kolmogorov-Smirnov)", "[stochastic][spectrum]") {
  // Pooled squared singular values of 8 samples at d = 192 against the theory CDF (trapezoid of the
  // density on a 1500-point power grid, mass error < 2e-3, checked). Within a sample eigenvalues repel, so the pooled
  // empirical CDF fluctuates less than an iid sample: the iid KS bound 1.95/sqrt(n) = 0.050 (false-alarm
  // rate 1e-3) is conservative for sampling and leaves room for the O(1/d) finite-size shift of the law
  // (measured D = 0.006 to 0.011 for these three stacks).
  StackSpec tanh_o = dense("tanh", 4, 1.5, false, "orthogonal");
  tanh_o.sigma_b2 = 0.02;
  StackSpec lin_g = dense("linear", 2, 1.0);
  StackSpec erf_g = dense("erf", 3, 0.8);
  erf_g.q0 = 0.05;
  for (StackSpec s : {tanh_o, lin_g, erf_g}) {
    s.width = 192;
    const auto mom = theory::spectrum_moments(s);
    const int p = 4;
    const double hi = theory::default_spectrum_grid(mom, 2).back() * 4;
    const auto x = power_grid(hi, 1500, p);
    const auto d = theory::spectrum_density(s, x);
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(d.density[i])) CHECK(x[i] < 1e-9 * hi);
    const auto cdf = power_grid_cdf(x, d.density, p);
    INFO(to_string(s.activation) << " " << to_string(s.weights) << " total mass " << cdf.back());
    CHECK(std::abs(cdf.back() - 1.0) < 2e-3);
    sim::JacobianSettings st;
    st.samples = 8;
    st.seed = 77;
    std::vector<std::vector<double>> sv2;
    sim::jacobian_profile(s, st, {}, &sv2);
    std::vector<double> all;
    for (auto& v : sv2) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    const double n = static_cast<double>(all.size());
    double D = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      const size_t k = std::lower_bound(x.begin(), x.end(), all[i]) - x.begin();
      const double F = k >= x.size() ? 1.0 : cdf[k];
      D = std::max({D, std::abs(F - i / n), std::abs(F - (i + 1) / n)});
    }
    INFO("KS D = " << D << " n = " << n);
    CHECK(D <= 1.95 / std::sqrt(n));
  }
}

// ---------------------------------------------------------------------------------------------
// [config]: what is not implemented says so, naming the key

TEST_CASE("orthogonal weights: engines that do not implement them reject them naming init.weights",
          "[config][spectrum]") {
  StackSpec s;
  apply_override(s, "init.weights=orthogonal");
  CHECK(spec_to_json(s)["init"]["weights"] == "orthogonal");
  CHECK(parse_spec_toml(to_toml(s)).weights == WeightDist::Orthogonal);
  CHECK_THROWS_WITH(apply_override(s, "init.weights=haar"), Catch::Contains("init.weights"));
  sim::SimSettings ss;
  ss.samples = 1;
  sim::MonteCarloEngine mc(ss);
  CHECK_THROWS_AS(mc.run(s), ConfigError);
  CHECK_THROWS_WITH(mc.run(s), Catch::Contains("init.weights"));
  theory::TheoryEngine te{theory::TheorySettings{}};
  CHECK_THROWS_WITH(te.run(s), Catch::Contains("init.weights"));
  // The spectrum theory covers dense stacks only; the backward Monte Carlo Gaussian weights only.
  CHECK_THROWS_WITH(theory::spectrum_moments(s), Catch::Contains("stack.blocks"));
  StackSpec t = s;
  t.width = 16;
  t.heads = 2;
  t.tokens = 2;
  sim::JacobianSettings js;
  CHECK_THROWS_WITH(sim::jacobian_sample(t, js, 0), Catch::Contains("init.weights"));
  StackSpec r = dense("relu", 2, 2.0, true);
  CHECK_THROWS_WITH(theory::spectrum_density(r, {1.0}), Catch::Contains("stack.residual"));
  js.map = "both";
  CHECK_THROWS_WITH(sim::jacobian_sample(r, js, 0), Catch::Contains("map:"));
  js.map = "token";
  js.token = 7;
  CHECK_THROWS_WITH(sim::jacobian_sample(r, js, 0), Catch::Contains("token:"));
}

TEST_CASE("finite-width bias of the Jacobian moments shrinks like depth/width", "[stochastic][spectrum][.slow]") {
  // Deeper stacks and widths up to 512: |MC - theory| <= 5 SE + 0.5 (l/d) |theory| at every layer
  // and width. The allowance shrinks like 1/d, so a bias that did not vanish as d grows fails at d = 512.
  StackSpec relu_g = dense("relu", 16, 2.0);
  StackSpec tanh_o = dense("tanh", 16, 1.76, false, "orthogonal");
  tanh_o.sigma_b2 = 0.05;
  StackSpec relu_res = dense("relu", 16, 1.0, true);
  apply_override(relu_res, "stack.branch_scale=\"1/sqrt(L)\"");
  StackSpec tanh_res_o = dense("tanh", 16, 1.5, true, "orthogonal");
  apply_override(tanh_res_o, "stack.branch_scale=0.5");
  for (const StackSpec& base : {relu_g, tanh_o, relu_res, tanh_res_o}) {
    const auto th = theory::spectrum_moments(base);
    for (int d : {64, 128, 256, 512}) {
      StackSpec s = base;
      s.width = d;
      sim::JacobianSettings st;
      st.samples = 8192 / d;
      st.seed = 99;
      const Profile p = sim::jacobian_profile(s, st, {});
      for (int l = 1; l <= s.depth; ++l) {
        INFO(to_string(s.activation) << " residual=" << s.residual << " " << to_string(s.weights) << " d=" << d
                                     << " layer " << l);
        const double fs = 0.5 * l / d;
        CHECK(std::abs(p.at(l, "sv2_mean") - th.mean[l]) <= 5 * p.at(l, "sv2_mean_se") + fs * th.mean[l]);
        CHECK(std::abs(p.at(l, "sv2_var") - th.var[l]) <= 5 * p.at(l, "sv2_var_se") + fs * th.var[l]);
      }
    }
  }
}
