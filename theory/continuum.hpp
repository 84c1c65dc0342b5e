#pragma once
/// @file The depth-continuum limit of the theory engine's layer recursion (docs/ode.md §1).
///
/// With branch scale a = a0/sqrt(L) (branch_scale = "1/sqrt(L)": a0^2 = 1; "1/sqrt(2L)":
/// a0^2 = 1/2), every half-block of a residual stack without post-norm adds a^2 F_h(K) to the
/// token kernel, F_h the branch kernel map of theory/engine.cpp (MLP, attention, dense) applied
/// after the pre-transform. As L -> infinity the recursion K_l is the Euler scheme, step 1/L,
/// of the ODE in tau = l/L
///     dK/dtau = a0^2 sum_h F_h(K),                     K(0) = input kernel,
/// and the backward recursion the Euler scheme of
///     dG/dtau = -a0^2 sum_h B_h(G; K(tau)),             G(1) = I,
/// B_h the gradient-covariance map of the same half-block (gradient independence, as in
/// the theory engine). The discrete kernels differ from the ODE by O(1/L) (tests/test_ode_continuum.cpp
/// measures error * L over L = 16..1024). Both ODEs are integrated with Boost.Odeint's
/// adaptive Dormand-Prince 5(4) stepper with dense output.
#include <cstdint>
#include <memory>
#include <vector>

#include <Eigen/Dense>

#include "core/engine.hpp"
#include "theory/ode_limits.hpp"
#include "theory/attention.hpp"

namespace sigprop::theory {

struct ContinuumSettings {
  double abs_tol = 1e-10;  ///< Dormand-Prince absolute error tolerance per step
  double rel_tol = 1e-10;  ///< Dormand-Prince relative error tolerance per step
  int quad_order = 48;     ///< Gauss-Legendre points per piece (tanh, silu), as TheorySettings
  AttnSettings attn{};     ///< softmax expectations (qk_scale = 1/sqrt(dh)), as TheorySettings
  /// Steps of the fixed-step RK4 used instead of Dormand-Prince when the attention integral is
  /// sampled (qk_scale = 1/sqrt(dh)): that Monte Carlo field is only piecewise smooth (its
  /// eigen-decomposition factor changes basis where eigenvalues cross), so error control stalls.
  int fixed_steps = 64;
  /// Right-hand-side evaluations one solve (forward or backward) may spend (theory/ode_limits.hpp).
  std::int64_t max_evals = kDefaultMaxEvals;
};

/// Kernels of the continuum limit at requested depths tau in [0, 1].
struct ContinuumTrace {
  std::vector<double> tau;          ///< the requested grid, increasing, tau[0] = 0, tau.back() = 1
  std::vector<Eigen::MatrixXd> K;   ///< token kernel K(tau_i)
  std::vector<Eigen::MatrixXd> G;   ///< gradient covariance G(tau_i), G(1) = I
  std::vector<Eigen::MatrixXd> dK;  ///< dK/dtau at tau_i (the per-layer increment is dK/L)
  long forward_rhs_calls = 0;       ///< vector-field evaluations, forward pass
  long backward_rhs_calls = 0;      ///< vector-field evaluations, backward pass
  /// Max |K| difference, relative to max |K(0)|, between K(0) and the kernel re-integrated
  /// backwards from K(1) alongside G: a check of the integration error.
  double roundtrip_error = 0;
};

/// a0^2 = L a^2. Throws ConfigError (naming stack.branch_scale, stack.norm or stack.residual)
/// for a spec without a depth-continuum limit of this form.
double continuum_a02(const StackSpec& spec);

/// The vector field of the continuum ODEs for one spec (exposed for the tests).
class ContinuumField {
 public:
  ContinuumField(const StackSpec& spec, const ContinuumSettings& st);
  /// dK/dtau at kernel K (T x T).
  [[nodiscard]] Eigen::MatrixXd forward(const Eigen::MatrixXd& K) const;
  /// dG/dtau at gradient covariance G given the kernel K at the same depth.
  [[nodiscard]] Eigen::MatrixXd backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

/// Integrates both ODEs and returns kernels at the grid tau (increasing, from 0 to 1).
/// `progress` is called at every output depth of both passes (forward: tau / 2, backward:
/// 1 - tau / 2); returning false throws CancelledError ("continuum").
ContinuumTrace continuum_kernels(const StackSpec& spec, const ContinuumSettings& st, const std::vector<double>& tau,
                                 const ProgressFn& progress = {});

/// Engine "continuum": a Profile with one row per layer l = 0..L of spec.depth at tau = l/L,
/// with every metric of MODEL.md §2 and a column `tau`. q, rho, res, eff_rank and grad_var are
/// the L -> infinity limits at tau. update_ratio and ang_dist vanish like 1/sqrt(L); they are
/// given to leading order for the spec's depth L, from the increment dK(tau_{l-1})/L.
class ContinuumEngine final : public Engine {
 public:
  explicit ContinuumEngine(ContinuumSettings st = {}) : st_(st) {}
  [[nodiscard]] std::string name() const override { return "continuum"; }
  Profile run(const StackSpec& spec) override;

 private:
  ContinuumSettings st_;
};

}  // namespace sigprop::theory
