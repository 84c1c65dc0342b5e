// [atlas] The validity atlas (reports/atlas.hpp, docs/atlas.md): the space-filling samplers
// (ranges, determinism, stratification), the width fit m + b/d against closed forms, the
// percentile summary, the [atlas] config and its named errors, and a [stochastic] tiny atlas
// whose theory agrees with the width-extrapolated Monte Carlo at a stated family-wise rate.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>

#include <unistd.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/profile.hpp"
#include "mc/engine.hpp"
#include "sigprop/api.hpp"
#include "theory/engine.hpp"
#include "reports/atlas.hpp"
#include "reports/config.hpp"
#include "reports/report.hpp"
#include "reports/sweep.hpp"
#include "tolerance.hpp"

namespace fs = std::filesystem;
using namespace sigprop;
using sigprop::test::kExact;

namespace {

std::string slurp_file(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every 1-D projection has exactly one point per interval [k/n, (k+1)/n).
void check_stratified(const std::vector<std::vector<double>>& pts, int dims) {
  const int n = static_cast<int>(pts.size());
  for (int j = 0; j < dims; ++j) {
    std::vector<int> count(n, 0);
    for (auto& p : pts) {
      REQUIRE(p[j] >= 0.0);
      REQUIRE(p[j] < 1.0);
      ++count[static_cast<int>(p[j] * n)];
    }
    INFO("dimension " << j);
    CHECK(std::all_of(count.begin(), count.end(), [](int c) { return c == 1; }));
  }
}

const char* kAtlasHead = R"(
[engines.theory]
[engines.simulate]
samples = 4
)";

}  // namespace

TEST_CASE("atlas: Sobol points are a stratified, deterministic, shifted net", "[atlas]") {
  const auto plain = reports::sobol_points(4, 2, 0);  // the textbook start of the sequence
  CHECK(plain[0] == std::vector<double>{0.0, 0.0});
  CHECK(plain[1] == std::vector<double>{0.5, 0.5});
  CHECK(plain[2] == std::vector<double>{0.75, 0.25});
  CHECK(plain[3] == std::vector<double>{0.25, 0.75});
  const int m = 8, n = 1 << m;
  const auto a = reports::sobol_points(n, reports::kSobolMaxDims, 42);
  CHECK(a == reports::sobol_points(n, reports::kSobolMaxDims, 42));
  CHECK(a != reports::sobol_points(n, reports::kSobolMaxDims, 43));
  check_stratified(a, reports::kSobolMaxDims);
  // Dimensions 1 and 2 form a (0, m, 2)-net: every box of 2^-k x 2^-(m-k) holds one point.
  for (int k = 0; k <= m; ++k) {
    std::set<std::pair<int, int>> boxes;
    for (auto& p : a) boxes.insert({static_cast<int>(p[0] * (1 << k)), static_cast<int>(p[1] * (1 << (m - k)))});
    INFO("k = " << k);
    CHECK(boxes.size() == static_cast<size_t>(n));
  }
  CHECK_THROWS_AS(reports::sobol_points(4, reports::kSobolMaxDims + 1, 1), Error);
}

TEST_CASE("atlas: Latin hypercube points are stratified and deterministic", "[atlas]") {
  const auto a = reports::lhs_points(300, 12, 5);
  CHECK(a == reports::lhs_points(300, 12, 5));
  CHECK(a != reports::lhs_points(300, 12, 6));
  check_stratified(a, 12);
}

TEST_CASE("atlas: the width fit m + b/d against closed forms", "[atlas]") {
  // Exact data: the fit returns m and b whatever the weights.
  auto f = reports::fit_width({64, 128, 256}, {2 + 3.0 / 64, 2 + 3.0 / 128, 2 + 3.0 / 256}, {0.1, 0.3, 0.2});
  REQUIRE(f.ok);
  SIGPROP_CHECK_CLOSE(f.m, 2.0, kExact);
  SIGPROP_CHECK_CLOSE(f.b, 3.0, kExact);
  // Two widths: m = (d2 y2 - d1 y1) / (d2 - d1), var m = (d2² s2² + d1² s1²) / (d2 - d1)².
  f = reports::fit_width({64, 128}, {1.5, 1.2}, {0.1, 0.2});
  REQUIRE(f.ok);
  SIGPROP_CHECK_CLOSE(f.m, (128 * 1.2 - 64 * 1.5) / 64.0, kExact);
  SIGPROP_CHECK_CLOSE(f.se_m, std::sqrt(4 * 0.04 + 0.01), kExact);
  // Three widths, equal weights: ordinary least squares in x = 1/d.
  const std::vector<double> d{100, 200, 400}, y{1.0, 0.7, 0.65};
  double xm = 0, ym = 0;
  for (int i = 0; i < 3; ++i) xm += 1 / d[i] / 3, ym += y[i] / 3;
  double sxx = 0, sxy = 0;
  for (int i = 0; i < 3; ++i) sxx += (1 / d[i] - xm) * (1 / d[i] - xm), sxy += (1 / d[i] - xm) * (y[i] - ym);
  f = reports::fit_width(d, y, {0.05, 0.05, 0.05});
  SIGPROP_CHECK_CLOSE(f.b, sxy / sxx, (test::Tol{1e-9, 1e-9}));
  SIGPROP_CHECK_CLOSE(f.m, ym - sxy / sxx * xm, (test::Tol{1e-12, 1e-10}));
  SIGPROP_CHECK_CLOSE(f.se_m, 0.05 * std::sqrt(1.0 / 3 + xm * xm / sxx), (test::Tol{1e-12, 1e-9}));
  // In the square (update_ratio, ang_dist): E[u]^2 = 0.01 + 4/d exactly gives m = 0.1, while the
  // linear fit of u itself misses it (u ~ sqrt(4/d) there).
  std::vector<double> u;
  for (double w : {64.0, 128.0, 256.0}) u.push_back(std::sqrt(0.01 + 4 / w));
  f = reports::fit_width_squared({64, 128, 256}, u, {1e-3, 1e-3, 1e-3});
  REQUIRE(f.ok);
  SIGPROP_CHECK_CLOSE(f.m, 0.1, (test::Tol{1e-12, 1e-10}));
  SIGPROP_CHECK_CLOSE(f.b, 4.0, (test::Tol{1e-12, 1e-10}));
  CHECK(std::abs(reports::fit_width({64, 128, 256}, u, {1e-3, 1e-3, 1e-3}).m - 0.1) > 0.01);
  // se by the delta method: two widths, se(u^2) = 2 u se(u), se(m) = se(m^2) / (2 m).
  f = reports::fit_width_squared({64, 128}, {0.5, 0.4}, {0.01, 0.01});
  const double m2 = 2 * 0.16 - 0.25, se_m2 = std::sqrt(4 * std::pow(2 * 0.4 * 0.01, 2) + std::pow(2 * 0.5 * 0.01, 2));
  SIGPROP_CHECK_CLOSE(f.m, std::sqrt(m2), kExact);
  SIGPROP_CHECK_CLOSE(f.se_m, se_m2 / (2 * std::sqrt(m2)), (test::Tol{1e-15, 1e-10}));
  CHECK_FALSE(reports::fit_width({64, 64}, {1, 2}, {0.1, 0.1}).ok);  // one distinct width
  CHECK_FALSE(reports::fit_width({64}, {1}, {0.1}).ok);
  CHECK_FALSE(reports::fit_width({64, 128}, {1, NAN}, {0.1, 0.1}).ok);
}

