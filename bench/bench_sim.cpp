// Timings of the finite-width Monte Carlo engine (MonteCarloEngine::run: forward, backward with
// regenerated weights, every metric), reference vs cpu float vs cpu double, explicit and
// conditional weight sampling (docs/simulate.md).
//
//   build/bench/bench_sim                                  # everything (a few minutes)
//   taskset -c 0 build/bench/bench_sim                     # one core
//   build/bench/bench_sim --benchmark_filter='cpu/float'
//
// Stack: Pre-LN attn+mlp, GELU, causal, T = 32, H = 4, r = 4, L = 32, d = 256 (the issue's
// case, 64 samples) and d = 512 (GFLOP/s). The engine uses one worker per CPU in this process's
// affinity mask (so `taskset -c 0` means one thread). Samples are independent and equally
// expensive, so samples/s does not depend on the sample count: the reference, ~10x slower,
// runs fewer samples to keep the run short.
//
// GFLOP/s counts the GEMM flops of the blocks only (2 m n k per product; metrics' X X^T and
// elementwise work not counted): per layer the forward (once in the forward pass, once again
// when the backward pass recomputes it) and the backward products:
//   forward  attn 8 T d^2 + 4 T^2 d (Z W_QKV, Q K^T, A V, cat W_O),  mlp 4 T d R
//   backward attn 8 T d^2 + 8 T^2 d (dF W_O^T, dA, dV, dQ, dK, dQKV W_QKV^T),  mlp 4 T d R
// `gemm_only/<Real>/d` runs just those products on the same shapes (random operands, no RNG,
// no softmax or norms): the ceiling the engine's GFLOP/s would approach without weight generation.
// `normals/s` is the rate of NormalStream (Philox + Box-Muller, computed in double, stored as
// double or float: the float backends' and the conditional mode's draws). Explicit sampling
// regenerates 2 (12 d^2 + 5 d) normals per layer and sample (R = 4d); it bounds the engine from above.
#include <benchmark/benchmark.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/rng.hpp"
#include "core/spec.hpp"
#include "mc/engine.hpp"

namespace {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

sigprop::StackSpec stack(int d) {
  return sigprop::resolve_spec("", {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu",
                                    "stack.mask=causal", "stack.tokens=32", "stack.heads=4", "stack.mlp_ratio=4",
                                    "stack.depth=32", fmt::format("stack.width={}", d)});
}

double gemm_flops_per_sample(const sigprop::StackSpec& s) {
  const double T = s.tokens, d = s.width, R = s.mlp_width();
  const double fwd = 8 * T * d * d + 4 * T * T * d + 4 * T * d * R;
  const double bwd = 8 * T * d * d + 8 * T * T * d + 4 * T * d * R;
  return s.depth * (2 * fwd + bwd);
}

void run_engine(benchmark::State& state, const std::string& backend, const std::string& precision, int d,
                int samples, const std::string& sampling) {
  const sigprop::StackSpec spec = stack(d);
  sigprop::sim::SimSettings st;
  st.samples = samples;
  st.seed = 1;
  st.backend = backend;
  st.precision = precision;
  st.weights_sampling = sampling;
  st.threads = affinity_cpus();
  sigprop::sim::MonteCarloEngine engine(st);
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    sigprop::Profile p = engine.run(spec);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(p.rows.data());
  }
  const double n = static_cast<double>(samples) * static_cast<double>(state.iterations());
  state.counters["threads"] = st.threads;
  state.counters["samples"] = samples;
  state.counters["samples/s"] = n / seconds;
  state.counters["GFLOP/s"] = n * gemm_flops_per_sample(spec) / seconds / 1e9;
}

