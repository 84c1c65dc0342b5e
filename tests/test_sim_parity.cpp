// [parity] The Monte Carlo backends against the reference on identical random streams: the
// backend-neutral bodies of tests/shared/sim_backend_tests.hpp instantiated per backend and
// precision (the reference against itself checks the harness: its errors are exactly 0).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "core/metrics.hpp"  // stream_res
#include "mc/engine.hpp"
#include "sim/block.hpp"
#include "sim/eigen_backend.hpp"
#include "tests/shared/sim_backend_tests.hpp"
#include "tests/tolerance.hpp"

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

// Per-layer sample values equal bit for bit (NaN equals NaN).
bool same_values(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t l = 0; l < a.size(); ++l) {
    if (a[l].size() != b[l].size()) return false;
    for (std::size_t k = 0; k < a[l].size(); ++k)
      if (!(a[l][k] == b[l][k] || (std::isnan(a[l][k]) && std::isnan(b[l][k])))) return false;
  }
  return true;
}

// The cpu engine's float and double profiles of s (exact input kernel, default weight sampling).
std::pair<sigprop::Profile, sigprop::Profile> float_and_double(const sigprop::StackSpec& s, int samples,
                                                               uint64_t seed) {
  sigprop::sim::SimSettings st;
  st.samples = samples;
  st.seed = seed;
  st.backend = "cpu";
  st.input_kernel = "exact";
  st.precision = "float";
  sigprop::Profile pf = sigprop::sim::MonteCarloEngine(st).run(s);
  st.precision = "double";
  return {std::move(pf), sigprop::sim::MonteCarloEngine(st).run(s)};
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
    CHECK(same_values(none, all));
    CHECK(same_values(some, all));
  }
}

TEST_CASE("cpu float: samples whose attention logits float cannot resolve are recomputed in double",
          "[sim][parity]") {
  // One attention block on an aligned stream of huge magnitude (q0 = 1e13, rho0 = 1 - 1e-9: the
  // exploding no-norm stacks of the validity atlas, c025, reach this): the logits are ~1e11 and
  // differ between keys by ~1e6, while float rounds them to ~1e4, so a few rows tie in float where
  // the exact row is saturated. Through such a split row the gradient is ~1e9 times too large
  // (grad_var 1e15-1e18 instead of 2.3). Those samples are recomputed in double; the others stay
  // float. Float's logits are uncertain by delta_t ~ 1e4 here, so every row whose float gap is
  // below 40 + delta_t is suspect: seed 77 flags 26 of the 64 samples (with the gap compared with
  // 40 alone, 3, and one unflagged sample's float gradient was 0.6% off).
  sigprop::StackSpec s;
  for (const char* a : {"stack.width=128", "stack.heads=2", "stack.tokens=10", "stack.depth=1", "stack.blocks=attn",
                        "stack.norm=none", "stack.mask=none", "stack.qk_scale=1/sqrt(dh)", "init.sigma_qk2=1.1177",
                        "init.sigma_w2=1.1504", "input.q0=1e13", "input.rho0=0.999999999"})
    sigprop::apply_override(s, a);
  s.validate();
  const auto ex = sigprop::sim::InputKernel::Exact;
  const auto cond = sigprop::sim::WeightSampling::Conditional;
  const sigprop::sim::EigenStack<float> fs(s, 77, sigprop::sim::kWeightCacheBytes, cond, false, ex);
  const sigprop::sim::EigenStack<double> ds(s, 77, sigprop::sim::kWeightCacheBytes, cond, false, ex);
  std::vector<int> flagged;
  for (int i = 0; i < 64; ++i) {
    const int before = fs.logit_fallbacks();
    const auto f = fs.run_sample(i).values;
    const auto d = ds.run_sample(i).values;
    const double gf = f[0].back(), gd = d[0].back();  // grad_var is the last column
    CAPTURE(i, gf, gd);
    if (fs.logit_fallbacks() > before) {
      flagged.push_back(i);
      CHECK(same_values(f, d));  // the double result, bit for bit
    } else {
      CHECK(std::abs(gf - gd) <= 1e-4 * gd);  // float where float resolves the logits
    }
  }
  CHECK(flagged.size() == 26);
  CHECK(fs.logit_fallback_layer() == 1);
  // What the fallback prevents: the flagged samples' plain float blocks, the worst of them.
  REQUIRE(!flagged.empty());
  double worst_ratio = 0;
  for (const int i : flagged) {
    const sigprop::sim::Arch arch{s, {}};
    const auto wf = sigprop::sim::draw_layer_weights_conditional<float>(s, 77, i, 1);
    const auto wd = sigprop::sim::draw_layer_weights_conditional<double>(s, 77, i, 1);
    const sigprop::sim::MatD X0 = sigprop::sim::draw_input(s, 77, i, ex);
    const auto cf = sigprop::sim::block_forward_caches<float>(arch, wf, 1, X0.cast<float>());
    const auto cd = sigprop::sim::block_forward_caches<double>(arch, wd, 1, X0);
    CHECK(cf[0].logits_unresolved);
    const sigprop::sim::MatD D = sigprop::sim::draw_output_grad(s, 77, i);
    const double gf = sigprop::sim::block_backward_caches<float>(arch, wf, 1, cf, D.cast<float>())
                          .cast<double>()
                          .squaredNorm(),
                 gd = sigprop::sim::block_backward_caches<double>(arch, wd, 1, cd, D).squaredNorm();
    worst_ratio = std::max(worst_ratio, gf / gd);
  }
  CAPTURE(worst_ratio);
  CHECK(worst_ratio > 1e6);
  // The engine says so, and its float profile equals the double one where it matters.
  const auto [pf, pd] = float_and_double(s, 64, 77);
  REQUIRE(pf.warnings.size() == 1);
  CHECK_THAT(pf.warnings[0], Catch::Contains("26 of 64 samples recomputed in double precision") &&
                                 Catch::Contains("first at layer 1"));
  CHECK(pd.warnings.empty());
  SIGPROP_CHECK_CLOSE(pf.at(0, "grad_var"), pd.at(0, "grad_var"), (sigprop::test::Tol{0, 1e-4}));
  // An ordinary float stack never falls back.
  const sigprop::sim::EigenStack<float> plain(sigprop::test::sim_shared::mid_spec({}), 3);
  for (int i = 0; i < 4; ++i) (void)plain.run_sample(i);
  CHECK(plain.logit_fallbacks() == 0);
}