TEST_CASE("atlas: the width-curvature check of m + b/d against closed forms", "[atlas]") {
  // Exact data on m + b/d + c/d²: c returned whatever the weights; on m + b/d, c = 0 and z = 0.
  const std::vector<double> d4{64, 128, 256, 512};
  std::vector<double> yq, yl;
  for (double w : d4) yq.push_back(2 + 3 / w + 500 / (w * w)), yl.push_back(2 + 3 / w);
  auto c = reports::width_curvature(d4, yq, {0.1, 0.3, 0.2, 0.4});
  REQUIRE(c.ok);
  SIGPROP_CHECK_CLOSE(c.c, 500.0, (test::Tol{1e-9, 1e-9}));
  c = reports::width_curvature(d4, yl, {0.1, 0.3, 0.2, 0.4});
  REQUIRE(c.ok);
  CHECK(std::abs(c.c) < 1e-9 * 500);  // rounding of the fit, against the parabola's 500
  CHECK(std::abs(c.z) < 1e-9);
  // Three widths: c is the interpolating parabola's leading coefficient in x = 1/d (the second
  // divided difference, y_i weighted by k_i = 1 / prod_{j != i} (x_i - x_j)), se_c² = sum k_i² se_i²,
  // and z² is the weighted residual chi² of the linear fit.
  const std::vector<double> d{1024, 2048, 4096}, y{1.35, 1.69, 1.63}, se{0.065, 0.054, 0.082}, nu{31, 15, 7};
  double cc = 0, var = 0;
  std::vector<double> k(3);
  for (int i = 0; i < 3; ++i) {
    k[i] = 1;
    for (int j = 0; j < 3; ++j)
      if (j != i) k[i] /= (1 / d[i] - 1 / d[j]);
    cc += k[i] * y[i];
    var += k[i] * k[i] * se[i] * se[i];
  }
  c = reports::width_curvature(d, y, se);
  REQUIRE(c.ok);
  SIGPROP_CHECK_CLOSE(c.c, cc, (test::Tol{0, 1e-10}));
  SIGPROP_CHECK_CLOSE(c.se_c, std::sqrt(var), (test::Tol{0, 1e-10}));
  const auto f = reports::fit_width(d, y, se);
  double chi2 = 0;
  for (int i = 0; i < 3; ++i) chi2 += std::pow((y[i] - f.m - f.b / d[i]) / se[i], 2);
  SIGPROP_CHECK_CLOSE(c.z * c.z, chi2, (test::Tol{1e-12, 1e-9}));
  SIGPROP_CHECK_CLOSE(c.z, cc / std::sqrt(var), (test::Tol{1e-12, 1e-10}));  // no dof: the plain ratio
  // With degrees of freedom: Welch-Satterthwaite over the parts k_i² se_i², z the normal score.
  c = reports::width_curvature(d, y, se, nu);
  double num = 0, den = 0;
  for (int i = 0; i < 3; ++i) {
    const double v = k[i] * k[i] * se[i] * se[i];
    num += v;
    den += v * v / nu[i];
  }
  SIGPROP_CHECK_CLOSE(c.dof, num * num / den, (test::Tol{1e-12, 1e-9}));
  SIGPROP_CHECK_CLOSE(c.z, reports::t_as_z(cc / std::sqrt(var), num * num / den), (test::Tol{1e-12, 1e-9}));
  CHECK(std::abs(c.z) < std::abs(cc / std::sqrt(var)));
  // Fewer than three distinct widths, a non-finite value, or a dof list of the wrong length.
  CHECK_FALSE(reports::width_curvature({64, 128}, {1, 2}, {0.1, 0.1}).ok);
  CHECK_FALSE(reports::width_curvature({64, 64, 128}, {1, 1.1, 2}, {0.1, 0.1, 0.1}).ok);
  CHECK_FALSE(reports::width_curvature(d, {1, NAN, 2}, se).ok);
  CHECK_FALSE(reports::width_curvature(d, y, se, {31, 7}).ok);
  CHECK(std::isnan(reports::width_curvature({64, 128}, {1, 2}, {0.1, 0.1}).z));
}

TEST_CASE("atlas: Student-t scores and Welch-Satterthwaite degrees of freedom", "[atlas]") {
  using reports::t_as_z;
  using reports::welch_dof;
  using reports::z_as_t;
  const double inf = std::numeric_limits<double>::infinity();
  // Closed forms of Student's t: nu = 1 (Cauchy) P(T > t) = 1/2 - atan(t)/pi, nu = 2
  // P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)), F^-1(p) = (2p - 1) / sqrt(2 p (1 - p)); the normal
  // quantiles from Python's statistics.NormalDist (an independent implementation).
  SIGPROP_CHECK_CLOSE(t_as_z(1.0, 1), 0.6744897501960817, (test::Tol{1e-13, 1e-12}));
  SIGPROP_CHECK_CLOSE(t_as_z(-2.0, 2), -1.3300450792132883, (test::Tol{1e-13, 1e-12}));
  SIGPROP_CHECK_CLOSE(z_as_t(2.0, 2), 4.526536687430166, (test::Tol{1e-13, 1e-12}));
  SIGPROP_CHECK_CLOSE(z_as_t(3.0, 1), 235.80149796046456, (test::Tol{1e-10, 1e-10}));
  // Round trip, and the normal limit.
  for (double nu : {1.0, 3.0, 7.0, 31.0, 1e4})
    for (double z : {-6.0, -1.0, 0.5, 2.0, 5.27}) SIGPROP_CHECK_CLOSE(t_as_z(z_as_t(z, nu), nu), z, (test::Tol{1e-9, 1e-9}));
  CHECK(t_as_z(2.5, inf) == 2.5);
  CHECK(z_as_t(2.0, 1e12) == 2.0);
  CHECK(std::abs(t_as_z(3.0, 7)) < 3.0);
  CHECK(t_as_z(0.0, 7) == 0.0);
  CHECK(t_as_z(inf, 7) == inf);
  CHECK(std::isnan(t_as_z(NAN, 7)));
  CHECK(t_as_z(1e200, 3) == 1e200);  // a tail beyond double: returned as it is
  // Welch-Satterthwaite: (sum v)^2 / sum v^2 / nu.
  SIGPROP_CHECK_CLOSE(welch_dof({{1.0, 7}, {1.0, 7}}), 14.0, kExact);
  SIGPROP_CHECK_CLOSE(welch_dof({{1.0, inf}, {1.0, 4}}), 16.0, kExact);
  SIGPROP_CHECK_CLOSE(welch_dof({{0.0, 3}, {2e300, 9}}), 9.0, kExact);
  SIGPROP_CHECK_CLOSE(welch_dof({{1e-300, 3}, {3e-300, 9}}), 16.0 / (1.0 / 3 + 9.0 / 9), (test::Tol{0, 1e-14}));
  CHECK(welch_dof({{1.0, inf}, {0.0, 4}}) == inf);
  CHECK(welch_dof({}) == inf);
  CHECK(std::isnan(welch_dof({{-1.0, 3}})));
  // The width fit's dof: two widths, m = (d2 y2 - d1 y1) / (d2 - d1), var parts d_i^2 se_i^2 / (d2 - d1)^2.
  auto f = reports::fit_width({1024, 2048}, {1.0, 1.1}, {0.01, 0.02}, {31, 7});
  const double a = std::pow(1024 * 0.01, 2), b = std::pow(2048 * 0.02, 2);
  SIGPROP_CHECK_CLOSE(f.dof, (a + b) * (a + b) / (a * a / 31 + b * b / 7), (test::Tol{1e-12, 1e-12}));
  CHECK(reports::fit_width({1024, 2048}, {1.0, 1.1}, {0.01, 0.02}).dof == inf);  // no dof given
  CHECK(reports::fit_width_squared({1024, 2048}, {1.0, 1.1}, {0.01, 0.02}, {31, 7}).dof ==
        reports::fit_width({1024, 2048}, {1.0, 1.21}, {0.02, 0.044}, {31, 7}).dof);
  CHECK_FALSE(reports::fit_width({1024, 2048}, {1.0, 1.1}, {0.01, 0.02}, {31}).ok);  // one dof per width
}

namespace {
/// The mean of n normal samples of standard deviation sd and its estimated standard error (n - 1
/// degrees of freedom): a Monte Carlo mean of the atlas's kind, on pure noise.
std::pair<double, double> noise_mean(std::mt19937_64& rng, int n, double sd) {
  std::normal_distribution<double> nd;
  double s1 = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = sd * nd(rng);
    s1 += x;
    s2 += x * x;
  }
  const double mean = s1 / n;
  return {mean, std::sqrt((s2 - n * mean * mean) / (n - 1) / n)};
}
}  // namespace

TEST_CASE("atlas: Student-t scores from few samples keep the false-alarm rate", "[atlas][stochastic]") {
  // The atlas's statistic on pure noise: the truth is 0, the "Monte Carlo" two widths' means of
  // 32 and 8 normal samples (sd 1 and 3, the atlas's samples per width), extrapolated m + b/d
  // with estimated standard errors. |z| > 2 must happen at the normal rate 4.55%; the plain ratio
  // (theory - m) / se_m, a t with few degrees of freedom, exceeds 2 about twice as often.
  // 40,000 replications: s.d. of the rate 0.10%, checked within 4 s.d. (false alarm 6e-5; the
  // stream is fixed, so the test is deterministic).
  std::mt19937_64 rng(20261206);
  const int reps = 40000;
  int beyond_z = 0, beyond_ratio = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> y, se;
    for (auto [n, sd] : {std::pair{32, 1.0}, std::pair{8, 3.0}}) {
      const auto [mean, s] = noise_mean(rng, n, sd);
      y.push_back(mean);
      se.push_back(s);
    }
    const auto f = reports::fit_width({1024, 2048}, y, se, {31, 7});
    const double t = (0 - f.m) / f.se_m;
    beyond_z += std::abs(reports::t_as_z(t, f.dof)) > 2;
    beyond_ratio += std::abs(t) > 2;
  }
  const double p = 2 * 0.5 * std::erfc(2 / std::sqrt(2.0)), sd = std::sqrt(p * (1 - p) / reps);
  INFO("share beyond 2: " << double(beyond_z) / reps << " (plain ratio " << double(beyond_ratio) / reps << ")");
  CHECK(std::abs(double(beyond_z) / reps - p) < 4 * sd);
  CHECK(double(beyond_ratio) / reps > p + 10 * sd);
}

