#pragma once
/// @file The one implementation of a MODEL.md §1 block on the CPU, with Eigen GEMMs in
/// precision Real: forward, backward to the input (Delta_{l-1} = J_l^T Delta_l) and, on
/// request, the gradients of every parameter. The Monte Carlo backend (eigen_backend.cpp,
/// weights drawn from the streams, gain 1 and bias 0 norms) and the trainer and checkpoint
/// measurements (validate/model.hpp, learned weights) both run this code.
///
/// Conventions (sim/reference.hpp): every block is one or two half-blocks
///   Y = post( lam X + a F(pre(X)) ),
/// pre = N (pre), N/sqrt(l) (lns) or identity; post = N (post, deepnorm) or identity.
/// A norm with an affine part is N(x) = xhat (.) g + b (g, b of length d); an empty g or b
/// means gain 1 or bias 0, as MODEL.md initialises them.
///
/// Extensions for real checkpoints (BlockExt, all off by default = MODEL.md exactly):
///  - attention biases on [Q | K | V] and on the output projection (GPT-2, GPT-NeoX);
///  - grouped key/value heads (Llama): query head h uses key/value head h / (H / H_kv);
///  - rotary position embedding on the first `rotary_dims` coordinates of every query and
///    key head, "rotate half" convention (GPT-NeoX, Llama): coordinate i < r/2 pairs with
///    i + r/2, angle t * theta^(-2i/r) at token t;
///  - a gated MLP (Llama): F = (phi(Z W1 + b1) (.) (Z W3 + b3)) W2 + b2, W1 the gate;
///  - parallel blocks (GPT-NeoX): X' = X + a Attn(N1(X)) + a MLP(N2(X)).
///
/// Layout: matrices are row-major, row t is token t, products are x W with W (fan_in,
/// fan_out). The per-head projections are packed into W_QKV (d, (H + 2 H_kv) dh) as
/// [W_Q^0..W_Q^{H-1} | W_K^0..W_K^{H_kv-1} | W_V^0..W_V^{H_kv-1}], so Q, K and V of every
/// head come from one GEMM.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Dense>
#include <fmt/format.h>
#include <unsupported/Eigen/SpecialFunctions>

#include "core/activation.hpp"
#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "core/spec.hpp"
#include "sim/conditional.hpp"
#include "sim/reference.hpp"

namespace sigprop::sim {

template <class Real>
using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Real>
using RowVec = Eigen::Matrix<Real, 1, Eigen::Dynamic>;
template <class Real>
using ColVec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
using MatD = Mat<double>;

/// Architecture beyond MODEL.md §1 that real checkpoints need (see the file comment).
struct BlockExt {
  int kv_heads = 0;           ///< H_kv; 0 means H (no grouping)
  int rotary_dims = 0;        ///< rotated coordinates per head (even, <= dh); 0: no rotary
  double rope_theta = 10000;  ///< rotary base
  bool attn_bias = false;     ///< biases on [Q | K | V] and on the output projection
  bool gated_mlp = false;     ///< F = (phi(Z W1 + b1) (.) (Z W3 + b3)) W2 + b2
  bool parallel = false;      ///< X' = X + a Attn(N1(X)) + a MLP(N2(X)); norm must be pre or none

