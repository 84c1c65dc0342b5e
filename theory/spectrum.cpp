#include "theory/spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

#include <fmt/format.h>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "sigprop/version.hpp"
#include "theory/gauss.hpp"

#include <Eigen/Dense>

namespace sigprop::theory {
namespace {

using cplx = std::complex<double>;
constexpr double kPi = std::numbers::pi;

bool even_derivative(Activation a) {
  return a == Activation::Tanh || a == Activation::Erf;
}

// The one nonzero atom of a law with at most one (relu, linear): psi = p c z / (1 - c z)
// inverts in closed form to z = m / (c (p + m)).
bool two_point(const DiscreteLaw& law, double& c, double& p) {
  int nz = 0;
  for (size_t i = 0; i < law.g.size(); ++i)
    if (law.g[i] != 0.0 && law.w[i] != 0.0) {
      ++nz;
      c = law.g[i];
      p = law.w[i];
    }
  return nz == 1;
}

// One group of layers whose D^2 laws are identical (same activation and q).
struct Group {
  DiscreteLaw law;
  int count = 0;
  bool closed = false;  // two-point law: chi in closed form
  double c = 1, p = 1;
  // chi(m): the z with psi(z) = m, by Newton from z (in/out). False when Newton fails.
  bool chi(cplx m, cplx& z, cplx& dz) const {
    if (closed) {
      z = m / (c * (p + m));
      dz = p / (c * (p + m) * (p + m));
      return std::isfinite(z.real()) && std::isfinite(z.imag());
    }
    double scale = std::abs(m) + 1e-300;
    for (int it = 0; it < 100; ++it) {
      cplx f = law.psi(z) - m;
      cplx d = law.dpsi(z);
      cplx step = f / d;
      // Damped: halve the step while the residual grows (the law's poles sit on the real axis).
      cplx zn = z - step;
      double r0 = std::abs(f);
      for (int h = 0; h < 30 && std::abs(law.psi(zn) - m) > r0; ++h) {
        step *= 0.5;
        zn = z - step;
      }
      z = zn;
      if (!(std::isfinite(z.real()) && std::isfinite(z.imag()))) return false;
      if (std::abs(step) <= 1e-15 * (std::abs(z) + 1e-300) || std::abs(f) <= 1e-15 * scale) {
        dz = 1.0 / law.dpsi(z);
        return true;
      }
    }
    cplx f = law.psi(z) - m;
    dz = 1.0 / law.dpsi(z);
    return std::abs(f) <= 1e-10 * scale;
  }
};

struct ProductSolver {
  std::vector<Group> groups;
  int L = 0;
  bool gaussian = true;
  double log_sw2 = 0;  // log(sigma_w^2 beta^2)
  int max_newton = 200;

  // F(m) = log(X chi_J(m)) with chi_J(m) = ((1+m)/m)^{L-1} prod_g chi_g(m)^{n_g} S_W(m)^L
  // (Pennington 2018 eqs. 8-10 with S_D = chi_D (1+m)/m), reduced to |Im F| <= pi.
  bool eval(cplx X, cplx m, std::vector<cplx>& z, cplx& F, cplx& dF) const {
    cplx s = std::log(X) + static_cast<double>(L - 1) * (std::log(1.0 + m) - std::log(m));
    dF = static_cast<double>(L - 1) * (1.0 / (1.0 + m) - 1.0 / m);
    for (size_t g = 0; g < groups.size(); ++g) {
      cplx dz;
      if (!groups[g].chi(m, z[g], dz)) return false;
      s += static_cast<double>(groups[g].count) * std::log(z[g]);
      dF += static_cast<double>(groups[g].count) * dz / z[g];
    }
    s -= static_cast<double>(L) * log_sw2;
    if (gaussian) {
      s -= static_cast<double>(L) * std::log(1.0 + m);
      dF -= static_cast<double>(L) / (1.0 + m);
    }
    double im = std::remainder(s.imag(), 2 * kPi);
    F = cplx(s.real(), im);
    return std::isfinite(F.real()) && std::isfinite(F.imag()) && std::isfinite(dF.real()) &&
           std::isfinite(dF.imag());
  }

