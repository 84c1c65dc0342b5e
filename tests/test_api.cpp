// [api]: the public facade (include/sigprop/api.hpp) against the internal engines it wraps.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/profile.hpp"
#include "core/spec.hpp"
#include "sigprop/api.hpp"
#include "mc/engine.hpp"
#include "theory/clustering.hpp"
#include "theory/engine.hpp"
#include "tests/shared/cli_run.hpp"

namespace api = sigprop::api;
using sigprop::ConfigError;
using sigprop::StackSpec;

namespace {
template <class F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

StackSpec small_spec() {
  StackSpec s;
  s.depth = 6;
  s.tokens = 4;
  s.width = 32;
  s.heads = 4;
  s.qk_scale = sigprop::QkScale::InvDh;
  return s;
}
}  // namespace

TEST_CASE("api specs: TOML text, overrides and errors that name the key", "[api][config]") {
  const StackSpec d = api::default_spec();
  CHECK(api::spec_to_json(d) == api::spec_to_json(StackSpec{}));
  const StackSpec t = api::spec_from_toml("[stack]\ndepth = 48\nqk_scale = \"1/dh\"\n");
  CHECK(t.depth == 48);
  CHECK(t.qk_scale == sigprop::QkScale::InvDh);
  CHECK(api::spec_to_json(api::spec_from_toml(api::spec_to_toml(t))) == api::spec_to_json(t));
  CHECK_THAT(config_error([] { api::spec_from_toml("[stack]\ndepht = 3\n", "mine.toml"); }),
             Catch::Contains("depht") && Catch::Contains("mine.toml"));

  StackSpec s;
  api::apply_overrides(s, {"stack.depth=48", "stack.qk_scale=1/dh", "stack.depth=12"});
  CHECK(s.depth == 12);  // the last one for a key wins
  CHECK(s.qk_scale == sigprop::QkScale::InvDh);
  // all or nothing: a bad override leaves the spec as it was, and the message names the key
  CHECK_THAT(config_error([&] {
               api::apply_overrides(s, {"stack.depth=30", "stack.heads=7"});
             }),
             Catch::Contains("stack.heads"));
  CHECK(s.depth == 12);
  CHECK_THAT(config_error([&] { api::apply_overrides(s, {"stack.depth=0"}); }), Catch::Contains("depth"));
  StackSpec bad;
  bad.rho0 = 2.0;
  CHECK_THAT(config_error([&] { api::validate(bad); }), Catch::Contains("rho0"));
  CHECK_THROWS_AS(api::spec_from_file("/nonexistent/sigprop.toml"), sigprop::IoError);
}

TEST_CASE("api theory: the engine's profile as contiguous columns", "[api]") {
  const StackSpec s = small_spec();
  const sigprop::Profile ref = sigprop::theory::TheoryEngine(sigprop::theory::TheorySettings{}).run(s);
  int calls = 0;
  const api::Profile p = api::theory(s, {}, [&](double f, std::string_view) {
    CHECK(f >= 0.0);
    ++calls;
    return true;
  });
  CHECK(p.engine() == "theory");
  CHECK(p.version() == api::version());
  CHECK(p.to_json() == ref.to_json().dump(2));
  CHECK(p.to_csv() == ref.to_csv());
  REQUIRE(p.layers() == s.depth + 1);
  CHECK(p.metrics() == ref.columns);
  for (const auto& m : ref.columns) {
    const auto v = p.values(m);
    REQUIRE(static_cast<int>(v.size()) == p.layers());
    const auto r = ref.series(m);
    for (int l = 0; l < p.layers(); ++l) CHECK((v[l] == r[l] || (std::isnan(v[l]) && std::isnan(r[l]))));
  }
  CHECK(std::isnan(p.values("update_ratio")[0]));
  CHECK(p.has("q"));
  CHECK_FALSE(p.has("q_se"));  // 1/dh attention: no sampled integral, no standard errors
  CHECK_THAT(config_error([&] { (void)p.values("qq"); }), Catch::Contains("\"qq\"") && Catch::Contains("rho"));
  CHECK(api::spec_to_json(p.spec()) == api::spec_to_json(s));
  CHECK(p.spec_json() == api::spec_to_json(s));
  CHECK(api::spec_to_json(api::spec_from_toml(p.spec_toml())) == api::spec_to_json(s));

  // copies own their data
  api::Profile copy = p;
  {
    api::Profile moved = api::theory(s);
    copy = moved;
  }
  CHECK(copy.to_json() == p.to_json());

  api::TheorySettings bad;
  bad.attn_method = "sobol";
  CHECK_THAT(config_error([&] { (void)api::theory(s, bad); }), Catch::Contains("TheorySettings.attn_method"));
}