  [[nodiscard]] bool operator==(const BlockExt&) const = default;
};

/// A block's whole architecture: the MODEL.md spec plus the extensions.
struct Arch {
  StackSpec spec;
  BlockExt ext;
};

/// Shapes of a block; T is the spec's token count (the context length of a model: a block
/// runs on any number of rows up to it).
struct Dims {
  int T, d, H, Hkv, dh, R;
  [[nodiscard]] int qkv_cols() const { return (H + 2 * Hkv) * dh; }
  [[nodiscard]] int k_off() const { return H * dh; }
  [[nodiscard]] int v_off() const { return (H + Hkv) * dh; }
};

inline Dims dims_of(const Arch& a) {
  const StackSpec& s = a.spec;
  return {s.tokens, s.width, s.heads, a.ext.kv_heads > 0 ? a.ext.kv_heads : s.heads, s.head_dim(), s.mlp_width()};
}

/// Checks the extensions against the spec; throws ConfigError naming the offending setting.
inline void validate_ext(const Arch& a) {
  const StackSpec& s = a.spec;
  const BlockExt& e = a.ext;
  if (e.kv_heads < 0 || (e.kv_heads > 0 && s.heads % e.kv_heads != 0))
    throw ConfigError(fmt::format("kv_heads = {} must divide heads = {}", e.kv_heads, s.heads));
  if (e.rotary_dims < 0 || e.rotary_dims % 2 != 0 || e.rotary_dims > s.head_dim())
    throw ConfigError(fmt::format("rotary_dims = {} must be even and at most the head dimension {}", e.rotary_dims,
                                  s.head_dim()));
  if (e.rotary_dims > 0 && !(e.rope_theta > 0)) throw ConfigError("rope_theta must be > 0");
  if (e.parallel && !(s.blocks == Blocks::AttnMlp))
    throw ConfigError("parallel blocks need stack.blocks = \"attn+mlp\"");
  if (e.parallel && !(s.norm == Norm::Pre || s.norm == Norm::None))
    throw ConfigError("parallel blocks need stack.norm = \"pre\" or \"none\"");
}

// ----------------------------------------------------------------------------
// activations phi and phi' (MODEL.md §1), elementwise: core/hd_math.hpp's definitions, with the
// activation a compile-time constant inside each loop (the switch is outside, the loops stay
// free of branches on a).

/// f(std::integral_constant<hd::Act, to_hd(a)>{}).
template <class F>
void with_act(Activation a, F&& f) {
  using A = hd::Act;
  switch (a) {
    case Activation::Relu:
      return f(std::integral_constant<A, A::Relu>{});
    case Activation::Gelu:
      return f(std::integral_constant<A, A::Gelu>{});
    case Activation::Tanh:
      return f(std::integral_constant<A, A::Tanh>{});
    case Activation::Erf:
      return f(std::integral_constant<A, A::Erf>{});
    case Activation::Silu:
      return f(std::integral_constant<A, A::Silu>{});
    case Activation::Linear:
      return f(std::integral_constant<A, A::Linear>{});
    case Activation::GeluTanh:
      return f(std::integral_constant<A, A::GeluTanh>{});
  }
  throw Error("internal: unknown activation");
}

/// Below this a float gelu takes hd's scalar erfc form: the vectorised form's 1 + erf(x / sqrt 2)
/// cancels, keeping ~eps_f / Phi(x) relative accuracy (1e-5 at x = -3; absolute, eps_f |x|).
inline constexpr float kGeluVecMin = -3.0f;

/// y = phi(x). A float gelu is 0.5 x (1 + erf(x / sqrt 2)) with Eigen's vectorised erf
/// (a few ulp) for x >= kGeluVecMin, hd::act_forward's erfc below; double is hd's throughout.
template <class Real>
void act_forward(Activation a, const Mat<Real>& x, Mat<Real>& y) {
  y.resize(x.rows(), x.cols());
  const Eigen::Index n = x.size();
  const Real* in = x.data();
  Real* out = y.data();
  with_act(a, [&](auto act) {
    constexpr hd::Act A = decltype(act)::value;
    if constexpr (std::is_same_v<Real, float> && A == hd::Act::Gelu) {
      const auto xa = x.array();
      y.array() = 0.5f * xa * (1.0f + (xa * 0.70710678118654752440f).erf());
      for (Eigen::Index i = 0; i < n; ++i)
        if (in[i] < kGeluVecMin) out[i] = hd::act_forward(A, in[i]);
    } else {
      for (Eigen::Index i = 0; i < n; ++i) out[i] = hd::act_forward(A, in[i]);
    }
  });
}

/// g (.) *= phi'(x). With y = phi(x) from the forward pass, gelu, silu and tanh reuse it instead
/// of recomputing their expensive part (hd::act_derivative_from_value).
template <class Real>
void act_backward_mul(Activation a, const Mat<Real>& x, Mat<Real>& g, const Mat<Real>* y = nullptr) {
  const Eigen::Index n = x.size();
  const Real* in = x.data();
  Real* out = g.data();
  with_act(a, [&](auto act) {
    constexpr hd::Act A = decltype(act)::value;
    if constexpr (std::is_same_v<Real, float> && A == hd::Act::Gelu) {
      if (y != nullptr) {  // hd::act_derivative_from_value's Phi(x) + x N(x), Phi = y / x, exp vectorised
        const auto xa = x.array();
        const auto cdf = (xa != 0.0f).select(y->array() / xa, 0.5f);
        g.array() *= cdf + xa * (-0.5f * xa.square()).exp() * 0.39894228040143267794f;
        return;
      }
    }
    if (y != nullptr) {
      const Real* f = y->data();
      for (Eigen::Index i = 0; i < n; ++i) out[i] *= hd::act_derivative_from_value(A, in[i], f[i]);
    } else {
      for (Eigen::Index i = 0; i < n; ++i) out[i] *= hd::act_derivative(A, in[i]);
    }
  });
}

// ----------------------------------------------------------------------------
// norms; row t is token t

/// out (T, d) = (x - mean) / sqrt(var + eps) (LayerNorm) or x / sqrt(mean(x^2) + eps) (RMSNorm)
/// row by row, before any affine part; rstd (T) the inverse scale of each row.
template <class Real>
void norm_forward(Mat<Real>& out, ColVec<Real>& rstd, const Mat<Real>& x, NormType type, double eps) {
  const Real inv_d = Real(1) / static_cast<Real>(x.cols());
  if (type == NormType::LayerNorm)
    out = x.colwise() - (x.rowwise().sum() * inv_d);
  else
    out = x;
  rstd = ((out.rowwise().squaredNorm() * inv_d).array() + static_cast<Real>(eps)).rsqrt().matrix();
  out = rstd.asDiagonal() * out;
}

/// dx (T, d) = J^T dy for y = norm_forward(x):
///   LayerNorm: rstd (dy - mean(dy) - y mean(dy y));  RMSNorm: rstd (dy - y mean(dy y))
template <class Real>
void norm_backward(Mat<Real>& dx, const Mat<Real>& dy, const Mat<Real>& y, const ColVec<Real>& rstd,
                   NormType type) {
  const Real inv_d = Real(1) / static_cast<Real>(y.cols());
  const ColVec<Real> mean_dyy = dy.cwiseProduct(y).rowwise().sum() * inv_d;
  dx = dy - mean_dyy.asDiagonal() * y;
  if (type == NormType::LayerNorm) dx.colwise() -= dy.rowwise().sum() * inv_d;
  dx = rstd.asDiagonal() * dx;
}

// ----------------------------------------------------------------------------
// parameters of one block

/// The parameters of one block. Empty vectors are absent parameters (no bias; gain 1 and bias
/// 0 for a norm). A gradient accumulator has the same shapes as the parameters it belongs to.
template <class Real>
struct LayerWeights {
  Mat<Real> wqkv;        ///< (d, (H + 2 H_kv) dh)
  RowVec<Real> bqkv;     ///< ((H + 2 H_kv) dh), ext.attn_bias only
  Mat<Real> wo;          ///< (d, d)
  RowVec<Real> bo;       ///< (d), ext.attn_bias only
  Mat<Real> w1, w3, w2;  ///< (d, R), (d, R) gate's partner (ext.gated_mlp only), (R, d)
  RowVec<Real> b1, b3, b2;
  Mat<Real> wd;         ///< dense (d, d)
  RowVec<Real> bd;      ///< (d)
  RowVec<Real> n1g, n1b;  ///< affine part of the norm of half 0 (the attention half, or the only half)
  RowVec<Real> n2g, n2b;  ///< affine part of the norm of half 1 (the MLP half)
  /// Monte Carlo with conditional sampling (sim/conditional.hpp) when set: wqkv, wo, w1, w2 and wd
  /// are empty, and each product with them draws the matrix conditionally on its input (MODEL.md
  /// extensions must be off). Unset (the trainer, checkpoints, explicit sampling): the stored matrices.
  std::optional<CondSource> cond;

