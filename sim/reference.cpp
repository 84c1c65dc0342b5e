// The reference backend (see reference.hpp): readable loops, row-major buffers,
// shapes in comments. T tokens, d width, H heads of dh = d/H, R = r d MLP width.
#include "sim/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "core/profile.hpp"
#include "core/rng.hpp"
#include "sim/input.hpp"  // exact_kernel_input
#include "sim/conditional.hpp"  // CondSource, ColScale (the loops below are the reference's own)

namespace sigprop::sim {
namespace {

using Vec = std::vector<double>;
using std::size_t;

// Column of each metric in SampleMetrics::values (metric_names() order, checked below).

bool all_finite(const Vec& v) {
  for (double x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// ----------------------------------------------------------------------------
// random streams

// out (n) = sd * normals 0..n-1 of stream (seed, stream_id(sample, layer, kind, head)).
void fill_normal(double* out, size_t n, uint64_t seed, int sample, int layer, StreamKind kind, int head,
                 double sd) {
  NormalStream(seed, stream_id(static_cast<uint64_t>(sample), static_cast<uint64_t>(layer),
                               static_cast<uint64_t>(kind), static_cast<uint64_t>(head)))
      .fill(out, n);
  for (size_t i = 0; i < n; ++i) out[i] *= sd;
}

// ----------------------------------------------------------------------------
// matmuls

// out (N, M) = inp (N, K) @ w (K, M) + bias (M) (bias may be null)
void matmul_forward(double* out, const double* inp, const double* w, const double* bias, int N, int K, int M) {
  for (int n = 0; n < N; ++n) {
    double* o = out + static_cast<size_t>(n) * M;
    for (int m = 0; m < M; ++m) o[m] = bias ? bias[m] : 0.0;
    for (int k = 0; k < K; ++k) {
      const double x = inp[static_cast<size_t>(n) * K + k];
      const double* wrow = w + static_cast<size_t>(k) * M;
      for (int m = 0; m < M; ++m) o[m] += x * wrow[m];
    }
  }
}

// dinp (N, K) += dout (N, M) @ w^T, w (K, M)
void matmul_backward(double* dinp, const double* dout, const double* w, int N, int K, int M) {
  for (int n = 0; n < N; ++n) {
    const double* g = dout + static_cast<size_t>(n) * M;
    for (int k = 0; k < K; ++k) {
      const double* wrow = w + static_cast<size_t>(k) * M;
      double acc = 0.0;
      for (int m = 0; m < M; ++m) acc += g[m] * wrow[m];
      dinp[static_cast<size_t>(n) * K + k] += acc;
    }
  }
}

// ----------------------------------------------------------------------------
// norms: gain 1, bias 0 (MODEL.md §1), eps = spec.norm_eps

// out (T, d) = N(inp) row by row; rstd (T) the inverse scale of each row.
//   LayerNorm: out = (x - mean x) rstd, rstd = 1/sqrt(mean((x - mean x)^2) + eps)
//   RMSNorm:   out = x rstd,            rstd = 1/sqrt(mean(x^2) + eps)
void norm_forward(double* out, double* rstd, const double* inp, int T, int d, NormType type, double eps) {
  for (int t = 0; t < T; ++t) {
    const double* x = inp + static_cast<size_t>(t) * d;
    double* o = out + static_cast<size_t>(t) * d;
    double mean = 0.0;
    if (type == NormType::LayerNorm) {
      for (int i = 0; i < d; ++i) mean += x[i];
      mean /= d;
    }
    double var = 0.0;
    for (int i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= d;
    const double r = 1.0 / std::sqrt(var + eps);
    for (int i = 0; i < d; ++i) o[i] = (x[i] - mean) * r;
    rstd[t] = r;
  }
}

// dinp (T, d) = J^T dout, from the forward's out (T, d) and rstd (T):
//   LayerNorm: dx = rstd (dy - mean(dy) - y mean(dy y));  RMSNorm: dx = rstd (dy - y mean(dy y))
void norm_backward(double* dinp, const double* dout, const double* out, const double* rstd, int T, int d,
                   NormType type) {
  for (int t = 0; t < T; ++t) {
    const double* dy = dout + static_cast<size_t>(t) * d;
    const double* y = out + static_cast<size_t>(t) * d;
    double* dx = dinp + static_cast<size_t>(t) * d;
    double mean_dy = 0.0, mean_dyy = 0.0;
    for (int i = 0; i < d; ++i) {
      mean_dy += dy[i];
      mean_dyy += dy[i] * y[i];
    }
    mean_dy /= d;
    mean_dyy /= d;
    if (type == NormType::RmsNorm) mean_dy = 0.0;
    for (int i = 0; i < d; ++i) dx[i] = rstd[t] * (dy[i] - mean_dy - y[i] * mean_dyy);
  }
}

// ----------------------------------------------------------------------------
// one layer's weights, regenerated from their streams whenever needed


struct LayerWeights {
  Vec wq, wk, wv;  // (H, d, dh) per-head projections
  Vec wo;          // (d, d)
  Vec w1, b1;      // (d, R), (R)
  Vec w2, b2;      // (R, d), (d)
  Vec wd, bd;      // (d, d), (d)
  bool conditional = false;  // the matrices are drawn conditionally on their inputs (src), not stored
  CondSource src;
};

struct Dims {
  int T, d, H, dh, R;
};

Dims dims_of(const StackSpec& s) { return {s.tokens, s.width, s.heads, s.head_dim(), s.mlp_width()}; }

LayerWeights make_weights(const StackSpec& s, uint64_t seed, int sample, int l, WeightSampling sampling,
                          bool independent_backward) {
  const Dims D = dims_of(s);
  const double beta = weight_beta(s);
  const double sd_w_d = beta * std::sqrt(s.sigma_w2 / D.d);  // fan_in d
  const double sd_b = std::sqrt(s.sigma_b2);
  LayerWeights w;
  auto gen = [&](Vec& v, size_t n, StreamKind kind, int head, double sd, size_t at = 0) {
    if (v.size() < at + n) v.resize(at + n);
    fill_normal(v.data() + at, n, seed, sample, l, kind, head, sd);
  };
  if (sampling == WeightSampling::Conditional) {  // matrices drawn on use; biases as always
    w.conditional = true;
    w.src = CondSource{seed, sample, l, std::sqrt(s.sigma_qk2 / D.d), sd_w_d, sd_w_d, sd_w_d,
                       beta * std::sqrt(s.sigma_w2 / D.R), sd_w_d, independent_backward};
    if (s.has_mlp()) {
      gen(w.b1, D.R, StreamKind::B1, 0, sd_b);
      gen(w.b2, D.d, StreamKind::B2, 0, sd_b);
    }
    if (s.blocks == Blocks::Dense) gen(w.bd, D.d, StreamKind::Bd, 0, sd_b);
    return w;
  }
  if (s.has_attn()) {
    const size_t per_head = static_cast<size_t>(D.d) * D.dh;
    const double sd_qk = std::sqrt(s.sigma_qk2 / D.d);
    w.wq.resize(per_head * D.H);
    w.wk.resize(per_head * D.H);
    w.wv.resize(per_head * D.H);
    for (int h = 0; h < D.H; ++h) {
      gen(w.wq, per_head, StreamKind::Wq, h, sd_qk, per_head * h);
      gen(w.wk, per_head, StreamKind::Wk, h, sd_qk, per_head * h);
      gen(w.wv, per_head, StreamKind::Wv, h, sd_w_d, per_head * h);
    }
    gen(w.wo, static_cast<size_t>(D.d) * D.d, StreamKind::Wo, 0, sd_w_d);
  }
  if (s.has_mlp()) {
    gen(w.w1, static_cast<size_t>(D.d) * D.R, StreamKind::W1, 0, sd_w_d);
    gen(w.w2, static_cast<size_t>(D.R) * D.d, StreamKind::W2, 0, beta * std::sqrt(s.sigma_w2 / D.R));
    gen(w.b1, D.R, StreamKind::B1, 0, sd_b);
    gen(w.b2, D.d, StreamKind::B2, 0, sd_b);
  }
  if (s.blocks == Blocks::Dense) {
    gen(w.wd, static_cast<size_t>(D.d) * D.d, StreamKind::Wd, 0, sd_w_d);
    gen(w.bd, D.d, StreamKind::Bd, 0, sd_b);
  }
  return w;
}

// ----------------------------------------------------------------------------
// conditional sampling: the method is stated in sim/conditional.hpp; these are its plain loops

// One matrix's forward factor and draw, kept for its backward.
struct RefFactor {
  std::vector<int> kept;  // candidates (forward) that opened directions 0..r-1
  Vec Q;                  // (r, n) orthonormal rows
  Vec G;                  // (r, m) scaled draw of Q W
};

double dot_n(const double* a, const double* b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// X (T, n) = C (T, r) Q (r, n): classical Gram-Schmidt in token order, reorthogonalised while a
// pass cancels more than 1/sqrt(2) of the norm (at most 3 passes); row t opens direction r iff
// its residual norm exceeds kCondRankTol times its norm and abs_tol (or is not finite).
void ref_factor(const double* X, int T, int n, std::vector<int>& kept, Vec& Q, Vec& C, double abs_tol = 0.0) {
  Vec Qf(static_cast<size_t>(T) * n), Cf(static_cast<size_t>(T) * T, 0.0), v(n), p(T);
  kept.clear();
  int r = 0;
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < n; ++i) v[i] = X[static_cast<size_t>(t) * n + i];
    const double nx = std::sqrt(dot_n(v.data(), v.data(), n));
    double nv = nx;
    for (int pass = 0; pass < 3 && r > 0; ++pass) {
      for (int k = 0; k < r; ++k) p[k] = dot_n(Qf.data() + static_cast<size_t>(k) * n, v.data(), n);
      for (int k = 0; k < r; ++k) {
        const double* q = Qf.data() + static_cast<size_t>(k) * n;
        for (int i = 0; i < n; ++i) v[i] -= p[k] * q[i];
        Cf[static_cast<size_t>(t) * T + k] += p[k];
      }
      const double nn = std::sqrt(dot_n(v.data(), v.data(), n));
      const bool again = nn < 0.7071067811865476 * nv;
      nv = nn;
      if (!again) break;
    }
    if (!std::isfinite(nv) || (nx > 0 && nv > kCondRankTol * nx && nv > abs_tol)) {
      for (int i = 0; i < n; ++i) Qf[static_cast<size_t>(r) * n + i] = v[i] / nv;
      Cf[static_cast<size_t>(t) * T + r] = nv;
      kept.push_back(t);
      ++r;
    }
  }
  Q.assign(Qf.begin(), Qf.begin() + static_cast<std::ptrdiff_t>(r) * n);
  C.assign(static_cast<size_t>(T) * r, 0.0);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < r; ++k) C[static_cast<size_t>(t) * r + k] = Cf[static_cast<size_t>(t) * T + k];
}

uint64_t cond_stream_id(const CondSource& src, StreamKind kind, int slot) {
  return stream_id(static_cast<uint64_t>(src.sample), static_cast<uint64_t>(src.layer), static_cast<uint64_t>(kind),
                   static_cast<uint64_t>(slot));
}

// out (r, cols) = rows kept[k] of the (T, cols) unit normals of stream id
void draw_kept_rows(const CondSource& src, uint64_t id, const std::vector<int>& kept, int cols, Vec& out) {
  out.assign(kept.size() * static_cast<size_t>(cols), 0.0);
  for (size_t k = 0; k < kept.size(); ++k)
    NormalStream(src.seed, id).fill(out.data() + k * cols, static_cast<size_t>(cols),
                                    static_cast<uint64_t>(kept[k]) * static_cast<uint64_t>(cols));
}

double col_scale(const ColScale& sc, int j) { return j < sc.split ? sc.first : sc.second; }

// Y (T, m) = X (T, n) W, W drawn conditionally on X (the forward of sim/conditional.hpp): the
// factor of X's candidates (row 0 the tokens' mean, row t >= 1 token t's deviation from it),
// its C mapped back to the tokens
void ref_cond_forward(const CondSource& src, CondSlot slot, ColScale sc, const double* X, int T, int n, int m,
                      RefFactor& f, double* Y) {
  Vec A(static_cast<size_t>(T) * n), mean(n, 0.0), C;
  double sq = 0.0;
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < n; ++i) {
      const double x = X[static_cast<size_t>(t) * n + i];
      mean[i] += x;
      sq += x * x;
    }
  for (int i = 0; i < n; ++i) mean[i] /= T;
  for (int i = 0; i < n && T > 0; ++i) A[i] = mean[i];
  for (int t = 1; t < T; ++t)
    for (int i = 0; i < n; ++i) A[static_cast<size_t>(t) * n + i] = X[static_cast<size_t>(t) * n + i] - mean[i];
  ref_factor(A.data(), T, n, f.kept, f.Q, C, T > 0 ? kCondNoiseTol * std::sqrt(sq / T) : 0.0);
  const int r = static_cast<int>(f.kept.size());
  draw_kept_rows(src, cond_stream_id(src, StreamKind::CondFwd, static_cast<int>(slot)), f.kept, m, f.G);
  for (int k = 0; k < r; ++k)
    for (int j = 0; j < m; ++j) f.G[static_cast<size_t>(k) * m + j] *= col_scale(sc, j);
  for (int t = 0; t < T; ++t)  // the candidates' outputs C G
    for (int j = 0; j < m; ++j) {
      double acc = 0.0;
      for (int k = 0; k < r; ++k) acc += C[static_cast<size_t>(t) * r + k] * f.G[static_cast<size_t>(k) * m + j];
      Y[static_cast<size_t>(t) * m + j] = acc;
    }
  if (T > 1)  // -> the tokens': y_t = mean + dev_t (t >= 1), y_0 = mean - sum_{t >= 1} dev_t
    for (int j = 0; j < m; ++j) {
      const double ym = Y[j];
      double dev0 = -Y[static_cast<size_t>(m) + j];
      for (int t = 2; t < T; ++t) dev0 -= Y[static_cast<size_t>(t) * m + j];
      for (int t = 1; t < T; ++t) Y[static_cast<size_t>(t) * m + j] += ym;
      Y[j] = ym + dev0;
    }
}

// dX (T, n) += dY (T, m) W^T for the W whose forward filled f (the backward of sim/conditional.hpp):
// (dY G^T) Q + E (I - Q^T Q), E = C' Z with dY diag(s) = C' Q'
void ref_cond_backward(const CondSource& src, CondSlot slot, ColScale sc, const RefFactor& f, const double* dY,
                       int T, int n, int m, double* dX) {
  const int r = static_cast<int>(f.kept.size());
  Vec Ds(static_cast<size_t>(T) * m);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < m; ++j) Ds[static_cast<size_t>(t) * m + j] = dY[static_cast<size_t>(t) * m + j] * col_scale(sc, j);
  std::vector<int> kept2;
  Vec Q2, C2, Z;
  ref_factor(Ds.data(), T, m, kept2, Q2, C2);
  const int r2 = static_cast<int>(kept2.size());
  const int id = static_cast<int>(slot) + (src.independent_backward ? kCondIndependentSlot : 0);
  draw_kept_rows(src, cond_stream_id(src, StreamKind::CondBwd, id), kept2, n, Z);
  Vec E(static_cast<size_t>(T) * n, 0.0);  // (T, n) = C2 Z
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < r2; ++k) {
      const double c = C2[static_cast<size_t>(t) * r2 + k];
      for (int i = 0; i < n; ++i) E[static_cast<size_t>(t) * n + i] += c * Z[static_cast<size_t>(k) * n + i];
    }
  if (!src.independent_backward) {
    for (int t = 0; t < T; ++t) {
      double* e = E.data() + static_cast<size_t>(t) * n;
      const double* g = dY + static_cast<size_t>(t) * m;
      for (int k = 0; k < r; ++k) {
        const double* q = f.Q.data() + static_cast<size_t>(k) * n;
        // coefficient on q_k: (dY G^T)_tk - (E Q^T)_tk
        const double a = dot_n(g, f.G.data() + static_cast<size_t>(k) * m, m) - dot_n(e, q, n);
        for (int i = 0; i < n; ++i) e[i] += a * q[i];
      }
    }
  }
  for (size_t i = 0; i < E.size(); ++i) dX[i] += E[i];
}

