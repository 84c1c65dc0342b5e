#pragma once
/// @file Classic mean-field tools for fully connected stacks (blocks = "dense",
/// residual = false, norm = "none"): Poole et al. 2016, Schoenholz et al. 2017.
///   q map:  q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2               (Schoenholz eq. 3)
///   c map:  c' = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*         (eq. 5)
///   chi1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]: slope of the c map at c = 1 and the
///          per-layer growth of the gradient variance (eq. 7)
///   xi_q = -1 / log(dq'/dq at q*),  xi_c = -1 / log(chi_c*) with chi_c* the
///          slope of the c map at its stable fixed point c* (eq. 9-10)
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/progress.hpp"
#include "core/spec.hpp"

namespace sigprop::theory {

struct DenseMeanField {
  double sigma_w2 = 0, sigma_b2 = 0;
  double q_star = 0;          ///< stable length fixed point (per-coordinate variance)
  bool q_converged = false;   ///< false when q grows without bound (no finite fixed point)
  double chi1 = 0;            ///< sigma_w^2 E[phi'(u)^2] at q*
  double c_star = 1;          ///< stable correlation fixed point (1 in the ordered phase)
  double chi_c = 0;           ///< slope of the c map at c*
  double dq_slope = 0;        ///< slope of the q map at q*
  double xi_q = 0, xi_c = 0;  ///< depth scales (layers); +inf at criticality
  double xi_grad = 0;         ///< -1/log(chi1): gradient growth/decay scale (layers)
  std::string phase;          ///< "ordered" (chi1 < 1), "chaotic" (chi1 > 1), "critical", "unbounded"
  /// Recalled rule of thumb (Schoenholz et al. 2017, Fig. 5): trainable depth ~ 6 xi_c.
  [[nodiscard]] double trainable_depth() const { return 6 * xi_c; }
};

DenseMeanField dense_mean_field(Activation act, double sigma_w2, double sigma_b2, int quad_order = 48);
nlohmann::json to_json(const DenseMeanField& mf);

/// Largest phase-diagram grid, n_sw2 * n_sb2 points (docs/limits.md). A point costs ~35 ms for
/// tanh (the default 36 x 16 grid: ~20 s on one core), so the limit is about an hour.
inline constexpr long long kMaxPhasePoints = 100'000;

/// Order/chaos phase diagram over a regular grid; a row per (sigma_w2, sigma_b2). More than
/// kMaxPhasePoints points is a ConfigError naming the sigma_w2 and sigma_b2 grid. `progress`,
/// when given, is called after every point; returning false throws CancelledError ("phase").
std::vector<DenseMeanField> phase_diagram(Activation act, double sw2_min, double sw2_max, int n_sw2, double sb2_min,
                                          double sb2_max, int n_sb2, int quad_order = 48,
                                          const ProgressFn& progress = {});
/// CSV with a header line; infinite depth scales are written as "inf".
std::string phase_diagram_csv(const std::vector<DenseMeanField>& rows, Activation act);

}  // namespace sigprop::theory
