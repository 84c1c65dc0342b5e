// Batched Philox4x32-10 + Box-Muller (see rng.hpp). The numbers are those of the scalar
// definition (Random123's philox4x32 and r123::boxmuller on the same counters); only the
// evaluation order changes: Philox blocks first, then log, sqrt, sin and cos over whole
// arrays, which GCC vectorises with glibc's libmvec (this file is compiled with
// -ffast-math -fopenmp-simd, see core/CMakeLists.txt). libmvec is accurate to a few ulp,
// so a normal may differ from the scalar formula in its last bits (tested to 1e-14).
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <Random123/philox.h>

#include "core/rng.hpp"

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

// u0[i], u1[i]: the two 64-bit words of Philox block b0 + i of stream (seed, stream).
SIGPROP_CLONES void philox_blocks(uint64_t seed, uint64_t stream, uint64_t b0, std::size_t n, uint64_t* u0,
                                  uint64_t* u1) {
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

// out[2i], out[2i+1] = r123::boxmuller(u0[i], u1[i]) for i < n: with a = pi * uneg11(u0)
// and r = sqrt(-2 log u01(u1)), (sin a * r, cos a * r). Every lane goes through the same
// vector code: the loops run over whole groups of kLanes aligned elements (u0, u1 hold
// round_up(n, kLanes) values), so a normal does not depend on how a fill was split.
// sin and cos are separate loops so that GCC does not fuse them into scalar sincos.
SIGPROP_CLONES void boxmuller_blocks(std::size_t n, const uint64_t* u0, const uint64_t* u1, double* out) {
  alignas(64) std::array<double, kChunk> a{}, r{}, s{}, c{};
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
  alignas(64) std::array<uint64_t, kChunk> u0{}, u1{};
  std::array<double, 2 * kChunk> z{};
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

void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, double* out, std::size_t n) {
  fill_impl(seed, stream, offset, out, n);
}
void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, float* out, std::size_t n) {
  fill_impl(seed, stream, offset, out, n);
}

}  // namespace sigprop::detail