// ----------------------------------------------------------------------------
// half-block  Y = post( lam X + a F(pre(X)) )

// Everything the backward pass needs from one half-block's forward.
struct HalfCache {
  Vec X;                // (T, d) input
  Vec Zn, rstd_pre;     // (T, d) N(X) and (T) its inverse scales, when pre-norm
  Vec Z;                // (T, d) branch input pre(X) = pre_gain N(X), or X
  Vec q, k, v;          // (H, T, dh) attention projections
  Vec att;              // (H, T, T) softmax rows
  Vec cat;              // (T, d) concatenated head outputs A_h V_h
  Vec hid, act;         // (T, R) pre-activation and phi of it (mlp); (T, d) phi(Z) (dense, act only)
  Vec Y, rstd_post;     // (T, d) output (post-norm output or S) and (T) post-norm inverse scales
  RefFactor f0, f1;     // conditional sampling: the first (QKV, W1, dense W) and second (W_O, W2) matrix
};

class HalfBlock {
 public:
  HalfBlock(const StackSpec& s, const LayerWeights& w, Branch br, int l)
      : s_(s), w_(w), br_(br), D_(dims_of(s)), p_(half_params(s, l)) {}

  // c.Y (T, d) = post(lam X + a F(pre(X))), X (T, d)
  void forward(const Vec& X, HalfCache& c) const {
    const size_t n = static_cast<size_t>(D_.T) * D_.d;
    c.X = X;
    if (p_.pre) {
      c.Zn.resize(n);
      c.rstd_pre.resize(D_.T);
      norm_forward(c.Zn.data(), c.rstd_pre.data(), X.data(), D_.T, D_.d, s_.norm_type, s_.norm_eps);
      c.Z.resize(n);
      for (size_t i = 0; i < n; ++i) c.Z[i] = p_.pre_gain * c.Zn[i];
    } else {
      c.Z = X;
    }
    Vec F(n);
    switch (br_) {
      case Branch::Attn: attn_forward(F, c); break;
      case Branch::Mlp: mlp_forward(F, c); break;
      case Branch::Dense: dense_forward(F, c); break;
    }
    Vec S(n);  // (T, d) lam X + a F
    for (size_t i = 0; i < n; ++i) S[i] = p_.lam * X[i] + p_.a * F[i];
    if (p_.post) {
      c.Y.resize(n);
      c.rstd_post.resize(D_.T);
      norm_forward(c.Y.data(), c.rstd_post.data(), S.data(), D_.T, D_.d, s_.norm_type, s_.norm_eps);
    } else {
      c.Y = std::move(S);
    }
  }