  /// Zeros of the same shapes (a gradient accumulator).
  [[nodiscard]] LayerWeights zeros_like() const {
    LayerWeights z;
    for_each_pair(z, [](auto& dst, const auto& src) { dst.setZero(src.rows(), src.cols()); });
    return z;
  }
  /// f(mine, other's) for every tensor, in a fixed order (names: see tensor_names()).
  template <class Other, class F>
  void for_each_pair(Other& o, F&& f) const {
    f(o.wqkv, wqkv), f(o.bqkv, bqkv), f(o.wo, wo), f(o.bo, bo), f(o.w1, w1), f(o.w3, w3), f(o.w2, w2);
    f(o.b1, b1), f(o.b3, b3), f(o.b2, b2), f(o.wd, wd), f(o.bd, bd), f(o.n1g, n1g), f(o.n1b, n1b);
    f(o.n2g, n2g), f(o.n2b, n2b);
  }
  [[nodiscard]] std::size_t bytes() const {
    std::size_t n = 0;
    for_each_pair(*this, [&](const auto&, const auto& t) { n += static_cast<std::size_t>(t.size()); });
    return n * sizeof(Real);
  }
};

// ----------------------------------------------------------------------------
// half-block  Y = post( lam X + a F(pre(X)) )

/// Everything the backward pass needs from one half-block's forward.
template <class Real>
struct HalfCache {
  Mat<Real> Zhat;              ///< (T, d) normalised X before the affine part, when pre-norm
  ColVec<Real> rstd_pre;       ///< (T)
  Mat<Real> Z;                 ///< (T, d) branch input pre(X)
  Mat<Real> qkv;               ///< (T, (H + 2 H_kv) dh) [Q | K | V] after the rotary embedding
  std::vector<Mat<Real>> att;  ///< H x (T, T) softmax rows
  Mat<Real> cat;               ///< (T, d) concatenated head outputs A_h V_h
  Mat<Real> hid, up, act;      ///< mlp: (T, R) Z W1 + b1, Z W3 + b3 (gated), W2's input; dense: act = phi(Z)
  Mat<Real> Yhat;              ///< (T, d) post-norm output before its affine part (only with an affine part)
  Mat<Real> Y;                 ///< (T, d) output
  ColVec<Real> rstd_post;      ///< (T)
  /// Float attention only (attn_forward): some softmax row's two largest logits are within
  /// kNearTieGap while float resolves its logits only to kLogitTolerance or worse: the row's
  /// weights, and every gradient through them, are then float rounding, not the stack's.
  bool logits_unresolved = false;
  /// Conditional sampling only: the factor and draw of the first (W_QKV, W1, dense W) and second
  /// (W_O, W2) matrix of the half-block.
  CondFactor<Real> f0, f1;

