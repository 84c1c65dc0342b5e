#pragma once
/// @file The statistics of the depth study (issue 5): the drop-one-layer ablation of a
/// trained model, a diminishing-returns fit of loss against depth, and Spearman's rank
/// correlation with its p-value.
#include <cstdint>
#include <span>
#include <vector>

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

}  // namespace sigprop::validate
