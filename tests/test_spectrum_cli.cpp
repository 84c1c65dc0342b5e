// [cli] `sigprop spectrum` end to end: profile JSON/CSV and the density table are written and
// parse back; bad input exits with status 2, names the key or option, and writes nothing.
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
  static const fs::path dir = sigprop::test::cli::scratch_dir("spectrum_cli");
  return dir;
}

Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }

const std::string kDense =
    "--set stack.blocks=dense --set stack.norm=none --set stack.residual=false --set stack.activation=relu "
    "--set init.sigma_w2=2 --set stack.depth=5 --set stack.tokens=2 --set stack.heads=1 ";

}  // namespace

TEST_CASE("sigprop spectrum writes moments and the density, theory and Monte Carlo", "[cli][spectrum]") {
  const fs::path d = scratch();
  Run r = run("spectrum " + kDense + "--grid 0.05:10:50 --json " + (d / "t.json").string() + " --csv " +
                  (d / "t.csv").string() + " --density-csv " + (d / "td.csv").string());
  REQUIRE(r.code == 0);
  sigprop::Profile t = sigprop::read_profile_json(d / "t.json");
  CHECK(t.engine == "spectrum-theory");
  CHECK(t.at(5, "sv2_mean") == Approx(1.0));
  CHECK(t.at(5, "sv2_var") == Approx(10.0));  // relu, Gaussian, sigma_w2 = 2: 2 per layer
  CHECK(t.extras["density"]["x"].size() == 50);
  CHECK(t.extras["density"]["atom0"].get<double>() == 0.5);
  CHECK(slurp(d / "t.csv").find("layer,q,sv2_mean,sv2_var") != std::string::npos);
  const std::string dens = slurp(d / "td.csv");
  CHECK(dens.find("x,density\n") != std::string::npos);
  CHECK(dens.find("atom0 = 0.5") != std::string::npos);

  r = run("spectrum " + kDense + "--engine simulate --width 32 --samples 4 --seed 9 --grid 0.05:10:50 --json " +
              (d / "m.json").string() + " --density-csv " + (d / "md.csv").string());
  REQUIRE(r.code == 0);
  sigprop::Profile m = sigprop::read_profile_json(d / "m.json");
  CHECK(m.engine == "spectrum-simulate");
  CHECK(m.settings["width"] == 32);
  CHECK(m.settings["method"] == "explicit");
  CHECK(m.has("sv2_var_se"));
  CHECK(slurp(d / "md.csv").find("x,density,density_se\n") != std::string::npos);
}

TEST_CASE("sigprop spectrum: bad input exits 2 naming the key or option and writes nothing", "[cli][config][spectrum]") {
  const fs::path out = scratch() / "never.json";
  for (const std::string& args :
       {std::string("spectrum --json ") + out.string(),  // attention stack: no theory
        "spectrum " + kDense + "--set init.weights=orthogonl --json " + out.string(),
        "spectrum " + kDense + "--grid 1:0:5 --json " + out.string(),
        "spectrum " + kDense + "--engine simulat --json " + out.string(),
        "spectrum " + kDense + "--set stack.residual=true --density-csv " + out.string()}) {
    INFO(args);
    Run r = run(args);
    CHECK(r.code == 2);
    CHECK(r.err.find("error") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  CHECK(run("spectrum --json " + out.string()).err.find("stack.blocks") != std::string::npos);
  CHECK(run("spectrum " + kDense + "--set init.weights=orthogonl").err.find("init.weights") != std::string::npos);
  CHECK(run("spectrum " + kDense + "--engine simulat").err.find("--engine") != std::string::npos);
  CHECK(run("spectrum " + kDense + "--set stack.residual=true --density-csv " + out.string())
            .err.find("residual") != std::string::npos);
}
