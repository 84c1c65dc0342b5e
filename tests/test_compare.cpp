// core/compare.hpp: one metric of two profiles, layer by layer (validate's agreement table,
// the reports' Monte Carlo-against-theory readings).
#include <cmath>
#include <limits>

#include <catch2/catch.hpp>

#include "core/compare.hpp"

using namespace sigprop;

TEST_CASE("compare: differences and z-scores of one metric, layer by layer", "[analytic]") {
  StackSpec spec;
  spec.depth = 3;
  Profile mc = Profile::make(spec, "simulate", {"q", "q_se", "rho", "rho_se"});
  spec.depth = 2;  // fewer layers: only layers 0..2 are compared
  Profile th = Profile::make(spec, "theory", {"q", "rho"});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // layer 0: 3-4-5 triangle with th's missing s.e. as 0; layer 1: mc's s.e. NaN and equal
  // values; layer 2: unequal values with no error at all; layer 3 exists in mc only.
  const double q_mc[] = {1.5, 2.0, 3.0, 9.0}, q_se[] = {0.1, nan, 0.0, 0.1}, q_th[] = {1.0, 2.0, 2.5};
  for (int l = 0; l <= 3; ++l) {
    mc.at(l, "q") = q_mc[l];
    mc.at(l, "q_se") = q_se[l];
  }
  for (int l = 0; l <= 2; ++l) th.at(l, "q") = q_th[l];
  const std::vector<LayerDiff> d = compare(mc, th, "q");
  REQUIRE(d.size() == 3);
  CHECK(d[0].layer == 0);
  CHECK(d[0].diff == 0.5);
  CHECK(d[0].z == Approx(5.0).epsilon(1e-14));
  CHECK(d[0].se_a == 0.1);
  CHECK(std::isnan(d[0].se_b));
  CHECK(d[1].z == 0.0);
  CHECK(std::isnan(d[1].se_a));
  CHECK(d[2].z == std::numeric_limits<double>::infinity());
  CHECK(compare(th, mc, "q")[2].z == -std::numeric_limits<double>::infinity());

  // non-finite values are skipped, not compared; a metric one profile lacks gives nothing
  mc.at(1, "rho") = 0.5;
  th.at(1, "rho") = 0.25;
  const std::vector<LayerDiff> r = compare(mc, th, "rho");
  REQUIRE(r.size() == 1);
  CHECK(r[0].layer == 1);
  CHECK(r[0].diff == 0.25);
  CHECK(r[0].z == std::numeric_limits<double>::infinity());  // no s.e. on either side
  CHECK(compare(mc, th, "eff_rank").empty());
  CHECK(std::isnan(z_ratio(1.0, nan)));
  CHECK(std::isnan(z_ratio(1.0, std::numeric_limits<double>::infinity())));
}
