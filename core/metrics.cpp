#include "core/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
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

namespace {

// q, rho and res of state_metrics_from_kernel (everything but eff_rank).
StateMetrics kernel_moments(const Eigen::MatrixXd& K) {
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
  return m;
}

// eff_rank from K's eigenvalues: the singular values of X are sqrt(d * eig(K)).
double eff_rank_from_eigenvalues(const Eigen::VectorXd& eig) {
  return effective_rank(eig.cwiseMax(0.0).cwiseSqrt());
}

// One matrix's implicit symmetric QR iteration on its tridiagonal form, as a resumable state:
// Eigen 3.4's computeFromTridiagonal_impl and tridiagonal_qr_step (SelfAdjointEigenSolver.h)
// without eigenvectors, cut into single Givens rotations (step) and the deflation test between
// sweeps (next_sweep), so that several matrices' iterations can be interleaved.
struct QrLane {
  double* d = nullptr;  // diagonal (n)
  double* e = nullptr;  // subdiagonal (n - 1)
  Eigen::Index n = 0, start = 0, end = 0, k = 0, iter = 0;
  double x = 0, z = 0;     // the rotation's inputs: the entry to keep and the bulge to annihilate
  std::ptrdiff_t id = -1;  // the matrix's index in the batch; -1: the lane is idle
  bool converged = true;

  bool in_sweep() const { return k < end && z != 0; }

  // One rotation of the sweep (the body of tridiagonal_qr_step's loop). The Givens rotation is
  // JacobiRotation::makeGivens(x, z) for z != 0 with its two cases as selects instead of a
  // branch (a mispredicted branch would stall the other lanes' chains too): with
  // a = |x| > |z|, t = (a ? z/x : x/z), u = sign(a ? x : z) sqrt(1 + t^2), r = 1/u: Eigen's
  // c = r, s = -t c when a, else s = -1/u = -r, c = -t s = t r, the same roundings.
  void step() {
    const bool a = std::abs(x) > std::abs(z);
    const double t = (a ? z : x) / (a ? x : z);
    const double u0 = std::sqrt(1.0 + t * t);
    const double u = (a ? x : z) < 0 ? -u0 : u0;
    const double r = 1.0 / u;
    const double c = a ? r : t * r;
    const double s = a ? -t * r : -r;
    const double dk = d[k], dk1 = d[k + 1], ek = e[k];
    const double sdk = s * dk + c * ek;
    const double dkp1 = s * ek + c * dk1;
    d[k] = c * (c * dk - s * ek) - s * (c * ek - s * dk1);
    d[k + 1] = s * sdk + c * dkp1;
    e[k] = c * sdk - s * dkp1;
    if (k > start) e[k - 1] = c * e[k - 1] - s * z;
    x = e[k];
    if (k < end - 1) {
      z = -s * e[k + 1];
      e[k + 1] = c * e[k + 1];
    }
    ++k;
  }

  // The deflation test, the next unreduced block at the bottom and its Wilkinson shift
  // (computeFromTridiagonal_impl's loop body up to the QR step). false: finished (all
  // off-diagonal entries negligible, or Eigen's 30 n iterations spent: not converged).
  bool next_sweep() {
    const double consider_as_zero = std::numeric_limits<double>::min();
    const double precision_inv = 1.0 / std::numeric_limits<double>::epsilon();
    for (Eigen::Index i = start; i < end; ++i) {
      if (std::abs(e[i]) < consider_as_zero) {
        e[i] = 0;
      } else {
        const double scaled = precision_inv * e[i];
        if (scaled * scaled <= std::abs(d[i]) + std::abs(d[i + 1])) e[i] = 0;
      }
    }
    while (end > 0 && e[end - 1] == 0) --end;
    if (end <= 0) return false;
    if (++iter > 30 * n) {
      converged = false;
      return false;
    }
    start = end - 1;
    while (start > 0 && e[start - 1] != 0) --start;
    const double td = (d[end - 1] - d[end]) * 0.5;
    const double ee = e[end - 1];
    double mu = d[end];
    if (td == 0) {
      mu -= std::abs(ee);
    } else if (ee != 0) {
      const double e2 = ee * ee;
      const double h = Eigen::numext::hypot(td, ee);
      if (e2 == 0)
        mu -= ee / ((td + (td > 0 ? h : -h)) / ee);
      else
        mu -= e2 / (td + (td > 0 ? h : -h));
    }
    x = d[start] - mu;
    z = e[start];
    k = start;
    return true;
  }
};

}  // namespace

