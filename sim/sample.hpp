#pragma once
/// @file What every Monte Carlo backend shares (sim/backend.hpp, the reference, the Eigen and
/// CUDA backends): the stream kinds of the reproducibility contract, the weight-sampling
/// modes, the per-sample metric table, and the checks every backend applies to a spec.
/// Defined apart from any one backend so that sim/backend.hpp includes no backend's header.
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

/// How the Monte Carlo draws its input X_0 (docs/simulate.md "Exact input kernel").
enum class InputKernel {
  Sampled,  ///< MODEL.md §1: G and g i.i.d. N(0, 1), so X_0 X_0^T / d = K0 + O(1/sqrt d) per sample
  Exact,    ///< the same G, g orthonormalised (sim/input.hpp): X_0 X_0^T / d = K0 exactly, every sample
};

/// "sampled" | "exact"
const char* to_string(InputKernel k);

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
/// 1e-12: a hundred times a double stream's rounding-level residual (~1e-14 after many layers),
/// so that a double run follows a collapse (res) down to ~1e-12; it was 1e-10, which dropped the
/// tokens' differences of a collapsing post-norm stack from res ~1e-10 on (docs/simulate.md).
inline constexpr double kCondRankTol = 1e-12;
/// The forward factors the tokens' mean and deviations (sim/conditional.hpp), each judged against
/// its own norm by kCondRankTol; a candidate also needs a residual above kCondNoiseTol times the
/// tokens' RMS norm to open a direction. Below it a deviation is the stream's rounding (a double
/// stream's tokens carry ~1e-16..1e-15 of their norm), whose direction depends on how a backend
/// rounded: kept, it would be an equal-in-law but backend-dependent direction (the reference and
/// cpu backends would part sample by sample), and it resolves nothing a double stream can.
inline constexpr double kCondNoiseTol = 1e-14;
/// Below this res a conditional run warns (mc/engine.cpp): it resolves a collapse down to about
/// kCondNoiseTol, below which its tokens collapse faster than the stack's. Measured (stop 37, d =
/// 256, 32 samples, double, against explicit sampling on other streams): the atlas's c249 agreed
/// within a standard error down to res 3.8e-14 (layer 96; explicit 3.4e-14 +- 0.4e-14, theory
/// 3.2e-14) and parted at 1.1e-15 vs 2.3e-15 (layer 104); c275 agreed to 3.1e-14 vs 3.0e-14. Before
/// stop 37 (the tokens factored as they are, deviations judged against a token's norm) they
/// parted at res ~1e-11 and this was 1e-10. Warning ten times above where they part, it comes
/// before the values go wrong.
inline constexpr double kCondResolvedRes = 1e-13;
/// Test hook only: CondBwd slot offset of the independent-backward variant (wrong in law).
inline constexpr int kCondIndependentSlot = 16;

/// Largest sample count and depth that fit the 16-bit fields of stream_id.
inline constexpr int kMaxSamples = 65536;
inline constexpr int kMaxDepth = 65535;

/// Columns of SampleMetrics::values, in metric_names() order.
enum Col { kQ, kRho, kRes, kEffRank, kUpdate, kAng, kGrad, kNumCols };

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

}  // namespace sigprop::sim