// One sample's block GEMMs (see the flop count above) on the engine's shapes, in Real.
template <class Real>
void gemm_only(benchmark::State& state, int d) {
  using M = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const sigprop::StackSpec spec = stack(d);
  const int T = spec.tokens, R = spec.mlp_width(), H = spec.heads, dh = d / H, L = spec.depth;
  const M Z = M::Random(T, d), wqkv = M::Random(d, 3 * d), wo = M::Random(d, d), w1 = M::Random(d, R),
          w2 = M::Random(R, d);
  M qkv(T, 3 * d), A(T, T), cat(T, d), F(T, d), hid(T, R), dcat(T, d), dqkv(T, 3 * d), dA(T, T), dh_(T, R), dZ(T, d);
  auto forward = [&] {
    qkv.noalias() = Z * wqkv;
    for (int h = 0; h < H; ++h) {
      A.noalias() = qkv.middleCols(h * dh, dh) * qkv.middleCols(d + h * dh, dh).transpose();
      cat.middleCols(h * dh, dh).noalias() = A * qkv.middleCols(2 * d + h * dh, dh);
    }
    F.noalias() = cat * wo;
    hid.noalias() = Z * w1;
    F.noalias() += hid * w2;
  };
  for (auto _ : state) {
    for (int l = 0; l < L; ++l) {
      forward();
      forward();
      dcat.noalias() = F * wo.transpose();
      for (int h = 0; h < H; ++h) {
        dA.noalias() = dcat.middleCols(h * dh, dh) * qkv.middleCols(2 * d + h * dh, dh).transpose();
        dqkv.middleCols(2 * d + h * dh, dh).noalias() = A.transpose() * dcat.middleCols(h * dh, dh);
        dqkv.middleCols(h * dh, dh).noalias() = dA * qkv.middleCols(d + h * dh, dh);
        dqkv.middleCols(d + h * dh, dh).noalias() = dA.transpose() * qkv.middleCols(h * dh, dh);
      }
      dZ.noalias() = dqkv * wqkv.transpose();
      dh_.noalias() = F * w2.transpose();
      dZ.noalias() += dh_ * w1.transpose();
    }
    benchmark::DoNotOptimize(dZ.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(gemm_flops_per_sample(spec) / 1e9 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

template <class Real>
void normal_rate(benchmark::State& state) {
  std::vector<Real> buf(1 << 20);
  uint64_t stream = 0;
  for (auto _ : state) {
    sigprop::NormalStream(1, ++stream).fill(buf.data(), buf.size());
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["normals/s"] =
      benchmark::Counter(static_cast<double>(buf.size()) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  struct Case {
    const char* backend;
    const char* precision;
    int d, samples;
    const char* sampling;
  };
  // GFLOP/s of the conditional cases is explicit-equivalent (the flops explicit sampling would
  // spend for the same samples), i.e. a throughput, not the work done.
  const Case cases[] = {
      {"reference", "double", 256, 4, "explicit"},   {"cpu", "float", 256, 64, "explicit"},
      {"cpu", "double", 256, 64, "explicit"},        {"reference", "double", 512, 2, "explicit"},
      {"cpu", "float", 512, 8, "explicit"},          {"cpu", "double", 512, 8, "explicit"},
      {"reference", "double", 256, 16, "conditional"}, {"cpu", "float", 256, 256, "conditional"},
      {"cpu", "float", 1024, 64, "conditional"},     {"cpu", "float", 4096, 16, "conditional"},
  };
  for (const Case& c : cases) {
    const std::string name =
        fmt::format("simulate/{}/{}/{}/T32/H4/L32/d{}", c.backend, c.precision, c.sampling, c.d);
    benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) {
      run_engine(s, c.backend, c.precision, c.d, c.samples, c.sampling);
    })->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
  }
  for (int d : {256, 512}) {
    benchmark::RegisterBenchmark(fmt::format("gemm_only/float/T32/H4/L32/d{}", d).c_str(),
                                 [d](benchmark::State& s) { gemm_only<float>(s, d); })
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(fmt::format("gemm_only/double/T32/H4/L32/d{}", d).c_str(),
                                 [d](benchmark::State& s) { gemm_only<double>(s, d); })
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("NormalStream/fill/double/1M", normal_rate<double>)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("NormalStream/fill/float/1M", normal_rate<float>)->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
