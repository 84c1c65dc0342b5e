// Batched Philox4x32-10 + Box-Muller (see rng.hpp). The numbers are those of the scalar
// definition (Random123's philox4x32 and r123::boxmuller on the same counters); only the
// evaluation order changes: Philox blocks first, several blocks per vector instruction
// (integer arithmetic, so the words are exactly Random123's), then log, sqrt, sin and cos
// over whole arrays, which GCC vectorises with glibc's libmvec (this file is compiled with
// -ffast-math -fopenmp-simd, see core/CMakeLists.txt). libmvec is accurate to a few ulp,
// so a normal may differ from the scalar formula in its last bits (tested to 1e-14).
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <Random123/philox.h>

#include "core/rng.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define SIGPROP_PHILOX_X86 1
#endif

// Not under ThreadSanitizer: an ifunc resolver runs while the dynamic linker relocates the
// program, before the TSan runtime is initialised, and GCC instruments it, so the program
// crashes before main (seen with GCC 12).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SIGPROP_NO_TARGET_CLONES) && \
    !defined(__SANITIZE_THREAD__)
#define SIGPROP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIGPROP_CLONES
#endif

namespace sigprop::detail {
namespace {

constexpr std::size_t kChunk = 256;  // Philox blocks (normal pairs) per pass
constexpr std::size_t kLanes = 16;   // vector group: a multiple of every SIMD width used

// The Philox kernels: see detail::philox_blocks in rng.hpp.
void philox_scalar(uint64_t seed, uint64_t stream, uint64_t b0, std::size_t n, uint64_t* u0, uint64_t* u1) {
  const r123::Philox4x32::key_type key = {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  const auto s0 = static_cast<uint32_t>(stream), s1 = static_cast<uint32_t>(stream >> 32);
  for (std::size_t i = 0; i < n; ++i) {
    const uint64_t b = b0 + i;
    const r123::Philox4x32::ctr_type ctr = {{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), s0, s1}};
    const auto r = philox4x32_R(10, ctr, key);
    u0[i] = (static_cast<uint64_t>(r[1]) << 32) | r[0];
    u1[i] = (static_cast<uint64_t>(r[3]) << 32) | r[2];
  }
}

#ifdef SIGPROP_PHILOX_X86
// The vector kernels hold one block per 64-bit lane, each 32-bit counter word in the low half
// of its lane: mul_epu32 multiplies the low halves into the full 64-bit product (Random123's
// mulhilo32: high word = product >> 32, low word = the product's low half), so a lane's high
// half may carry leftovers, which the next multiply ignores and the final mask or shift
// drops. One round: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1,
// lo(M0 c0)), then the key is bumped by (W0, W1). GCC's auto-vectoriser turns the 32x32->64
// products into vpmullq (3 uops) or a 3-multiply expansion, hence the intrinsics.
// kV independent vectors per pass hide the multiply latency; the tail is scalar.
constexpr std::size_t kPhiloxV = 2;

__attribute__((target("avx512f"))) void philox_avx512(uint64_t seed, uint64_t stream, uint64_t b0, std::size_t n,
                                                      uint64_t* u0, uint64_t* u1) {
  constexpr std::size_t kW = 8;
  const __m512i m0 = _mm512_set1_epi64(PHILOX_M4x32_0), m1 = _mm512_set1_epi64(PHILOX_M4x32_1);
  const __m512i low = _mm512_set1_epi64(0xffffffffLL);
  const __m512i s0 = _mm512_set1_epi64(static_cast<uint32_t>(stream)), s1 = _mm512_set1_epi64(stream >> 32);
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  std::size_t i = 0;
  for (; i + kW * kPhiloxV <= n; i += kW * kPhiloxV) {
    __m512i c0[kPhiloxV], c1[kPhiloxV], c2[kPhiloxV], c3[kPhiloxV];
    for (std::size_t v = 0; v < kPhiloxV; ++v) {
      const __m512i b = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(b0 + i + kW * v)), lane);
      c0[v] = b;
      c1[v] = _mm512_srli_epi64(b, 32);
      c2[v] = s0;
      c3[v] = s1;
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m512i k0v = _mm512_set1_epi64(k0), k1v = _mm512_set1_epi64(k1);
      for (std::size_t v = 0; v < kPhiloxV; ++v) {
        const __m512i p0 = _mm512_mul_epu32(c0[v], m0), p1 = _mm512_mul_epu32(c2[v], m1);
        c0[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[v], k0v, 0x96);  // a ^ b ^ c
        c2[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[v], k1v, 0x96);
        c1[v] = p1;
        c3[v] = p0;
      }
      k0 += PHILOX_W32_0;
      k1 += PHILOX_W32_1;
    }
    for (std::size_t v = 0; v < kPhiloxV; ++v) {  // 0xf8: a | (b & c)
      _mm512_storeu_si512(u0 + i + kW * v, _mm512_ternarylogic_epi64(_mm512_slli_epi64(c1[v], 32), c0[v], low, 0xf8));
      _mm512_storeu_si512(u1 + i + kW * v, _mm512_ternarylogic_epi64(_mm512_slli_epi64(c3[v], 32), c2[v], low, 0xf8));
    }
  }
  philox_scalar(seed, stream, b0 + i, n - i, u0 + i, u1 + i);
}

