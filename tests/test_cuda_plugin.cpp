// [cuda-plugin] The CUDA plug-in loader (mc/backends.hpp, mc/cuda_plugin.cpp) without a GPU:
// the search order, and each way a plug-in can be missing or wrong, through the fake plug-ins
// of tests/fake_cuda_plugin.cpp (built as MODULEs beside the tests). The no-device fake throws
// CudaError from inside the plug-in, so these tests also show that the host catches the
// plug-in's exceptions by type.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "mc/backends.hpp"
#include "mc/engine.hpp"
#include "sigprop/api.hpp"
#include "sigprop/sigprop.h"
#include "tests/shared/sim_backend_tests.hpp"

namespace {

namespace fs = std::filesystem;
namespace shared = sigprop::test::sim_shared;

// The CudaError message of make_stack_backend(cuda) with the plug-in at `path`.
std::string cuda_error(const std::string& path) {
  try {
    (void)sigprop::sim::make_stack_backend(shared::tiny_spec({}), 1, "cuda", "float",
                                           sigprop::sim::WeightSampling::Explicit, path);
  } catch (const sigprop::CudaError& e) {
    return e.what();
  }
  FAIL("no CudaError for plug-in " << path);
  return "";
}

// `sigprop simulate --backend cuda` with SIGPROP_CUDA_PLUGIN=plugin: exit status and stderr.
std::pair<int, std::string> run_cli(const std::string& plugin) {
  const fs::path err = fs::temp_directory_path() / ("sigprop_plugin_test_" + std::to_string(::getpid()) + ".err");
  const std::string cmd = "SIGPROP_CUDA_PLUGIN='" + plugin + "' " + SIGPROP_CLI_PATH +
                          " simulate --set stack.depth=2 --set stack.width=16 --set stack.heads=2 "
                          "--set stack.tokens=4 --samples 3 --seed 5 -q --backend cuda >/dev/null 2>" +
                          err.string();
  const int status = std::system(cmd.c_str());
  std::ifstream in(err);
  std::stringstream ss;
  ss << in.rdbuf();
  fs::remove(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

}  // namespace

TEST_CASE("cuda plug-in search order: explicit path alone, else beside the code, ../lib, ../lib/sigprop, ld.so",
          "[cuda-plugin][config]") {
  CHECK(sigprop::sim::cuda_plugin_candidates("/x/y/libfoo.so") == std::vector<std::string>{"/x/y/libfoo.so"});
  // The code of this test executable (build/tests/sigprop_tests) is its own file.
  const fs::path dir = fs::weakly_canonical(fs::read_symlink("/proc/self/exe")).parent_path();
  const std::vector<std::string> want{
      (dir / "libsigprop_cuda.so").string(), (dir.parent_path() / "lib" / "libsigprop_cuda.so").string(),
      (dir.parent_path() / "lib" / "sigprop" / "libsigprop_cuda.so").string(), "libsigprop_cuda.so"};
  CHECK(sigprop::sim::cuda_plugin_candidates() == want);
  CHECK(sigprop::sim::cuda_plugin_candidates("") == want);
}

TEST_CASE("cuda plug-in: a missing or foreign file is a CudaError naming the path and the setting",
          "[cuda-plugin][config]") {
  const std::string missing = "/nonexistent/dir/libsigprop_cuda.so";
  const std::string m = cuda_error(missing);
  CHECK_THAT(m, Catch::Contains(missing) && Catch::Contains("cuda_plugin") && Catch::Contains("backend \"cuda\""));
  CHECK_THAT(m, !Catch::Contains("--"));  // library messages name settings, not CLI flags

  const fs::path text = fs::temp_directory_path() / ("sigprop_not_a_plugin_" + std::to_string(::getpid()) + ".so");
  std::ofstream(text) << "not an ELF file\n";
  const std::string t = cuda_error(text.string());
  fs::remove(text);
  CHECK_THAT(t, Catch::Contains(text.string()) && Catch::Contains("cannot be loaded"));

  CHECK_THAT(cuda_error(SIGPROP_FAKE_PLUGIN_NOENTRY),
             Catch::Contains(SIGPROP_FAKE_PLUGIN_NOENTRY) && Catch::Contains("exports no sigprop_cuda_plugin_v1"));
}

TEST_CASE("cuda plug-in: a wrong ABI or sigprop version is refused before anything in it is called",
          "[cuda-plugin][config]") {
  CHECK_THAT(cuda_error(SIGPROP_FAKE_PLUGIN_ABI), Catch::Contains(SIGPROP_FAKE_PLUGIN_ABI) &&
                                                      Catch::Contains("ABI version 999") && Catch::Contains("needs 1"));
  CHECK_THAT(cuda_error(SIGPROP_FAKE_PLUGIN_VERSION),
             Catch::Contains(SIGPROP_FAKE_PLUGIN_VERSION) && Catch::Contains("built with sigprop 0.0.0-fake"));
  // Device info never throws: the reason is in `why`.
  const sigprop::cuda::DeviceInfo d = sigprop::sim::cuda_device_info(SIGPROP_FAKE_PLUGIN_ABI);
  CHECK(!d.available);
  CHECK_THAT(d.why, Catch::Contains("ABI version 999"));
}

TEST_CASE("cuda plug-in without a device: its CudaError reaches the host by type, the CLI exits 1",
          "[cuda-plugin][config]") {
  const std::string p = SIGPROP_FAKE_PLUGIN_NODEVICE;
  const sigprop::cuda::DeviceInfo d = sigprop::sim::cuda_device_info(p);
  CHECK(!d.available);
  CHECK(d.why == "fake plug-in: no device");
  CHECK(sigprop::sim::cuda_plugin(p).batch_size_for(shared::tiny_spec({})) == 7);
  CHECK(&sigprop::sim::cuda_plugin(p) == &sigprop::sim::cuda_plugin(p));  // loaded once
  CHECK_THAT(cuda_error(p), Catch::Contains("fake plug-in: no usable CUDA device (precision float)"));

  sigprop::sim::SimSettings st;
  st.backend = "cuda";
  st.precision = "tf32";
  st.samples = 2;
  st.cuda_plugin = p;
  sigprop::sim::MonteCarloEngine e(st);
  CHECK_THROWS_AS(e.run(shared::tiny_spec({})), sigprop::CudaError);
  // A precision the backend does not offer is a ConfigError before any plug-in is looked for.
  st.precision = "double";
  st.cuda_plugin = "/nonexistent/libsigprop_cuda.so";
  CHECK_THROWS_AS(sigprop::sim::MonteCarloEngine(st), sigprop::ConfigError);

  // The CLI passes SIGPROP_CUDA_PLUGIN through as the setting (the library reads no environment).
  const auto [code, err] = run_cli(p);
  CHECK(code == 1);
  CHECK_THAT(err, Catch::Contains("fake plug-in: no usable CUDA device"));
  const auto [code2, err2] = run_cli("/nonexistent/libsigprop_cuda.so");
  CHECK(code2 == 1);
  CHECK_THAT(err2, Catch::Contains("/nonexistent/libsigprop_cuda.so"));
}

TEST_CASE("cuda plug-in: the facade's simulate and the C ABI take its path as the setting cuda_plugin",
          "[cuda-plugin][api][c-api][config]") {
  namespace api = sigprop::api;
  const std::string missing = "/nonexistent/facade/libsigprop_cuda.so";
  api::SimulateSettings st;
  st.backend = "cuda";
  st.samples = 2;
  st.cuda_plugin = missing;
  try {
    (void)api::simulate(shared::tiny_spec({}), st);
    FAIL("no CudaError for plug-in " << missing);
  } catch (const sigprop::CudaError& e) {
    CHECK_THAT(e.what(), Catch::Contains(missing) && Catch::Contains("cuda_plugin"));
  }
  // The path is used, not the search: the no-device fake's own error comes back.
  st.cuda_plugin = SIGPROP_FAKE_PLUGIN_NODEVICE;
  CHECK_THROWS_WITH(api::simulate(shared::tiny_spec({}), st), Catch::Contains("fake plug-in: no usable CUDA device"));

  sigprop_spec* spec = nullptr;
  sigprop_settings* s = nullptr;
  REQUIRE(sigprop_spec_default(&spec) == SIGPROP_OK);
  for (const char* a : {"stack.depth=2", "stack.width=16", "stack.heads=2", "stack.tokens=4"})
    REQUIRE(sigprop_spec_set(spec, a) == SIGPROP_OK);
  REQUIRE(sigprop_settings_new("simulate", &s) == SIGPROP_OK);
  REQUIRE(sigprop_settings_set(s, "backend", "cuda") == SIGPROP_OK);
  REQUIRE(sigprop_settings_set(s, "samples", "2") == SIGPROP_OK);
  REQUIRE(sigprop_settings_set(s, "cuda_plugin", missing.c_str()) == SIGPROP_OK);
  sigprop_profile* out = nullptr;
  CHECK(sigprop_simulate(spec, s, nullptr, nullptr, &out) == SIGPROP_E_CUDA);
  CHECK(out == nullptr);
  CHECK_THAT(std::string(sigprop_last_error()), Catch::Contains(missing));
  CHECK(sigprop_settings_set(s, "cuda_plugins", "x") == SIGPROP_E_CONFIG);
  CHECK_THAT(std::string(sigprop_last_error()), Catch::Contains("cuda_plugin"));
  sigprop_settings_free(s);
  sigprop_spec_free(spec);
}
