// Timings of the infinite-width theory engine (full profile: forward kernels, backward
// gradient covariances and every metric of MODEL.md §2, i.e. TheoryEngine::run).
//
//   build/bench/bench_theory                                   # everything (dense tanh takes ~1.5 min)
//   build/bench/bench_theory --benchmark_filter='preln_attnmlp_gelu_1dh'
//
// Issue goal: preln_attnmlp_gelu_1dh/L1000/T64 <= 0.5 s on one core (the engine is single-threaded).
// The sampled attention (qk_scale = 1/sqrt(dh)) is timed at L = 48, T = 16 with the default
// 2048 logit draws per layer, without (error_batches = 0) and with the default batch-means
// error estimate (error_batches = 8: one more recursion on the same draws, split in 8 slices).
// tools/nt_timing.py compares these stacks with neural-tangents' kernel_fn.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/spec.hpp"
#include "theory/engine.hpp"

namespace {

struct Case {
  std::string name;
  std::vector<std::string> sets;  // --set overrides of the built-in default spec
  int error_batches = 8;          // TheorySettings default
  bool slow = false;              // one iteration only
};

std::vector<Case> cases() {
  const std::vector<std::string> preln = {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu",
                                          "stack.residual=true"};
  auto with = [](std::vector<std::string> a, std::initializer_list<std::string> b) {
    a.insert(a.end(), b);
    return a;
  };
  return {
      // Pre-LN transformer, GELU, causal mask (default), exact uniform attention.
      {"preln_attnmlp_gelu_1dh/L1000/T64",
       with(preln, {"stack.depth=1000", "stack.tokens=64", "stack.qk_scale=\"1/dh\"", "stack.mask=causal"})},
      // Same with mask = none: the stack neural-tangents can express (tools/nt_timing.py).
      {"preln_attnmlp_gelu_1dh_nomask/L1000/T64",
       with(preln, {"stack.depth=1000", "stack.tokens=64", "stack.qk_scale=\"1/dh\"", "stack.mask=none"})},
      // Sampled softmax attention (2048 draws per layer), without and with the error estimate.
      {"preln_attnmlp_gelu_sqrtdh/L48/T16/error_batches:0",
       with(preln, {"stack.depth=48", "stack.tokens=16", "stack.qk_scale=\"1/sqrt(dh)\""}), 0},
      {"preln_attnmlp_gelu_sqrtdh/L48/T16/error_batches:8",
       with(preln, {"stack.depth=48", "stack.tokens=16", "stack.qk_scale=\"1/sqrt(dh)\""}), 8},
      // Pre-LN residual MLP (no attention), GELU: the other stack timed against neural-tangents.
      {"preln_mlp_gelu/L1000/T64",
       {"stack.blocks=mlp", "stack.norm=pre", "stack.activation=gelu", "stack.depth=1000", "stack.tokens=64"}},
      // Dense stacks X' = phi(X) W + b: erf (closed form) and tanh (64 x 64 Gauss-Hermite per entry).
      {"dense_erf/L1000/T64",
       {"stack.blocks=dense", "stack.residual=false", "stack.norm=none", "stack.activation=erf", "init.sigma_w2=1.76",
        "init.sigma_b2=0.05", "stack.depth=1000", "stack.tokens=64"}},
      {"dense_tanh/L1000/T64",
       {"stack.blocks=dense", "stack.residual=false", "stack.norm=none", "stack.activation=tanh", "init.sigma_w2=1.76",
        "init.sigma_b2=0.05", "stack.depth=1000", "stack.tokens=64"},
       8,
       true},
  };
}

void run_case(benchmark::State& state, const Case& c) {
  const sigprop::StackSpec spec = sigprop::resolve_spec("", c.sets);
  sigprop::theory::TheorySettings st;
  st.error_batches = c.error_batches;
  sigprop::theory::TheoryEngine engine(st);
  for (auto _ : state) {
    sigprop::Profile p = engine.run(spec);
    benchmark::DoNotOptimize(p.rows.data());
    benchmark::ClobberMemory();
  }
  state.counters["layers"] = spec.depth;
  state.counters["tokens"] = spec.tokens;
}

// Forward + backward recursions only (kernel_recursion), no metrics: the part of run()
// that neural-tangents' kernel_fn also does (it does the forward NNGP only).
void run_recursion(benchmark::State& state, const Case& c) {
  const sigprop::StackSpec spec = sigprop::resolve_spec("", c.sets);
  sigprop::theory::TheorySettings st;
  st.error_batches = c.error_batches;
  for (auto _ : state) {
    sigprop::theory::KernelTrace tr = sigprop::theory::kernel_recursion(spec, st);
    benchmark::DoNotOptimize(tr.K.data());
    benchmark::ClobberMemory();
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (const Case& c : cases()) {
    auto* b = benchmark::RegisterBenchmark(c.name.c_str(), [c](benchmark::State& s) { run_case(s, c); });
    b->Unit(benchmark::kMillisecond)->UseRealTime();
    if (c.slow) b->Iterations(1);
    if (c.slow || c.error_batches == 0) continue;  // recursion-only: the closed-form stacks
    if (c.name.find("sqrtdh") != std::string::npos) continue;
    auto* r = benchmark::RegisterBenchmark(("recursion_only/" + c.name).c_str(),
                                           [c](benchmark::State& s) { run_recursion(s, c); });
    r->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
