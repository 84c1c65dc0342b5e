#include "core/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
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

}  // namespace

double stream_res(const double* X, int T, int d) {
  const auto n = static_cast<std::size_t>(d);
  std::vector<double> mean(n, 0.0);
  for (int t = 0; t < T; ++t)
    for (std::size_t j = 0; j < n; ++j) mean[j] += X[t * n + j];
  for (double& m : mean) m /= static_cast<double>(T);
  double centred = 0, total = 0;
  for (int t = 0; t < T; ++t)
    for (std::size_t j = 0; j < n; ++j) {
      const double x = X[t * n + j], c = x - mean[j];
      centred += c * c;
      total += x * x;
    }
  return std::sqrt(centred / total);
}

namespace {

// eff_rank from K's eigenvalues: the singular values of X are sqrt(d * eig(K)).
double eff_rank_from_eigenvalues(const Eigen::VectorXd& eig) {
  return effective_rank(eig.cwiseMax(0.0).cwiseSqrt());
}

// The batched eigenvalues work on several matrices of one size at once, one per SIMD lane, in
// GCC's vector extension (elementwise arithmetic and selects; the portable build's are SSE2's).
#if defined(__AVX512F__)
constexpr std::size_t kLanes = 8;
#elif defined(__AVX__)
constexpr std::size_t kLanes = 4;
#else
constexpr std::size_t kLanes = 2;
#endif
typedef double LaneVec __attribute__((vector_size(kLanes * sizeof(double))));
typedef std::int64_t LaneMask __attribute__((vector_size(kLanes * sizeof(double))));

// Householder tridiagonalisation of several symmetric matrices of the same size at once, one per
// SIMD lane: the reduction is the same sequence of operations for every matrix (only the values
// differ), so the matrices are stored lane-innermost (entry (i, j) of all of them in one vector)
// and every operation below is elementwise over the lanes; the per-matrix branches (Eigen's
// makeHouseholder for a negligible tail) are selects. The steps are Eigen 3.4's
// tridiagonalization_inplace (Tridiagonalization.h) with makeHouseholder (Householder.h): for
// column i, the Householder vector v = (1, tail / (c0 - beta)), tau = (beta - c0) / beta,
// beta = -sign(c0) sqrt(c0^2 + |tail|^2) (tau = 0, beta = c0 when |tail|^2 <= DBL_MIN), then
// p = A22 (tau v), p -= (tau / 2) (p . v) v, A22 -= v p^T + p v^T on the lower triangle
// (Golub & Van Loan §8.3.1). The summation order of the matrix-vector product differs from
// Eigen's blocked symv, so values agree with Eigen's to rounding, not bit for bit. Each lane's
// values depend only on its own matrix.

struct TriLanes {
  std::vector<LaneVec> a;  // the lower triangle, row-major: a[i * n + j], j <= i
  std::vector<LaneVec> v, h, p, beta;