StateMetrics state_metrics_from_kernel(const Eigen::MatrixXd& K) {
  StateMetrics m = kernel_moments(K);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K, Eigen::EigenvaluesOnly);
  m.eff_rank = eff_rank_from_eigenvalues(es.eigenvalues());
  return m;
}

std::vector<StateMetrics> state_metrics_from_kernels(std::span<const Eigen::MatrixXd* const> Ks) {
  const std::vector<Eigen::VectorXd> eig = selfadjoint_eigenvalues(Ks);
  std::vector<StateMetrics> out(Ks.size());
  for (std::size_t i = 0; i < Ks.size(); ++i) {
    out[i] = kernel_moments(*Ks[i]);
    out[i].eff_rank = eff_rank_from_eigenvalues(eig[i]);
  }
  return out;
}

std::vector<Eigen::VectorXd> selfadjoint_eigenvalues(std::span<const Eigen::MatrixXd* const> As) {
  const std::size_t N = As.size();
  std::vector<Eigen::VectorXd> diag(N), sub(N);
  std::vector<double> scale(N, 1.0);
  // Tridiagonal forms one matrix at a time (SelfAdjointEigenSolver::compute's steps: the lower
  // triangle divided by its largest magnitude, then Householder reduction).
  Eigen::MatrixXd mat;
  Eigen::Tridiagonalization<Eigen::MatrixXd> tri;
  for (std::size_t i = 0; i < N; ++i) {
    const Eigen::MatrixXd& A = *As[i];
    const Eigen::Index n = A.rows();
    if (n <= 1) {
      diag[i] = A.diagonal();
      continue;
    }
    mat = A.triangularView<Eigen::Lower>();
    double sc = mat.cwiseAbs().maxCoeff();
    if (sc == 0) sc = 1;
    mat.triangularView<Eigen::Lower>() /= sc;
    scale[i] = sc;
    tri.compute(mat);
    diag[i] = tri.diagonal();
    sub[i] = tri.subDiagonal();
  }
  // The QR iterations of kLanes matrices interleaved, a lane taking the next matrix when its own
  // has converged: each rotation depends on the previous one of its matrix (a division, a square
  // root and a division in a row), so one matrix alone leaves the core mostly waiting.
  constexpr int kLanes = 4;
  QrLane lanes[kLanes];
  std::size_t next = 0;
  auto finish = [&](const QrLane& a) {
    Eigen::VectorXd& v = diag[static_cast<std::size_t>(a.id)];
    // Ascending, as Eigen sorts a converged result (NaN, which Eigen's selection sort leaves
    // in place, last: a strict weak order either way).
    if (a.converged)
      std::sort(v.begin(), v.end(), [](double p, double q) { return p < q || (!std::isnan(p) && std::isnan(q)); });
    v *= scale[static_cast<std::size_t>(a.id)];
  };
  auto load = [&](QrLane& a) {
    while (next < N) {
      const std::size_t i = next++;
      if (diag[i].size() <= 1) continue;
      a = QrLane{};
      a.d = diag[i].data();
      a.e = sub[i].data();
      a.n = diag[i].size();
      a.end = a.n - 1;
      a.id = static_cast<std::ptrdiff_t>(i);
      if (a.next_sweep()) return true;
      finish(a);
    }
    a.id = -1;
    return false;
  };
  int live = 0;
  for (QrLane& a : lanes) live += load(a) ? 1 : 0;
  while (live > 0) {
    for (QrLane& a : lanes) {
      if (a.id < 0) continue;
      if (a.in_sweep()) {
        a.step();
      } else if (!a.next_sweep()) {
        finish(a);
        if (!load(a)) --live;
      }
    }
  }
  return diag;
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
