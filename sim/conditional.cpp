// Rank-revealing factorisation and the conditional draws (see sim/conditional.hpp).
#include "sim/conditional.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include <Eigen/Cholesky>

namespace sigprop::sim {
namespace {

using MD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Real>
using MR = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Fast path, CholQR2 (Fukaya et al. 2014): X = L1 Q1 from the Cholesky factor of X X^T, then
// Q1 = L2 Q the same way; C = L1 L2. Taken only when every token's residual after projection
// on the earlier ones exceeds kCholQrMinRatio of its norm, where the Gram matrix resolves it to
// ~1e-10 and the second pass makes Q orthonormal to rounding. Otherwise (collapse, repeated or
// zero tokens) returns false and Gram-Schmidt decides the rank. Both give the one factor with
// C lower triangular and a positive diagonal, so the result is the same up to rounding.
constexpr double kCholQrMinRatio = 1e-3;

// The streamed passes below work on blocks of this many columns, converted to double one block
// at a time: no (T, n) double temporary (at d = 65,536 those were 8-32 MB each, fresh pages
// for every matrix of every layer), and a block of T <= 64 rows stays in cache.
constexpr Eigen::Index kBlockCols = 1024;

// Rows of X (T, n) -> the factor's candidates in place: row 0 the tokens' mean, row t >= 1 token
// t's deviation from it (sim/conditional.hpp). The mean sums the tokens in order, as the
// reference backend's loops do.
void to_candidates(MD& X) {
  const Eigen::Index T = X.rows();
  if (T == 0) return;
  Eigen::RowVectorXd mean = X.row(0);
  for (Eigen::Index t = 1; t < T; ++t) mean += X.row(t);
  mean /= static_cast<double>(T);
  for (Eigen::Index t = 1; t < T; ++t) X.row(t) -= mean;
  X.row(0) = mean;
}

// Gram-Schmidt's absolute threshold for the candidates of tokens whose squared norms sum to sq:
// kCondNoiseTol times their RMS norm (sim/sample.hpp).
double candidate_abs_tol(double sq, Eigen::Index T) {
  return T > 0 ? kCondNoiseTol * std::sqrt(sq / static_cast<double>(T)) : 0.0;
}

// Rows of the candidates (their coefficients C (T, r), or their outputs C G (T, m)) -> the
// tokens': row_t = mean + dev_t for t >= 1 and row_0 = mean - sum_{t >= 1} dev_t. Mapping the
// outputs rather than C keeps the tokens' differences at their own precision: a token's output
// is the mean's plus its deviation's, rounded once.
template <class Mat>
void from_candidates(Mat& C) {
  const Eigen::Index T = C.rows();
  if (T < 2) return;
  using Row = Eigen::Matrix<typename Mat::Scalar, 1, Eigen::Dynamic>;
  const Row mean = C.row(0);
  Row dev0 = -C.row(1);
  for (Eigen::Index t = 2; t < T; ++t) dev0 -= C.row(t);
  for (Eigen::Index t = 1; t < T; ++t) C.row(t) += mean;
  C.row(0) = mean + dev0;
}

// Lower Cholesky factor of K if every pivot keeps more than kCholQrMinRatio of its row's norm and
// exceeds kCholQrAbsMargin * abs_tol (Gram-Schmidt's absolute threshold, below); rcond, if given,
// receives LLT's estimate of 1 / kappa_1(K) (K's lower triangle).
constexpr double kCholQrAbsMargin = 10;
bool well_separated_cholesky(const Eigen::MatrixXd& K, Eigen::MatrixXd& L, double abs_tol, double* rcond = nullptr) {
  const Eigen::LLT<Eigen::MatrixXd, Eigen::Lower> llt(K);
  if (llt.info() != Eigen::Success) return false;
  L = llt.matrixL();
  if (rcond != nullptr) *rcond = llt.rcond();
  for (Eigen::Index t = 0; t < K.rows(); ++t)
    if (!(L(t, t) * L(t, t) > kCholQrMinRatio * kCholQrMinRatio * K(t, t)) ||
        !(L(t, t) > kCholQrAbsMargin * abs_tol))  // NaN: false
      return false;
  return true;
}

bool cholqr2(const MD& X, TokenBasis& f, double abs_tol) {
  const auto T = X.rows();
  const Eigen::MatrixXd K = X * X.transpose();
  Eigen::MatrixXd L1, L2;
  if (!well_separated_cholesky(K, L1, abs_tol)) return false;
  const MD Q1 = L1.triangularView<Eigen::Lower>().solve(X);
  const Eigen::LLT<Eigen::MatrixXd> llt2(Q1 * Q1.transpose());
  if (llt2.info() != Eigen::Success) return false;
  L2 = llt2.matrixL();
  f.Q = L2.triangularView<Eigen::Lower>().solve(Q1);
  f.C = L1 * L2;
  f.kept.resize(static_cast<size_t>(T));
  for (Eigen::Index t = 0; t < T; ++t) f.kept[static_cast<size_t>(t)] = static_cast<int>(t);
  return true;
}

// buf (T, w) = columns j0 .. j0+w-1 of A in double, times the column scales if sc is given.
template <class Real>
void load_block(const MR<Real>& A, Eigen::Index j0, Eigen::Index w, const ColScale* sc, MD& buf) {
  buf.resize(A.rows(), w);
  buf = A.middleCols(j0, w).template cast<double>();
  if (sc == nullptr) return;
  const Eigen::Index s = std::clamp<Eigen::Index>(sc->split - j0, 0, w);
  buf.leftCols(s) *= sc->first;
  buf.rightCols(w - s) *= sc->second;
}

// buf (T, w) = the candidates (sim/conditional.hpp) of columns j0 .. j0+w-1 of X, in double.
// sq, if given, accumulates the block's squared norm (of the tokens, before the transform).
template <class Real>
void load_candidates(const MR<Real>& X, Eigen::Index j0, Eigen::Index w, MD& buf, double* sq = nullptr) {
  load_block(X, j0, w, nullptr, buf);
  if (sq != nullptr) *sq += buf.squaredNorm();
  to_candidates(buf);
}

// K (T, T), lower triangle = A diag(s)^2 A^T in double, accumulated block by block.
template <class Real>
void gram_blocks(const MR<Real>& A, const ColScale* sc, Eigen::MatrixXd& K, MD& buf) {
  K.setZero(A.rows(), A.rows());
  for (Eigen::Index j0 = 0; j0 < A.cols(); j0 += kBlockCols) {
    load_block(A, j0, std::min(kBlockCols, A.cols() - j0), sc, buf);
    K.selfadjointView<Eigen::Lower>().rankUpdate(buf);
  }
}

// A float Q needs the second CholQR pass only when the first leaves it further from orthonormal
// than a float resolves: Q1 = L1^{-1} X has |Q1 Q1^T - I| ~ kappa(X)^2 eps_d = kappa(K) eps_d
// (Yamamoto et al. 2015), at most 1e-8 (a sixth of float's unit roundoff 6e-8) for kappa(X) up
// to ~7e3. kappa(K) is LLT's estimate of the 1-norm condition number (rcond, O(T^2)).
constexpr double kSinglePassMaxErr = 1e-8;

// The forward factor of X's candidates A = C Q (A = rows of X -> to_candidates) by CholQR2
// streamed over column blocks: Q written straight to its precision, Q1 = L1^{-1} A recomputed
// per block rather than kept; C is the candidates' factor (the caller maps it back with
// from_candidates). False as cholqr2 above. A float Q skips the second pass when
// kSinglePassMaxErr allows (then Q = Q1, C = L1).
template <class Real>
bool cholqr2_blocks(const MR<Real>& X, MR<Real>& Q, Eigen::MatrixXd& C) {
  const Eigen::Index T = X.rows(), n = X.cols();
  MD buf;
  Eigen::MatrixXd K, L1, L2;
  K.setZero(T, T);
  double sq = 0;
  for (Eigen::Index j0 = 0; j0 < n; j0 += kBlockCols) {
    load_candidates(X, j0, std::min(kBlockCols, n - j0), buf, &sq);
    K.selfadjointView<Eigen::Lower>().rankUpdate(buf);
  }
  double rcond = 0;
  if (!well_separated_cholesky(K, L1, candidate_abs_tol(sq, T), &rcond)) return false;
  if constexpr (std::is_same_v<Real, float>) {
    if (std::numeric_limits<double>::epsilon() <= kSinglePassMaxErr * rcond) {
      Q.resize(T, n);
      for (Eigen::Index j0 = 0; j0 < n; j0 += kBlockCols) {
        const Eigen::Index w = std::min(kBlockCols, n - j0);
        load_candidates(X, j0, w, buf);
        L1.triangularView<Eigen::Lower>().solveInPlace(buf);
        Q.middleCols(j0, w) = buf.template cast<Real>();
      }
      C = std::move(L1);
      return true;
    }
  }
  K.setZero();
  for (Eigen::Index j0 = 0; j0 < n; j0 += kBlockCols) {
    load_candidates(X, j0, std::min(kBlockCols, n - j0), buf);
    L1.triangularView<Eigen::Lower>().solveInPlace(buf);
    K.selfadjointView<Eigen::Lower>().rankUpdate(buf);
  }
  const Eigen::LLT<Eigen::MatrixXd, Eigen::Lower> llt2(K);
  if (llt2.info() != Eigen::Success) return false;
  L2 = llt2.matrixL();
  Q.resize(T, n);
  for (Eigen::Index j0 = 0; j0 < n; j0 += kBlockCols) {
    const Eigen::Index w = std::min(kBlockCols, n - j0);
    load_candidates(X, j0, w, buf);
    L1.triangularView<Eigen::Lower>().solveInPlace(buf);
    L2.triangularView<Eigen::Lower>().solveInPlace(buf);
    Q.middleCols(j0, w) = buf.template cast<Real>();
  }
  C = L1 * L2;
  return true;
}

uint64_t cond_stream(const CondSource& src, StreamKind kind, int slot) {
  return stream_id(static_cast<uint64_t>(src.sample), static_cast<uint64_t>(src.layer), static_cast<uint64_t>(kind),
                   static_cast<uint64_t>(slot));
}

// buf (r, w) = columns j0 .. j0+w-1 of rows kept[k] (k = 0..r-1) of the (T, cols) unit-normal
// matrix of stream (seed, id), times the column scales if sc is given.
void draw_block(const NormalStream& ns, const std::vector<int>& kept, Eigen::Index cols, Eigen::Index j0,
                Eigen::Index w, const ColScale* sc, MD& buf) {
  buf.resize(static_cast<Eigen::Index>(kept.size()), w);
  for (size_t k = 0; k < kept.size(); ++k)
    ns.fill(buf.row(static_cast<Eigen::Index>(k)).data(), static_cast<std::size_t>(w),
            static_cast<uint64_t>(kept[k]) * static_cast<uint64_t>(cols) + static_cast<uint64_t>(j0));
  if (sc == nullptr) return;
  const Eigen::Index s = std::clamp<Eigen::Index>(sc->split - j0, 0, w);
  buf.leftCols(s) *= sc->first;
  buf.rightCols(w - s) *= sc->second;
}

}  // namespace

void factor_tokens(const MD& X, TokenBasis& f, double abs_tol) {
  if (X.rows() > 0 && cholqr2(X, f, abs_tol)) return;
  const int T = static_cast<int>(X.rows()), n = static_cast<int>(X.cols());
  MD Q(T, n);
  MD C = MD::Zero(T, T);
  f.kept.clear();
  int r = 0;
  Eigen::VectorXd v(n), p;
  for (int t = 0; t < T; ++t) {
    v = X.row(t).transpose();
    const double nx = v.norm();
    double nv = nx;
    for (int pass = 0; pass < 3 && r > 0; ++pass) {
      p.noalias() = Q.topRows(r) * v;
      v.noalias() -= Q.topRows(r).transpose() * p;
      C.row(t).head(r) += p.transpose();
      const double nn = v.norm();
      const bool again = nn < 0.7071067811865476 * nv;  // cancellation: project once more
      nv = nn;
      if (!again) break;
    }
    if (!std::isfinite(nv) || (nx > 0 && nv > kCondRankTol * nx && nv > abs_tol)) {
      Q.row(r) = v.transpose() / nv;
      C(t, r) = nv;
      f.kept.push_back(t);
      ++r;
    }
  }
  f.Q = Q.topRows(r);
  f.C = C.leftCols(r);
}

namespace {
// factor_tokens of X's candidates (A holds X on entry); f.C stays the candidates'.
void factor_candidates(MD& A, TokenBasis& f) {
  const double abs_tol = candidate_abs_tol(A.squaredNorm(), A.rows());
  to_candidates(A);
  factor_tokens(A, f, abs_tol);
}
}  // namespace

void factor_centred(const MD& X, TokenBasis& f) {
  MD A = X;
  factor_candidates(A, f);
  from_candidates(f.C);
}

template <class Real>
void cond_forward(const CondSource& src, CondSlot slot, ColScale sc, int m, const MR<Real>& X, CondFactor<Real>& f,
                  MR<Real>& Y) {
  const Eigen::Index T = X.rows();
  Eigen::MatrixXd C;  // (T, r), the candidates'
  std::vector<int> kept;
  if (T > 0 && cholqr2_blocks<Real>(X, f.Q, C)) {
    kept.resize(static_cast<size_t>(T));
    for (Eigen::Index t = 0; t < T; ++t) kept[static_cast<size_t>(t)] = static_cast<int>(t);
  } else {  // repeated or zero tokens, collinear deviations: Gram-Schmidt decides the rank
    TokenBasis b;
    MD A = X.template cast<double>();
    factor_candidates(A, b);
    f.Q = b.Q.template cast<Real>();
    C = b.C;
    kept = std::move(b.kept);
  }
  // G (r, m): the stream's rows kept[k], scaled per column in double, rounded once to Real
  const NormalStream ns(src.seed, cond_stream(src, StreamKind::CondFwd, static_cast<int>(slot)));
  f.G.resize(static_cast<Eigen::Index>(kept.size()), m);
  MD buf;
  for (Eigen::Index j0 = 0; j0 < m; j0 += kBlockCols) {
    const Eigen::Index w = std::min<Eigen::Index>(kBlockCols, m - j0);
    draw_block(ns, kept, m, j0, w, &sc, buf);
    f.G.middleCols(j0, w) = buf.template cast<Real>();
  }
  if (kept.empty()) {
    Y.setZero(T, m);
    return;
  }
  Y.noalias() = C.template cast<Real>() * f.G;  // the candidates' outputs
  from_candidates(Y);
}

template <class Real>
void cond_backward(const CondSource& src, CondSlot slot, ColScale sc, const CondFactor<Real>& f, const MR<Real>& dY,
                   MR<Real>& dX) {
  const Eigen::Index T = dY.rows(), n = dX.cols();
  // The complement E = Delta' W'^T (T, n) has iid columns N(0, Delta' Delta'^T), Delta' = dY diag(s):
  // E = C' Z needs only C' with C' C'^T = Delta' Delta'^T. When the tokens of Delta' are well
  // separated, C' is the Cholesky factor of that Gram (the C of Delta' = C' Q', the second
  // CholQR pass would only refine Q', which is not needed); otherwise Gram-Schmidt's.
  Eigen::MatrixXd Cp;
  std::vector<int> kept;
  {
    MD buf;
    Eigen::MatrixXd K;
    if (T > 0) gram_blocks<Real>(dY, &sc, K, buf);
    if (T > 0 && well_separated_cholesky(K, Cp, 0.0)) {
      kept.resize(static_cast<size_t>(T));
      for (Eigen::Index t = 0; t < T; ++t) kept[static_cast<size_t>(t)] = static_cast<int>(t);
    } else {
      MD Dd = dY.template cast<double>();
      Dd.leftCols(sc.split) *= sc.first;
      Dd.rightCols(dY.cols() - sc.split) *= sc.second;
      TokenBasis bd;
      factor_tokens(Dd, bd);
      Cp = std::move(bd.C);
      kept = std::move(bd.kept);
    }
  }
  // dX += E (I - Q^T Q) + (dY G^T) Q = E + (dY G^T - E Q^T) Q, E formed block by block
  const bool project = !src.independent_backward && f.Q.rows() > 0;
  MR<Real> P;  // (T, r) = E Q^T
  if (project) P.setZero(T, f.Q.rows());
  if (!kept.empty()) {
    const int id = static_cast<int>(slot) + (src.independent_backward ? kCondIndependentSlot : 0);
    const NormalStream ns(src.seed, cond_stream(src, StreamKind::CondBwd, id));
    const MR<Real> Cr = Cp.template cast<Real>();
    MD buf;
    MR<Real> Zr, E;
    for (Eigen::Index j0 = 0; j0 < n; j0 += kBlockCols) {
      const Eigen::Index w = std::min(kBlockCols, n - j0);
      draw_block(ns, kept, n, j0, w, nullptr, buf);
      Zr = buf.template cast<Real>();
      E.noalias() = Cr * Zr;  // (T, w)
      dX.middleCols(j0, w) += E;
      if (project) P.noalias() += E * f.Q.middleCols(j0, w).transpose();
    }
  }
  if (!project) return;
  MR<Real> A = dY * f.G.transpose();  // (T, r)
  A -= P;
  dX.noalias() += A * f.Q;
}

template void cond_forward<float>(const CondSource&, CondSlot, ColScale, int, const MR<float>&, CondFactor<float>&,
                                  MR<float>&);
template void cond_forward<double>(const CondSource&, CondSlot, ColScale, int, const MR<double>&,
                                   CondFactor<double>&, MR<double>&);
template void cond_backward<float>(const CondSource&, CondSlot, ColScale, const CondFactor<float>&, const MR<float>&,
                                   MR<float>&);
template void cond_backward<double>(const CondSource&, CondSlot, ColScale, const CondFactor<double>&,
                                    const MR<double>&, MR<double>&);

}  // namespace sigprop::sim