  // Tridiagonalises the matrices As[idx[l]] (all n x n, n >= 2, count <= kLanes; unused lanes
  // hold a zero matrix): scale[idx[l]] = the largest magnitude of the lower triangle (1 if 0),
  // diag/sub[idx[l]] = the diagonal and subdiagonal of the scaled matrix's tridiagonal form.
  void reduce(std::span<const Eigen::MatrixXd* const> As, std::span<const std::size_t> idx,
              std::vector<double>& scale, std::vector<Eigen::VectorXd>& diag, std::vector<Eigen::VectorXd>& sub) {
    const auto n = static_cast<std::size_t>(As[idx[0]]->rows());
    a.assign(n * n, LaneVec{});
    v.assign(n, LaneVec{});
    h.assign(n, LaneVec{});
    p.assign(n, LaneVec{});
    beta.assign(n, LaneVec{});
    LaneVec sc{};
    for (std::size_t l = 0; l < kLanes; ++l) {
      double s = 1;
      if (l < idx.size()) {
        const Eigen::MatrixXd& A = *As[idx[l]];
        s = 0;
        for (std::size_t j = 0; j < n; ++j)
          for (std::size_t i = j; i < n; ++i) {
            const double x = A(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
            a[i * n + j][l] = x;
            s = std::max(s, std::abs(x));
          }
        if (s == 0) s = 1;
        scale[idx[l]] = s;
      }
      sc[l] = s;
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j <= i; ++j) a[i * n + j] /= sc;

    const LaneVec zero{};
    const LaneVec tiny = zero + std::numeric_limits<double>::min();
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const std::size_t r0 = i + 1, m = n - r0;  // the trailing block: rows/columns r0 .. n-1
      const LaneVec c0 = a[r0 * n + i];
      LaneVec tsq{};
      for (std::size_t r = r0 + 1; r < n; ++r) tsq += a[r * n + i] * a[r * n + i];
      const auto small = tsq <= tiny;
      LaneVec b = c0 * c0 + tsq;
      for (std::size_t l = 0; l < kLanes; ++l) b[l] = std::sqrt(b[l]);
      b = c0 >= zero ? -b : b;
      b = small ? c0 : b;
      const LaneVec denom = small ? zero + 1.0 : c0 - b;
      const LaneVec tau = small ? zero : (b - c0) / b;
      beta[i] = b;
      // v = (1, tail / (c0 - beta)), and h = tau v, the symv's right-hand side.
      v[0] = zero + 1.0;
      for (std::size_t r = 1; r < m; ++r) v[r] = small ? zero : a[(r0 + r) * n + i] / denom;
      for (std::size_t r = 0; r < m; ++r) {
        h[r] = tau * v[r];
        p[r] = zero;
      }
      // p = A22 h from the lower triangle.
      for (std::size_t r = 0; r < m; ++r) {
        const LaneVec* row = &a[(r0 + r) * n + r0];
        const LaneVec hr = h[r];
        LaneVec acc = row[r] * hr;
        for (std::size_t c = 0; c < r; ++c) {
          acc += row[c] * h[c];
          p[c] += row[c] * hr;
        }
        p[r] += acc;
      }
      LaneVec dot{};
      for (std::size_t r = 0; r < m; ++r) dot += p[r] * v[r];
      const LaneVec f = tau * -0.5 * dot;
      for (std::size_t r = 0; r < m; ++r) p[r] += f * v[r];
      // A22 -= v p^T + p v^T (lower triangle).
      for (std::size_t r = 0; r < m; ++r) {
        LaneVec* row = &a[(r0 + r) * n + r0];
        const LaneVec vr = v[r], pr = p[r];
        for (std::size_t c = 0; c <= r; ++c) row[c] -= vr * p[c] + pr * v[c];
      }
    }
    for (std::size_t l = 0; l < idx.size(); ++l) {
      Eigen::VectorXd& d = diag[idx[l]];
      Eigen::VectorXd& e = sub[idx[l]];
      d.resize(static_cast<Eigen::Index>(n));
      e.resize(static_cast<Eigen::Index>(n - 1));
      for (std::size_t k = 0; k < n; ++k) d(static_cast<Eigen::Index>(k)) = a[k * n + k][l];
      for (std::size_t k = 0; k + 1 < n; ++k) e(static_cast<Eigen::Index>(k)) = beta[k][l];
    }
  }
};

// The implicit symmetric QR iterations of several same-sized tridiagonal matrices in SIMD lanes:
// kQrGroups vectors of kLanes lanes, stepped alternately so that the out-of-order core overlaps
// their chains of dependent divisions and square roots (one vector's rotation waits about 130
// cycles for the previous one with AVX-512). Per lane it is Eigen 3.4's iteration (computeFromTridiagonal_impl
// and tridiagonal_qr_step, SelfAdjointEigenSolver.h, without eigenvectors): the same deflation
// test, block search, Wilkinson shift, Givens rotations and 30 n iteration limit. The lanes sweep
// in lock-step over the union of their blocks, a rotation's results kept (a select) only in the
// lanes whose block contains the index and whose bulge is nonzero; makeGivens's two cases are
// selects too (with a = |x| > |z|, t = (a ? z/x : x/z), u = sign(a ? x : z) sqrt(1 + t^2),
// r = 1/u: c = r, s = -t c when a, else s = -r, c = t r: Eigen's roundings). A lane whose matrix
// has finished takes the next one of its size. 3 vectors with AVX-512 and AVX2 (8 and 4 lanes),
// 6 with SSE2's 2 lanes: the fastest counts measured on 1001 64 x 64 kernels.
constexpr std::size_t kQrGroups = kLanes == 2 ? 6 : 3;
constexpr std::size_t kQrLanes = kQrGroups * kLanes;

struct QrLanes {
  std::vector<LaneVec> d, e;  // d[k * kQrGroups + g][j]: lane g * kLanes + j's diagonal entry k
  std::int64_t n = 0;
  std::int64_t start[kQrLanes] = {}, end[kQrLanes] = {}, iter[kQrLanes] = {};
  std::ptrdiff_t id[kQrLanes] = {};  // the matrix in each lane; -1: idle
  LaneVec x[kQrGroups] = {}, z[kQrGroups] = {};

  // A lane's entry as a double lvalue: GCC and Clang vector types alias their element type, and
  // Clang (unlike GCC) does not bind a reference to a subscripted vector element.
  static double& lane(LaneVec& v, std::size_t j) { return reinterpret_cast<double*>(&v)[j]; }
  double& D(std::size_t l, std::int64_t k) { return lane(d[static_cast<std::size_t>(k) * kQrGroups + l / kLanes], l % kLanes); }
  double& E(std::size_t l, std::int64_t k) { return lane(e[static_cast<std::size_t>(k) * kQrGroups + l / kLanes], l % kLanes); }

