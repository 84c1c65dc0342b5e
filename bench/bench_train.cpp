// Timings of the byte-level language model's trainer (validate/train.hpp): one training step
// (validate::train_step: forward, backward, global norm, clipping, AdamW) on the model of
// `sigprop train`, and its parts.
//
//   build/bench/bench_train                                 # everything (about a minute)
//   build/bench/bench_train --benchmark_filter='train_step/.*/d64'
//   build/bench/bench_train --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// tools/train_bench.py times the same model and steps in PyTorch, in one script (docs/train.md).
//
// Models (Pre-LN attn+mlp, GELU, causal, LayerNorm, r = 4, vocabulary 256, learned positions,
// untied lm_head; train_model_config): d 64 / H 4 / L 4 / T 64 and d 128 / H 4 / L 8 / T 128,
// batch B = 16, float, on `threads` workers (loss_and_grad splits the batch into chunks of
// 4 sequences, so at most B/4 workers help). The batch is random bytes (the speed does not
// depend on the text).
//
//   train_step/<size>/threads:N   validate::train_step (what `sigprop train` runs per step)
//   loss_and_grad/<size>/...      the forward and backward pass alone (no norm, no AdamW)
//   loss/<size>/...               the forward pass and loss alone (grads = nullptr)
//
// tokens/s counts B*T positions per step. GFLOP/s counts the matrix products of one step,
// forward + backward (backward = 2x forward), per step:
//   6 * N_mat * B*T  +  12 * L * T^2 * d * B,    N_mat = L (3d^2 + d^2 + 2 d R) + d V
// i.e. 6 flops per matrix parameter and position (W_QKV, W_O, W1, W2 of every block and lm_head;
// embeddings, norms, biases, softmax and GELU not counted) plus the attention products
// Q K^T and A V (4 T^2 d forward per block and sequence, causal mask not exploited) and
// their backward (8 T^2 d). The forward-only case counts a third of it.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/spec.hpp"
#include "validate/model.hpp"
#include "validate/train.hpp"

namespace {

namespace v = sigprop::validate;

struct Size {
  int d, H, L, T, B;
};

sigprop::StackSpec stack(const Size& z) {
  return sigprop::resolve_spec("", {"stack.blocks=attn+mlp", "stack.norm=pre", "stack.activation=gelu",
                                    "stack.mask=causal", "stack.mlp_ratio=4", fmt::format("stack.width={}", z.d),
                                    fmt::format("stack.heads={}", z.H), fmt::format("stack.depth={}", z.L),
                                    fmt::format("stack.tokens={}", z.T)});
}

/// Matrix-product flops of one training step (file comment).
double step_flops(const sigprop::StackSpec& s, int B, int vocab) {
  const double d = s.width, T = s.tokens, R = s.mlp_width(), L = s.depth;
  const double n_mat = L * (3 * d * d + d * d + 2 * d * R) + d * vocab;
  return 6 * n_mat * B * T + 12 * L * T * T * d * B;
}

v::Batch random_batch(int B, int T, std::uint64_t seed) {
  v::Batch b;
  b.inputs.assign(B, std::vector<int>(T));
  b.targets.assign(B, std::vector<int>(T));
  std::uint64_t i = 0;
  for (int s = 0; s < B; ++s)
    for (int t = 0; t < T; ++t) {
      b.inputs[s][t] = static_cast<int>(v::uniform_index(seed, 0, i++, 256));
      b.targets[s][t] = static_cast<int>(v::uniform_index(seed, 1, i++, 256));
    }
  return b;
}

enum class What { TrainStep, LossAndGrad, Loss };

void run(benchmark::State& state, What what, Size z, int threads) {
  const sigprop::StackSpec spec = stack(z);
  const v::ModelConfig cfg = v::train_model_config(spec);
  v::Model<float> model = v::Model<float>::initial(cfg, 1);
  v::AdamState<float> adam = v::AdamState<float>::zeros(model);
  v::TrainSettings s;
  s.steps = 1'000'000;  // a long schedule: lr stays near its peak, as in the middle of a run
  s.warmup = 0;
  s.batch = z.B;
  s.threads = threads;
  const v::Batch batch = random_batch(z.B, z.T, 7);
  int step = 0;
  for (auto _ : state) {
    switch (what) {
      case What::TrainStep: {
        const v::StepResult r = v::train_step(model, adam, batch, s, step++, threads);
        benchmark::DoNotOptimize(r.loss);
        break;
      }
      case What::LossAndGrad: {
        v::Model<float> g;
        benchmark::DoNotOptimize(v::loss_and_grad(model, batch, &g, threads));
        benchmark::DoNotOptimize(g.wte.data());
        break;
      }
      case What::Loss:
        benchmark::DoNotOptimize(v::loss_and_grad<float>(model, batch, nullptr, threads));
        break;
    }
  }
  const double n = static_cast<double>(state.iterations());
  const double flops = step_flops(spec, z.B, cfg.vocab) / (what == What::Loss ? 3.0 : 1.0);
  state.counters["threads"] = threads;
  state.counters["params"] = static_cast<double>(model.num_params());
  state.counters["tokens/s"] = benchmark::Counter(n * z.B * z.T, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(n * flops / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  const Size sizes[] = {{64, 4, 4, 64, 16}, {128, 4, 8, 128, 16}};
  const std::pair<What, const char*> whats[] = {
      {What::TrainStep, "train_step"}, {What::LossAndGrad, "loss_and_grad"}, {What::Loss, "loss"}};
  for (const auto& [what, wname] : whats)
    for (const Size& z : sizes)
      for (int threads : {1, 2}) {
        const std::string name =
            fmt::format("{}/float/d{}/H{}/L{}/T{}/B{}/threads:{}", wname, z.d, z.H, z.L, z.T, z.B, threads);
        benchmark::RegisterBenchmark(name.c_str(), [what, z, threads](benchmark::State& st) {
          run(st, what, z, threads);
        })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
