// [cli][config] Hostile input (issue 19, docs/limits.md): outputs through symlinks and onto
// special files, outputs that collide with each other or with inputs, empty paths, killed
// writes, locked output folders, unbounded inputs, unbounded ODE solves and phase grids, lost
// training history, relative gnuplot paths, escaped error text, CLI parse errors.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"
#include "tests/shared/cli_run.hpp"

namespace fs = std::filesystem;
using sigprop::test::cli::Run;
using sigprop::test::cli::slurp;

namespace {

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("hostile_test");
  return dir;
}

Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }

using sigprop::test::cli::write_text;

/// Entries of a folder whose name contains `part`.
int count_named(const fs::path& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

std::string q(const fs::path& p) {
  std::string s = "'";  // appended, not "'" + string: GCC 12 warns -Wrestrict on that (a false positive)
  s += p.string();
  s += '\'';
  return s;
}

const char* kCorpus = "/usr/share/common-licenses/GPL-3";  // base-files: on every Debian system
const std::string kTinyTrain =
    " --set stack.depth=1 --set stack.width=16 --set stack.heads=2 --set stack.tokens=16 --batch 2 --lr 1e-2"
    " --warmup 1 --val-every 2 --val-batches 1 --threads 1 -q";

}  // namespace

TEST_CASE("write_file_atomic writes through a symlink and keeps the link", "[config]") {
  const fs::path d = scratch() / "link";
  fs::remove_all(d);
  fs::create_directories(d / "sub");
  write_text(d / "sub" / "target.json", "old\n");
  fs::create_symlink("sub/target.json", d / "link.json");  // relative link
  sigprop::write_file_atomic(d / "link.json", "new\n");
  CHECK(fs::is_symlink(fs::symlink_status(d / "link.json")));
  CHECK(slurp(d / "sub" / "target.json") == "new\n");
  // a chain of links, and a dangling one (its target is created, the link kept)
  fs::create_symlink(d / "link.json", d / "chain.json");
  sigprop::write_file_atomic(d / "chain.json", "chain\n");
  CHECK(fs::is_symlink(fs::symlink_status(d / "chain.json")));
  CHECK(slurp(d / "sub" / "target.json") == "chain\n");
  fs::create_symlink("sub/new.json", d / "dangling.json");
  sigprop::write_file_atomic(d / "dangling.json", "created\n");
  CHECK(fs::is_symlink(fs::symlink_status(d / "dangling.json")));
  CHECK(slurp(d / "sub" / "new.json") == "created\n");
  // a loop and a folder are named errors
  fs::create_symlink(d / "loop_b", d / "loop_a");
  fs::create_symlink(d / "loop_a", d / "loop_b");
  CHECK_THROWS_WITH(sigprop::write_file_atomic(d / "loop_a", "x"), Catch::Contains("symbolic links"));
  CHECK_THROWS_WITH(sigprop::write_file_atomic(d / "sub", "x"), Catch::Contains("is a folder"));
  CHECK_THROWS_AS(sigprop::write_file_atomic("", "x"), sigprop::IoError);
  CHECK(count_named(d / "sub", "sigprop-tmp") == 0);
  CHECK(count_named(d, "sigprop-tmp") == 0);
}