TEST_CASE("cpu float: samples whose tokens collapse below res 1e-5 are recomputed in double", "[sim][parity]") {
  // Post-LN attention with uniform softmax (sigma_qk2 = 0): res shrinks by 1/sqrt(2) per layer
  // once the tokens align, from 0.9 at layer 0 to ~1e-5 near layer 35, ~1e-11 at 75 and ~1e-14
  // at 95. A float stream keeps every token's rounding apart and floors res at ~1e-7 (sim/block.hpp
  // kResDoubleBelow); each sample is recomputed in double from the first layer where its float
  // res is below 1e-5, so the float run's res follows the double one down to 1e-14.
  sigprop::StackSpec s;
  for (const char* a : {"stack.width=256", "stack.heads=4", "stack.tokens=4", "stack.depth=95", "stack.blocks=attn",
                        "stack.norm=post", "stack.mask=none", "init.sigma_qk2=0", "init.sigma_w2=1"})
    sigprop::apply_override(s, a);
  s.validate();
  const auto cond = sigprop::sim::WeightSampling::Conditional;
  const auto ex = sigprop::sim::InputKernel::Exact;
  const sigprop::sim::EigenStack<float> fs(s, 5, sigprop::sim::kWeightCacheBytes, cond, false, ex);
  const sigprop::sim::EigenStack<double> ds(s, 5, sigprop::sim::kWeightCacheBytes, cond, false, ex);
  int first = -1;
  for (int i = 0; i < 4; ++i) {
    const auto f = fs.run_sample(i).values, d = ds.run_sample(i).values;
    CHECK(fs.res_fallbacks() == i + 1);
    CHECK(same_values(f, d));  // the double result, bit for bit
    // The fallback's layer is where the sample's (float, here ~double) res first drops below 1e-5.
    int l = 0;
    while (d[l][sigprop::sim::kRes] >= sigprop::sim::kResDoubleBelow) ++l;
    first = first < 0 ? l : std::min(first, l);
  }
  CHECK(fs.logit_fallbacks() == 0);
  CHECK(fs.res_fallback_layer() == first);
  CHECK(first > 20);
  CHECK(first < 50);
  // What the fallback prevents: the float blocks alone floor res near 1e-7.
  {
    std::vector<double> X = fs.input(0), Xd = ds.input(0);
    for (int l = 1; l <= s.depth; ++l) {
      X = fs.block_forward(0, l, X);
      Xd = ds.block_forward(0, l, Xd);
    }
    const double rf = sigprop::stream_res(X.data(), s.tokens, s.width),
                 rd = sigprop::stream_res(Xd.data(), s.tokens, s.width);
    CAPTURE(rf, rd);
    CHECK(rd < 1e-10);
    CHECK(rf > 1e-8);
  }
  // A stack that stays above 1e-5 stays float.
  sigprop::StackSpec shallow = s;
  shallow.depth = 10;
  const sigprop::sim::EigenStack<float> fs10(shallow, 5, sigprop::sim::kWeightCacheBytes, cond, false, ex);
  for (int i = 0; i < 4; ++i) (void)fs10.run_sample(i);
  CHECK(fs10.res_fallbacks() == 0);
  // The engine says so and marks its profile; its res is the double run's where they fell back.
  const auto [pf, pd] = float_and_double(s, 4, 5);
  // Both also say that conditional sampling resolves the collapse only to ~1e-14 (res < 1e-13 from
  // about layer 80 on).
  int below = 0;
  while (below < s.depth && pd.at(below, "res") >= sigprop::sim::kCondResolvedRes) ++below;
  CHECK(below > 75);
  CHECK(below < 95);
  const std::string cond_warning = fmt::format("res falls below 1e-13 at layer {}: conditional weight sampling", below);
  REQUIRE(pf.warnings.size() == 2);
  CHECK_THAT(pf.warnings[0], Catch::Contains("all 4 samples recomputed in double precision") &&
                                 Catch::Contains(fmt::format("first at layer {}", first)));
  CHECK_THAT(pf.warnings[1], Catch::Contains(cond_warning));
  CHECK(pf.settings.at("res_double_below") == sigprop::sim::kResDoubleBelow);
  CHECK(!pd.settings.contains("res_double_below"));
  REQUIRE(pd.warnings.size() == 1);
  CHECK_THAT(pd.warnings[0], Catch::Contains(cond_warning));
  for (int l : {40, 60, 75, 95}) CHECK(pf.at(l, "res") == pd.at(l, "res"));
  CHECK(pf.at(75, "res") < 1e-10);
  CHECK(pf.at(95, "res") < 1e-13);
  // Explicit sampling has no such limit: no warning.
  sigprop::sim::SimSettings st;
  st.samples = 4;
  st.seed = 5;
  st.backend = "cpu";
  st.precision = "double";
  st.weights_sampling = "explicit";
  CHECK(sigprop::sim::MonteCarloEngine(st).run(s).warnings.empty());
}