  [[nodiscard]] std::size_t bytes() const {
    std::size_t n = static_cast<std::size_t>(Zhat.size() + rstd_pre.size() + Z.size() + qkv.size() + cat.size() +
                                             hid.size() + up.size() + act.size() + Yhat.size() + Y.size() +
                                             rstd_post.size());
    for (const auto& a : att) n += static_cast<std::size_t>(a.size());
    return n * sizeof(Real) + f0.bytes() + f1.bytes();
  }
};

/// Float logits S = sc Q K^T (T, T) are rounded to about delta_t = 4 eps |sc| |q_t| max_s |k_s|
/// (the rounding of Q, K and the stream they come from, bounded by Cauchy-Schwarz). Where
/// delta_t > kLogitTolerance and a row's two largest unmasked logits are within kNearTieGap + delta_t
/// in float (the exact gap may be up to delta_t smaller than float's), the
/// softmax weight of the second key, e^-(gap), may be of a size float keeps and its exponent is
/// uncertain by delta_t: a float near-tie (gap 0 where the exact gap is 10^8) turns a saturated
/// row into a split one, whose Jacobian is orders of magnitude larger. Exploding no-norm stacks
/// reach such logits (|S| ~ 1e10 and more); ordinary ones stay far below (delta_t > 0.01 needs
/// |sc| |q_t| |k_s| > 2e4).
inline constexpr double kLogitTolerance = 0.01;
inline constexpr double kNearTieGap = 40.0;

/// A float stream keeps the rounding of every token apart (about 6e-8 of each entry), so its res,
/// the tokens' distance from their mean, is off by roughly 1e-8 / res and floors at ~1e-7 once the
/// tokens collapse: against a double run of the same streams (the validity atlas's c249, post-RMSNorm
/// causal attention, d = 256, 8 samples) float's res was off by 9e-5 at res 2.4e-4, 1.2e-3 at 9e-6,
/// 3.5e-3 at 1.6e-6 and 11% at 3.4e-7, and read 1e-7 where the double one fell to 1e-15. A float
/// sample whose res falls below this is recomputed in double (EigenStack<float>::run_sample),
/// where float would be off by about 0.1% or more.
inline constexpr double kResDoubleBelow = 1e-5;

template <class Q, class K>
bool logits_unresolved(const Mat<float>& S, const Q& q, const K& k, float sc, bool causal) {
  const int T = static_cast<int>(S.rows());
  const double kmax = k.rowwise().norm().maxCoeff();
  const double eps = std::numeric_limits<float>::epsilon();
  for (int t = 0; t < T; ++t) {
    const int n = causal ? t + 1 : T;
    if (n < 2) continue;
    const double delta = 4 * eps * std::abs(sc) * q.row(t).norm() * kmax;
    if (!(delta > kLogitTolerance)) continue;
    float m1 = -std::numeric_limits<float>::infinity(), m2 = m1;
    for (int s = 0; s < n; ++s) {
      const float x = S(t, s);
      if (x > m1) {
        m2 = m1;
        m1 = x;
      } else if (x > m2) {
        m2 = x;
      }
    }
    if (static_cast<double>(m1) - m2 < kNearTieGap + delta) return true;  // the float gap is uncertain by delta
  }
  return false;
}

/// cos and sin (T, r/2) of the rotary angles t theta^(-2i/r).
template <class Real>
void rotary_tables(int T, int r, double theta, Mat<Real>& cos_t, Mat<Real>& sin_t) {
  cos_t.resize(T, r / 2);
  sin_t.resize(T, r / 2);
  for (int i = 0; i < r / 2; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * i / r);
    for (int t = 0; t < T; ++t) {
      const double ang = t * inv_freq;
      cos_t(t, i) = static_cast<Real>(std::cos(ang));
      sin_t(t, i) = static_cast<Real>(std::sin(ang));
    }
  }
}

/// The rotation of the first r columns of x (T, >= r), rotate-half convention; the inverse
/// (the transpose, for the backward pass) when inverse is true.
template <class Real, class Block>
void rotate_half_inplace(Block&& x, const Mat<Real>& c, const Mat<Real>& s, bool inverse) {
  const int h = static_cast<int>(c.cols());
  const Real sg = inverse ? Real(-1) : Real(1);
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (int i = 0; i < h; ++i) {
      const Real x1 = x(t, i), x2 = x(t, i + h);
      x(t, i) = x1 * c(t, i) - sg * x2 * s(t, i);
      x(t, i + h) = x2 * c(t, i) + sg * x1 * s(t, i);
    }
}

template <class Real>
class HalfBlock {
 public:
  using M = Mat<Real>;
  using R = RowVec<Real>;

  /// Half `half` (0 or 1) of block `l` (1-based), branch br. `skip` false drops the lam X term
  /// (the second branch of a parallel block).
  HalfBlock(const Arch& arch, const LayerWeights<Real>& w, Branch br, int half, int l, bool skip = true)
      : s_(arch.spec), e_(arch.ext), w_(w), br_(br), D_(dims_of(arch)), p_(half_params(arch.spec, l)),
        g_(half == 0 ? w.n1g : w.n2g), b_(half == 0 ? w.n1b : w.n2b), half_(half) {
    if (!skip) p_.lam = 0.0;
  }