  // dX (T, d) = J^T dY for the half-block whose forward filled c
  Vec backward(const HalfCache& c, const Vec& dY) const {
    const size_t n = static_cast<size_t>(D_.T) * D_.d;
    Vec dS(n);
    if (p_.post)
      norm_backward(dS.data(), dY.data(), c.Y.data(), c.rstd_post.data(), D_.T, D_.d, s_.norm_type);
    else
      dS = dY;
    Vec dF(n), dZ(n, 0.0);
    for (size_t i = 0; i < n; ++i) dF[i] = p_.a * dS[i];
    switch (br_) {
      case Branch::Attn: attn_backward(dZ, dF, c); break;
      case Branch::Mlp: mlp_backward(dZ, dF, c); break;
      case Branch::Dense: dense_backward(dZ, dF, c); break;
    }
    Vec dX(n);
    if (p_.pre) {
      for (size_t i = 0; i < n; ++i) dZ[i] *= p_.pre_gain;
      norm_backward(dX.data(), dZ.data(), c.Zn.data(), c.rstd_pre.data(), D_.T, D_.d, s_.norm_type);
    } else {
      dX = std::move(dZ);
    }
    for (size_t i = 0; i < n; ++i) dX[i] += p_.lam * dS[i];
    return dX;
  }

 private:
  const StackSpec& s_;
  const LayerWeights& w_;
  Branch br_;
  Dims D_;
  HalfParams p_;

