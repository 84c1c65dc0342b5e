// [cli] The executable end to end: good runs write parseable outputs; each class of bad
// input exits non-zero with a message naming the key or file, and writes no output file.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "core/profile.hpp"
#include "tests/shared/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using sigprop::test::cli::Run;
using sigprop::test::cli::slurp;

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("cli_test");
  return dir;
}

Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }

using sigprop::test::cli::write_text;

}  // namespace

TEST_CASE("theory writes JSON and CSV profiles with every metric", "[cli]") {
  fs::path js = scratch() / "p.json", cs = scratch() / "p.csv";
  Run r = run("theory --set stack.depth=5 --set stack.qk_scale=1/dh --json " + js.string() + " --csv " + cs.string());
  REQUIRE(r.code == 0);
  sigprop::Profile p = sigprop::read_profile_json(js);
  CHECK(p.engine == "theory");
  CHECK(p.layers() == 6);
  for (auto& m : sigprop::metric_names()) CHECK(p.has(m));
  CHECK(std::isfinite(p.at(5, "grad_var")));
  CHECK(std::isnan(p.at(0, "update_ratio")));
  std::string csv = slurp(cs);
  CHECK_THAT(csv, Catch::Contains("layer,q,rho,res,eff_rank,update_ratio,ang_dist,grad_var\n"));
  CHECK_THAT(csv, Catch::Contains("\"depth\":5"));
}

TEST_CASE("theory prints a table and the spec file is honoured", "[cli]") {
  fs::path spec = scratch() / "s.toml";
  write_text(spec, "[stack]\ndepth = 3\nblocks = \"mlp\"\nactivation = \"relu\"\n");
  Run r = run("theory " + spec.string());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("mlp blocks") && Catch::Contains("depth 3") && Catch::Contains("grad_var"));
}

TEST_CASE("bad input: named error, non-zero exit, no output file", "[cli][config]") {
  fs::path js = scratch() / "never.json";
  fs::remove(js);
  struct Case {
    std::string args, expect;
  };
  fs::path bad_key = scratch() / "bad_key.toml", bad_syntax = scratch() / "bad_syntax.toml",
           bad_range = scratch() / "bad_range.toml";
  write_text(bad_key, "[stack]\ndepht = 4\n");
  write_text(bad_syntax, "[stack\ndepth = 4\n");
  write_text(bad_range, "[input]\nrho0 = -0.5\n");
  std::vector<Case> cases{
      {"theory " + bad_key.string(), "stack.depht"},
      {"theory " + bad_syntax.string(), "bad_syntax.toml:1"},
      {"theory " + bad_range.string(), "input.rho0"},
      {"theory --set stack.depth=0", "stack.depth"},
      {"theory --set stack.heads=5", "stack.heads"},
      {"theory --set stack.norm=layer", "stack.norm"},
      {"theory --set nokey", "table.key=value"},
      {"theory " + (scratch() / "missing.toml").string(), "missing.toml"},
      {"theory --error-batches 1", "error batches"},
  };
  for (auto& c : cases) {
    INFO(c.args);
    Run r = run(c.args + " --json " + js.string());
    CHECK(r.code != 0);
    CHECK_THAT(r.err, Catch::Contains(c.expect));
    CHECK_FALSE(fs::exists(js));
  }
}

TEST_CASE("phase diagram CSV", "[cli]") {
  Run r = run("phase --activation tanh --sigma-w2 1:3:3 --sigma-b2 0.05:0.05:1");
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("sigma_w2,sigma_b2,q_star,chi1"));
  CHECK_THAT(r.out, Catch::Contains("\n1,0.05,") && Catch::Contains("ordered") && Catch::Contains("chaotic"));
  Run bad = run("phase --activation tanhh");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Catch::Contains("did you mean \"tanh\""));
}