__attribute__((target("avx2"))) void philox_avx2(uint64_t seed, uint64_t stream, uint64_t b0, std::size_t n,
                                                 uint64_t* u0, uint64_t* u1) {
  constexpr std::size_t kW = 4;
  const __m256i m0 = _mm256_set1_epi64x(PHILOX_M4x32_0), m1 = _mm256_set1_epi64x(PHILOX_M4x32_1);
  const __m256i low = _mm256_set1_epi64x(0xffffffffLL);
  const __m256i s0 = _mm256_set1_epi64x(static_cast<uint32_t>(stream)), s1 = _mm256_set1_epi64x(stream >> 32);
  const __m256i lane = _mm256_set_epi64x(3, 2, 1, 0);
  std::size_t i = 0;
  for (; i + kW * kPhiloxV <= n; i += kW * kPhiloxV) {
    __m256i c0[kPhiloxV], c1[kPhiloxV], c2[kPhiloxV], c3[kPhiloxV];
    for (std::size_t v = 0; v < kPhiloxV; ++v) {
      const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(b0 + i + kW * v)), lane);
      c0[v] = b;
      c1[v] = _mm256_srli_epi64(b, 32);
      c2[v] = s0;
      c3[v] = s1;
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m256i k0v = _mm256_set1_epi64x(k0), k1v = _mm256_set1_epi64x(k1);
      for (std::size_t v = 0; v < kPhiloxV; ++v) {
        const __m256i p0 = _mm256_mul_epu32(c0[v], m0), p1 = _mm256_mul_epu32(c2[v], m1);
        c0[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[v]), k0v);
        c2[v] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[v]), k1v);
        c1[v] = p1;
        c3[v] = p0;
      }
      k0 += PHILOX_W32_0;
      k1 += PHILOX_W32_1;
    }
    for (std::size_t v = 0; v < kPhiloxV; ++v) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u0 + i + kW * v),
                          _mm256_or_si256(_mm256_slli_epi64(c1[v], 32), _mm256_and_si256(c0[v], low)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u1 + i + kW * v),
                          _mm256_or_si256(_mm256_slli_epi64(c3[v], 32), _mm256_and_si256(c2[v], low)));
    }
  }
  philox_scalar(seed, stream, b0 + i, n - i, u0 + i, u1 + i);
}
#endif

PhiloxKernel best_philox_kernel() {
#ifdef SIGPROP_PHILOX_X86
  static const PhiloxKernel best = __builtin_cpu_supports("avx512f") ? PhiloxKernel::avx512
                                   : __builtin_cpu_supports("avx2")  ? PhiloxKernel::avx2
                                                                     : PhiloxKernel::scalar;
  return best;
#else
  return PhiloxKernel::scalar;
#endif
}

