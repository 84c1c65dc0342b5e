// Timings of the infinite-width theory engine (full profile: forward kernels, backward
// gradient covariances and every metric of MODEL.md §2, i.e. TheoryEngine::run).
//
//   taskset -c 1 build/bench/bench_theory --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   build/bench/bench_theory --benchmark_filter='dense_tanh'
//
// Issue 18 goals (one core): dense_tanh/L1000/T64 <= 0.3 s; default/L24/T16 (the built-in default
// spec, qk_scale = 1/sqrt(dh), default settings) <= 50 ms with relative _se <= 1e-3 on every
// metric (printed as the counter max_rel_se); preln_attnmlp_gelu_1dh/L1000/T64 <= 150 ms.
// tools/nt_timing.py compares the mask = none stacks with neural-tangents' kernel_fn.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/profile.hpp"
#include "core/spec.hpp"
#include "theory/engine.hpp"

namespace {

struct Case {
  std::string name;
  std::vector<std::string> sets;  // --set overrides of the built-in default spec
  int error_batches = -1;         // -1: the TheorySettings default
  bool slow = false;              // one iteration only
  bool fast_path = true;          // TheorySettings::equicorrelated_fast_path
};

std::vector<Case> cases() {
  const std::vector<std::string> preln = {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu",
                                          "stack.residual=true"};
  auto with = [](std::vector<std::string> a, std::initializer_list<std::string> b) {
    a.insert(a.end(), b);
    return a;
  };
  const std::vector<std::string> dense_tanh = {"stack.blocks=dense", "stack.residual=false", "stack.norm=none",
                                               "stack.activation=tanh", "init.sigma_w2=1.76", "init.sigma_b2=0.05",
                                               "stack.depth=1000", "stack.tokens=64"};
  return {
      // The built-in default spec (Pre-LN attn+mlp GELU, causal, 1/sqrt(dh), L = 24, T = 16).
      {"default/L24/T16", {}},
      // Pre-LN transformer, GELU, causal mask (default), exact uniform attention.
      {"preln_attnmlp_gelu_1dh/L1000/T64",
       with(preln, {"stack.depth=1000", "stack.tokens=64", "stack.qk_scale=\"1/dh\"", "stack.mask=causal"})},
      // Same with mask = none: the stack neural-tangents can express (tools/nt_timing.py); equicorrelated.
      {"preln_attnmlp_gelu_1dh_nomask/L1000/T64",
       with(preln, {"stack.depth=1000", "stack.tokens=64", "stack.qk_scale=\"1/dh\"", "stack.mask=none"})},
      // Sampled softmax attention, without and with the error estimate (same draws per layer).
      {"preln_attnmlp_gelu_sqrtdh/L48/T16/error_batches:0",
       with(preln, {"stack.depth=48", "stack.tokens=16", "stack.qk_scale=\"1/sqrt(dh)\""}), 0},
      {"preln_attnmlp_gelu_sqrtdh/L48/T16/error_batches:8",
       with(preln, {"stack.depth=48", "stack.tokens=16", "stack.qk_scale=\"1/sqrt(dh)\""}), 8},
      // Pre-LN residual MLP (no attention), GELU: the other stack timed against neural-tangents.
      {"preln_mlp_gelu/L1000/T64",
       {"stack.blocks=mlp", "stack.norm=pre", "stack.activation=gelu", "stack.depth=1000", "stack.tokens=64"}},
      // Dense stacks X' = phi(X) W + b: erf (closed form) and tanh (quadrature; equicorrelated
      // O(1) path, and the general path with one Chebyshev table per layer).
      {"dense_erf/L1000/T64",
       {"stack.blocks=dense", "stack.residual=false", "stack.norm=none", "stack.activation=erf", "init.sigma_w2=1.76",
        "init.sigma_b2=0.05", "stack.depth=1000", "stack.tokens=64"}},
      {"dense_tanh/L1000/T64", dense_tanh},
      {"dense_tanh_general_path/L1000/T64", dense_tanh, 8, true, false},
      // Pre-LN tanh MLP after causal uniform attention: per-token variances (eps), 3 x 3 tables.
      {"preln_attnmlp_tanh_1dh/L100/T64",
       {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=tanh", "stack.depth=100", "stack.tokens=64",
        "stack.qk_scale=\"1/dh\"", "stack.mask=causal"}},
  };
}

void run_case(benchmark::State& state, const Case& c) {
  const sigprop::StackSpec spec = sigprop::resolve_spec("", c.sets);
  sigprop::theory::TheorySettings st;
  if (c.error_batches >= 0) st.error_batches = c.error_batches;
  st.equicorrelated_fast_path = c.fast_path;
  sigprop::theory::TheoryEngine engine(st);
  double max_rel_se = 0;
  for (auto _ : state) {
    sigprop::Profile p = engine.run(spec);
    benchmark::DoNotOptimize(p.rows.data());
    benchmark::ClobberMemory();
    // Largest _se relative to its value over every metric and layer (0 without sampling).
    max_rel_se = 0;
    for (int l = 0; l <= spec.depth; ++l)
      for (const auto& m : sigprop::metric_names())
        if (p.has(m + "_se") && !std::isnan(p.at(l, m + "_se")))
          max_rel_se = std::max(max_rel_se, p.at(l, m + "_se") / std::abs(p.at(l, m)));
  }
  state.counters["max_rel_se"] = max_rel_se;
  state.counters["layers"] = spec.depth;
  state.counters["tokens"] = spec.tokens;
}

// Forward + backward recursions only (kernel_recursion), no metrics: the part of run()
// that neural-tangents' kernel_fn also does (it does the forward NNGP only).
void run_recursion(benchmark::State& state, const Case& c) {
  const sigprop::StackSpec spec = sigprop::resolve_spec("", c.sets);
  sigprop::theory::TheorySettings st;
  if (c.error_batches >= 0) st.error_batches = c.error_batches;
  st.equicorrelated_fast_path = c.fast_path;
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