  double qk_scale() const {
    return s_.qk_scale == QkScale::InvSqrtDh ? 1.0 / std::sqrt(static_cast<double>(D_.dh)) : 1.0 / D_.dh;
  }

  // out (T, m) = inp (T, n) W + bias (bias may be null): the stored W, or W drawn conditionally on inp
  void linear(double* out, const double* inp, const Vec& w, const double* bias, int n, int m, CondSlot slot,
              ColScale sc, RefFactor& f) const {
    if (!w_.conditional) {
      matmul_forward(out, inp, w.data(), bias, D_.T, n, m);
      return;
    }
    ref_cond_forward(w_.src, slot, sc, inp, D_.T, n, m, f, out);
    if (bias)
      for (int t = 0; t < D_.T; ++t)
        for (int j = 0; j < m; ++j) out[static_cast<size_t>(t) * m + j] += bias[j];
  }
  // dinp (T, n) += dout (T, m) W^T, the same W as linear()'s
  void linear_back(double* dinp, const double* dout, const Vec& w, int n, int m, CondSlot slot, ColScale sc,
                   const RefFactor& f) const {
    if (!w_.conditional) {
      matmul_backward(dinp, dout, w.data(), D_.T, n, m);
      return;
    }
    ref_cond_backward(w_.src, slot, sc, f, dout, D_.T, n, m, dinp);
  }
  ColScale sc_qkv() const { return {2 * D_.d, w_.src.sd_qk, w_.src.sd_v}; }
  ColScale sc_all(double s) const { return {0, s, s}; }

