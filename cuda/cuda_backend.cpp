// The GPU backend (see cuda_backend.hpp): host-side orchestration, compiled by the host
// compiler against the CUDA runtime, cuBLAS and cuSOLVER C APIs; the kernels are in
// kernels.cu. T tokens, d width, H heads of dh = d/H, R = r d MLP width, B samples per batch.
// Every tensor is row-major per sample with the samples of a batch contiguous, so a GEMM over
// the batch is one cuBLAS strided-batched call (row-major C = A B is column-major C^T = B^T A^T).
#include "cuda/cuda_backend.hpp"

#ifdef SIGPROP_CUDA_EMULATE  // the host emulation for tests (cuda/emulate.hpp), in namespace cuda_emu
#include "cuda/emulate.hpp"
#define SIGPROP_CUDA_NS cuda_emu
#else
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>
#define SIGPROP_CUDA_NS cuda
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include "core/activation.hpp"
#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/hd_math.hpp"
#include "cuda/kernels.hpp"

namespace sigprop::SIGPROP_CUDA_NS {
namespace {

using std::size_t;
using sim::SampleMetrics;
using sim::StreamKind;

// The kernels take the activation as int(spec.activation): core/activation.hpp asserts that
// sigprop::Activation and hd::Act list the activations in one order.

constexpr int kCols = sim::kNumCols;
/// Device memory a batch may use (the batch size follows from it and the spec, so the same
/// run batches its samples the same way on any device with this much free memory).
constexpr double kBudgetBytes = 16.0 * (1ull << 30);
constexpr int kMaxBatch = 4096;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaError(fmt::format("CUDA: {} failed: {}", what, cudaGetErrorString(e)));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw CudaError(fmt::format("cuBLAS: {} failed: {}", what, cublasGetStatusString(s)));
}
void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) throw CudaError(fmt::format("cuSOLVER: {} failed with status {}", what, static_cast<int>(s)));
}