TEST_CASE("atlas: the width-curvature check keeps its false-alarm rate on m + b/d", "[atlas][stochastic]") {
  // Monte Carlo means that do follow m + b/d (truth 1 + 300/d) at the atlas's widths and samples
  // (32, 16, 8 normal samples, sd 1, 2, 3): |z| of the 1/d² term exceeds 1.96 at the nominal 5%,
  // while the plain ratio c / se_c, with few degrees of freedom, exceeds it more often. 40,000
  // replications: s.d. of the rate 0.11%, checked within 4 s.d. (false alarm 6e-5; the stream is
  // fixed, so the test is deterministic). Data bending by a 1/d² term of 20 s.e. are flagged.
  std::mt19937_64 rng(20261207);
  const int reps = 40000;
  const std::vector<double> d{1024, 2048, 4096};
  const std::vector<std::pair<int, double>> ns{{32, 1.0}, {16, 2.0}, {8, 3.0}};
  int beyond_z = 0, beyond_ratio = 0, bent_found = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> y, se, nu;
    for (size_t w = 0; w < 3; ++w) {
      const auto [n, sd] = ns[w];
      const auto [mean, s] = noise_mean(rng, n, sd);
      y.push_back(1 + 300 / d[w] + mean);
      se.push_back(s);
      nu.push_back(n - 1);
    }
    const auto c = reports::width_curvature(d, y, se, nu);
    beyond_z += std::abs(c.z) > 1.959963984540054;
    beyond_ratio += std::abs(c.c / c.se_c) > 1.959963984540054;
    if (r < 1000) {
      // The same noise on data with a 1/d² term of 20 times the curvature's s.e.
      std::vector<double> yb = y;
      for (size_t w = 0; w < 3; ++w) yb[w] += 20 * c.se_c / (d[w] * d[w]);
      bent_found += std::abs(reports::width_curvature(d, yb, se, nu).z) > 2.5758293035489004;
    }
  }
  const double p = 0.05, sd = std::sqrt(p * (1 - p) / reps);
  INFO("share beyond 1.96: " << double(beyond_z) / reps << " (plain ratio " << double(beyond_ratio) / reps
                             << "), bent data flagged " << bent_found << " of 1000");
  CHECK(std::abs(double(beyond_z) / reps - p) < 4 * sd);
  CHECK(double(beyond_ratio) / reps > p + 10 * sd);
  CHECK(bent_found > 990);
}

TEST_CASE("atlas: percentiles and the Bonferroni critical value", "[atlas]") {
  CHECK(reports::percentile({3, 1, 2, 4}, 0.5) == Approx(2.5));
  CHECK(reports::percentile({3, 1, 2, 4}, 0.0) == 1);
  CHECK(reports::percentile({3, 1, 2, 4}, 1.0) == 4);
  std::vector<double> v;
  for (int i = 1; i <= 11; ++i) v.push_back(i);
  v.push_back(NAN);  // ignored
  CHECK(reports::percentile(v, 0.9) == Approx(10.0));
  CHECK(reports::percentile(v, 0.99) == Approx(10.9));
  CHECK(std::isnan(reports::percentile({}, 0.5)));
  CHECK(reports::bonferroni_z(0.05, 1) == Approx(1.959964).epsilon(1e-6));
  CHECK(reports::bonferroni_z(0.01, 100) == Approx(3.890592).epsilon(1e-6));  // two-sided 1e-4
}

TEST_CASE("atlas: the drawn configurations cover the ranges", "[atlas]") {
  reports::AtlasConfig a;
  a.configurations = 64;
  const auto draws = reports::atlas_draws(a);
  REQUIRE(draws.size() == 64);
  std::set<std::string> norms, blocks, branch;
  for (auto& d : draws) {
    std::map<std::string, std::string> s(d.sets.begin(), d.sets.end());
    const int depth = std::stoi(s["stack.depth"]), tokens = std::stoi(s["stack.tokens"]);
    CHECK(depth >= 4);
    CHECK(depth <= 128);
    CHECK(tokens >= 4);
    CHECK(tokens <= 64);
    const double qk2 = std::stod(s["init.sigma_qk2"]), w2 = std::stod(s["init.sigma_w2"]);
    CHECK(qk2 >= 0.25 - 1e-4);
    CHECK(qk2 <= 4.0 + 1e-4);
    CHECK(w2 >= 0.5 - 1e-4);
    CHECK(w2 <= 2.0 + 1e-4);
    norms.insert(s["stack.norm"]);
    blocks.insert(s["stack.blocks"]);
    branch.insert(s["stack.branch_scale"].front() == '"' ? s["stack.branch_scale"] : "number");
    if (s["stack.norm"] == "\"deepnorm\"") CHECK(s["stack.branch_scale"] == "\"1\"");
  }
  CHECK(norms.size() == 5);
  CHECK(blocks.size() == 3);
  CHECK(branch.size() == 3);
  CHECK(reports::atlas_draws(a)[17].label == draws[17].label);  // deterministic
}

