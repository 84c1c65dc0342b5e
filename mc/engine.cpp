#include "mc/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/parallel.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/spec.hpp"  // spec_to_json
#include "core/stats.hpp"
#include "sigprop/version.hpp"
#include "mc/backends.hpp"
#include "sim/block.hpp"           // kLogitTolerance, kNearTieGap
#include "sim/eigen_backend.hpp"  // kWeightCacheBytes
#include "sim/input.hpp"           // check_input_kernel
#include "sim/reference.hpp"

namespace sigprop::sim {

namespace {

// Up-front estimate of what run() allocates (docs/limits.md): per sample in flight, the streams
// X_0..X_L (T x d) kept for the backward pass, one block's weights (drawn per layer) and its
// half-block caches (a few T x max(d, R) buffers and H T x T attention matrices), the Eigen
// backend's weight cache (at most kWeightCacheBytes); plus every sample's metric table. Sizes in
// saturating 64-bit arithmetic; one buffer of more than 2^31 - 1 elements is refused outright
// because the backends index rows and columns with int.
void check_simulate_memory(const StackSpec& spec, const SimSettings& st, WeightSampling sampling) {
  using U = std::uint64_t;
  const U L = static_cast<U>(spec.depth), T = static_cast<U>(spec.tokens), d = static_cast<U>(spec.width),
          H = static_cast<U>(spec.heads), R = spec.has_mlp() ? static_cast<U>(spec.mlp_width()) : 0;
  const U wide = std::max(d, R);
  // Conditional sampling never materialises a weight matrix: only T-row projections and the
  // T-column backward draw (n x T) exist, so neither d x wide nor d^2 per layer enters its estimate.
  const bool conditional = sampling == WeightSampling::Conditional;
  const U biggest = std::max({sat_mul({T, wide}), conditional ? U{0} : sat_mul({d, wide}), sat_mul({H, T, T})});
  if (biggest > 2147483647u)
    throw ConfigError(fmt::format(
        "the simulate engine would need a single matrix of {} elements (stack.width = {}, mlp width {}, stack.tokens = "
        "{}, stack.heads = {}); the backends index matrices with 32-bit ints, so at most 2147483647",
        biggest, spec.width, R, spec.tokens, spec.heads));
  const U real = st.precision == "float" ? 4 : 8;
  U weights = 0;
  if (conditional) {
    // Per layer: G for Q,K,V (T x 3d), W_O (T x d), W_1 (T x R), W_2 (T x d), dense (T x d), the
    // backward draws H (n x T) of the same total size, and the kept factors (T x n, T x T).
    if (spec.has_attn()) weights = sat_add({weights, sat_mul({2, T, 4 * d}), sat_mul({2, T, T})});
    if (spec.has_mlp()) weights = sat_add({weights, sat_mul({2, T, R + d}), sat_mul({2, T, T}), R, d});
    if (spec.blocks == Blocks::Dense) weights = sat_add({weights, sat_mul({2, T, d}), sat_mul({T, T}), d});
  } else {
    if (spec.has_attn()) weights = sat_add({weights, sat_mul({4, d, d})});
    if (spec.has_mlp()) weights = sat_add({weights, sat_mul({2, d, R}), R, d});
    if (spec.blocks == Blocks::Dense) weights = sat_add({weights, sat_mul({d, d}), d});
  }
  const U caches = sat_add({sat_mul({8, T, wide}), sat_mul({2, H, T, T})});
  const U cache = st.backend == "cpu" ? std::min<U>(kWeightCacheBytes, sat_mul({L, sat_add({weights, caches}), real})) : 0;
  const U per_sample = sat_add({sat_mul({sat_add({sat_mul({L + 1, T, d}), sat_mul({2, weights}), caches}), real}),
                                cache, sat_mul({L + 1, 2 * T * T + 16, 8})});
  const U in_flight = static_cast<U>(resolve_threads(st.threads, st.samples));
  const U tables = sat_mul({static_cast<U>(st.samples), L + 1, 8 * 8 + 32});
  require_memory(sat_add({sat_mul({in_flight, per_sample}), tables}),
                 fmt::format("the simulate engine ({} samples in flight)", in_flight),
                 fmt::format("stack.width = {}, stack.depth = {}, stack.tokens = {}, mlp width {} and the thread count",
                             spec.width, spec.depth, spec.tokens, R));
}

}  // namespace

MonteCarloEngine::MonteCarloEngine(SimSettings settings) : st_(std::move(settings)) {
  check_backend(st_.backend);
  if (st_.precision.empty()) st_.precision = default_precision(st_.backend);
  check_precision(st_.backend, st_.precision);
  if (st_.samples < 1 || st_.samples > kMaxSamples)
    throw ConfigError(fmt::format("samples: must be in [1, {}] (16-bit sample ids of the random streams), got {}",
                                  kMaxSamples, st_.samples));
  if (st_.threads < 0) throw ConfigError(fmt::format("threads: must be >= 0 (0 = all cores), got {}", st_.threads));
  if (st_.first_sample < 0 || st_.first_sample > kMaxSamples - st_.samples)
    throw ConfigError(fmt::format("first_sample: must be in [0, {} - samples = {}] (16-bit sample ids of the random "
                                  "streams), got {}",
                                  kMaxSamples, kMaxSamples - st_.samples, st_.first_sample));
  resolve_weight_sampling(StackSpec{}, st_.backend, st_.weights_sampling);  // the mode and backend, before any work
  resolve_input_kernel(st_.backend, st_.input_kernel);
}

Profile MonteCarloEngine::run(const StackSpec& spec) {
  validate_for_simulation(spec);
  const SamplingChoice sampling = resolve_weight_sampling(spec, st_.backend, st_.weights_sampling);
  const InputKernel input_kernel = resolve_input_kernel(st_.backend, st_.input_kernel);
  check_input_kernel(spec, input_kernel);
  check_simulate_memory(spec, st_, sampling.sampling);  // before any stream or weight is allocated
  const std::unique_ptr<StackBackend> stack =
      make_stack_backend(spec, st_.seed, st_.backend, st_.precision, sampling.sampling, st_.cuda_plugin,
                         input_kernel);  // validates the spec
  const int N = st_.samples, L = spec.depth, first = st_.first_sample;
  const auto& names = metric_names();
  const int M = static_cast<int>(names.size());

  // Each sample is independent and writes only its own slot: thread count cannot change a number.
  std::vector<SampleMetrics> res(N);
  std::mutex progress_mutex;
  int done = 0;
  if (stack->preferred_batch() > 0) {
    // A device backend: whole batches in this thread (the device is the parallelism).
    // Even batches (sizes differ by at most one) so the last one does not run nearly empty.
    const int nb = (N + stack->preferred_batch() - 1) / stack->preferred_batch();
    const int batch = (N + nb - 1) / nb;
    for (int begin = 0; begin < N; begin += batch) {
      const int count = std::min(batch, N - begin);
      stack->run_samples(first + begin, count, res.data() + begin);
      progress(static_cast<double>(begin + count) / N, fmt::format("sample {}/{}", begin + count, N));
    }
  } else {
    parallel_for(N, st_.threads, [&](int i) {
      res[i] = stack->run_sample(first + i);
      if (progress_callback()) {  // serialized, and never called again once it said stop
        std::lock_guard<std::mutex> lock(progress_mutex);
        if (done < 0) return;
        const int k = ++done;
        done = -1;  // until the callback returns
        progress(static_cast<double>(k) / N, fmt::format("sample {}/{}", k, N));
        done = k;
      }
    });
  }

  std::vector<std::string> cols = names;
  for (auto& m : names) cols.push_back(m + "_se");
  Profile p = Profile::make(spec, name(), cols);
  p.settings = {{"engine", "simulate"},
                {"width", spec.width},
                {"samples", N},
                {"seed", st_.seed},
                {"backend", st_.backend},
                {"precision", st_.precision},
                {"weights_sampling", to_string(sampling.sampling)},
                {"rng", "Philox4x32-10 + Box-Muller; streams keyed by (sample, layer, matrix, head)"},
                {"version", kVersion}};
  if (!sampling.note.empty()) p.settings["weights_sampling_note"] = sampling.note;
  if (first > 0) p.settings["first_sample"] = first;  // only when set: default profiles keep their settings
  // Only when exact: a default profile's settings stay as they were before the option existed.
  if (input_kernel == InputKernel::Exact) p.settings["input_kernel"] = to_string(input_kernel);
  // A float cpu run recomputes in double every sample whose res falls below this, so its res is
  // resolved to a float's precision at every size (the atlas reads it: reports/atlas.cpp).
  if (dynamic_cast<const EigenStack<float>*>(stack.get())) p.settings["res_double_below"] = kResDoubleBelow;

  // Reduce in sample order. A metric is reported only when every sample has a finite value.
  for (int l = 0; l <= L; ++l)
    for (int m = 0; m < M; ++m) {
      if (l == 0 && (names[m] == "update_ratio" || names[m] == "ang_dist")) continue;  // undefined at l = 0
      // core/stats.hpp's mean_se (overflow-safe: values near 1e300 keep a finite mean and SE).
      std::vector<double> v(N);
      bool finite = true;
      for (int i = 0; i < N; ++i) {
        v[i] = res[i].values[l][m];
        finite = finite && std::isfinite(v[i]);
      }
      if (!finite) continue;  // stays null; the warnings below say where and why
      const MeanSe r = mean_se(v);
      p.rows[l][m] = r.mean;
      p.rows[l][M + m] = r.se;
    }

  // Float samples whose attention logits or res float could not resolve were recomputed in double.
  if (const auto* fs = dynamic_cast<const EigenStack<float>*>(stack.get())) {
    auto how_many = [N](int k) { return k == N ? fmt::format("all {} samples", N) : fmt::format("{} of {} samples", k, N); };
    auto others = [N](int k) { return k == N ? "" : "; the other samples are float"; };
    if (fs->logit_fallbacks() > 0)
      p.warnings.push_back(fmt::format(
          "{} recomputed in double precision: their attention logits (first at layer {}) reached magnitudes float "
          "resolves only to ±{} or worse, with a row's two largest within {} plus that resolution (a float near-tie splits a saturated "
          "softmax row and inflates its gradient by orders of magnitude){}",
          how_many(fs->logit_fallbacks()), fs->logit_fallback_layer(), kLogitTolerance, kNearTieGap,
          others(fs->logit_fallbacks())));
    if (fs->res_fallbacks() > 0)
      p.warnings.push_back(fmt::format(
          "{} recomputed in double precision: their tokens collapsed to res < {} (first at layer {}), below which a "
          "float stream's rounding is 0.1% of res or more (it floors res at ~1e-7){}",
          how_many(fs->res_fallbacks()), kResDoubleBelow, fs->res_fallback_layer(), others(fs->res_fallbacks())));
  }
  // Conditional sampling treats token deviations below kCondNoiseTol of the tokens' norm as none.
  if (sampling.sampling == WeightSampling::Conditional)
    if (const auto it = std::find(names.begin(), names.end(), "res"); it != names.end()) {
      const auto m = static_cast<std::size_t>(it - names.begin());
      for (int l = 0; l <= L; ++l)
        if (p.rows[l][m] < kCondResolvedRes) {  // false for NaN
          p.warnings.push_back(fmt::format(
              "res falls below {} at layer {}: conditional weight sampling treats a token's deviation from the "
              "tokens' mean below {} of their norm as rounding, so from res ~1e-14 on its tokens collapse faster "
              "than the stack's; weights_sampling = \"explicit\" follows the collapse to the double stream's floor "
              "(~5e-16)",
              kCondResolvedRes, l, kCondNoiseTol));
          break;
        }
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
    p.warnings.push_back(
        fmt::format("non-finite stream X_l first at layer {} ({} of {} samples diverged in the "
                    "forward pass): layers >= {} are null, and grad_var is null at every layer",
                    fwd, fwd_count, N, fwd));
    // Null every metric from that layer on (already NaN in the mean), and grad_var everywhere.
    for (int l = 0; l <= L; ++l)
      for (int m = 0; m < M; ++m)
        if (l >= fwd || names[m] == "grad_var") p.rows[l][m] = p.rows[l][M + m] = std::nan("");
  }
  if (bwd >= 0)
    p.warnings.push_back(
        fmt::format("non-finite gradient Delta_l first at layer {} (counting down from {}; {} of {} "
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
    p.warnings.push_back(
        fmt::format("non-finite {} first at layer {} from finite streams (overflow of X X^T/d, or "
                    "a zero token): such entries are null",
                    other_metric, other_layer));
  return p;
}

namespace {

/// The sample ranges [first, count] a simulate profile covers: settings.sample_ranges of a pooled
/// profile, else [first_sample, samples].
std::vector<std::pair<int, int>> sample_ranges(const Profile& p, const char* which) {
  std::vector<std::pair<int, int>> r;
  try {
    if (p.settings.contains("sample_ranges")) {
      for (const auto& e : p.settings.at("sample_ranges")) r.emplace_back(e.at(0).get<int>(), e.at(1).get<int>());
    } else {
      r.emplace_back(p.settings.value("first_sample", 0), p.settings.at("samples").get<int>());
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("pool_simulate_profiles: profile {} has no readable settings.samples/sample_ranges ({})",
                            which, e.what()));
  }
  for (auto [f, n] : r)
    if (f < 0 || n < 1)
      throw Error(fmt::format("pool_simulate_profiles: profile {} has a sample range [{}, {}) that is empty or negative",
                              which, f, f + n));
  return r;
}

}  // namespace

Profile pool_simulate_profiles(const Profile& a, const Profile& b) {
  if (a.engine != "simulate" || b.engine != "simulate")
    throw Error(fmt::format("pool_simulate_profiles: both profiles must come from the simulate engine, got \"{}\" and "
                            "\"{}\"",
                            a.engine, b.engine));
  if (spec_to_json(a.spec) != spec_to_json(b.spec))
    throw Error("pool_simulate_profiles: the profiles' specs differ (only runs of one spec pool)");
  for (const char* key : {"seed", "backend", "precision", "weights_sampling", "input_kernel"}) {
    const nlohmann::json va = a.settings.value(key, nlohmann::json()), vb = b.settings.value(key, nlohmann::json());
    if (va != vb)
      throw Error(fmt::format("pool_simulate_profiles: settings.{} differs ({} vs {}): only samples of one set of "
                              "random streams pool",
                              key, va.dump(), vb.dump()));
  }
  if (a.columns != b.columns || a.rows.size() != b.rows.size())
    throw Error("pool_simulate_profiles: the profiles' columns or layers differ");
  std::vector<std::pair<int, int>> ranges = sample_ranges(a, "a"), rb = sample_ranges(b, "b");
  ranges.insert(ranges.end(), rb.begin(), rb.end());
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].first + ranges[i - 1].second)
      throw Error(fmt::format("pool_simulate_profiles: sample ranges [{}, {}) and [{}, {}) overlap (settings.first_sample): "
                              "the same samples would count twice",
                              ranges[i - 1].first, ranges[i - 1].first + ranges[i - 1].second, ranges[i].first,
                              ranges[i].first + ranges[i].second));
  const double n1 = a.settings.at("samples").get<double>(), n2 = b.settings.at("samples").get<double>(), n = n1 + n2;

  Profile p = a;
  p.extras.erase("report_cell");  // a report's cell bookkeeping belongs to the cell file, not to the pool
  p.settings["samples"] = static_cast<int>(n);
  if (ranges.front().first > 0)
    p.settings["first_sample"] = ranges.front().first;
  else
    p.settings.erase("first_sample");
  p.settings["sample_ranges"] = nlohmann::json::array();
  for (auto [f, c] : ranges) p.settings["sample_ranges"].push_back({f, c});
  for (const std::string& w : b.warnings)
    if (std::find(p.warnings.begin(), p.warnings.end(), w) == p.warnings.end()) p.warnings.push_back(w);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (size_t c = 0; c < a.columns.size(); ++c) {
    const std::string& name = a.columns[c];
    if (name.size() > 3 && name.compare(name.size() - 3, 3, "_se") == 0) continue;
    const int cs = a.has(name + "_se") ? a.column(name + "_se") : -1;
    if (cs < 0) throw Error(fmt::format("pool_simulate_profiles: column {} has no {}_se", name, name));
    for (size_t l = 0; l < p.rows.size(); ++l) {
      const double m1 = a.rows[l][c], m2 = b.rows[l][c], e1 = a.rows[l][cs], e2 = b.rows[l][cs];
      if (!std::isfinite(m1) || !std::isfinite(m2)) {  // a null in either run: some sample was not finite
        p.rows[l][c] = p.rows[l][cs] = nan;
        continue;
      }
      // Sums of squares about each run's mean, (n_i - 1) sd_i^2 = (n_i - 1) n_i se_i^2 (0 for one
      // sample), recombined with the between-runs term n1 n2 / n (m1 - m2)^2; all in units of the
      // largest magnitude, so that values near the overflow threshold stay finite.
      const double sd1 = n1 >= 2 ? e1 * std::sqrt(n1) : 0, sd2 = n2 >= 2 ? e2 * std::sqrt(n2) : 0;
      double sc = std::max({std::abs(m1), std::abs(m2), std::abs(sd1), std::abs(sd2)});
      if (!(sc > 0) || !std::isfinite(sc)) sc = 1;
      const double x1 = m1 / sc, x2 = m2 / sc, s1 = sd1 / sc, s2 = sd2 / sc;
      p.rows[l][c] = sc * (x1 * (n1 / n) + x2 * (n2 / n));
      const double ss = (n1 - 1) * s1 * s1 + (n2 - 1) * s2 * s2 + n1 * n2 / n * (x1 - x2) * (x1 - x2);
      p.rows[l][cs] = sc * std::sqrt(ss / (n - 1) / n);  // NaN when a run with >= 2 samples had none
    }
  }
  return p;
}

}  // namespace sigprop::sim