  /// c.Y (T, d) = post(lam X + a F(pre(X))), X (T, d)
  void forward(const M& X, HalfCache<Real>& c) const {
    if (p_.pre) {
      norm_forward(c.Zhat, c.rstd_pre, X, s_.norm_type, s_.norm_eps);
      c.Z = c.Zhat;
      affine(c.Z);
      if (p_.pre_gain != 1.0) c.Z *= static_cast<Real>(p_.pre_gain);
    } else {
      c.Z = X;
    }
    M F(X.rows(), D_.d);
    switch (br_) {
      case Branch::Attn: attn_forward(F, c); break;
      case Branch::Mlp: mlp_forward(F, c); break;
      case Branch::Dense: dense_forward(F, c); break;
    }
    // S (T, d) = lam X + a F
    M S = static_cast<Real>(p_.lam) * X + static_cast<Real>(p_.a) * F;
    if (p_.post) {
      norm_forward(c.Y, c.rstd_post, S, s_.norm_type, s_.norm_eps);
      if (g_.size() || b_.size()) {
        c.Yhat = c.Y;
        affine(c.Y);
      }
    } else {
      c.Y = std::move(S);
    }
  }

  /// dX (T, d) = J^T dY for the half-block whose forward filled c; with grads, also adds the
  /// gradient of <dY, Y> with respect to every parameter of this half into *grads.
  M backward(const HalfCache<Real>& c, const M& dY, LayerWeights<Real>* grads = nullptr) const {
    M dS;
    if (p_.post) {
      const bool aff = g_.size() || b_.size();
      const M& yhat = aff ? c.Yhat : c.Y;
      if (aff) {
        M dyhat = dY;
        affine_backward(dyhat, yhat, grads);
        norm_backward(dS, dyhat, yhat, c.rstd_post, s_.norm_type);
      } else {
        norm_backward(dS, dY, yhat, c.rstd_post, s_.norm_type);
      }
    } else {
      dS = dY;
    }
    const M dF = static_cast<Real>(p_.a) * dS;
    M dZ = M::Zero(dY.rows(), D_.d);
    switch (br_) {
      case Branch::Attn: attn_backward(dZ, dF, c, grads); break;
      case Branch::Mlp: mlp_backward(dZ, dF, c, grads); break;
      case Branch::Dense: dense_backward(dZ, dF, c, grads); break;
    }
    M dX;
    if (p_.pre) {
      if (p_.pre_gain != 1.0) dZ *= static_cast<Real>(p_.pre_gain);
      affine_backward(dZ, c.Zhat, grads);
      norm_backward(dX, dZ, c.Zhat, c.rstd_pre, s_.norm_type);
    } else {
      dX = std::move(dZ);
    }
    if (p_.lam != 0.0) dX += static_cast<Real>(p_.lam) * dS;
    return dX;
  }

 private:
  const StackSpec& s_;
  const BlockExt& e_;
  const LayerWeights<Real>& w_;
  Branch br_;
  Dims D_;
  HalfParams p_;
  const R& g_;
  const R& b_;
  int half_;

  // y = y (.) g + b, row by row (no-op for absent g, b)
  void affine(M& y) const {
    if (g_.size()) y = y * g_.asDiagonal();
    if (b_.size()) y.rowwise() += b_;
  }
  // dy (pre-affine gradient) from dy (post-affine gradient); dg += sum_t dy (.) yhat, db += sum_t dy
  void affine_backward(M& dy, const M& yhat, LayerWeights<Real>* grads) const {
    if (grads) {
      R& dg = half_ == 0 ? grads->n1g : grads->n2g;
      R& db = half_ == 0 ? grads->n1b : grads->n2b;
      if (g_.size()) dg += dy.cwiseProduct(yhat).colwise().sum();
      if (b_.size()) db += dy.colwise().sum();
    }
    if (g_.size()) dy = dy * g_.asDiagonal();
  }

  Real qk_scale() const {
    return static_cast<Real>(s_.qk_scale == QkScale::InvSqrtDh ? 1.0 / std::sqrt(static_cast<double>(D_.dh))
                                                                : 1.0 / D_.dh);
  }
  int kv_of(int h) const { return h / (D_.H / D_.Hkv); }

  // Conditional sampling (w_.cond set): column scales of each matrix.
  ColScale sc_qkv() const { return {2 * D_.d, w_.cond->sd_qk, w_.cond->sd_v}; }
  static ColScale sc_all(double s) { return {0, s, s}; }
  // dX (T, n) = dY (T, m) W^T for the conditional W whose forward filled f
  M cond_back(CondSlot slot, ColScale sc, const CondFactor<Real>& f, const M& dY, int n) const {
    M dX = M::Zero(dY.rows(), n);
    cond_backward<Real>(*w_.cond, slot, sc, f, dY, dX);
    return dX;
  }

