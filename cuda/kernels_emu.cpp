// Host versions of the kernels of cuda/kernels.cu, for the emulated backend (emulate.hpp): the
// semantics documented in kernels.hpp, written as plain loops over the same core/hd_math.hpp
// per-element maths (row reductions sequential in float, as each kernel's are in float).
#define SIGPROP_CUDA_NS cuda_emu
#include <cmath>
#include <cstddef>
#include <vector>

#include "core/hd_math.hpp"
#include "cuda/kernels.hpp"

namespace sigprop::cuda_emu::k {

using std::size_t;

void gen_normals(float* dst, size_t sample_stride, int rows, int cols, int ld, int heads, size_t head_stride,
                 uint64_t seed, int sample0, int layer, int kind, double sd, int batch) {
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h) {
      const uint64_t stream = hd::stream_id(static_cast<uint64_t>(sample0 + b), static_cast<uint64_t>(layer),
                                            static_cast<uint64_t>(kind), static_cast<uint64_t>(h));
      float* out = dst + sample_stride * b + head_stride * h;
      for (size_t e = 0; e < static_cast<size_t>(rows) * cols; ++e)
        out[(e / cols) * ld + e % cols] = static_cast<float>(sd * hd::normal(seed, stream, e));
    }
}

void input(float* X, int T, int d, uint64_t seed, int sample0, int kind_g, int kind_g1, double a, double c,
           int batch) {
  const size_t n = static_cast<size_t>(T) * d;
  for (int b = 0; b < batch; ++b) {
    const uint64_t sg = hd::stream_id(static_cast<uint64_t>(sample0 + b), 0, static_cast<uint64_t>(kind_g), 0);
    const uint64_t sg1 = hd::stream_id(static_cast<uint64_t>(sample0 + b), 0, static_cast<uint64_t>(kind_g1), 0);
    for (size_t e = 0; e < n; ++e)
      X[n * b + e] = static_cast<float>(a * hd::normal(seed, sg, e) + c * hd::normal(seed, sg1, e % d));
  }
}

void norm_forward(const float* x, float* zn, float* z, float* rstd, long rows, int d, bool layernorm, double eps,
                  float gain) {
  for (long r = 0; r < rows; ++r) {
    const float rs = hd::norm_row_forward(x + r * d, zn + r * d, d, layernorm, eps);
    if (z)
      for (int i = 0; i < d; ++i) z[r * d + i] = gain * zn[r * d + i];
    rstd[r] = rs;
  }
}

void norm_backward(const float* dy, const float* y, const float* rstd, float* dx, long rows, int d, bool layernorm,
                   float gain, const float* add, float add_scale) {
  std::vector<float> g(d);
  for (long r = 0; r < rows; ++r) {
    for (int i = 0; i < d; ++i) g[i] = gain * dy[r * d + i];
    hd::norm_row_backward(g.data(), y + r * d, rstd[r], dx + r * d, d, layernorm);
    if (add)
      for (int i = 0; i < d; ++i) dx[r * d + i] += add_scale * add[r * d + i];
  }
}

void softmax_forward(float* att, long rows, int T, bool causal) {
  std::vector<float> z(T);
  for (long r = 0; r < rows; ++r) {
    for (int s = 0; s < T; ++s) z[s] = att[r * T + s];
    hd::softmax_row_forward(z.data(), att + r * T, T, causal ? static_cast<int>(r % T) + 1 : T);
  }
}

void softmax_backward(const float* att, float* dA, long rows, int T, float sc) {
  std::vector<float> g(T);
  for (long r = 0; r < rows; ++r) {
    hd::softmax_row_backward(att + r * T, dA + r * T, g.data(), T, sc);
    for (int s = 0; s < T; ++s) dA[r * T + s] = g[s];
  }
}

void bias_act_forward(const float* in, float* h_out, float* act, const float* bias, size_t bias_stride, int n,
                      int cols, int batch, int activation) {
  const size_t total = static_cast<size_t>(batch) * n * cols;
  for (size_t i = 0; i < total; ++i) {
    float v = in[i];
    if (bias) v += bias[(i / (static_cast<size_t>(n) * cols)) * bias_stride + i % cols];
    if (h_out) h_out[i] = v;
    act[i] = hd::act_forward(static_cast<hd::Act>(activation), v);
  }
}

void act_backward_mul(float* g, const float* x, size_t n, int activation) {
  for (size_t i = 0; i < n; ++i) g[i] *= hd::act_derivative(static_cast<hd::Act>(activation), x[i]);
}

void act_backward_into(float* dz, const float* da, const float* x, size_t n, int activation) {
  for (size_t i = 0; i < n; ++i) dz[i] = da[i] * hd::act_derivative(static_cast<hd::Act>(activation), x[i]);
}

void residual(float* S, const float* X, const float* F, const float* bias, size_t bias_stride, int n, int cols,
              int batch, float lam, float a) {
  const size_t total = static_cast<size_t>(batch) * n * cols;
  for (size_t i = 0; i < total; ++i) {
    float f = F[i];
    if (bias) f += bias[(i / (static_cast<size_t>(n) * cols)) * bias_stride + i % cols];
    S[i] = lam * X[i] + a * f;
  }
}

void add_scaled(float* out, const float* x, const float* y, float lam, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = x[i] + lam * y[i];
}

void to_double(double* out, const float* in, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = in[i];
}

void row_dot(const float* a, const float* b, double* out, long rows, int d, double scale) {
  for (long r = 0; r < rows; ++r) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += static_cast<double>(a[r * d + i]) * b[r * d + i];
    out[r] = scale * s;
  }
}

void sanitize_kernels(double* dst, const double* src, int T, int batch) {
  const size_t n = static_cast<size_t>(T) * T;
  for (int b = 0; b < batch; ++b) {
    bool bad = false;
    for (size_t i = 0; i < n; ++i) bad = bad || !std::isfinite(src[n * b + i]);
    for (size_t i = 0; i < n; ++i) dst[n * b + i] = bad ? (i / T == i % T ? 1.0 : 0.0) : src[n * b + i];
  }
}

void layer_metrics(const double* K, const double* Kprev, const double* eig, const double* cdiag, double* vals, int T,
                   int batch, int layer, int ncols) {
  const size_t n = static_cast<size_t>(T) * T;
  for (int b = 0; b < batch; ++b) {
    double* v = vals + (static_cast<size_t>(layer) * batch + b) * ncols;
    hd::state_metrics(K + n * b, eig + static_cast<size_t>(T) * b, T, v);
    if (Kprev) hd::step_metrics(Kprev + n * b, T + 1, K + n * b, T + 1, cdiag + static_cast<size_t>(T) * b, 1, T, v + 4);
  }
}

void mean_square(const float* x, size_t per_sample, int batch, double* vals, int layer, int ncols, int col) {
  for (int b = 0; b < batch; ++b) {
    double s = 0;
    for (size_t i = 0; i < per_sample; ++i) s += static_cast<double>(x[per_sample * b + i]) * x[per_sample * b + i];
    vals[(static_cast<size_t>(layer) * batch + b) * ncols + col] = s / static_cast<double>(per_sample);
  }
}

}  // namespace sigprop::cuda_emu::k
