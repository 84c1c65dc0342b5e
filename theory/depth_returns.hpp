#pragma once
/// @file The depth-returns predictor (docs/theory.md "Depth returns"): from the per-layer
/// angular distance ang_dist_l (MODEL.md §2; Gromov et al. 2024) of a stack, the predicted
/// return of each layer, the effective depth, its curve over depths 1, 2, 4, ..., L and the
/// predicted knee.
///
///   layer return      r_l = ang_dist_l / max_k ang_dist_k   (l = 1..L; 0 for every l when no
///                     layer moves the stream: max_k ang_dist_k < 1e-7, the size of rounding in
///                     arccos near 1)
///   effective depth   D(L) = sum_l r_l, in [0, L]: the number of layers that move the stream as
///                     much as the strongest one
///   return per added layer of the step from depth d to d' (a doubling on the grid):
///                     (D(d') - D(d)) / (d' - d)
///   knee              find_knee (core/knee.hpp) on D over the grid, higher is better, per added
///                     layer, noise free: the last depth before the first doubling whose added
///                     layers return less than `fraction` of what the first doubling's added layer
///                     returned.
///
/// D(d) for a grid depth d < L is the effective depth of a depth-d stack of the same spec: the
/// first d layers of the depth-L profile when nothing in the spec depends on L (the forward
/// recursion of layer l does not look at later layers), else a theory run at depth d.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/knee.hpp"
#include "core/profile.hpp"
#include "theory/engine.hpp"

namespace sigprop::theory {

struct DepthReturns {
  std::vector<double> layer_return;     ///< r_l of the depth-L stack, l = 1..L (element l - 1)
  std::vector<int> depth;               ///< the grid 1, 2, 4, ..., L (L last even when not a power of 2)
  std::vector<double> effective_depth;  ///< D at each grid depth
  KneeResult knee;                      ///< knee.gain: the return per added layer of each grid step
  double fraction = 0.25;               ///< the knee rule's fraction of the first step's return
  /// "prefix": the grid depths are the first d layers of the one profile; "rerun": a theory run
  /// per grid depth (the spec depends on L: branch_scale 1/sqrt(L), 1/sqrt(2L), deepnorm).
  std::string curve;
  /// Set when ang_dist is not finite at some layer (a diverged stack): the curve stops at the
  /// last grid depth with a finite effective depth, and this says why.
  std::string note;
};

/// True when a depth-d stack of this spec is the first d blocks of the depth-L one: no branch
/// scale or DeepNorm constant that depends on L.
bool depth_independent(const StackSpec& spec);

/// r_l from ang_dist_1..L (ang_dist[0], layer 0, is ignored; it is NaN in a profile). A
/// non-finite ang_dist makes its r_l and every later one NaN; the maximum is over the finite
/// prefix.
std::vector<double> layer_returns(const std::vector<double>& ang_dist);

/// D = sum of layer_returns(ang_dist); NaN when some ang_dist is not finite.
double effective_depth(const std::vector<double>& ang_dist);

/// 1, 2, 4, ... (powers of two below L) and L.
std::vector<int> doubling_grid(int L);

/// From a profile with an ang_dist column (any engine). For a depth-dependent spec only the
/// profile's own depth is known: the curve has the single point L and no knee (knee.found =
/// false, no gains); use the spec overload for the full curve.
DepthReturns depth_returns(const Profile& p, double fraction = 0.25);

/// From the theory at each grid depth (one run, or one per grid depth for a depth-dependent
/// spec). `at_depth_L` is the depth-L profile when the caller already has it (not run again).
DepthReturns depth_returns(const StackSpec& spec, const TheorySettings& st, double fraction = 0.25,
                           const Profile* at_depth_L = nullptr);

/// The profile extra "depth_returns" (docs/theory.md lists the fields); NaN is written null.
nlohmann::json to_json(const DepthReturns& r);

}  // namespace sigprop::theory
