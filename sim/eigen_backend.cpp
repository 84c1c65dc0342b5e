// The optimised CPU backend (see eigen_backend.hpp). T tokens, d width, H heads of
// dh = d/H, R = r d MLP width. Matrices are row-major like the reference's buffers, so a
// stream's normal i*fan_out + j is entry (i, j) and X (T, d) maps onto the same memory.
#include "sim/eigen_backend.hpp"

#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <type_traits>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "core/profile.hpp"
#include "core/rng.hpp"

namespace sigprop::sim {
namespace {

using std::size_t;
template <class Real>
using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Real>
using RowVec = Eigen::Matrix<Real, 1, Eigen::Dynamic>;
template <class Real>
using ColVec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
using MatD = Mat<double>;

// Column of each metric in SampleMetrics::values (metric_names() order, checked in the constructor).

// ----------------------------------------------------------------------------
// random streams: the reference's numbers (fill in double, scale in double), rounded once to Real

// Scratch of sd * normals 0..n-1 of stream (seed, stream_id(sample, layer, kind, head)), in double.
const std::vector<double>& draw(size_t n, uint64_t seed, int sample, int layer, StreamKind kind, int head,
                                double sd) {
  thread_local std::vector<double> buf;
  buf.resize(n);
  NormalStream(seed, stream_id(static_cast<uint64_t>(sample), static_cast<uint64_t>(layer),
                               static_cast<uint64_t>(kind), static_cast<uint64_t>(head)))
      .fill(buf.data(), n);
  for (size_t i = 0; i < n; ++i) buf[i] *= sd;
  return buf;
}

// dst (rows, cols) block of a row-major matrix = the stream's (rows, cols) matrix, row-major.
template <class Real, class Dst>
void draw_into(Dst&& dst, uint64_t seed, int sample, int layer, StreamKind kind, int head, double sd) {
  const auto rows = dst.rows(), cols = dst.cols();
  const std::vector<double>& b = draw(static_cast<size_t>(rows * cols), seed, sample, layer, kind, head, sd);
  dst = Eigen::Map<const MatD>(b.data(), rows, cols).template cast<Real>();
}

template <class Real>
Mat<Real> to_mat(const std::vector<double>& v, int T, int d) {
  if (v.size() != static_cast<size_t>(T) * d)
    throw Error(fmt::format("internal: tensor of {} entries where (T, d) = ({}, {})", v.size(), T, d));
  return Eigen::Map<const MatD>(v.data(), T, d).template cast<Real>();
}

template <class Real>
std::vector<double> to_vec(const Mat<Real>& m) {
  std::vector<double> v(static_cast<size_t>(m.size()));
  Eigen::Map<MatD>(v.data(), m.rows(), m.cols()) = m.template cast<double>();
  return v;
}

// ----------------------------------------------------------------------------
// activations phi and phi' (MODEL.md §1; gelu in its exact erf form), elementwise on a matrix

template <class Real>
void act_forward(Activation a, const Mat<Real>& x, Mat<Real>& y) {
  y.resize(x.rows(), x.cols());
  const Eigen::Index n = x.size();
  const Real* in = x.data();
  Real* out = y.data();
  const Real inv_sqrt2 = static_cast<Real>(1.0 / std::numbers::sqrt2);
  switch (a) {
    case Activation::Relu: y = x.cwiseMax(Real(0)); return;
    case Activation::Linear: y = x; return;
    case Activation::Gelu:
      for (Eigen::Index i = 0; i < n; ++i) out[i] = Real(0.5) * in[i] * std::erfc(-in[i] * inv_sqrt2);
      return;
    case Activation::Tanh:
      for (Eigen::Index i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
      return;
    case Activation::Erf:
      for (Eigen::Index i = 0; i < n; ++i) out[i] = std::erf(in[i]);
      return;
    case Activation::Silu:
      for (Eigen::Index i = 0; i < n; ++i) out[i] = in[i] / (Real(1) + std::exp(-in[i]));
      return;
  }
  throw Error("internal: unknown activation");
}

// g (.) *= phi'(x)
template <class Real>
void act_backward_mul(Activation a, const Mat<Real>& x, Mat<Real>& g) {
  const Eigen::Index n = x.size();
  const Real* in = x.data();
  Real* out = g.data();
  const Real inv_sqrt2 = static_cast<Real>(1.0 / std::numbers::sqrt2);
  const Real inv_sqrt2pi = static_cast<Real>(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
  const Real two_inv_sqrtpi = static_cast<Real>(2.0 * std::numbers::inv_sqrtpi);
  switch (a) {
    case Activation::Relu:
      for (Eigen::Index i = 0; i < n; ++i) out[i] = in[i] > 0 ? out[i] : Real(0);
      return;
    case Activation::Linear: return;
    case Activation::Gelu:
      for (Eigen::Index i = 0; i < n; ++i) {
        const Real x = in[i];
        out[i] *= Real(0.5) * std::erfc(-x * inv_sqrt2) + x * std::exp(Real(-0.5) * x * x) * inv_sqrt2pi;
      }
      return;
    case Activation::Tanh:
      for (Eigen::Index i = 0; i < n; ++i) {
        const Real t = std::tanh(in[i]);
        out[i] *= Real(1) - t * t;
      }
      return;
    case Activation::Erf:
      for (Eigen::Index i = 0; i < n; ++i) out[i] *= two_inv_sqrtpi * std::exp(-in[i] * in[i]);
      return;
    case Activation::Silu:
      for (Eigen::Index i = 0; i < n; ++i) {
        const Real s = Real(1) / (Real(1) + std::exp(-in[i]));
        out[i] *= s * (Real(1) + in[i] * (Real(1) - s));
      }
      return;
  }
  throw Error("internal: unknown activation");
}

// ----------------------------------------------------------------------------
// norms: gain 1, bias 0 (MODEL.md §1), eps = spec.norm_eps; row t is token t

// out (T, d) = N(x) row by row, rstd (T) the inverse scale of each row (see reference.cpp).
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

// dx (T, d) = J^T dy:  LayerNorm: rstd (dy - mean(dy) - y mean(dy y));  RMSNorm: rstd (dy - y mean(dy y))
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
// one layer's weights, regenerated from the reference's streams whenever needed


template <class Real>
struct LayerWeights {
  Mat<Real> wqkv;        // (d, 3d) = [W_Q^0 .. W_Q^{H-1} | W_K^0 .. | W_V^0 ..], W^h (d, dh)
  Mat<Real> wo;          // (d, d)
  Mat<Real> w1, w2;      // (d, R), (R, d)
  RowVec<Real> b1, b2;   // (R), (d)
  Mat<Real> wd;          // (d, d)
  RowVec<Real> bd;       // (d)
};

struct Dims {
  int T, d, H, dh, R;
};

Dims dims_of(const StackSpec& s) { return {s.tokens, s.width, s.heads, s.head_dim(), s.mlp_width()}; }

template <class Real>
LayerWeights<Real> make_weights(const StackSpec& s, uint64_t seed, int sample, int l) {
  const Dims D = dims_of(s);
  const double beta = weight_beta(s);
  const double sd_w_d = beta * std::sqrt(s.sigma_w2 / D.d);  // fan_in d
  const double sd_b = std::sqrt(s.sigma_b2);
  LayerWeights<Real> w;
  auto gen = [&](auto&& dst, StreamKind kind, int head, double sd) {
    draw_into<Real>(dst, seed, sample, l, kind, head, sd);
  };
  if (s.has_attn()) {
    const double sd_qk = std::sqrt(s.sigma_qk2 / D.d);
    w.wqkv.resize(D.d, 3 * D.d);
    for (int h = 0; h < D.H; ++h) {
      gen(w.wqkv.middleCols(h * D.dh, D.dh), StreamKind::Wq, h, sd_qk);
      gen(w.wqkv.middleCols(D.d + h * D.dh, D.dh), StreamKind::Wk, h, sd_qk);
      gen(w.wqkv.middleCols(2 * D.d + h * D.dh, D.dh), StreamKind::Wv, h, sd_w_d);
    }
    w.wo.resize(D.d, D.d);
    gen(w.wo, StreamKind::Wo, 0, sd_w_d);
  }
  if (s.has_mlp()) {
    w.w1.resize(D.d, D.R);
    w.w2.resize(D.R, D.d);
    w.b1.resize(D.R);
    w.b2.resize(D.d);
    gen(w.w1, StreamKind::W1, 0, sd_w_d);
    gen(w.w2, StreamKind::W2, 0, beta * std::sqrt(s.sigma_w2 / D.R));
    gen(w.b1, StreamKind::B1, 0, sd_b);
    gen(w.b2, StreamKind::B2, 0, sd_b);
  }
  if (s.blocks == Blocks::Dense) {
    w.wd.resize(D.d, D.d);
    w.bd.resize(D.d);
    gen(w.wd, StreamKind::Wd, 0, sd_w_d);
    gen(w.bd, StreamKind::Bd, 0, sd_b);
  }
  return w;
}

// ----------------------------------------------------------------------------
// half-block  Y = post( lam X + a F(pre(X)) )  (conventions of reference.hpp)

// Everything the backward pass needs from one half-block's forward.
template <class Real>
struct HalfCache {
  Mat<Real> Zn;                // (T, d) N(X), when pre-norm
  ColVec<Real> rstd_pre;       // (T)
  Mat<Real> Z;                 // (T, d) branch input pre(X)
  Mat<Real> qkv;               // (T, 3d) [Q | K | V], head h in columns h dh .. (h+1) dh of each third
  std::vector<Mat<Real>> att;  // H x (T, T) softmax rows
  Mat<Real> cat;               // (T, d) concatenated head outputs A_h V_h
  Mat<Real> hid, act;          // (T, R) pre-activation and phi of it (mlp); (T, d) phi(Z) (dense, act only)
  Mat<Real> Y;                 // (T, d) output
  ColVec<Real> rstd_post;      // (T)
};

template <class Real>
class HalfBlock {
 public:
  using M = Mat<Real>;

  HalfBlock(const StackSpec& s, const LayerWeights<Real>& w, Branch br, int l)
      : s_(s), w_(w), br_(br), D_(dims_of(s)), p_(half_params(s, l)) {}

  // c.Y (T, d) = post(lam X + a F(pre(X))), X (T, d)
  void forward(const M& X, HalfCache<Real>& c) const {
    if (p_.pre) {
      norm_forward(c.Zn, c.rstd_pre, X, s_.norm_type, s_.norm_eps);
      c.Z = static_cast<Real>(p_.pre_gain) * c.Zn;
    } else {
      c.Z = X;
    }
    M F(D_.T, D_.d);
    switch (br_) {
      case Branch::Attn: attn_forward(F, c); break;
      case Branch::Mlp: mlp_forward(F, c); break;
      case Branch::Dense: dense_forward(F, c); break;
    }
    // S (T, d) = lam X + a F
    M S = static_cast<Real>(p_.lam) * X + static_cast<Real>(p_.a) * F;
    if (p_.post)
      norm_forward(c.Y, c.rstd_post, S, s_.norm_type, s_.norm_eps);
    else
      c.Y = std::move(S);
  }

  // dX (T, d) = J^T dY for the half-block whose forward filled c
  M backward(const HalfCache<Real>& c, const M& dY) const {
    M dS;
    if (p_.post)
      norm_backward(dS, dY, c.Y, c.rstd_post, s_.norm_type);
    else
      dS = dY;
    const M dF = static_cast<Real>(p_.a) * dS;
    M dZ = M::Zero(D_.T, D_.d);
    switch (br_) {
      case Branch::Attn: attn_backward(dZ, dF, c); break;
      case Branch::Mlp: mlp_backward(dZ, dF, c); break;
      case Branch::Dense: dense_backward(dZ, dF, c); break;
    }
    M dX;
    if (p_.pre) {
      dZ *= static_cast<Real>(p_.pre_gain);
      norm_backward(dX, dZ, c.Zn, c.rstd_pre, s_.norm_type);
    } else {
      dX = std::move(dZ);
    }
    dX += static_cast<Real>(p_.lam) * dS;
    return dX;
  }

 private:
  const StackSpec& s_;
  const LayerWeights<Real>& w_;
  Branch br_;
  Dims D_;
  HalfParams p_;

  Real qk_scale() const {
    return static_cast<Real>(s_.qk_scale == QkScale::InvSqrtDh ? 1.0 / std::sqrt(static_cast<double>(D_.dh))
                                                                : 1.0 / D_.dh);
  }

  // F (T, d) = concat_h( softmax(s Q_h K_h^T + M) V_h ) W_O,  [Q | K | V] = Z W_QKV (T, 3d)
  void attn_forward(M& F, HalfCache<Real>& c) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh;
    const Real sc = qk_scale();
    const bool causal = s_.mask == Mask::Causal;
    c.qkv.noalias() = c.Z * w_.wqkv;
    c.att.resize(H);
    c.cat.resize(T, d);
    for (int h = 0; h < H; ++h) {
      const auto q = c.qkv.middleCols(h * dh, dh);          // (T, dh)
      const auto k = c.qkv.middleCols(d + h * dh, dh);      // (T, dh)
      const auto v = c.qkv.middleCols(2 * d + h * dh, dh);  // (T, dh)
      M& A = c.att[h];                                      // (T, T)
      A.noalias() = (sc * q) * k.transpose();
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
    F.noalias() = c.cat * w_.wo;
  }

  // dZ (T, d) += J_attn^T dF (T, d)
  void attn_backward(M& dZ, const M& dF, const HalfCache<Real>& c) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh;
    const Real sc = qk_scale();
    const M dcat = dF * w_.wo.transpose();  // (T, d)
    M dqkv(T, 3 * d), dA(T, T);
    for (int h = 0; h < H; ++h) {
      const auto q = c.qkv.middleCols(h * dh, dh);
      const auto k = c.qkv.middleCols(d + h * dh, dh);
      const auto v = c.qkv.middleCols(2 * d + h * dh, dh);
      const M& A = c.att[h];
      const auto go = dcat.middleCols(h * dh, dh);  // (T, dh) gradient of A_h V_h
      dA.noalias() = go * v.transpose();            // dA_ts = go_t . v_s
      dqkv.middleCols(2 * d + h * dh, dh).noalias() = A.transpose() * go;
      // softmax backward: dS_ts = A_ts (dA_ts - sum_s' A_ts' dA_ts'); masked entries have A = 0
      const ColVec<Real> dot = A.cwiseProduct(dA).rowwise().sum();
      dA = sc * A.cwiseProduct(dA.colwise() - dot);  // now sc dS
      // logits S = sc Q K^T:  dQ = sc dS K,  dK = sc dS^T Q
      dqkv.middleCols(h * dh, dh).noalias() = dA * k;
      dqkv.middleCols(d + h * dh, dh).noalias() = dA.transpose() * q;
    }
    dZ.noalias() += dqkv * w_.wqkv.transpose();
  }

  // F (T, d) = phi(Z W1 + b1) W2 + b2
  void mlp_forward(M& F, HalfCache<Real>& c) const {
    c.hid.noalias() = c.Z * w_.w1;
    c.hid.rowwise() += w_.b1;
    act_forward(s_.activation, c.hid, c.act);
    F.noalias() = c.act * w_.w2;
    F.rowwise() += w_.b2;
  }

  void mlp_backward(M& dZ, const M& dF, const HalfCache<Real>& c) const {
    M dh = dF * w_.w2.transpose();  // (T, R)
    act_backward_mul(s_.activation, c.hid, dh);
    dZ.noalias() += dh * w_.w1.transpose();
  }

  // F (T, d) = phi(Z) W + b
  void dense_forward(M& F, HalfCache<Real>& c) const {
    act_forward(s_.activation, c.Z, c.act);
    F.noalias() = c.act * w_.wd;
    F.rowwise() += w_.bd;
  }

  void dense_backward(M& dZ, const M& dF, const HalfCache<Real>& c) const {
    M da = dF * w_.wd.transpose();
    act_backward_mul(s_.activation, c.Z, da);
    dZ += da;
  }
};

template <class Real>
Mat<Real> block_forward_impl(const StackSpec& s, const LayerWeights<Real>& w, int layer, const Mat<Real>& X) {
  HalfCache<Real> c;
  Mat<Real> Y = X;
  for (Branch br : halves_of(s)) {
    HalfBlock<Real>(s, w, br, layer).forward(Y, c);
    Y = std::move(c.Y);
  }
  return Y;
}

// The half-blocks' forward of block `layer`, keeping what their backward needs.
template <class Real>
std::vector<HalfCache<Real>> block_forward_caches(const StackSpec& s, const LayerWeights<Real>& w, int layer,
                                                  const Mat<Real>& X) {
  const std::vector<Branch> halves = halves_of(s);
  std::vector<HalfCache<Real>> caches(halves.size());
  const Mat<Real>* Y = &X;
  for (size_t i = 0; i < halves.size(); ++i) {
    HalfBlock<Real>(s, w, halves[i], layer).forward(*Y, caches[i]);
    Y = &caches[i].Y;
  }
  return caches;
}

// Delta_{l-1} (T, d) = J_l^T dY from the caches of block l's forward.
template <class Real>
Mat<Real> block_backward_caches(const StackSpec& s, const LayerWeights<Real>& w, int layer,
                                const std::vector<HalfCache<Real>>& caches, const Mat<Real>& dY) {
  const std::vector<Branch> halves = halves_of(s);
  Mat<Real> g = dY;
  for (size_t i = halves.size(); i-- > 0;) g = HalfBlock<Real>(s, w, halves[i], layer).backward(caches[i], g);
  return g;
}

// The same when nothing was kept: recompute this block's forward, then go back through it.
template <class Real>
Mat<Real> block_backward_impl(const StackSpec& s, const LayerWeights<Real>& w, int layer, const Mat<Real>& X,
                              const Mat<Real>& dY) {
  return block_backward_caches(s, w, layer, block_forward_caches(s, w, layer, X), dY);
}

template <class Real>
size_t cache_bytes(const std::vector<HalfCache<Real>>& caches) {
  size_t n = 0;
  for (const auto& c : caches) {
    n += static_cast<size_t>(c.Zn.size() + c.rstd_pre.size() + c.Z.size() + c.qkv.size() + c.cat.size() +
                             c.hid.size() + c.act.size() + c.Y.size() + c.rstd_post.size());
    for (const auto& a : c.att) n += static_cast<size_t>(a.size());
  }
  return n * sizeof(Real);
}

template <class Real>
size_t weight_bytes(const LayerWeights<Real>& w) {
  const auto n = w.wqkv.size() + w.wo.size() + w.w1.size() + w.w2.size() + w.b1.size() + w.b2.size() + w.wd.size() +
                 w.bd.size();
  return static_cast<size_t>(n) * sizeof(Real);
}

// X_0 (T, d) and Delta_L (T, d), computed in double as the reference does, then rounded.
MatD input_double(const StackSpec& s, uint64_t seed, int sample) {
  const int T = s.tokens, d = s.width;
  const double a = std::sqrt(s.q0 * (1.0 - s.rho0)), b = std::sqrt(s.q0 * s.rho0);
  MatD X = Eigen::Map<const MatD>(draw(static_cast<size_t>(T) * d, seed, sample, 0, StreamKind::InputG, 0, 1.0).data(),
                                  T, d);
  const std::vector<double>& g = draw(d, seed, sample, 0, StreamKind::InputG1, 0, 1.0);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i) X(t, i) = a * X(t, i) + b * g[i];
  return X;
}

MatD output_grad_double(const StackSpec& s, uint64_t seed, int sample) {
  const int T = s.tokens, d = s.width;
  return Eigen::Map<const MatD>(
      draw(static_cast<size_t>(T) * d, seed, sample, 0, StreamKind::OutputGrad, 0, 1.0).data(), T, d);
}

}  // namespace

template <class Real>
EigenStack<Real>::EigenStack(const StackSpec& spec, uint64_t seed, std::size_t weight_cache_bytes)
    : weight_cache_bytes_(weight_cache_bytes), spec_(spec), seed_(seed) {
  validate_for_simulation(spec_);
}

template <class Real>
std::string EigenStack<Real>::precision() const {
  return std::is_same_v<Real, float> ? "float" : "double";
}

template <class Real>
std::vector<double> EigenStack<Real>::input(int sample) const {
  return to_vec<Real>(input_double(spec_, seed_, sample).template cast<Real>());
}

template <class Real>
std::vector<double> EigenStack<Real>::output_grad(int sample) const {
  return to_vec<Real>(output_grad_double(spec_, seed_, sample).template cast<Real>());
}

template <class Real>
std::vector<double> EigenStack<Real>::block_forward(int sample, int layer, const std::vector<double>& X) const {
  return to_vec<Real>(
      block_forward_impl<Real>(spec_, make_weights<Real>(spec_, seed_, sample, layer), layer,
                               to_mat<Real>(X, spec_.tokens, spec_.width)));
}

template <class Real>
std::vector<double> EigenStack<Real>::block_backward(int sample, int layer, const std::vector<double>& X,
                                                     const std::vector<double>& dY) const {
  const int T = spec_.tokens, d = spec_.width;
  return to_vec<Real>(block_backward_impl<Real>(spec_, make_weights<Real>(spec_, seed_, sample, layer), layer,
                                                to_mat<Real>(X, T, d), to_mat<Real>(dY, T, d)));
}

template <class Real>
SampleMetrics EigenStack<Real>::run_sample(int sample) const {
  const int L = spec_.depth, d = spec_.width;
  SampleMetrics r;
  r.values.assign(L + 1, std::vector<double>(kNumCols, std::nan("")));

  // Forward: keep every X_l (T, d), l = 0..L, for the metrics and the backward pass. While
  // they fit weight_cache_bytes_, also keep each layer's weights and forward intermediates;
  // the backward pass uses them, and regenerates the weights and recomputes the forward of
  // the other layers (same numbers, memory bounded independently of L).
  struct Kept {
    LayerWeights<Real> w;
    std::vector<HalfCache<Real>> caches;
    bool has = false;
  };
  std::vector<Mat<Real>> X(L + 1);
  std::vector<Kept> kept(L + 1);
  size_t kept_bytes = 0;
  X[0] = input_double(spec_, seed_, sample).template cast<Real>();
  int last = L;
  for (int l = 1; l <= L; ++l) {
    LayerWeights<Real> w = make_weights<Real>(spec_, seed_, sample, l);
    std::vector<HalfCache<Real>> caches = block_forward_caches<Real>(spec_, w, l, X[l - 1]);
    X[l] = caches.back().Y;
    const size_t bytes = weight_bytes(w) + cache_bytes(caches);
    if (kept_bytes + bytes <= weight_cache_bytes_) {
      kept_bytes += bytes;
      kept[l] = Kept{std::move(w), std::move(caches), true};
    }
    if (!X[l].allFinite()) {
      r.forward_nonfinite = l;
      last = l - 1;
      break;
    }
  }

  // Metrics in double from the widened streams (see eigen_backend.hpp).
  const double inv_d = 1.0 / d;
  MatD Xprev;
  Eigen::MatrixXd Kprev;
  for (int l = 0; l <= last; ++l) {
    MatD Xl = X[l].template cast<double>();
    Eigen::MatrixXd K = (Xl * Xl.transpose()) * inv_d;
    StateMetrics m = state_metrics_from_kernel(K);
    auto& v = r.values[l];
    v[kQ] = m.q;
    v[kRho] = m.rho;
    v[kRes] = m.res;
    v[kEffRank] = m.eff_rank;
    if (l > 0) {
      Eigen::MatrixXd C = (Xprev * Xl.transpose()) * inv_d;
      StepMetrics st = step_metrics_from_kernels(Kprev, K, C);
      v[kUpdate] = st.update_ratio;
      v[kAng] = st.ang_dist;
    }
    Kprev = std::move(K);
    Xprev = std::move(Xl);
  }
  if (r.forward_nonfinite >= 0) return r;  // the backward pass needs every layer

  // Backward: Delta_L iid N(0, 1), Delta_{l-1} = J_l^T Delta_l.
  auto mean_square = [](const Mat<Real>& D) { return D.template cast<double>().squaredNorm() / D.size(); };
  Mat<Real> D = output_grad_double(spec_, seed_, sample).template cast<Real>();
  r.values[L][kGrad] = mean_square(D);
  for (int l = L; l >= 1; --l) {
    if (kept[l].has) {
      D = block_backward_caches<Real>(spec_, kept[l].w, l, kept[l].caches, D);
      kept[l] = Kept{};  // release as we go
    } else {
      D = block_backward_impl<Real>(spec_, make_weights<Real>(spec_, seed_, sample, l), l, X[l - 1], D);
    }
    if (!D.allFinite()) {
      r.backward_nonfinite = l - 1;
      break;
    }
    r.values[l - 1][kGrad] = mean_square(D);
  }
  return r;
}

template class EigenStack<float>;
template class EigenStack<double>;

}  // namespace sigprop::sim