// A device array; move-only, freed on destruction.
template <class T>
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t n) : n_(n) {
    if (n > 0) check(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), "cudaMalloc");
  }
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { release(); }
  T* get() const { return p_; }
  [[nodiscard]] size_t size() const { return n_; }

 private:
  void release() {
    if (p_) cudaFree(p_);  // never throws; a failure here has no one to report to
    p_ = nullptr;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

struct Dims {
  int T, d, H, dh, R;
};

// Offsets of one sample's weights in its slice of the weight buffer (floats).
struct WeightLayout {
  size_t wqkv = 0, wo = 0, w1 = 0, b1 = 0, w2 = 0, b2 = 0, wd = 0, bd = 0, total = 0;
};

WeightLayout weight_layout(const StackSpec& s, const Dims& D) {
  WeightLayout w;
  size_t at = 0;
  auto take = [&](size_t n) {
    const size_t o = at;
    at += (n + 31) / 32 * 32;  // 128-byte aligned matrices
    return o;
  };
  const size_t d = D.d, R = D.R;
  if (s.has_attn()) {
    w.wqkv = take(d * 3 * d);  // (d, 3d) = [W_Q^0..W_Q^{H-1} | W_K^0.. | W_V^0..], as the Eigen backend packs it
    w.wo = take(d * d);
  }
  if (s.has_mlp()) {
    w.w1 = take(d * R);
    w.b1 = take(R);
    w.w2 = take(R * d);
    w.b2 = take(d);
  }
  if (s.blocks == Blocks::Dense) {
    w.wd = take(d * d);
    w.bd = take(d);
  }
  w.total = at;
  return w;
}

// What one half-block's backward needs from its forward, for a batch.
struct HalfBufs {
  DevBuf<float> zn, z, rstd_pre;  // (B, T, d), (B, T, d), (B, T) when pre-norm
  DevBuf<float> qkv, att, cat;    // (B, T, 3d), (B, H, T, T), (B, T, d) attention
  DevBuf<float> hid, act;         // (B, T, R) mlp; act (B, T, d) dense
  DevBuf<float> y, rstd_post;     // (B, T, d) output, (B, T)
  const float* zptr = nullptr;    // branch input pre(X) (z, or X itself)
  const float* yptr = nullptr;    // output of the last forward
};

size_t floats_per_sample_of_half(const StackSpec& s, Branch br, const Dims& D) {
  const size_t Td = static_cast<size_t>(D.T) * D.d;
  size_t n = 2 * Td + D.T + Td + D.T;  // zn, z, rstd_pre, y, rstd_post
  if (br == Branch::Attn) n += 3 * Td + static_cast<size_t>(D.H) * D.T * D.T + Td;
  if (br == Branch::Mlp) n += 2 * static_cast<size_t>(D.T) * D.R;
  if (br == Branch::Dense) n += Td;
  (void)s;
  return n;
}

// Everything a batch of up to `cap` samples needs on the device.
struct Workspace {
  int cap = 0, stored = 0;  // samples, stored streams X_l per sample
  DevBuf<float> xs;         // stored x cap x (T, d)
  DevBuf<float> w;          // cap x WeightLayout::total
  std::vector<HalfBufs> half;
  DevBuf<float> F, S, dS, dcat, dZ, dmid, g0, g1;  // (B, T, d)
  DevBuf<float> dqkv, dA, dh;                       // (B, T, 3d), (B, H, T, T), (B, T, R)
  DevBuf<double> xd, k0, k1, kw, eig, cdiag;        // (B, T, d), 3 x (B, T, T), (B, T), (B, T)
  DevBuf<int> info;                                 // (B)
  DevBuf<char> solver_work;
  std::vector<char> solver_host_work;
  DevBuf<double> vals;  // (L + 1, B, kCols)
};

size_t bytes_per_sample(const StackSpec& s, const Dims& D, const WeightLayout& W, int stored) {
  const size_t Td = static_cast<size_t>(D.T) * D.d, TT = static_cast<size_t>(D.T) * D.T;
  size_t f = static_cast<size_t>(stored) * Td + W.total;
  for (Branch br : halves_of(s)) f += floats_per_sample_of_half(s, br, D);
  f += 8 * Td + 3 * Td + static_cast<size_t>(D.H) * TT + static_cast<size_t>(D.T) * std::max(D.R, D.d);
  const size_t dbl = Td + 3 * TT + 2 * static_cast<size_t>(D.T) + static_cast<size_t>(s.depth + 1) * kCols;
  return 4 * f + 8 * dbl + 4 * static_cast<size_t>(D.T) * D.T * 8;  // + syev workspace, roughly
}

// ---------------------------------------------------------------------------------------------

class CudaStack final : public sim::StackBackend {
 public:
  CudaStack(const StackSpec& spec, uint64_t seed, std::string precision)
      : spec_(spec),
        seed_(seed),
        precision_(std::move(precision)),
        D_{spec.tokens, spec.width, spec.heads, spec.head_dim(), spec.mlp_width()},
        W_(weight_layout(spec, D_)),
        halves_(halves_of(spec)) {
    check(cudaSetDevice(0), "cudaSetDevice");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cusolverDnCreate(&solver_), "cusolverDnCreate");
    check(cusolverDnCreateParams(&solver_params_), "cusolverDnCreateParams");
    compute_ = precision_ == "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    const double budget = std::min(kBudgetBytes, 0.8 * static_cast<double>(free_b));
    const double per = static_cast<double>(bytes_per_sample(spec_, D_, W_, spec_.depth + 1));
    batch_ = static_cast<int>(std::clamp(std::floor(budget / per), 1.0, static_cast<double>(kMaxBatch)));
  }
  CudaStack(const CudaStack&) = delete;
  CudaStack& operator=(const CudaStack&) = delete;
  ~CudaStack() override {
    ws_ = {};
    ws1_ = {};
    if (solver_params_) cusolverDnDestroyParams(solver_params_);
    if (solver_) cusolverDnDestroy(solver_);
    if (blas_) cublasDestroy(blas_);
  }

  [[nodiscard]] const StackSpec& spec() const override { return spec_; }
  [[nodiscard]] std::string backend() const override { return "cuda"; }
  [[nodiscard]] std::string precision() const override { return precision_; }
  [[nodiscard]] int preferred_batch() const override { return batch_; }

  [[nodiscard]] std::vector<double> input(int sample) const override {
    std::lock_guard<std::mutex> lock(mu_);
    Workspace& ws = single();
    gen_input(ws, x(ws, 0), sample, 1);
    return download(x(ws, 0), static_cast<size_t>(D_.T) * D_.d);
  }

  [[nodiscard]] std::vector<double> output_grad(int sample) const override {
    std::lock_guard<std::mutex> lock(mu_);
    Workspace& ws = single();
    gen_output_grad(ws.g0.get(), sample, 1);
    return download(ws.g0.get(), static_cast<size_t>(D_.T) * D_.d);
  }

  [[nodiscard]] std::vector<double> block_forward(int sample, int layer, const std::vector<double>& X) const override {
    std::lock_guard<std::mutex> lock(mu_);
    check_layer(layer);
    Workspace& ws = single();
    upload(x(ws, 0), X);
    gen_weights(ws, sample, layer, 1);
    forward_block(ws, layer, x(ws, 0), x(ws, 1), 1);
    return download(x(ws, 1), static_cast<size_t>(D_.T) * D_.d);
  }

  [[nodiscard]] std::vector<double> block_backward(int sample, int layer, const std::vector<double>& X,
                                                   const std::vector<double>& dY) const override {
    std::lock_guard<std::mutex> lock(mu_);
    check_layer(layer);
    Workspace& ws = single();
    upload(x(ws, 0), X);
    upload(ws.g0.get(), dY);
    gen_weights(ws, sample, layer, 1);
    backward_block(ws, layer, x(ws, 0), ws.g0.get(), ws.g1.get(), 1);
    return download(ws.g1.get(), static_cast<size_t>(D_.T) * D_.d);
  }

  [[nodiscard]] SampleMetrics run_sample(int sample) const override {
    SampleMetrics m;
    run_samples(sample, 1, &m);
    return m;
  }

  void run_samples(int first, int count, SampleMetrics* out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (count <= 0) return;
    // Even batches: ceil(count / batch_) of them, sizes differing by at most one.
    const int nb = (count + batch_ - 1) / batch_;
    const int per = (count + nb - 1) / nb;
    Workspace& ws = batched(std::min(per, count));
    for (int s0 = 0; s0 < count; s0 += per) run_batch(ws, first + s0, std::min(per, count - s0), out + s0);
  }

 private:
  StackSpec spec_;
  uint64_t seed_;
  std::string precision_;
  Dims D_;
  WeightLayout W_;
  std::vector<Branch> halves_;
  int batch_ = 1;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  cusolverDnParams_t solver_params_ = nullptr;
  cublasComputeType_t compute_ = CUBLAS_COMPUTE_32F;
  mutable std::mutex mu_;
  mutable Workspace ws_;   // batched runs
  mutable Workspace ws1_;  // one sample, two stored streams: the block-by-block interface

  // ------------------------------------------------------------------------------ memory

  Workspace make_workspace(int cap, int stored) const {
    Workspace ws;
    ws.cap = cap;
    ws.stored = stored;
    const size_t B = cap, T = D_.T, d = D_.d, H = D_.H, R = D_.R;
    const size_t Td = T * d;
    ws.xs = DevBuf<float>(static_cast<size_t>(stored) * B * Td);
    ws.w = DevBuf<float>(B * W_.total);
    const bool pre = half_params(spec_, 1).pre, post = half_params(spec_, 1).post;
    for (Branch br : halves_) {
      HalfBufs h;
      if (pre) {
        h.zn = DevBuf<float>(B * Td);
        h.z = DevBuf<float>(B * Td);
        h.rstd_pre = DevBuf<float>(B * T);
      }
      if (br == Branch::Attn) {
        h.qkv = DevBuf<float>(B * 3 * Td);
        h.att = DevBuf<float>(B * H * T * T);
        h.cat = DevBuf<float>(B * Td);
      }
      if (br == Branch::Mlp) {
        h.hid = DevBuf<float>(B * T * R);
        h.act = DevBuf<float>(B * T * R);
      }
      if (br == Branch::Dense) h.act = DevBuf<float>(B * Td);
      h.y = DevBuf<float>(B * Td);
      if (post) h.rstd_post = DevBuf<float>(B * T);
      ws.half.push_back(std::move(h));
    }
    for (DevBuf<float>* b : {&ws.F, &ws.S, &ws.dS, &ws.dcat, &ws.dZ, &ws.dmid, &ws.g0, &ws.g1})
      *b = DevBuf<float>(B * Td);
    if (spec_.has_attn()) {
      ws.dqkv = DevBuf<float>(B * 3 * Td);
      ws.dA = DevBuf<float>(B * H * T * T);
    }
    if (spec_.has_mlp()) ws.dh = DevBuf<float>(B * T * R);
    if (stored > 2) {  // the metrics of a batched run
      ws.xd = DevBuf<double>(B * Td);
      ws.k0 = DevBuf<double>(B * T * T);
      ws.k1 = DevBuf<double>(B * T * T);
      ws.kw = DevBuf<double>(B * T * T);
      ws.eig = DevBuf<double>(B * T);
      ws.cdiag = DevBuf<double>(B * T);
      ws.info = DevBuf<int>(B);
      ws.vals = DevBuf<double>(static_cast<size_t>(spec_.depth + 1) * B * kCols);
    }
    return ws;
  }

  Workspace& single() const {
    if (ws1_.cap == 0) ws1_ = make_workspace(1, 2);
    return ws1_;
  }

  Workspace& batched(int need) const {
    if (ws_.cap < need) {
      ws_ = {};  // free first: the old and new workspaces need not fit together
      ws_ = make_workspace(need, spec_.depth + 1);
    }
    return ws_;
  }

  float* x(const Workspace& ws, int l) const {
    return ws.xs.get() + static_cast<size_t>(l) * ws.cap * D_.T * D_.d;
  }

  void check_layer(int layer) const {
    if (layer < 1 || layer > spec_.depth)
      throw Error(fmt::format("internal: cuda backend asked for block {} of a depth-{} stack", layer, spec_.depth));
  }

  void upload(float* dst, const std::vector<double>& v) const {
    const size_t n = static_cast<size_t>(D_.T) * D_.d;
    if (v.size() != n)
      throw Error(fmt::format("internal: tensor of {} entries where (T, d) = ({}, {})", v.size(), D_.T, D_.d));
    std::vector<float> f(v.begin(), v.end());
    check(cudaMemcpy(dst, f.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }

  std::vector<double> download(const float* src, size_t n) const {
    std::vector<float> f(n);
    check(cudaMemcpy(f.data(), src, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return {f.begin(), f.end()};
  }

  // ------------------------------------------------------------------------------ random streams

  void gen_input(Workspace& /*ws*/, float* X, int sample0, int B) const {
    const double a = std::sqrt(spec_.q0 * (1.0 - spec_.rho0)), c = std::sqrt(spec_.q0 * spec_.rho0);
    k::input(X, D_.T, D_.d, seed_, sample0, static_cast<int>(StreamKind::InputG), static_cast<int>(StreamKind::InputG1),
             a, c, B);
  }

  void gen_output_grad(float* G, int sample0, int B) const {
    const size_t Td = static_cast<size_t>(D_.T) * D_.d;
    k::gen_normals(G, Td, D_.T, D_.d, D_.d, 1, 0, seed_, sample0, 0, static_cast<int>(StreamKind::OutputGrad), 1.0, B);
  }

  // Layer l's weights of samples sample0 .. sample0 + B - 1 (the reference's make_weights).
  void gen_weights(Workspace& ws, int sample0, int l, int B) const {
    const StackSpec& s = spec_;
    const int d = D_.d, R = D_.R, dh = D_.dh, H = D_.H;
    const double beta = weight_beta(s);
    const double sd_w_d = beta * std::sqrt(s.sigma_w2 / d), sd_b = std::sqrt(s.sigma_b2);
    float* w = ws.w.get();
    const size_t st = W_.total;
    auto gen = [&](size_t off, int rows, int cols, int ld, int heads, size_t head_stride, StreamKind kind, double sd) {
      k::gen_normals(w + off, st, rows, cols, ld, heads, head_stride, seed_, sample0, l, static_cast<int>(kind), sd, B);
    };
    if (s.has_attn()) {
      const double sd_qk = std::sqrt(s.sigma_qk2 / d);
      gen(W_.wqkv, d, dh, 3 * d, H, dh, StreamKind::Wq, sd_qk);
      gen(W_.wqkv + d, d, dh, 3 * d, H, dh, StreamKind::Wk, sd_qk);
      gen(W_.wqkv + 2 * static_cast<size_t>(d), d, dh, 3 * d, H, dh, StreamKind::Wv, sd_w_d);
      gen(W_.wo, d, d, d, 1, 0, StreamKind::Wo, sd_w_d);
    }
    if (s.has_mlp()) {
      gen(W_.w1, d, R, R, 1, 0, StreamKind::W1, sd_w_d);
      gen(W_.w2, R, d, d, 1, 0, StreamKind::W2, beta * std::sqrt(s.sigma_w2 / R));
      gen(W_.b1, 1, R, R, 1, 0, StreamKind::B1, sd_b);
      gen(W_.b2, 1, d, d, 1, 0, StreamKind::B2, sd_b);
    }
    if (s.blocks == Blocks::Dense) {
      gen(W_.wd, d, d, d, 1, 0, StreamKind::Wd, sd_w_d);
      gen(W_.bd, 1, d, d, 1, 0, StreamKind::Bd, sd_b);
    }
  }

  // ------------------------------------------------------------------------------ products

  // Row-major C[b] (M, N) = alpha op(A[b]) (M, K) op(B[b]) (K, N) + beta C[b], b < batch; lda,
  // ldb, ldc are row strides and sA, sB, sC the strides between samples. cuBLAS is column-major,
  // where the row-major C is C^T = op(B)^T op(A)^T: same flags, operands and M, N swapped.
  void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, size_t sA, const float* Bm,
            int ldb, size_t sB, float beta, float* C, int ldc, size_t sC, int batch) const {
    check(cublasGemmStridedBatchedEx(blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                                     &alpha, Bm, CUDA_R_32F, ldb, static_cast<long long>(sB), A, CUDA_R_32F, lda,
                                     static_cast<long long>(sA), &beta, C, CUDA_R_32F, ldc,
                                     static_cast<long long>(sC), batch, compute_, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
  }

  [[nodiscard]] float qk_scale() const {
    return static_cast<float>(spec_.qk_scale == QkScale::InvSqrtDh ? 1.0 / std::sqrt(static_cast<double>(D_.dh))
                                                                   : 1.0 / D_.dh);
  }

  // ------------------------------------------------------------------------------ half-blocks

  // out (B, T, d) = post(lam X + a F(pre(X))); fills c for the backward pass.
  void half_forward(Workspace& ws, HalfBufs& c, Branch br, const HalfParams& p, const float* X, float* out,
                    int B) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh, R = D_.R;
    const long rows = static_cast<long>(B) * T;
    const size_t Td = static_cast<size_t>(T) * d, T3d = 3 * Td, TT = static_cast<size_t>(T) * T, HTT = H * TT;
    const size_t TR = static_cast<size_t>(T) * R, st = W_.total;
    const bool ln = spec_.norm_type == NormType::LayerNorm;
    const float* w = ws.w.get();
    const float* Z = X;
    if (p.pre) {
      k::norm_forward(X, c.zn.get(), c.z.get(), c.rstd_pre.get(), rows, d, ln, spec_.norm_eps,
                      static_cast<float>(p.pre_gain));
      Z = c.z.get();
    }
    c.zptr = Z;
    float* F = ws.F.get();
    const float* bias = nullptr;
    switch (br) {
      case Branch::Attn: {
        float* qkv = c.qkv.get();
        float* att = c.att.get();
        gemm(false, false, T, 3 * d, d, 1.0f, Z, d, Td, w + W_.wqkv, 3 * d, st, 0.0f, qkv, 3 * d, T3d, B);
        for (int h = 0; h < H; ++h)  // logits s Q_h K_h^T (T, T)
          gemm(false, true, T, T, dh, qk_scale(), qkv + h * dh, 3 * d, T3d, qkv + d + h * dh, 3 * d, T3d, 0.0f,
               att + h * TT, T, HTT, B);
        k::softmax_forward(att, rows * H, T, spec_.mask == Mask::Causal);
        for (int h = 0; h < H; ++h)  // head output A_h V_h (T, dh) into its columns of cat
          gemm(false, false, T, dh, T, 1.0f, att + h * TT, T, HTT, qkv + 2 * d + h * dh, 3 * d, T3d, 0.0f,
               c.cat.get() + h * dh, d, Td, B);
        gemm(false, false, T, d, d, 1.0f, c.cat.get(), d, Td, w + W_.wo, d, st, 0.0f, F, d, Td, B);
        break;
      }
      case Branch::Mlp:
        gemm(false, false, T, R, d, 1.0f, Z, d, Td, w + W_.w1, R, st, 0.0f, c.hid.get(), R, TR, B);
        k::bias_act_forward(c.hid.get(), c.hid.get(), c.act.get(), w + W_.b1, st, T, R, B,
                            static_cast<int>(spec_.activation));
        gemm(false, false, T, d, R, 1.0f, c.act.get(), R, TR, w + W_.w2, d, st, 0.0f, F, d, Td, B);
        bias = w + W_.b2;
        break;
      case Branch::Dense:
        k::bias_act_forward(Z, nullptr, c.act.get(), nullptr, 0, T, d, B, static_cast<int>(spec_.activation));
        gemm(false, false, T, d, d, 1.0f, c.act.get(), d, Td, w + W_.wd, d, st, 0.0f, F, d, Td, B);
        bias = w + W_.bd;
        break;
    }
    float* S = p.post ? ws.S.get() : out;
    k::residual(S, X, F, bias, st, T, d, B, static_cast<float>(p.lam), static_cast<float>(p.a));
    if (p.post) k::norm_forward(S, out, nullptr, c.rstd_post.get(), rows, d, ln, spec_.norm_eps, 1.0f);
    c.yptr = out;
  }

  // dX (B, T, d) = J^T dY for the half-block whose forward filled c; dX must not alias dY.
  void half_backward(Workspace& ws, HalfBufs& c, Branch br, const HalfParams& p, const float* dY, float* dX,
                     int B) const {
    const int T = D_.T, d = D_.d, H = D_.H, dh = D_.dh, R = D_.R;
    const long rows = static_cast<long>(B) * T;
    const size_t Td = static_cast<size_t>(T) * d, T3d = 3 * Td, TT = static_cast<size_t>(T) * T, HTT = H * TT;
    const size_t TR = static_cast<size_t>(T) * R, st = W_.total;
    const bool ln = spec_.norm_type == NormType::LayerNorm;
    const float* w = ws.w.get();
    const float a = static_cast<float>(p.a);
    const float* dS = dY;
    if (p.post) {
      k::norm_backward(dY, c.yptr, c.rstd_post.get(), ws.dS.get(), rows, d, ln, 1.0f, nullptr, 0.0f);
      dS = ws.dS.get();
    }
    float* dZ = ws.dZ.get();
    switch (br) {
      case Branch::Attn: {
        const float* qkv = c.qkv.get();
        const float* att = c.att.get();
        float* dcat = ws.dcat.get();
        float* dqkv = ws.dqkv.get();
        float* dA = ws.dA.get();
        gemm(false, true, T, d, d, a, dS, d, Td, w + W_.wo, d, st, 0.0f, dcat, d, Td, B);  // a dS W_O^T
        for (int h = 0; h < H; ++h) {
          // dA_h = go_h V_h^T (T, T);  dV_h = A_h^T go_h (T, dh)
          gemm(false, true, T, T, dh, 1.0f, dcat + h * dh, d, Td, qkv + 2 * d + h * dh, 3 * d, T3d, 0.0f, dA + h * TT,
               T, HTT, B);
          gemm(true, false, T, dh, T, 1.0f, att + h * TT, T, HTT, dcat + h * dh, d, Td, 0.0f, dqkv + 2 * d + h * dh,
               3 * d, T3d, B);
        }
        k::softmax_backward(att, dA, rows * H, T, qk_scale());  // dA <- s dS
        for (int h = 0; h < H; ++h) {
          // dQ_h = s dS_h K_h;  dK_h = s dS_h^T Q_h
          gemm(false, false, T, dh, T, 1.0f, dA + h * TT, T, HTT, qkv + d + h * dh, 3 * d, T3d, 0.0f, dqkv + h * dh,
               3 * d, T3d, B);
          gemm(true, false, T, dh, T, 1.0f, dA + h * TT, T, HTT, qkv + h * dh, 3 * d, T3d, 0.0f, dqkv + d + h * dh,
               3 * d, T3d, B);
        }
        gemm(false, true, T, d, 3 * d, 1.0f, dqkv, 3 * d, T3d, w + W_.wqkv, 3 * d, st, 0.0f, dZ, d, Td, B);
        break;
      }
      case Branch::Mlp:
        gemm(false, true, T, R, d, a, dS, d, Td, w + W_.w2, d, st, 0.0f, ws.dh.get(), R, TR, B);  // a dS W2^T
        k::act_backward_mul(ws.dh.get(), c.hid.get(), static_cast<size_t>(B) * TR, static_cast<int>(spec_.activation));
        gemm(false, true, T, d, R, 1.0f, ws.dh.get(), R, TR, w + W_.w1, R, st, 0.0f, dZ, d, Td, B);
        break;
      case Branch::Dense:
        gemm(false, true, T, d, d, a, dS, d, Td, w + W_.wd, d, st, 0.0f, ws.dcat.get(), d, Td, B);  // a dS W^T
        k::act_backward_into(dZ, ws.dcat.get(), c.zptr, static_cast<size_t>(B) * Td,
                             static_cast<int>(spec_.activation));
        break;
    }
    if (p.pre)  // dX = J_N^T (pre_gain dZ) + lam dS
      k::norm_backward(dZ, c.zn.get(), c.rstd_pre.get(), dX, rows, d, ln, static_cast<float>(p.pre_gain), dS,
                       static_cast<float>(p.lam));
    else
      k::add_scaled(dX, dZ, dS, static_cast<float>(p.lam), static_cast<size_t>(B) * Td);
  }

  void forward_block(Workspace& ws, int l, const float* X, float* out, int B) const {
    const HalfParams p = half_params(spec_, l);
    const float* in = X;
    for (size_t i = 0; i < halves_.size(); ++i) {
      float* o = i + 1 == halves_.size() ? out : ws.half[i].y.get();
      half_forward(ws, ws.half[i], halves_[i], p, in, o, B);
      in = o;
    }
  }

  // dX = J_l^T dY at X_{l-1} = X: recompute block l's forward (weights already generated), then back.
  void backward_block(Workspace& ws, int l, const float* X, const float* dY, float* dX, int B) const {
    const HalfParams p = half_params(spec_, l);
    const float* in = X;
    for (size_t i = 0; i < halves_.size(); ++i) {
      half_forward(ws, ws.half[i], halves_[i], p, in, ws.half[i].y.get(), B);
      in = ws.half[i].y.get();
    }
    const float* g = dY;
    for (size_t i = halves_.size(); i-- > 0;) {
      float* o = i == 0 ? dX : ws.dmid.get();
      half_backward(ws, ws.half[i], halves_[i], p, g, o, B);
      g = o;
    }
  }

  // ------------------------------------------------------------------------------ metrics

  // Columns q, rho, res, eff_rank (and update_ratio, ang_dist for l > 0) of layer l into ws.vals.
  void layer_metrics(Workspace& ws, int l, int B, double*& Kcur, double*& Kprev) const {
    const int T = D_.T, d = D_.d;
    const size_t Td = static_cast<size_t>(T) * d;
    k::to_double(ws.xd.get(), x(ws, l), static_cast<size_t>(B) * Td);
    const double alpha = 1.0 / d, beta = 0.0;
    // row-major K (T, T) = Xd Xd^T / d, i.e. column-major K^T = K
    check(cublasDgemmStridedBatched(blas_, CUBLAS_OP_T, CUBLAS_OP_N, T, T, d, &alpha, ws.xd.get(), d,
                                    static_cast<long long>(Td), ws.xd.get(), d, static_cast<long long>(Td), &beta,
                                    Kcur, T, static_cast<long long>(T) * T, B),
          "cublasDgemmStridedBatched");
    if (l > 0) k::row_dot(x(ws, l - 1), x(ws, l), ws.cdiag.get(), static_cast<long>(B) * T, d, 1.0 / d);
    k::sanitize_kernels(ws.kw.get(), Kcur, T, B);
    size_t dev_bytes = 0, host_bytes = 0;
    check(cusolverDnXsyevBatched_bufferSize(solver_, solver_params_, CUSOLVER_EIG_MODE_NOVECTOR,
                                            CUBLAS_FILL_MODE_LOWER, T, CUDA_R_64F, ws.kw.get(), T, CUDA_R_64F,
                                            ws.eig.get(), CUDA_R_64F, &dev_bytes, &host_bytes, B),
          "cusolverDnXsyevBatched_bufferSize");
    if (ws.solver_work.size() < dev_bytes) ws.solver_work = DevBuf<char>(dev_bytes);
    if (ws.solver_host_work.size() < host_bytes) ws.solver_host_work.resize(host_bytes);
    check(cusolverDnXsyevBatched(solver_, solver_params_, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, T,
                                 CUDA_R_64F, ws.kw.get(), T, CUDA_R_64F, ws.eig.get(), CUDA_R_64F,
                                 ws.solver_work.get(), dev_bytes,
                                 ws.solver_host_work.empty() ? nullptr : ws.solver_host_work.data(), host_bytes,
                                 ws.info.get(), B),
          "cusolverDnXsyevBatched");
    k::layer_metrics(Kcur, l > 0 ? Kprev : nullptr, ws.eig.get(), ws.cdiag.get(), ws.vals.get(), T, B, l, kCols);
    std::swap(Kcur, Kprev);
  }

  // Samples sample0 .. sample0 + B - 1: forward, backward, metrics; out[b] as the reference's run_sample.
  void run_batch(Workspace& ws, int sample0, int B, SampleMetrics* out) const {
    const int L = spec_.depth, T = D_.T, d = D_.d;
    const size_t Td = static_cast<size_t>(T) * d;
    double* Kcur = ws.k0.get();
    double* Kprev = ws.k1.get();
    gen_input(ws, x(ws, 0), sample0, B);
    layer_metrics(ws, 0, B, Kcur, Kprev);
    for (int l = 1; l <= L; ++l) {
      gen_weights(ws, sample0, l, B);
      forward_block(ws, l, x(ws, l - 1), x(ws, l), B);
      layer_metrics(ws, l, B, Kcur, Kprev);
    }
    // Backward: Delta_L iid N(0, 1), Delta_{l-1} = J_l^T Delta_l, weights regenerated.
    float* g = ws.g0.get();
    float* gn = ws.g1.get();
    gen_output_grad(g, sample0, B);
    k::mean_square(g, Td, B, ws.vals.get(), L, kCols, sim::kGrad);
    for (int l = L; l >= 1; --l) {
      gen_weights(ws, sample0, l, B);
      backward_block(ws, l, x(ws, l - 1), g, gn, B);
      k::mean_square(gn, Td, B, ws.vals.get(), l - 1, kCols, sim::kGrad);
      std::swap(g, gn);
    }
    std::vector<double> vals(static_cast<size_t>(L + 1) * B * kCols);
    check(cudaMemcpy(vals.data(), ws.vals.get(), vals.size() * sizeof(double), cudaMemcpyDeviceToHost),
          "cudaMemcpy of the metrics");
    assemble(vals, B, out);
  }

  // The reference's run_sample semantics from the per-layer table: a non-finite X_l (seen as a
  // non-finite q, which is tr K / T accumulated in double from floats, so it cannot overflow)
  // ends the sample's forward metrics at l - 1 and drops its backward; a non-finite Delta_l
  // ends grad_var at l + 1.
  void assemble(const std::vector<double>& vals, int B, SampleMetrics* out) const {
    const int L = spec_.depth;
    const double nan = std::nan("");
    for (int b = 0; b < B; ++b) {
      SampleMetrics& r = out[b];
      r.values.assign(L + 1, std::vector<double>(kCols, nan));
      r.forward_nonfinite = r.backward_nonfinite = -1;
      auto v = [&](int l, int c) { return vals[(static_cast<size_t>(l) * B + b) * kCols + c]; };
      int last = L;
      for (int l = 1; l <= L; ++l)
        if (!std::isfinite(v(l, sim::kQ))) {
          r.forward_nonfinite = l;
          last = l - 1;
          break;
        }
      for (int l = 0; l <= last; ++l)
        for (int c = 0; c < kCols; ++c) {
          if (c == sim::kGrad || (l == 0 && (c == sim::kUpdate || c == sim::kAng))) continue;
          r.values[l][c] = v(l, c);
        }
      if (r.forward_nonfinite >= 0) continue;
      r.values[L][sim::kGrad] = v(L, sim::kGrad);
      for (int l = L; l >= 1; --l) {
        if (!std::isfinite(v(l - 1, sim::kGrad))) {
          r.backward_nonfinite = l - 1;
          break;
        }
        r.values[l - 1][sim::kGrad] = v(l - 1, sim::kGrad);
      }
    }
  }
};

}  // namespace

DeviceInfo device_info() {
  DeviceInfo info;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    info.why = fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError();  // reset the runtime's last-error state
    return info;
  }
  if (n == 0) {
    info.why = "the CUDA runtime reports no device";
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.why = "cudaGetDeviceProperties failed";
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.memory_gib = static_cast<double>(prop.totalGlobalMem) / static_cast<double>(1ull << 30);
  return info;
}

const std::vector<std::string>& precisions() {
  static const std::vector<std::string> p{"float", "tf32"};
  return p;
}

int batch_size_for(const StackSpec& spec) {
  const Dims D{spec.tokens, spec.width, spec.heads, spec.head_dim(), spec.mlp_width()};
  const double per = static_cast<double>(bytes_per_sample(spec, D, weight_layout(spec, D), spec.depth + 1));
  return static_cast<int>(std::clamp(std::floor(kBudgetBytes / per), 1.0, static_cast<double>(kMaxBatch)));
}

std::unique_ptr<sim::StackBackend> make_backend(const StackSpec& spec, uint64_t seed, const std::string& precision) {
  const auto& ok = precisions();
  if (std::find(ok.begin(), ok.end(), precision) == ok.end())
    throw ConfigError(fmt::format("precision: the cuda backend offers float, tf32; got \"{}\"", precision));
  const DeviceInfo info = device_info();
  if (!info.available)
    throw CudaError(fmt::format("backend = cuda: no usable CUDA device: {}. Use backend = cpu on this machine.",
                                info.why));
  if (info.cc_major < 9)
    throw CudaError(fmt::format("backend = cuda: device {} has compute capability {}.{}; this build carries sm_90 "
                                "code and compute_90 PTX, which need 9.0 or newer",
                                info.name, info.cc_major, info.cc_minor));
  return std::make_unique<CudaStack>(spec, seed, precision);
}

}  // namespace sigprop::SIGPROP_CUDA_NS
