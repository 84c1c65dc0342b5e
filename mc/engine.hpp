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
};

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
