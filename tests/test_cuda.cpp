// [cuda] The GPU backend. With a device: the backend-neutral bodies of
// tests/shared/sim_backend_tests.hpp for cuda/float (parity with the reference on identical
// streams, float tolerances derived there), tf32 parity with its own derived tolerance, and
// batching that cannot change a sample beyond float round-off. Without a device every device
// test is skipped with a WARN naming the reason, and the clear error on `--backend cuda` is
// tested instead. The backend is reached through the plug-in build/lib/libsigprop_cuda.so (found
// as ../lib from build/tests/); without CUDA compiled in there is none, and the error says so.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "tests/shared/sim_backend_tests.hpp"
#include "mc/backends.hpp"

namespace {

// Runs `sigprop simulate ... args`, returns the exit status and stderr.
std::pair<int, std::string> run_cli(const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path() / ("sigprop_cuda_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cmd = std::string(SIGPROP_CLI_PATH) +
                          " simulate --set stack.depth=2 --set stack.width=16 --set stack.heads=2 "
                          "--set stack.tokens=4 --samples 3 --seed 5 -q " +
                          args + " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  std::ifstream err(dir / "err");
  std::stringstream ss;
  ss << err.rdbuf();
  std::filesystem::remove_all(dir);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ss.str()};
}

}  // namespace

namespace shared = sigprop::test::sim_shared;

#ifndef SIGPROP_HAVE_CUDA

TEST_CASE("cuda backend in a build without CUDA: the error says there is no plug-in", "[cuda][config]") {
  sigprop::sim::SimSettings st;
  st.backend = "cuda";
  st.precision = "float";
  st.samples = 2;
  sigprop::sim::MonteCarloEngine e(st);  // a listed backend: the plug-in is looked for when it runs
  try {
    e.run(shared::tiny_spec({}));
    FAIL("no CudaError");
  } catch (const sigprop::CudaError& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("libsigprop_cuda.so was not found") &&
                                          Catch::Contains("SIGPROP_ENABLE_CUDA=OFF"));
  }
  const auto [code, err] = run_cli("--backend cuda");
  CHECK(code == 1);
  CHECK_THAT(err, Catch::Contains("plug-in"));
}

#else

namespace {

// True when a device is usable; otherwise WARNs once per test why the test is skipped.
bool have_device() {
  static const sigprop::cuda::DeviceInfo info = sigprop::sim::cuda_device_info();
  if (!info.available) WARN("[cuda] skipped: no usable CUDA device (" << info.why << ")");
  return info.available;
}

}  // namespace

TEST_CASE("cuda is a listed backend with float and tf32", "[cuda][config]") {
  const auto& b = sigprop::sim::available_backends();
  CHECK(std::find(b.begin(), b.end(), "cuda") != b.end());
  CHECK(sigprop::sim::backend_precisions("cuda") == std::vector<std::string>{"float", "tf32"});
  CHECK(sigprop::sim::default_precision("cuda") == "float");
  sigprop::sim::SimSettings st;
  st.backend = "cuda";
  st.precision = "double";
  try {
    sigprop::sim::MonteCarloEngine e(st);
    FAIL("no ConfigError");
  } catch (const sigprop::ConfigError& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("precision:") && Catch::Contains("float, tf32"));
  }
  // The batch size follows from the spec and a fixed memory budget, not from the device.
  sigprop::StackSpec big = shared::mid_spec({"stack.width=1024", "stack.heads=8", "stack.tokens=128",
                                             "stack.depth=32", "stack.mlp_ratio=4"});
  const int b1024 = sigprop::sim::cuda_plugin().batch_size_for(big);
  CHECK(b1024 >= 64);
  CHECK(b1024 <= 4096);
}

TEST_CASE("cuda backend without a device: a clear error (exit 1), not a crash", "[cuda][config]") {
  if (sigprop::sim::cuda_device_info().available) {
    WARN("[cuda] a device is present: the no-device error path is not exercised");
    return;
  }
  CHECK_THROWS_AS(sigprop::sim::make_stack_backend(shared::tiny_spec({}), 1, "cuda", "float"), sigprop::CudaError);
  const auto [code, err] = run_cli("--backend cuda");
  CHECK(code == 1);
  CHECK_THAT(err, Catch::Contains("no usable CUDA device"));
  const auto [code2, err2] = run_cli("--backend cuda --precision double");
  CHECK(code2 == 2);  // the precision is checked before any device is looked for
  CHECK_THAT(err2, Catch::Contains("--precision"));
}