  // The current blocks as lane masks: st/en = start/end of the lanes in `live` (others an empty
  // range), and the union [lo, hi) of the live lanes' blocks.
  void blocks(const bool* live, LaneMask* st, LaneMask* en, std::int64_t& lo, std::int64_t& hi) const {
    lo = n;
    hi = 0;
    for (std::size_t l = 0; l < kQrLanes; ++l) {
      st[l / kLanes][l % kLanes] = live[l] ? start[l] : n;
      en[l / kLanes][l % kLanes] = live[l] ? end[l] : 0;
      if (live[l]) {
        lo = std::min(lo, start[l]);
        hi = std::max(hi, end[l]);
      }
    }
  }

  // The deflation test of every live lane's current block, vectorised (it reads only d).
  void deflate() {
    bool live[kQrLanes];
    for (std::size_t l = 0; l < kQrLanes; ++l) live[l] = id[l] >= 0;
    LaneMask st[kQrGroups] = {}, en[kQrGroups] = {};
    std::int64_t lo = 0, hi = 0;
    blocks(live, st, en, lo, hi);
    const LaneVec zero{};
    const LaneVec tiny = zero + std::numeric_limits<double>::min();
    const double precision_inv = 1.0 / std::numeric_limits<double>::epsilon();
    for (std::int64_t i = lo; i < hi; ++i)
      for (std::size_t g = 0; g < kQrGroups; ++g) {
        const std::size_t ig = static_cast<std::size_t>(i) * kQrGroups + g;
        const LaneMask in = (st[g] <= i) & (en[g] > i);
        const LaneVec ei = e[ig], di = d[ig], di1 = d[ig + kQrGroups];
        const LaneVec ae = ei < zero ? -ei : ei;
        const LaneVec scaled = precision_inv * ei;
        const LaneVec bound = (di < zero ? -di : di) + (di1 < zero ? -di1 : di1);
        const LaneMask neg = (ae < tiny) | (scaled * scaled <= bound);
        e[ig] = (in & neg) ? zero : ei;
      }
  }

  // Lane l after deflate(): the next unreduced block at the bottom and its Wilkinson shift (the
  // rest of computeFromTridiagonal_impl's loop body before the QR step). false: finished, with
  // converged = false if Eigen's 30 n iterations are spent.
  bool next_block(std::size_t l, bool& converged) {
    std::int64_t& en = end[l];
    while (en > 0 && E(l, en - 1) == 0) --en;
    if (en <= 0) {
      converged = true;
      return false;
    }
    if (++iter[l] > 30 * n) {
      converged = false;
      return false;
    }
    std::int64_t st = en - 1;
    while (st > 0 && E(l, st - 1) != 0) --st;
    start[l] = st;
    const double td = (D(l, en - 1) - D(l, en)) * 0.5;
    const double ee = E(l, en - 1);
    double mu = D(l, en);
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
    x[l / kLanes][l % kLanes] = D(l, st) - mu;
    z[l / kLanes][l % kLanes] = E(l, st);
    return true;
  }

  // One lock-step sweep of the lanes in `live` over their blocks (tridiagonal_qr_step's loop,
  // k = start .. end-1 while z != 0).
  void sweep(const bool* live) {
    LaneMask st[kQrGroups] = {}, en[kQrGroups] = {};
    std::int64_t lo = 0, hi = 0;
    blocks(live, st, en, lo, hi);
    const LaneVec zero{};
    const LaneVec one = zero + 1.0;
    for (std::int64_t k = lo; k < hi; ++k)
      for (std::size_t g = 0; g < kQrGroups; ++g) {
        const std::size_t kg = static_cast<std::size_t>(k) * kQrGroups + g;
        LaneVec& X = x[g];
        LaneVec& Z = z[g];
        const LaneMask act = (st[g] <= k) & (en[g] > k) & (Z != zero);
        const LaneVec ax = X < zero ? -X : X, az = Z < zero ? -Z : Z;
        const LaneMask a = ax > az;
        const LaneVec t = (a ? Z : X) / (a ? X : Z);
        LaneVec u = one + t * t;
        for (std::size_t j = 0; j < kLanes; ++j) u[j] = std::sqrt(u[j]);
        u = (a ? X : Z) < zero ? -u : u;
        const LaneVec r = one / u;
        const LaneVec c = a ? r : t * r;
        const LaneVec s = a ? -t * r : -r;
        const LaneVec dk = d[kg], dk1 = d[kg + kQrGroups], ek = e[kg];
        const LaneVec sdk = s * dk + c * ek;
        const LaneVec dkp1 = s * ek + c * dk1;
        d[kg] = act ? c * (c * dk - s * ek) - s * (c * ek - s * dk1) : dk;
        d[kg + kQrGroups] = act ? s * sdk + c * dkp1 : dk1;
        const LaneVec ekn = c * sdk - s * dkp1;
        e[kg] = act ? ekn : ek;
        if (k > 0) {
          const LaneVec ek0 = e[kg - kQrGroups];
          e[kg - kQrGroups] = (act & (st[g] < k)) ? c * ek0 - s * Z : ek0;
        }
        X = act ? ekn : X;
        if (k + 1 < n - 1) {
          const LaneMask more = act & (en[g] - 1 > k);
          const LaneVec ek1 = e[kg + kQrGroups];
          Z = more ? -s * ek1 : Z;
          e[kg + kQrGroups] = more ? c * ek1 : ek1;
        }
      }
  }

