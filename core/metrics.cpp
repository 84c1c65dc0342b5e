#include "core/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sigprop {

double effective_rank(const Eigen::VectorXd& s) {
  double total = 0;
  for (double v : s) total += std::max(v, 0.0);
  if (!(total > 0)) return std::nan("");
  double h = 0;
  for (double v : s) {
    double p = std::max(v, 0.0) / total;
    if (p > 0) h -= p * std::log(p);
  }
  return std::exp(h);
}

StateMetrics state_metrics_from_kernel(const Eigen::MatrixXd& K) {
  const auto T = K.rows();
  StateMetrics m;
  double tr = K.trace();
  m.q = tr / static_cast<double>(T);
  // sqrt(K_tt) once per token (not twice per entry), column by column (Eigen is column-major).
  Eigen::VectorXd sd(T);
  for (Eigen::Index t = 0; t < T; ++t) sd(t) = std::sqrt(K(t, t));
  double cos_sum = 0;
  for (Eigen::Index s = 0; s < T; ++s)
    for (Eigen::Index t = 0; t < T; ++t)
      if (s != t) cos_sum += K(t, s) / (sd(t) * sd(s));
  m.rho = cos_sum / static_cast<double>(T * (T - 1));
  // ||X - 1 xbar^T||^2 / d = tr K - (1/T) 1^T K 1
  double centred = tr - K.sum() / static_cast<double>(T);
  m.res = std::sqrt(std::max(centred, 0.0) / tr);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K, Eigen::EigenvaluesOnly);
  Eigen::VectorXd sv = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  m.eff_rank = effective_rank(sv);
  return m;
}

StepMetrics step_metrics_from_kernels(const Eigen::MatrixXd& Kprev, const Eigen::MatrixXd& Kcur,
                                      const Eigen::MatrixXd& C) {
  const auto T = Kprev.rows();
  StepMetrics m;
  // Relative to tr K_{l-1} term by term, so kernels near the top of the double range (a diverging
  // stack one layer before overflow) give a finite ratio instead of inf - inf.
  const double tp = Kprev.trace();
  const double diff = Kcur.trace() / tp - 2 * (C.trace() / tp) + 1.0;
  m.update_ratio = std::sqrt(std::max(diff, 0.0));
  double ang = 0;
  for (Eigen::Index t = 0; t < T; ++t) {
    double c = C(t, t) / (std::sqrt(Kprev(t, t)) * std::sqrt(Kcur(t, t)));
    ang += std::acos(std::clamp(c, -1.0, 1.0));
  }
  m.ang_dist = ang / (static_cast<double>(T) * std::numbers::pi);
  return m;
}

}  // namespace sigprop