  // F (T, d) = concat_h( softmax(s Q_h K_h^T + M) V_h ) W_O (+ b_O),  [Q | K | V] = Z W_QKV (+ b_QKV)
  void attn_forward(M& F, HalfCache<Real>& c) const {
    const int T = static_cast<int>(c.Z.rows()), H = D_.H, dh = D_.dh;
    const Real sc = qk_scale();
    const bool causal = s_.mask == Mask::Causal;
    if (w_.cond)
      cond_forward<Real>(*w_.cond, CondSlot::Qkv, sc_qkv(), D_.qkv_cols(), c.Z, c.f0, c.qkv);
    else
      c.qkv.noalias() = c.Z * w_.wqkv;
    if (w_.bqkv.size()) c.qkv.rowwise() += w_.bqkv;
    if (e_.rotary_dims > 0) {
      M cs, sn;
      rotary_tables<Real>(T, e_.rotary_dims, e_.rope_theta, cs, sn);
      for (int h = 0; h < H; ++h) rotate_half_inplace<Real>(c.qkv.middleCols(h * dh, e_.rotary_dims), cs, sn, false);
      for (int h = 0; h < D_.Hkv; ++h)
        rotate_half_inplace<Real>(c.qkv.middleCols(D_.k_off() + h * dh, e_.rotary_dims), cs, sn, false);
    }
    c.att.resize(H);
    c.cat.resize(T, D_.d);
    for (int h = 0; h < H; ++h) {
      const auto q = c.qkv.middleCols(h * dh, dh);                           // (T, dh)
      const auto k = c.qkv.middleCols(D_.k_off() + kv_of(h) * dh, dh);       // (T, dh)
      const auto v = c.qkv.middleCols(D_.v_off() + kv_of(h) * dh, dh);       // (T, dh)
      M& A = c.att[h];                                                       // (T, T)
      A.noalias() = (sc * q) * k.transpose();
      if constexpr (std::is_same_v<Real, float>)
        if (!c.logits_unresolved) c.logits_unresolved = logits_unresolved(A, q, k, sc, causal);
      for (int t = 0; t < T; ++t) {
        const int n = causal ? t + 1 : T;  // causal: keys s <= t only
        auto row = A.row(t).head(n);
        const Real mx = row.maxCoeff();
        row = (row.array() - mx).exp().matrix();
        row /= row.sum();
        A.row(t).tail(T - n).setZero();  // exp(-inf)
      }
      c.cat.middleCols(h * dh, dh).noalias() = A * v;
    }
    if (w_.cond)
      cond_forward<Real>(*w_.cond, CondSlot::Wo, sc_all(w_.cond->sd_o), D_.d, c.cat, c.f1, F);
    else
      F.noalias() = c.cat * w_.wo;
    if (w_.bo.size()) F.rowwise() += w_.bo;
  }

  // dZ (T, d) += J_attn^T dF (T, d)
  void attn_backward(M& dZ, const M& dF, const HalfCache<Real>& c, LayerWeights<Real>* grads) const {
    const int T = static_cast<int>(dF.rows()), H = D_.H, dh = D_.dh;
    const Real sc = qk_scale();
    if (grads) {
      grads->wo.noalias() += c.cat.transpose() * dF;
      if (w_.bo.size()) grads->bo += dF.colwise().sum();
    }
    const M dcat = w_.cond ? cond_back(CondSlot::Wo, sc_all(w_.cond->sd_o), c.f1, dF, D_.d)
                           : M(dF * w_.wo.transpose());  // (T, d)
    M dqkv = M::Zero(T, D_.qkv_cols());
    M dA(T, T);
    for (int h = 0; h < H; ++h) {
      const int ko = D_.k_off() + kv_of(h) * dh, vo = D_.v_off() + kv_of(h) * dh;
      const auto q = c.qkv.middleCols(h * dh, dh);
      const auto k = c.qkv.middleCols(ko, dh);
      const auto v = c.qkv.middleCols(vo, dh);
      const M& A = c.att[h];
      const auto go = dcat.middleCols(h * dh, dh);  // (T, dh) gradient of A_h V_h
      dA.noalias() = go * v.transpose();            // dA_ts = go_t . v_s
      dqkv.middleCols(vo, dh).noalias() += A.transpose() * go;
      // softmax backward: dS_ts = A_ts (dA_ts - sum_s' A_ts' dA_ts'); masked entries have A = 0
      const ColVec<Real> dot = A.cwiseProduct(dA).rowwise().sum();
      dA = sc * A.cwiseProduct(dA.colwise() - dot);  // now sc dS
      // logits S = sc Q K^T:  dQ = sc dS K,  dK = sc dS^T Q
      dqkv.middleCols(h * dh, dh).noalias() = dA * k;
      dqkv.middleCols(ko, dh).noalias() += dA.transpose() * q;
    }
    if (e_.rotary_dims > 0) {  // back through the rotation: its transpose
      M cs, sn;
      rotary_tables<Real>(T, e_.rotary_dims, e_.rope_theta, cs, sn);
      for (int h = 0; h < H; ++h) rotate_half_inplace<Real>(dqkv.middleCols(h * dh, e_.rotary_dims), cs, sn, true);
      for (int h = 0; h < D_.Hkv; ++h)
        rotate_half_inplace<Real>(dqkv.middleCols(D_.k_off() + h * dh, e_.rotary_dims), cs, sn, true);
    }
    if (grads) {
      grads->wqkv.noalias() += c.Z.transpose() * dqkv;
      if (w_.bqkv.size()) grads->bqkv += dqkv.colwise().sum();
    }
    if (w_.cond)
      cond_backward<Real>(*w_.cond, CondSlot::Qkv, sc_qkv(), c.f0, dqkv, dZ);
    else
      dZ.noalias() += dqkv * w_.wqkv.transpose();
  }

