#include "theory/small_gemm.hpp"

#include <algorithm>
#include <cstddef>
#include <stdexcept>

namespace sigprop::theory::detail {
namespace {

constexpr int kW = kSimdLanes;
using Vec = SimdVec;

// Rows i0 .. i0 + R kW - 1 and columns j0 .. j0 + NC - 1 of C, over k in [k0, k1): per k one
// column segment of A (R vectors) times NC scalars of op(B).
template <int R, int NC>
inline void tile(double* C, const double* A, const double* B, bool trans_b, int n, bool accumulate, int i0, int j0,
                 int k0, int k1) {
  Vec c[R][NC];
  for (int q = 0; q < NC; ++q)
    for (int r = 0; r < R; ++r)
      c[r][q] = accumulate ? simd_load(C + static_cast<std::ptrdiff_t>(j0 + q) * n + i0 + r * kW) : Vec{};
  // op(B)(k, j): B[k + j n], or B[j + k n] for B^T.
  const std::ptrdiff_t bk = trans_b ? n : 1, bj = trans_b ? 1 : n;
  for (int k = k0; k < k1; ++k) {
    const double* a = A + static_cast<std::ptrdiff_t>(k) * n + i0;
    Vec av[R];
    for (int r = 0; r < R; ++r) av[r] = simd_load(a + r * kW);
    const double* b = B + k * bk + j0 * bj;
    for (int q = 0; q < NC; ++q) {
      const double s = b[q * bj];
      for (int r = 0; r < R; ++r) c[r][q] += av[r] * s;
    }
  }
  for (int q = 0; q < NC; ++q)
    for (int r = 0; r < R; ++r) simd_store(C + static_cast<std::ptrdiff_t>(j0 + q) * n + i0 + r * kW, c[r][q]);
}

template <int R>
void run(double* C, const double* A, Tri sa, const double* B, bool trans_b, Tri sb, int n, bool accumulate) {
  constexpr int rows = R * kW;
  for (int j0 = 0; j0 < n; j0 += 4) {
    const int nc = std::min(4, n - j0);
    for (int i0 = 0; i0 < n; i0 += rows) {
      int k0 = 0, k1 = n;
      if (sa == Tri::Lower) k1 = std::min(k1, i0 + rows);  // A(i, k) = 0 for k > i
      if (sa == Tri::Upper) k0 = std::max(k0, i0);         // A(i, k) = 0 for k < i
      if (sb == Tri::Lower) k0 = std::max(k0, j0);         // op(B)(k, j) = 0 for k < j
      if (sb == Tri::Upper) k1 = std::min(k1, j0 + nc);    // op(B)(k, j) = 0 for k > j
      if (k1 < k0) k1 = k0;
      switch (nc) {
        case 4: tile<R, 4>(C, A, B, trans_b, n, accumulate, i0, j0, k0, k1); break;
        case 3: tile<R, 3>(C, A, B, trans_b, n, accumulate, i0, j0, k0, k1); break;
        case 2: tile<R, 2>(C, A, B, trans_b, n, accumulate, i0, j0, k0, k1); break;
        default: tile<R, 1>(C, A, B, trans_b, n, accumulate, i0, j0, k0, k1); break;
      }
    }
  }
}

}  // namespace

int small_gemm_lanes() { return kW; }

int small_gemm_padded(int n) { return (n + kW - 1) / kW * kW; }

void small_gemm(double* C, const double* A, Tri sa, const double* B, bool trans_b, Tri sb, int n, bool accumulate) {
  if (n <= 0 || n % kW != 0) throw std::invalid_argument("small_gemm: n must be a positive multiple of the lane count");
  // Two vectors of rows per tile (more multiply-adds per load), except where A's triangle
  // would make the taller tiles do a quarter of their work on zeros.
  if (n % (2 * kW) == 0 && (sa == Tri::Full || n > 2 * kW))
    run<2>(C, A, sa, B, trans_b, sb, n, accumulate);
  else
    run<1>(C, A, sa, B, trans_b, sb, n, accumulate);
}

}  // namespace sigprop::theory::detail
