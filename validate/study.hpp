#pragma once
/// @file The statistics of the depth study (issues 5 and 17): the drop-one-layer ablation of a
/// trained model, a diminishing-returns fit of loss against depth, Spearman's rank
/// correlation with its p-value, and the per-cause measures of issue 17 (seed-paired gains,
/// loss-curve instability and gradient-norm spikes, similarity of consecutive blocks'
/// updates, training FLOPs, the spread of Monte Carlo samples against L/d).
#include <cstdint>
#include <span>
#include <vector>

#include "core/stats.hpp"
#include "validate/model.hpp"

namespace sigprop::validate {

/// loss(L) = a + b L^(-c): the loss an infinitely deep model approaches (a), and how fast
/// (c). Least squares over (a, b) for each c, and over c in [c_min, c_max] by a grid then
/// golden-section search.
struct PowerLawFit {
  double a = 0, b = 0, c = 0;
  double rss = 0;  ///< residual sum of squares
  int n = 0;       ///< points fitted
  /// The best c lies on the search boundary or the asymptote a is negative: the losses do
  /// not follow a diminishing-returns curve (too few depths, or gains that grow with depth).
  bool degenerate = false;
  [[nodiscard]] double operator()(double L) const;
};
/// @throws ConfigError with fewer than 3 points, a non-positive depth or a non-finite loss.
PowerLawFit fit_power_law(std::span<const double> depth, std::span<const double> loss, double c_min = 0.02,
                          double c_max = 4.0);

/// Spearman's rank correlation (average ranks for ties) and its two-sided p-value for "no
/// association": exact over all n! permutations for n <= 8, else the t approximation
/// t = rho sqrt((n-2)/(1-rho^2)) with n-2 degrees of freedom.
struct RankCorrelation {
  double rho = 0;
  double p = 1;
  int n = 0;
};
/// @throws ConfigError for fewer than 3 pairs or different lengths. NaN pairs are dropped.
RankCorrelation spearman(std::span<const double> x, std::span<const double> y);

/// The drop-one-layer ablation: for every block l, the increase of the mean loss over the
/// sequences when block l is the identity, with the standard error of the paired
/// differences over sequences.
struct Ablation {
  double base_loss = 0;           ///< mean loss per token of the full model
  std::vector<double> increase;   ///< [l - 1]: loss without block l minus base_loss
  std::vector<double> increase_se;
};
template <class Real>
Ablation drop_one_layer(const Model<Real>& m, const Batch& sequences, int threads = 1);

/// The gain of one step in depth paired by seed: the mean and standard error of
/// before[i] - after[i] (run i of both depths trained with seed i). se is NaN with one seed.
/// @throws ConfigError for different lengths or no pair.
MeanSe paired_gain(std::span<const double> before, std::span<const double> after);

/// Optimisation difficulty from a run's per-step history (loss.csv's train_loss, grad_norm):
///   instability = standard deviation of the step-to-step differences loss_s - loss_{s-1}
///                 over the last `last_fraction` of the steps (the noise of the curve where it
///                 should have settled);
///   spikes      = number of steps s (all steps) whose grad_norm exceeds spike_factor times
///                 the median of the `window` steps before it (steps with fewer than
///                 window / 2 predecessors are not judged); spike_rate = spikes / steps judged.
/// Non-finite entries are skipped.
struct CurveStats {
  double instability = NAN;
  int spikes = 0;
  int judged = 0;  ///< steps whose grad_norm was judged for a spike
  double spike_rate = NAN;
};
/// @throws ConfigError for last_fraction outside (0, 1], spike_factor <= 1 or window < 2.
CurveStats curve_stats(std::span<const double> train_loss, std::span<const double> grad_norm,
                       double last_fraction = 0.5, double spike_factor = 3.0, int window = 50);

/// Training FLOPs of a decoder of `params` parameters and `depth` blocks of width d at context
/// T, over `tokens` training tokens (Kaplan et al. 2020, eq. 2.2, times 3 for forward +
/// backward): C = 6 params tokens + 6 depth T d tokens (the attention scores and their use).
double training_flops(double params, int depth, int context, int width, double tokens);

/// Saturation/redundancy: for each l = 1..L-1 the mean over tokens and sequences of the cosine
/// similarity of consecutive blocks' updates of the residual stream, U_l = X_l - X_{l-1} and
/// U_{l+1} (tokens where either update is zero are skipped). Empty for L < 2. The thread
/// count changes nothing.
template <class Real>
std::vector<double> update_cosines(const Model<Real>& m, const Batch& sequences, int threads = 1);

/// Least squares of y = k x through the origin over the finite pairs (NaN with none): the
/// constant of the finite-width prediction Var(log q_L) ~ k L / d (Hanin & Rolnick 2018).
double fit_through_origin(std::span<const double> x, std::span<const double> y);

}  // namespace sigprop::validate
