// Continued Monte Carlo runs (SimSettings::first_sample) and their pooling
// (sim::pool_simulate_profiles, mc/engine.hpp): runs of one seed over disjoint sample ranges are
// parts of one larger run, and their pooled profile equals that run's to rounding. The atlas's
// refinement (docs/atlas.md "Refinement") rests on this. [sim], well under a second.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "tolerance.hpp"

using sigprop::Profile;
using sigprop::StackSpec;
using sigprop::sim::MonteCarloEngine;
using sigprop::sim::pool_simulate_profiles;
using sigprop::sim::SimSettings;

namespace {

StackSpec small_spec() {
  StackSpec s;
  s.blocks = sigprop::Blocks::AttnMlp;
  s.norm = sigprop::Norm::Pre;
  s.depth = 3;
  s.tokens = 5;
  s.width = 32;
  s.heads = 2;
  s.mlp_ratio = 2.0;
  s.validate();
  return s;
}

Profile run(const StackSpec& spec, const std::string& backend, int samples, int first, uint64_t seed = 11) {
  SimSettings st;
  st.backend = backend;
  st.precision = backend == "cpu" ? "float" : "double";
  st.samples = samples;
  st.first_sample = first;
  st.seed = seed;
  return MonteCarloEngine(st).run(spec);
}

/// Every value of `got` equals `ref`'s: the mean and s.e. of the same samples, reduced in a
/// different order (sums of squares recombined instead of one pass): a few ulps of each.
void check_same_numbers(const Profile& got, const Profile& ref) {
  REQUIRE(got.columns == ref.columns);
  REQUIRE(got.rows.size() == ref.rows.size());
  for (size_t l = 0; l < ref.rows.size(); ++l)
    for (size_t c = 0; c < ref.columns.size(); ++c) {
      CAPTURE(ref.columns[c], l);
      const double g = got.rows[l][c], r = ref.rows[l][c];
      if (std::isnan(r)) {
        CHECK(std::isnan(g));
        continue;
      }
      SIGPROP_CHECK_CLOSE(g, r, sigprop::test::kExact);
    }
}

}  // namespace

TEST_CASE("continued runs: disjoint sample ranges of one seed pool into the larger run", "[sim]") {
  const StackSpec spec = small_spec();
  for (const std::string backend : {"reference", "cpu"}) {
    CAPTURE(backend);
    const Profile whole = run(spec, backend, 12, 0);
    const Profile a = run(spec, backend, 5, 0), b = run(spec, backend, 7, 5);
    CHECK_FALSE(a.settings.contains("first_sample"));  // a default run's settings are as before
    CHECK(b.settings.at("first_sample") == 5);
    // b is not a rerun of a's samples: its streams are samples 5..11.
    CHECK(b.rows[2][b.column("q")] != a.rows[2][a.column("q")]);

    const Profile p = pool_simulate_profiles(a, b);
    check_same_numbers(p, whole);
    check_same_numbers(pool_simulate_profiles(b, a), whole);  // the order of the parts does not matter
    CHECK(p.settings.at("samples") == 12);
    CHECK_FALSE(p.settings.contains("first_sample"));
    CHECK(p.settings.at("sample_ranges") == nlohmann::json::array({{0, 5}, {5, 7}}));

    // Three parts, pooled twice (a pooled profile pools again), and a one-sample part (no s.e.).
    const Profile b1 = run(spec, backend, 3, 5), b2 = run(spec, backend, 4, 8);
    check_same_numbers(pool_simulate_profiles(pool_simulate_profiles(a, b1), b2), whole);
    const Profile one = run(spec, backend, 1, 0), rest = run(spec, backend, 11, 1);
    CHECK(std::isnan(one.rows[1][one.column("q_se")]));
    check_same_numbers(pool_simulate_profiles(one, rest), whole);

    // Ranges need not start at 0: samples 5..11 as two parts equal the one run of 7 from 5.
    const Profile tail = pool_simulate_profiles(b1, b2);
    check_same_numbers(tail, b);
    CHECK(tail.settings.at("first_sample") == 5);
  }
}

TEST_CASE("continued runs: what does not pool is an error naming why", "[sim]") {
  const StackSpec spec = small_spec();
  const Profile a = run(spec, "reference", 4, 0), b = run(spec, "reference", 4, 4);
  CHECK_THROWS_WITH(pool_simulate_profiles(a, a), Catch::Contains("overlap") && Catch::Contains("[0, 4)"));
  CHECK_THROWS_WITH(pool_simulate_profiles(a, run(spec, "reference", 4, 2)), Catch::Contains("overlap"));
  CHECK_THROWS_WITH(pool_simulate_profiles(a, run(spec, "reference", 4, 4, 12)), Catch::Contains("settings.seed"));
  CHECK_THROWS_WITH(pool_simulate_profiles(a, run(spec, "cpu", 4, 4)), Catch::Contains("settings.backend"));
  StackSpec deeper = spec;
  deeper.depth = 4;
  CHECK_THROWS_WITH(pool_simulate_profiles(a, run(deeper, "reference", 4, 4)), Catch::Contains("specs differ"));
  Profile theory = b;
  theory.engine = "theory";
  CHECK_THROWS_WITH(pool_simulate_profiles(a, theory), Catch::Contains("simulate engine"));
  CHECK_NOTHROW(pool_simulate_profiles(a, b));

  SimSettings st;
  st.first_sample = -1;
  CHECK_THROWS_AS(MonteCarloEngine(st), sigprop::ConfigError);
  CHECK_THROWS_WITH(MonteCarloEngine(st), Catch::Contains("first_sample"));
  st.samples = 8;
  st.first_sample = 65536 - 7;  // the last sample id would be 65536
  CHECK_THROWS_WITH(MonteCarloEngine(st), Catch::Contains("first_sample") && Catch::Contains("65528"));
  st.first_sample = 65536 - 8;
  CHECK_NOTHROW(MonteCarloEngine(st));
}
