// [progress] Progress and cancellation (core/progress.hpp) in every engine: the fraction never
// decreases, stays in [0, 1] and reaches 1; a callback that says stop after k calls gets no
// further call, the engine throws CancelledError naming itself, and file-writing paths (report,
// train) leave only what a resume can use. [concurrency]: engines run from several threads at
// once give the numbers of serial runs.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "reports/config.hpp"
#include "reports/sweep.hpp"
#include "shared/cli_run.hpp"
#include "shared/tiny_fixtures.hpp"
#include "sim/jacobian.hpp"
#include "theory/clustering.hpp"
#include "theory/continuum.hpp"
#include "theory/engine.hpp"
#include "theory/meanfield.hpp"
#include "theory/shaped_sde.hpp"
#include "theory/spectrum.hpp"
#include "validate/measure.hpp"
#include "validate/train.hpp"

namespace fs = std::filesystem;
using namespace sigprop;

namespace {

fs::path scratch() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("sigprop_progress_test_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// Records every call; says stop at call number `stop_at` (0: never).
struct Recorder {
  std::vector<double> fractions;
  int stop_at = 0;
  ProgressFn fn() {
    return [this](double f, std::string_view) {
      fractions.push_back(f);
      return stop_at == 0 || static_cast<int>(fractions.size()) < stop_at;
    };
  }
};

void check_progress(const std::vector<double>& f) {
  REQUIRE_FALSE(f.empty());
  for (std::size_t i = 0; i < f.size(); ++i) {
    INFO("call " << i << ": " << f[i]);
    CHECK(f[i] >= 0.0);
    CHECK(f[i] <= 1.0);
    if (i > 0) CHECK(f[i] >= f[i - 1]);
  }
  CHECK(f.back() == 1.0);
}

// Runs `run` with a callback that stops at call k: CancelledError naming `engine`, no call after it.
template <class Run>
void check_cancel(const std::string& engine, int k, Run&& run) {
  Recorder r;
  r.stop_at = k;
  try {
    run(r.fn());
    FAIL(engine << ": no CancelledError");
  } catch (const CancelledError& e) {
    CHECK_THAT(e.what(), Catch::StartsWith(engine + ":"));
  }
  CHECK(r.fractions.size() == static_cast<std::size_t>(k));
}

StackSpec small(std::vector<std::string> sets) {
  sets.insert(sets.begin(),
              {"stack.depth=4", "stack.width=16", "stack.heads=2", "stack.tokens=4", "stack.mlp_ratio=2"});
  return resolve_spec("", sets);
}

using sigprop::test::cli::files_under;
using sigprop::test::cli::Run;

// Runs a shell command line (the CLI's path is $SP), stdout and stderr captured.
Run shell(const std::string& script) {
  return sigprop::test::cli::run_shell("SP=" + std::string(SIGPROP_CLI_PATH) + "; " + script, scratch());
}

}  // namespace

TEST_CASE("theory: progress per layer of both passes, cancel at the next layer", "[progress]") {
  // equicorrelated fast path, full T x T recursion, and sampled attention in error batches
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"stack.blocks=mlp"}, {"stack.qk_scale=1/dh", "stack.mask=causal"}, {"init.sigma_qk2=1"}}) {
    INFO(sets.back());
    const StackSpec s = small(sets);
    theory::TheorySettings ts;
    ts.attn.samples = 64;
    ts.error_batches = 2;
    Recorder r;
    theory::TheoryEngine watched(ts);
    watched.set_progress(r.fn());
    const Profile got = watched.run(s);
    check_progress(r.fractions);
    CHECK(r.fractions.size() >= static_cast<std::size_t>(2 * s.depth));
    CHECK(got.to_json() == theory::TheoryEngine(ts).run(s).to_json());  // the callback cannot change a number
    check_cancel("theory", 3, [&](ProgressFn fn) {
      theory::TheoryEngine eng(ts);
      eng.set_progress(std::move(fn));
      (void)eng.run(s);
    });
  }
}

TEST_CASE("simulate: progress per sample from worker threads, cancel stops the pool", "[progress]") {
  const StackSpec s = small({});
  for (const char* backend : {"reference", "cpu"}) {
    INFO(backend);
    sim::SimSettings st;
    st.samples = 6;
    st.seed = 2;
    st.backend = backend;
    st.threads = 3;
    Recorder r;
    sim::MonteCarloEngine eng(st);
    eng.set_progress(r.fn());
    (void)eng.run(s);
    check_progress(r.fractions);
    CHECK(r.fractions.size() == 6);
    check_cancel("simulate", 2, [&](ProgressFn fn) {
      sim::MonteCarloEngine e(st);
      e.set_progress(std::move(fn));
      (void)e.run(s);
    });
  }
}

