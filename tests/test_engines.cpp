// [engines]: every engine behind the Engine interface (core/engine.hpp). The wrappers of the
// spectrum, clustering and shaped-SDE free functions give the free function's Profile, pass the
// set_progress callback through (its calls are the free function's), and a callback that says
// stop makes run() throw CancelledError.
#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/engine.hpp"
#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"
#include "shared/cli_run.hpp"
#include "shared/tiny_fixtures.hpp"
#include "sim/jacobian.hpp"
#include "theory/clustering.hpp"
#include "theory/shaped_sde.hpp"
#include "theory/spectrum.hpp"
#include "validate/measure.hpp"
#include "validate/model.hpp"
#include "validate/train.hpp"

using namespace sigprop;

namespace {

const std::vector<std::string> kDense = {"stack.blocks=dense",    "stack.norm=none",   "stack.residual=false",
                                         "stack.activation=tanh", "init.sigma_w2=1.5", "stack.depth=5",
                                         "stack.tokens=2",        "stack.heads=1",     "stack.width=16"};

const std::vector<std::string> kSmall = {"stack.depth=4",  "stack.width=16",    "stack.heads=2",
                                         "stack.tokens=4", "stack.mlp_ratio=2", "stack.qk_scale=1/dh"};

// Counts the callback's calls and the fractions it saw.
struct Counter {
  std::vector<double> fractions;
  ProgressFn fn() {
    return [this](double f, std::string_view) {
      fractions.push_back(f);
      return true;
    };
  }
};

// engine.run(spec) is free(spec, progress): the same JSON, the same progress calls, and the
// engine's name is the Profile's; a callback that says stop at once cancels the run.
template <class Free>
void check_engine(Engine& engine, const StackSpec& spec, Free&& free) {
  Counter by_engine, by_free;
  engine.set_progress(by_engine.fn());
  const Profile got = engine.run(spec);
  const Profile want = free(by_free.fn());
  CHECK(got.engine == engine.name());
  CHECK(got.to_json().dump() == want.to_json().dump());
  CHECK_FALSE(by_engine.fractions.empty());
  CHECK(by_engine.fractions == by_free.fractions);

  int calls = 0;
  engine.set_progress([&](double, std::string_view) {
    ++calls;
    return false;
  });
  CHECK_THROWS_AS(engine.run(spec), CancelledError);
  CHECK(calls == 1);
  engine.set_progress(nullptr);  // no callback: runs to the end again
  CHECK(engine.run(spec).to_json().dump() == want.to_json().dump());
}

}  // namespace

TEST_CASE("SpectrumEngine is spectrum_theory_profile on its grid and settings", "[engines][spectrum]") {
  const StackSpec s = resolve_spec("", kDense);
  theory::SpectrumSettings st;
  st.panels = 16;
  const std::vector<double> grid = theory::default_spectrum_grid(theory::spectrum_moments(s, st), 12);
  theory::SpectrumEngine eng(grid, st);
  CHECK(eng.name() == "spectrum-theory");
  check_engine(eng, s, [&](const ProgressFn& p) { return theory::spectrum_theory_profile(s, grid, st, p); });
}

TEST_CASE("SpectrumSimulateEngine is jacobian_profile on its grid and settings", "[engines][spectrum][sim]") {
  const StackSpec s = resolve_spec("", kDense);
  sim::JacobianSettings st;
  st.samples = 3;
  st.seed = 7;
  const std::vector<double> grid = {0.1, 0.5, 1.0, 2.0, 4.0};
  sim::SpectrumSimulateEngine eng(st, grid);
  CHECK(eng.name() == "spectrum-simulate");
  check_engine(eng, s, [&](const ProgressFn& p) { return sim::jacobian_profile(s, st, grid, nullptr, p); });
}

TEST_CASE("ClusteringEngine is clustering_profile", "[engines][ode]") {
  const StackSpec s = resolve_spec("", kSmall);
  theory::ClusteringSettings st;
  st.points = 8;
  st.t_end = 1.5;
  theory::ClusteringEngine eng(st);
  CHECK(eng.name() == "clustering");
  check_engine(eng, s, [&](const ProgressFn& p) { return theory::clustering_profile(s, st, p); });
}

TEST_CASE("ShapedSdeEngine is shaped_profile", "[engines][ode]") {
  const StackSpec s = resolve_spec("", kSmall);
  theory::ShapedSettings st;
  st.paths = 40;
  st.samples = 10;
  st.seed = 3;
  theory::ShapedSdeEngine eng(st);
  CHECK(eng.name() == "shaped-sde");
  check_engine(eng, s, [&](const ProgressFn& p) { return theory::shaped_profile(s, st, p); });
}

