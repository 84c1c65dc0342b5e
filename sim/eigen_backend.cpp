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
#include "sim/block.hpp"
#include "sim/input.hpp"

namespace sigprop::sim {
namespace {

using std::size_t;

// ----------------------------------------------------------------------------
// random streams: the reference's numbers (fill in double, scale in double), rounded once to Real

// dst (rows, cols) block of a row-major matrix = sd * the stream's (rows, cols) matrix, row-major,
// computed in double and rounded once to Real. One row of double scratch at a time: no buffer
// outlives the call (a per-thread buffer of the largest matrix kept +128 MiB per thread after a
// width-2048 run).
template <class Real, class Dst>
void draw_into(Dst&& dst, uint64_t seed, int sample, int layer, StreamKind kind, int head, double sd) {
  const auto rows = dst.rows(), cols = dst.cols();
  const NormalStream stream(seed, stream_id(static_cast<uint64_t>(sample), static_cast<uint64_t>(layer),
                                            static_cast<uint64_t>(kind), static_cast<uint64_t>(head)));
  if (rows == 1 || cols == 1) {  // a bias vector: one fill (at most max(d, R) doubles)
    std::vector<double> v(static_cast<size_t>(rows * cols));
    stream.fill(v.data(), v.size());
    for (double& x : v) x *= sd;
    dst = Eigen::Map<const MatD>(v.data(), rows, cols).template cast<Real>();
    return;
  }
  std::vector<double> row(static_cast<size_t>(cols));
  for (Eigen::Index r = 0; r < rows; ++r) {
    stream.fill(row.data(), row.size(), static_cast<uint64_t>(r) * static_cast<uint64_t>(cols));
    for (double& v : row) v *= sd;
    dst.row(r) = Eigen::Map<const Eigen::Matrix<double, 1, Eigen::Dynamic>>(row.data(), cols).template cast<Real>();
  }
}

// (rows, cols) row-major matrix of the stream's normals 0..rows*cols-1, in double.
MatD draw_matrix(Eigen::Index rows, Eigen::Index cols, uint64_t seed, int sample, StreamKind kind) {
  MatD m(rows, cols);
  NormalStream(seed, stream_id(static_cast<uint64_t>(sample), 0, static_cast<uint64_t>(kind), 0))
      .fill(m.data(), static_cast<size_t>(m.size()));
  return m;
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
// one layer's weights, regenerated from the reference's streams whenever needed

}  // namespace

template <class Real>
LayerWeights<Real> draw_layer_weights(const StackSpec& s, uint64_t seed, int sample, int l) {
  const Dims D = dims_of(Arch{s, {}});
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

// X_0 (T, d) and Delta_L (T, d), computed in double as the reference does, then rounded.
MatD draw_input(const StackSpec& s, uint64_t seed, int sample, InputKernel kernel) {
  const int T = s.tokens, d = s.width;
  const double a = std::sqrt(s.q0 * (1.0 - s.rho0)), b = std::sqrt(s.q0 * s.rho0);
  MatD X = draw_matrix(T, d, seed, sample, StreamKind::InputG);
  const MatD g = draw_matrix(1, d, seed, sample, StreamKind::InputG1);
  if (kernel == InputKernel::Exact) {
    const std::vector<double> X0 = exact_kernel_input(std::vector<double>(X.data(), X.data() + X.size()),
                                                      std::vector<double>(g.data(), g.data() + g.size()), T, d,
                                                      s.q0, s.rho0);
    return Eigen::Map<const MatD>(X0.data(), T, d);
  }
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i) X(t, i) = a * X(t, i) + b * g(0, i);
  return X;
}

MatD draw_output_grad(const StackSpec& s, uint64_t seed, int sample) {
  const int T = s.tokens, d = s.width;
  return draw_matrix(T, d, seed, sample, StreamKind::OutputGrad);
}

template <class Real>
LayerWeights<Real> draw_layer_weights_conditional(const StackSpec& s, uint64_t seed, int sample, int l,
                                                  bool independent_backward) {
  const Dims D = dims_of(Arch{s, {}});
  const double beta = weight_beta(s);
  const double sd_w_d = beta * std::sqrt(s.sigma_w2 / D.d);  // fan_in d
  const double sd_b = std::sqrt(s.sigma_b2);
  LayerWeights<Real> w;
  w.cond = CondSource{seed, sample, l, std::sqrt(s.sigma_qk2 / D.d), sd_w_d, sd_w_d, sd_w_d,
                      beta * std::sqrt(s.sigma_w2 / D.R), sd_w_d, independent_backward};
  if (s.has_mlp()) {
    w.b1.resize(D.R);
    w.b2.resize(D.d);
    draw_into<Real>(w.b1, seed, sample, l, StreamKind::B1, 0, sd_b);
    draw_into<Real>(w.b2, seed, sample, l, StreamKind::B2, 0, sd_b);
  }
  if (s.blocks == Blocks::Dense) {
    w.bd.resize(D.d);
    draw_into<Real>(w.bd, seed, sample, l, StreamKind::Bd, 0, sd_b);
  }
  return w;
}

template LayerWeights<float> draw_layer_weights_conditional<float>(const StackSpec&, uint64_t, int, int, bool);
template LayerWeights<double> draw_layer_weights_conditional<double>(const StackSpec&, uint64_t, int, int, bool);
template LayerWeights<float> draw_layer_weights<float>(const StackSpec&, uint64_t, int, int);
template LayerWeights<double> draw_layer_weights<double>(const StackSpec&, uint64_t, int, int);

namespace {
// The same when nothing was kept: recompute this block's forward, then go back through it.
template <class Real>
Mat<Real> block_backward_impl(const Arch& a, const LayerWeights<Real>& w, int layer, const Mat<Real>& X,
                              const Mat<Real>& dY) {
  return block_backward_caches(a, w, layer, block_forward_caches(a, w, layer, X), dY);
}
}  // namespace

template <class Real>
EigenStack<Real>::EigenStack(const StackSpec& spec, uint64_t seed, std::size_t weight_cache_bytes,
                             WeightSampling sampling, bool independent_backward, InputKernel input_kernel)
    : weight_cache_bytes_(weight_cache_bytes), spec_(spec), seed_(seed), sampling_(sampling),
      independent_backward_(independent_backward), input_kernel_(input_kernel) {
  validate_for_simulation(spec_);
  check_input_kernel(spec_, input_kernel_);
}

template <class Real>
LayerWeights<Real> EigenStack<Real>::weights(int sample, int l) const {
  if (sampling_ == WeightSampling::Conditional)
    return draw_layer_weights_conditional<Real>(spec_, seed_, sample, l, independent_backward_);
  return draw_layer_weights<Real>(spec_, seed_, sample, l);
}

template <class Real>
std::string EigenStack<Real>::precision() const {
  return std::is_same_v<Real, float> ? "float" : "double";
}

template <class Real>
std::vector<double> EigenStack<Real>::input(int sample) const {
  return to_vec<Real>(draw_input(spec_, seed_, sample, input_kernel_).template cast<Real>());
}

template <class Real>
std::vector<double> EigenStack<Real>::output_grad(int sample) const {
  return to_vec<Real>(draw_output_grad(spec_, seed_, sample).template cast<Real>());
}

template <class Real>
std::vector<double> EigenStack<Real>::block_forward(int sample, int layer, const std::vector<double>& X) const {
  return to_vec<Real>(
      block_forward_caches<Real>(Arch{spec_, {}}, weights(sample, layer), layer,
                                 to_mat<Real>(X, spec_.tokens, spec_.width))
          .back()
          .Y);
}

template <class Real>
std::vector<double> EigenStack<Real>::block_backward(int sample, int layer, const std::vector<double>& X,
                                                     const std::vector<double>& dY) const {
  const int T = spec_.tokens, d = spec_.width;
  return to_vec<Real>(block_backward_impl<Real>(Arch{spec_, {}}, weights(sample, layer), layer,
                                                to_mat<Real>(X, T, d), to_mat<Real>(dY, T, d)));
}

template <class Real>
SampleMetrics EigenStack<Real>::run_sample(int sample) const {
  const int L = spec_.depth;
  const Arch arch{spec_, {}};
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
  X[0] = draw_input(spec_, seed_, sample, input_kernel_).template cast<Real>();
  int last = L;
  for (int l = 1; l <= L; ++l) {
    LayerWeights<Real> w = weights(sample, l);
    std::vector<HalfCache<Real>> caches = block_forward_caches<Real>(arch, w, l, X[l - 1]);
    X[l] = caches.back().Y;
    if constexpr (std::is_same_v<Real, float>) {
      bool unresolved = false;
      for (const auto& c : caches) unresolved = unresolved || c.logits_unresolved;
      Fallbacks* why = unresolved ? &logit_ : nullptr;
      if (!why) {
        const MatD Xd = X[l].template cast<double>();
        if (stream_res(Xd.data(), spec_.tokens, spec_.width) < kResDoubleBelow) why = &res_;  // false for NaN
      }
      if (why) {
        why->add(l);
        return EigenStack<double>(spec_, seed_, weight_cache_bytes_, sampling_, independent_backward_, input_kernel_)
            .run_sample(sample);
      }
    }
    const size_t bytes = w.bytes() + cache_bytes(caches);
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
  stream_metrics<Real>(X, last, r.values);
  if (r.forward_nonfinite >= 0) return r;  // the backward pass needs every layer

  // Backward: Delta_L iid N(0, 1), Delta_{l-1} = J_l^T Delta_l.
  auto mean_square = [](const Mat<Real>& D) { return D.template cast<double>().squaredNorm() / D.size(); };
  Mat<Real> D = draw_output_grad(spec_, seed_, sample).template cast<Real>();
  r.values[L][kGrad] = mean_square(D);
  for (int l = L; l >= 1; --l) {
    if (kept[l].has) {
      D = block_backward_caches<Real>(arch, kept[l].w, l, kept[l].caches, D);
      kept[l] = Kept{};  // release as we go
    } else {
      D = block_backward_impl<Real>(arch, weights(sample, l), l, X[l - 1], D);
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
