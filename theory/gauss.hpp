#pragma once
/// @file Gaussian expectations of activations: the "dual kernels" of mean-field
/// theory. For (u, v) ~ N(0, [[a, c], [c, b]]):
///   k(a, b, c)  = E[phi(u) phi(v)]
///   kd(a, b, c) = E[phi'(u) phi'(v)]  (= dk/dc by Price's theorem)
/// Closed forms: linear; relu (arc-cosine, Cho & Saul 2009); erf (arcsin,
/// Williams 1997); gelu (orthant moments of a bivariate normal, derived in
/// gauss.cpp; kd by forward-mode differentiation of k in c). tanh and silu have
/// none and use split Gauss-Legendre quadrature (quadrature_kernel below); its
/// error is bounded in tests/test_gauss.cpp.
#include <vector>

#include "core/spec.hpp"

namespace sigprop::theory {

/// Probabilists' Gauss-Hermite rule: sum_i w_i f(x_i) ~ E[f(z)], z ~ N(0, 1).
struct GaussHermite {
  std::vector<double> x, w;
  explicit GaussHermite(int n);
};

struct KernelPair {
  double k;   ///< E[phi(u) phi(v)]
  double kd;  ///< E[phi'(u) phi'(v)]
};

/// Gauss-Legendre rule on [-1, 1] (Golub-Welsch).
struct GaussLegendre {
  std::vector<double> x, w;
  explicit GaussLegendre(int n);
};

/// E[phi(u)phi(v)] and E[phi'(u)phi'(v)] by quadrature, for any activation. With
/// u = sqrt(a) x and v = sqrt(b)(rho x + sqrt(1-rho^2) y), x, y iid N(0, 1), the
/// integrand is smooth in each quadrant of (u, v), so the x integral is split at
/// u = 0 and, for each x, the y integral at v = 0; each piece (truncated at
/// |x|, |y| <= 9, Gaussian mass beyond ~1e-19) uses an n-point Gauss-Legendre rule.
/// Unlike tensor Gauss-Hermite this stays accurate when the variance is large
/// and the activation looks like a step (tanh at a = 20), and at relu's kink.
KernelPair quadrature_kernel(Activation act, const GaussLegendre& rule, double a, double b, double c);
/// The same integral with the correlation rho = c / sqrt(a b) given directly (rho = +-1 exactly
/// makes v a deterministic function of u, a 1-D integral).
KernelPair quadrature_kernel_rho(Activation act, const GaussLegendre& rule, double a, double b, double rho);

/// Dual kernels of one activation. Thread-safe after construction.
class ActKernel {
 public:
  /// @param quad_order Gauss-Legendre points per piece for tanh and silu (see quadrature_kernel).
  explicit ActKernel(Activation act, int quad_order = 48);
  [[nodiscard]] Activation activation() const { return act_; }
  /// Both kernels at (a, b, c); requires a, b >= 0 and c^2 <= a b (clamped for round-off).
  [[nodiscard]] KernelPair eval(double a, double b, double c) const;
  /// A variance with the square roots eval takes of it, computed once per token when a row
  /// of kernel entries shares it: v = max(a, 0), sqrt(v).
  struct Var {
    double v, sv;
  };
  [[nodiscard]] static Var var(double a);
  /// eval(a.v, b.v, c), bitwise the same value, without recomputing the square roots (GELU).
  [[nodiscard]] KernelPair eval(const Var& a, const Var& b, double c) const;
  /// eval(a, b[i], c[i]) for i < n into k[i], kd[i]: one row of kernel entries that share a.
  /// Same values as eval up to round-off; for GELU the arctangents are taken in one pass and the
  /// rest of the closed form is vectorised.
  void eval_row(const Var& a, const Var* b, const double* c, int n, double* k, double* kd) const;
  [[nodiscard]] double k(double a, double b, double c) const { return eval(a, b, c).k; }
  [[nodiscard]] double kd(double a, double b, double c) const { return eval(a, b, c).kd; }
  /// True when eval uses a closed form (no quadrature error).
  [[nodiscard]] bool exact() const;
  /// Both kernels at correlation rho = c / sqrt(a b) (the quadrature's own variable).
  [[nodiscard]] KernelPair eval_rho(double a, double b, double rho) const;
  /// E[(phi(u) - phi(w))^2] for (u, w) ~ N(0, [[a, c], [c, b]]), with det = a b - c^2 (>= 0)
  /// passed separately, from the tokens' differences: precise where u and w nearly coincide (the
  /// tokens of a collapsing stack), where k(a,a,a) + k(b,b,b) - 2 k(a,b,c) cancels to the rounding of
  /// k. It is E[(phi(sqrt(a) z) - phi(sqrt(b) z))^2] (1-D, split Gauss-Legendre on the differences
  /// themselves) plus 2 (k(a,b,sqrt(ab)) - k(a,b,c)) = 2 int_c^sqrt(ab) kd dc' (Price's theorem) with
  /// sqrt(ab) - c = det / (sqrt(ab) + c), c' = sqrt(ab) - (sqrt(ab) - c) t^2 and 8-point
  /// Gauss-Legendre in t (smooth in t where kd has relu's sqrt behaviour at c' = sqrt(ab); exact for
  /// relu). For the quadrature activations (tanh, silu, gelu_tanh) kd is smooth at c' = sqrt(ab):
  /// its integral is taken to second order there, len kd - len^2/2 E[phi'' phi''] at rho = 1 (1-D),
  /// relative error O((len / sqrt(ab))^2). Meant for nearly coincident tokens (len << sqrt(ab)).
  [[nodiscard]] double distance(double a, double b, double c, double det) const;