TEST_CASE("the engines run through an Engine pointer", "[engines]") {
  const StackSpec s = resolve_spec("", kDense);
  std::vector<std::unique_ptr<Engine>> engines;
  engines.push_back(std::make_unique<theory::SpectrumEngine>(std::vector<double>{0.5, 1.0, 1.5}));
  sim::JacobianSettings js;
  js.samples = 2;
  engines.push_back(std::make_unique<sim::SpectrumSimulateEngine>(js, std::vector<double>{0.5, 1.0, 1.5}));
  for (auto& e : engines) {
    INFO(e->name());
    const Profile p = e->run(s);
    CHECK(p.engine == e->name());
    CHECK(p.layers() == s.depth + 1);
    CHECK(p.has("sv2_mean"));
  }
}

TEST_CASE("MeasureEngine measures a model behind the Engine interface, as validate does", "[engines][validate]") {
  const validate::ModelConfig cfg = sigprop::test::tiny_model_config();
  const validate::Model<float> m = validate::Model<float>::initial(cfg, 1000);
  const std::vector<unsigned char> text = sigprop::test::tiny_text();
  validate::MeasureSettings ms;
  ms.tokens = 64;  // 8 sequences of 8 tokens
  ms.threads = 2;
  ms.corpus = "text";
  validate::MeasureEngine<float> eng(m, text, ms);
  CHECK(eng.spec().tokens == 8);
  CHECK(eng.sequences().count() == 8);

  // validate's measured profile is the engine's, through an Engine reference
  validate::ValidateSettings vs;
  vs.tokens = 64;
  vs.threads = 2;
  vs.corpus = "text";
  vs.theory = false;
  vs.samples = 0;
  vs.ensemble = 0;
  const validate::Validation v = validate::validate_model(m, text, vs);
  Engine& e = eng;
  Counter c;
  e.set_progress(c.fn());
  StackSpec in = eng.spec();
  in.q0 = 7.0;  // input.q0 and input.rho0 are measured, not compared
  in.rho0 = 0.25;
  const Profile p = e.run(in);
  CHECK(p.engine == e.name());
  CHECK(p.to_json().dump() == v.measured.to_json().dump());
  CHECK(eng.sequence_loss() == v.sequence_loss);
  CHECK(p.spec.q0 == p.at(0, "q"));
  CHECK(c.fractions.size() == 8);  // once per sequence
  CHECK(c.fractions.back() == 1.0);

  // another architecture is refused, naming the key
  StackSpec wide = eng.spec();
  wide.width = 32;
  CHECK_THROWS_WITH(e.run(wide), Catch::StartsWith("stack.width: the spec has 32") && Catch::Contains("16"));
  StackSpec longer = eng.spec();
  longer.tokens = 16;
  CHECK_THROWS_WITH(e.run(longer), Catch::StartsWith("stack.tokens:"));

  // a callback that says stop cancels, naming the engine
  int calls = 0;
  e.set_progress([&](double, std::string_view) {
    ++calls;
    return false;
  });
  CHECK_THROWS_WITH(e.run(eng.spec()), Catch::StartsWith("measured:"));
  CHECK(calls == 1);

  // from files: a checkpoint and a corpus on disk give the same profile (names aside)
  const auto dir = test::cli::scratch_dir("measure_engine");
  validate::save_checkpoint(dir / "m.safetensors", m);
  test::cli::write_text(dir / "text.txt", std::string(text.begin(), text.end()));
  ms.corpus.clear();
  const auto loaded =
      validate::MeasureEngine<float>::from_files((dir / "m.safetensors").string(), (dir / "text.txt").string(), ms);
  const Profile q = loaded->run(loaded->spec());
  CHECK(q.settings["corpus"] == (dir / "text.txt").string());
  Profile q_named = q;
  q_named.settings = p.settings;
  CHECK(q_named.to_json().dump() == p.to_json().dump());
  CHECK_THROWS_WITH(validate::MeasureEngine<float>::from_files((dir / "none.safetensors").string(),
                                                               (dir / "text.txt").string(), ms, "--checkpoint"),
                    Catch::StartsWith("--checkpoint ") && Catch::Contains("none.safetensors"));
  CHECK_THROWS_WITH(
      validate::MeasureEngine<float>::from_files((dir / "m.safetensors").string(), (dir / "none.txt").string(), ms),
      Catch::StartsWith("corpus:"));
  std::filesystem::remove_all(dir);
}