// out[2i], out[2i+1] = r123::boxmuller(u0[i], u1[i]) for i < n: with a = pi * uneg11(u0)
// and r = sqrt(-2 log u01(u1)), (sin a * r, cos a * r). Every lane goes through the same
// vector code: the loops run over whole groups of kLanes aligned elements (u0, u1 hold
// round_up(n, kLanes) values), so a normal does not depend on how a fill was split.
// sin and cos are separate loops so that GCC does not fuse them into scalar sincos.
SIGPROP_CLONES void boxmuller_blocks(std::size_t n, const uint64_t* u0, const uint64_t* u1, double* out) {
  alignas(64) std::array<double, kChunk> a, r, s, c;  // written before read: no clearing
  const std::size_t m = (n + kLanes - 1) / kLanes * kLanes;
  for (std::size_t j = 0; j < m; j += kLanes) {
    // r123::uneg11<double>(u) = int64(u) 2^-63 + 2^-64;  r123::u01<double>(u) = u 2^-64 + 2^-65
#pragma omp simd
    for (std::size_t i = j; i < j + kLanes; ++i) {
      a[i] = (static_cast<double>(static_cast<int64_t>(u0[i])) * 0x1p-63 + 0x1p-64) * 3.1415926535897932;
      r[i] = static_cast<double>(u1[i]) * 0x1p-64 + 0x1p-65;
    }
#pragma omp simd
    for (std::size_t i = j; i < j + kLanes; ++i) r[i] = std::sqrt(-2.0 * std::log(r[i]));
#pragma omp simd
    for (std::size_t i = j; i < j + kLanes; ++i) s[i] = std::sin(a[i]);
#pragma omp simd
    for (std::size_t i = j; i < j + kLanes; ++i) c[i] = std::cos(a[i]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = s[i] * r[i];
    out[2 * i + 1] = c[i] * r[i];
  }
}

template <class Real>
void fill_impl(uint64_t seed, uint64_t stream, uint64_t offset, Real* out, std::size_t n) {
  alignas(64) std::array<uint64_t, kChunk> u0, u1;  // written before read: no clearing
  std::array<double, 2 * kChunk> z;
  std::size_t i = 0;
  uint64_t idx = offset;
  if (n > 0 && idx % 2 == 1) {  // second half of a pair
    philox_blocks(seed, stream, idx / 2, kLanes, u0.data(), u1.data());
    boxmuller_blocks(1, u0.data(), u1.data(), z.data());
    out[i++] = static_cast<Real>(z[1]);
    ++idx;
  }
  while (i < n) {
    const std::size_t pairs = std::min<std::size_t>(kChunk, (n - i + 1) / 2);
    philox_blocks(seed, stream, idx / 2, (pairs + kLanes - 1) / kLanes * kLanes, u0.data(), u1.data());
    boxmuller_blocks(pairs, u0.data(), u1.data(), z.data());
    const std::size_t take = std::min<std::size_t>(2 * pairs, n - i);
    for (std::size_t k = 0; k < take; ++k) out[i + k] = static_cast<Real>(z[k]);
    i += take;
    idx += take;
  }
}

}  // namespace

void philox_blocks(uint64_t seed, uint64_t stream, uint64_t block0, std::size_t n, uint64_t* u0, uint64_t* u1,
                   PhiloxKernel kernel) {
  const PhiloxKernel best = best_philox_kernel();
  if (kernel == PhiloxKernel::best || kernel > best) kernel = best;
  switch (kernel) {
#ifdef SIGPROP_PHILOX_X86
    case PhiloxKernel::avx512:
      philox_avx512(seed, stream, block0, n, u0, u1);
      return;
    case PhiloxKernel::avx2:
      philox_avx2(seed, stream, block0, n, u0, u1);
      return;
#endif
    default:
      philox_scalar(seed, stream, block0, n, u0, u1);
  }
}

void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, double* out, std::size_t n) {
  fill_impl(seed, stream, offset, out, n);
}
void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, float* out, std::size_t n) {
  fill_impl(seed, stream, offset, out, n);
}

}  // namespace sigprop::detail