 private:
  Activation act_;
  GaussLegendre gl_;
};

/// The map c -> (k, kd) at fixed variances (a, b), for the activations without a closed form
/// (ActKernel::exact() false): a Chebyshev series in theta = acos(c / sqrt(a b)) in [0, pi],
/// interpolating ActKernel at Chebyshev-Lobatto nodes in theta (17, 33, 65, 129 or 257 of them,
/// doubled until the top quarter of the coefficients of both series is below tol times the
/// kernel's scale sqrt(k(a,a,a) k(b,b,b)), resp. the same for kd).
///
/// Why theta and not c: k(cos theta) is an even, 2 pi-periodic function of theta, and for a
/// large variance (tanh at a = 50 looks like a step) kd(rho) behaves like 1/sqrt(1 - rho^2 + eps^2),
/// eps ~ 1/sqrt(a), which has singularities at distance ~eps^2 from rho = 1 (Chebyshev in rho then
/// converges like (1 + eps)^-n) but at distance ~eps from theta = 0 (like (1 + sqrt(eps))^-n).
/// The interpolation error is bounded in tests/test_gauss.cpp against direct quadrature over
/// variances 0.05..50 and c in [-1, 1] including c -> +-1 (docs/theory.md). The node at theta = 0
/// (rho = 1) is the 1-D quadrature itself, so the diagonal is reproduced exactly; near rho = 1 the
/// series is flat in theta (even function), so the round-off of acos near 1 does not matter.
/// Immutable after construction: safe to share between threads.
class KernelTable {
 public:
  KernelTable(const ActKernel& ak, double a, double b, double tol = 1e-11);
  /// Both kernels at (a, b, c) for the a, b of the constructor; c is clamped to [-sqrt(ab), sqrt(ab)].
  [[nodiscard]] KernelPair eval(double c) const;
  /// Both kernels at correlation rho = c / sqrt(a b), clamped to [-1, 1].
  [[nodiscard]] KernelPair eval_rho(double rho) const;
  [[nodiscard]] double a() const { return a_; }
  [[nodiscard]] double b() const { return b_; }
  /// Number of quadrature nodes the table was built from.
  [[nodiscard]] int nodes() const { return nodes_; }

 private:
  double a_, b_, lim_;
  int nodes_ = 0;
  KernelPair diag_{};                ///< ActKernel at rho = 1 (c = sqrt(a b))
  std::vector<double> ck_, cd_;      ///< Chebyshev coefficients of k and kd in t = 1 - 2 theta / pi
};

/// phi and phi' themselves (theory/spectrum.cpp and tests): core/hd_math.hpp's act_forward and
/// act_derivative, the one definition.
double act_value(Activation act, double x);
double act_deriv(Activation act, double x);

}  // namespace sigprop::theory
