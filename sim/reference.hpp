#pragma once
/// @file The reference backend: MODEL.md §1 at finite width, executed literally in
/// double precision with plain loops (llm.c style: row-major buffers, shapes in
/// comments). It is the definition the optimised CPU and GPU backends are checked
/// against ([parity] tests on identical streams), so clarity beats speed here.
///
/// Conventions (shared with theory/engine.cpp): every block is one or two
/// half-blocks  Y = post( lam X + a F(pre(X)) )  with
///   pre  = N (norm = pre), N/sqrt(l) (lns), identity otherwise;
///   post = N (post, deepnorm), identity otherwise;
///   lam  = (2L)^{1/4} (deepnorm), 0 (residual = false), 1 otherwise;
///   a    = the branch scale (1 for deepnorm);
///   F    = attention, MLP  phi(Z W1 + b1) W2 + b2, or dense  phi(Z) W + b.
/// With norm = none and residual = false a dense block is exactly MODEL.md's
/// X' = phi(X) W + b; other norms/residuals wrap it like any other branch (as the
/// theory engine does). DeepNorm multiplies the standard deviation of V, O, W1, W2
/// and the dense W by beta = (8L)^{-1/4} (the theory engine does the same for dense).
///
/// Random streams. Every random number is normal number i of a
/// sigprop::NormalStream(seed, stream_id(sample, layer, matrix, head)), so a weight
/// can be regenerated at will: the backward pass regenerates each layer's weights
/// (and recomputes that layer's forward from the stored stream X_{l-1}) instead of
/// storing them; memory is O(L T d) per sample, never O(L d^2). Matrices are filled
/// row-major from offset 0 of their own stream and scaled to their standard
/// deviation: entry (i, j) of a fan_in x fan_out matrix is normal i*fan_out + j.
#include <cstdint>
#include <vector>

#include "core/spec.hpp"
#include "sim/sample.hpp"  // StreamKind, WeightSampling, SampleMetrics: shared by every backend

namespace sigprop::sim {

/// phi(x) and phi'(x) of MODEL.md §1 (gelu in its exact erf form), in double: the reference's
/// own formulas, written apart from core/hd_math.hpp's (the one definition that theory, cpu,
/// cuda and the Jacobian Monte Carlo use) on purpose, as the independent oracle.
double activation_value(Activation a, double x);
double activation_derivative(Activation a, double x);

/// One random finite-width stack of MODEL.md §1 per sample index.
class ReferenceStack {
 public:
  /// Validates the spec; throws ConfigError if the depth does not fit the stream ids.
  /// With WeightSampling::Conditional every Gaussian matrix is drawn conditionally on its input
  /// (sim/conditional.hpp; equal in law, not sample by sample, to Explicit); block_backward then
  /// regenerates the same conditional draw from X. independent_backward is a test hook (wrong in law).
  /// input_kernel: InputKernel::Exact conditions X_0 on the exact input kernel (sim/input.hpp);
  /// ConfigError naming input_kernel when d < T + 1.
  ReferenceStack(const StackSpec& spec, uint64_t seed, WeightSampling sampling = WeightSampling::Explicit,
                 bool independent_backward = false, InputKernel input_kernel = InputKernel::Sampled);
  [[nodiscard]] const StackSpec& spec() const { return spec_; }
  [[nodiscard]] WeightSampling sampling() const { return sampling_; }
  [[nodiscard]] InputKernel input_kernel() const { return input_kernel_; }

  /// X_0 (T, d) = sqrt(q0) (sqrt(1 - rho0) G + sqrt(rho0) 1 g^T), G and g iid N(0, 1); with
  /// InputKernel::Exact the same G and g orthonormalised first (exact_kernel_input, sim/input.hpp).
  [[nodiscard]] std::vector<double> input(int sample) const;
  /// Delta_L (T, d) iid N(0, 1), independent of every weight.
  [[nodiscard]] std::vector<double> output_grad(int sample) const;
  /// X_l (T, d) from X_{l-1} (T, d) through block l = 1..L of this sample.
  [[nodiscard]] std::vector<double> block_forward(int sample, int layer, const std::vector<double>& X) const;
  /// Delta_{l-1} = J_l^T Delta_l (T, d), J_l the Jacobian of block l at X_{l-1} = X.
  [[nodiscard]] std::vector<double> block_backward(int sample, int layer, const std::vector<double>& X,
                                                   const std::vector<double>& dY) const;
  /// Forward through every block, backward from Delta_L, and every metric per layer.
  [[nodiscard]] SampleMetrics run_sample(int sample) const;

 private:
  StackSpec spec_;
  uint64_t seed_;
  WeightSampling sampling_;
  bool independent_backward_;
  InputKernel input_kernel_;
};

}  // namespace sigprop::sim
