#pragma once
/// @file The infinite-width (mean-field) theory engine: forward recursion of the
/// T x T token kernel and backward recursion of the T x T gradient covariance
/// through every block of MODEL.md §1. See docs/theory.md for the derivations.
#include <cstdint>

#include "core/engine.hpp"
#include "theory/attention.hpp"

namespace sigprop::theory {

/// Revision of the theory engines' numerics (theory/: the theory, ODE, clustering and spectrum
/// engines), part of every report job's hash: a fix that changes computed values bumps it, so a
/// resumed report or atlas recomputes those engines' cells instead of reusing values made by the
/// faulty code (the cell hash otherwise names only the spec, the settings and the version).
/// 1: GELU's dual kernel in the Stein form (theory/gauss.cpp), exact at huge variances where the
///    earlier form lost 1 - rho (2026-12-06); also after the kernel-table cache fix (3ecc297).
/// 2: a sampled grad_var whose gradient kernel has a negative diagonal (lost precision) is null
///    instead of a value; the softmax integral in blocked, padded products (2026-12-06).
/// 3: quadrature activations' kernels where the tokens' variances differ only by rounding (one
///    table instead of Lagrange nodes that coincided: NaN kernels in collapsed post-norm stacks).
/// 4: the sampled attention's backward query and key paths on the doubly centred K (the stream's
///    common mode removed before the expanded products cancel; exploding no-norm stacks).
/// 5: the equicorrelated recursion's res and eff_rank from the collapse gap d - o carried by its own
///    recursion (d - o from the entries floored res at 1.5e-8 in collapsing stacks); the general
///    T x T recursion's (Kc, v, m) form through norms, attention and residual sums (stop 35).
/// 6: the general recursion's MLP and dense branches carry the form too (their Kc from the tokens'
///    distances, ActKernel::distance; stop 36): normalised attn+mlp stacks floored res at ~1e-9.
inline constexpr int kNumericsRevision = 6;

struct TheorySettings {
  int quad_order = 48;    ///< Gauss-Legendre points per piece (tanh, silu, gelu_tanh; see theory/gauss.hpp)
  /// tanh, silu, gelu_tanh: interpolate c -> E[phi phi], E[phi' phi'] from a Chebyshev table per
  /// distinct pair of variances (KernelTable) instead of one quadrature per kernel entry.
  bool kernel_tables = true;
  /// Stacks that keep an equicorrelated kernel (no attention, or uniform attention without a
  /// mask) run the recursion on its two distinct entries, O(1) per layer instead of O(T^2).
  bool equicorrelated_fast_path = true;
  /// softmax expectations (qk_scale = 1/sqrt(dh) only). 768 draws per layer (8 replicates of 96):
  /// a worst relative _se of 0.5-0.8e-3 over the default spec's profile (docs/theory.md).
  AttnSettings attn{.samples = 768};
  int error_batches = 8;  ///< batch-means error estimate of the attention Monte Carlo (0 = off)
  /// Adds the profile extra "depth_returns" (theory/depth_returns.hpp). A spec that depends on L
  /// (branch_scale 1/sqrt(L) or 1/sqrt(2L), deepnorm) costs one more run per depth 1, 2, 4, ... < L
  /// (at most as much again as the run itself), without progress reports.
  bool depth_returns = true;
};

class TheoryEngine final : public Engine {
 public:
  explicit TheoryEngine(TheorySettings settings = {}) : st_(settings) {}
  [[nodiscard]] std::string name() const override { return "theory"; }
  /// Columns: every metric of MODEL.md §2; with sampled attention also `<name>_se`
  /// (standard error of the numerical integration, not of a finite-width ensemble).
  Profile run(const StackSpec& spec) override;

 private:
  TheorySettings st_;
};

/// Raw recursion result used by the engine and the tests: kernels per layer.
struct KernelTrace {
  std::vector<Eigen::MatrixXd> K;  ///< token kernel of X_l, l = 0..L
  std::vector<Eigen::VectorXd> C;  ///< diag of cross kernel X_{l-1}.X_l / d, l = 1..L (C[0] unused)
  std::vector<Eigen::MatrixXd> G;  ///< gradient covariance of Delta_l, l = 0..L
  int first_nonfinite = -1;        ///< first layer with a non-finite kernel, -1 if none
  /// Highest layer whose G_l has a negative diagonal entry, -1 if none. G_l is a covariance, so
  /// this only happens when the sampled attention backward pass has lost all precision
  /// (saturated softmax in an exploding stream: its query and key terms cancel to rounding);
  /// grad_var is then null at that layer and every layer below.
  int grad_lost = -1;
  /// Set by the O(1) path: every K, G is q on the diagonal and one value off it.
  bool equicorrelated = false;
  /// res per layer from the collapse gap's own recursion (docs/theory.md "res below 1e-8"),
  /// which resolves it below the ~1.5e-8 that K's entries do; NaN or empty where not computed.
  std::vector<double> res;
};

/// Runs forward and backward recursions. Non-finite kernels stop the recursion;
/// later layers are left NaN and first_nonfinite says where it happened.
/// @param progress called after every layer of each pass (fraction = passes' layers done / 2L);
///        returning false throws CancelledError naming "theory"
KernelTrace kernel_recursion(const StackSpec& spec, const TheorySettings& st, const ProgressFn& progress = {});

/// True when every block maps equicorrelated kernels (one diagonal value, one off-diagonal
/// value) to equicorrelated kernels: MLP and dense branches, norms, and uniform attention
/// without a mask. The input kernel is always equicorrelated.
bool keeps_equicorrelation(const StackSpec& spec, const AttnSettings& attn = {});

/// The input kernel of MODEL.md §1: q0 on the diagonal, q0 rho0 off it.
Eigen::MatrixXd input_kernel(const StackSpec& spec);

}  // namespace sigprop::theory
