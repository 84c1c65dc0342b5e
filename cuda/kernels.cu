// The CUDA backend's own kernels (see kernels.hpp). The maths per element is core/hd_math.hpp,
// shared with the host and unit-tested there; what is here is only the parallel layout: one
// thread per normal pair, one warp per row (norms, softmax, row dots), one block per sample
// (reductions), each reduction in a fixed order.
#include <cuda_runtime.h>

#include <string>

#include "core/error.hpp"
#include "core/hd_math.hpp"
#include "cuda/kernels.hpp"

namespace sigprop::cuda::k {
namespace {

constexpr int kWarp = 32;
constexpr int kRowWarps = 8;  // rows per 256-thread block in the row kernels
constexpr unsigned kFull = 0xffffffffu;

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw CudaError(std::string("CUDA kernel ") + what + " failed to launch: " + cudaGetErrorString(e));
}

__device__ inline float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ inline double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

unsigned row_blocks(long rows) { return static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps); }

// ---------------------------------------------------------------------------------------------
// random streams

__global__ void gen_normals_kernel(float* dst, std::size_t sample_stride, int rows, int cols, int ld,
                                   std::size_t head_stride, uint64_t seed, int sample0, int layer, int kind, double sd) {
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const std::size_t pair = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t e0 = 2 * pair;
  if (e0 >= n) return;
  const int b = blockIdx.y, h = blockIdx.z;
  const uint64_t stream = hd::stream_id(static_cast<uint64_t>(sample0 + b), static_cast<uint64_t>(layer),
                                        static_cast<uint64_t>(kind), static_cast<uint64_t>(h));
  double z0 = 0, z1 = 0;
  hd::normal_pair(seed, stream, pair, &z0, &z1);
  float* out = dst + sample_stride * b + head_stride * h;
  out[(e0 / cols) * ld + e0 % cols] = static_cast<float>(sd * z0);
  if (e0 + 1 < n) out[((e0 + 1) / cols) * ld + (e0 + 1) % cols] = static_cast<float>(sd * z1);
}

__global__ void input_kernel(float* X, int T, int d, uint64_t seed, int sample0, int kind_g, int kind_g1, double a,
                             double c) {
  const std::size_t n = static_cast<std::size_t>(T) * d;
  const std::size_t pair = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t e0 = 2 * pair;
  if (e0 >= n) return;
  const int b = blockIdx.y;
  const uint64_t sg = hd::stream_id(static_cast<uint64_t>(sample0 + b), 0, static_cast<uint64_t>(kind_g), 0);
  const uint64_t sg1 = hd::stream_id(static_cast<uint64_t>(sample0 + b), 0, static_cast<uint64_t>(kind_g1), 0);
  double z[2];
  hd::normal_pair(seed, sg, pair, &z[0], &z[1]);
  float* out = X + n * b;
  for (int k = 0; k < 2 && e0 + k < n; ++k) {
    const std::size_t e = e0 + k;
    out[e] = static_cast<float>(a * z[k] + c * hd::normal(seed, sg1, e % d));
  }
}

// ---------------------------------------------------------------------------------------------
// norms: one warp per row of d, two passes (mean, then squared deviations)

__global__ void norm_forward_kernel(const float* x, float* zn, float* z, float* rstd, long rows, int d, bool layernorm,
                                    double eps, float gain) {
  const long row = static_cast<long>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float mean = 0;
  if (layernorm) {
    float s = 0;
    for (int i = lane; i < d; i += kWarp) s += xr[i];
    mean = warp_sum(s) / static_cast<float>(d);
  }
  float ss = 0;
  for (int i = lane; i < d; i += kWarp) ss += (xr[i] - mean) * (xr[i] - mean);
  const float r = hd::norm_rstd(warp_sum(ss) / static_cast<float>(d), eps);
  for (int i = lane; i < d; i += kWarp) {
    const float y = (xr[i] - mean) * r;
    zn[row * d + i] = y;
    if (z) z[row * d + i] = gain * y;
  }
  if (lane == 0) rstd[row] = r;
}