  // Newton on m at X = x + i eta, from (m, z). The solution must lie on the physical branch:
  // psi maps the lower half plane into itself, so Im m <= 0 and Im z_g <= 0.
  bool solve(cplx X, cplx& m, std::vector<cplx>& z) const {
    std::vector<cplx> zt = z;
    cplx F, dF;
    if (!eval(X, m, zt, F, dF)) return false;
    // F sums up to L + 1 logarithms, so its rounding floor is ~1e-16 L |log|: stop at 1e-13 or when
    // the step stalls, and accept |F| <= 1e-10 (chi_J(m) X = 1 to 1e-10 relative).
    for (int it = 0; it < max_newton && std::abs(F) >= 1e-13; ++it) {
      cplx step = F / dF;
      const double r0 = std::abs(F);
      cplx mn = m - step;
      std::vector<cplx> zn = zt;
      cplx Fn, dFn;
      bool ok = eval(X, mn, zn, Fn, dFn);
      for (int h = 0; h < 40 && (!ok || std::abs(Fn) > r0); ++h) {
        step *= 0.5;
        mn = m - step;
        zn = zt;
        ok = eval(X, mn, zn, Fn, dFn);
      }
      if (!ok || std::abs(Fn) > r0) break;  // no descent: stalled at the rounding floor (or lost)
      m = mn;
      zt = zn;
      F = Fn;
      dF = dFn;
      if (std::abs(step) < 1e-15 * (std::abs(m) + 1e-300)) break;
    }
    if (!(std::abs(F) <= 1e-10)) return false;
    const double tol = 1e-8 * (std::abs(m) + 1e-300);
    if (m.imag() > tol) return false;
    for (auto& zg : zt)
      if (zg.imag() > 1e-8 * (std::abs(zg) + 1e-300)) return false;
    z = zt;
    return true;
  }
};


// E[h(u) h(v)], h = phi'^2, (u, v) ~ N(0, [[qa, qa], [qa, qb]]) with qa <= qb: v = u + sqrt(qb - qa) z
// (a residual stream's coordinate at two depths: the later one adds an independent increment).
double joint_deriv_sq(Activation act, double qa, double qb, const GaussLegendre& gl, int panels) {
  if (act == Activation::Linear) return 1.0;
  if (act == Activation::Relu) {
    const double rho = std::sqrt(qa / qb);  // P(u > 0, v > 0) (Sheppard)
    return 0.25 + std::asin(std::min(1.0, rho)) / (2 * kPi);
  }
  const double su = std::sqrt(qa), sz = std::sqrt(std::max(0.0, qb - qa)), width = 20.0 / panels;
  double tot = 0;
  std::vector<double> nodes, wts;
  for (int p = 0; p < panels; ++p)
    for (size_t i = 0; i < gl.x.size(); ++i) {
      const double u = -10.0 + p * width + 0.5 * width * (gl.x[i] + 1.0);
      nodes.push_back(u);
      wts.push_back(0.5 * width * gl.w[i] * std::exp(-0.5 * u * u) / std::sqrt(2 * kPi));
    }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const double u = su * nodes[i], du = act_deriv(act, u);
    double inner = 0;
    for (size_t j = 0; j < nodes.size(); ++j) {
      const double dv = act_deriv(act, u + sz * nodes[j]);
      inner += wts[j] * dv * dv;
    }
    tot += wts[i] * du * du * inner;
  }
  return tot;
}

// Residual stacks, B_l = P_l^T P_l with P_l = P_{l-1} (I + a D_l W_l) (docs/spectrum.md §3). The
// W_l are free circular (Gaussian) or Haar-unitary (orthogonal) elements, free from the algebra of
// every D_k; the D_k are NOT free from each other (a residual coordinate keeps its sign from layer
// to layer) but commute, with joint moments tau(D_j^2 D_k^2) = E[phi'(x_{j-1})^2 phi'(x_{k-1})^2].
// T(f, g) = tau(f B g B) for f, g in {1, D_k^2 (k > l)} obeys, with s = a^2 sigma_w^2, mu1 = tau(D_l^2),
// m1 = tau(B), Y = D_l B D_l (tau(Y) = mu1 m1):
//   T'(f,g) = T(f,g) + s [tau(f) T(g, D_l^2) + tau(g) T(f, D_l^2)] + 2 s tau(fg) mu1 m1^2
//             + s^2 [tau(fg) mu1^2 m1^2 + tau(f) tau(g) T(D_l^2, D_l^2)]  - [orthogonal] s^2 tau(f) tau(g) mu1^2 m1^2,
//   m1' = m1 (1 + s mu1);  tau(B_l^2) = T(1, 1).
double branch_scale_sq(const StackSpec& spec, int l) {
  const double a = half_params(spec, l).a;
  return a * a;
}

void residual_moments(const StackSpec& spec, const SpectrumSettings& st, SpectrumMoments& r) {
  const int L = spec.depth;
  const bool gauss = spec.weights == WeightDist::Gaussian;
  const double sw2 = spec.sigma_w2 * weight_beta(spec) * weight_beta(spec);
  const GaussLegendre gl(st.panel_order);
  const int panels2 = std::max(4, st.panels / 3);
  // Index 0 is the identity, index k = 1..L is D_k^2 (phi' at x_{k-1}, variance q[k-1]).
  Eigen::MatrixXd M(L + 1, L + 1);  // tau(f g)
  std::vector<double> tau(L + 1, 1.0);
  for (int k = 1; k <= L; ++k) tau[k] = r.mu1[k];
  for (int j = 0; j <= L; ++j) M(0, j) = M(j, 0) = tau[j];
  for (int j = 1; j <= L; ++j) {
    M(j, j) = r.mu2[j];
    for (int k = j + 1; k <= L; ++k)
      M(j, k) = M(k, j) = joint_deriv_sq(spec.activation, r.q[j - 1], r.q[k - 1], gl, panels2);
  }
  Eigen::MatrixXd T = M;  // B_0 = I
  double m1 = 1.0;
  for (int l = 1; l <= L; ++l) {
    const double s = branch_scale_sq(spec, l) * sw2, mu1 = tau[l], Tll = T(l, l);
    const double mm = mu1 * m1 * m1, y2 = mu1 * mu1 * m1 * m1;
    Eigen::VectorXd col = T.col(l);
    // Only f, g in {1, D_k^2 : k > l} are needed from here on.
    std::vector<int> idx{0};
    for (int k = l + 1; k <= L; ++k) idx.push_back(k);
    for (int f : idx)
      for (int g : idx) {
        if (g < f) continue;
        double v = T(f, g) + s * (tau[f] * col[g] + tau[g] * col[f]) + 2 * s * M(f, g) * mm +
                   s * s * (M(f, g) * y2 + tau[f] * tau[g] * Tll);
        if (!gauss) v -= s * s * tau[f] * tau[g] * y2;
        T(f, g) = T(g, f) = v;
      }
    m1 *= 1.0 + s * mu1;
    r.mean[l] = m1;
    r.var[l] = T(0, 0) - m1 * m1;
  }
}

}  // namespace

