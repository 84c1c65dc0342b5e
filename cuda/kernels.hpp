#pragma once
/// @file Launchers of the CUDA backend's own kernels (cuda/kernels.cu). Plain C++ signatures
/// (no CUDA types) so the orchestration in cuda/cuda_backend.cpp is compiled by the host
/// compiler. Every pointer is device memory; every launch goes to the legacy default stream,
/// in order with the cuBLAS/cuSOLVER calls of the backend; a launch failure throws CudaError.
///
/// Layouts are row-major per sample, samples contiguous: a "(B, T, d)" tensor is B blocks of
/// T rows of d floats. Row kernels give one warp to each row and reduce in a fixed order, so
/// every result is independent of the launch configuration and bitwise reproducible.
#include <cstddef>
#include <cstdint>

// sigprop::cuda::k; the host emulation (cuda/kernels_emu.cpp) defines the same in cuda_emu::k.
#ifndef SIGPROP_CUDA_NS
#define SIGPROP_CUDA_NS cuda
#endif

namespace sigprop::SIGPROP_CUDA_NS::k {

/// dst[b] (+ h head_stride) row-major (rows, cols) with leading dimension ld = sd * normal
/// (i cols + j) of stream (seed, stream_id(sample0 + b, layer, kind, h)), drawn in double,
/// scaled in double and rounded once to float (as the CPU backends do), for b < batch, h < heads.
void gen_normals(float* dst, std::size_t sample_stride, int rows, int cols, int ld, int heads,
                 std::size_t head_stride, uint64_t seed, int sample0, int layer, int kind, double sd, int batch);

/// X (B, T, d) = float(a G + c 1 g^T), G from stream kind_g, g (d) from stream kind_g1 (layer 0).
void input(float* X, int T, int d, uint64_t seed, int sample0, int kind_g, int kind_g1, double a, double c,
           int batch);

/// Row by row (rows of d): zn = N(x), z = gain zn (z may be null), rstd = 1/sqrt(var + eps).
void norm_forward(const float* x, float* zn, float* z, float* rstd, long rows, int d, bool layernorm, double eps,
                  float gain);

/// Row by row: dx = J_N^T (gain dy) + add_scale add (add may be null), from the forward's y, rstd.
void norm_backward(const float* dy, const float* y, const float* rstd, float* dx, long rows, int d, bool layernorm,
                   float gain, const float* add, float add_scale);

/// In place on rows of T logits (row r is query t = r mod T): masked softmax (keys s <= t
/// when causal), zeros on masked entries.
void softmax_forward(float* att, long rows, int T, bool causal);

/// In place: dA <- sc A (dA - rowsum(A dA)), the gradient of the logits S = sc Q K^T.
void softmax_backward(const float* att, float* dA, long rows, int T, float sc);

/// v = in (B, n, cols) + bias (B, cols) (bias may be null; bias_stride between samples);
/// h_out = v (may be null, may equal in) and act = phi(v).
void bias_act_forward(const float* in, float* h_out, float* act, const float* bias, std::size_t bias_stride, int n,
                      int cols, int batch, int activation);

/// g *= phi'(x), elementwise over n entries.
void act_backward_mul(float* g, const float* x, std::size_t n, int activation);

/// dz = da * phi'(x), elementwise over n entries.
void act_backward_into(float* dz, const float* da, const float* x, std::size_t n, int activation);

/// S (B, n, cols) = lam X + a (F + bias (B, cols)), bias may be null.
void residual(float* S, const float* X, const float* F, const float* bias, std::size_t bias_stride, int n, int cols,
              int batch, float lam, float a);

/// out = x + lam y, elementwise over n entries.
void add_scaled(float* out, const float* x, const float* y, float lam, std::size_t n);

/// out (n) = double(in (n)).
void to_double(double* out, const float* in, std::size_t n);

/// out (rows) = scale * sum_i double(a_i) double(b_i) per row of d (the diagonal of A B^T scale).
void row_dot(const float* a, const float* b, double* out, long rows, int d, double scale);

/// dst (B, T, T) = src, except that a matrix with a non-finite entry becomes the identity (so
/// the batched eigensolver never sees NaN; its sample is reported non-finite anyway).
void sanitize_kernels(double* dst, const double* src, int T, int batch);

/// vals[(layer B + b) ncols + c]: q, rho, res, eff_rank (c = 0..3) from K (B, T, T) and its
/// eigenvalues eig (B, T); when Kprev is not null also update_ratio, ang_dist (c = 4, 5) from
/// the diagonals of Kprev, K and cdiag (B, T). One thread per sample (core/hd_math.hpp).
void layer_metrics(const double* K, const double* Kprev, const double* eig, const double* cdiag, double* vals, int T,
                   int batch, int layer, int ncols);

/// vals[(layer B + b) ncols + col] = sum of x_i^2 / per_sample over sample b's per_sample
/// entries, accumulated in double in a fixed order.
void mean_square(const float* x, std::size_t per_sample, int batch, double* vals, int layer, int ncols, int col);

}  // namespace sigprop::SIGPROP_CUDA_NS::k