TEST_CASE("write_file_atomic reuses a killed write's temporary file and keeps the mode", "[config]") {
  const fs::path d = scratch() / "killed";
  fs::remove_all(d);
  fs::create_directories(d);
  // what a write killed before its rename leaves (the name carries no process id)
  write_text(d / ".out.csv.sigprop-tmp", std::string(100000, 'x'));
  write_text(d / "out.csv", "old\n");
  fs::permissions(d / "out.csv", fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  for (int i = 0; i < 3; ++i) sigprop::write_file_atomic(d / "out.csv", "row " + std::to_string(i) + "\n");
  CHECK(slurp(d / "out.csv") == "row 2\n");
  CHECK(count_named(d, "sigprop-tmp") == 0);
  CHECK((fs::status(d / "out.csv").permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
}

TEST_CASE("write_file_atomic errors say why (never \"Success\")", "[config]") {
  if (::geteuid() == 0) {
    WARN("skipped: root ignores folder permissions");
    return;
  }
  const fs::path d = scratch() / "readonly";
  fs::remove_all(d);
  fs::create_directories(d);
  fs::permissions(d, fs::perms::owner_read | fs::perms::owner_exec);
  try {
    sigprop::write_file_atomic(d / "out.json", "x");
    FAIL("no error");
  } catch (const sigprop::IoError& e) {
    CHECK_THAT(e.what(), Catch::Contains("out.json") && Catch::Contains("Permission denied"));
    CHECK_THAT(e.what(), !Catch::Contains("Success"));
  }
  fs::permissions(d, fs::perms::owner_all);
}

TEST_CASE("read_regular_file refuses devices, pipes, folders and oversized files", "[config]") {
  CHECK_THROWS_WITH(sigprop::read_regular_file("/dev/zero", "corpus"), Catch::Contains("not a regular file"));
  CHECK_THROWS_WITH(sigprop::read_regular_file(scratch(), "corpus"), Catch::Contains("is a folder"));
  CHECK_THROWS_WITH(sigprop::read_regular_file(scratch() / "none.txt", "corpus"), Catch::Contains("no such file"));
  const fs::path f = scratch() / "ten.txt";
  write_text(f, "0123456789");
  CHECK(sigprop::read_regular_file(f, "corpus", 10) == "0123456789");
  CHECK_THROWS_WITH(sigprop::read_regular_file(f, "corpus", 9),
                    Catch::Contains("10 bytes") && Catch::Contains("limit of 9"));
}

TEST_CASE("printable escapes control and bidi characters and cuts long text", "[config]") {
  CHECK(sigprop::printable("a\x1b[31mb\n") == "a\\x1b[31mb\\x0a");
  CHECK(sigprop::printable("x\u202Ey\u2066z") == "x\\u{202e}y\\u{2066}z");
  CHECK(sigprop::printable("caf\u00e9 \u03c3") == "caf\u00e9 \u03c3");  // ordinary UTF-8 kept
  CHECK(sigprop::printable("\xff\xc3") == "\\xff\\xc3");               // invalid UTF-8
  const std::string big(1000000, 'v');
  const std::string p = sigprop::printable(big, 100);
  CHECK(p.size() < 200);
  CHECK_THAT(p, Catch::EndsWith("(1000000 bytes in all)"));
}

TEST_CASE("outputs: symlinks followed, empty paths, two outputs on one path, an output on an input",
          "[cli][config]") {
  const fs::path d = scratch() / "outputs";
  fs::remove_all(d);
  fs::create_directories(d);
  write_text(d / "target.json", "keep\n");
  fs::create_symlink(d / "target.json", d / "link.json");
  Run r = run("theory -q --set stack.depth=2 --json " + q(d / "link.json"));
  REQUIRE(r.code == 0);
  CHECK(fs::is_symlink(fs::symlink_status(d / "link.json")));
  CHECK_THAT(slurp(d / "target.json"), Catch::Contains("\"engine\""));

  // /dev/stdout behind a shell's >> is appended to, not replaced or overwritten
  write_text(d / "app.log", "first\n");
  const bool stdout_link = fs::is_symlink(fs::symlink_status("/dev/stdout"));
  const std::string app = std::string(SIGPROP_CLI_PATH) + " theory -q --set stack.depth=2 --json /dev/stdout >> " +
                          q(d / "app.log") + " 2>/dev/null";
  REQUIRE(std::system(app.c_str()) == 0);
  CHECK_THAT(slurp(d / "app.log"), Catch::StartsWith("first\n") && Catch::Contains("\"engine\""));
  CHECK(fs::is_symlink(fs::symlink_status("/dev/stdout")) == stdout_link);

  for (const std::string& args :
       {std::string("theory --json ''"), std::string("theory --csv ''"), std::string("simulate --samples 2 --seed 1 --json ''"),
        std::string("phase --csv ''"), std::string("report --out ''"), std::string("theory --set ''")}) {
    INFO(args);
    r = run(args);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("empty value"));
  }
  const fs::path spec = d / "spec.toml";
  write_text(spec, "[stack]\ndepth = 2\n");
  const std::string before = slurp(spec);
  for (const std::string& args :
       {"theory --json " + q(d / "a") + " --csv " + q(d / "a"),
        "theory --json " + q(d / "b") + " --csv " + q(d / "." / "b"),
        "theory --json " + q(d / "link.json") + " --csv " + q(d / "target.json"),
        "theory " + q(spec) + " --json " + q(spec),
        "simulate " + q(spec) + " --samples 2 --seed 1 --csv " + q(spec),
        "ode " + q(spec) + " --json " + q(spec)}) {
    INFO(args);
    r = run(args);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("same file") || Catch::Contains("is the input"));
  }
  CHECK(slurp(spec) == before);
  CHECK_FALSE(fs::exists(d / "a"));
  // validate: --json onto the corpus
  const fs::path corpus = d / "corpus.txt";
  write_text(corpus, "text");
  r = run("validate --checkpoint " + q(d / "none.safetensors") + " --corpus " + q(corpus) + " --json " + q(corpus));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--corpus"));
  CHECK(slurp(corpus) == "text");
}

TEST_CASE("corpora must be regular files: /dev/zero is named, not 'no such file'", "[cli][config]") {
  const fs::path out = scratch() / "zero_out";
  for (const std::string& args : std::vector<std::string>{"train --corpus /dev/zero --out " + q(out) + " -q",
                                                           "study --corpus /dev/zero --out " + q(out) + " -q",
                                                           "validate --checkpoint /dev/null --corpus /dev/zero"}) {
    INFO(args);
    const Run r = run(args);
    CHECK(r.code != 0);
    CHECK(r.code < 124);
  }
  const Run r = run("train --corpus /dev/zero --out " + q(out) + " -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("/dev/zero") && Catch::Contains("not a regular file"));
}

TEST_CASE("a second run on a locked output folder is refused, naming the folder", "[cli][config]") {
  const fs::path out = scratch() / "locked";
  fs::remove_all(out);
  const sigprop::FolderLock held(out, "--out");  // as a running train/report/study holds it
  Run r = run(std::string("train --corpus ") + kCorpus + " --out " + q(out) + " --steps 2" + kTinyTrain);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(out.string()) && Catch::Contains("another sigprop run"));
  CHECK_FALSE(fs::exists(out / "loss.csv"));
  r = run("report --no-figures -q --out " + q(out));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(out.string()) && Catch::Contains("another sigprop run"));
  CHECK_FALSE(fs::exists(out / "cells"));
  r = run(std::string("study --corpus ") + kCorpus + " --out " + q(out) + " --depths 1 --steps 2" + kTinyTrain);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains(out.string()) && Catch::Contains("another sigprop run"));
  // an output folder that is a file
  write_text(scratch() / "plain_file", "x");
  r = run(std::string("train --corpus ") + kCorpus + " --out " + q(scratch() / "plain_file") + " --steps 2" +
          kTinyTrain);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("not a folder"));
}

