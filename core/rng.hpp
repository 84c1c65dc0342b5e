#pragma once
/// @file Counter-based Gaussian streams (Random123 Philox4x32-10 + Box-Muller).
/// Normal number i of stream (seed, stream) depends only on (seed, stream, i):
/// any thread, any order, host or device draws the same value. Engines key
/// streams by (sample, layer, matrix) so weights can be regenerated instead of stored.
#include <cstddef>
#include <cstdint>

#include <Random123/philox.h>
#include <Random123/boxmuller.hpp>

namespace sigprop {

namespace detail {
void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, double* out, std::size_t n);
void fill_normals(uint64_t seed, uint64_t stream, uint64_t offset, float* out, std::size_t n);

/// Implementations of philox_blocks: Random123's scalar philox4x32_R, or the same rounds on
/// 4 (AVX2) or 8 (AVX-512F) consecutive blocks per vector. best: the widest one this build
/// and CPU can run (a kernel the CPU lacks also falls back to the best one below it).
enum class PhiloxKernel { scalar, avx2, avx512, best };

/// u0[i] = r[1] << 32 | r[0], u1[i] = r[3] << 32 | r[2] for r = Philox4x32-10 of block
/// block0 + i (i < n) of stream (seed, stream), keyed as in NormalStream::fill. Every kernel
/// gives the same words (integer arithmetic only); the choice changes only the speed.
void philox_blocks(uint64_t seed, uint64_t stream, uint64_t block0, std::size_t n, uint64_t* u0, uint64_t* u1,
                   PhiloxKernel kernel = PhiloxKernel::best);
}  // namespace detail

class NormalStream {
 public:
  /// @param seed  user seed (64 bit, becomes the Philox key)
  /// @param stream stream id (64 bit, high half of the Philox counter)
  NormalStream(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}

  /// Writes normals number offset .. offset+n-1 of this stream, each N(0, 1): normal i
  /// is element i % 2 of r123::boxmuller(u0, u1) of Philox4x32-10 block i / 2, with
  /// key = (seed lo, seed hi), counter = (block lo, block hi, stream lo, stream hi),
  /// u0 = r[1] << 32 | r[0], u1 = r[3] << 32 | r[2]. Computed in double, then rounded to
  /// Real. Batched and vectorised (core/rng.cpp); reference_normal() is the scalar form.
  void fill(double* out, std::size_t n, uint64_t offset = 0) const {
    detail::fill_normals(seed_, stream_, offset, out, n);
  }
  void fill(float* out, std::size_t n, uint64_t offset = 0) const {
    detail::fill_normals(seed_, stream_, offset, out, n);
  }

  /// Normal number i of this stream by the scalar definition (Random123 directly): the
  /// oracle of the batched fill() in tests.
  [[nodiscard]] double reference_normal(uint64_t i) const {
    using G = r123::Philox4x32;
    G gen;
    const uint64_t block = i / 2;
    G::key_type key = {{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)}};
    G::ctr_type ctr = {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                        static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)}};
    G::ctr_type r = gen(ctr, key);
    const uint64_t u0 = (static_cast<uint64_t>(r[1]) << 32) | r[0];
    const uint64_t u1 = (static_cast<uint64_t>(r[3]) << 32) | r[2];
    const r123::double2 z = r123::boxmuller(u0, u1);
    return i % 2 == 0 ? z.x : z.y;
  }

 private:
  uint64_t seed_;
  uint64_t stream_;
};

/// Packs up to four small ids into one 64-bit stream id (16 bits each), so that
/// (sample, layer, matrix, purpose) never collide within those ranges.
constexpr uint64_t stream_id(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  return (a & 0xffff) | ((b & 0xffff) << 16) | ((c & 0xffff) << 32) | ((d & 0xffff) << 48);
}

}  // namespace sigprop