cplx DiscreteLaw::psi(cplx z) const {
  cplx s = 0;
  for (size_t i = 0; i < g.size(); ++i) s += w[i] * z * g[i] / (1.0 - z * g[i]);
  return s;
}

cplx DiscreteLaw::dpsi(cplx z) const {
  cplx s = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    cplx u = 1.0 - z * g[i];
    s += w[i] * g[i] / (u * u);
  }
  return s;
}

DiscreteLaw deriv_sq_law(Activation act, double q, const SpectrumSettings& st) {
  DiscreteLaw law;
  if (act == Activation::Linear) {
    law.g = {1.0};
    law.w = {1.0};
  } else if (act == Activation::Relu) {
    // phi'(h) = 1{h > 0}: P(g = 1) = P(g = 0) = 1/2 for any q > 0.
    law.g = {0.0, 1.0};
    law.w = {0.5, 0.5};
  } else {
    if (st.panels < 1 || st.panel_order < 2) throw ConfigError("spectrum: quadrature panels must be >= 1, order >= 2");
    // Composite Gauss-Legendre in u = h / sqrt(q) on [-10, 10] (on [0, 10] with doubled weights
    // when phi'^2 is even); the Gaussian mass beyond 10 is 1.5e-23.
    const GaussLegendre gl(st.panel_order);
    const bool even = even_derivative(act);
    const double lo = even ? 0.0 : -10.0, hi = 10.0, width = (hi - lo) / st.panels;
    const double sq = std::sqrt(q);
    for (int p = 0; p < st.panels; ++p) {
      const double a = lo + p * width;
      for (size_t i = 0; i < gl.x.size(); ++i) {
        const double u = a + 0.5 * width * (gl.x[i] + 1.0);
        const double pdf = std::exp(-0.5 * u * u) / std::sqrt(2 * kPi);
        const double d = act_deriv(act, sq * u);
        law.g.push_back(d * d);
        law.w.push_back((even ? 2.0 : 1.0) * 0.5 * width * gl.w[i] * pdf);
      }
    }
  }
  double tot = 0;
  for (double w : law.w) tot += w;
  for (double& w : law.w) w /= tot;  // removes the 1e-23 truncation exactly
  for (size_t i = 0; i < law.g.size(); ++i) {
    law.mu1 += law.w[i] * law.g[i];
    law.mu2 += law.w[i] * law.g[i] * law.g[i];
    if (law.g[i] == 0.0) law.atom0 += law.w[i];
  }
  return law;
}