TEST_CASE("ode: unreachable tolerances and endless solves stop with a named error", "[cli][config][ode]") {
  const std::string cont = "ode --kind continuum --set 'stack.branch_scale=1/sqrt(L)' --set stack.blocks=mlp";
  Run r = run(cont + " --abs-tol 1e-40 --rel-tol 1e-40 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--rel-tol"));
  r = run("ode --kind clustering --rel-tol 1e-17 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--rel-tol") && Catch::Contains("double precision"));
  r = run("ode --kind clustering --abs-tol 0 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--abs-tol"));
  // a small budget keeps the test fast; the default budget bounds it the same way (tools/hostile/class7.sh)
  r = run("ode --kind clustering --t-end 1e300 --max-evals 1000 -q");
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("--max-evals") && Catch::Contains("--t-end"));
  r = run(cont + " --abs-tol 1e-300 --rel-tol 1e-14 --max-evals 50 -q");
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("--max-evals"));
}

TEST_CASE("phase: a grid over the point limit is refused before any work", "[cli][config]") {
  const Run r = run("phase --sigma-w2 0.5:4:100000 --sigma-b2 0:0.3:100000");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--sigma-w2") && Catch::Contains("10000000000 points"));
}

TEST_CASE("train resume without loss.csv rebuilds the rows the checkpoints hold and names the lost ones",
          "[cli]") {
  const fs::path out = scratch() / "history";
  fs::remove_all(out);
  const std::string cmd = std::string("train --corpus ") + kCorpus + " --out " + q(out) + " --steps 4" + kTinyTrain;
  Run r = run(cmd + " --checkpoint-every 2");
  REQUIRE(r.code == 0);
  const std::string full = slurp(out / "loss.csv");
  auto field = [](const std::string& csv, int step, int col) {
    std::stringstream ss(csv);
    std::string line;
    while (std::getline(ss, line)) {
      if (line.rfind(std::to_string(step) + ",", 0) != 0) continue;
      std::vector<std::string> f;
      std::stringstream ls(line);
      std::string x;
      while (std::getline(ls, x, ',')) f.push_back(x);
      f.resize(7);
      if (!f[2].empty()) return f[static_cast<std::size_t>(col)];
    }
    return std::string("<none>");
  };
  // finished run, loss.csv deleted: the checkpoints at steps 2 and 4 hold rows 1 and 3
  fs::remove(out / "loss.csv");
  r = run(cmd + " --checkpoint-every 2");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Catch::Contains("loss.csv is missing") && Catch::Contains("rebuilt 2 row(s)") &&
                        Catch::Contains("steps 0, 2"));
  const std::string rebuilt = slurp(out / "loss.csv");
  for (int k : {1, 3}) {
    INFO("step " << k);
    CHECK(std::stod(field(rebuilt, k, 2)) == Approx(std::stod(field(full, k, 2))).epsilon(1e-6));  // train loss
    CHECK(std::stod(field(rebuilt, k, 1)) == Approx(std::stod(field(full, k, 1))).epsilon(1e-9));  // lr
  }
  CHECK(field(rebuilt, 2, 2) == "<none>");
  // validate: --samples beyond the Monte Carlo's limit is an error, not a dropped prediction
  r = run("validate --checkpoint " + q(out / "final.safetensors") + std::string(" --corpus ") + kCorpus +
          " --tokens 64 --ensemble 0 --samples 70000 --no-theory");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--samples") && Catch::Contains("65536"));
}