  // The eigenvalues of the tridiagonal matrices (diag[i], sub[i]) for i in group (all of the same
  // size, >= 2), in place in diag[i]: ascending, or as left by the iteration if it did not
  // converge within 30 n steps (as Eigen's).
  void run(const std::vector<std::size_t>& group, std::vector<Eigen::VectorXd>& diag,
           const std::vector<Eigen::VectorXd>& sub) {
    n = diag[group[0]].size();
    const auto nu = static_cast<std::size_t>(n);
    d.assign(nu * kQrGroups, LaneVec{});
    e.assign(nu * kQrGroups, LaneVec{});
    std::size_t next = 0;
    auto load = [&](std::size_t l) {
      if (next == group.size()) {
        id[l] = -1;
        return false;
      }
      const std::size_t i = group[next++];
      for (std::size_t k = 0; k < nu; ++k) D(l, static_cast<std::int64_t>(k)) = diag[i](static_cast<Eigen::Index>(k));
      for (std::size_t k = 0; k + 1 < nu; ++k) E(l, static_cast<std::int64_t>(k)) = sub[i](static_cast<Eigen::Index>(k));
      id[l] = static_cast<std::ptrdiff_t>(i);
      start[l] = 0;
      end[l] = n - 1;
      iter[l] = 0;
      return true;
    };
    auto finish = [&](std::size_t l, bool converged) {
      Eigen::VectorXd& v = diag[static_cast<std::size_t>(id[l])];
      for (std::size_t k = 0; k < nu; ++k) v(static_cast<Eigen::Index>(k)) = D(l, static_cast<std::int64_t>(k));
      // Ascending, as Eigen sorts a converged result (NaN, which Eigen's selection sort leaves
      // in place, last: a strict weak order either way).
      if (converged)
        std::sort(v.begin(), v.end(), [](double p, double q) { return p < q || (!std::isnan(p) && std::isnan(q)); });
    };
    for (std::size_t l = 0; l < kQrLanes; ++l) load(l);
    bool live[kQrLanes];
    for (;;) {
      deflate();
      bool any = false;
      for (std::size_t l = 0; l < kQrLanes; ++l) {
        live[l] = false;
        if (id[l] < 0) continue;
        bool converged = true;
        if (next_block(l, converged)) {
          live[l] = true;
          any = true;
        } else {
          finish(l, converged);
          if (load(l)) any = true;  // its deflation test and first sweep in the next round
        }
      }
      if (!any) break;
      sweep(live);
    }
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
  // SelfAdjointEigenSolver::compute's steps for each size: the lower triangle divided by its
  // largest magnitude, Householder reduction of kLanes matrices at once, then the QR
  // iterations of kQrLanes at once, and the eigenvalues scaled back.
  std::vector<std::vector<std::size_t>> by_size;  // by_size[n]: the indices of the n x n matrices
  for (std::size_t i = 0; i < N; ++i) {
    const Eigen::MatrixXd& A = *As[i];
    const auto n = static_cast<std::size_t>(A.rows());
    if (n <= 1) {
      diag[i] = A.diagonal();
      continue;
    }
    if (by_size.size() <= n) by_size.resize(n + 1);
    by_size[n].push_back(i);
  }
  TriLanes tri;
  QrLanes qr;
  for (std::size_t n = 2; n < by_size.size(); ++n) {
    const std::vector<std::size_t>& group = by_size[n];
    if (group.empty()) continue;
    for (std::size_t g = 0; g < group.size(); g += kLanes) {
      const std::size_t count = std::min<std::size_t>(kLanes, group.size() - g);
      tri.reduce(As, std::span<const std::size_t>(group).subspan(g, count), scale, diag, sub);
    }
    qr.run(group, diag, sub);
    for (std::size_t i : group) diag[i] *= scale[i];
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