  // F (T, d) = concat_h( softmax(s Q_h K_h^T + M) V_h ) W_O,  Q_h = Z W_Q^h (T, dh) etc.
  void attn_forward(Vec& F, HalfCache& c) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh;
    const size_t hw = static_cast<size_t>(d) * dh, ht = static_cast<size_t>(T) * dh;
    const double sc = qk_scale();
    c.q.assign(ht * H, 0.0);
    c.k.assign(ht * H, 0.0);
    c.v.assign(ht * H, 0.0);
    c.att.assign(static_cast<size_t>(H) * T * T, 0.0);
    c.cat.assign(static_cast<size_t>(T) * d, 0.0);
    if (w_.conditional) {  // [Q | K | V] (T, 3d) = Z W_QKV in one conditional draw, heads are column blocks
      Vec qkv(static_cast<size_t>(T) * 3 * d);
      ref_cond_forward(w_.src, CondSlot::Qkv, sc_qkv(), c.Z.data(), T, d, 3 * d, c.f0, qkv.data());
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < dh; ++i) {
            const double* row = qkv.data() + static_cast<size_t>(t) * 3 * d + static_cast<size_t>(h) * dh + i;
            c.q[ht * h + t * dh + i] = row[0];
            c.k[ht * h + t * dh + i] = row[d];
            c.v[ht * h + t * dh + i] = row[2 * d];
          }
    }
    for (int h = 0; h < H; ++h) {
      double* q = c.q.data() + ht * h;  // (T, dh)
      double* k = c.k.data() + ht * h;  // (T, dh)
      double* v = c.v.data() + ht * h;  // (T, dh)
      if (!w_.conditional) {
        matmul_forward(q, c.Z.data(), w_.wq.data() + hw * h, nullptr, T, d, dh);
        matmul_forward(k, c.Z.data(), w_.wk.data() + hw * h, nullptr, T, d, dh);
        matmul_forward(v, c.Z.data(), w_.wv.data() + hw * h, nullptr, T, d, dh);
      }
      double* A = c.att.data() + static_cast<size_t>(h) * T * T;  // (T, T)
      for (int t = 0; t < T; ++t) {
        const int smax = s_.mask == Mask::Causal ? t : T - 1;  // causal: keys s <= t only
        double* a = A + static_cast<size_t>(t) * T;
        double mx = -std::numeric_limits<double>::infinity();
        for (int s = 0; s <= smax; ++s) {
          double dot = 0.0;
          for (int i = 0; i < dh; ++i) dot += q[t * dh + i] * k[s * dh + i];
          a[s] = sc * dot;
          mx = std::max(mx, a[s]);
        }
        double sum = 0.0;
        for (int s = 0; s <= smax; ++s) {
          a[s] = std::exp(a[s] - mx);
          sum += a[s];
        }
        for (int s = 0; s <= smax; ++s) a[s] /= sum;
        for (int s = smax + 1; s < T; ++s) a[s] = 0.0;  // exp(-inf)
        // head output row t: sum_s a_s v_s, written into its dh columns of cat
        double* o = c.cat.data() + static_cast<size_t>(t) * d + static_cast<size_t>(h) * dh;
        for (int s = 0; s <= smax; ++s)
          for (int i = 0; i < dh; ++i) o[i] += a[s] * v[s * dh + i];
      }
    }
    linear(F.data(), c.cat.data(), w_.wo, nullptr, d, d, CondSlot::Wo, sc_all(w_.src.sd_o), c.f1);
  }

  // dZ (T, d) += J_attn^T dF (T, d)
  void attn_backward(Vec& dZ, const Vec& dF, const HalfCache& c) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh;
    const size_t hw = static_cast<size_t>(d) * dh, ht = static_cast<size_t>(T) * dh;
    const double sc = qk_scale();
    Vec dcat(static_cast<size_t>(T) * d, 0.0);  // (T, d) = dF W_O^T
    linear_back(dcat.data(), dF.data(), w_.wo, d, d, CondSlot::Wo, sc_all(w_.src.sd_o), c.f1);
    Vec dq(ht), dk(ht), dv(ht), dA(static_cast<size_t>(T) * T), dS(static_cast<size_t>(T) * T);
    Vec dqkv(w_.conditional ? static_cast<size_t>(T) * 3 * d : 0, 0.0);  // (T, 3d), conditional only
    for (int h = 0; h < H; ++h) {
      const double* q = c.q.data() + ht * h;
      const double* k = c.k.data() + ht * h;
      const double* v = c.v.data() + ht * h;
      const double* A = c.att.data() + static_cast<size_t>(h) * T * T;
      std::fill(dq.begin(), dq.end(), 0.0);
      std::fill(dk.begin(), dk.end(), 0.0);
      std::fill(dv.begin(), dv.end(), 0.0);
      for (int t = 0; t < T; ++t) {
        const double* go = dcat.data() + static_cast<size_t>(t) * d + static_cast<size_t>(h) * dh;  // (dh)
        // dA_ts = go . v_s ;  dv_s += A_ts go
        for (int s = 0; s < T; ++s) {
          double acc = 0.0;
          for (int i = 0; i < dh; ++i) {
            acc += go[i] * v[s * dh + i];
            dv[s * dh + i] += A[t * T + s] * go[i];
          }
          dA[t * T + s] = acc;
        }
        // softmax backward: dS_ts = A_ts (dA_ts - sum_s' A_ts' dA_ts'); masked entries have A = 0
        double dot = 0.0;
        for (int s = 0; s < T; ++s) dot += A[t * T + s] * dA[t * T + s];
        for (int s = 0; s < T; ++s) dS[t * T + s] = A[t * T + s] * (dA[t * T + s] - dot);
      }
      // logits S = sc Q K^T:  dq_t = sc sum_s dS_ts k_s ;  dk_s = sc sum_t dS_ts q_t
      for (int t = 0; t < T; ++t)
        for (int s = 0; s < T; ++s) {
          const double g = sc * dS[t * T + s];
          if (g == 0.0) continue;
          for (int i = 0; i < dh; ++i) {
            dq[t * dh + i] += g * k[s * dh + i];
            dk[s * dh + i] += g * q[t * dh + i];
          }
        }
      if (w_.conditional) {
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < dh; ++i) {
            double* row = dqkv.data() + static_cast<size_t>(t) * 3 * d + static_cast<size_t>(h) * dh + i;
            row[0] = dq[t * dh + i];
            row[d] = dk[t * dh + i];
            row[2 * d] = dv[t * dh + i];
          }
        continue;
      }
      matmul_backward(dZ.data(), dq.data(), w_.wq.data() + hw * h, T, d, dh);
      matmul_backward(dZ.data(), dk.data(), w_.wk.data() + hw * h, T, d, dh);
      matmul_backward(dZ.data(), dv.data(), w_.wv.data() + hw * h, T, d, dh);
    }
    if (w_.conditional) ref_cond_backward(w_.src, CondSlot::Qkv, sc_qkv(), c.f0, dqkv.data(), T, d, 3 * d, dZ.data());
  }

  // F (T, d) = phi(Z W1 + b1) W2 + b2
  void mlp_forward(Vec& F, HalfCache& c) const {
    const int T = D_.T, d = D_.d, R = D_.R;
    c.hid.resize(static_cast<size_t>(T) * R);
    c.act.resize(static_cast<size_t>(T) * R);
    linear(c.hid.data(), c.Z.data(), w_.w1, w_.b1.data(), d, R, CondSlot::W1, sc_all(w_.src.sd_w1), c.f0);
    for (size_t i = 0; i < c.hid.size(); ++i) c.act[i] = activation_value(s_.activation, c.hid[i]);
    linear(F.data(), c.act.data(), w_.w2, w_.b2.data(), R, d, CondSlot::W2, sc_all(w_.src.sd_w2), c.f1);
  }

  void mlp_backward(Vec& dZ, const Vec& dF, const HalfCache& c) const {
    const int T = D_.T, d = D_.d, R = D_.R;
    Vec dh(static_cast<size_t>(T) * R, 0.0);  // (T, R)
    linear_back(dh.data(), dF.data(), w_.w2, R, d, CondSlot::W2, sc_all(w_.src.sd_w2), c.f1);
    for (size_t i = 0; i < dh.size(); ++i) dh[i] *= activation_derivative(s_.activation, c.hid[i]);
    linear_back(dZ.data(), dh.data(), w_.w1, d, R, CondSlot::W1, sc_all(w_.src.sd_w1), c.f0);
  }

  // F (T, d) = phi(Z) W + b
  void dense_forward(Vec& F, HalfCache& c) const {
    const int T = D_.T, d = D_.d;
    c.act.resize(static_cast<size_t>(T) * d);
    for (size_t i = 0; i < c.act.size(); ++i) c.act[i] = activation_value(s_.activation, c.Z[i]);
    linear(F.data(), c.act.data(), w_.wd, w_.bd.data(), d, d, CondSlot::Wd, sc_all(w_.src.sd_wd), c.f0);
  }

  void dense_backward(Vec& dZ, const Vec& dF, const HalfCache& c) const {
    const int T = D_.T, d = D_.d;
    Vec da(static_cast<size_t>(T) * d, 0.0);
    linear_back(da.data(), dF.data(), w_.wd, d, d, CondSlot::Wd, sc_all(w_.src.sd_wd), c.f0);
    for (size_t i = 0; i < da.size(); ++i) dZ[i] += da[i] * activation_derivative(s_.activation, c.Z[i]);
  }
};