  // F (T, d) = phi(Z W1 + b1) W2 + b2, or (phi(Z W1 + b1) (.) (Z W3 + b3)) W2 + b2 (gated)
  void mlp_forward(M& F, HalfCache<Real>& c) const {
    if (w_.cond)
      cond_forward<Real>(*w_.cond, CondSlot::W1, sc_all(w_.cond->sd_w1), D_.R, c.Z, c.f0, c.hid);
    else
      c.hid.noalias() = c.Z * w_.w1;
    if (w_.b1.size()) c.hid.rowwise() += w_.b1;
    act_forward(s_.activation, c.hid, c.act);
    if (e_.gated_mlp) {
      c.up.noalias() = c.Z * w_.w3;
      if (w_.b3.size()) c.up.rowwise() += w_.b3;
      c.act = c.act.cwiseProduct(c.up);
    }
    if (w_.cond)
      cond_forward<Real>(*w_.cond, CondSlot::W2, sc_all(w_.cond->sd_w2), D_.d, c.act, c.f1, F);
    else
      F.noalias() = c.act * w_.w2;
    if (w_.b2.size()) F.rowwise() += w_.b2;
  }

  void mlp_backward(M& dZ, const M& dF, const HalfCache<Real>& c, LayerWeights<Real>* grads) const {
    if (grads) {
      grads->w2.noalias() += c.act.transpose() * dF;
      if (w_.b2.size()) grads->b2 += dF.colwise().sum();
    }
    M dh = w_.cond ? cond_back(CondSlot::W2, sc_all(w_.cond->sd_w2), c.f1, dF, D_.R)
                   : M(dF * w_.w2.transpose());  // (T, R) gradient of W2's input
    // phi(hid): W2's input itself, or recomputed when a gate multiplied it
    M phi_gated;
    if (e_.gated_mlp) act_forward(s_.activation, c.hid, phi_gated);
    const M& phi = e_.gated_mlp ? phi_gated : c.act;
    if (e_.gated_mlp) {
      M dup = dh.cwiseProduct(phi);  // d/d(up)
      dh = dh.cwiseProduct(c.up);    // d/d(phi)
      if (grads) {
        grads->w3.noalias() += c.Z.transpose() * dup;
        if (w_.b3.size()) grads->b3 += dup.colwise().sum();
      }
      dZ.noalias() += dup * w_.w3.transpose();
    }
    act_backward_mul(s_.activation, c.hid, dh, &phi);
    if (grads) {
      grads->w1.noalias() += c.Z.transpose() * dh;
      if (w_.b1.size()) grads->b1 += dh.colwise().sum();
    }
    if (w_.cond)
      cond_backward<Real>(*w_.cond, CondSlot::W1, sc_all(w_.cond->sd_w1), c.f0, dh, dZ);
    else
      dZ.noalias() += dh * w_.w1.transpose();
  }

  // F (T, d) = phi(Z) W + b
  void dense_forward(M& F, HalfCache<Real>& c) const {
    act_forward(s_.activation, c.Z, c.act);
    if (w_.cond)
      cond_forward<Real>(*w_.cond, CondSlot::Wd, sc_all(w_.cond->sd_wd), D_.d, c.act, c.f0, F);
    else
      F.noalias() = c.act * w_.wd;
    if (w_.bd.size()) F.rowwise() += w_.bd;
  }

  void dense_backward(M& dZ, const M& dF, const HalfCache<Real>& c, LayerWeights<Real>* grads) const {
    if (grads) {
      grads->wd.noalias() += c.act.transpose() * dF;
      if (w_.bd.size()) grads->bd += dF.colwise().sum();
    }
    M da = w_.cond ? cond_back(CondSlot::Wd, sc_all(w_.cond->sd_wd), c.f0, dF, D_.d) : M(dF * w_.wd.transpose());
    act_backward_mul(s_.activation, c.Z, da, &c.act);
    dZ += da;
  }
};

// ----------------------------------------------------------------------------
// whole blocks

