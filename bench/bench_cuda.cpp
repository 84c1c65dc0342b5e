// Times the GPU Monte Carlo (every sample forward, backward and all metrics, as `sigprop
// simulate --backend cuda` runs it) for bench/gpu_check.sh, and prints one JSON line. Not a
// Google Benchmark program: gpu_check.sh compares it with PyTorch in one table and needs the
// time of one whole Monte Carlo after a warm-up, not repetitions of a micro-kernel.
//   bench_cuda --width 1024 --tokens 128 --depth 32 --samples 256 [--precision float|tf32] [--reps 1]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/spec.hpp"
#include "mc/backends.hpp"  // the GPU backend through the plug-in build/lib/libsigprop_cuda.so

int main(int argc, char** argv) {
  int width = 256, tokens = 32, depth = 32, samples = 256, reps = 1;
  std::string precision = "float";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--width") width = std::atoi(v);
    else if (k == "--tokens") tokens = std::atoi(v);
    else if (k == "--depth") depth = std::atoi(v);
    else if (k == "--samples") samples = std::atoi(v);
    else if (k == "--reps") reps = std::atoi(v);
    else if (k == "--precision") precision = v;
    else {
      fmt::print(stderr, "bench_cuda: unknown option {}\n", k);
      return 2;
    }
  }
  try {
    sigprop::StackSpec s;  // the default spec (attn+mlp, pre-LN, gelu, causal, 8 heads, r = 4)
    s.width = width;
    s.tokens = tokens;
    s.depth = depth;
    s.validate();
    const auto info = sigprop::sim::cuda_device_info();
    auto be = sigprop::sim::make_stack_backend(s, 1, "cuda", precision);
    std::vector<sigprop::sim::SampleMetrics> out(samples);
    // Warm-up with one full batch: context, cuBLAS heuristics and the workspace of the timed run.
    const int nb = (samples + be->preferred_batch() - 1) / be->preferred_batch();
    be->run_samples(0, (samples + nb - 1) / nb, out.data());
    double best = 1e300;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      be->run_samples(0, samples, out.data());  // ends with the copy of the metrics: synchronised
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    double q_last = 0;
    for (auto& m : out) q_last += m.values[depth][0] / samples;
    fmt::print("{{\"engine\": \"sigprop-cuda\", \"device\": \"{}\", \"precision\": \"{}\", \"width\": {}, "
               "\"tokens\": {}, \"depth\": {}, \"heads\": {}, \"samples\": {}, \"batch\": {}, \"seconds\": {:.6f}, "
               "\"q_L\": {:.6g}}}\n",
               info.name, precision, width, tokens, depth, s.heads, samples, be->preferred_batch(), best, q_last);
  } catch (const sigprop::Error& e) {
    fmt::print(stderr, "bench_cuda: {}\n", e.what());
    return 1;
  }
  return 0;
}