// K (T, T) = A B^T / d for streams A, B (T, d)
Eigen::MatrixXd cross_kernel(const Vec& A, const Vec& B, int T, int d) {
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMat> a(A.data(), T, d), b(B.data(), T, d);
  return (a * b.transpose()) / static_cast<double>(d);
}

double mean_square(const Vec& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return s / static_cast<double>(v.size());
}

}  // namespace

// ----------------------------------------------------------------------------
// activations phi and phi' (MODEL.md §1; gelu in its exact erf form): the reference's own, not
// core/hd_math.hpp's, on purpose (the independent oracle the other backends are tested against)

double activation_value(Activation a, double x) {
  switch (a) {
    case Activation::Relu: return x > 0 ? x : 0.0;
    case Activation::Gelu: return 0.5 * x * std::erfc(-x / std::numbers::sqrt2);
    case Activation::Tanh: return std::tanh(x);
    case Activation::Erf: return std::erf(x);
    case Activation::Silu: return x / (1.0 + std::exp(-x));
    case Activation::GeluTanh: {
      const double k0 = std::sqrt(2.0 / std::numbers::pi);
      return 0.5 * x * (1.0 + std::tanh(k0 * (x + 0.044715 * x * x * x)));
    }
    case Activation::Linear: return x;
  }
  throw Error("internal: unknown activation");
}

