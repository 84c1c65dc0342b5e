// [parity] The Monte Carlo backends against the reference on identical random streams: the
// backend-neutral bodies of tests/shared/sim_backend_tests.hpp instantiated per backend and
// precision (the reference against itself checks the harness: its errors are exactly 0).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "sim/eigen_backend.hpp"
#include "tests/shared/sim_backend_tests.hpp"

SIGPROP_SIM_BACKEND_TESTS("reference", "double")
SIGPROP_SIM_BACKEND_TESTS("cpu", "double")
SIGPROP_SIM_BACKEND_TESTS("cpu", "float")
SIGPROP_SIM_CONDITIONAL_TESTS("reference", "double")
SIGPROP_SIM_CONDITIONAL_TESTS("cpu", "double")
SIGPROP_SIM_CONDITIONAL_TESTS("cpu", "float")

namespace {

std::string config_error(const sigprop::sim::SimSettings& st) {
  try {
    sigprop::sim::MonteCarloEngine e(st);
  } catch (const sigprop::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("precision is checked per backend and named in errors", "[sim][config]") {
  sigprop::sim::SimSettings st;
  st.backend = "cpu";
  for (const char* p : {"float", "double"}) {
    st.precision = p;
    CHECK(config_error(st).empty());
  }
  st.precision = "half";
  CHECK_THAT(config_error(st), Catch::Contains("precision:") && Catch::Contains("\"half\""));
  st.backend = "reference";
  st.precision = "float";
  CHECK_THAT(config_error(st), Catch::Contains("precision:") && Catch::Contains("double only"));
  st.backend = "eigen";
  st.precision = "double";
  CHECK_THAT(config_error(st), Catch::Contains("did you mean \"cpu\""));
  CHECK_THROWS_AS(sigprop::sim::make_stack_backend(sigprop::StackSpec{}, 0, "reference", "float"),
                  sigprop::ConfigError);
}

TEST_CASE("simulate --backend cpu --precision float|double", "[sim][cli]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sigprop_parity_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto run = [&](const std::string& args) {
    const std::string cmd = std::string(SIGPROP_CLI_PATH) + " simulate --set stack.depth=2 --set stack.width=16 " +
                            "--set stack.heads=2 --set stack.tokens=4 --samples 3 --seed 5 " + args + " >" +
                            (dir / "out").string() + " 2>" + (dir / "err").string();
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  for (const char* p : {"float", "double"}) {
    const auto js = dir / (std::string(p) + ".json");
    REQUIRE(run(std::string("--backend cpu --precision ") + p + " --json " + js.string()) == 0);
    const sigprop::Profile prof = sigprop::read_profile_json(js);
    CHECK(prof.settings["backend"] == "cpu");
    CHECK(prof.settings["precision"] == p);
    CHECK(std::isfinite(prof.at(2, "grad_var")));
  }
  CHECK(run("--backend reference --precision float") == 2);
  std::ifstream err(dir / "err");
  std::stringstream ss;
  ss << err.rdbuf();
  CHECK_THAT(ss.str(), Catch::Contains("--precision"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("cpu backend: keeping weights and intermediates for the backward pass never changes a number", "[parity][sim][repro]") {
  // No cache, a cache holding some layers, and the default (all layers): bit-identical.
  sigprop::StackSpec s = sigprop::test::sim_shared::tiny_spec({"stack.depth=5", "stack.norm=post"});
  for (int sample : {0, 3}) {
    const auto all = sigprop::sim::EigenStack<float>(s, 11).run_sample(sample).values;
    const auto none = sigprop::sim::EigenStack<float>(s, 11, 0).run_sample(sample).values;
    // a budget that holds the weights and intermediates of some layers but not all
    const std::size_t two_layers = 2 * (3 * 8 * 8 + 8 * 8 + 2 * 8 * 16 + 16 + 8 + 3 * 16 * 8) * sizeof(float);
    const auto some = sigprop::sim::EigenStack<float>(s, 11, two_layers).run_sample(sample).values;
    auto same = [](const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
      if (a.size() != b.size()) return false;
      for (std::size_t l = 0; l < a.size(); ++l)
        for (std::size_t k = 0; k < a[l].size(); ++k)
          if (!(a[l][k] == b[l][k] || (std::isnan(a[l][k]) && std::isnan(b[l][k])))) return false;
      return true;
    };
    CHECK(same(none, all));
    CHECK(same(some, all));
  }
}
