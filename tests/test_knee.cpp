// [knee] core/knee.hpp: the knee of a loss-vs-depth curve. Oracles: synthetic curves whose
// knee is known in closed form (a power law a + b L^-c on a doubling grid, where the gain of
// the doubling from L is b L^-c (1 - 2^-c), and a piecewise-linear curve with a kink), with
// Gaussian noise over paired seeds as a study has; and the input errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/knee.hpp"
#include "core/rng.hpp"
#include "core/stats.hpp"

using sigprop::find_knee;
using sigprop::KneeInput;
using sigprop::KneeResult;

namespace {

// A study's measured curve: seeds x depths values f(L) + sigma z, the mean per depth, and the
// paired standard error of each step's gain (se over seeds of the per-seed differences).
template <class F>
KneeInput noisy_curve(const std::vector<double>& depths, F f, double sigma, int seeds, uint64_t experiment) {
  const std::size_t n = depths.size();
  std::vector<std::vector<double>> v(static_cast<std::size_t>(seeds), std::vector<double>(n));
  for (int s = 0; s < seeds; ++s) {
    std::vector<double> z(n);
    sigprop::NormalStream(experiment, sigprop::stream_id(static_cast<uint64_t>(s), 17)).fill(z.data(), n);
    for (std::size_t i = 0; i < n; ++i) v[s][i] = f(depths[i]) + sigma * z[i];
  }
  KneeInput in;
  in.depth = depths;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> col;
    for (int s = 0; s < seeds; ++s) col.push_back(v[s][i]);
    in.value.push_back(sigprop::mean_se(col).mean);
  }
  for (std::size_t i = 0; i + 1 < n; ++i) {
    std::vector<double> d;
    for (int s = 0; s < seeds; ++s) d.push_back(v[s][i] - v[s][i + 1]);
    in.gain_se.push_back(sigprop::mean_se(d).se);
  }
  return in;
}

}  // namespace

TEST_CASE("find_knee: a + b L^-c on a doubling grid, noise free and noisy", "[knee][analytic]") {
  // Gain of the doubling from L over the first one: L^-c. With c = 0.8 that is 1, 0.57, 0.33,
  // 0.19, ... at L = 1, 2, 4, 8: the first below fraction 0.25 is the doubling from 8.
  const std::vector<double> depths{1, 2, 4, 8, 16, 32, 64};
  auto f = [](double L) { return 3.0 + 1.0 * std::pow(L, -0.8); };
  KneeInput clean;
  clean.depth = depths;
  for (double L : depths) clean.value.push_back(f(L));
  const KneeResult r = find_knee(clean);
  REQUIRE(r.found);
  CHECK(r.index == 3);
  CHECK(r.knee_depth == 8);
  REQUIRE(r.gain.size() == depths.size() - 1);
  CHECK(std::abs(r.gain[2] - std::pow(4.0, -0.8) * (1 - std::pow(2.0, -0.8))) < 1e-14);
  CHECK(r.gain_se == std::vector<double>(depths.size() - 1, 0.0));
  CHECK(r.rule.find("0.25") != std::string::npos);

  // A larger fraction moves the knee earlier: 0.5 cuts after L = 2 (0.57 > 0.5 > 0.33).
  clean.fraction = 0.5;
  CHECK(find_knee(clean).knee_depth == 4);
  clean.fraction = 0.6;
  CHECK(find_knee(clean).knee_depth == 2);

  // With noise (sigma 0.005 per value, 8 paired seeds: the gain se is about 0.0025, well
  // under the margins of about 0.03 on either side of the threshold): every one of 20
  // independent experiments finds the same knee.
  for (uint64_t e = 1; e <= 20; ++e) {
    INFO("experiment " << e);
    const KneeResult rn = find_knee(noisy_curve(depths, f, 0.005, 8, e));
    CHECK(rn.found);
    CHECK(rn.knee_depth == 8);
  }
}

TEST_CASE("find_knee: the paired standard error stops a curve drowned in noise earlier", "[knee][analytic]") {
  // Same law, noise 0.15 per value over 4 seeds: the gain se (about 0.1) makes 2 se (about 0.2)
  // larger than a quarter of the first gain (about 0.1), so the se, not the fraction, decides
  // many knees (7 of these 20; the rest a gain <= 0 or below the fraction), and most come before
  // the noise-free knee at 8 (the gain of the doubling from 4, 0.14, is already within 2 se of
  // zero; 17 of 20). The threshold is always the larger of the two.
  const std::vector<double> depths{1, 2, 4, 8, 16, 32, 64};
  auto f = [](double L) { return 3.0 + 1.0 * std::pow(L, -0.8); };
  int se_limited = 0, before = 0;
  for (uint64_t e = 1; e <= 20; ++e) {
    const KneeInput in = noisy_curve(depths, f, 0.15, 4, e);
    const KneeResult r = find_knee(in);
    REQUIRE(r.found);
    if (r.knee_depth < 8) ++before;
    for (std::size_t i = 0; i < r.gain.size(); ++i)
      CHECK(r.threshold[i] == std::max(2 * in.gain_se[i], 0.25 * std::max(r.gain[0], 0.0)));
    const std::size_t k = r.index;
    if (r.gain[k] > 0 && r.gain[k] >= 0.25 * r.gain[0]) ++se_limited;  // below 2 se only
  }
  INFO("se decided " << se_limited << ", before 8: " << before);
  CHECK(se_limited >= 5);
  CHECK(before >= 15);
}

