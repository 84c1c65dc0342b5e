// [stats] core/stats.hpp: the one mean ± standard error of every engine (Monte Carlo, theory
// error batches, shaped SDE, Jacobian spectrum, validate). Oracles: closed forms, and the plain
// textbook loop where it does not overflow (the power-of-two scaling must be bitwise invisible).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "core/rng.hpp"
#include "core/stats.hpp"
#include "tolerance.hpp"

using sigprop::mean_se;
using sigprop::MeanSe;

namespace {

// The textbook formula, unscaled.
MeanSe plain(const std::vector<double>& v) {
  const double n = static_cast<double>(v.size());
  double s = 0, ss = 0;
  for (double x : v) s += x;
  const double m = s / n;
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / (n - 1) / n)};
}

}  // namespace

TEST_CASE("mean_se: no value gives NaN, one value its mean and a NaN se", "[stats][analytic]") {
  const MeanSe r0 = mean_se(std::vector<double>{});
  CHECK(std::isnan(r0.mean));
  CHECK(std::isnan(r0.se));
  const MeanSe r1 = mean_se(std::vector<double>{2.5});
  CHECK(r1.mean == 2.5);
  CHECK(std::isnan(r1.se));
  const MeanSe rz = mean_se(std::vector<double>{0.0});
  CHECK(rz.mean == 0.0);
  CHECK(std::isnan(rz.se));
}

TEST_CASE("mean_se: closed forms", "[stats][analytic]") {
  // Two values a, b: mean (a + b)/2, se |a - b| / 2.
  const MeanSe r2 = mean_se(std::vector<double>{1.0, 3.0});
  CHECK(r2.mean == 2.0);
  CHECK(r2.se == 1.0);
  // 1..n: mean (n + 1)/2, sample variance n (n + 1)/12, se sqrt((n + 1)/12).
  for (int n : {3, 10, 1000}) {
    std::vector<double> v;
    for (int i = 1; i <= n; ++i) v.push_back(i);
    const MeanSe r = mean_se(v);
    INFO("n = " << n);
    SIGPROP_CHECK_CLOSE(r.mean, (n + 1) / 2.0, sigprop::test::kExact);
    SIGPROP_CHECK_CLOSE(r.se, std::sqrt((n + 1) / 12.0), sigprop::test::kExact);
  }
  // Equal values: se exactly 0, even where x^2 would overflow.
  const MeanSe rc = mean_se(std::vector<double>{1.5e308, 1.5e308});
  CHECK(rc.mean == 1.5e308);
  CHECK(rc.se == 0.0);
}

TEST_CASE("mean_se: bitwise the textbook formula wherever that does not overflow", "[stats]") {
  std::vector<double> z(64);
  sigprop::NormalStream(3, 1).fill(z.data(), z.size());
  for (double scale : {1.0, 1e-3, 7.3e5, 1e100, 1e-100}) {
    std::vector<double> v;
    for (double x : z) v.push_back(scale * (2.0 + x));
    const MeanSe a = mean_se(v), b = plain(v);
    INFO("scale = " << scale);
    CHECK(a.mean == b.mean);
    CHECK(a.se == b.se);
  }
}

TEST_CASE("mean_se: values near overflow and underflow keep a finite, correct mean and se", "[stats]") {
  // Plain: (3e300 - 2e300)^2 = inf and 3e300 + 1.7e308 = inf; here finite and exact in ratio.
  const MeanSe big = mean_se(std::vector<double>{1e300, 3e300});
  SIGPROP_CHECK_CLOSE(big.mean / 1e300, 2.0, sigprop::test::kExact);
  SIGPROP_CHECK_CLOSE(big.se / 1e300, 1.0, sigprop::test::kExact);
  const double m = std::numeric_limits<double>::max();
  const MeanSe top = mean_se(std::vector<double>{m, m / 2});
  CHECK(std::isfinite(top.mean));
  SIGPROP_CHECK_CLOSE(top.mean / m, 0.75, sigprop::test::kExact);
  SIGPROP_CHECK_CLOSE(top.se / m, 0.25, sigprop::test::kExact);
  // Plain: (1e-200)^2 underflows to 0, so its se would be 0.
  const MeanSe tiny = mean_se(std::vector<double>{1e-200, 3e-200});
  SIGPROP_CHECK_CLOSE(tiny.mean / 1e-200, 2.0, sigprop::test::kExact);
  SIGPROP_CHECK_CLOSE(tiny.se / 1e-200, 1.0, sigprop::test::kExact);
  CHECK(plain({1e-200, 3e-200}).se == 0.0);  // the failure the scaling prevents
}

TEST_CASE("mean_se: a non-finite value gives what the plain formula gives", "[stats]") {
  const double inf = std::numeric_limits<double>::infinity();
  const MeanSe ri = mean_se(std::vector<double>{1.0, inf});
  CHECK(ri.mean == inf);
  CHECK(std::isnan(ri.se));
  const MeanSe rn = mean_se(std::vector<double>{std::nan(""), 1e300, 2.0});
  CHECK(std::isnan(rn.mean));
  CHECK(std::isnan(rn.se));
}
