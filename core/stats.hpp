#pragma once
/// @file The mean and its standard error over independent values (samples, sequences,
/// models, error batches): the one formula of every engine (Monte Carlo, theory error
/// batches, the shaped SDE ensembles, the Jacobian spectrum, validate).
///
///   mean = sum x_i / n,   se = sqrt(sum (x_i - mean)^2 / (n - 1) / n),
///
/// summed in index order, so that the result does not depend on how (or on how many threads)
/// the values were computed. The rule for few values: n = 0 gives mean = se = NaN; n = 1 gives
/// the value as the mean and se = NaN (one value says nothing about its spread), which profiles
/// write as null.
///
/// Overflow: the sums run on x_i / 2^e, with 2^e the power of two just above max |x_i|, and the
/// results are scaled back. Dividing by a power of two is exact, so the numbers are bitwise
/// those of the formula above wherever it does not overflow (unless the values span more than
/// about 2^1000 and the smallest ones fall into the subnormals), while values near 1e300 (a
/// diverging stack) keep a finite mean and se. A non-finite value makes the mean inf or NaN and
/// the se NaN, as in the plain formula.
#include <cmath>
#include <limits>
#include <span>

namespace sigprop {

struct MeanSe {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double se = std::numeric_limits<double>::quiet_NaN();  ///< NaN for fewer than 2 values
};

/// Mean and standard error of v (see the file comment for n < 2 and for overflow).
inline MeanSe mean_se(std::span<const double> v) {
  MeanSe r;
  if (v.empty()) return r;
  double vmax = 0;
  for (double x : v) vmax = std::abs(x) > vmax ? std::abs(x) : vmax;  // NaN never compares greater
  int e = 0;
  if (std::isfinite(vmax) && vmax > 0) std::frexp(vmax, &e);  // vmax = m 2^e, m in [0.5, 1)
  const double n = static_cast<double>(v.size());
  double s = 0;
  for (double x : v) s += std::ldexp(x, -e);
  const double mean_s = s / n;
  double ss = 0;
  for (double x : v) ss += (std::ldexp(x, -e) - mean_s) * (std::ldexp(x, -e) - mean_s);
  r.mean = std::ldexp(mean_s, e);
  if (v.size() > 1) r.se = std::ldexp(std::sqrt(ss / (n - 1) / n), e);
  return r;
}

}  // namespace sigprop
