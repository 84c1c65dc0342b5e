#pragma once
/// @file One interface for every Monte Carlo backend (OpenMM's kernel interface, qsim's
/// interchangeable simulators): the reference backend (sim/reference.hpp) and the
/// optimised Eigen backend (sim/eigen_backend.hpp) both compute MODEL.md §1 for
/// sample i from the same random streams, so MonteCarloEngine and the backend-neutral
/// tests (tests/shared/) run either through this class. Tensors cross it as
/// row-major std::vector<double> whatever the backend's precision: a float backend
/// rounds its inputs to float and returns its float results widened to double.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/spec.hpp"
#include "sim/reference.hpp"  // SampleMetrics, StreamKind

namespace sigprop::sim {

class StackBackend {
 public:
  virtual ~StackBackend() = default;
  [[nodiscard]] virtual const StackSpec& spec() const = 0;
  /// "reference", "cpu" or "cuda".
  [[nodiscard]] virtual std::string backend() const = 0;
  /// "double" or "float" (cuda: "float" or "tf32"): the type of every stream, weight and intermediate.
  [[nodiscard]] virtual std::string precision() const = 0;
  /// How the Gaussian weight matrices are drawn (docs/simulate.md): Explicit (every entry from
  /// its stream; block_backward is J^T of block_forward) or Conditional (only the projections the
  /// stack uses, equal in law; block_backward regenerates the draw conditioned on X).
  [[nodiscard]] virtual WeightSampling sampling() const { return WeightSampling::Explicit; }

  /// X_0 (T, d) of this sample (MODEL.md §1 input).
  [[nodiscard]] virtual std::vector<double> input(int sample) const = 0;
  /// Delta_L (T, d), iid N(0, 1).
  [[nodiscard]] virtual std::vector<double> output_grad(int sample) const = 0;
  /// X_l (T, d) from X_{l-1} = X (T, d) through block l = 1..L of this sample.
  [[nodiscard]] virtual std::vector<double> block_forward(int sample, int layer,
                                                          const std::vector<double>& X) const = 0;
  /// Delta_{l-1} = J_l^T dY (T, d), J_l the Jacobian of block l at X_{l-1} = X.
  [[nodiscard]] virtual std::vector<double> block_backward(int sample, int layer, const std::vector<double>& X,
                                                           const std::vector<double>& dY) const = 0;
  /// Forward through every block, backward from Delta_L, every metric per layer.
  [[nodiscard]] virtual SampleMetrics run_sample(int sample) const = 0;

  /// run_sample for samples first .. first + count - 1 into out[0 .. count - 1]. The default
  /// loops over run_sample; a GPU backend runs them as batches on the device.
  virtual void run_samples(int first, int count, SampleMetrics* out) const {
    for (int i = 0; i < count; ++i) out[i] = run_sample(first + i);
  }
  /// Samples the backend wants per run_samples call; 0 (CPU backends) means one sample per
  /// call from the engine's worker threads.
  [[nodiscard]] virtual int preferred_batch() const { return 0; }
};

/// Precisions a backend offers, in the order shown in error messages.
const std::vector<std::string>& backend_precisions(const std::string& backend);

/// The precision a backend runs in when none is asked for: "double" (reference, cpu), "float" (cuda).
std::string default_precision(const std::string& backend);

/// The backend `backend` ("reference" | "cpu" | "cuda" when built with CUDA) in precision
/// `precision` ("double" | "float", cuda "float" | "tf32"; the reference is double only; ""
/// = default_precision). Validates the spec; throws ConfigError for an unknown backend or a
/// precision the backend does not offer, CudaError for cuda without a usable device.
/// sampling: WeightSampling::Conditional for reference and cpu only (ConfigError naming
/// --weights-sampling for cuda).
std::unique_ptr<StackBackend> make_stack_backend(const StackSpec& spec, uint64_t seed, const std::string& backend,
                                                 const std::string& precision,
                                                 WeightSampling sampling = WeightSampling::Explicit);

/// The sampling a Monte Carlo run uses and why: `requested` is "explicit", "conditional" or ""
/// (the default: conditional where it is exact and faster, i.e. backend reference or cpu and
/// T < min(fan_in, fan_out) of every weight matrix; explicit otherwise). A requested
/// "conditional" with T >= min(n, m) falls back to explicit (conditioning would not be faster)
/// and says so in `note`. Throws ConfigError for an unknown value, or "conditional" with cuda.
struct SamplingChoice {
  WeightSampling sampling;
  std::string note;  ///< empty, or why the run is explicit although conditional was possible or asked for
};
SamplingChoice resolve_weight_sampling(const StackSpec& spec, const std::string& backend,
                                       const std::string& requested);

}  // namespace sigprop::sim
