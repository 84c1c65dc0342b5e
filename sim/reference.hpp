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

namespace sigprop::sim {

/// The `matrix` field of stream_id(sample, layer, matrix, head). Values are part
/// of the reproducibility contract: never renumber, only append.
enum class StreamKind : uint16_t {
  InputG = 1,      ///< G (T, d) of X_0, layer 0
  InputG1 = 2,     ///< g (d) of X_0, layer 0
  OutputGrad = 3,  ///< Delta_L (T, d), layer 0
  Wq = 4,          ///< W_Q^h (d, dh), head h
  Wk = 5,          ///< W_K^h (d, dh), head h
  Wv = 6,          ///< W_V^h (d, dh), head h
  Wo = 7,          ///< W_O (d, d), head 0
  W1 = 8,          ///< (d, rd)
  B1 = 9,          ///< (rd)
  W2 = 10,         ///< (rd, d)
  B2 = 11,         ///< (d)
  Wd = 12,         ///< dense W (d, d)
  Bd = 13,         ///< dense b (d)
  Wte = 14,        ///< language model token embedding (V, d), layer 0 (validate/model.hpp)
  Wpe = 15,        ///< language model position embedding (T, d), layer 0
  LmHead = 16,     ///< language model unembedding (d, V), layer 0
  /// Conditional sampling (sim/conditional.hpp), head field = CondSlot: the (T, m) unit normals
  /// whose row t, scaled per column, is the projection of W onto the direction token t of W's
  /// input opened (forward).
  CondFwd = 17,
  /// Conditional sampling, head field = CondSlot: the (T, n) unit normals whose row t, times the
  /// factor of the cotangent, gives the part of Delta W^T the forward never saw (backward).
  CondBwd = 18,
};

/// How the Monte Carlo draws its Gaussian weight matrices.
enum class WeightSampling {
  Explicit,     ///< every entry from its own stream (StreamKind Wq..Wd): O(T d^2) per layer
  Conditional,  ///< only the projections the stack uses (sim/conditional.hpp): O(T^2 d) per layer
};

/// "explicit" | "conditional"
const char* to_string(WeightSampling w);

/// The matrices of one layer under conditional sampling (the head field of CondFwd, CondBwd
/// streams). Part of the reproducibility contract: never renumber.
enum class CondSlot : int {
  Qkv = 0,  ///< W_QKV (d, 3d), columns [W_Q^0..W_Q^{H-1} | W_K^0.. | W_V^0..] (heads are column blocks)
  Wo = 1,   ///< W_O (d, d)
  W1 = 2,   ///< (d, R)
  W2 = 3,   ///< (R, d)
  Wd = 4,   ///< dense W (d, d)
};

/// Rank threshold of the conditional factorisation: token t opens a new direction iff the norm
/// of its residual after projection onto the earlier tokens exceeds kCondRankTol times its norm.
inline constexpr double kCondRankTol = 1e-10;
/// Test hook only: CondBwd slot offset of the independent-backward variant (wrong in law).
inline constexpr int kCondIndependentSlot = 16;

/// Largest sample count and depth that fit the 16-bit fields of stream_id.
inline constexpr int kMaxSamples = 65536;
inline constexpr int kMaxDepth = 65535;

/// Columns of SampleMetrics::values, in metric_names() order.
enum Col { kQ, kRho, kRes, kEffRank, kUpdate, kAng, kGrad, kNumCols };

/// phi(x) and phi'(x) of MODEL.md §1 (gelu in its exact erf form), in double: the reference's
/// own formulas, written apart from core/hd_math.hpp's (the one definition that theory, cpu,
/// cuda and the Jacobian Monte Carlo use) on purpose, as the independent oracle.
double activation_value(Activation a, double x);
double activation_derivative(Activation a, double x);

/// Checks what every Monte Carlo backend needs beyond StackSpec::validate(): the depth
/// fits the 16-bit layer id of the streams. Throws ConfigError naming stack.depth.
void validate_for_simulation(const StackSpec& spec);

/// Per-sample result of the reference forward/backward.
struct SampleMetrics {
  /// values[l][m] for l = 0..L and m in metric_names() order; NaN where undefined
  /// (update_ratio, ang_dist at l = 0) or where the sample diverged.
  std::vector<std::vector<double>> values;
  int forward_nonfinite = -1;   ///< first layer l with a non-finite X_l, -1 if none
  int backward_nonfinite = -1;  ///< largest l with a non-finite Delta_l, -1 if none
};

/// One random finite-width stack of MODEL.md §1 per sample index.
class ReferenceStack {
 public:
  /// Validates the spec; throws ConfigError if the depth does not fit the stream ids.
  /// With WeightSampling::Conditional every Gaussian matrix is drawn conditionally on its input
  /// (sim/conditional.hpp; equal in law, not sample by sample, to Explicit); block_backward then
  /// regenerates the same conditional draw from X. independent_backward is a test hook (wrong in law).
  ReferenceStack(const StackSpec& spec, uint64_t seed, WeightSampling sampling = WeightSampling::Explicit,
                 bool independent_backward = false);
  [[nodiscard]] const StackSpec& spec() const { return spec_; }
  [[nodiscard]] WeightSampling sampling() const { return sampling_; }

  /// X_0 (T, d) = sqrt(q0) (sqrt(1 - rho0) G + sqrt(rho0) 1 g^T), G and g iid N(0, 1).
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
};

}  // namespace sigprop::sim
