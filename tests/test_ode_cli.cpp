// [cli] `sigprop ode`: the three kinds write parseable profiles; bad input exits 2 naming the key.
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
  static const fs::path dir = sigprop::test::cli::scratch_dir("ode_cli_test");
  return dir;
}

Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }

}  // namespace

TEST_CASE("ode --kind continuum writes a profile that lines up with theory", "[cli][ode]") {
  fs::path js = scratch() / "c.json", cs = scratch() / "c.csv";
  Run r =
      run("ode --kind continuum --set stack.depth=8 --set stack.qk_scale=1/dh --set stack.tokens=4 "
          "--set 'stack.branch_scale=1/sqrt(L)' --json " +
          js.string() + " --csv " + cs.string());
  REQUIRE(r.code == 0);
  sigprop::Profile p = sigprop::read_profile_json(js);
  CHECK(p.engine == "continuum");
  CHECK(p.layers() == 9);
  CHECK(p.at(8, "tau") == 1.0);
  CHECK(p.at(8, "grad_var") == Approx(1.0));
  CHECK(slurp(cs).find("layer,q,rho") != std::string::npos);
}

TEST_CASE("ode --kind clustering and shaped-sde write profiles", "[cli][ode]") {
  fs::path js = scratch() / "k.json";
  Run r =
      run("ode --kind clustering --set stack.tokens=4 --set stack.width=4 --set stack.heads=1 --equiangular "
          "--beta 2 --t-end 3 --points 6 --json " +
          js.string());
  REQUIRE(r.code == 0);
  sigprop::Profile p = sigprop::read_profile_json(js);
  CHECK(p.engine == "clustering");
  CHECK(p.at(6, "rho") == Approx(p.at(6, "rho_eq")).margin(1e-8));
  fs::path js2 = scratch() / "s.json";
  Run r2 =
      run("ode --kind shaped-sde --model mlp --set stack.tokens=2 --set stack.width=16 --set stack.heads=1 "
          "--set stack.depth=8 --paths 50 --samples 50 --seed 3 --json " +
          js2.string());
  REQUIRE(r2.code == 0);
  sigprop::Profile s = sigprop::read_profile_json(js2);
  CHECK(s.engine == "shaped-sde");
  CHECK(s.at(8, "t") == Approx(0.5));
  CHECK(s.extras["last_layer"].contains("ks_p"));
}

TEST_CASE("ode rejects bad input with exit 2 and names the key", "[cli][ode][config]") {
  fs::path js = scratch() / "bad.json";
  Run r = run("ode --kind continuum --set stack.branch_scale=1 --json " + js.string());
  CHECK(r.code == 2);
  CHECK(r.err.find("stack.branch_scale") != std::string::npos);
  CHECK(!fs::exists(js));
  Run r2 = run("ode --kind clustering --variant xyz");
  CHECK(r2.code == 2);
  CHECK(r2.err.find("--variant") != std::string::npos);
  Run r3 = run("ode --kind shaped-sde --model mlp --gamma2 2");
  CHECK(r3.code == 2);
  CHECK(r3.err.find("--gamma2") != std::string::npos);
  Run r4 = run("ode --kind spiral");
  CHECK(r4.code != 0);
}