__global__ void norm_backward_kernel(const float* dy, const float* y, const float* rstd, float* dx, long rows, int d,
                                     bool layernorm, float gain, const float* add, float add_scale) {
  const long row = static_cast<long>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* g = dy + row * d;
  const float* yr = y + row * d;
  float sdy = 0, sdyy = 0;
  for (int i = lane; i < d; i += kWarp) {
    const float gi = gain * g[i];
    sdy += gi;
    sdyy += gi * yr[i];
  }
  const float mean_dy = layernorm ? warp_sum(sdy) / static_cast<float>(d) : 0.0f;
  const float mean_dyy = warp_sum(sdyy) / static_cast<float>(d);
  const float r = rstd[row];
  for (int i = lane; i < d; i += kWarp) {
    float v = hd::norm_backward_elem(gain * g[i], yr[i], r, mean_dy, mean_dyy);
    if (add) v += add_scale * add[row * d + i];
    dx[row * d + i] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// masked softmax over rows of T logits, one warp per row

__global__ void softmax_forward_kernel(float* att, long rows, int T, bool causal) {
  const long row = static_cast<long>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  float* a = att + row * T;
  const int n = causal ? static_cast<int>(row % T) + 1 : T;
  float mx = -INFINITY;
  for (int s = lane; s < n; s += kWarp) mx = fmaxf(mx, a[s]);
  mx = warp_max(mx);
  float sum = 0;
  for (int s = lane; s < n; s += kWarp) {
    const float e = hd::m_exp(a[s] - mx);
    a[s] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  for (int s = lane; s < T; s += kWarp) a[s] = s < n ? a[s] / sum : 0.0f;
}

__global__ void softmax_backward_kernel(const float* att, float* dA, long rows, int T, float sc) {
  const long row = static_cast<long>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const float* a = att + row * T;
  float* g = dA + row * T;
  float dot = 0;
  for (int s = lane; s < T; s += kWarp) dot += a[s] * g[s];
  dot = warp_sum(dot);
  for (int s = lane; s < T; s += kWarp) g[s] = hd::softmax_backward_elem(a[s], g[s], dot, sc);
}

// ---------------------------------------------------------------------------------------------
// elementwise

__global__ void bias_act_kernel(const float* in, float* h_out, float* act, const float* bias, std::size_t bias_stride,
                                int n, int cols, int batch, hd::Act a) {
  const std::size_t total = static_cast<std::size_t>(batch) * n * cols;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float v = in[i];
    if (bias) v += bias[(i / (static_cast<std::size_t>(n) * cols)) * bias_stride + i % cols];
    if (h_out) h_out[i] = v;
    act[i] = hd::act_forward(a, v);
  }
}

__global__ void act_backward_mul_kernel(float* g, const float* x, std::size_t n, hd::Act a) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    g[i] *= hd::act_derivative(a, x[i]);
}

__global__ void act_backward_into_kernel(float* dz, const float* da, const float* x, std::size_t n, hd::Act a) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dz[i] = da[i] * hd::act_derivative(a, x[i]);
}

__global__ void residual_kernel(float* S, const float* X, const float* F, const float* bias, std::size_t bias_stride,
                                int n, int cols, int batch, float lam, float a) {
  const std::size_t total = static_cast<std::size_t>(batch) * n * cols;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float f = F[i];
    if (bias) f += bias[(i / (static_cast<std::size_t>(n) * cols)) * bias_stride + i % cols];
    S[i] = lam * X[i] + a * f;
  }
}

__global__ void add_scaled_kernel(float* out, const float* x, const float* y, float lam, std::size_t n) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = x[i] + lam * y[i];
}

__global__ void to_double_kernel(double* out, const float* in, std::size_t n) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = static_cast<double>(in[i]);
}

unsigned grid_for(std::size_t n) {
  const std::size_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

// ---------------------------------------------------------------------------------------------
// metrics

__global__ void row_dot_kernel(const float* a, const float* b, double* out, long rows, int d, double scale) {
  const long row = static_cast<long>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  double s = 0;
  for (int i = lane; i < d; i += kWarp) s += static_cast<double>(a[row * d + i]) * static_cast<double>(b[row * d + i]);
  s = warp_sum(s);
  if (lane == 0) out[row] = scale * s;
}

__global__ void sanitize_kernel(double* dst, const double* src, int T) {
  const std::size_t n = static_cast<std::size_t>(T) * T;
  const double* s = src + n * blockIdx.x;
  double* o = dst + n * blockIdx.x;
  int bad = 0;
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) bad |= !isfinite(s[i]);
  bad = __syncthreads_or(bad);
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = bad ? (i / T == i % T ? 1.0 : 0.0) : s[i];
}

__global__ void layer_metrics_kernel(const double* K, const double* Kprev, const double* eig, const double* cdiag,
                                     double* vals, int T, int batch, int layer, int ncols) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const std::size_t n = static_cast<std::size_t>(T) * T;
  double* v = vals + (static_cast<std::size_t>(layer) * batch + b) * ncols;
  const double* Kb = K + n * b;
  hd::state_metrics(Kb, eig + static_cast<std::size_t>(T) * b, T, v);
  if (!Kprev) return;
  hd::step_metrics(Kprev + n * b, T + 1, Kb, T + 1, cdiag + static_cast<std::size_t>(T) * b, 1, T, v + 4);
}

