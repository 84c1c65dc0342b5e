// Rank-revealing factorisation of the conditional sampler (see sim/conditional.hpp).
#include "sim/conditional.hpp"

#include <cmath>

#include <Eigen/Cholesky>

namespace sigprop::sim {
namespace {

using MD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Fast path, CholQR2 (Fukaya et al. 2014): X = L1 Q1 from the Cholesky factor of X X^T, then
// Q1 = L2 Q the same way; C = L1 L2. Taken only when every token's residual after projection
// on the earlier ones exceeds kCholQrMinRatio of its norm, where the Gram matrix resolves it to
// ~1e-10 and the second pass makes Q orthonormal to rounding. Otherwise (collapse, repeated or
// zero tokens) returns false and Gram-Schmidt decides the rank. Both give the one factor with
// C lower triangular and a positive diagonal, so the result is the same up to rounding.
constexpr double kCholQrMinRatio = 1e-3;

bool cholqr2(const MD& X, TokenBasis& f) {
  const auto T = X.rows();
  const Eigen::MatrixXd K = X * X.transpose();
  const Eigen::LLT<Eigen::MatrixXd> llt(K);
  if (llt.info() != Eigen::Success) return false;
  const Eigen::MatrixXd L1 = llt.matrixL();
  for (Eigen::Index t = 0; t < T; ++t)
    if (!(L1(t, t) * L1(t, t) > kCholQrMinRatio * kCholQrMinRatio * K(t, t))) return false;  // NaN: false
  const MD Q1 = L1.triangularView<Eigen::Lower>().solve(X);
  const Eigen::MatrixXd K2 = Q1 * Q1.transpose();
  const Eigen::LLT<Eigen::MatrixXd> llt2(K2);
  if (llt2.info() != Eigen::Success) return false;
  const Eigen::MatrixXd L2 = llt2.matrixL();
  f.Q = L2.triangularView<Eigen::Lower>().solve(Q1);
  f.C = L1 * L2;
  f.kept.resize(static_cast<size_t>(T));
  for (Eigen::Index t = 0; t < T; ++t) f.kept[static_cast<size_t>(t)] = static_cast<int>(t);
  return true;
}

}  // namespace

void factor_tokens(const MD& X, TokenBasis& f) {
  if (X.rows() > 0 && cholqr2(X, f)) return;
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
    if (!std::isfinite(nv) || (nx > 0 && nv > kCondRankTol * nx)) {
      Q.row(r) = v.transpose() / nv;
      C(t, r) = nv;
      f.kept.push_back(t);
      ++r;
    }
  }
  f.Q = Q.topRows(r);
  f.C = C.leftCols(r);
}

}  // namespace sigprop::sim
