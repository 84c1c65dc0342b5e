#pragma once
/// @file One interface for every Monte Carlo backend (OpenMM's kernel interface, qsim's
/// interchangeable simulators): the reference backend (sim/reference.hpp) and the
/// optimised Eigen backend (sim/eigen_backend.hpp) both compute MODEL.md §1 for
/// sample i from the same random streams, so MonteCarloEngine and the backend-neutral
/// tests (tests/shared/) run either through this class; the GPU backend (cuda/, a run-time
/// plug-in) implements it too, and mc/backends.hpp picks one by name. Tensors cross it as
/// row-major std::vector<double> whatever the backend's precision: a float backend
/// rounds its inputs to float and returns its float results widened to double.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/spec.hpp"
#include "sim/sample.hpp"  // SampleMetrics, StreamKind, WeightSampling

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

}  // namespace sigprop::sim