TEST_CASE("report draws with a relative --gnuplot path", "[cli][report]") {
  if (std::system("gnuplot --version >/dev/null 2>&1") != 0) {
    WARN("skipped: gnuplot is not installed");
    return;
  }
  const fs::path d = scratch() / "gp";
  fs::remove_all(d);
  fs::create_directories(d / "bin");
  // a wrapper at a relative path, which also proves it was the one run
  write_text(d / "bin" / "gp", "#!/bin/sh\necho run >> \"$(dirname \"$0\")/ran\"\nexec gnuplot \"$@\"\n");
  fs::permissions(d / "bin" / "gp", fs::perms::owner_all);
  write_text(
      d / "tiny.toml",
      "[stack]\ntokens = 4\nwidth = 16\nheads = 2\n[sweep]\nstack.depth = [2]\n[engines.theory]\nattn_samples = 64\n"
      "error_batches = 0\n[engines.simulate]\nsamples = 2\nseed = 1\n");
  const std::string cmd = "cd " + q(d) + " && " + SIGPROP_CLI_PATH + " report tiny.toml -q --out o --gnuplot ./bin/gp > out.txt 2> err.txt";
  const int rc = std::system(cmd.c_str());
  INFO(slurp(d / "err.txt"));
  REQUIRE(WEXITSTATUS(rc) == 0);
  CHECK(fs::exists(d / "bin" / "ran"));
  CHECK_THAT(slurp(d / "err.txt"), !Catch::Contains("not drawn"));
  int svgs = 0;
  for (const auto& e : fs::directory_iterator(d / "o" / "figures")) svgs += e.path().extension() == ".svg";
  CHECK(svgs > 0);
}

TEST_CASE("errors escape control characters and cut huge values; parse errors exit 2", "[cli][config]") {
  Run r = run("theory --set \"$(printf 'stack.norm=\\033[31mred\\342\\200\\256evil')\"");
  CHECK(r.code == 2);
  CHECK(r.err.find('\x1b') == std::string::npos);
  CHECK(r.err.find("\xe2\x80\xae") == std::string::npos);
  CHECK_THAT(r.err, Catch::Contains("\\x1b[31mred\\u{202e}evil"));
  const fs::path big = scratch() / "big.toml";
  write_text(big, "[stack]\nnorm = \"" + std::string(200000, 'n') + "\"\n");
  r = run("theory " + q(big));
  CHECK(r.code == 2);
  CHECK(r.err.size() < 5000);
  CHECK_THAT(r.err, Catch::Contains("bytes in all"));
  // CLI11's own errors (104-109 before) exit 2, escaped
  for (const std::string& args : {std::string("simulate --samples abc --seed 1"), std::string("theory --bogus"),
                                  std::string("theory --rows"), std::string("simulate --seed 1"),
                                  std::string("ode --kind nonsense"), std::string("theory a b c")}) {
    INFO(args);
    r = run(args);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::StartsWith("sigprop: error:"));
  }
  r = run("\"$(printf 'bo\\033[2Jgus')\"");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("unknown command 'bo\\x1b[2Jgus'") && Catch::Contains("theory"));
  CHECK(r.err.find('\x1b') == std::string::npos);
  r = run("--help");
  CHECK(r.code == 0);
}