void check_spectrum_spec(const StackSpec& spec) {
  spec.validate();
  if (spec.blocks != Blocks::Dense)
    throw ConfigError(fmt::format(
        "stack.blocks: the free-probability spectrum is implemented for blocks = \"dense\" (x' = lam x + a (phi(x) W "
        "+ b)), got \"{}\"; the Monte Carlo spectrum (the simulate engine) measures any stack",
        to_string(spec.blocks)));
  if (spec.norm != Norm::None)
    throw ConfigError(fmt::format("stack.norm: the free-probability spectrum is implemented for norm = \"none\", got "
                                  "\"{}\"; the Monte Carlo spectrum (the simulate engine) measures any stack",
                                  to_string(spec.norm)));
}

bool spectrum_has_density(const StackSpec& spec) {
  return spec.blocks == Blocks::Dense && spec.norm == Norm::None && !spec.residual;
}

SpectrumMoments spectrum_moments(const StackSpec& spec, const SpectrumSettings& st) {
  check_spectrum_spec(spec);
  const int L = spec.depth;
  const ActKernel ak(spec.activation);
  const double beta = weight_beta(spec);  // 1 for norm = none
  const double sw2 = spec.sigma_w2 * beta * beta, sb2 = spec.sigma_b2;
  const bool gauss = spec.weights == WeightDist::Gaussian;
  SpectrumMoments r;
  r.q.assign(L + 1, 0.0);
  r.mean.assign(L + 1, 1.0);
  r.var.assign(L + 1, 0.0);
  r.mu1.assign(L + 1, std::nan(""));
  r.mu2.assign(L + 1, std::nan(""));
  r.q[0] = spec.q0;
  double m1 = 1.0;     // tau(J J^T) (J_0 = I)
  double nvar = 0.0;          // Var/mean^2 (products: it adds up over free factors)
  for (int l = 1; l <= L; ++l) {
    const HalfParams hp = half_params(spec, l);
    const double q = r.q[l - 1];
    const DiscreteLaw law = deriv_sq_law(spec.activation, q, st);
    const double mu1 = law.mu1, mu2 = law.mu2;
    r.mu1[l] = mu1;
    r.mu2[l] = mu2;
    r.atom0 = std::max(r.atom0, law.atom0);
    const double Ephi2 = ak.k(q, q, q);
    if (!spec.residual) {
      // Product of free factors: the mean multiplies, Var/mean^2 adds (S(m) = (1 - v m)/mean + O(m^2)).
      // Gaussian W W^T (Marchenko-Pastur, ratio 1) has v = 1, orthogonal v = 0, D^2 has v = mu2/mu1^2 - 1.
      // Without the residual the branch scale a multiplies the whole layer: x' = a (phi(x) W + b).
      const double a2 = hp.a * hp.a;
      r.q[l] = a2 * (sw2 * Ephi2 + sb2);
      m1 *= a2 * sw2 * mu1;
      nvar += mu2 / (mu1 * mu1) - 1.0 + (gauss ? 1.0 : 0.0);
      r.mean[l] = m1;
      r.var[l] = m1 * m1 * nvar;
    } else {
      r.q[l] = q + hp.a * hp.a * (sw2 * Ephi2 + sb2);
    }
  }
  if (spec.residual) residual_moments(spec, st, r);
  if (spec.residual) r.atom0 = 0.0;  // no atom is claimed for I + a D W
  return r;
}