TEST_CASE("spectrum: theory density per grid point, Monte Carlo per sample", "[progress]") {
  const StackSpec s = small({"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=relu",
                             "init.sigma_w2=2", "stack.heads=1"});
  const std::vector<double> grid{0.5, 1.0, 2.0, 4.0};
  Recorder r;
  (void)theory::spectrum_theory_profile(s, grid, {}, r.fn());
  check_progress(r.fractions);
  check_cancel("spectrum", 2, [&](ProgressFn fn) { (void)theory::spectrum_theory_profile(s, grid, {}, fn); });
  sim::JacobianSettings js;
  js.samples = 4;
  js.threads = 2;
  Recorder m;
  (void)sim::jacobian_profile(s, js, grid, nullptr, m.fn());
  check_progress(m.fractions);
  check_cancel("spectrum", 2, [&](ProgressFn fn) { (void)sim::jacobian_profile(s, js, grid, nullptr, fn); });
}

TEST_CASE("ode: continuum, clustering and shaped-sde report and cancel", "[progress]") {
  const StackSpec s = small({"stack.branch_scale=1/sqrt(L)", "stack.blocks=mlp"});
  Recorder r;
  theory::ContinuumEngine cont;
  cont.set_progress(r.fn());
  (void)cont.run(s);
  check_progress(r.fractions);
  check_cancel("continuum", 2, [&](ProgressFn fn) {
    theory::ContinuumEngine e;
    e.set_progress(std::move(fn));
    (void)e.run(s);
  });

  theory::ClusteringSettings cs;
  cs.points = 10;
  cs.t_end = 2.0;
  Recorder c;
  (void)theory::clustering_profile(s, cs, c.fn());
  check_progress(c.fractions);
  check_cancel("clustering", 3, [&](ProgressFn fn) { (void)theory::clustering_profile(s, cs, fn); });

  theory::ShapedSettings ss;
  ss.paths = 20;
  ss.samples = 10;
  const StackSpec sh = small({"stack.width=32", "stack.depth=8", "stack.tokens=3"});
  Recorder p;
  (void)theory::shaped_profile(sh, ss, p.fn());
  check_progress(p.fractions);
  check_cancel("shaped-sde", 25, [&](ProgressFn fn) { (void)theory::shaped_profile(sh, ss, fn); });
}

TEST_CASE("phase: progress per grid point", "[progress]") {
  Recorder r;
  (void)theory::phase_diagram(Activation::Relu, 1.0, 3.0, 3, 0.0, 0.1, 2, 48, r.fn());
  check_progress(r.fractions);
  CHECK(r.fractions.size() == 6);
  check_cancel("phase", 4,
               [&](ProgressFn fn) { (void)theory::phase_diagram(Activation::Relu, 1.0, 3.0, 3, 0.0, 0.1, 2, 48, fn); });
}

TEST_CASE("validate: stages and ensemble members report, cancel inside a stage", "[progress]") {
  const validate::ModelConfig cfg = sigprop::test::tiny_model_config();
  const validate::Model<float> m = validate::Model<float>::initial(cfg, 1000);
  const std::vector<unsigned char> text = sigprop::test::tiny_text();
  validate::ValidateSettings st;
  st.tokens = 64;
  st.ensemble = 3;
  st.samples = 4;
  st.theory = true;
  st.threads = 2;
  Recorder r;
  (void)validate::validate_model(m, text, st, r.fn());
  check_progress(r.fractions);
  // measurement (8 sequences), theory (per layer of each pass), simulate (4 samples), ensemble (3 models), done
  const int calls = static_cast<int>(r.fractions.size());
  CHECK(calls >= 8 + 4 + 4 + 3 + 1);
  check_cancel("measured", 1, [&](ProgressFn fn) { (void)validate::validate_model(m, text, st, fn); });
  check_cancel("theory", 8 + 1, [&](ProgressFn fn) { (void)validate::validate_model(m, text, st, fn); });
  check_cancel("simulate", calls - 4, [&](ProgressFn fn) { (void)validate::validate_model(m, text, st, fn); });
  check_cancel("validate", calls - 1, [&](ProgressFn fn) { (void)validate::validate_model(m, text, st, fn); });
}

