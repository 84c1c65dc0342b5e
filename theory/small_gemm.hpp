#pragma once
// Small dense products for the sampled attention integral (theory/attention.cpp): n x n,
// column-major, contiguous, n a multiple of small_gemm_lanes(). Each draw of the softmax
// integral costs a dozen such products at n = T (16 in the default spec), where Eigen's
// general products spend most of their time outside the multiply-adds; these keep an
// R x 4 tile of the result in vector registers and stream one column of A per step.
// Internal: not installed.

namespace sigprop::theory::detail {

/// Zero structure of a factor: Lower (entries above the diagonal are zero), Upper (below).
/// Products with structurally zero entries are skipped; the values are those of the full
/// product (the skipped terms are exact zeros).
enum class Tri { Full, Lower, Upper };

/// Doubles per SIMD vector in this build (8 with AVX-512, 4 with AVX, 2 otherwise).
#if defined(__AVX512F__)
inline constexpr int kSimdLanes = 8;
#elif defined(__AVX__)
inline constexpr int kSimdLanes = 4;
#else
inline constexpr int kSimdLanes = 2;
#endif
int small_gemm_lanes();

/// One SIMD vector of doubles in GCC's vector extension (Clang has it too): elementwise
/// arithmetic, a scalar operand is broadcast; SimdMask is the type of its comparisons. Loads and
/// stores go through memcpy (unaligned, no aliasing questions).
typedef double SimdVec __attribute__((vector_size(kSimdLanes * sizeof(double))));
typedef long long SimdMask __attribute__((vector_size(kSimdLanes * sizeof(double))));
inline SimdVec simd_load(const double* p) {
  SimdVec v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void simd_store(double* p, SimdVec v) { __builtin_memcpy(p, &v, sizeof v); }

/// n rounded up to a multiple of small_gemm_lanes().
int small_gemm_padded(int n);

/// C = A op(B) (accumulate: C += A op(B)), op(B) = B or B^T (trans_b); all n x n, column-major
/// with leading dimension n, n a positive multiple of small_gemm_lanes(); C must not alias A or B.
/// sa: the structure of A; sb: the structure of op(B).
void small_gemm(double* C, const double* A, Tri sa, const double* B, bool trans_b, Tri sb, int n, bool accumulate);

}  // namespace sigprop::theory::detail