__global__ void mean_square_kernel(const float* x, std::size_t per_sample, double* vals, int batch, int layer,
                                   int ncols, int col) {
  __shared__ double part[256];
  const float* xb = x + per_sample * blockIdx.x;
  double s = 0;
  for (std::size_t i = threadIdx.x; i < per_sample; i += blockDim.x) s += static_cast<double>(xb[i]) * xb[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (static_cast<int>(threadIdx.x) < o) part[threadIdx.x] += part[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    vals[(static_cast<std::size_t>(layer) * batch + blockIdx.x) * ncols + col] =
        part[0] / static_cast<double>(per_sample);
}

}  // namespace

void gen_normals(float* dst, std::size_t sample_stride, int rows, int cols, int ld, int heads,
                 std::size_t head_stride, uint64_t seed, int sample0, int layer, int kind, double sd, int batch) {
  const std::size_t pairs = (static_cast<std::size_t>(rows) * cols + 1) / 2;
  const dim3 grid(static_cast<unsigned>((pairs + 255) / 256), static_cast<unsigned>(batch),
                  static_cast<unsigned>(heads));
  gen_normals_kernel<<<grid, 256>>>(dst, sample_stride, rows, cols, ld, head_stride, seed, sample0, layer, kind, sd);
  check_launch("gen_normals");
}

void input(float* X, int T, int d, uint64_t seed, int sample0, int kind_g, int kind_g1, double a, double c,
           int batch) {
  const std::size_t pairs = (static_cast<std::size_t>(T) * d + 1) / 2;
  const dim3 grid(static_cast<unsigned>((pairs + 255) / 256), static_cast<unsigned>(batch));
  input_kernel<<<grid, 256>>>(X, T, d, seed, sample0, kind_g, kind_g1, a, c);
  check_launch("input");
}

void norm_forward(const float* x, float* zn, float* z, float* rstd, long rows, int d, bool layernorm, double eps,
                  float gain) {
  norm_forward_kernel<<<row_blocks(rows), kRowWarps * kWarp>>>(x, zn, z, rstd, rows, d, layernorm, eps, gain);
  check_launch("norm_forward");
}

void norm_backward(const float* dy, const float* y, const float* rstd, float* dx, long rows, int d, bool layernorm,
                   float gain, const float* add, float add_scale) {
  norm_backward_kernel<<<row_blocks(rows), kRowWarps * kWarp>>>(dy, y, rstd, dx, rows, d, layernorm, gain, add,
                                                                add_scale);
  check_launch("norm_backward");
}

void softmax_forward(float* att, long rows, int T, bool causal) {
  softmax_forward_kernel<<<row_blocks(rows), kRowWarps * kWarp>>>(att, rows, T, causal);
  check_launch("softmax_forward");
}

void softmax_backward(const float* att, float* dA, long rows, int T, float sc) {
  softmax_backward_kernel<<<row_blocks(rows), kRowWarps * kWarp>>>(att, dA, rows, T, sc);
  check_launch("softmax_backward");
}

void bias_act_forward(const float* in, float* h_out, float* act, const float* bias, std::size_t bias_stride, int n,
                      int cols, int batch, int activation) {
  bias_act_kernel<<<grid_for(static_cast<std::size_t>(batch) * n * cols), 256>>>(
      in, h_out, act, bias, bias_stride, n, cols, batch, static_cast<hd::Act>(activation));
  check_launch("bias_act_forward");
}

void act_backward_mul(float* g, const float* x, std::size_t n, int activation) {
  act_backward_mul_kernel<<<grid_for(n), 256>>>(g, x, n, static_cast<hd::Act>(activation));
  check_launch("act_backward_mul");
}

void act_backward_into(float* dz, const float* da, const float* x, std::size_t n, int activation) {
  act_backward_into_kernel<<<grid_for(n), 256>>>(dz, da, x, n, static_cast<hd::Act>(activation));
  check_launch("act_backward_into");
}

void residual(float* S, const float* X, const float* F, const float* bias, std::size_t bias_stride, int n, int cols,
              int batch, float lam, float a) {
  residual_kernel<<<grid_for(static_cast<std::size_t>(batch) * n * cols), 256>>>(S, X, F, bias, bias_stride, n, cols,
                                                                                 batch, lam, a);
  check_launch("residual");
}

void add_scaled(float* out, const float* x, const float* y, float lam, std::size_t n) {
  add_scaled_kernel<<<grid_for(n), 256>>>(out, x, y, lam, n);
  check_launch("add_scaled");
}

void to_double(double* out, const float* in, std::size_t n) {
  to_double_kernel<<<grid_for(n), 256>>>(out, in, n);
  check_launch("to_double");
}

void row_dot(const float* a, const float* b, double* out, long rows, int d, double scale) {
  row_dot_kernel<<<row_blocks(rows), kRowWarps * kWarp>>>(a, b, out, rows, d, scale);
  check_launch("row_dot");
}

void sanitize_kernels(double* dst, const double* src, int T, int batch) {
  sanitize_kernel<<<static_cast<unsigned>(batch), 256>>>(dst, src, T);
  check_launch("sanitize_kernels");
}

void layer_metrics(const double* K, const double* Kprev, const double* eig, const double* cdiag, double* vals, int T,
                   int batch, int layer, int ncols) {
  layer_metrics_kernel<<<static_cast<unsigned>((batch + 63) / 64), 64>>>(K, Kprev, eig, cdiag, vals, T, batch, layer,
                                                                         ncols);
  check_launch("layer_metrics");
}

void mean_square(const float* x, std::size_t per_sample, int batch, double* vals, int layer, int ncols, int col) {
  mean_square_kernel<<<static_cast<unsigned>(batch), 256>>>(x, per_sample, vals, batch, layer, ncols, col);
  check_launch("mean_square");
}

}  // namespace sigprop::cuda::k
