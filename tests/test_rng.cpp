// The batched, vectorised normal generator (core/rng.cpp) against the scalar definition
// (Random123's Philox4x32-10 and r123::boxmuller, NormalStream::reference_normal).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.hpp"

TEST_CASE("NormalStream::fill equals the scalar Philox + Box-Muller definition", "[analytic][rng]") {
  // libmvec's log/sin/cos are within a few ulp of glibc's scalar ones: 1e-14 absolute on
  // numbers of size <= 6 is ~50 ulp, and a wrong counter, key or word order gives O(1).
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0xdeadbeefcafef00dULL}}) {
    for (uint64_t stream : {uint64_t{0}, sigprop::stream_id(3, 7, 4, 1), ~uint64_t{0}}) {
      sigprop::NormalStream ns(seed, stream);
      for (uint64_t offset : {uint64_t{0}, uint64_t{1}, uint64_t{511}, uint64_t{1} << 33}) {
        for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{513}, std::size_t{1200}}) {
          std::vector<double> d(n);
          std::vector<float> f(n);
          ns.fill(d.data(), n, offset);
          ns.fill(f.data(), n, offset);
          for (std::size_t i = 0; i < n; ++i) {
            const double ref = ns.reference_normal(offset + i);
            INFO("seed " << seed << " stream " << stream << " offset " << offset << " n " << n << " i " << i);
            REQUIRE(std::abs(d[i] - ref) <= 1e-14);
            REQUIRE(f[i] == static_cast<float>(d[i]));
          }
        }
      }
    }
  }
}

TEST_CASE("philox_blocks: every kernel gives Random123's Philox4x32-10 words", "[analytic][rng]") {
  // Exact equality (integer arithmetic), for block counters whose low word wraps inside a
  // vector (2^32 - 5 ..), the last blocks of the 64-bit counter, odd starts, and lengths that
  // are not multiples of the lane counts (4, 8) or of a kernel pass (8, 16 blocks).
  using sigprop::detail::PhiloxKernel;
  for (PhiloxKernel kernel : {PhiloxKernel::scalar, PhiloxKernel::avx2, PhiloxKernel::avx512, PhiloxKernel::best}) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{0xffffffffULL}, uint64_t{0xdeadbeefcafef00dULL}, ~uint64_t{0}}) {
      for (uint64_t stream : {uint64_t{0}, sigprop::stream_id(3, 7, 4, 1), ~uint64_t{0}}) {
        for (uint64_t block0 : {uint64_t{0}, uint64_t{1}, uint64_t{7}, (uint64_t{1} << 32) - 5,
                                (uint64_t{3} << 32) - 13, ~uint64_t{0} - 20}) {
          for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{9}, std::size_t{16},
                                std::size_t{17}, std::size_t{31}, std::size_t{256}}) {
            std::vector<uint64_t> u0(n), u1(n);
            sigprop::detail::philox_blocks(seed, stream, block0, n, u0.data(), u1.data(), kernel);
            for (std::size_t i = 0; i < n; ++i) {
              const uint64_t b = block0 + i;
              const r123::Philox4x32::ctr_type ctr = {{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                                                       static_cast<uint32_t>(stream),
                                                       static_cast<uint32_t>(stream >> 32)}};
              const r123::Philox4x32::key_type key = {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
              const r123::Philox4x32::ctr_type r = r123::Philox4x32()(ctr, key);
              INFO("kernel " << static_cast<int>(kernel) << " seed " << seed << " stream " << stream << " block0 "
                             << block0 << " n " << n << " i " << i);
              REQUIRE(u0[i] == ((static_cast<uint64_t>(r[1]) << 32) | r[0]));
              REQUIRE(u1[i] == ((static_cast<uint64_t>(r[3]) << 32) | r[2]));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("NormalStream: a fill split at any point gives the same numbers", "[analytic][rng]") {
  sigprop::NormalStream ns(42, 9);
  std::vector<double> whole(1001), parts(1001);
  ns.fill(whole.data(), whole.size());
  for (std::size_t cut : {std::size_t{1}, std::size_t{2}, std::size_t{255}, std::size_t{512}, std::size_t{1000}}) {
    ns.fill(parts.data(), cut, 0);
    ns.fill(parts.data() + cut, parts.size() - cut, cut);
    REQUIRE(parts == whole);
  }
}

TEST_CASE("NormalStream: moments of 2^20 normals", "[stochastic][rng]") {
  // Mean, variance and fourth moment within 5 standard errors (false alarm ~1e-6 each).
  const std::size_t n = std::size_t{1} << 20;
  std::vector<double> z(n);
  sigprop::NormalStream(2024, 5).fill(z.data(), n);
  double m1 = 0, m2 = 0, m4 = 0;
  for (double x : z) {
    m1 += x;
    m2 += x * x;
    m4 += x * x * x * x;
  }
  m1 /= n;
  m2 /= n;
  m4 /= n;
  const double sn = std::sqrt(static_cast<double>(n));
  CHECK(std::abs(m1) < 5.0 / sn);
  CHECK(std::abs(m2 - 1.0) < 5.0 * std::sqrt(2.0) / sn);
  CHECK(std::abs(m4 - 3.0) < 5.0 * std::sqrt(96.0) / sn);
}
