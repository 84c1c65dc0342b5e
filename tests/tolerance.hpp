#pragma once
/// Named tolerances: |got - ref| <= abs + rel * |ref|. Each use states why.
#include <cmath>
#include <string>

#include <catch2/catch.hpp>

namespace sigprop::test {

struct Tol {
  double abs;
  double rel;
  [[nodiscard]] bool ok(double got, double ref) const { return std::abs(got - ref) <= abs + rel * std::abs(ref); }
};

/// Double-precision closed forms evaluated two ways: a few hundred ulps of headroom.
inline constexpr Tol kExact{1e-13, 1e-12};

#define SIGPROP_CHECK_CLOSE(got, ref, tol)                                                 \
  do {                                                                                     \
    const double sp_g_ = (got), sp_r_ = (ref);                                             \
    INFO(#got " = " << sp_g_ << ", " #ref " = " << sp_r_ << ", diff " << (sp_g_ - sp_r_)); \
    CHECK((tol).ok(sp_g_, sp_r_));                                                         \
  } while (0)

}  // namespace sigprop::test