std::vector<double> default_spectrum_grid(const SpectrumMoments& m, int n) {
  if (n < 2) throw ConfigError(fmt::format("grid: need at least 2 points, got {}", n));
  const double mean = m.mean.back(), sd = std::sqrt(std::max(0.0, m.var.back()));
  const double hi = std::max(4.0 * mean, mean + 6.0 * sd);
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i) x[i] = hi * (i + 1) / n;
  return x;
}

SpectrumDensity spectrum_density(const StackSpec& spec, const std::vector<double>& x, const SpectrumSettings& st,
                                 const ProgressFn& progress) {
  check_spectrum_spec(spec);
  if (spec.residual)
    throw ConfigError(
        "stack.residual: the free-probability density is implemented for product stacks (residual = false); "
        "residual stacks get moments only");
  if (!(st.eta_rel > 0) || st.eta_rel > 0.1) throw ConfigError("spectrum: eta_rel must be in (0, 0.1]");
  const SpectrumMoments mom = spectrum_moments(spec, st);
  const int L = spec.depth;
  ProductSolver S;
  S.L = L;
  S.gaussian = spec.weights == WeightDist::Gaussian;
  const double a = half_params(spec, 1).a;  // constant in l for every supported branch scale
  S.log_sw2 = std::log(a * a * spec.sigma_w2 * weight_beta(spec) * weight_beta(spec));
  S.max_newton = st.max_newton;
  // Layers with identical D^2 laws share one chi (relu and linear: all of them).
  const bool q_free = spec.activation == Activation::Relu || spec.activation == Activation::Linear;
  std::vector<double> keys;
  for (int l = 1; l <= L; ++l) {
    const double q = q_free ? 1.0 : mom.q[l - 1];
    size_t g = 0;
    for (; g < keys.size(); ++g)
      if (std::abs(keys[g] - q) <= 1e-10 * std::abs(q)) break;  // density moves by ~1e-10 relative
    if (g == keys.size()) {
      keys.push_back(q);
      Group gr;
      gr.law = deriv_sq_law(spec.activation, q, st);
      gr.closed = two_point(gr.law, gr.c, gr.p);
      S.groups.push_back(std::move(gr));
    }
    ++S.groups[g].count;
  }

  SpectrumDensity out;
  out.x = x;
  out.atom0 = mom.atom0;
  out.density.assign(x.size(), std::nan(""));
  const double mean = mom.mean.back(), sd = std::sqrt(std::max(0.0, mom.var.back()));
  // Grid points from the largest down: above the support psi is real and small, and each
  // point starts from its neighbour's solution; a point that fails that way is solved by a
  // homotopy in eta from far above the real axis (where psi ~ mean/X) down to eta_rel x.
  std::vector<size_t> order(x.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] > x[b]; });
  bool have_prev = false;
  double x_prev = 0;
  cplx m_prev = 0;
  std::vector<cplx> z_prev(S.groups.size());
  auto start_far = [&](cplx X, cplx& m, std::vector<cplx>& z) {
    cplx zz = 1.0 / X;
    m = mean * zz + (sd * sd + mean * mean) * zz * zz;
    for (size_t g = 0; g < S.groups.size(); ++g) z[g] = m / S.groups[g].law.mu1;
  };
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t oi = order[k];
    if (progress)
      report_progress(progress, static_cast<double>(k) / static_cast<double>(order.size()),
                      fmt::format("grid point {}/{}", k + 1, order.size()), "spectrum");
    const double xi = x[oi];
    if (!(xi > 0) || !std::isfinite(xi)) {
      ++out.failed;
      continue;
    }
    cplx m = m_prev;
    std::vector<cplx> z = z_prev;
    // chi_J(m) = 1/X has spurious roots too (e.g. real m < -1 for small x), so the physical branch is
    // tracked, never jumped to: from the neighbour's solution in geometric steps of at most 2% in x,
    // or (no neighbour, a failed step, or more than 60 steps) from far above the real axis, halving eta.
    bool ok = false;
    if (have_prev) {
      const double r = std::log(xi / x_prev);
      const int steps = std::max(1, static_cast<int>(std::ceil(std::abs(r) / 0.02)));
      ok = steps <= 60;
      for (int k = 1; k <= steps && ok; ++k) {
        const double xk = k == steps ? xi : x_prev * std::exp(r * k / steps);
        ok = S.solve(cplx(xk, st.eta_rel * xk), m, z);
      }
    }
    if (!ok) {
      ++out.homotopies;
      double eta = 4.0 * std::max(xi, mean + 10.0 * sd);
      start_far(cplx(xi, eta), m, z);
      ok = true;
      while (ok) {
        ok = S.solve(cplx(xi, eta), m, z);
        if (eta <= st.eta_rel * xi) break;
        eta = std::max(eta / 2.0, st.eta_rel * xi);
      }
    }
    if (!ok) {
      ++out.failed;
      have_prev = false;
      continue;
    }
    // G(X) = (1 + psi(1/X)) / X; the density is -Im G / pi.
    const cplx G = (1.0 + m) / cplx(xi, st.eta_rel * xi);
    out.density[oi] = std::max(0.0, -G.imag() / kPi);
    m_prev = m;
    z_prev = z;
    x_prev = xi;
    have_prev = true;
  }
  return out;
}

