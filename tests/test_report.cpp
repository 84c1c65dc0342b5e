// [report] sigprop report: config parsing and its named errors, cell identity (hashes),
// resume, interruption, serial = --jobs 2 = mpirun -np 2, the tidy CSV against the cell
// profiles, readings built from the numbers, and an HTML that links only existing files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/profile.hpp"
#include "mc/engine.hpp"
#include "reports/config.hpp"
#include "reports/report.hpp"
#include "reports/sweep.hpp"
#include "shared/cli_run.hpp"
#include "sigprop/version.hpp"
#include "theory/depth_returns.hpp"
#include "theory/engine.hpp"

namespace fs = std::filesystem;
using namespace sigprop;

namespace {

fs::path scratch() {
  static fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("sigprop_report_test_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

using sigprop::test::cli::Run;
using sigprop::test::cli::slurp;

/// Runs the CLI with args (or, with launcher, args as the whole command), env prefixed.
Run run(const std::string& args, const std::string& env = "", bool launcher = false) {
  return sigprop::test::cli::run_shell(
      env + " " + (launcher ? std::string() : std::string(SIGPROP_CLI_PATH) + " ") + args, scratch());
}

// 2 variants x 2 depths x 2 engines = 8 jobs, about 0.1 s of work in all.
const char* kTiny = R"(
[report]
title = "tiny sweep"
[stack]
tokens = 4
width = 16
heads = 2
qk_scale = "1/dh"
[sweep]
stack.depth = [2, 5]
[[sweep.variants]]
label = "Pre-LN"
stack.norm = "pre"
[[sweep.variants]]
label = "Post-LN"
stack.norm = "post"
[engines.theory]
[engines.simulate]
samples = 6
seed = 3
)";

fs::path write_config(const std::string& name, const std::string& text) {
  fs::path p = scratch() / name;
  std::ofstream(p) << text;
  return p;
}

std::string expect_config_error(const std::string& text) {
  try {
    reports::parse_report_config(text, "bad.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError for:\n" << text);
  return "";
}

/// Every CSV under dir (relative path -> content).
std::map<std::string, std::string> csvs(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".csv") m[fs::relative(e.path(), dir).generic_string()] = slurp(e.path());
  return m;
}

}  // namespace

TEST_CASE("report config: grid, variants, cells and their specs", "[report][config]") {
  auto cfg = reports::parse_report_config(kTiny, "tiny.toml");
  REQUIRE(cfg.axes.size() == 1);
  CHECK(cfg.axes[0].key == "stack.depth");
  REQUIRE(cfg.variants.size() == 2);
  CHECK(cfg.theory.enabled);
  CHECK(cfg.simulate.enabled);
  CHECK(cfg.simulate.samples == 6);
  auto cells = reports::expand_cells(cfg);
  REQUIRE(cells.size() == 4);
  CHECK(cells[0].label == "Pre-LN, depth=2");
  CHECK(cells[3].label == "Post-LN, depth=5");
  CHECK(cells[3].slug == "post-ln_depth-5");
  CHECK(cells[3].spec.norm == Norm::Post);
  CHECK(cells[3].spec.depth == 5);
  CHECK(cells[3].spec.tokens == 4);
  CHECK(cells[3].spec.qk_scale == QkScale::InvDh);
  auto jobs = reports::make_jobs(cfg, cells);
  REQUIRE(jobs.size() == 8);
  std::set<std::string> hashes;
  for (auto& j : jobs) hashes.insert(j.hash);
  CHECK(hashes.size() == 8);

  // Several axes cross (alphabetical keys, last fastest); no [engines] means theory only.
  auto two = reports::parse_report_config(
      "[sweep]\nstack.norm = [\"pre\", \"post\"]\ninit.sigma_w2 = [0.5, 1, 2]\n", "two.toml");
  CHECK_FALSE(two.simulate.enabled);
  auto c2 = reports::expand_cells(two);
  REQUIRE(c2.size() == 6);
  CHECK(c2[1].label == "sigma_w2=0.5, norm=post");
  CHECK(c2[1].spec.sigma_w2 == 0.5);
  CHECK(c2[5].spec.sigma_w2 == 2.0);

  // The resolved config parses back to the same jobs (same hashes).
  auto again = reports::parse_report_config(reports::to_toml(cfg), "resolved.toml");
  auto jobs2 = reports::make_jobs(again, reports::expand_cells(again));
  REQUIRE(jobs2.size() == jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) CHECK(jobs2[i].hash == jobs[i].hash);
}

TEST_CASE("report config: the built-in default and its copy in examples/", "[report][config]") {
  CHECK(slurp(fs::path(SIGPROP_SOURCE_DIR) / "examples/report_default.toml") == reports::default_report_toml());
  auto cfg = reports::default_report_config();
  auto cells = reports::expand_cells(cfg);
  CHECK(cells.size() == 12);  // 4 variants x depths 12, 48, 96
  CHECK(cfg.simulate.enabled);
  CHECK(cfg.theory.enabled);
  int lns = 0, scaled = 0;
  for (auto& c : cells) {
    lns += c.spec.norm == Norm::Lns;
    scaled += c.spec.branch_scale.kind == BranchScaleKind::InvSqrtL;
  }
  CHECK(lns == 3);
  CHECK(scaled == 3);
}

TEST_CASE("report config: bad input names the key", "[report][config]") {
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases{
      {"[sweeep]\n", "did you mean [sweep]"},
      {"[sweep]\nstack.dept = [1, 2]\n", "stack.dept"},
      {"[sweep]\nstack.depth = 12\n", "sweep.stack.depth: expected a non-empty array"},
      {"[sweep]\nstack.depth = []\n", "sweep.stack.depth"},
      {"[sweep]\nstack.depth = [\"a\"]\n", "stack.depth: expected an integer"},
      {"[sweep]\nstack.depth = [0]\n", "stack.depth: must be in [1, 1000000]"},
      {"[sweep]\nstack.heads = [3]\n", "stack.heads"},
      {"[sweep]\nstack.depth = [2, 2]\n", "appears twice"},
      {"[sweep]\nfoo.bar = [1]\n", "sweep.foo"},
      {"[[sweep.variants]]\nstack.norm = \"pre\"\n", "needs a label"},
      {"[[sweep.variants]]\nlabel = \"a\"\nstack.norm = \"prenorm\"\n", "stack.norm"},
      {"[[sweep.variants]]\nlabel = \"a\"\nstack.norm = \"pre\"\n[sweep]\nstack.norm = [\"post\"]\n",
       "both a sweep axis"},
      {"[stack]\ndepht = 3\n", "stack.depht"},
      {"[engines.simulate]\nsample = 4\n", "did you mean \"engines.simulate.samples\""},
      {"[engines.simulate]\nsamples = 0\n", "engines.simulate.samples: must be in [1, 65536]"},
      {"[engines.simulate]\nbackend = \"gpu\"\n", "engines.simulate.backend"},
      {"[engines.simulate]\nwidth = 10\nheads = 4\n", "stack.heads"},
      {"[engines.theory]\nenabled = false\n", "no engine enabled"},
      {"[engines.theory]\nerror_batches = 1\n", "engines.theory.error_batches"},
      {"[engines.gpu]\n", "engines.gpu"},
      {"[figures]\nmetrics = [\"q\", \"rhoo\"]\n", "did you mean \"rho\""},
      {"[figures]\ndepth_returns = 1\n", "figures.depth_returns: expected true or false"},
      {"[report]\ntitel = \"x\"\n", "did you mean \"report.title\""},
      {"[report\n", "bad.toml:1"},
  };
  for (auto& c : cases) {
    INFO(c.text);
    std::string msg = expect_config_error(c.text);
    CHECK_THAT(msg, Catch::Contains(c.expect));
    CHECK_THAT(msg, Catch::Contains("bad.toml"));
  }
}

TEST_CASE("report: a bad config exits 2 before writing anything", "[report][cli][config]") {
  fs::path cfg = write_config("bad_cli.toml", "[sweep]\nstack.depth = [4, -1]\n");
  fs::path out = scratch() / "never";
  Run r = run("report " + cfg.string() + " --out " + out.string());
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("stack.depth") && Catch::Contains("bad_cli.toml"));
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("report: cell hashes follow what changes the numbers", "[report]") {
  auto base = reports::parse_report_config(kTiny, "a.toml");
  std::string other = kTiny;
  other.replace(other.find("seed = 3"), 8, "seed = 4");
  auto changed = reports::parse_report_config(other, "b.toml");
  auto ja = reports::make_jobs(base, reports::expand_cells(base));
  auto jb = reports::make_jobs(changed, reports::expand_cells(changed));
  for (size_t i = 0; i < ja.size(); ++i) {
    INFO(ja[i].label << " " << reports::to_string(ja[i].engine));
    if (ja[i].engine == reports::EngineKind::Theory)
      CHECK(ja[i].hash == jb[i].hash);  // the Monte Carlo seed does not touch the theory cells
    else
      CHECK(ja[i].hash != jb[i].hash);
  }
}

TEST_CASE("report: the theory family's numerics revision is part of its cells' hashes", "[report]") {
  // The hash re-derived here with its own FNV-1a 64: the theory job's identity holds
  // theory::kNumericsRevision (a fix that changes values bumps it and old cells are recomputed),
  // the Monte Carlo's sim::kNumericsRevision from its revision 2 on (revision 1's cells keep their hashes).
  auto fnv = [](const std::string& s) {
    // reports/sweep.cpp's offset basis: the standard FNV-1a 64 one (14695981039346656037)
    // without its last digit, kept as it is so that existing cells keep their hashes.
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
    return fmt::format("{:016x}", h);
  };
  auto cfg = reports::parse_report_config(kTiny, "a.toml");
  const auto jobs = reports::make_jobs(cfg, reports::expand_cells(cfg));
  int seen_theory = 0, seen_sim = 0;
  for (const auto& j : jobs) {
    nlohmann::json id = {{"engine", reports::to_string(j.engine)},
                         {"spec", spec_to_json(j.spec)},
                         {"settings", j.settings},
                         {"version", kVersion}};
    INFO(j.label << " " << reports::to_string(j.engine));
    if (j.engine == reports::EngineKind::Theory) {
      CHECK(j.hash != fnv(id.dump()));
      id["theory_numerics"] = theory::kNumericsRevision;
      ++seen_theory;
    } else if (j.engine == reports::EngineKind::Simulate) {
      if (sim::kNumericsRevision > 1) {  // hashed from revision 2 on
        CHECK(j.hash != fnv(id.dump()));
        id["sim_numerics"] = sim::kNumericsRevision;
      }
      ++seen_sim;
    } else {
      continue;
    }
    CHECK(j.hash == fnv(id.dump()));
  }
  CHECK(seen_theory > 0);
  CHECK(seen_sim > 0);
}

TEST_CASE("report: resume recomputes nothing, then only what changed", "[report][cli]") {
  fs::path cfg = write_config("tiny.toml", kTiny), out = scratch() / "resume";
  Run a = run("report " + cfg.string() + " --no-figures --jobs 1 --out " + out.string());
  REQUIRE(a.code == 0);
  CHECK_THAT(a.out, Catch::Contains("8 jobs (8 computed now, 0 reused)"));
  std::map<std::string, fs::file_time_type> stamp;
  for (auto& e : fs::directory_iterator(out / "cells")) stamp[e.path().filename().string()] = e.last_write_time();
  CHECK(stamp.size() == 24);  // per job: CSV, JSON and the record of what it took (.timing.json)
  auto before = csvs(out);

  Run b = run("report " + cfg.string() + " --no-figures --jobs 1 --out " + out.string());
  REQUIRE(b.code == 0);
  CHECK_THAT(b.out, Catch::Contains("8 jobs (0 computed now, 8 reused)"));
  for (auto& e : fs::directory_iterator(out / "cells")) CHECK(stamp.at(e.path().filename().string()) == e.last_write_time());
  CHECK(csvs(out) == before);

  // A profile from another config (hash mismatch) and a missing one are recomputed, nothing else.
  fs::path tampered = out / "cells/pre-ln_depth-2.theory.json";
  std::string t = slurp(tampered);
  auto pos = t.find("\"hash\": \"");
  REQUIRE(pos != std::string::npos);
  t[pos + 9] = t[pos + 9] == '0' ? '1' : '0';
  std::ofstream(tampered) << t;
  fs::remove(out / "cells/post-ln_depth-5.simulate.json");
  Run c = run("report " + cfg.string() + " --no-figures --jobs 1 --out " + out.string());
  REQUIRE(c.code == 0);
  CHECK_THAT(c.out, Catch::Contains("8 jobs (2 computed now, 6 reused)"));
  CHECK(csvs(out) == before);

  // A new depth adds its cells only.
  std::string more = kTiny;
  more.replace(more.find("[2, 5]"), 6, "[2, 5, 3]");
  fs::path cfg3 = write_config("tiny3.toml", more);
  Run d = run("report " + cfg3.string() + " --no-figures --jobs 1 --out " + out.string());
  REQUIRE(d.code == 0);
  CHECK_THAT(d.out, Catch::Contains("12 jobs (4 computed now, 8 reused)"));
}

TEST_CASE("report: --snapshot renders the cells done so far, runs nothing, and works beside a run", "[report][cli]") {
  fs::path cfg = write_config("tiny.toml", kTiny), out = scratch() / "snapshot";
  REQUIRE(run("report " + cfg.string() + " --no-figures --jobs 1 --out " + out.string()).code == 0);
  const std::string snap = "report " + cfg.string() + " --no-figures --snapshot --out " + out.string();

  // Everything done: the snapshot is the report (profiles and summary byte for byte), with its notice.
  Run a = run(snap);
  INFO(a.err);
  REQUIRE(a.code == 0);
  CHECK_THAT(a.out, Catch::Contains("report: snapshot of 8 of 8 jobs done; 4 of 4 cells shown"));
  CHECK_THAT(a.out, Catch::Contains((out / "snapshot" / "index.html").lexically_normal().string()));
  CHECK(slurp(out / "snapshot/profiles.csv") == slurp(out / "profiles.csv"));
  CHECK(slurp(out / "snapshot/summary.csv") == slurp(out / "summary.csv"));
  CHECK(fs::read_symlink(out / "snapshot/cells") == "../cells");
  CHECK_THAT(slurp(out / "snapshot/index.html"), Catch::Contains("Snapshot of a report in progress: 8 of 8 jobs done"));
  CHECK_THAT(slurp(out / "snapshot/report.md"), Catch::Contains("4 of 4 cells complete and shown here"));
  CHECK_THAT(slurp(out / "index.html"), !Catch::Contains("Snapshot"));

  // One job missing (a run still going), the folder locked by "the run": the snapshot leaves that
  // cell out, computes nothing and writes nothing into cells/.
  fs::remove(out / "cells/post-ln_depth-5.simulate.json");
  std::map<std::string, fs::file_time_type> stamp;
  for (auto& e : fs::directory_iterator(out / "cells")) stamp[e.path().filename().string()] = e.last_write_time();
  {
    const FolderLock running(out, "the run");
    Run b = run(snap);
    INFO(b.err);
    REQUIRE(b.code == 0);
    CHECK_THAT(b.out, Catch::Contains("report: snapshot of 7 of 8 jobs done; 3 of 4 cells shown"));
    CHECK(run("report " + cfg.string() + " --no-figures --out " + out.string()).code == 2);  // the run's lock holds
  }
  std::map<std::string, fs::file_time_type> after;
  for (auto& e : fs::directory_iterator(out / "cells")) after[e.path().filename().string()] = e.last_write_time();
  CHECK(after == stamp);
  std::string expected;  // profiles.csv without the incomplete cell's rows (both of its engines)
  {
    std::istringstream in(slurp(out / "profiles.csv"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("post-ln_depth-5,", 0) != 0) expected += line + "\n";
  }
  CHECK(slurp(out / "snapshot/profiles.csv") == expected);
  const auto facts = nlohmann::json::parse(slurp(out / "snapshot/snapshot.json"));
  CHECK(facts.at("cells_shown") == 3);
  CHECK(facts.at("jobs_done") == 7);
  CHECK(facts.at("jobs_used") == 6);
  CHECK_THAT(slurp(out / "snapshot/index.html"), Catch::Contains("3 of 4 cells complete and shown here"));

  // Nothing to show, or no run's folder at all: exit 2 naming the folder.
  fs::path empty = scratch() / "snapshot_empty";
  fs::create_directories(empty / "cells");
  Run c = run("report " + cfg.string() + " --snapshot --out " + empty.string());
  CHECK(c.code == 2);
  CHECK_THAT(c.err, Catch::Contains((empty / "cells").string()) && Catch::Contains("no cell complete yet"));
  Run d = run("report " + cfg.string() + " --snapshot --out " + (scratch() / "snapshot_none").string());
  CHECK(d.code == 2);
  CHECK_THAT(d.err, Catch::Contains("snapshot_none") && Catch::Contains("has no cells/ folder"));
  CHECK_FALSE(fs::exists(scratch() / "snapshot_none"));
}

TEST_CASE("report: an interrupted run keeps finished cells and resumes", "[report]") {
  auto cfg = reports::parse_report_config(kTiny, "tiny.toml");
  auto cells = reports::expand_cells(cfg);
  auto jobs = reports::make_jobs(cfg, cells);
  fs::path out = scratch() / "interrupt";
  std::atomic<bool> stop{false};
  reports::RunOptions opt;
  opt.jobs = 1;
  opt.stop = &stop;
  opt.on_done = [&](const reports::Job&, double, int done, int, double) {
    if (done == 3) stop = true;  // as the Ctrl-C handler does
  };
  auto st = reports::run_jobs(cfg, jobs, out, opt);
  CHECK(st.interrupted);
  CHECK(st.ran == 3);
  int finished = 0;
  for (auto& j : jobs) finished += reports::job_done(out, j);
  CHECK(finished == 3);
  for (auto& e : fs::directory_iterator(out / "cells"))  // no half-written files (core/files.hpp temporaries)
    CHECK(e.path().filename().string().find(std::string(sigprop::kTempSuffix)) == std::string::npos);
  stop = false;
  opt.on_done = nullptr;
  auto st2 = reports::run_jobs(cfg, jobs, out, opt);
  CHECK_FALSE(st2.interrupted);
  CHECK(st2.skipped == 3);
  CHECK(st2.ran == 5);
}

TEST_CASE("report: Ctrl-C on the command line exits 130 and the rerun resumes", "[report][cli]") {
  // Enough work that the signal lands mid-sweep: 5 Monte Carlo cells of ~0.2 s each on one thread.
  fs::path cfg = write_config("sigint.toml", R"(
[stack]
tokens = 8
width = 64
heads = 4
qk_scale = "1/dh"
[sweep]
stack.depth = [8, 9, 10, 11, 12]
[engines.simulate]
samples = 16
seed = 1
)");
  fs::path out = scratch() / "sigint", err = scratch() / "sigint.err";
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string o = (scratch() / "sigint.out").string();
    std::freopen(o.c_str(), "w", stdout);
    std::freopen(err.c_str(), "w", stderr);
    ::execl(SIGPROP_CLI_PATH, SIGPROP_CLI_PATH, "report", cfg.c_str(), "--no-figures", "--jobs", "1", "--out",
            out.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  // Wait for the first finished cell, then interrupt.
  for (int i = 0; i < 600 && slurp(err).find("1/5 done") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  std::string e = slurp(err);
  INFO(e);
  if (WEXITSTATUS(status) == 0) {
    WARN("the sweep finished before the signal arrived; nothing to check");
    return;
  }
  CHECK(WEXITSTATUS(status) == 130);
  CHECK_THAT(e, Catch::Contains("run the same command again to resume"));
  CHECK_FALSE(fs::exists(out / "index.html"));
  int kept = 0;
  for (auto& f : fs::directory_iterator(out / "cells")) {
    CHECK(f.path().filename().string().find(std::string(sigprop::kTempSuffix)) == std::string::npos);
    const std::string name = f.path().filename().string();
    kept += f.path().extension() == ".json" && !name.ends_with(".timing.json");
  }
  CHECK(kept >= 1);
  CHECK(kept < 5);
  Run r = run("report " + cfg.string() + " --no-figures --jobs 1 --out " + out.string());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains(fmt::format("5 jobs ({} computed now, {} reused)", 5 - kept, kept)));
}

TEST_CASE("report: MPI ranks are dealt jobs by the longest-processing-time rule", "[report]") {
  using reports::deal_to_ranks;
  auto loads = [](const std::vector<double>& costs, const std::vector<int>& rank_of, int ranks) {
    std::vector<double> l(static_cast<size_t>(ranks), 0.0);
    for (size_t i = 0; i < costs.size(); ++i) l.at(static_cast<size_t>(rank_of.at(i))) += costs[i];
    return l;
  };
  // Costly first, as run_jobs orders them: round-robin gave rank 0 8+6+4+2 = 20 and rank 1 16.
  const std::vector<double> c{8, 7, 6, 5, 4, 3, 2, 1};
  const std::vector<int> r = deal_to_ranks(c, 2);
  CHECK(r == std::vector<int>{0, 1, 1, 0, 0, 1, 1, 0});
  CHECK(loads(c, r, 2) == std::vector<double>{18, 18});
  // One dominant job: the others all go to the other rank until it catches up.
  const std::vector<double> d{100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10};
  const std::vector<int> rd = deal_to_ranks(d, 2);
  CHECK(rd.front() == 0);
  CHECK(std::count(rd.begin(), rd.end(), 1) == 10);
  CHECK(loads(d, rd, 2) == std::vector<double>{110, 100});
  // Every job to exactly one rank in range; the largest load is within one job of the mean
  // (the rule's guarantee), for assorted cost lists and rank counts.
  for (int ranks : {1, 2, 3, 5, 16}) {
    std::vector<double> e;
    for (int i = 0; i < 97; ++i) e.push_back(1.0 + std::fmod(37.0 * i * i + 11.0 * i, 53.0));
    std::sort(e.begin(), e.end(), std::greater<>());
    const std::vector<int> re = deal_to_ranks(e, ranks);
    REQUIRE(re.size() == e.size());
    for (int k : re) CHECK((k >= 0 && k < ranks));
    const std::vector<double> l = loads(e, re, ranks);
    const double total = std::accumulate(e.begin(), e.end(), 0.0);
    CHECK(*std::max_element(l.begin(), l.end()) <= total / ranks + e.front());
    CHECK(re == deal_to_ranks(e, ranks));  // the same split in every rank
  }
  // Zero, negative and non-finite costs count as 0: then round-robin, never all on rank 0.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(deal_to_ranks({0, 0, 0, 0, 0}, 2) == std::vector<int>{0, 1, 0, 1, 0});
  CHECK(deal_to_ranks({nan, -1, std::numeric_limits<double>::infinity(), 0}, 2) == std::vector<int>{0, 1, 0, 1});
  CHECK(deal_to_ranks({}, 3).empty());
  CHECK(deal_to_ranks({1, 2}, 4) == std::vector<int>{0, 1});
  CHECK_THROWS_WITH(deal_to_ranks({1}, 0), Catch::Contains("ranks must be >= 1"));
}

TEST_CASE("report: serial, --jobs 2 and mpirun -np 2 give identical outputs", "[report][cli][repro]") {
  fs::path cfg = write_config("tiny.toml", kTiny);
  fs::path s = scratch() / "serial", j = scratch() / "jobs2";
  // Figures are drawn from these same files; --no-figures keeps the test fast.
  REQUIRE(run("report " + cfg.string() + " --no-figures --jobs 1 --out " + s.string()).code == 0);
  REQUIRE(run("report " + cfg.string() + " --no-figures --jobs 2 --out " + j.string()).code == 0);
  auto a = csvs(s);
  CHECK(a.size() == 8 + 2);  // 8 cell CSVs, profiles.csv, summary.csv
  CHECK(a == csvs(j));
  CHECK(slurp(s / "index.html") == slurp(j / "index.html"));
#ifdef SIGPROP_TEST_MPIEXEC
  fs::path m = scratch() / "mpi";
  // As root (CI), OpenMPI wants both variables; --oversubscribe lets 2 ranks share fewer cores.
  Run r = run(std::string(SIGPROP_TEST_MPIEXEC) + " -np 2 --oversubscribe " + SIGPROP_CLI_PATH + " report " +
                  cfg.string() + " --no-figures --out " + m.string(),
              // OpenMPI keeps allocations alive past MPI_Finalize: no leak check on the ranks (ASan builds).
              "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1",
              true);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(a == csvs(m));
  CHECK(slurp(s / "index.html") == slurp(m / "index.html"));
  for (auto& f : {"figures/layer_q.dat", "figures/depth_returns.gp", "report.md", "config.toml"})
    CHECK(slurp(s / f) == slurp(m / f));
  // Both ranks worked: each reports its own finished jobs, 8 in all.
  std::regex done_line(R"re(report\[rank (\d)/2\]: \d+/(\d+) done)re");
  std::map<int, int> per_rank;
  for (std::sregex_iterator it(r.err.begin(), r.err.end(), done_line), end; it != end; ++it)
    per_rank[std::stoi((*it)[1])]++;
  CHECK(per_rank[0] > 0);
  CHECK(per_rank[1] > 0);
  CHECK(per_rank[0] + per_rank[1] == 8);
#else
  WARN("built without MPI: the mpirun comparison is not compiled in");
#endif
}

TEST_CASE("report: tidy CSV rows are the cell profiles, and the readings quote the numbers", "[report]") {
  auto cfg = reports::parse_report_config(kTiny, "tiny.toml");
  auto cells = reports::expand_cells(cfg);
  auto jobs = reports::make_jobs(cfg, cells);
  fs::path out = scratch() / "render";
  reports::RunOptions opt;
  opt.jobs = 2;
  reports::run_jobs(cfg, jobs, out, opt);
  reports::RenderOptions ro;
  ro.gnuplot.clear();  // data and prose only
  auto rr = reports::render_report(cfg, cells, jobs, out, ro);
  CHECK(rr.figures_drawn.empty());
  CHECK(rr.figures_missing.size() == 6);  // 5 per-layer figures + depth returns

  std::ifstream in(out / "profiles.csv");
  std::string header, line;
  std::getline(in, header);
  CHECK(header.rfind("cell,label,variant,stack.depth,engine,width,heads,samples,depth,layer,q,q_se,", 0) == 0);
  int rows = 0;
  double q_post5_l3 = NAN;
  while (std::getline(in, line)) {
    ++rows;
    if (line.rfind("post-ln_depth-5,\"Post-LN, depth=5\",Post-LN,5,simulate,16,2,6,5,3,", 0) == 0) {
      auto rest = line.substr(std::string("post-ln_depth-5,\"Post-LN, depth=5\",Post-LN,5,simulate,16,2,6,5,3,").size());
      q_post5_l3 = std::stod(rest.substr(0, rest.find(',')));
    }
  }
  CHECK(rows == 2 * (3 + 6 + 3 + 6));
  Profile p = read_profile_json(out / "cells/post-ln_depth-5.simulate.json");
  CHECK(q_post5_l3 == p.at(3, "q"));  // written with 17 digits: exact round trip

  // The q reading of the deepest panel quotes the theory's last-layer value of each series.
  Profile pre = read_profile_json(out / "cells/pre-ln_depth-5.theory.json");
  Profile post = read_profile_json(out / "cells/post-ln_depth-5.theory.json");
  std::string html = slurp(out / "index.html");
  CHECK_THAT(html, Catch::Contains(fmt::format("Pre-LN {:.3g} → {:.3g}", pre.at(0, "q"), pre.at(5, "q"))));
  CHECK_THAT(html, Catch::Contains(fmt::format("Post-LN {:.3g} → {:.3g}", post.at(0, "q"), post.at(5, "q"))));
  CHECK_THAT(html, Catch::Contains("Figures not drawn"));
  // The depth-returns reading quotes the predicted effective depth and knee (docs/theory.md).
  Profile pre2 = read_profile_json(out / "cells/pre-ln_depth-2.theory.json");
  CHECK_THAT(html, Catch::Contains(fmt::format("Pre-LN {:.3g} of 2 → {:.3g} of 5",
                                               theory::effective_depth(pre2.series("ang_dist")),
                                               theory::effective_depth(pre.series("ang_dist")))));
  REQUIRE(pre.extras.contains("depth_returns"));
  CHECK_THAT(html, Catch::Contains("Predicted knee"));
}

TEST_CASE("report: the HTML links only files that exist, with and without gnuplot", "[report][cli]") {
  fs::path cfg = write_config("tiny.toml", kTiny);
  auto check_links = [](const fs::path& out) {
    std::string html = slurp(out / "index.html");
    int local = 0;
    // Plain scanning: std::regex recurses per character and overflows on the long data URIs.
    for (const std::string attr : {"href=\"", "src=\""})
    for (size_t pos = html.find(attr); pos != std::string::npos; pos = html.find(attr, pos + 1)) {
      size_t b = pos + attr.size(), e = html.find('"', b);
      REQUIRE(e != std::string::npos);
      std::string target = html.substr(b, e - b);
      if (target.rfind("data:", 0) == 0) continue;
      INFO(target);
      CHECK(target.find("://") == std::string::npos);  // self-contained: nothing fetched from elsewhere
      CHECK(fs::exists(out / target));
      ++local;
    }
    return local;
  };
  fs::path with = scratch() / "links";
  Run a = run("report " + cfg.string() + " --out " + with.string());
  REQUIRE(a.code == 0);
  CHECK_THAT(a.out, Catch::Contains("6 figures"));
  CHECK(check_links(with) > 20);
  std::string html = slurp(with / "index.html");
  size_t imgs = 0;
  for (size_t pos = 0; (pos = html.find("src=\"data:image/svg+xml;base64,", pos)) != std::string::npos; ++pos) ++imgs;
  CHECK(imgs == 6);
  for (auto& stem : {"layer_q", "layer_rho", "layer_grad_var", "layer_update_ratio", "layer_ang_dist", "depth_returns"}) {
    CHECK(fs::file_size(with / "figures" / (std::string(stem) + ".svg")) > 1000);
    CHECK(fs::file_size(with / "figures" / (std::string(stem) + ".png")) > 1000);
  }

  // No gnuplot: same data, the report names every figure it could not draw and links none.
  fs::path without = scratch() / "nognuplot";
  Run b = run("report " + cfg.string() + " --gnuplot /nonexistent/gnuplot --out " + without.string());
  REQUIRE(b.code == 0);
  CHECK_THAT(b.err, Catch::Contains("6 figure(s) not drawn"));
  check_links(without);
  std::string h2 = slurp(without / "index.html");
  CHECK_THAT(h2, Catch::Contains("Figures not drawn") && Catch::Contains("/nonexistent/gnuplot"));
  CHECK(h2.find("data:image") == std::string::npos);
  for (auto& e : fs::directory_iterator(without / "figures")) {
    CHECK(e.path().extension() != ".svg");
    CHECK(e.path().extension() != ".png");
  }
  CHECK(fs::exists(without / "figures/layer_q.gp"));
  CHECK_THAT(slurp(without / "report.md"), Catch::Contains("Figures not drawn"));
  CHECK(csvs(without) == csvs(with));
}
