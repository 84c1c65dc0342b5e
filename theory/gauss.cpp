#include "theory/gauss.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <Eigen/Dense>

#include "core/activation.hpp"
#include "core/error.hpp"

// glibc >= 2.35 on x86-64 has atan for SIMD vectors in libmvec (_ZGV*_atan, at most 4 ulp), but
// <math.h> declares it only under -ffast-math: declared here so that eval_row's arctangent loop
// (#pragma omp simd, -fopenmp-simd) calls the vector version (GCC's simd attribute; elsewhere,
// Clang included, the loop stays scalar).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
extern "C" __attribute__((simd("notinbranch"))) double atan(double) noexcept;
#define SIGPROP_VECTOR_ATAN 1
#endif

namespace sigprop::theory {
namespace {

constexpr double kPi = std::numbers::pi;

// GELU dual kernel. gelu(x) = x Phi(x) and Phi(x) = P(z <= x), z ~ N(0,1) independent, so
//   E[gelu(u) gelu(v)] = E[u v G(p, r)],  G = 1{p >= 0} 1{r >= 0},  p = u - z1, r = v - z2,
// with Var u = a, Var v = b, Cov(u, v) = c, S = Cov(p, r) = [[A, c], [c, B]], A = a+1, B = b+1.
// Second-order Stein (Gaussian integration by parts) over (p, r):
//   E[u v G] = c E[G] + sum_ij Cov(u, w_i) Cov(v, w_j) E[d_i d_j G],  w = (p, r),
// Cov(u, p) = a, Cov(u, r) = c, Cov(v, p) = c, Cov(v, r) = b, and for the bivariate normal
//   E[G] = 1/4 + theta/(2 pi), theta = asin(c / sqrt(A B)) (Sheppard),
//   E[delta(p) delta(r)] = 1 / (2 pi sqrt(det)),  det = A B - c^2,
//   E[delta'(p) 1{r >= 0}] = -c / (2 pi A sqrt(det)),  E[1{p >= 0} delta'(r)] = -c / (2 pi B sqrt(det)),
// which sum to
//   E[gelu(u) gelu(v)] = c (1/4 + theta/(2 pi)) + (D0 + c^2 (1/A + 1/B)) / (2 pi sqrt(det)),
//   D0 = a b - c^2 >= 0,  det = D0 + a + b + 1
// (the form of Tsuchida et al. 2021; c = 0 gives E[gelu(u)] E[gelu(v)] = a b / (2 pi sqrt(A B))).
// Rounding: the only cancellation is D0 near the diagonal, c^2 -> a b. It is taken with fused
// multiply-adds (c^2 split into its rounded value and the exact remainder), so det, sqrt(det)
// and theta = atan(c / sqrt(det)) keep full relative accuracy however large a and b are and
// however close c is to sqrt(a b). (The earlier conditioning form, through S^{-1}, summed terms of
// size a / (1 - c^2/(a b)) that cancel: at a = b = 1e10 and 1 - c/a = 1e-8 it gave 1 - rho of
// the output 8e-7 instead of 1e-8, and garbage at 1e14: tests/test_gauss.cpp.)
// `d0` (gelu_d0), `sdet` = sqrt(det) and `theta` come from the caller (it takes the arctangents of a row in one
// pass, so that the rest of this vectorises).
inline double gelu_d0(double a, double b, double c) {
  const double c2 = c * c;
  const double c2_err = std::fma(c, c, -c2);                  // c^2 = c2 + c2_err exactly
  return std::max(std::fma(a, b, -c2) - c2_err, 0.0);          // a b - c^2, one rounding
}
inline KernelPair gelu_kernel(double a, double b, double c, double d0, double sdet, double theta) {
  const double det = d0 + (a + b + 1);  // = sdet^2
  const double s = 1.0 / (a + 1) + 1.0 / (b + 1);
  const double P = 0.25 + theta / (2 * kPi);
  const double w = c / (2 * kPi * sdet);
  // Price: d/dc E[gelu(u) gelu(v)] = E[gelu'(u) gelu'(v)]; differentiating the form above and
  // using c^2 = A B - det, the terms that would cancel collapse to
  //   P + c / (2 pi sqrt(det)) (1/A + 1/B + 1/det),
  // a sum of terms of one sign for c >= 0 (no cancellation at huge a, b).
  return {c * P + (d0 + c * c * s) / (2 * kPi * sdet), P + w * (s + 1.0 / det)};
}

}  // namespace

namespace {
// Golub-Welsch: for a weight whose monic orthogonal polynomials have zero diagonal
// recurrence coefficients (both rules here), the nodes are the eigenvalues of the Jacobi
// matrix with off-diagonal beta(k), k = 1..n-1, and the weights are mu0 times the squared
// first components of its normalised eigenvectors (mu0 = total mass of the weight).
template <class Beta>
void golub_welsch(int n, const char* name, Beta beta, double mu0, std::vector<double>& x, std::vector<double>& w) {
  if (n < 1 || n > 400) throw ConfigError(fmt::format("{} order must be in [1, 400], got {}", name, n));
  Eigen::MatrixXd J = Eigen::MatrixXd::Zero(n, n);
  for (int k = 1; k < n; ++k) J(k, k - 1) = J(k - 1, k) = beta(k);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(J);
  x.resize(n);
  w.resize(n);
  for (int i = 0; i < n; ++i) {
    x[i] = es.eigenvalues()(i);
    double v0 = es.eigenvectors()(0, i);
    w[i] = mu0 * v0 * v0;
  }
}
}  // namespace

// Probabilists' Hermite (weight N(0, 1), mass 1): beta(k) = sqrt(k).
GaussHermite::GaussHermite(int n) {
  golub_welsch(
      n, "Gauss-Hermite", [](int k) { return std::sqrt(static_cast<double>(k)); }, 1.0, x, w);
}

// Legendre (weight 1 on [-1, 1], mass 2): beta(k) = k / sqrt(4k^2 - 1).
GaussLegendre::GaussLegendre(int n) {
  golub_welsch(
      n, "Gauss-Legendre", [](int k) { return k / std::sqrt(4.0 * k * k - 1); }, 2.0, x, w);
}

KernelPair quadrature_kernel(Activation act, const GaussLegendre& rule, double a, double b, double c) {
  a = std::max(a, 0.0);
  b = std::max(b, 0.0);
  const double sa = std::sqrt(a), sb = std::sqrt(b);
  double rho = (sa > 0 && sb > 0) ? std::clamp(c / (sa * sb), -1.0, 1.0) : 0.0;
  if (a == b && c == a) rho = 1.0;
  return quadrature_kernel_rho(act, rule, a, b, rho);
}

KernelPair quadrature_kernel_rho(Activation act, const GaussLegendre& rule, double a, double b, double rho) {
  constexpr double X = 9.0;
  const double inv_sqrt_2pi = 1.0 / std::sqrt(2 * kPi);
  a = std::max(a, 0.0);
  b = std::max(b, 0.0);
  const double sa = std::sqrt(a), sb = std::sqrt(b);
  rho = std::clamp(rho, -1.0, 1.0);
  const double srho = std::sqrt(std::max(1 - rho * rho, 0.0));
  const size_t n = rule.x.size();
  const hd::Act h_act = to_hd(act);
  // n-point Gauss-Legendre on [lo, hi], Gaussian weight included.
  auto pieces = [&](double lo, double hi, auto&& body) {
    if (!(hi > lo)) return;
    double h = 0.5 * (hi - lo), m = 0.5 * (hi + lo);
    for (size_t i = 0; i < n; ++i) {
      double t = m + h * rule.x[i];
      body(t, h * rule.w[i] * std::exp(-0.5 * t * t) * inv_sqrt_2pi);
    }
  };
  double k = 0, kd = 0;
  auto outer = [&](double x, double wx) {
    double fu, du;
    hd::act_forward_derivative(h_act, sa * x, &fu, &du);
    double hk = 0, hkd = 0;
    if (srho < 1e-12 || sb == 0) {
      hd::act_forward_derivative(h_act, sb * rho * x, &hk, &hkd);  // v is a deterministic function of x
    } else {
      auto inner = [&](double y, double wy) {
        double gv, dv;
        hd::act_forward_derivative(h_act, sb * (rho * x + srho * y), &gv, &dv);
        hk += wy * gv;
        hkd += wy * dv;
      };
      double y0 = std::clamp(-rho * x / srho, -X, X);  // v = 0 here
      pieces(-X, y0, inner);
      pieces(y0, X, inner);
    }
    k += wx * fu * hk;
    kd += wx * du * hkd;
  };
  pieces(-X, 0.0, outer);
  pieces(0.0, X, outer);
  return {k, kd};
}

double act_value(Activation act, double x) {
  return hd::act_forward(to_hd(act), x);
}

double act_deriv(Activation act, double x) {
  return hd::act_derivative(to_hd(act), x);
}

ActKernel::ActKernel(Activation act, int quad_order) : act_(act), gl_(quad_order) {}

bool ActKernel::exact() const {
  return act_ != Activation::Tanh && act_ != Activation::Silu && act_ != Activation::GeluTanh;
}

double ActKernel::distance(double a, double b, double c, double det) const {
  a = std::max(a, 0.0);
  b = std::max(b, 0.0);
  det = std::max(det, 0.0);
  const double sa = std::sqrt(a), sb = std::sqrt(b), sab = sa * sb;
  // The variances' part: both at the same z, the difference taken point by point (no cancellation
  // of k-sized numbers), split at z = 0 (relu's kink), |z| <= 9.
  const hd::Act h = to_hd(act_);
  const double inv_sqrt_2pi = 1.0 / std::sqrt(2 * kPi);
  // f(z, w) at the nodes of gl_ on [-9, 0] and [0, 9], w the node's weight times the N(0, 1) density.
  auto split_gauss = [&](auto&& f) {
    for (const double sign : {-1.0, 1.0})
      for (size_t i = 0; i < gl_.x.size(); ++i) {
        const double z = sign * 4.5 * (1 + gl_.x[i]);
        f(z, 4.5 * gl_.w[i] * std::exp(-0.5 * z * z) * inv_sqrt_2pi);
      }
  };
  double scale_part = 0;
  split_gauss([&](double z, double w) {
    const double diff = hd::act_forward(h, sa * z) - hd::act_forward(h, sb * z);
    scale_part += w * diff * diff;
  });
  // The correlation's part: k(a, b, sqrt(ab)) - k(a, b, c) by Price's theorem.
  const double len = sab + c > 0 ? det / (sab + c) : sab - c;
  double corr_part = 0;
  if (len > 0) {
    if (exact()) {
      static const GaussLegendre rule(8);
      for (size_t i = 0; i < rule.x.size(); ++i) {
        const double t = 0.5 * (1 + rule.x[i]);
        corr_part += 0.5 * rule.w[i] * 2 * t * eval(a, b, sab - len * t * t).kd;
      }
      corr_part *= len;
    } else {
      // kd is smooth at c' = sqrt(ab) for these: kd(c') = kd(sqrt(ab)) - (sqrt(ab) - c') E[phi''(u) phi''(w)]
      // + O(len^2) (Price's theorem once more), so the integral is len kd - len^2/2 E[phi'' phi''] to
      // O(len^3), both at rho = 1 (1-D; phi'' by central differences of phi', step 1e-4 (1 + |x|)).
      auto d2 = [h](double x) {
        const double step = 1e-4 * (1 + std::abs(x));
        return (hd::act_derivative(h, x + step) - hd::act_derivative(h, x - step)) / (2 * step);
      };
      double kd1 = 0, kd2 = 0;
      split_gauss([&](double z, double w) {
        kd1 += w * hd::act_derivative(h, sa * z) * hd::act_derivative(h, sb * z);
        kd2 += w * d2(sa * z) * d2(sb * z);
      });
      corr_part = len * kd1 - 0.5 * len * len * kd2;
    }
  }
  return scale_part + 2 * corr_part;
}

ActKernel::Var ActKernel::var(double a) {
  a = std::max(a, 0.0);
  return {a, std::sqrt(a)};
}

KernelPair ActKernel::eval(const Var& a, const Var& b, double c) const {
  if (act_ != Activation::Gelu) return eval(a.v, b.v, c);
  KernelPair kp;
  eval_row(a, &b, &c, 1, &kp.k, &kp.kd);
  return kp;
}

void ActKernel::eval_row(const Var& a, const Var* b, const double* c, int n, double* k, double* kd) const {
  if (act_ != Activation::Gelu) {
    for (int i = 0; i < n; ++i) {
      const KernelPair kp = eval(a, b[i], c[i]);
      k[i] = kp.k;
      kd[i] = kp.kd;
    }
    return;
  }
  // eval(a, b[i], c[i]) in three passes over a chunk: the clamped c, D0 and sqrt(det), the
  // arctangents theta = atan(c / sqrt(det)) (libmvec's vector atan where glibc has one, see
  // above), then the closed form, which the compiler vectorises (no libm call left).
  constexpr int kChunk = 64;
  double cc[kChunk], d0[kChunk], sd[kChunk], th[kChunk];
  for (int i0 = 0; i0 < n; i0 += kChunk) {
    const int m = std::min(kChunk, n - i0);
    const Var* bb = b + i0;
    for (int i = 0; i < m; ++i) {
      const double lim = a.sv * bb[i].sv;
      cc[i] = std::clamp(c[i0 + i], -lim, lim);
      d0[i] = gelu_d0(a.v, bb[i].v, cc[i]);
      sd[i] = std::sqrt(d0[i] + (a.v + bb[i].v + 1));
    }
    // sqrt(det) > 0 always (det >= a + b + 1), so atan(c / sqrt(det)) = atan2(c, sqrt(det)) =
    // asin(c / sqrt(A B)), well conditioned however close c is to sqrt(a b).
#ifdef SIGPROP_VECTOR_ATAN  // elsewhere (Clang: no simd attribute) the loop stays scalar, unannotated
#pragma omp simd
#endif
    for (int i = 0; i < m; ++i) th[i] = std::atan(cc[i] / sd[i]);
    for (int i = 0; i < m; ++i) {
      const KernelPair r = gelu_kernel(a.v, bb[i].v, cc[i], d0[i], sd[i], th[i]);
      k[i0 + i] = r.k;
      kd[i0 + i] = r.kd;
    }
  }
}

KernelPair ActKernel::eval(double a, double b, double c) const {
  if (act_ == Activation::Gelu) return eval(var(a), var(b), c);  // one code path for both forms
  a = std::max(a, 0.0);
  b = std::max(b, 0.0);
  double lim = std::sqrt(a) * std::sqrt(b);  // not sqrt(a*b): a*b overflows first for deep stacks
  c = std::clamp(c, -lim, lim);              // round-off can push |c| a hair past sqrt(a b)
  switch (act_) {
    case Activation::Linear:
      return {c, 1.0};
    case Activation::Relu: {
      if (!(lim > 0)) return {0.0, 0.0};  // a zero-variance input sits on relu's kink: phi' = 0
      // The diagonal (c = a = b) must give rho = 1 exactly: acos has infinite slope at 1, so a
      // one-ulp error in sqrt(a) sqrt(b) would cost 1e-8 in kd.
      double rho = (a == b && c == a) ? 1.0 : std::clamp(c / lim, -1.0, 1.0);
      double th = std::acos(rho);
      // Cho & Saul (2009), arc-cosine kernel of degree 1, and degree 0 for the derivative.
      return {lim / (2 * kPi) * (std::sqrt(1 - rho * rho) + (kPi - th) * rho), (kPi - th) / (2 * kPi)};
    }
    case Activation::Erf: {
      // Williams (1997): E[erf(u)erf(v)] = (2/pi) asin(2c / sqrt((1+2a)(1+2b))).
      double D = (1 + 2 * a) * (1 + 2 * b);
      double k = 2 / kPi * std::asin(std::clamp(2 * c / std::sqrt(D), -1.0, 1.0));
      double kd = 4 / kPi / std::sqrt(D - 4 * c * c);
      return {k, kd};
    }
    case Activation::Gelu:
      break;  // eval(Var, Var, c) above
    case Activation::Tanh:
    case Activation::Silu:
    case Activation::GeluTanh:
      return quadrature_kernel(act_, gl_, a, b, c);
  }
  throw Error("internal: unknown activation");
}

KernelPair ActKernel::eval_rho(double a, double b, double rho) const {
  a = std::max(a, 0.0);
  b = std::max(b, 0.0);
  if (!exact()) return quadrature_kernel_rho(act_, gl_, a, b, rho);
  if (rho == 1.0 && a == b) return eval(a, a, a);
  return eval(a, b, std::clamp(rho, -1.0, 1.0) * (std::sqrt(a) * std::sqrt(b)));
}

namespace {
// Chebyshev coefficients (DCT-I) of the values f_j at the Lobatto points t_j = cos(pi j / N),
// j = 0..N: f(t) = sum_k' c_k T_k(t), the first and last coefficient halved (folded in here).
std::vector<double> cheb_coeffs(const std::vector<double>& f) {
  const int N = static_cast<int>(f.size()) - 1;
  std::vector<double> c(N + 1), cs(2 * N);
  for (int m = 0; m < 2 * N; ++m) cs[m] = std::cos(kPi * m / N);
  for (int k = 0; k <= N; ++k) {
    double s = 0;
    for (int j = 0; j <= N; ++j) {
      double w = (j == 0 || j == N) ? 0.5 : 1.0;
      s += w * f[j] * cs[(static_cast<long>(j) * k) % (2 * N)];  // cos(pi j k / N)
    }
    c[k] = 2.0 * s / N;
  }
  c[0] *= 0.5;
  c[N] *= 0.5;
  return c;
}
double clenshaw(const std::vector<double>& c, double t) {
  double b1 = 0, b2 = 0;
  for (auto k = static_cast<long>(c.size()) - 1; k >= 1; --k) {
    double b0 = 2 * t * b1 - b2 + c[k];
    b2 = b1;
    b1 = b0;
  }
  return t * b1 - b2 + c[0];
}
// Largest |c_k| over the top quarter of the series: the convergence test of the doubling.
double tail(const std::vector<double>& c) {
  double m = 0;
  for (size_t k = c.size() - c.size() / 4; k < c.size(); ++k) m = std::max(m, std::abs(c[k]));
  return m;
}
}  // namespace

KernelTable::KernelTable(const ActKernel& ak, double a, double b, double tol)
    : a_(std::max(a, 0.0)), b_(std::max(b, 0.0)), lim_(std::sqrt(a_) * std::sqrt(b_)) {
  diag_ = ak.eval_rho(a_, b_, 1.0);
  // Natural scales (Cauchy-Schwarz bounds of |k| and |kd| over c).
  const KernelPair da = ak.eval(a_, a_, a_), db = ak.eval(b_, b_, b_);
  const double sk = std::sqrt(std::abs(da.k) * std::abs(db.k)), sd = std::sqrt(std::abs(da.kd) * std::abs(db.kd));
  // Node j of N: t_j = cos(pi j / N), theta = pi (1 - t) / 2, rho = cos(theta). Node j of N is
  // node 2j of 2N, so each doubling reuses every value computed so far.
  std::vector<KernelPair> v;
  int N = 16;
  auto node = [&](int j, int n) {
    if (2 * j == n) return ak.eval_rho(a_, b_, 0.0);
    if (j == 0) return diag_;
    if (j == n) return ak.eval_rho(a_, b_, -1.0);
    double theta = 0.5 * kPi * (1 - std::cos(kPi * j / n));
    return ak.eval_rho(a_, b_, std::cos(theta));
  };
  for (int j = 0; j <= N; ++j) v.push_back(node(j, N));
  for (;;) {
    std::vector<double> fk(N + 1), fd(N + 1);
    for (int j = 0; j <= N; ++j) {
      fk[j] = v[j].k;
      fd[j] = v[j].kd;
    }
    ck_ = cheb_coeffs(fk);
    cd_ = cheb_coeffs(fd);
    nodes_ = N + 1;
    if ((tail(ck_) <= tol * sk && tail(cd_) <= tol * sd) || N >= 256) break;
    std::vector<KernelPair> w(2 * N + 1);
    for (int j = 0; j <= N; ++j) w[2 * j] = v[j];
    for (int j = 1; j < 2 * N; j += 2) w[j] = node(j, 2 * N);
    v = std::move(w);
    N *= 2;
  }
  // Drop trailing coefficients that are below the tolerance: they cost time, not accuracy.
  auto trim = [](std::vector<double>& c, double floor) {
    while (c.size() > 1 && std::abs(c.back()) <= floor) c.pop_back();
  };
  trim(ck_, 1e-3 * tol * sk);
  trim(cd_, 1e-3 * tol * sd);
}

KernelPair KernelTable::eval(double c) const {
  if (!(lim_ > 0)) return diag_;
  return eval_rho(c / lim_);
}

KernelPair KernelTable::eval_rho(double rho) const {
  if (rho >= 1 || !(lim_ > 0)) return diag_;
  rho = std::max(rho, -1.0);
  const double t = 1 - 2 * std::acos(rho) / kPi;
  return {clenshaw(ck_, t), clenshaw(cd_, t)};
}

}  // namespace sigprop::theory