TEST_CASE("cuda/float: X_0 and Delta_L are the reference's random numbers", "[cuda][sim][parity]") {
  if (have_device()) shared::test_identical_streams({"cuda", "float"});
}

TEST_CASE("cuda/float: per-layer streams and gradients equal the reference's", "[cuda][sim][parity]") {
  if (have_device()) shared::test_block_parity({"cuda", "float"});
}

TEST_CASE("cuda/float: every metric of run_sample equals the reference's", "[cuda][sim][parity]") {
  if (have_device()) shared::test_metric_parity({"cuda", "float"});
}

TEST_CASE("cuda/float: same profile for 1 and 2 threads", "[cuda][sim][parity][repro]") {
  if (have_device()) shared::test_threads({"cuda", "float"});
}

TEST_CASE("cuda/float: backward is J^T of the backend's forward", "[cuda][sim][parity][gradcheck]") {
  if (have_device()) shared::test_gradcheck({"cuda", "float"});
}

TEST_CASE("cuda/tf32: streams and gradients equal the reference's to TF32 accuracy", "[cuda][sim][parity]") {
  if (!have_device()) return;
  // parity_tol's derivation with TF32's unit of the last place (10 explicit mantissa bits,
  // eps = 2^-10) in the GEMMs; everything else is float and far below that.
  const double eps_tf32 = std::ldexp(1.0, -10);
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu"},
           {"stack.blocks=attn+mlp", "stack.norm=post", "stack.norm_type=rmsnorm", "stack.mask=none"},
           {"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=tanh"}}) {
    const sigprop::StackSpec s = shared::mid_spec(sets);
    const shared::Parity p = shared::stack_parity({"cuda", "tf32"}, s, 17, 2);
    const double tol = shared::parity_tol({"cuda", "float"}, s) * eps_tf32 / std::numeric_limits<float>::epsilon();
    INFO("stream error " << p.stream << ", gradient error " << p.grad << ", tolerance " << tol);
    CHECK(p.stream <= tol);
    CHECK(p.grad <= tol);
  }
}

TEST_CASE("cuda/float: a sample's metrics do not depend on its batch beyond float round-off",
          "[cuda][sim][repro]") {
  if (!have_device()) return;
  // Samples 0..6 as one batch against each alone: cuBLAS may pick other kernels for another
  // batch count, so equality is to the float parity tolerance of the metric test, not bitwise.
  const sigprop::StackSpec s = shared::mid_spec({"stack.blocks=attn+mlp", "stack.norm=pre"});
  auto be = sigprop::sim::make_stack_backend(s, 9, "cuda", "float");
  std::vector<sigprop::sim::SampleMetrics> batch(7);
  be->run_samples(0, 7, batch.data());
  const double delta = 10 * shared::parity_tol({"cuda", "float"}, s);
  for (int i = 0; i < 7; ++i) {
    const sigprop::sim::SampleMetrics one = be->run_sample(i);
    for (int l = 0; l <= s.depth; ++l)
      for (int m = 0; m < sigprop::sim::kNumCols; ++m) {
        const double a = batch[i].values[l][m], b = one.values[l][m];
        INFO("sample " << i << " layer " << l << " column " << m);
        if (std::isnan(b)) {
          CHECK(std::isnan(a));
        } else {
          CHECK(std::abs(a - b) <= 2 * delta * (1 + std::abs(b)) + (m == sigprop::sim::kAng || m == sigprop::sim::kEffRank
                                                                         ? s.tokens * std::sqrt(2 * delta)
                                                                         : 0.0));
        }
      }
  }
  // And the same batch twice is bitwise the same.
  std::vector<sigprop::sim::SampleMetrics> again(7);
  be->run_samples(0, 7, again.data());
  for (int i = 0; i < 7; ++i) CHECK(again[i].values == batch[i].values);
}

TEST_CASE("simulate --backend cuda writes a profile naming backend and precision", "[cuda][cli]") {
  if (!have_device()) return;
  for (const char* p : {"float", "tf32"}) {
    const auto js = std::filesystem::temp_directory_path() / ("sigprop_cuda_cli_" + std::string(p) + ".json");
    const auto [code, err] = run_cli(std::string("--backend cuda --precision ") + p + " --json " + js.string());
    INFO(err);
    REQUIRE(code == 0);
    const sigprop::Profile prof = sigprop::read_profile_json(js);
    CHECK(prof.settings["backend"] == "cuda");
    CHECK(prof.settings["precision"] == p);
    CHECK(std::isfinite(prof.at(2, "grad_var")));
    std::filesystem::remove(js);
  }
}

#endif
