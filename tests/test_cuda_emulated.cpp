// [cuda-emu] The GPU backend's orchestration without a GPU: cuda/cuda_backend.cpp compiled
// against a host emulation of the CUDA runtime, cuBLAS and cuSOLVER (cuda/emulate.hpp) and of
// its kernels (cuda/kernels_emu.cpp), run through the backend-neutral parity bodies against the
// reference on identical streams. What this proves: the buffer layouts, GEMM operands,
// transposes, leading dimensions and strides, the per-head offsets, the order and aliasing of
// the forward/backward steps, the batching and the metric assembly of the CUDA backend. What it
// cannot: the .cu kernels' own thread/warp index arithmetic, and anything about the device.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "cuda/emulate.hpp"
#include "tests/shared/sim_backend_tests.hpp"

namespace {

namespace shared = sigprop::test::sim_shared;

shared::Backend emulated(const std::string& precision) {
  return {"cuda-emulated", precision, [precision](const sigprop::StackSpec& s, uint64_t seed) {
            sigprop::sim::validate_for_simulation(s);
            return sigprop::cuda_emu::make_backend(s, seed, precision);
          }};
}

}  // namespace

TEST_CASE("cuda (emulated): X_0 and Delta_L are the reference's random numbers", "[cuda-emu][sim][parity]") {
  shared::test_identical_streams(emulated("float"));
}

TEST_CASE("cuda (emulated): per-layer streams and gradients equal the reference's", "[cuda-emu][sim][parity]") {
  shared::test_block_parity(emulated("float"));
}

TEST_CASE("cuda (emulated): every metric of run_sample equals the reference's", "[cuda-emu][sim][parity]") {
  shared::test_metric_parity(emulated("float"));
}

TEST_CASE("cuda (emulated): backward is J^T of the backend's forward", "[cuda-emu][sim][parity][gradcheck]") {
  shared::test_gradcheck(emulated("float"));
}

TEST_CASE("cuda (emulated): tf32 products within the TF32-scaled parity tolerance", "[cuda-emu][sim][parity]") {
  // parity_tol's derivation with eps = 2^-10 (TF32 keeps 10 mantissa bits of each GEMM input).
  const double scale = std::ldexp(1.0, -10) / std::numeric_limits<float>::epsilon();
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu"},
           {"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=tanh"}}) {
    const sigprop::StackSpec s = shared::mid_spec(sets);
    const shared::Parity p = shared::stack_parity(emulated("tf32"), s, 17, 2);
    const double tol = shared::parity_tol(emulated("float"), s) * scale;
    const shared::Parity pf = shared::stack_parity(emulated("float"), s, 17, 2);
    INFO("tf32: stream " << p.stream << ", gradient " << p.grad << ", tolerance " << tol << "; float: stream "
                         << pf.stream << ", gradient " << pf.grad);
    CHECK(p.stream <= tol);
    CHECK(p.grad <= tol);
    // and tf32 really rounds: its error is well above float's
    CHECK(p.stream > 4 * pf.stream);
  }
}

TEST_CASE("cuda (emulated): run_samples over a batch equals each sample alone", "[cuda-emu][sim][repro]") {
  // The emulated GEMM does not depend on the batch, so batching must change nothing at all:
  // any difference is a stride or offset error between the samples of a batch.
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"stack.blocks=attn+mlp", "stack.norm=post", "stack.mask=none"},
           {"stack.blocks=dense", "stack.norm=lns", "stack.norm_type=rmsnorm"}}) {
    const sigprop::StackSpec s = shared::mid_spec(sets);
    auto be = emulated("float").make(s, 9);
    std::vector<sigprop::sim::SampleMetrics> batch(5);
    be->run_samples(3, 5, batch.data());
    for (int i = 0; i < 5; ++i) {
      const sigprop::sim::SampleMetrics one = be->run_sample(3 + i);
      CHECK(batch[i].forward_nonfinite == one.forward_nonfinite);
      CHECK(batch[i].backward_nonfinite == one.backward_nonfinite);
      for (int l = 0; l <= s.depth; ++l)
        for (int m = 0; m < sigprop::sim::kNumCols; ++m) {
          const double a = batch[i].values[l][m], b = one.values[l][m];
          INFO("sample " << 3 + i << " layer " << l << " column " << m);
          CHECK(((std::isnan(a) && std::isnan(b)) || a == b));
        }
    }
  }
}

TEST_CASE("cuda (emulated): a diverging sample is cut where the reference cuts it", "[cuda-emu][sim]") {
  // Dense linear blocks with sigma_w2 = 1e6 grow the stream by ~1e3 per layer: float overflows
  // (3e38) at layer ~13, the reference's double only at ~100, so compare with the float Eigen
  // backend, whose streams overflow at the same layer; and the backward of a diverged sample is dropped.
  sigprop::StackSpec s = shared::mid_spec({"stack.blocks=dense", "stack.norm=none", "stack.residual=false",
                                           "stack.activation=linear", "init.sigma_w2=1e6"});
  s.depth = 20;
  const sigprop::sim::SampleMetrics cpu = sigprop::sim::make_stack_backend(s, 4, "cpu", "float")->run_sample(1);
  const sigprop::sim::SampleMetrics emu = emulated("float").make(s, 4)->run_sample(1);
  REQUIRE(cpu.forward_nonfinite > 0);
  CHECK(emu.forward_nonfinite == cpu.forward_nonfinite);
  CHECK(emu.backward_nonfinite == -1);
  for (int l = 0; l <= s.depth; ++l) {
    INFO("layer " << l);
    CHECK(std::isnan(emu.values[l][sigprop::sim::kGrad]));
    CHECK(std::isnan(emu.values[l][sigprop::sim::kQ]) == (l >= emu.forward_nonfinite));
  }
}