double activation_derivative(Activation a, double x) {
  switch (a) {
    case Activation::Relu: return x > 0 ? 1.0 : 0.0;
    case Activation::Gelu:
      return 0.5 * std::erfc(-x / std::numbers::sqrt2) + x * std::exp(-0.5 * x * x) * (0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
    case Activation::Tanh: {
      double t = std::tanh(x);
      return 1.0 - t * t;
    }
    case Activation::Erf: return 2.0 * std::numbers::inv_sqrtpi * std::exp(-x * x);
    case Activation::GeluTanh: {
      const double k0 = std::sqrt(2.0 / std::numbers::pi);
      const double t = std::tanh(k0 * (x + 0.044715 * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k0 * (1.0 + 3 * 0.044715 * x * x);
    }
    case Activation::Silu: {
      double s = 1.0 / (1.0 + std::exp(-x));
      return s * (1.0 + x * (1.0 - s));
    }
    case Activation::Linear: return 1.0;
  }
  throw Error("internal: unknown activation");
}


ReferenceStack::ReferenceStack(const StackSpec& spec, uint64_t seed, WeightSampling sampling, bool independent_backward,
                               InputKernel input_kernel)
    : spec_(spec), seed_(seed), sampling_(sampling), independent_backward_(independent_backward),
      input_kernel_(input_kernel) {
  validate_for_simulation(spec_);
  check_input_kernel(spec_, input_kernel_);
}

std::vector<double> ReferenceStack::input(int sample) const {
  const int T = spec_.tokens, d = spec_.width;
  Vec G(static_cast<size_t>(T) * d), g(d);
  fill_normal(G.data(), G.size(), seed_, sample, 0, StreamKind::InputG, 0, 1.0);
  fill_normal(g.data(), g.size(), seed_, sample, 0, StreamKind::InputG1, 0, 1.0);
  if (input_kernel_ == InputKernel::Exact) return exact_kernel_input(G, g, T, d, spec_.q0, spec_.rho0);
  const double a = std::sqrt(spec_.q0 * (1.0 - spec_.rho0)), b = std::sqrt(spec_.q0 * spec_.rho0);
  Vec X(G.size());
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i) X[static_cast<size_t>(t) * d + i] = a * G[static_cast<size_t>(t) * d + i] + b * g[i];
  return X;
}

std::vector<double> ReferenceStack::output_grad(int sample) const {
  Vec D(static_cast<size_t>(spec_.tokens) * spec_.width);
  fill_normal(D.data(), D.size(), seed_, sample, 0, StreamKind::OutputGrad, 0, 1.0);
  return D;
}

std::vector<double> ReferenceStack::block_forward(int sample, int layer, const std::vector<double>& X) const {
  const LayerWeights w = make_weights(spec_, seed_, sample, layer, sampling_, independent_backward_);
  HalfCache c;
  Vec Y = X;
  for (Branch br : halves_of(spec_)) {
    HalfBlock(spec_, w, br, layer).forward(Y, c);
    Y = std::move(c.Y);
  }
  return Y;
}

std::vector<double> ReferenceStack::block_backward(int sample, int layer, const std::vector<double>& X,
                                                   const std::vector<double>& dY) const {
  // Regenerate the weights and recompute this block's forward (its intermediates are not stored).
  const LayerWeights w = make_weights(spec_, seed_, sample, layer, sampling_, independent_backward_);
  const std::vector<Branch> halves = halves_of(spec_);
  std::vector<HalfCache> caches(halves.size());
  Vec Y = X;
  for (size_t i = 0; i < halves.size(); ++i) {
    HalfBlock(spec_, w, halves[i], layer).forward(Y, caches[i]);
    Y = caches[i].Y;
  }
  Vec g = dY;
  for (size_t i = halves.size(); i-- > 0;) g = HalfBlock(spec_, w, halves[i], layer).backward(caches[i], g);
  return g;
}

SampleMetrics ReferenceStack::run_sample(int sample) const {
  const int L = spec_.depth, T = spec_.tokens, d = spec_.width;
  SampleMetrics r;
  r.values.assign(L + 1, std::vector<double>(kNumCols, std::nan("")));

  // Forward: keep every X_l (T, d), l = 0..L, for the metrics and the backward pass.
  std::vector<Vec> X(L + 1);
  X[0] = input(sample);
  int last = L;
  for (int l = 1; l <= L; ++l) {
    X[l] = block_forward(sample, l, X[l - 1]);
    if (!all_finite(X[l])) {
      r.forward_nonfinite = l;
      last = l - 1;
      break;
    }
  }

  Eigen::MatrixXd Kprev;
  for (int l = 0; l <= last; ++l) {
    Eigen::MatrixXd K = cross_kernel(X[l], X[l], T, d);
    StateMetrics m = state_metrics_from_kernel(K);
    auto& v = r.values[l];
    v[kQ] = m.q;
    v[kRho] = m.rho;
    v[kRes] = stream_res(X[l].data(), T, d);  // from the stream: K's cancellation floors res at 1.5e-8
    v[kEffRank] = m.eff_rank;
    if (l > 0) {
      StepMetrics st = step_metrics_from_kernels(Kprev, K, cross_kernel(X[l - 1], X[l], T, d));
      v[kUpdate] = st.update_ratio;
      v[kAng] = st.ang_dist;
    }
    Kprev = std::move(K);
  }
  if (r.forward_nonfinite >= 0) return r;  // the backward pass needs every layer

  // Backward: Delta_L iid N(0, 1), Delta_{l-1} = J_l^T Delta_l.
  Vec D = output_grad(sample);
  r.values[L][kGrad] = mean_square(D);
  for (int l = L; l >= 1; --l) {
    D = block_backward(sample, l, X[l - 1], D);
    if (!all_finite(D)) {
      r.backward_nonfinite = l - 1;
      break;
    }
    r.values[l - 1][kGrad] = mean_square(D);
  }
  return r;
}

}  // namespace sigprop::sim
