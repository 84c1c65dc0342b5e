#pragma once
/// @file The finite-width Monte Carlo engine ("simulate"): draws independent random
/// stacks of MODEL.md §1, runs each forward and backward, and reports the mean of every
/// metric of MODEL.md §2 over samples with its standard error (`<name>_se`).
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "mc/backends.hpp"  // available_backends, make_stack_backend

namespace sigprop::sim {

/// Revision of the Monte Carlo's numerics, for report cells (docs/report.md "Cells, jobs and
/// resume"): bump it with a fix that changes the numbers the Monte Carlo computes, so that a
/// resumed report recomputes the cells the faulty code made, and never pools them with new ones.
/// 1: everything up to and including stop 30's fix (float samples whose attention logits float
///    cannot resolve are recomputed in double). Not hashed at 1, so existing reports keep their
///    cells; cells from before stop 30 look like revision 1 and must be recomputed by hand where
///    the fallback would have changed them (they carry no "recomputed in double" warning).
/// 2: res from the stream itself (core::stream_res, stop 35: the kernel form floored it at 1.5e-8)
///    and float cpu samples whose res falls below kResDoubleBelow recomputed in double (stop 36).
/// 3: conditional sampling factors the tokens' mean and deviations instead of the tokens
///    (sim/conditional.hpp, stop 37): every conditional draw changes (equal in law), and collapsed
///    stacks are resolved to the double stream's rounding instead of res ~1e-11.
inline constexpr int kNumericsRevision = 3;

struct SimSettings {
  int samples = 64;                   ///< independent stacks (weights, input and Delta_L), 1..65536
  uint64_t seed = 0;                  ///< Philox key of every random stream
  std::string backend = "reference";  ///< "reference" (double, plain loops) or "cpu" (Eigen GEMMs)
  /// Worker threads (0 = every core). 1 by default, so that a host's own thread pool is not
  /// oversubscribed; never changes the numbers.
  int threads = 1;
  std::string precision = "double";   ///< "double" or "float" (cpu only): type of every stream and weight
  /// "explicit", "conditional" or "" (default: conditional for reference/cpu when T < min(fan_in,
  /// fan_out) of every matrix, else explicit; see resolve_weight_sampling in mc/backends.hpp)
  std::string weights_sampling;
  /// backend "cuda" only: the CUDA plug-in's path; "" searches beside the sigprop code
  /// (mc/backends.hpp). The library never reads the environment: the CLI fills this from
  /// SIGPROP_CUDA_PLUGIN.
  std::string cuda_plugin;
  /// "sampled" or "" (MODEL.md §1, default) or "exact": X_0 conditioned on the exact input kernel
  /// K0 (sim/input.hpp; reference and cpu only, needs stack.width >= stack.tokens + 1).
  std::string input_kernel;
  /// Index of the first sample: the run draws samples first_sample .. first_sample + samples - 1
  /// of the seed's streams (sample i's streams are keyed by i alone). Two runs of the same spec and
  /// seed over disjoint ranges are independent parts of one larger run, and pool_simulate_profiles
  /// joins them into its profile (to rounding). first_sample + samples <= 65536.
  int first_sample = 0;
};

/// The profile of the union of two runs' samples: a and b are `simulate` profiles of the same spec,
/// seed, backend, precision, weight sampling and input kernel over disjoint sample ranges
/// (SimSettings::first_sample). Per metric and layer the mean is the sample-count-weighted mean and
/// `_se` the standard error of the pooled samples (their sum of squares recombined exactly: equal,
/// to rounding, to one run over both ranges); null where either run is null. settings.samples is
/// the total, settings.first_sample the smaller first sample (omitted when 0) and
/// settings.sample_ranges lists the runs' [first, count]; the warnings are both runs'. Throws Error
/// when the runs do not fit together (the message names the setting).
Profile pool_simulate_profiles(const Profile& a, const Profile& b);

class MonteCarloEngine final : public Engine {
 public:
  /// Throws ConfigError for an unknown or unavailable backend, a precision the backend
  /// does not offer, samples outside [1, 65536] or negative threads.
  explicit MonteCarloEngine(SimSettings settings);
  [[nodiscard]] std::string name() const override { return "simulate"; }
  /// Columns: every metric of MODEL.md §2, then `<name>_se` = sd / sqrt(samples)
  /// (null with one sample). Sample i uses streams keyed by i only, and results are
  /// reduced in sample order, so the profile is identical for any thread count.
  /// A non-finite value nulls its layer's metric (and, for a diverged stream, every
  /// later layer) and adds a warning naming the first layer where it appeared.
  Profile run(const StackSpec& spec) override;

 private:
  SimSettings st_;
};

}  // namespace sigprop::sim
