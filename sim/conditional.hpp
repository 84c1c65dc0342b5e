#pragma once
/// @file Monte Carlo by Gaussian conditioning (`--weights-sampling conditional`, issue 14):
/// a Gaussian weight matrix W (n, m), entries iid N(0, s_j^2) (s_j the scale of column j),
/// is never drawn. The stack touches it only through Y = X W (forward, X (T, n)) and
/// Delta W^T (backward, Delta (T, m)), so only these projections are sampled, exactly in law:
///
///  - Forward. Factor X = C Q (rank-revealing, below): Q (r, n) orthonormal rows, C (T, r),
///    r <= T the numerical rank. Q W is (r, m) with iid N(0, s_j^2) entries: draw it as G and
///    set Y = C G. Cost: r m normals, O(T^2 (n + m)) flops. What is factored are X's T
///    candidates: candidate 0 the tokens' mean x̄, candidate t >= 1 token t's deviation x_t - x̄
///    (token 0's deviation is minus the sum of the others'); C maps back to the tokens
///    (x_0 = x̄ - sum_{t>=1} dev_t). So the rank threshold below judges each deviation against
///    its own norm, not against the token's: a collapsed stack's differences (res = 1e-13 of
///    the tokens) stay directions down to the double stream's rounding, as with explicit
///    matrices. Factoring the tokens themselves dropped deviations below ~1e-12 of a token and
///    collapsed conditional runs faster than the stack from res ~1e-11 (docs/simulate.md).
///  - Backward. W = Q^T G + (I - Q^T Q) W', W' an independent copy (the part of W the forward
///    never saw), so Delta W^T = (Delta G^T) Q + E (I - Q^T Q) with E = Delta W'^T (T, n):
///    its columns are iid N(0, Delta' Delta'^T), Delta' = Delta diag(s). Factor Delta' = C' Q'
///    the same way and draw E = C' Z, Z (r', n) iid N(0, 1). Cost: r' n normals, O(T^2 (n + m)).
///
/// Every random number comes from two counter-based stream kinds (StreamKind::CondFwd,
/// CondBwd in sim/reference.hpp, docs/simulate.md): row k of G is row kept[k] (the forward's
/// candidate that opened direction k) of a (T, m) unit-normal matrix of stream (sample, layer, CondFwd, slot),
/// scaled per column; row k of Z is row kept'[k] of a (T, n) matrix of stream (sample, layer,
/// CondBwd, slot). So a direction's numbers never depend on which other tokens were dropped.
///
/// The factorisation is classical Gram-Schmidt in row order (the candidates forward, the tokens
/// of Delta' backward), or, when every row's residual exceeds 1e-3 of its norm, the same factor
/// by CholQR2 with GEMMs, streamed over blocks of 1024 columns so that no (T, n) double
/// temporary exists (a float Q skips the second pass when the Gram's condition estimate says one
/// leaves Q orthonormal to 1e-8; the backward needs only C', the Cholesky factor of the Gram of
/// Delta'). It runs in double whatever the backend's precision, with reorthogonalisation while
/// a pass cancels more than 1/sqrt(2) of the vector's norm (at most 3 passes; "twice is enough",
/// Giraud et al. 2005). Row t opens a new direction iff its residual norm exceeds kCondRankTol
/// times its own norm: an exactly repeated token (forward: a zero deviation, or one that is a
/// combination of the earlier ones to rounding) is expressed through the earlier rows, a
/// genuine new direction is kept however small its angle. A dropped residual is at most 1e-12
/// of its row (forward: of a deviation, so of the tokens' differences), far below a float's
/// resolution and 1e-12 relative in double. A zero row opens nothing (its row of C is 0); a
/// non-finite one is kept so that the NaN reaches the output and is reported, never hidden. The
/// result is canonical (row order, positive diagonal), so the reference backend's loops and
/// these Eigen products agree on identical streams ([parity]).
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Dense>

#include "core/rng.hpp"
#include "sim/reference.hpp"  // StreamKind, kCondRankTol, CondSlot

namespace sigprop::sim {

/// What conditional sampling needs to draw the matrices of one layer of one sample.
struct CondSource {
  uint64_t seed = 0;
  int sample = 0, layer = 0;
  double sd_qk = 0, sd_v = 0;  ///< column scales of W_QKV: Q and K columns, V columns
  double sd_o = 0, sd_w1 = 0, sd_w2 = 0, sd_wd = 0;
  /// Test hook only (tests/test_sim_conditional.cpp): the backward uses fresh weights independent
  /// of the forward's (the "gradient independence" shortcut, wrong in law); never set otherwise.
  bool independent_backward = false;
};

/// Column scales of a matrix: s_j = first for j < split, second for j >= split.
struct ColScale {
  int split;
  double first, second;
};

/// X (T, n) = C (T, r) Q (r, n): see the file comment.
struct TokenBasis {
  std::vector<int> kept;  ///< rows (tokens, or the forward's candidates) that opened directions 0..r-1, increasing
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> Q;  ///< (r, n) orthonormal rows
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> C;  ///< (T, r)
};

/// Rank-revealing factor of the rows of X (T, n), in row order (see the file comment;
/// sim/conditional.cpp): CholQR2 when every row is well away from the span of the earlier ones,
/// Gram-Schmidt with the rank threshold otherwise. kept holds row indices.
/// abs_tol: a row also needs a residual norm above it to open a direction (0: none; the forward's
/// candidates use kCondNoiseTol times the tokens' RMS norm).
void factor_tokens(const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& X, TokenBasis& f,
                   double abs_tol = 0);

/// The forward's factor: factor_tokens of X's candidates (row 0 the tokens' mean, row t >= 1 token
/// t's deviation from it), C mapped back so that X = C Q; kept holds candidate indices.
void factor_centred(const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& X, TokenBasis& f);

/// The forward's factor and draw for one matrix, kept for its backward.
template <class Real>
struct CondFactor {
  using M = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  M Q;  ///< (r, n)
  M G;  ///< (r, m), scaled
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(Q.size() + G.size()) * sizeof(Real); }
};

/// Y (T, m) = X W for the matrix `slot` of src's layer, W (n, m) with column scales sc, drawn
/// conditionally on X (T, n); f keeps what the backward needs. Explicitly instantiated for
/// float and double in sim/conditional.cpp.
template <class Real>
void cond_forward(const CondSource& src, CondSlot slot, ColScale sc, int m,
                  const Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& X, CondFactor<Real>& f,
                  Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& Y);

/// dX (T, n) += dY W^T for the matrix whose forward filled f (see the file comment).
template <class Real>
void cond_backward(const CondSource& src, CondSlot slot, ColScale sc, const CondFactor<Real>& f,
                   const Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& dY,
                   Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& dX);

extern template void cond_forward<float>(const CondSource&, CondSlot, ColScale, int,
                                         const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                                         CondFactor<float>&,
                                         Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&);
extern template void cond_forward<double>(const CondSource&, CondSlot, ColScale, int,
                                          const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                                          CondFactor<double>&,
                                          Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&);
extern template void cond_backward<float>(const CondSource&, CondSlot, ColScale, const CondFactor<float>&,
                                          const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                                          Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&);
extern template void cond_backward<double>(const CondSource&, CondSlot, ColScale, const CondFactor<double>&,
                                           const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&,
                                           Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&);

}  // namespace sigprop::sim
