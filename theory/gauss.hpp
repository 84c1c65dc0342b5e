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

/// Dual kernels of one activation. Thread-safe after construction.
class ActKernel {
 public:
  /// @param quad_order Gauss-Legendre points per piece for tanh and silu (see quadrature_kernel).
  explicit ActKernel(Activation act, int quad_order = 48);
  [[nodiscard]] Activation activation() const { return act_; }
  /// Both kernels at (a, b, c); requires a, b >= 0 and c^2 <= a b (clamped for round-off).
  [[nodiscard]] KernelPair eval(double a, double b, double c) const;
  [[nodiscard]] double k(double a, double b, double c) const { return eval(a, b, c).k; }
  [[nodiscard]] double kd(double a, double b, double c) const { return eval(a, b, c).kd; }
  /// True when eval uses a closed form (no quadrature error).
  [[nodiscard]] bool exact() const;

 private:
  Activation act_;
  GaussLegendre gl_;
};

/// phi and phi' themselves (used by quadrature and by tests).
double act_value(Activation act, double x);
double act_deriv(Activation act, double x);

}  // namespace sigprop::theory
