#pragma once
/// @file Gaussian expectations of activations: the "dual kernels" of mean-field
/// theory. For (u, v) ~ N(0, [[a, c], [c, b]]):
///   k(a, b, c)  = E[phi(u) phi(v)]
///   kd(a, b, c) = E[phi'(u) phi'(v)]  (= dk/dc by Price's theorem)
/// Closed forms: linear; relu (arc-cosine, Cho & Saul 2009); erf (arcsin,
/// Williams 1997); gelu (orthant moments of a bivariate normal, derived in
/// gauss.cpp; kd by forward-mode differentiation of k in c). tanh and silu have
/// none and use tensor Gauss-Hermite quadrature; its error is bounded in
/// tests/test_gauss.cpp against a rule of twice the order.
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

/// Dual kernels of one activation. Thread-safe after construction.
class ActKernel {
 public:
  /// @param quad_order Gauss-Hermite order per dimension for tanh and silu.
  explicit ActKernel(Activation act, int quad_order = 64);
  [[nodiscard]] Activation activation() const { return act_; }
  /// Both kernels at (a, b, c); requires a, b >= 0 and c^2 <= a b (clamped for round-off).
  [[nodiscard]] KernelPair eval(double a, double b, double c) const;
  [[nodiscard]] double k(double a, double b, double c) const { return eval(a, b, c).k; }
  [[nodiscard]] double kd(double a, double b, double c) const { return eval(a, b, c).kd; }
  /// True when eval uses a closed form (no quadrature error).
  [[nodiscard]] bool exact() const;

 private:
  Activation act_;
  GaussHermite gh_;
};

/// phi and phi' themselves (used by quadrature and by tests).
double act_value(Activation act, double x);
double act_deriv(Activation act, double x);

}  // namespace sigprop::theory
