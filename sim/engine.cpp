#include "sim/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "sigprop/version.hpp"
#include "sim/reference.hpp"

namespace sigprop::sim {

const std::vector<std::string>& available_backends() {
  static const std::vector<std::string> names{"reference"};
  return names;
}

namespace {

void check_backend(const std::string& b) {
  const auto& ok = available_backends();
  if (std::find(ok.begin(), ok.end(), b) != ok.end()) return;
  const std::string avail = fmt::format("{}", fmt::join(ok, ", "));
  if (b == "cpu" || b == "eigen")
    throw ConfigError(fmt::format("--backend: \"{}\" (the optimised Eigen CPU backend) is not built yet; available: {}",
                                  b, avail));
  if (b == "cuda")
    throw ConfigError(fmt::format("--backend: \"cuda\" is not available in this build; available: {}", avail));
  std::string hint = did_you_mean(b, {"reference", "cpu", "cuda"});
  throw ConfigError(fmt::format("--backend: unknown backend \"{}\"{}; available: {}", b,
                                hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint), avail));
}

}  // namespace

MonteCarloEngine::MonteCarloEngine(SimSettings settings) : st_(std::move(settings)) {
  check_backend(st_.backend);
  if (st_.samples < 1 || st_.samples > kMaxSamples)
    throw ConfigError(fmt::format("--samples: must be in [1, {}] (16-bit sample ids of the random streams), got {}",
                                  kMaxSamples, st_.samples));
  if (st_.threads < 0) throw ConfigError(fmt::format("--threads: must be >= 0 (0 = all cores), got {}", st_.threads));
}

Profile MonteCarloEngine::run(const StackSpec& spec) {
  const ReferenceStack stack(spec, st_.seed);  // validates the spec
  const int N = st_.samples, L = spec.depth;
  const auto& names = metric_names();
  const int M = static_cast<int>(names.size());

  // Each sample is independent and writes only its own slot: thread count cannot change a number.
  std::vector<SampleMetrics> res(N);
  int nthreads = st_.threads > 0 ? st_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  nthreads = std::min(nthreads, N);
  std::atomic<int> next{0};
  std::vector<std::exception_ptr> errors(nthreads);
  auto work = [&](int w) {
    try {
      for (int i = next.fetch_add(1); i < N; i = next.fetch_add(1)) res[i] = stack.run_sample(i);
    } catch (...) {
      errors[w] = std::current_exception();
      next.store(N);
    }
  };
  if (nthreads == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int w = 0; w < nthreads; ++w) pool.emplace_back(work, w);
    for (auto& t : pool) t.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  std::vector<std::string> cols = names;
  for (auto& m : names) cols.push_back(m + "_se");
  Profile p = Profile::make(spec, name(), cols);
  p.settings = {{"engine", "simulate"},
                {"width", spec.width},
                {"samples", N},
                {"seed", st_.seed},
                {"backend", st_.backend},
                {"precision", "double"},
                {"rng", "Philox4x32-10 + Box-Muller; streams keyed by (sample, layer, matrix, head)"},
                {"version", kVersion}};

  // Reduce in sample order. A metric is reported only when every sample has a finite value.
  for (int l = 0; l <= L; ++l)
    for (int m = 0; m < M; ++m) {
      if (l == 0 && (names[m] == "update_ratio" || names[m] == "ang_dist")) continue;  // undefined at l = 0
      // Mean and SE of v / vmax, rescaled at the end: values near overflow (1e300) keep a
      // finite mean and SE, and nothing is squared at the original scale.
      bool finite = true;
      double vmax = 0.0;
      for (int i = 0; i < N; ++i) {
        double v = res[i].values[l][m];
        finite = finite && std::isfinite(v);
        vmax = std::max(vmax, std::abs(v));
      }
      if (!finite) continue;  // stays null; the warnings below say where and why
      const double scale = vmax > 0 ? vmax : 1.0;
      double mean_s = 0.0, ss = 0.0;
      for (int i = 0; i < N; ++i) mean_s += res[i].values[l][m] / scale;
      mean_s /= N;
      for (int i = 0; i < N; ++i) {
        double dv = res[i].values[l][m] / scale - mean_s;
        ss += dv * dv;
      }
      p.rows[l][m] = mean_s * scale;
      p.rows[l][M + m] = N > 1 ? scale * std::sqrt(ss / (N - 1) / N) : std::nan("");
    }

  // Warnings name the first layer where a non-finite value appeared, and how many samples.
  int fwd = -1, fwd_count = 0, bwd = -1, bwd_count = 0;
  for (int i = 0; i < N; ++i) {
    if (res[i].forward_nonfinite >= 0) {
      ++fwd_count;
      fwd = fwd < 0 ? res[i].forward_nonfinite : std::min(fwd, res[i].forward_nonfinite);
    }
    if (res[i].backward_nonfinite >= 0) {
      ++bwd_count;
      bwd = std::max(bwd, res[i].backward_nonfinite);
    }
  }
  if (fwd >= 0) {
    p.warnings.push_back(fmt::format("non-finite stream X_l first at layer {} ({} of {} samples diverged in the "
                                     "forward pass): layers >= {} are null, and grad_var is null at every layer",
                                     fwd, fwd_count, N, fwd));
    // Null every metric from that layer on (already NaN in the mean), and grad_var everywhere.
    for (int l = 0; l <= L; ++l)
      for (int m = 0; m < M; ++m)
        if (l >= fwd || names[m] == "grad_var") p.rows[l][m] = p.rows[l][M + m] = std::nan("");
  }
  if (bwd >= 0)
    p.warnings.push_back(fmt::format("non-finite gradient Delta_l first at layer {} (counting down from {}; {} of {} "
                                     "samples): grad_var at layers <= {} is null",
                                     bwd, L, bwd_count, N, bwd));
  // Anything else non-finite (e.g. X X^T / d overflowing while X is still finite).
  int other_layer = -1;
  std::string other_metric;
  for (int l = 0; l <= L && other_layer < 0; ++l)
    for (int m = 0; m < M; ++m) {
      if (l == 0 && (names[m] == "update_ratio" || names[m] == "ang_dist")) continue;
      const bool grad = names[m] == "grad_var";
      const bool explained = (fwd >= 0 && (l >= fwd || grad)) || (grad && l <= bwd);
      bool finite = true;
      for (int i = 0; i < N && finite; ++i) finite = std::isfinite(res[i].values[l][m]);
      if (!finite && !explained) {
        other_layer = l;
        other_metric = names[m];
        break;
      }
    }
  if (other_layer >= 0)
    p.warnings.push_back(fmt::format("non-finite {} first at layer {} from finite streams (overflow of X X^T/d, or "
                                     "a zero token): such entries are null",
                                     other_metric, other_layer));
  return p;
}

}  // namespace sigprop::sim
