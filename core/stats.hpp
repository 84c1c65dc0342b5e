#pragma once
/// @file The mean and its standard error over independent values (samples, sequences,
/// models), one formula for every engine: mean = sum / n, se = sqrt(sum (x - mean)^2 / (n - 1) / n),
/// summed in index order so that the result does not depend on how the values were computed.
#include <cmath>
#include <limits>
#include <span>

namespace sigprop {

struct MeanSe {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double se = std::numeric_limits<double>::quiet_NaN();  ///< NaN for fewer than 2 values
};

/// Mean and standard error of v (both NaN when v is empty).
inline MeanSe mean_se(std::span<const double> v) {
  MeanSe r;
  if (v.empty()) return r;
  const double n = static_cast<double>(v.size());
  double s = 0;
  for (double x : v) s += x;
  r.mean = s / n;
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  if (v.size() > 1) r.se = std::sqrt(ss / (n - 1) / n);
  return r;
}

}  // namespace sigprop
