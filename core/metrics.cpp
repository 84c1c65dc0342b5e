#include "core/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

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

Eigen::VectorXd symmetric_eigenvalues(const Eigen::MatrixXd& K) {
  const Eigen::Index n = K.rows();
  if (n <= 2) return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(K, Eigen::EigenvaluesOnly).eigenvalues();
  // Scaled to entries in [-1, 1] (as Eigen's solver) so that the squares below cannot overflow.
  Eigen::MatrixXd A = K.selfadjointView<Eigen::Lower>();
  const double scale = A.cwiseAbs().maxCoeff();
  if (!(scale > 0) || !std::isfinite(scale))
    return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(K, Eigen::EigenvaluesOnly).eigenvalues();
  A /= scale;
  Eigen::Tridiagonalization<Eigen::MatrixXd> tri(A);
  std::vector<double> d(n), e2(n, 0.0);  // diagonal, squared subdiagonal (e2[n-1] = 0)
  for (Eigen::Index i = 0; i < n; ++i) d[i] = tri.diagonal()(i);
  for (Eigen::Index i = 0; i + 1 < n; ++i) e2[i] = tri.subDiagonal()(i) * tri.subDiagonal()(i);
  // Root-free implicit QL with Wilkinson shift (Pal, Walker & Kahan; LAPACK dsterf's QL sweep):
  // the rotations are carried by squared quantities, so a step costs divisions, no square root.
  const double eps = std::numeric_limits<double>::epsilon(), eps2 = eps * eps;
  const double tiny = std::numeric_limits<double>::min();
  const long max_sweeps = 30 * static_cast<long>(n);
  long sweeps = 0;
  Eigen::Index l = 0;
  while (l < n) {
    Eigen::Index m = l;
    for (; m + 1 < n; ++m)
      // Eigen's deflation test on the scaled matrix: |e| <= eps sqrt(|d_m| + |d_m+1|).
      if (e2[m] <= eps2 * (std::abs(d[m]) + std::abs(d[m + 1])) || e2[m] <= tiny) break;
    if (m + 1 < n) e2[m] = 0;
    if (m == l) {  // d[l] has converged
      ++l;
      continue;
    }
    if (m == l + 1) {  // a 2 x 2 block: its eigenvalues directly
      const double a = d[l], c = d[l + 1], b = std::sqrt(e2[l]);
      const double sm = a + c, rt = std::hypot(a - c, 2 * b);
      const double acmx = std::abs(a) > std::abs(c) ? a : c, acmn = std::abs(a) > std::abs(c) ? c : a;
      const double rt1 = sm < 0 ? 0.5 * (sm - rt) : 0.5 * (sm + rt);
      // The smaller one from the determinant (no cancellation): rt1 rt2 = a c - b^2.
      const double rt2 = rt1 != 0 ? (acmx / rt1) * acmn - (b / rt1) * b : -rt1;
      d[l] = rt1;
      d[l + 1] = rt2;
      e2[l] = 0;
      l += 2;
      continue;
    }
    if (++sweeps > max_sweeps)  // not converged: Eigen's solver decides
      return Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(K, Eigen::EigenvaluesOnly).eigenvalues();
    // Wilkinson shift from the leading 2 x 2 block.
    const double rte = std::sqrt(e2[l]);
    double sigma = (d[l + 1] - d[l]) / (2 * rte);
    const double r0 = std::hypot(sigma, 1.0);
    sigma = d[l] - rte / (sigma + std::copysign(r0, sigma));
    double c = 1, s = 0, gamma = d[m] - sigma, p = gamma * gamma;
    for (Eigen::Index i = m - 1; i >= l; --i) {
      const double bb = e2[i], r = p + bb;
      if (i != m - 1) e2[i + 1] = s * r;
      const double oldc = c;
      c = p / r;
      s = bb / r;
      const double oldgam = gamma, alpha = d[i];
      gamma = c * (alpha - sigma) - s * oldgam;
      d[i + 1] = oldgam + (alpha - gamma);
      p = c != 0 ? (gamma * gamma) / c : oldc * bb;
    }
    e2[l] = s * p;
    d[l] = sigma + gamma;
  }
  Eigen::VectorXd ev(n);
  for (Eigen::Index i = 0; i < n; ++i) ev(i) = d[i] * scale;
  return ev;
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
  Eigen::VectorXd sv = symmetric_eigenvalues(K).cwiseMax(0.0).cwiseSqrt();
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