TEST_CASE("api simulate: the CLI's engine, one thread by default, same numbers for any thread count",
          "[api][sim][repro]") {
  const StackSpec s = small_spec();
  api::SimulateSettings st;
  st.samples = 6;
  st.seed = 11;
  CHECK(st.threads == 1);
  const api::Profile one = api::simulate(s, st);
  st.threads = 3;
  const api::Profile three = api::simulate(s, st);
  sigprop::sim::SimSettings ref_st;
  ref_st.samples = 6;
  ref_st.seed = 11;
  ref_st.backend = "cpu";
  ref_st.precision = "double";
  ref_st.threads = 2;
  const sigprop::Profile ref = sigprop::sim::MonteCarloEngine(ref_st).run(s);
  CHECK(one.engine() == "simulate");
  for (const auto& m : ref.columns) {
    const auto a = one.values(m), b = three.values(m);
    const auto r = ref.series(m);
    for (int l = 0; l < one.layers(); ++l) {
      CHECK((a[l] == r[l] || (std::isnan(a[l]) && std::isnan(r[l]))));
      CHECK((a[l] == b[l] || (std::isnan(a[l]) && std::isnan(b[l]))));
    }
  }
  CHECK(one.has("q_se"));
  CHECK_THAT(one.settings_json(), Catch::Contains("\"seed\":11"));
  st.backend = "gpu";
  CHECK_THAT(config_error([&] { (void)api::simulate(s, st); }), Catch::Contains("gpu"));
}

TEST_CASE("api ode: the three kinds, and cancellation through the progress callback", "[api][ode]") {
  StackSpec s = small_spec();
  s.branch_scale.kind = sigprop::BranchScaleKind::InvSqrtL;
  api::OdeSettings cont;
  const api::Profile c = api::ode(s, cont);
  CHECK(c.engine() == "continuum");
  CHECK(c.layers() == s.depth + 1);

  api::OdeSettings cl;
  cl.kind = api::OdeKind::Clustering;
  cl.points = 10;
  cl.t_end = 2.0;
  const api::Profile k = api::ode(s, cl);
  sigprop::theory::ClusteringSettings ref_cl;
  ref_cl.points = 10;
  ref_cl.t_end = 2.0;
  CHECK(k.to_json() == sigprop::theory::clustering_profile(s, ref_cl).to_json().dump(2));
  CHECK_THROWS_AS(api::ode(s, cl, [](double, std::string_view) { return false; }), sigprop::CancelledError);
  cl.variant = "softmax";
  CHECK_THAT(config_error([&] { (void)api::ode(s, cl); }), Catch::Contains("OdeSettings.variant"));

  api::OdeSettings sh;
  sh.kind = api::OdeKind::ShapedSde;
  sh.paths = 50;
  sh.samples = 0;
  const api::Profile p = api::ode(s, sh);
  CHECK(p.engine() == "shaped-sde");
  sh.model = "transformer";
  CHECK_THAT(config_error([&] { (void)api::ode(s, sh); }), Catch::Contains("OdeSettings.model"));
}

TEST_CASE("api: concurrent calls with different specs equal serial calls", "[api][repro]") {
  std::vector<StackSpec> specs(4, small_spec());
  for (int i = 0; i < 4; ++i) specs[i].depth = 3 + i;
  specs[3].activation = sigprop::Activation::Tanh;
  const auto run = [](const StackSpec& s) {
    api::SimulateSettings st;
    st.samples = 3;
    st.seed = 5;
    return api::theory(s).to_json() + api::simulate(s, st).to_json();
  };
  std::vector<std::string> serial, parallel(specs.size());
  for (const auto& s : specs) serial.push_back(run(s));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < specs.size(); ++i) threads.emplace_back([&, i] { parallel[i] = run(specs[i]); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < specs.size(); ++i) CHECK(parallel[i] == serial[i]);
}

namespace {
// A dense product stack (the free-probability theory's domain), as --set overrides.
const std::vector<std::string> kDenseSets = {"stack.blocks=dense",    "stack.norm=none",   "stack.residual=false",
                                             "stack.activation=tanh", "init.sigma_w2=1.5", "stack.depth=5",
                                             "stack.tokens=2",        "stack.heads=1",     "stack.width=16"};

std::string set_flags(const std::vector<std::string>& sets) {
  std::string out;
  for (const auto& s : sets) out += "--set " + s + " ";
  return out;
}

// `sigprop spectrum <args> --json F -q`'s file, "" (and a failed CHECK) when the command fails.
std::string cli_spectrum_json(const std::string& args) {
  namespace fs = std::filesystem;
  const fs::path dir = sigprop::test::cli::scratch_dir("api_spectrum");
  const fs::path out = dir / "p.json";
  fs::remove(out);
  const auto r = sigprop::test::cli::run_sigprop("spectrum " + args + " -q --json " + out.string(), dir);
  INFO(r.err);
  CHECK(r.code == 0);
  return sigprop::test::cli::slurp(out);
}
}  // namespace

