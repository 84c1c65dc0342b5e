#pragma once
/// @file The knee of a loss-vs-depth (or predicted-return-vs-depth) curve: the depth after
/// which one more step of depth stops paying. Used on measured curves (sigprop study, with
/// paired standard errors over seeds) and on the predicted curves of theory/depth_returns.hpp
/// (noise free).
///
/// Gains. For depths d_0 < d_1 < ... < d_{n-1} and values v_i, the gain of step i is
///
///     g_i = v_i - v_{i+1}   (lower_is_better, e.g. a loss)
///     g_i = v_{i+1} - v_i   (otherwise, e.g. an accuracy or a predicted effective depth),
///
/// i = 0 .. n-2, so that a positive gain is an improvement. On a doubling grid (1, 2, 4, ...)
/// these are the gains per doubling; on a grid 1, 2, 3, ... the gains per added layer. With
/// per_layer = true each gain (and its se) is divided by d_{i+1} - d_i: the mean gain per
/// added layer of the step (on a doubling grid, the return of each layer a doubling adds).
/// gain_se[i] is the standard error of g_i (paired by seed: the se over seeds of the per-seed
/// differences), empty or zeros for a noise-free curve.
///
/// Rule. Step i is "not worth it" when
///
///     g_i <= 0   or   g_i < max(2 se_i, fraction * max(g_0, 0)),
///
/// i.e. when it improves nothing, when its gain is within two standard errors of zero, or when
/// it is below the stated fraction of the first step's gain. The knee is depth d_k of the first
/// such step k: the last depth that was worth reaching (d_0 if the very first step is not worth
/// it). No such step: found = false, knee_depth = NaN, index = n - 1. The rule is stated in
/// KneeResult::rule with the fraction's value, for reports.
///
/// Input errors (ConfigError naming the field and index): fewer than two depths; value or
/// gain_se of the wrong size (gain_se: empty or n - 1); a non-finite or non-positive depth;
/// depths not strictly increasing; a non-finite value; a negative or non-finite gain_se; a
/// fraction outside (0, 1).
#include <cstddef>
#include <string>
#include <vector>

namespace sigprop {

struct KneeInput {
  std::vector<double> depth;    ///< strictly increasing, > 0
  std::vector<double> value;    ///< one per depth (loss, or a predicted quantity)
  std::vector<double> gain_se;  ///< one per step (size n - 1), or empty for none
  double fraction = 0.25;       ///< of the first step's gain, in (0, 1)
  bool lower_is_better = true;  ///< true for a loss, false for a quantity that should grow
  bool per_layer = false;       ///< divide each step's gain and se by its depth increase
};

struct KneeResult {
  bool found = false;
  std::size_t index = 0;          ///< index of the knee depth (n - 1 when not found)
  double knee_depth = 0;          ///< depth[index], NaN when not found
  std::vector<double> gain;       ///< g_i, size n - 1 (per added layer with per_layer)
  std::vector<double> gain_se;    ///< se_i, size n - 1 (zeros when none was given; per layer likewise)
  std::string rule;               ///< the rule in words, with the fraction
  std::vector<double> threshold;  ///< max(2 se_i, fraction * max(g_0, 0)), size n - 1
};

/// The knee of the curve (see the file comment for the rule and the errors).
KneeResult find_knee(const KneeInput& in);

}  // namespace sigprop