TEST_CASE("train: cancel at a step boundary leaves a resumable folder", "[progress]") {
  const validate::ModelConfig cfg = sigprop::test::tiny_model_config();
  const fs::path corpus = scratch() / "corpus.txt";
  {
    std::ofstream out(corpus, std::ios::binary);
    for (int i = 0; i < 600; ++i) out << "the river rose and the boards were lifted. ";
  }
  validate::TrainSettings s;
  s.steps = 6;
  s.batch = 4;
  s.val_every = 3;
  s.val_batches = 1;
  s.checkpoint_every = 2;
  s.seed = 5;
  const fs::path whole = scratch() / "whole", parts = scratch() / "parts";
  Recorder r;
  const validate::TrainOutcome ref = validate::train(cfg, s, corpus, whole, {}, r.fn());
  check_progress(r.fractions);
  CHECK(r.fractions.size() == 6);
  check_cancel("train", 3, [&](ProgressFn fn) { (void)validate::train(cfg, s, corpus, parts, {}, fn); });
  // No final checkpoint, no temporary left behind: only what a kill after step 3 would leave.
  CHECK_FALSE(fs::exists(parts / "final.safetensors"));
  CHECK(fs::exists(parts / "ckpt_step2.safetensors"));
  for (const fs::path& f : files_under(parts)) {
    INFO(f.string());
    CHECK(f.filename().string().front() != '.');  // core/files.cpp's temporaries are dot files
  }
  const validate::TrainOutcome resumed = validate::train(cfg, s, corpus, parts);
  CHECK(resumed.start_step == 2);
  CHECK(resumed.last_val == ref.last_val);
}

TEST_CASE("report: cancel keeps finished cells, writes nothing else, and the sweep resumes", "[progress]") {
  const char* text = R"(
[report]
title = "cancel sweep"
[stack]
tokens = 4
width = 16
heads = 2
qk_scale = "1/dh"
[sweep]
stack.depth = [2, 3, 4]
[engines.theory]
[engines.simulate]
samples = 4
seed = 3
)";
  const reports::ReportConfig cfg = reports::parse_report_config(text, "cancel.toml");
  const auto jobs = reports::make_jobs(cfg, reports::expand_cells(cfg));
  REQUIRE(jobs.size() == 6);
  const fs::path out = scratch() / "report";
  // Stop at the first report after a finished cell: exactly one job is done.
  std::vector<double> seen;
  reports::RunOptions opt;
  opt.progress = [&](double f, std::string_view m) {
    seen.push_back(f);
    return m.find("cells of") == std::string_view::npos;
  };
  CHECK_THROWS_AS(reports::run_jobs(cfg, jobs, out, opt), CancelledError);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
  const std::vector<fs::path> kept = files_under(out);
  CHECK(kept.size() == 3);  // one job's .json, .csv and .timing.json, no temporary, no page
  for (const fs::path& f : kept) CHECK(f.parent_path() == "cells");
  int done = 0;
  for (const auto& j : jobs) done += reports::job_done(out, j) ? 1 : 0;
  CHECK(done == 1);
  // Resume: the finished job is skipped, the others run, and the fraction reaches 1.
  Recorder r;
  opt.progress = r.fn();
  const reports::RunStats st = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(st.skipped == 1);
  CHECK(st.ran == 5);
  check_progress(r.fractions);
}

TEST_CASE("CLI: --progress draws the line, Ctrl-C cancels with exit 130 and writes nothing", "[progress][cli]") {
  const Run t = shell("$SP theory --progress --set stack.depth=6 --json " + (scratch() / "t.json").string());
  CHECK(t.code == 0);
  CHECK_THAT(t.err, Catch::Contains("theory: 100%"));
  // A run of minutes, interrupted after a second: it stops at its next sample.
  const fs::path json = scratch() / "never.json";
  const Run c = shell(
      "( $SP simulate --set stack.width=256 --set stack.depth=24 --samples 65536 --seed 1 --threads 1 "
      "--json " +
      json.string() + " -q & pid=$!; sleep 1; kill -INT $pid; wait $pid; exit $? )");
  CHECK(c.code == 130);
  CHECK_THAT(c.err, Catch::Contains("cancelled"));
  CHECK_FALSE(fs::exists(json));
}
