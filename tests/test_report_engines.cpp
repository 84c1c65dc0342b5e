// [report] Reports that run any engine (issue 12): the [engines.ode|sde|clustering|spectrum|
// spectrum_simulate] tables and their named errors, a report of examples/report_engines.toml
// (all seven engines, about 2 s) with each engine's cells, columns and overlays, resume when an
// engine is added, and the ode overlay equal to a direct ContinuumEngine call.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <unistd.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/profile.hpp"
#include "reports/config.hpp"
#include "reports/report.hpp"
#include "reports/sweep.hpp"
#include "theory/continuum.hpp"
#include "validate/measure.hpp"
#include "validate/model.hpp"

namespace fs = std::filesystem;
using namespace sigprop;

namespace {

fs::path engines_scratch() {
  static fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("sigprop_report_engines_test_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string config_error(const std::string& text) {
  try {
    reports::parse_report_config(text, "bad.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError for:\n" << text);
  return "";
}

/// A residual dense tanh stack with 1/sqrt(L) branches: every engine can run it.
const char* kBase = R"TOML(
[stack]
tokens = 4
width = 16
heads = 1
blocks = "dense"
norm = "none"
branch_scale = "1/sqrt(L)"
activation = "tanh"
[sweep]
stack.depth = [2, 4]
)TOML";

/// profiles.csv as rows of named fields (no field of these reports holds a comma).
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> head;
  std::stringstream hs(line);
  for (std::string f; std::getline(hs, f, ',');) head.push_back(f);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::map<std::string, std::string> r;
    std::stringstream ls(line);
    std::string f;
    for (size_t i = 0; i < head.size(); ++i) {
      if (!std::getline(ls, f, ',')) f.clear();
      r[head[i]] = f;
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace

TEST_CASE("report engines: bad [engines.*] tables name the key", "[report][config]") {
  struct Case {
    std::string text, expect;
  };
  const std::string b = kBase;
  std::vector<Case> cases{
      {b + "[engines.odee]\n", "did you mean \"engines.ode\""},
      {b + "[engines.gpu]\n", "spectrum_simulate"},  // the list of valid engines
      {b + "[engines.ode]\nabs_tol = 0\n", "engines.ode.abs_tol: must be finite and in (0"},
      {b + "[engines.ode]\nstep = 4\n", "did you mean \"engines.ode.steps\""},
      {b + "[engines.ode]\nfoo = 1\n", "allowed: enabled, abs_tol, rel_tol, max_evals, attn_samples, steps, quad_order"},
      {b + "[engines.sde]\ngamma2 = 2\n", "engines.sde.gamma2: must be finite and in (0, 1]"},
      {b + "[engines.sde]\npaths = 1\n", "engines.sde.paths: must be in [2, 65535]"},
      {b + "[engines.sde]\nmodel = \"rnn\"\n", "engines.sde.model: unknown value \"rnn\"; allowed: \"mlp\", \"attn\""},
      {b + "[engines.clustering]\nvariant = \"x\"\n", "engines.clustering.variant"},
      {b + "[engines.clustering]\nt_end = -1\n", "engines.clustering.t_end"},
      {b + "[engines.clustering]\nbeta = \"1\"\n", "engines.clustering.beta: expected a number"},
      {b + "[engines.spectrum]\ngrid_points = 1\n", "engines.spectrum.grid_points: must be in [2, 10000000]"},
      {b + "[engines.spectrum_simulate]\nmap = \"half\"\n", "engines.spectrum_simulate.map"},
      {b + "[engines.spectrum_simulate]\njacobian_method = \"lu\"\n", "engines.spectrum_simulate.jacobian_method"},
      {b + "[engines.ode]\nenabled = false\n", "no engine enabled"},
      {b + "[figures]\nmetrics = [\"sv2_men\"]\n", "did you mean \"sv2_mean\""},
      // A spec an engine cannot run fails at parse time, naming the cell, the engine and the key.
      {std::string(kBase).replace(std::string(kBase).find("1/sqrt(L)"), 9, "1") + "[engines.ode]\n",
       "sweep cell \"depth=2\" with [engines.ode]: "},
      {b + "[engines.spectrum]\n[[sweep.variants]]\nlabel = \"mlp\"\nstack.blocks = \"mlp\"\n",
       "with [engines.spectrum]: "},
      {b + "[engines.sde]\n[[sweep.variants]]\nlabel = \"narrow\"\nstack.width = 2\n",
       "with [engines.sde]: stack.width = 2"},
      {"[atlas]\nconfigurations = 2\n[engines.theory]\n[engines.simulate]\n[engines.ode]\n",
       "[atlas] runs [engines.theory] and [engines.simulate] only"},
  };
  for (auto& c : cases) {
    INFO(c.text);
    std::string msg = config_error(c.text);
    CHECK_THAT(msg, Catch::Contains(c.expect));
    CHECK_THAT(msg, Catch::Contains("bad.toml"));
  }
  // The failing ode cell names the spec key the continuum limit needs.
  CHECK_THAT(config_error(std::string(kBase).replace(std::string(kBase).find("1/sqrt(L)"), 9, "1") + "[engines.ode]\n"),
             Catch::Contains("stack.branch_scale"));
}

TEST_CASE("report engines: every setting parses, and the resolved config parses back to itself", "[report][config]") {
  const std::string text = std::string(kBase) + R"TOML(
[engines.ode]
abs_tol = 1e-9
rel_tol = 1e-8
max_evals = 5000
attn_samples = 64
steps = 8
quad_order = 24
[engines.sde]
seed = 4
model = "attn"
shape_c = 0.5
gamma2 = 0.25
tau0 = 2
key_dim = 8
paths = 10
samples = 3
substeps = 2
[engines.clustering]
abs_tol = 1e-8
rel_tol = 1e-7
max_evals = 3000
seed = 7
variant = "usa"
beta = 2.5
t_end = 3
points = 6
equiangular = true
[engines.spectrum]
panels = 16
grid_points = 30
[engines.spectrum_simulate]
samples = 3
seed = 2
map = "full"
token = 1
jacobian_method = "backward"
grid_points = 40
)TOML";
  auto cfg = reports::parse_report_config(text, "all.toml");
  CHECK(reports::enabled_engines(cfg) == 5);
  CHECK(cfg.ode.settings.fixed_steps == 8);
  CHECK(cfg.ode.settings.max_evals == 5000);
  CHECK(cfg.sde.settings.model == theory::ShapedModel::Attn);
  CHECK(cfg.sde.settings.tau0 == 2.0);
  CHECK(cfg.clustering.settings.variant == theory::AttnDynamics::USA);
  CHECK(cfg.clustering.settings.equiangular);
  CHECK(cfg.spectrum.settings.panels == 16);
  CHECK(cfg.spectrum_simulate.settings.map == "full");
  CHECK(cfg.spectrum_simulate.settings.method == "backward");
  CHECK(cfg.spectrum_simulate.grid_points == 40);
  const std::string resolved = reports::to_toml(cfg);
  CHECK(reports::to_toml(reports::parse_report_config(resolved, "resolved.toml")) == resolved);
  // Jobs: cell order, then engine order; each engine's cells/ files named by it.
  auto jobs = reports::make_jobs(cfg, reports::expand_cells(cfg));
  REQUIRE(jobs.size() == 2 * 5);
  CHECK(jobs[0].json.generic_string() == "cells/depth-2.ode.json");
  CHECK(jobs[4].json.generic_string() == "cells/depth-2.spectrum_simulate.json");
  // A setting that changes the numbers changes that engine's hash only.
  auto cfg2 = reports::parse_report_config(
      std::string(text).replace(text.find("beta = 2.5"), 10, "beta = 2.0"), "all.toml");
  auto jobs2 = reports::make_jobs(cfg2, reports::expand_cells(cfg2));
  for (size_t i = 0; i < jobs.size(); ++i)
    CHECK((jobs[i].hash == jobs2[i].hash) == (jobs[i].engine != reports::EngineKind::Clustering));
}

TEST_CASE("report engines: all seven engines render, overlay, compare and resume", "[report]") {
  const fs::path example = fs::path(SIGPROP_SOURCE_DIR) / "examples/report_engines.toml";
  const std::string full_text = read_text(example);
  REQUIRE(full_text.find("[engines.sde]") != std::string::npos);
  // First without the sde: a later run with it must compute the sde cells only.
  std::string no_sde = full_text;
  {
    auto a = no_sde.find("[engines.sde]"), b = no_sde.find("[engines.spectrum]");
    REQUIRE(a < b);
    no_sde.erase(a, b - a);
  }
  const fs::path out = engines_scratch() / "all";
  reports::RunOptions opt;
  opt.jobs = 2;
  auto cfg1 = reports::parse_report_config(no_sde, "no_sde.toml");
  auto cells1 = reports::expand_cells(cfg1);
  auto jobs1 = reports::make_jobs(cfg1, cells1);
  auto st1 = reports::run_jobs(cfg1, jobs1, out, opt);
  CHECK(st1.ran == 12);

  auto cfg = reports::load_report_config(example);
  REQUIRE(reports::enabled_engines(cfg) == 7);
  auto cells = reports::expand_cells(cfg);
  auto jobs = reports::make_jobs(cfg, cells);
  REQUIRE(cells.size() == 2);
  REQUIRE(jobs.size() == 14);
  std::set<std::string> computed;
  reports::RunOptions opt2 = opt;
  opt2.on_done = [&](const reports::Job& j, double, int, int, double) { computed.insert(j.json.generic_string()); };
  auto st = reports::run_jobs(cfg, jobs, out, opt2);
  CHECK(st.skipped == 12);
  CHECK(st.ran == 2);
  CHECK(computed == std::set<std::string>{"cells/depth-4.sde.json", "cells/depth-16.sde.json"});
  auto again = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(again.skipped == 14);
  CHECK(again.ran == 0);

  reports::RenderOptions ro;
  ro.gnuplot.clear();  // data, tables and prose only
  reports::render_report(cfg, cells, jobs, out, ro);

  // Every engine has its cells and its rows in profiles.csv; absent metrics are empty, not 0.
  const std::vector<std::string> engines{"theory", "simulate", "ode", "sde", "clustering", "spectrum",
                                         "spectrum_simulate"};
  auto rows = read_csv(out / "profiles.csv");
  std::map<std::string, int> per_engine;
  for (auto& r : rows) ++per_engine[r["engine"]];
  for (const auto& e : engines) {
    INFO(e);
    CHECK(fs::exists(out / ("cells/depth-16." + e + ".json")));
    CHECK(fs::exists(out / ("cells/depth-4." + e + ".csv")));
    CHECK(per_engine[e] > 0);
  }
  CHECK(per_engine["ode"] == 5 + 17);
  for (auto& r : rows) {
    if (r["engine"] == "spectrum") {
      CHECK(r["grad_var"].empty());
      CHECK(!r["sv2_mean"].empty());
    }
    if (r["engine"] == "ode") CHECK(r["sv2_mean"].empty());
  }

  // The ode overlay equals a direct engine call on the cell's spec: profiles.csv to 17 digits,
  // the figure data to its 10.
  const reports::Cell& deep = cells[1];
  REQUIRE(deep.spec.depth == 16);
  theory::ContinuumEngine direct(cfg.ode.settings);
  const Profile want = direct.run(deep.spec);
  int checked = 0;
  for (auto& r : rows)
    if (r["engine"] == "ode" && r["depth"] == "16") {
      const int l = std::stoi(r["layer"]);
      CHECK(std::stod(r["q"]) == want.at(l, "q"));
      CHECK(std::stod(r["rho"]) == want.at(l, "rho"));
      ++checked;
    }
  CHECK(checked == 17);
  const std::string dat = read_text(out / "figures/layer_q.dat");
  const auto at = dat.find("# panel 1, base spec, ode\n");
  REQUIRE(at != std::string::npos);
  std::istringstream block(dat.substr(at + std::string("# panel 1, base spec, ode\n").size()));
  for (int l = 0; l <= 16; ++l) {
    int layer = -1;
    double v = NAN;
    block >> layer >> v;
    CHECK(layer == l);
    CHECK(v == Approx(want.at(l, "q")).epsilon(1e-9));
  }
  // Each drawn engine has its block in the figure data and its key; clustering is not drawn.
  const std::string gp = read_text(out / "figures/layer_q.gp");
  for (const char* e : {", theory\n", ", sde: layer mean low high\n", ", spectrum\n"})
    CHECK_THAT(dat, Catch::Contains(e));
  CHECK_THAT(read_text(out / "figures/layer_sv2_mean.dat"), Catch::Contains(", spectrum_simulate: layer mean low high\n"));
  CHECK_THAT(dat, !Catch::Contains("clustering"));
  CHECK_THAT(gp, Catch::Contains("ode (L → ∞)"));

  // Tables: a row per engine; comparisons against theory (and the spectrum MC against the spectrum theory).
  const std::string md = read_text(out / "report.md");
  for (const auto& e : {"| ode |", "| sde |", "| clustering |", "| spectrum |", "| spectrum_simulate |"})
    CHECK_THAT(md, Catch::Contains(e));
  CHECK_THAT(md, Catch::Contains("ode against theory: largest relative gap"));
  CHECK_THAT(md, Catch::Contains("sde against theory: within 3 s.e. on"));
  CHECK_THAT(md, Catch::Contains("spectrum_simulate against spectrum: within 3 s.e. on"));
  CHECK_THAT(md, Catch::Contains("2 cells × 7 engines"));
  // Engines side by side: a column group per engine, only the metrics it produces.
  CHECK_THAT(md, Catch::Contains("## Engines side by side"));
  CHECK_THAT(md, Catch::Contains("| ode: q at layer L | ode: rho at layer L |"));
  CHECK_THAT(md, Catch::Contains("| spectrum_simulate: sv2_mean at layer L |"));
  CHECK_THAT(md, !Catch::Contains("sde: grad_var"));
  CHECK_THAT(md, !Catch::Contains("spectrum_simulate: q at"));
}

namespace {

/// An untrained byte-level model (depth 2, width 32) saved as a sigprop checkpoint, and a corpus.
struct MeasuredFiles {
  fs::path checkpoint, corpus;
};
const MeasuredFiles& measured_files() {
  static const MeasuredFiles f = [] {
    validate::ModelConfig c;
    StackSpec& s = c.arch.spec;
    s.depth = 2;
    s.tokens = 32;
    s.width = 32;
    s.heads = 2;
    s.mlp_ratio = 4;
    c.vocab = 256;
    MeasuredFiles out{engines_scratch() / "init.safetensors", engines_scratch() / "corpus.txt"};
    validate::save_checkpoint(out.checkpoint, validate::Model<float>::initial(c, 7));
    std::string text;
    for (int i = 0; i < 40; ++i) text += fmt::format("Line {} of a small corpus: depth, width and tokens. ", i);
    std::ofstream(out.corpus, std::ios::binary) << text;
    return out;
  }();
  return f;
}

std::string measure_table(const std::string& extra = "") {
  const auto& f = measured_files();
  return fmt::format("[engines.measure]\ncheckpoint = \"{}\"\ncorpus = \"{}\"\ntokens = 256\nseq_len = 16\n{}",
                     f.checkpoint.generic_string(), f.corpus.generic_string(), extra);
}

}  // namespace

TEST_CASE("report engines: [engines.measure] takes the stack from the checkpoint", "[report][config][validate]") {
  const std::string th = "[engines.theory]\nattn_samples = 64\nerror_batches = 0\n";
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases{
      {th + measure_table() + "[sweep]\nstack.depth = [1, 2]\n", "sweep.stack.depth: with [engines.measure] the stack"},
      {th + measure_table() + "[[sweep.variants]]\nlabel = \"post\"\nstack.norm = \"post\"\n",
       "stack.norm: with [engines.measure]"},
      {th + measure_table() + "[stack]\nwidth = 16\n", "stack.width = 16: the checkpoint"},
      {th + measure_table() + "[init]\nsigma_w2 = 2.0\n", "init.sigma_w2 = 2.0: the checkpoint"},
      {th + "[engines.measure]\ncorpus = \"x.txt\"\n", "engines.measure.checkpoint: required"},
      {th + "[engines.measure]\ncheckpoint = \"nowhere.safetensors\"\ncorpus = \"x.txt\"\n",
       "engines.measure.checkpoint nowhere.safetensors: no such file"},
      {th + measure_table("precision = \"half\"\n"), "engines.measure.precision"},
      {th + measure_table("seqlen = 3\n"), "did you mean \"engines.measure.seq_len\""},
  };
  for (auto& c : cases) {
    INFO(c.text);
    CHECK_THAT(config_error(c.text), Catch::Contains(c.expect));
  }
  // Keys equal to the checkpoint's, and input keys, are accepted; T is seq_len.
  auto cfg = reports::parse_report_config(th + measure_table() + "[stack]\nwidth = 32\n[input]\nrho0 = 0.1\n[sweep]\n"
                                                                 "input.q0 = [1.0, 2.0]\n",
                                          "ok.toml");
  CHECK(cfg.base.width == 32);
  CHECK(cfg.base.depth == 2);
  CHECK(cfg.base.tokens == 16);
  CHECK(cfg.base.rho0 == 0.1);
  const std::string resolved = reports::to_toml(cfg);
  CHECK(reports::to_toml(reports::parse_report_config(resolved, "resolved.toml")) == resolved);
}

TEST_CASE("report engines: a measured checkpoint beside the theory, equal to a direct MeasureEngine call",
          "[report][validate]") {
  auto cfg = reports::parse_report_config("[engines.theory]\nattn_samples = 64\nerror_batches = 0\n" + measure_table(), "measured.toml");
  auto cells = reports::expand_cells(cfg);
  auto jobs = reports::make_jobs(cfg, cells);
  REQUIRE(jobs.size() == 2);
  const fs::path out = engines_scratch() / "measured";
  reports::RunOptions opt;
  auto st = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(st.ran == 2);
  reports::RenderOptions ro;
  ro.gnuplot.clear();
  reports::render_report(cfg, cells, jobs, out, ro);
  REQUIRE(fs::exists(out / "cells/base.measure.json"));

  const auto& f = measured_files();
  auto direct = validate::MeasureEngine<float>::from_files(f.checkpoint.string(), f.corpus.string(),
                                                           validate::MeasureSettings{256, 16, 1, "", ""});
  const Profile want = direct->run(cells[0].spec);
  int checked = 0;
  for (auto& r : read_csv(out / "profiles.csv"))
    if (r["engine"] == "measure") {
      const int l = std::stoi(r["layer"]);
      CHECK(std::stod(r["q"]) == want.at(l, "q"));
      CHECK(std::stod(r["rho_se"]) == want.at(l, "rho_se"));
      CHECK(r["width"] == "32");
      ++checked;
    }
  CHECK(checked == 3);
  const std::string md = read_text(out / "report.md");
  CHECK_THAT(md, Catch::Contains("measure against theory: within 3 s.e. on"));
  CHECK_THAT(md, Catch::Contains("| measure: q at layer L |"));
  // A rerun computes nothing; touching the checkpoint (a retrained model) recomputes the measurement only.
  CHECK(reports::run_jobs(cfg, jobs, out, opt).ran == 0);
  fs::last_write_time(f.checkpoint, fs::last_write_time(f.checkpoint) + std::chrono::seconds(5));
  auto cfg2 = reports::parse_report_config("[engines.theory]\nattn_samples = 64\nerror_batches = 0\n" + measure_table(), "measured.toml");
  auto jobs2 = reports::make_jobs(cfg2, reports::expand_cells(cfg2));
  std::set<std::string> computed;
  opt.on_done = [&](const reports::Job& j, double, int, int, double) { computed.insert(j.json.generic_string()); };
  reports::run_jobs(cfg2, jobs2, out, opt);
  CHECK(computed == std::set<std::string>{"cells/base.measure.json"});
}