TEST_CASE("find_knee: a piecewise-linear curve with a kink, per added layer", "[knee][analytic]") {
  // Loss falls by 1 per layer up to L = 8, then by 0.1 per layer: the step from 8 to 9 is the
  // first below 0.25 x the first step's gain.
  std::vector<double> depths;
  for (int L = 1; L <= 24; ++L) depths.push_back(L);
  auto f = [](double L) { return L <= 8 ? 20.0 - (L - 1) : 13.0 - 0.1 * (L - 8); };
  for (uint64_t e = 1; e <= 20; ++e) {
    INFO("experiment " << e);
    const KneeResult r = find_knee(noisy_curve(depths, f, 0.02, 4, e));
    CHECK(r.found);
    CHECK(r.knee_depth == 8);
  }
  // Higher is better: the same kink on a rising curve.
  KneeInput up;
  up.depth = depths;
  for (double L : depths) up.value.push_back(-f(L));
  up.lower_is_better = false;
  CHECK(find_knee(up).knee_depth == 8);
  // Without the kink there is no knee.
  KneeInput line;
  line.depth = depths;
  for (double L : depths) line.value.push_back(100 - L);
  const KneeResult none = find_knee(line);
  CHECK_FALSE(none.found);
  CHECK(std::isnan(none.knee_depth));
  CHECK(none.index == depths.size() - 1);
  // A first step that gains nothing is itself the knee; so is a curve that gets worse.
  KneeInput flat{{1, 2, 4}, {1, 1, 0.5}, {}, 0.25, true};
  CHECK(find_knee(flat).knee_depth == 1);
  KneeInput worse{{1, 2, 4}, {1, 0.5, 0.6}, {}, 0.25, true};
  CHECK(find_knee(worse).knee_depth == 2);
}

TEST_CASE("find_knee: per added layer on a doubling grid", "[knee][analytic]") {
  // sqrt(L) rises by more with every doubling (no knee), but the return of each layer a
  // doubling adds, (sqrt(2L) - sqrt(L)) / L, falls as L^-1/2 relative to the first doubling's:
  // 1, 0.71, 0.5, 0.35, 0.25, ... ; fraction 0.3 cuts the doubling from 16.
  KneeInput in;
  in.depth = {1, 2, 4, 8, 16, 32, 64};
  for (double L : in.depth) in.value.push_back(std::sqrt(L));
  in.lower_is_better = false;
  in.fraction = 0.3;
  CHECK_FALSE(find_knee(in).found);
  in.per_layer = true;
  in.gain_se = std::vector<double>(6, 0.0);
  in.gain_se[5] = 6.4;  // se per layer 0.2 for the last doubling
  const KneeResult r = find_knee(in);
  REQUIRE(r.found);
  CHECK(r.knee_depth == 16);
  CHECK(std::abs(r.gain[3] - (4 - std::sqrt(8.0)) / 8) < 1e-15);
  CHECK(r.gain_se[5] == 0.2);
  CHECK(r.rule.find("per added layer") != std::string::npos);
}

TEST_CASE("find_knee: bad input names the field", "[knee][config]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto msg = [](const KneeInput& in) {
    try {
      find_knee(in);
    } catch (const sigprop::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(msg({{1}, {1}, {}, 0.25, true}), Contains("at least 2 depths"));
  CHECK_THAT(msg({{1, 2, 4}, {1, 2}, {}, 0.25, true}), Contains("value has 2 entries for 3 depths"));
  CHECK_THAT(msg({{1, 2, 4}, {3, 2, 1}, {0.1}, 0.25, true}), Contains("gain_se has 1 entries"));
  CHECK_THAT(msg({{1, 4, 2}, {3, 2, 1}, {}, 0.25, true}), Contains("depth[2] = 2 is not greater than depth[1] = 4"));
  CHECK_THAT(msg({{1, 2, 2}, {3, 2, 1}, {}, 0.25, true}), Contains("increase strictly"));
  CHECK_THAT(msg({{0, 2, 4}, {3, 2, 1}, {}, 0.25, true}), Contains("depth[0] = 0"));
  CHECK_THAT(msg({{1, nan, 4}, {3, 2, 1}, {}, 0.25, true}), Contains("depth[1] = nan"));
  CHECK_THAT(msg({{1, 2, 4}, {3, nan, 1}, {}, 0.25, true}), Contains("value[1] = nan (at depth 2)"));
  CHECK_THAT(msg({{1, 2, 4}, {3, 2, 1}, {0.1, nan}, 0.25, true}), Contains("gain_se[1] = nan"));
  CHECK_THAT(msg({{1, 2, 4}, {3, 2, 1}, {0.1, -1}, 0.25, true}), Contains("gain_se[1] = -1"));
  CHECK_THAT(msg({{1, 2, 4}, {3, 2, 1}, {}, 0, true}), Contains("fraction = 0 is not in (0, 1)"));
  CHECK_THAT(msg({{1, 2, 4}, {3, 2, 1}, {}, 1, true}), Contains("fraction"));
  CHECK(msg({{1, 2, 4}, {3, 2, 1}, {}, 0.25, true}) == "no error");
}
