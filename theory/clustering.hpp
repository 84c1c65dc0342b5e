#pragma once
/// @file Self-attention dynamics of tokens on the unit sphere (Geshkovski, Letrouit, Polyanskiy
/// & Rigollet 2023, "A mathematical perspective on transformers" / "The emergence of clusters
/// in self-attention dynamics"), with Q = K = V = identity:
///   SA:  dx_i/dt = P_{x_i}( (1/Z_i) sum_j e^{beta <x_i, x_j>} x_j ),  Z_i = sum_k e^{beta <x_i, x_k>}
///   USA: dx_i/dt = P_{x_i}( (1/n)   sum_j e^{beta <x_i, x_j>} x_j ),
/// P_x y = y - <x, y> x the projection on the tangent space at x. From an equiangular start
/// (all <x_i, x_j> = rho, i != j) the configuration stays equiangular and
///   SA:  rho' = 2 e^{beta rho} (1 - rho)(1 + (n - 1) rho) / (e^beta + (n - 1) e^{beta rho})
///   USA: rho' = 2 e^{beta rho} (1 - rho)(1 + (n - 1) rho) / n
/// (derived in docs/ode.md §2). Both systems are integrated with Boost.Odeint's adaptive
/// Dormand-Prince 5(4) stepper with dense output.
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "core/engine.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"
#include "theory/ode_limits.hpp"

namespace sigprop::theory {

enum class AttnDynamics { SA, USA };

struct ClusteringSettings {
  AttnDynamics variant = AttnDynamics::SA;
  double beta = 1.0;         ///< inverse temperature (>= 0)
  double t_end = 10.0;       ///< final time
  int points = 100;          ///< output intervals: times t_end * i / points, i = 0..points
  bool equiangular = false;  ///< start from an exactly equiangular configuration (needs d >= n)
  uint64_t seed = 1;         ///< Philox seed of a random start
  double abs_tol = 1e-10;    ///< Dormand-Prince absolute tolerance per step
  double rel_tol = 1e-10;    ///< Dormand-Prince relative tolerance per step
  std::int64_t max_evals = kDefaultMaxEvals;  ///< right-hand-side evaluations per solve (theory/ode_limits.hpp)
};

/// Right-hand side of the particle system for X (n x d, unit rows).
Eigen::MatrixXd clustering_rhs(const Eigen::MatrixXd& X, double beta, AttnDynamics variant);
/// Right-hand side of the equiangular reduction.
double equiangular_rhs(double rho, int n, double beta, AttnDynamics variant);

/// n tokens with all pairwise inner products rho0 (rows of the Cholesky factor of
/// (1 - rho0) I + rho0 11^T, padded with zeros to d columns). Needs d >= n and rho0 in (-1/(n-1), 1).
Eigen::MatrixXd equiangular_start(int n, int d, double rho0);
/// The stack's input of MODEL.md §1 (sqrt(1-rho0) G + sqrt(rho0) 1 g^T) projected on the sphere:
/// generic points whose pairwise correlation is rho0 in expectation.
Eigen::MatrixXd random_start(int n, int d, double rho0, uint64_t seed);

struct ClusteringTrace {
  std::vector<double> t;         ///< output times
  std::vector<double> rho;       ///< mean over pairs i != j of <x_i, x_j>
  std::vector<double> rho_min;   ///< smallest pairwise inner product
  std::vector<double> rho_max;   ///< largest pairwise inner product
  std::vector<double> rho_eq;    ///< equiangular reduction started from rho(0)
  std::vector<double> norm_dev;  ///< max_i | |x_i| - 1 | (the flow preserves the sphere)
  long rhs_calls = 0;
};

/// Integrates the particle system from X0 (n x d) and the equiangular ODE from X0's mean
/// pairwise inner product, reporting both on the grid of st.
/// `progress` is called at every output time (fraction t / t_end of the particle flow); returning
/// false throws CancelledError ("clustering").
ClusteringTrace clustering_flow(const Eigen::MatrixXd& X0, const ClusteringSettings& st, const ProgressFn& progress = {});

/// Profile of the flow: one row per output time (the "layer" column counts output times),
/// columns t, rho, rho_min, rho_max, rho_eq, norm_dev. tokens = n, width = d and input.rho0
/// come from the spec; st.points replaces the depth.
Profile clustering_profile(const StackSpec& spec, const ClusteringSettings& st, const ProgressFn& progress = {});

/// Engine "clustering": clustering_profile with the settings given at construction and the
/// callback of set_progress.
class ClusteringEngine final : public Engine {
 public:
  explicit ClusteringEngine(ClusteringSettings st = {}) : st_(st) {}
  [[nodiscard]] std::string name() const override { return "clustering"; }
  Profile run(const StackSpec& spec) override { return clustering_profile(spec, st_, progress_callback()); }

 private:
  ClusteringSettings st_;
};

AttnDynamics parse_attn_dynamics(const std::string& s);

}  // namespace sigprop::theory