/// The half-blocks' forward of block `layer` (1-based) on X (T, d), keeping what their
/// backward needs; the block's output is caches.back().Y.
template <class Real>
std::vector<HalfCache<Real>> block_forward_caches(const Arch& a, const LayerWeights<Real>& w, int layer,
                                                  const Mat<Real>& X) {
  const std::vector<Branch> halves = halves_of(a.spec);
  if (a.ext.parallel) {  // X' = [X + a Attn(N1(X))] + [a MLP(N2(X))]; the sum goes in a third cache
    std::vector<HalfCache<Real>> caches(3);
    HalfBlock<Real>(a, w, Branch::Attn, 0, layer).forward(X, caches[0]);
    HalfBlock<Real>(a, w, Branch::Mlp, 1, layer, /*skip=*/false).forward(X, caches[1]);
    caches[2].Y = caches[0].Y + caches[1].Y;
    return caches;
  }
  std::vector<HalfCache<Real>> caches(halves.size());
  const Mat<Real>* Y = &X;
  for (size_t i = 0; i < halves.size(); ++i) {
    HalfBlock<Real>(a, w, halves[i], static_cast<int>(i), layer).forward(*Y, caches[i]);
    Y = &caches[i].Y;
  }
  return caches;
}

/// Delta_{l-1} (T, d) = J_l^T dY from the caches of block l's forward; with grads, adds the
/// parameter gradients of <dY, X_l> into *grads (shapes as w).
template <class Real>
Mat<Real> block_backward_caches(const Arch& a, const LayerWeights<Real>& w, int layer,
                                const std::vector<HalfCache<Real>>& caches, const Mat<Real>& dY,
                                LayerWeights<Real>* grads = nullptr) {
  if (a.ext.parallel) {
    Mat<Real> g = HalfBlock<Real>(a, w, Branch::Attn, 0, layer).backward(caches[0], dY, grads);
    g += HalfBlock<Real>(a, w, Branch::Mlp, 1, layer, /*skip=*/false).backward(caches[1], dY, grads);
    return g;
  }
  const std::vector<Branch> halves = halves_of(a.spec);
  Mat<Real> g = dY;
  for (size_t i = halves.size(); i-- > 0;)
    g = HalfBlock<Real>(a, w, halves[i], static_cast<int>(i), layer).backward(caches[i], g, grads);
  return g;
}

template <class Real>
std::size_t cache_bytes(const std::vector<HalfCache<Real>>& caches) {
  std::size_t n = 0;
  for (const auto& c : caches) n += c.bytes();
  return n;
}

/// The state and step metrics of MODEL.md §2 for X_0..X_last (each (T, d)) into
/// values[l][col] (Col order), computed in double from the widened streams: the token kernel
/// X X^T / d feeds rho through cancellations that float accumulation would swamp; res comes from
/// the stream itself (stream_res), which the kernel's cancellation would floor at 1.5e-8.
template <class Real>
void stream_metrics(const std::vector<Mat<Real>>& X, int last, std::vector<std::vector<double>>& values) {
  MatD Xprev;
  Eigen::MatrixXd Kprev;
  for (int l = 0; l <= last; ++l) {
    MatD Xl = X[l].template cast<double>();
    const double inv_d = 1.0 / static_cast<double>(Xl.cols());
    Eigen::MatrixXd K = (Xl * Xl.transpose()) * inv_d;
    const StateMetrics m = state_metrics_from_kernel(K);
    auto& v = values[l];
    v[kQ] = m.q;
    v[kRho] = m.rho;
    v[kRes] = stream_res(Xl.data(), static_cast<int>(Xl.rows()), static_cast<int>(Xl.cols()));
    v[kEffRank] = m.eff_rank;
    if (l > 0) {
      Eigen::MatrixXd C = (Xprev * Xl.transpose()) * inv_d;
      const StepMetrics st = step_metrics_from_kernels(Kprev, K, C);
      v[kUpdate] = st.update_ratio;
      v[kAng] = st.ang_dist;
    }
    Kprev = std::move(K);
    Xprev = std::move(Xl);
  }
}

// ----------------------------------------------------------------------------
// the Monte Carlo's random weights and inputs (eigen_backend.cpp)

/// Block l's weights of Monte Carlo sample `sample`, drawn from the reference's streams (in
/// double, scaled in double, rounded once to Real): MODEL.md §1's initialisation, no
/// extensions, gain 1 / bias 0 norms (empty affine parts).
template <class Real>
LayerWeights<Real> draw_layer_weights(const StackSpec& s, uint64_t seed, int sample, int l);
/// The same layer for conditional sampling: the biases drawn as above, the Gaussian matrices
/// left empty and drawn on use (LayerWeights::cond). independent_backward: test hook only.
template <class Real>
LayerWeights<Real> draw_layer_weights_conditional(const StackSpec& s, uint64_t seed, int sample, int l,
                                                  bool independent_backward = false);
/// X_0 (T, d) of sample `sample`, in double; kernel Exact: conditioned on the exact input kernel
/// (sim/input.hpp).
MatD draw_input(const StackSpec& s, uint64_t seed, int sample, InputKernel kernel = InputKernel::Sampled);
/// Delta_L (T, d) iid N(0, 1) of sample `sample`, in double.
MatD draw_output_grad(const StackSpec& s, uint64_t seed, int sample);

}  // namespace sigprop::sim