Profile spectrum_theory_profile(const StackSpec& spec, const std::vector<double>& grid, const SpectrumSettings& st,
                                const ProgressFn& progress) {
  const SpectrumMoments mom = spectrum_moments(spec, st);
  Profile p = Profile::make(spec, "spectrum-theory", {"q", "sv2_mean", "sv2_var"});
  for (int l = 0; l <= spec.depth; ++l) {
    p.at(l, "q") = mom.q[l];
    p.at(l, "sv2_mean") = mom.mean[l];
    p.at(l, "sv2_var") = mom.var[l];
  }
  p.version = kVersion;
  p.settings = {{"engine", "spectrum-theory"},
                {"method", spec.residual ? "free-moment recursion (docs/spectrum.md)"
                                         : "S-transform product (Pennington, Schoenholz & Ganguli 2018)"},
                {"map", "token"},
                {"weights", to_string(spec.weights)},
                {"panels", st.panels},
                {"panel_order", st.panel_order},
                {"eta_rel", st.eta_rel},
                {"version", kVersion}};
  for (int l = 0; l <= spec.depth; ++l)
    if (!std::isfinite(p.at(l, "sv2_mean")) || !std::isfinite(p.at(l, "sv2_var"))) {
      p.warnings.push_back(fmt::format("non-finite Jacobian moment first at layer {}", l));
      break;
    }
  if (spectrum_has_density(spec)) {
    const SpectrumDensity d = spectrum_density(spec, grid, st, progress);
    nlohmann::json dens = nlohmann::json::array();
    for (double v : d.density) dens.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
    p.extras["density"] = {{"layer", spec.depth}, {"x", d.x},           {"density", dens},
                           {"atom0", d.atom0},    {"failed", d.failed}, {"of", "squared singular values of J_L"}};
    if (d.failed > 0)
      p.warnings.push_back(fmt::format("density solver did not converge at {} of {} grid points (null there)",
                                       d.failed, d.x.size()));
  } else {
    p.warnings.push_back("no free-probability density for residual stacks (moments only); use the simulate engine for a "
                         "Monte Carlo density");
  }
  if (progress) report_progress(progress, 1.0, "done", "spectrum");
  return p;
}

}  // namespace sigprop::theory