TEST_CASE("api spectrum: the CLI's profile, theory and simulate, given and default grids", "[api][spectrum][cli]") {
  StackSpec dense;
  api::apply_overrides(dense, kDenseSets);
  const std::string flags = set_flags(kDenseSets);

  SECTION("theory, default grid") {
    int calls = 0;
    const api::Profile p = api::spectrum(dense, {}, [&](double, std::string_view) { return ++calls > 0; });
    CHECK(p.engine() == "spectrum-theory");
    CHECK(calls > 0);
    CHECK(p.to_json() + "\n" == cli_spectrum_json(flags));
  }
  SECTION("theory, grid and panels") {
    api::SpectrumSettings st;
    st.grid_lo = 0.05;
    st.grid_hi = 10;
    st.grid_points = 50;
    st.panels = 16;
    CHECK(api::spectrum(dense, st).to_json() + "\n" == cli_spectrum_json(flags + "--grid 0.05:10:50 --panels 16"));
  }
  SECTION("simulate, grid") {
    api::SpectrumSettings st;
    st.engine = "simulate";
    st.samples = 3;
    st.seed = 9;
    st.grid_lo = 0.05;
    st.grid_hi = 10;
    st.grid_points = 50;
    const api::Profile p = api::spectrum(dense, st);
    CHECK(p.engine() == "spectrum-simulate");
    CHECK(p.has("sv2_mean_se"));
    CHECK(p.to_json() + "\n" == cli_spectrum_json(flags + "--engine simulate --samples 3 --seed 9 --grid 0.05:10:50"));
  }
  SECTION("simulate, default grid from the theory; threads change no number") {
    api::SpectrumSettings st;
    st.engine = "simulate";
    st.samples = 4;
    st.seed = 2;
    st.jacobian_method = "explicit";
    const std::string one = api::spectrum(dense, st).to_json();
    st.threads = 3;
    CHECK(api::spectrum(dense, st).to_json() == one);
    CHECK(one + "\n" == cli_spectrum_json(flags + "--engine simulate --samples 4 --seed 2 --method explicit"));
  }
  SECTION("simulate, a stack the theory does not cover: the pilot sample's grid") {
    StackSpec attn = small_spec();
    attn.depth = 2;
    attn.width = 8;
    attn.tokens = 2;
    attn.heads = 2;
    api::SpectrumSettings st;
    st.engine = "simulate";
    st.samples = 2;
    st.seed = 4;
    st.map = "full";
    const api::Profile p = api::spectrum(attn, st);
    CHECK(p.to_json() + "\n" ==
          cli_spectrum_json("--set stack.depth=2 --set stack.width=8 --set stack.tokens=2 --set stack.heads=2 "
                            "--set stack.qk_scale=1/dh --engine simulate --samples 2 --seed 4 --map full"));
    CHECK_THAT(config_error([&] { (void)api::spectrum(attn, {}); }), Catch::Contains("stack.blocks"));
  }
}

TEST_CASE("api spectrum: errors name the settings field; cancellation", "[api][spectrum][config]") {
  StackSpec dense;
  api::apply_overrides(dense, kDenseSets);
  api::SpectrumSettings st;
  st.engine = "simulat";
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.engine"));
  st = {};
  st.grid_lo = 0.1;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.grid_lo"));
  st.grid_hi = 0.05;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("grid_lo < grid_hi"));
  st.grid_lo = 0;
  st.grid_hi = 1;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("x > 0"));
  st = {};
  st.grid_points = 1;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.grid_points"));
  st = {};
  st.panels = 0;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.panels"));
  st = {};
  st.engine = "simulate";
  st.map = "tokens";
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.map"));
  st.map.reset();
  st.jacobian_method = "svd";
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }),
             Catch::Contains("SpectrumSettings.jacobian_method"));
  st.jacobian_method.reset();
  st.threads = -1;
  CHECK_THAT(config_error([&] { (void)api::spectrum(dense, st); }), Catch::Contains("SpectrumSettings.threads"));

  const auto stop = [](double, std::string_view) { return false; };
  CHECK_THROWS_AS(api::spectrum(dense, {}, stop), sigprop::CancelledError);
  st = {};
  st.engine = "simulate";
  st.samples = 2;
  CHECK_THROWS_AS(api::spectrum(dense, st, stop), sigprop::CancelledError);
}