TEST_CASE("atlas: [atlas] config, its jobs and its named errors", "[atlas][config]") {
  const std::string src = std::string(SIGPROP_SOURCE_DIR) + "/examples/validity_atlas.toml";
  const auto full = reports::load_report_config(src);
  REQUIRE(full.atlas.enabled);
  const auto cells = reports::expand_cells(full);
  CHECK(cells.size() == 300);
  const auto jobs = reports::make_jobs(full, cells);
  CHECK(jobs.size() == 300 * 4);  // theory + d = 1024, 4096, 16384
  CHECK(jobs[1].json == "cells/c000.simulate-d1024.json");
  CHECK(jobs[3].spec.heads == 16384 / 64);
  CHECK(jobs[1].settings.at("samples") == 32);  // atlas.samples: one count per width
  CHECK(jobs[3].settings.at("samples") == 8);
  CHECK(jobs[1].settings.at("input_kernel") == "exact");  // the example conditions on the input kernel
  // The resolved config parses back to itself.
  const auto again = reports::parse_report_config(reports::to_toml(full), "resolved.toml");
  CHECK(reports::to_toml(again) == reports::to_toml(full));

  auto err = [](const std::string& body) {
    try {
      (void)reports::parse_report_config(std::string(kAtlasHead) + body, "a.toml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nwidths = [64, 100]\nhead_dim = 16\n"),
             Catch::Contains("atlas.widths") && Catch::Contains("multiple of atlas.head_dim"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nnorm = [\"pre\", \"prenorm\"]\n"), Catch::Contains("atlas.norm[2]"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nwidths = [128]\n"), Catch::Contains("atlas.widths"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nsamples = [8, 4]\n"),
             Catch::Contains("atlas.samples: 2 sample counts for 3 widths"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nsigma_qk2 = [2.0, 1.0]\n"), Catch::Contains("atlas.sigma_qk2"));
  CHECK_THAT(err("[atlas]\nconfigs = 4\n"), Catch::Contains("unknown key \"atlas.configs\""));
  CHECK_THAT(err("[atlas]\nconfigurations = 20001\n"), Catch::Contains("atlas.configurations: must be in [2, 20000]"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\n[sweep]\nstack.depth = [2, 3]\n"), Catch::Contains("remove [sweep]"));
  CHECK_THROWS_WITH(reports::parse_report_config("[atlas]\nconfigurations = 4\n", "b.toml"),
                    Catch::Contains("b.toml") && Catch::Contains("[engines.theory] and [engines.simulate]"));

  // engines.theory.finite_dh (docs/theory.md): parsed, written back, and in the theory jobs' hashed
  // settings only when on (cells of configs without it keep their keys, so old atlases resume).
  const std::string fin = "[engines.theory]\nfinite_dh = true\n[engines.simulate]\nsamples = 4\n"
                          "[atlas]\nconfigurations = 4\n";
  const auto fc = reports::parse_report_config(fin, "f.toml");
  CHECK(fc.theory.settings.attn.finite_dh);
  CHECK(reports::to_toml(reports::parse_report_config(reports::to_toml(fc), "f2.toml")) == reports::to_toml(fc));
  const auto fjobs = reports::make_jobs(fc, reports::expand_cells(fc));
  CHECK(fjobs[0].settings.at("finite_dh") == true);
  CHECK(jobs[0].settings.at("finite_dh") == true);  // examples/validity_atlas.toml sets it
  auto off = full;
  off.theory.settings.attn.finite_dh = false;
  CHECK_FALSE(reports::make_jobs(off, cells)[0].settings.contains("finite_dh"));
  CHECK_THROWS_WITH(reports::parse_report_config("[engines.theory]\nfinite_dh = 1\n", "g.toml"),
                    Catch::Contains("engines.theory.finite_dh"));

  // atlas.streams: "independent" (default) gives every (configuration, width) its own Monte Carlo
  // seed, engines.simulate.seed + i * widths + w, and every configuration its own theory seed;
  // "shared" gives every job the engines' seeds.
  CHECK(full.atlas.streams == "independent");
  const uint64_t sim_seed = full.simulate.seed, th_seed = full.theory.settings.attn.seed;
  std::set<uint64_t> seen;
  for (const auto& j : jobs) {
    if (j.engine == reports::EngineKind::Theory) {
      CHECK(j.settings.at("attn_seed").get<uint64_t>() == th_seed + static_cast<uint64_t>(j.cell));
      continue;
    }
    const auto w = std::find(full.atlas.widths.begin(), full.atlas.widths.end(), j.spec.width) - full.atlas.widths.begin();
    const uint64_t seed = j.settings.at("seed").get<uint64_t>();
    CHECK(seed == sim_seed + static_cast<uint64_t>(j.cell) * 3 + static_cast<uint64_t>(w));
    CHECK(seen.insert(seed).second);  // no two Monte Carlo jobs share a stream
  }
  auto shared_cfg = full;
  shared_cfg.atlas.streams = "shared";
  const auto again_shared = reports::parse_report_config(reports::to_toml(shared_cfg), "s2.toml");
  CHECK(again_shared.atlas.streams == "shared");  // written back and parsed
  const auto sjobs = reports::make_jobs(again_shared, reports::expand_cells(again_shared));
  for (const auto& j : sjobs) {
    if (j.engine == reports::EngineKind::Theory)
      CHECK(j.settings.at("attn_seed").get<uint64_t>() == th_seed);
    else
      CHECK(j.settings.at("seed").get<uint64_t>() == sim_seed);
  }
  CHECK(sjobs[5].hash != jobs[5].hash);  // the seed is in the hash: cells of one mode are not reused by the other
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nstreams = \"per-cell\"\n"),
             Catch::Contains("atlas.streams") && Catch::Contains("\"independent\", \"by-width\", \"shared\""));
  {  // "by-width": seeds keyed by the width's value, the theory's spec at a nominal width, so that an
     // atlas given one more width keeps every other job (its hash, so its cell); "independent" does
     // not (its seeds count the widths, its theory has the largest width).
    auto by = full;
    by.atlas.streams = "by-width";
    by = reports::parse_report_config(reports::to_toml(by), "b.toml");  // written back and parsed
    REQUIRE(by.atlas.streams == "by-width");
    auto wider = by;
    wider.atlas.widths.push_back(32768);
    wider.atlas.samples.push_back(4);
    const auto cb = reports::expand_cells(by), cw = reports::expand_cells(wider);
    const auto jb = reports::make_jobs(by, cb), jw = reports::make_jobs(wider, cw);
    REQUIRE(jw.size() == jb.size() + cb.size());
    std::map<std::string, std::string> hash_w;
    for (const auto& j : jw) hash_w[j.json.string()] = j.hash;
    std::set<uint64_t> seeds;
    for (const auto& j : jb) {
      CAPTURE(j.json);
      CHECK(hash_w.at(j.json.string()) == j.hash);
      if (j.engine == reports::EngineKind::Theory) {
        CHECK(j.spec.width == 64 * by.atlas.head_dim);
        CHECK(j.spec.heads == 64);
        CHECK(j.settings.at("attn_seed").get<uint64_t>() == th_seed + static_cast<uint64_t>(j.cell));
        continue;
      }
      const uint64_t seed = j.settings.at("seed").get<uint64_t>();
      CHECK(seed == sim_seed + (static_cast<uint64_t>(j.cell) << 21) + static_cast<uint64_t>(j.spec.width));
      CHECK(seeds.insert(seed).second);
    }
    for (const auto& j : jw)
      if (j.engine == reports::EngineKind::Simulate && j.spec.width == 32768)
        CHECK(seeds.insert(j.settings.at("seed").get<uint64_t>()).second);  // the new width's streams are new too
    // The theory's numbers do not depend on its spec's width (d_h = head_dim either way).
    const auto it = std::find_if(jobs.begin(), jobs.end(), [&](const reports::Job& j) {
      return j.engine == reports::EngineKind::Theory && j.spec.has_attn() && j.spec.qk_scale == QkScale::InvSqrtDh &&
             j.spec.depth <= 12 && j.spec.tokens <= 8;
    });
    REQUIRE(it != jobs.end());
    const auto& tj = *it;
    theory::TheorySettings ts = full.theory.settings;
    ts.attn.seed = tj.settings.at("attn_seed").get<uint64_t>();
    ts.attn.samples = 64;
    ts.error_batches = 2;
    auto nominal = tj.spec;
    nominal.width = 64 * by.atlas.head_dim;
    nominal.heads = 64;
    const Profile a = theory::TheoryEngine(ts).run(tj.spec), b = theory::TheoryEngine(ts).run(nominal);
    for (int l = 0; l < a.layers(); ++l)
      for (const char* m : {"q", "rho", "grad_var"}) CHECK(a.at(l, m) == b.at(l, m));
    // independent: the same extra width changes every job's hash
    auto wider_ind = full;
    wider_ind.atlas.widths.push_back(32768);
    wider_ind.atlas.samples.push_back(4);
    const auto ji = reports::make_jobs(wider_ind, reports::expand_cells(wider_ind));
    CHECK(ji[0].hash != jobs[0].hash);  // c0's theory: its spec has the largest width
    CHECK(ji[6].json == jobs[5].json);   // c1's Monte Carlo at the first width: seed + 1 * widths + 0
    CHECK(ji[6].hash != jobs[5].hash);
  }

  // atlas.refine: a power of two in [1, 64], written back when not 1, within the 65536 sample ids.
  CHECK(full.atlas.refine == 4);  // examples/validity_atlas.toml refines; the default does not
  CHECK(full.atlas.refine_theory == 4);
  CHECK(reports::parse_report_config(std::string(kAtlasHead) + "[atlas]\nconfigurations = 4\n", "d.toml").atlas.refine == 1);
  CHECK_THAT(reports::to_toml(reports::parse_report_config(std::string(kAtlasHead) + "[atlas]\nconfigurations = 4\n",
                                                           "d.toml")),
             !Catch::Contains("refine"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nrefine = 3\n"),
             Catch::Contains("atlas.refine") && Catch::Contains("power of two"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nrefine = 128\n"), Catch::Contains("atlas.refine: must be in [1, 64]"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nsamples = [2048, 2048, 2048]\nrefine = 64\n"),
             Catch::Contains("atlas.refine: 64 x 2048 samples") && Catch::Contains("65536"));
  CHECK_THAT(err("[atlas]\nconfigurations = 4\nrefine_theory = 6\n"),
             Catch::Contains("atlas.refine_theory") && Catch::Contains("power of two"));
  const auto rc = reports::parse_report_config(
      std::string(kAtlasHead) + "[atlas]\nconfigurations = 4\nrefine = 8\nrefine_theory = 16\n", "r.toml");
  CHECK(rc.atlas.refine == 8);
  CHECK(rc.atlas.refine_theory == 16);
  CHECK(reports::parse_report_config(reports::to_toml(rc), "r2.toml").atlas.refine == 8);
  CHECK(reports::parse_report_config(reports::to_toml(rc), "r2.toml").atlas.refine_theory == 16);
  CHECK_THROWS_WITH(reports::parse_report_config("[engines.theory]\nattn_samples = 50000000\nerror_batches = 0\n"
                                                 "[engines.simulate]\n[atlas]\nrefine_theory = 4\n",
                                                 "big.toml"),
                    Catch::Contains("atlas.refine_theory: 4 x engines.theory.attn_samples"));
  // The first pass's jobs do not depend on it: an atlas run without refinement resumes with it.
  auto rc1 = rc;
  rc1.atlas.refine = 1;
  rc1.atlas.refine_theory = 1;
  const auto rj = reports::make_jobs(rc, reports::expand_cells(rc)), rj1 = reports::make_jobs(rc1, reports::expand_cells(rc1));
  REQUIRE(rj.size() == rj1.size());
  for (size_t i = 0; i < rj.size(); ++i) CHECK(rj[i].hash == rj1[i].hash);
}

TEST_CASE("atlas: the refinement plan comes from the standard errors alone", "[atlas]") {
  // Forward points with m = 1 (goal 2%) at two widths, d = 1024 and 2048, where the fit of m + b/d
  // interpolates: m = 2 y_2048 - y_1024, se_m^2 = 4 se_2048^2 + se_1024^2. With known standard errors
  // (infinite degrees of freedom) a point is resolved when 2.5758 s <= 0.02, s <= 0.007765.
  using reports::RefineFactors;
  const std::vector<int> widths{1024, 2048};
  constexpr double kInf = std::numeric_limits<double>::infinity();
  auto point = [&](int cell, double se1, double se2, double theory_se, double rel,
                   double dof = std::numeric_limits<double>::infinity()) {
    reports::AtlasPoint p;
    p.cell = cell;
    p.metric = "q";
    p.mc = {1.0, 1.0};
    p.mc_se = {se1, se2};
    p.mc_dof = {dof, dof};
    p.fit = reports::fit_width({1024, 2048}, p.mc, p.mc_se, p.mc_dof);
    p.theory_se = theory_se;
    p.theory = 1.0 + rel;
    p.rel_ext = rel;
    p.se_ext = std::sqrt(p.fit.se_m * p.fit.se_m + theory_se * theory_se);
    p.dof_ext = reports::welch_dof({{p.fit.se_m * p.fit.se_m, p.fit.dof}, {theory_se * theory_se, kInf}});
    return p;
  };
  const auto check_fit = point(9, 0.003, 0.004, 0, 0);
  SIGPROP_CHECK_CLOSE(check_fit.fit.m, 1.0, kExact);
  SIGPROP_CHECK_CLOSE(check_fit.fit.se_m, std::sqrt(4 * 0.004 * 0.004 + 0.003 * 0.003), kExact);
  std::vector<reports::AtlasPoint> pts{
      point(0, 0.001, 0.001, 0, 0.5),    // se_m 0.0022: resolved already, nothing, whatever its error
      point(1, 0.001, 0.006, 0, 0),      // 0.0120; K_2048 = 4: 0.0061 (2: 0.0085; K_1024 cannot help)
      point(2, 0.001, 0.001, 0.010, 0),  // the theory's s.e. limits: K_theory = 2 gives s = 0.0074
      point(3, 0.008, 0.001, 0, 0),      // 0.0082; K_1024 = 2: 0.0060
      point(4, 0.001, 0.020, 0, 0)};     // K_2048 = 32 (0.0073; 16: 0.0101)
  using Plan = std::map<int, RefineFactors>;
  // Monte Carlo only: each point's factor at the width that limits it, the other width untouched;
  // the theory-limited point is left out, not capped, and so is the one needing 32 > 16.
  CHECK(reports::atlas_refine_plan(pts, widths, 16, 1) == Plan{{1, {{1, 4}, 1}}, {3, {{2, 1}, 1}}});
  CHECK(reports::atlas_refine_plan(pts, widths, 32, 1) ==
        Plan{{1, {{1, 4}, 1}}, {3, {{2, 1}, 1}}, {4, {{1, 32}, 1}}});
  CHECK(reports::atlas_refine_plan(pts, widths, 1, 1).empty());
  // With the theory's draws, point 2 is resolved by twice as many.
  const Plan with_theory{{1, {{1, 4}, 1}}, {2, {{1, 1}, 2}}, {3, {{2, 1}, 1}}};
  CHECK(reports::atlas_refine_plan(pts, widths, 16, 4) == with_theory);
  // A configuration takes, per width, the largest factor its points need.
  auto merged = pts;
  merged.push_back(point(3, 0.001, 0.006, 0, 0));
  CHECK(reports::atlas_refine_plan(merged, widths, 16, 1) == Plan{{1, {{1, 4}, 1}}, {3, {{2, 4}, 1}}});
  // The cost decides between sufficient choices: se 0.001 / 0.0035 with theory s.e. 0.005 (s = 0.0087)
  // is resolved by K_2048 = 2 (0.0071) or by K_theory = 4 (0.0075), not by K_theory = 2 (0.0079).
  const auto even = point(6, 0.001, 0.0035, 0.005, 0);
  CHECK(reports::atlas_refine_plan({even}, widths, 4, 4, {{6, {{1.0, 10.0}, 1.0}}}) == Plan{{6, {{1, 1}, 4}}});
  CHECK(reports::atlas_refine_plan({even}, widths, 4, 4, {{6, {{1.0, 1.0}, 10.0}}}) == Plan{{6, {{1, 2}, 1}}});
  // The error never enters: the same points with other errors give the same plan.
  for (auto& p : pts) {
    p.theory = 1.3;
    p.rel_ext = 0.3;
  }
  CHECK(reports::atlas_refine_plan(pts, widths, 16, 4) == with_theory);
  // Few degrees of freedom: 8 samples per width (7 each): se_m = 0.0061 with 7.4 degrees of freedom,
  // t_0.995 = 3.45: 0.021 > 0.02 unresolved, although with known errors it would be (0.0157);
  // K_2048 = 2 gives 0.0044 at 16.6 degrees of freedom (t = 2.90): 0.0126.
  auto few = point(5, 0.001, 0.003, 0, 0, 7);
  CHECK(few.fit.dof < 8);
  CHECK_FALSE(reports::resolved_to_goal(few));
  CHECK(reports::atlas_refine_plan({few}, widths, 8, 1) == Plan{{5, {{1, 2}, 1}}});
  // A point without per-width data cannot be planned.
  auto bare = point(7, 0.001, 0.006, 0, 0);
  bare.mc_dof.clear();
  CHECK(reports::atlas_refine_plan({bare}, widths, 16, 1).empty());
  // Three widths with equal standard errors: the extrapolation leans on the widest, which gets the
  // most samples, for less than the cheapest uniform factor that resolves the point.
  {
    const std::vector<int> w3{1024, 2048, 4096};
    reports::AtlasPoint p;
    p.metric = "q";
    p.mc = {1.0, 1.0, 1.0};
    p.mc_se = {0.01, 0.01, 0.01};  // se_m = sqrt(1.5) 0.01 = 0.0122: 2.58 se_m = 0.032
    p.mc_dof = {kInf, kInf, kInf};
    p.fit = reports::fit_width({1024, 2048, 4096}, p.mc, p.mc_se, p.mc_dof);
    p.se_ext = p.fit.se_m;
    CHECK_FALSE(reports::resolved_to_goal(p));
    const auto plan = reports::atlas_refine_plan({p}, w3, 16, 1);
    REQUIRE(plan.count(0));
    const std::vector<int> k = plan.at(0).mc;
    CAPTURE(k);
    CHECK(k[2] >= k[1]);
    CHECK(k[2] >= k[0]);
    std::vector<double> se(3), nu(3, kInf);
    for (int i = 0; i < 3; ++i) se[i] = 0.01 / std::sqrt(double(k[i]));
    CHECK(2.5758293035489004 * reports::fit_width({1024, 2048, 4096}, p.mc, se, nu).se_m <= 0.02);
    int uniform = 1;  // the cheapest uniform factor that resolves it: se_m / sqrt K
    while (2.5758293035489004 * p.fit.se_m / std::sqrt(double(uniform)) > 0.02) uniform *= 2;
    CHECK((k[0] - 1) + (k[1] - 1) + (k[2] - 1) < 3 * (uniform - 1));
  }
  {  // Six widths with refine = 64 would be 7^6 vectors: only the uniform ones are tried.
    const std::vector<int> w6{256, 512, 1024, 2048, 4096, 8192};
    reports::AtlasPoint p;
    p.metric = "q";
    p.mc.assign(6, 1.0);
    p.mc_se.assign(6, 0.02);
    p.mc_dof.assign(6, kInf);
    p.fit = reports::fit_width({256, 512, 1024, 2048, 4096, 8192}, p.mc, p.mc_se, p.mc_dof);
    p.se_ext = p.fit.se_m;
    const auto plan = reports::atlas_refine_plan({p}, w6, 64, 1);
    REQUIRE(plan.count(0));
    const std::vector<int> k = plan.at(0).mc;
    CAPTURE(k);
    CHECK(k[0] > 1);
    CHECK(std::all_of(k.begin(), k.end(), [&](int x) { return x == k[0]; }));
  }
  CHECK(reports::atlas_goal("grad_var") == 0.05);
  CHECK(reports::atlas_goal("rho") == 0.02);
}

TEST_CASE("atlas: the tiny atlas agrees with the extrapolated Monte Carlo at family-wise rate 1%",
          "[atlas][stochastic]") {
  // examples/atlas_tiny.toml: 20 configurations at d = 64 and 128 (d_h = 64), 48 samples, about
  // 4 s on 2 cores; norm = "none" left out (finite-d_h error, see the example). The statistic is
  // t = (theory - m) / sqrt(se_theory² + se_m²) against m of the fit m + b/d, which removes the
  // O(1/d) finite-width bias, as a normal score z under Student's t with the Welch-Satterthwaite
  // degrees of freedom; the test fails when any of the N compared points has
  // |z| > bonferroni_z(0.01, N), so a correct theory passes with probability >= 99% (to the
  // t approximation of the means; Bonferroni is conservative for the correlated layers).
  // Passed for atlas seeds 7 to 14 (seed 7 is the test's).
  const auto cfg = reports::load_report_config(std::string(SIGPROP_SOURCE_DIR) + "/examples/atlas_tiny.toml");
  const auto cells = reports::expand_cells(cfg);
  const auto jobs = reports::make_jobs(cfg, cells);
  REQUIRE(cells.size() == 20);
  const fs::path out = fs::temp_directory_path() / ("sigprop_atlas_test_" + std::to_string(::getpid()));
  fs::remove_all(out);
  reports::RunOptions opt;
  opt.jobs = 2;
  const auto st = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(st.ran == static_cast<int>(jobs.size()));
  const auto pts = reports::atlas_points(cfg, cells, jobs, out);
  REQUIRE(pts.size() > 300);
  const double zc = reports::bonferroni_z(cfg.atlas.alpha, static_cast<double>(pts.size()));
  int beyond = 0;
  for (const auto& p : pts) {
    if (std::abs(p.z_ext) <= zc) continue;
    ++beyond;
    UNSCOPED_INFO(cells[p.cell].label << ": " << p.metric << " at layer " << p.layer << " theory " << p.theory
                                      << " extrapolated " << p.fit.m << " ± " << p.fit.se_m << ", z = " << p.z_ext);
  }
  INFO(pts.size() << " points, z_crit = " << zc);
  CHECK(beyond == 0);

  // The folder: every table, no figures without gnuplot, and a rerun recomputes nothing.
  reports::RenderOptions ro;
  ro.gnuplot = "";
  const auto rr = reports::render_report(cfg, cells, jobs, out, ro);
  for (const char* f : {"atlas_points.csv", "atlas_configs.csv", "atlas_summary.csv", "atlas.json", "report.md",
                        "index.html", "config.toml"})
    CHECK(fs::exists(out / f));
  const std::string csv = slurp_file(out / "atlas_points.csv");
  CHECK(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')) == pts.size() + 1);
  CHECK_THAT(slurp_file(rr.report_md), Catch::Contains("The 3 worst configurations"));
  CHECK_THAT(slurp_file(rr.report_md), Catch::Contains("What limits the largest 1% of errors"));
  // The points file carries the degrees of freedom of z against m. Welch-Satterthwaite lies between
  // the smallest part's and the sum: 48 samples per width (47 each), 8 theory error batches (7).
  CHECK_THAT(csv, Catch::Contains(",rel_ext,z_ext,dof_ext,excess_ext,z_width_curvature\n"));
  for (const auto& p : pts) {
    CAPTURE(p.metric, p.layer, p.theory_se, p.dof_ext);
    CHECK(p.dof_ext >= (p.theory_se > 0 ? 7.0 : 47.0) - 1e-9);
    CHECK(p.dof_ext <= 7.0 + 47 + 47 + 1e-9);
    CHECK(p.se_ext > 0);
  }
  CHECK(rr.figures_missing.size() == 2 + 3);  // two heat maps, three worst configurations
  // The goal table's "resolved" columns, recomputed from the points: the share of points a theory
  // without error would show within the goal with probability 99%, and the p99 over them.
  {
    const auto js = nlohmann::json::parse(slurp_file(out / "atlas.json"));
    for (const std::string m : {"q", "grad_var"}) {
      const double goal = m == "grad_var" ? 0.05 : 0.02;
      std::vector<double> rel;
      int n = 0;
      for (const auto& p : pts) {
        if (p.metric != m) continue;
        ++n;
        if (reports::z_as_t(2.5758293035489004, p.dof_ext) * p.se_ext <= goal * std::abs(p.fit.m)) rel.push_back(p.rel_ext);
      }
      REQUIRE(n > 0);
      bool found = false;
      for (const auto& e : js["summary"]) {
        if (e["scope"] != "all" || e["metric"] != m || e["basis"] != "extrapolated") continue;
        found = true;
        CAPTURE(m, rel.size(), n);
        SIGPROP_CHECK_CLOSE(e["share_resolved"].get<double>(), double(rel.size()) / n, kExact);
        if (!rel.empty()) SIGPROP_CHECK_CLOSE(e["p99_resolved"].get<double>(), reports::percentile(rel, 0.99), kExact);
        if (m == "q") CHECK(!rel.empty());  // 32 of the 68 at d = 64 and 128
      }
      CHECK(found);
    }
    CHECK_THAT(slurp_file(rr.report_md), Catch::Contains("| p99 resolved |"));
  }
  // Two widths cannot test m + b/d: no curvature z, no table.
  for (const auto& p : pts) CHECK(std::isnan(p.z_curv));
  CHECK_THAT(slurp_file(rr.report_md), !Catch::Contains("Does m + b/d fit"));
  const auto st2 = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(st2.skipped == st.total);

  // A value the theory leaves null (as it does for a sampled grad_var that lost all precision)
  // where the Monte Carlo has one is counted as "theory null", not compared.
  const reports::Job* th = nullptr;
  for (const auto& j : jobs)
    if (j.engine == reports::EngineKind::Theory && j.cell == 0) th = &j;
  REQUIRE(th);
  auto js = nlohmann::json::parse(slurp_file(out / th->json));
  const int nulled = std::min(2, cells[0].spec.depth);  // layers below L: grad_var is compared there
  for (int l = 0; l < nulled; ++l) js["layers"][l]["grad_var"] = nullptr;
  {
    std::ofstream f(out / th->json);
    f << js.dump();
  }
  std::map<std::string, int> nulls;
  const auto pts2 = reports::atlas_points(cfg, cells, jobs, out, &nulls);
  CHECK(nulls["grad_var"] == nulled);
  CHECK(nulls["q"] == 0);
  CHECK(pts2.size() == pts.size() - static_cast<size_t>(nulled));
  const auto rr2 = reports::render_report(cfg, cells, jobs, out, ro);
  CHECK(nlohmann::json::parse(slurp_file(out / "atlas.json"))["theory_null"]["grad_var"] == nulled);
  CHECK_THAT(slurp_file(rr2.report_md), Catch::Contains("theory null"));
  fs::remove_all(out);

  // Three widths (the first 4 configurations at d = 64, 128, 256): every point gets the lack-of-fit
  // z of m + b/d, and none exceeds the Bonferroni critical value (family-wise false alarm 1%, the
  // Monte Carlo's finite-width expansion being m + b/d + O(1/d²) with the 1/d² term far below
  // these samples' resolution at d >= 64 for depths <= 6). Passed for atlas seeds 7 to 12.
  auto cfg3 = cfg;
  cfg3.atlas.configurations = 4;
  cfg3.atlas.widths = {64, 128, 256};
  cfg3.atlas.samples = {24, 12, 8};
  const auto cells3 = reports::expand_cells(cfg3);
  const auto jobs3 = reports::make_jobs(cfg3, cells3);
  REQUIRE(cells3.size() == 4);
  fs::remove_all(out);
  reports::run_jobs(cfg3, jobs3, out, opt);
  const auto pts3 = reports::atlas_points(cfg3, cells3, jobs3, out);
  REQUIRE(pts3.size() > 50);
  const double zc3 = reports::bonferroni_z(cfg3.atlas.alpha, static_cast<double>(pts3.size()));
  for (const auto& p : pts3) {
    CAPTURE(cells3[p.cell].label, p.metric, p.layer, p.mc, p.mc_se);
    REQUIRE(std::isfinite(p.z_curv));
    CHECK(std::abs(p.z_curv) <= zc3);
  }
  const auto rr3 = reports::render_report(cfg3, cells3, jobs3, out, ro);
  CHECK_THAT(slurp_file(rr3.report_md), Catch::Contains("Does m + b/d fit the Monte Carlo's widths?"));
  const auto j3 = nlohmann::json::parse(slurp_file(out / "atlas.json"));
  CHECK(j3["width_curvature"]["q"]["points"].get<int>() > 0);
  fs::remove_all(out);
}

namespace {

/// examples/atlas_tiny.toml with atlas.refine = 4, run through the library call (the first pass,
/// the refinement planned from its cells, the refinement's jobs, the folder) into a fresh temporary
/// folder named by `tag`. About 3 s on 2 cores.
struct TinyRefined {
  std::string text;
  reports::ReportConfig cfg;
  std::vector<reports::Cell> cells;
  std::vector<reports::Job> jobs, more;
  fs::path out;
  api::ReportSettings rs;
  api::ReportResult r;
  explicit TinyRefined(const std::string& tag)
      : text(slurp_file(std::string(SIGPROP_SOURCE_DIR) + "/examples/atlas_tiny.toml") +
             "refine = 4\n"),  // the [atlas] table is the file's last
        cfg(reports::parse_report_config(text, "tiny_refine.toml")),
        cells(reports::expand_cells(cfg)),
        jobs(reports::make_jobs(cfg, cells)),
        out(fs::temp_directory_path() / ("sigprop_atlas_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(out);
    rs.out = out.string();
    rs.jobs = 2;
    rs.figures = false;
    r = api::report_from_toml(text, rs, nullptr, "tiny_refine.toml");
    more = reports::atlas_refine_jobs(cfg, cells, jobs, out);
  }
};

}  // namespace

TEST_CASE("atlas: refinement pools more samples where the goals were not resolved", "[atlas]") {
  const TinyRefined tiny("refine");
  const auto& [text, cfg, cells, jobs, more, out, rs, r] = tiny;
  REQUIRE(cfg.atlas.refine == 4);
  REQUIRE_FALSE(more.empty());
  CHECK(r.jobs == static_cast<int>(jobs.size() + more.size()));
  // K = 2 or 4 at a width is one or two doubling steps, samples [48, 96) and [96, 192), each a job
  // continuing the first pass's 48 (cells/<cNNN>.simulate-d<width>-s<first>.json).
  std::map<int, int> factor;
  std::map<std::pair<int, int>, std::vector<int>> steps;  // (cell, width) -> first samples
  for (const auto& j : more) {
    CHECK(fs::exists(out / j.json));
    CHECK(j.json.string().find(".simulate-d") != std::string::npos);
    const int first = j.settings.at("first_sample").get<int>(), n = j.settings.at("samples").get<int>();
    CHECK(first == n);
    CHECK((first == 48 || first == 96));
    CHECK(j.json.string().find(fmt::format("-s{}.json", first)) != std::string::npos);
    factor[j.cell] = std::max(factor[j.cell], (first + n) / 48);
    steps[{j.cell, j.spec.width}].push_back(first);
  }
  for (const auto& [key, firsts] : steps) {  // K = 4 has both steps, K = 2 the first alone
    CAPTURE(key.first, key.second);
    CHECK((firsts == std::vector<int>{48} || firsts == std::vector<int>{48, 96}));
  }
  CHECK(more.size() >= factor.size());  // at least one width of a refined configuration

  // Every job records what it took beside its cell (the cell's bytes stay the same whoever runs
  // it), and the refinement is priced from the first pass's records: K - 1 times the measured
  // core-seconds of the job it continues.
  std::map<std::string, double> first_cost;  // by the continued job's file
  for (const auto& j : jobs) {
    const auto t = nlohmann::json::parse(slurp_file(out / j.timing));
    CHECK(t.at("hash") == j.hash);
    CHECK(t.at("seconds").get<double>() >= 0);
    CHECK(t.at("threads").get<int>() == 1);
    // Priced by its CPU time (the worker thread's: one thread per job here), never above the wall
    // time by more than the records' rounding.
    REQUIRE(t.contains("cpu_seconds"));
    CHECK(t.at("cpu_seconds").get<double>() >= 0);
    CHECK(t.at("cpu_seconds").get<double>() <= t.at("seconds").get<double>() + 0.002);
    CHECK(reports::measured_cost(out, j) == t.at("cpu_seconds").get<double>());
    CHECK_FALSE(reports::load_job(out, j).extras.at("report_cell").contains("seconds"));
    first_cost[j.json.string()] = std::max(reports::measured_cost(out, j), 1e-3);
  }
  for (const auto& j : more) {
    CHECK(std::isfinite(reports::measured_cost(out, j)));
    std::string base_json = j.json.string();
    const int first = j.settings.at("first_sample").get<int>();
    base_json.erase(base_json.rfind(fmt::format("-s{}", first)), fmt::format("-s{}", first).size());
    REQUIRE(first_cost.count(base_json));
    SIGPROP_CHECK_CLOSE(j.cost, first_cost[base_json] * (first / 48), kExact);  // step f costs f first passes
  }
  {  // A cell from before sigprop recorded its cost (or another config's record): the cost model,
     // ten times where its samples were recomputed in double.
    const reports::Job& j = *std::find_if(jobs.begin(), jobs.end(), [&](const reports::Job& x) {
      return x.cell == more.front().cell && x.engine == reports::EngineKind::Simulate;
    });
    const fs::path continued = j.json.parent_path() / (j.json.stem().string() + "-s48.json");
    auto priced = [&] {  // the first doubling step's cost: one first pass's
      for (const auto& r : reports::atlas_refine_jobs(cfg, cells, jobs, out))
        if (r.json == continued) return r.cost;
      return -1.0;
    };
    const std::string record = slurp_file(out / j.timing);
    {  // A job that shared its core (a niced run beside a CI run, a stopped process) is priced by
       // its CPU time, not its wall time; a record without CPU time (before sigprop kept it) by
       // wall seconds x threads. The same cost either way here, so the plan stays the same.
      const auto t = nlohmann::json::parse(record);
      const std::string hash = t.at("hash").get<std::string>();
      const double m = t.at("cpu_seconds").get<double>(), priced_m = std::max(m, 1e-3);  // as recorded_cost
      write_file_atomic(out / j.timing, fmt::format("{{\"hash\": \"{}\", \"seconds\": {}, \"threads\": 1, "
                                                    "\"cpu_seconds\": {}}}\n", hash, 100 * m + 1, m));
      CHECK(reports::measured_cost(out, j) == m);
      SIGPROP_CHECK_CLOSE(priced(), priced_m, kExact);
      write_file_atomic(out / j.timing, fmt::format("{{\"hash\": \"{}\", \"seconds\": {}, \"threads\": 2}}\n", hash, m / 2));
      CHECK(reports::measured_cost(out, j) == m);
      SIGPROP_CHECK_CLOSE(priced(), priced_m, kExact);
      write_file_atomic(out / j.timing, fmt::format("{{\"hash\": \"{}\", \"seconds\": {}, \"threads\": 1, "
                                                    "\"cpu_seconds\": -1}}\n", hash, m));
      CHECK(std::isnan(reports::measured_cost(out, j)));  // a corrupt record: the cost model
      SIGPROP_CHECK_CLOSE(priced(), j.cost, kExact);
    }
    write_file_atomic(out / j.timing, "{\"hash\": \"0000000000000000\", \"seconds\": 1, \"threads\": 1}\n");
    CHECK(std::isnan(reports::measured_cost(out, j)));
    SIGPROP_CHECK_CLOSE(priced(), j.cost, kExact);
    fs::remove(out / j.timing);
    CHECK(std::isnan(reports::measured_cost(out, j)));
    SIGPROP_CHECK_CLOSE(priced(), j.cost, kExact);
    const std::string cell = slurp_file(out / j.json);
    auto cj = nlohmann::json::parse(cell);
    cj["warnings"].push_back("all 48 samples recomputed in double precision: (test)");
    write_file_atomic(out / j.json, cj.dump(1));
    SIGPROP_CHECK_CLOSE(priced(), 10 * j.cost, kExact);
    write_file_atomic(out / j.json, cell);
    write_file_atomic(out / j.timing, record);
  }
  const auto js = nlohmann::json::parse(slurp_file(out / "atlas.json"));
  CHECK(js["refinement"]["configurations_refined"].get<size_t>() == factor.size());
  CHECK_THAT(slurp_file(r.report_md), Catch::Contains("Refinement: more samples where the goals were not resolved"));
  {  // atlas_configs.csv's last column
    std::ifstream in(out / "atlas_configs.csv");
    std::string line;
    std::getline(in, line);
    CHECK(line.substr(line.rfind(",mc_sample_factor_d")) == ",mc_sample_factor_d128,mc_sample_factor,theory_sample_factor");
    for (const auto& c : cells) {
      std::getline(in, line);
      line.resize(line.rfind(','));  // the theory's factor: 1, refine_theory is not set
      const int f = std::stoi(line.substr(line.rfind(',') + 1));
      CHECK(f == (factor.count(c.index) ? factor[c.index] : 1));
    }
  }

  // The pooled Monte Carlo is the larger run: one refined configuration and width against a run of
  // K x 48 samples with the job's seed, at every compared point.
  std::vector<reports::Job> all = jobs;
  all.insert(all.end(), more.begin(), more.end());
  const auto pts = reports::atlas_points(cfg, cells, all, out, nullptr, true);
  const auto pts_first = reports::atlas_points(cfg, cells, all, out, nullptr, false);
  CHECK(pts_first.size() == reports::atlas_points(cfg, cells, jobs, out).size());  // the first pass alone
  {
    const reports::Job& refined_job = more.back();  // the last step of its configuration and width
    const int cell = refined_job.cell,
              k = (refined_job.settings.at("first_sample").get<int>() + refined_job.settings.at("samples").get<int>()) / 48;
    const size_t wi = std::find(cfg.atlas.widths.begin(), cfg.atlas.widths.end(), refined_job.spec.width) -
                      cfg.atlas.widths.begin();
    REQUIRE(wi < cfg.atlas.widths.size());
    const reports::Job* base = nullptr;
    for (const auto& j : jobs)
      if (j.cell == cell && j.engine == reports::EngineKind::Simulate && j.spec.width == refined_job.spec.width) base = &j;
    REQUIRE(base);
    sim::SimSettings st;
    st.backend = cfg.simulate.backend;
    st.precision = cfg.simulate.precision;
    st.samples = 48 * k;
    st.seed = base->settings.at("seed").get<uint64_t>();
    const Profile whole = sim::MonteCarloEngine(st).run(base->spec);
    int compared = 0;
    for (const auto& p : pts) {
      if (p.cell != cell) continue;
      ++compared;
      CAPTURE(p.metric, p.layer);
      SIGPROP_CHECK_CLOSE(p.mc[wi], whole.at(p.layer, p.metric), kExact);
      SIGPROP_CHECK_CLOSE(p.mc_se[wi], whole.at(p.layer, p.metric + "_se"), kExact);
      CHECK(p.mc_dof[wi] == 48 * k - 1);
    }
    CHECK(compared > 0);
  }

  // What it bought: per metric, no fewer points resolved to the goal than in the first pass (fixed
  // seeds: the same outcome every run), and still no point beyond the family-wise z_crit.
  for (const std::string& m : cfg.atlas.metrics) {
    int before = 0, after = 0;
    for (const auto& p : pts_first) before += p.metric == m && reports::resolved_to_goal(p);
    for (const auto& p : pts) after += p.metric == m && reports::resolved_to_goal(p);
    CAPTURE(m, before, after);
    CHECK(after >= before);
    const auto& fp = js["refinement"]["first_pass"][m];
    if (fp["n"].get<int>() > 0) SIGPROP_CHECK_CLOSE(fp["share_resolved"].get<double>(), double(before) / fp["n"].get<int>(), kExact);
  }
  const double zc = reports::bonferroni_z(cfg.atlas.alpha, static_cast<double>(pts.size()));
  for (const auto& p : pts) {
    CAPTURE(cells[p.cell].label, p.metric, p.layer, p.z_ext);
    CHECK(std::abs(p.z_ext) <= zc);
  }

  // A rerun finds the same refinement and recomputes nothing.
  const auto r2 = api::report_from_toml(text, rs, nullptr, "tiny_refine.toml");
  CHECK(r2.jobs == r.jobs);
  CHECK(r2.jobs_reused == r2.jobs);

  {  // refine = 2 first, then refine = 4 in the same folder: the second reuses every doubling step
     // both plan, and its atlas is the one run with refine = 4 from the start. The folder starts
     // with the first pass's cells and timing records (the plan is priced with those, and wall
     // seconds differ between runs).
    const fs::path out2 = out.string() + "_2to4";
    fs::remove_all(out2);
    fs::create_directories(out2 / "cells");
    for (const auto& j : jobs)
      for (const fs::path& f : {j.json, j.csv, j.timing}) fs::copy_file(out / f, out2 / f);
    api::ReportSettings rs2 = rs;
    rs2.out = out2.string();
    std::string text2 = slurp_file(std::string(SIGPROP_SOURCE_DIR) + "/examples/atlas_tiny.toml") + "refine = 2\n";
    const auto cfg2 = reports::parse_report_config(text2, "tiny_refine2.toml");
    (void)api::report_from_toml(text2, rs2, nullptr, "tiny_refine2.toml");
    const auto more2 = reports::atlas_refine_jobs(cfg2, cells, jobs, out2);
    REQUIRE_FALSE(more2.empty());
    const auto r4 = api::report_from_toml(text, rs2, nullptr, "tiny_refine.toml");
    const auto more4 = reports::atlas_refine_jobs(cfg, cells, jobs, out2);
    CHECK(more4.size() == more.size());
    int shared = 0;
    for (const auto& j : more4)
      for (const auto& j2 : more2) shared += j.json == j2.json && j.hash == j2.hash;
    CHECK(shared > 0);
    CHECK(r4.jobs_reused == static_cast<int>(jobs.size()) + shared);
    CHECK(r4.jobs == r.jobs);
    std::vector<reports::Job> all4 = jobs;
    all4.insert(all4.end(), more4.begin(), more4.end());
    const auto pts4 = reports::atlas_points(cfg, cells, all4, out2, nullptr, true);
    REQUIRE(pts4.size() == pts.size());
    for (size_t i = 0; i < pts.size(); ++i) {
      CAPTURE(pts[i].cell, pts[i].metric, pts[i].layer);
      for (size_t w = 0; w < pts[i].mc.size(); ++w) CHECK(pts4[i].mc[w] == pts[i].mc[w]);
      CHECK(pts4[i].theory == pts[i].theory);
    }
    fs::remove_all(out2);
  }
  fs::remove_all(out);

  // The theory's refinement: with 32 logit draws in 2 error batches its s.e. limits some points,
  // and refine_theory = 4 reruns those configurations' theory with 2 or 4 times the draws, which
  // replaces the first theory: equal to a theory run with those draws and the job's seed.
  std::string text_t = text;
  text_t.replace(text_t.find("attn_samples = 512"), 18, "attn_samples = 32");
  text_t.replace(text_t.find("error_batches = 8"), 17, "error_batches = 2");
  text_t += "refine_theory = 4\n";
  const auto cfg_t = reports::parse_report_config(text_t, "tiny_refine_theory.toml");
  const auto jobs_t = reports::make_jobs(cfg_t, cells);
  (void)api::report_from_toml(text_t, rs, nullptr, "tiny_refine_theory.toml");
  const auto more_t = reports::atlas_refine_jobs(cfg_t, cells, jobs_t, out);
  std::vector<reports::Job> all_t = jobs_t;
  all_t.insert(all_t.end(), more_t.begin(), more_t.end());
  const auto pts_t = reports::atlas_points(cfg_t, cells, all_t, out);
  int theory_refined = 0;
  for (const auto& j : more_t) {
    if (j.engine != reports::EngineKind::Theory) continue;
    ++theory_refined;
    const int k = j.settings.at("refinement").get<int>();
    CHECK((k == 2 || k == 4));
    CHECK(j.settings.at("attn_samples") == 32 * k);
    CHECK(j.json.string() == fmt::format("cells/{}.theory-x{}.json", cells[j.cell].slug, k));
    theory::TheorySettings ts = cfg_t.theory.settings;
    ts.attn.samples = 32 * k;
    ts.attn.seed = j.settings.at("attn_seed").get<uint64_t>();
    const Profile direct = theory::TheoryEngine(ts).run(j.spec);
    int compared = 0;
    for (const auto& p : pts_t) {
      if (p.cell != j.cell) continue;
      ++compared;
      CAPTURE(p.metric, p.layer);
      CHECK(p.theory == direct.at(p.layer, p.metric));
    }
    CHECK(compared > 0);
  }
  CHECK(theory_refined > 0);  // 2 of the 20 with atlas seed 7
  CHECK(nlohmann::json::parse(slurp_file(out / "atlas.json"))["refinement"]["configurations_refined_theory"] ==
        theory_refined);
  fs::remove_all(out);
}

TEST_CASE("atlas: a snapshot shows the configurations and refinement steps done so far", "[atlas][snapshot]") {
  // The tiny atlas with atlas.refine = 4, run whole, then cells removed as if its run were still
  // going; api::report with snapshot = true renders what is there into out/snapshot/.
  const TinyRefined tiny("snapshot");
  const auto& [text, cfg, cells, jobs, more, out, rs, r] = tiny;
  REQUIRE_FALSE(more.empty());
  api::ReportSettings ss = rs;
  ss.snapshot = true;

  // All done: the snapshot's atlas is the run's, byte for byte.
  const auto s0 = api::report_from_toml(text, ss, nullptr, "tiny_refine.toml");
  CHECK(s0.out == (out / "snapshot").string());
  CHECK(s0.jobs == r.jobs);
  CHECK(s0.jobs_reused == r.jobs);
  CHECK(s0.cells == static_cast<int>(cells.size()));
  for (const char* f : {"atlas_points.csv", "atlas_configs.csv", "atlas_summary.csv"})
    CHECK(slurp_file(out / "snapshot" / f) == slurp_file(out / f));
  CHECK_THAT(slurp_file(out / "snapshot/report.md"),
             Catch::Contains(fmt::format("Snapshot of a report in progress: {} of {} jobs done;", r.jobs, r.jobs)));

  // A width's first doubling step missing: its later steps wait (they pool after it), the rest is used.
  const reports::Job& step = more.front();
  int dropped = 0;
  for (const auto& j : more) dropped += j.cell == step.cell && j.engine == step.engine && j.spec.width == step.spec.width;
  fs::remove(out / step.json);
  {
    const auto sn = reports::snapshot(cfg, cells, jobs, out);
    CHECK(sn.refinement_planned);
    CHECK(sn.cells.size() == cells.size());
    CHECK(sn.jobs_total == r.jobs);
    CHECK(sn.jobs_done == r.jobs - 1);
    CHECK(sn.jobs_used == r.jobs - dropped);
    std::set<std::string> used;
    for (const auto& j : sn.jobs) used.insert(j.json.string());
    for (const auto& j : more)
      CHECK(used.count(j.json.string()) ==
            (j.cell == step.cell && j.engine == step.engine && j.spec.width == step.spec.width ? 0u : 1u));
    CHECK_THAT(sn.notice, Catch::Contains(fmt::format("Refinement: {} of {} jobs done, {} of them used", more.size() - 1,
                                                      more.size(), more.size() - dropped)));
  }

  // A first-pass job missing: that configuration is left out (the others renumbered, names kept),
  // the refinement is not planned yet, and cells/ is only read.
  const reports::Job& gone = *std::find_if(jobs.begin(), jobs.end(), [&](const reports::Job& j) {
    return j.engine == reports::EngineKind::Simulate && j.cell == 3;
  });
  fs::remove(out / gone.json);
  std::map<std::string, fs::file_time_type> stamp;
  for (auto& e : fs::directory_iterator(out / "cells")) stamp[e.path().filename().string()] = e.last_write_time();
  const auto s1 = api::report_from_toml(text, ss, nullptr, "tiny_refine.toml");
  std::map<std::string, fs::file_time_type> after;
  for (auto& e : fs::directory_iterator(out / "cells")) after[e.path().filename().string()] = e.last_write_time();
  CHECK(after == stamp);
  CHECK(s1.cells == static_cast<int>(cells.size()) - 1);
  CHECK(s1.jobs == static_cast<int>(jobs.size()));
  CHECK(s1.jobs_reused == static_cast<int>(jobs.size()) - 1);
  const auto facts = nlohmann::json::parse(slurp_file(out / "snapshot/snapshot.json"));
  CHECK(facts.at("refinement_planned") == false);
  CHECK_THAT(facts.at("notice").get<std::string>(),
             Catch::Contains("in the first pass") && Catch::Contains("planned once its first pass is complete"));
  const std::string pts = slurp_file(out / "snapshot/atlas_points.csv");
  CHECK(pts.find("," + cells[3].slug + ",") == std::string::npos);
  CHECK(pts.find("," + cells[4].slug + ",") != std::string::npos);
  CHECK(pts.find("\n3," + cells[4].slug + ",") != std::string::npos);  // c004 is the snapshot's fourth
  // The jobs shown are exactly the other configurations' first pass (no refinement planned yet).
  std::set<std::string> expected, shown;
  for (const auto& j : jobs)
    if (j.cell != 3) expected.insert(j.json.string());
  for (const auto& j : reports::snapshot(cfg, cells, jobs, out).jobs) shown.insert(j.json.string());
  CHECK(shown == expected);
  fs::remove_all(out);
}

TEST_CASE("atlas: res's resolution floor follows what each Monte Carlo resolves", "[atlas]") {
  // Float streams floor res at ~1e-7 (1e-6 in the statistics) unless their collapsing samples were
  // recomputed in double (settings.res_double_below); conditional weight sampling resolves a
  // collapse to ~1e-14 (Monte Carlo revision 3; ~1e-11 before), the double floor.
  auto profile = [](const std::string& sampling, double below) {
    sigprop::Profile p;
    p.settings["weights_sampling"] = sampling;
    if (below > 0) p.settings["res_double_below"] = below;
    return p;
  };
  const auto ex_old = profile("explicit", 0), ex_new = profile("explicit", 1e-5), co_new = profile("conditional", 1e-5);
  using reports::atlas_res_floor;
  CHECK(atlas_res_floor({ex_old, ex_old}, 1e-9, true) == 1e-6);
  CHECK(atlas_res_floor({ex_new, ex_old}, 1e-9, true) == 1e-6);  // one width without the fallback
  SIGPROP_CHECK_CLOSE(atlas_res_floor({ex_new, ex_new}, 0.3, true), 3e-8, kExact);
  SIGPROP_CHECK_CLOSE(atlas_res_floor({ex_new, ex_new}, 1e-7, true), 3e-10, kExact);  // 3e-8 * 1e-7 / 1e-5
  SIGPROP_CHECK_CLOSE(atlas_res_floor({ex_new, ex_new}, 1e-13, true), 3e-16, kExact);
  SIGPROP_CHECK_CLOSE(atlas_res_floor({co_new, ex_new}, 1e-13, true), 1e-14, kExact);
  CHECK(atlas_res_floor({co_new, co_new}, 0.3, true) == 3e-8);
  CHECK(atlas_res_floor({ex_old}, 1e-13, false) == 1e-14);
  SIGPROP_CHECK_CLOSE(atlas_res_floor({profile("conditional", 0)}, 1e-13, false), 1e-14, kExact);
}
