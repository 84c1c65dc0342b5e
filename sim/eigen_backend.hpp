#pragma once
/// @file The optimised CPU backend (`--backend cpu`): MODEL.md §1 exactly as
/// sim/reference.hpp defines it (same half-block conventions, same streams, same
/// metrics), with every matrix product an Eigen GEMM and every tensor in `Real`
/// (float or double).
///
///  - Weights come from the reference's streams. The forward pass keeps the weights and
///    intermediates of its first layers while they fit kWeightCacheBytes per sample (per
///    worker thread); the backward pass uses those, and regenerates the weights and
///    recomputes the forward of the other layers, so memory is O(L T d) for the stream
///    plus at most kWeightCacheBytes, never O(L d^2). The numbers do not depend on what
///    was kept. Every normal is drawn in double and scaled
///    in double exactly as the reference does, then rounded once to Real, so a double
///    backend uses bit-identical weights and a float backend the nearest floats to them.
///  - The per-head projections are packed into one (d, 3d) matrix [W_Q^0..W_Q^{H-1} |
///    W_K^0.. | W_V^0..], so Q, K, V of every head come from one GEMM Z W_QKV (T, 3d);
///    scores, A V and their backward are per-head GEMMs on column blocks.
///  - The metrics are computed in double from the Real streams (X_l widened once per
///    layer): the token kernel X X^T / d feeds res and rho through cancellations
///    (tr K - 1^T K 1 / T near rank collapse) that float accumulation would swamp, and the
///    T^2 d flops are negligible next to the block's d^2 T.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/backend.hpp"

namespace sigprop::sim {

template <class Real>
struct LayerWeights;  // sim/block.hpp

/// Memory (weights and intermediates) a run_sample may keep between its forward and backward passes.
inline constexpr std::size_t kWeightCacheBytes = std::size_t{256} << 20;

/// One random finite-width stack of MODEL.md §1 per sample index, in precision Real.
template <class Real>
class EigenStack final : public StackBackend {
 public:
  /// Validates the spec; throws ConfigError if the depth does not fit the stream ids.
  /// weight_cache_bytes bounds the weights kept from forward to backward (0: none).
  /// sampling: explicit matrices, or each matrix drawn conditionally on its input
  /// (sim/conditional.hpp). independent_backward is a test hook only (wrong in law).
  /// input_kernel: InputKernel::Exact conditions X_0 on the exact input kernel (sim/input.hpp),
  /// formed in double and rounded once to Real; ConfigError naming input_kernel when d < T + 1.
  EigenStack(const StackSpec& spec, uint64_t seed, std::size_t weight_cache_bytes = kWeightCacheBytes,
             WeightSampling sampling = WeightSampling::Explicit, bool independent_backward = false,
             InputKernel input_kernel = InputKernel::Sampled);
  [[nodiscard]] const StackSpec& spec() const override { return spec_; }
  [[nodiscard]] std::string backend() const override { return "cpu"; }
  [[nodiscard]] WeightSampling sampling() const override { return sampling_; }
  /// Not part of StackBackend: its vtable is the CUDA plug-in's ABI (cuda/plugin.hpp).
  [[nodiscard]] InputKernel input_kernel() const { return input_kernel_; }
  [[nodiscard]] std::string precision() const override;

  [[nodiscard]] std::vector<double> input(int sample) const override;
  [[nodiscard]] std::vector<double> output_grad(int sample) const override;
  [[nodiscard]] std::vector<double> block_forward(int sample, int layer, const std::vector<double>& X) const override;
  [[nodiscard]] std::vector<double> block_backward(int sample, int layer, const std::vector<double>& X,
                                                   const std::vector<double>& dY) const override;
  /// A float stack recomputes in double every sample whose attention logits float cannot resolve
  /// (sim/block.hpp logits_unresolved) or whose stream's res falls below kResDoubleBelow (the
  /// tokens collapse below what a float stream resolves): same streams, the sample's result is the
  /// double one.
  [[nodiscard]] SampleMetrics run_sample(int sample) const override;
  /// Float stacks: the samples run_sample recomputed in double so far for unresolved logits, and
  /// the first layer where one of them had them (-1 if none). Always 0 / -1 for double.
  [[nodiscard]] int logit_fallbacks() const { return logit_.count.load(); }
  [[nodiscard]] int logit_fallback_layer() const { return logit_.layer.load(); }
  /// The same for samples recomputed because their res fell below kResDoubleBelow (checked after
  /// the logits, so a sample counts once).
  [[nodiscard]] int res_fallbacks() const { return res_.count.load(); }
  [[nodiscard]] int res_fallback_layer() const { return res_.layer.load(); }

 private:
  struct Fallbacks {
    std::atomic<int> count{0};
    std::atomic<int> layer{-1};  ///< the smallest layer that triggered one
    void add(int l) {
      ++count;
      int first = layer.load();
      while ((first < 0 || l < first) && !layer.compare_exchange_weak(first, l)) {
      }
    }
  };
  mutable Fallbacks logit_, res_;
  std::size_t weight_cache_bytes_;
  StackSpec spec_;
  uint64_t seed_;
  WeightSampling sampling_;
  bool independent_backward_;
  InputKernel input_kernel_;
  [[nodiscard]] LayerWeights<Real> weights(int sample, int l) const;
};

extern template class EigenStack<float>;
extern template class EigenStack<double>;

}  // namespace sigprop::sim
