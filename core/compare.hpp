#pragma once
/// @file One metric of two profiles compared layer by layer: the difference, the standard
/// errors and z = diff / sqrt(se_a² + se_b²), one definition for `sigprop validate`'s
/// agreement table (validate/measure.cpp, docs/validate.md) and the reports' "Monte Carlo
/// against theory" readings (reports/report.cpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/profile.hpp"

namespace sigprop {

struct LayerDiff {
  int layer = 0;
  double a = 0, b = 0;  ///< the two values, both finite
  /// Standard errors (`<metric>_se`), NaN where a profile has none at this layer; the z-score
  /// counts a NaN one as 0 (a theory value is exact).
  double se_a = 0, se_b = 0;
  double diff = 0;  ///< a - b
  double z = 0;     ///< diff / sqrt(se_a² + se_b²); 0 when diff = 0, ±inf when only the errors are 0
};

/// diff / den for a z-score: NaN for a non-finite den, and for den = 0 either 0 (diff = 0)
/// or an infinity of diff's sign.
inline double z_ratio(double diff, double den) {
  if (!std::isfinite(den)) return std::numeric_limits<double>::quiet_NaN();
  if (den > 0) return diff / den;
  return diff == 0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), diff);
}

/// `metric` of a against b at every layer both profiles have where both values are finite,
/// in layer order; empty when either profile lacks the metric.
inline std::vector<LayerDiff> compare(const Profile& a, const Profile& b, const std::string& metric) {
  std::vector<LayerDiff> out;
  if (!a.has(metric) || !b.has(metric)) return out;
  const std::string se = metric + "_se";
  const bool has_se_a = a.has(se), has_se_b = b.has(se);
  for (int l = 0; l < std::min(a.layers(), b.layers()); ++l) {
    LayerDiff d;
    d.layer = l;
    d.a = a.at(l, metric);
    d.b = b.at(l, metric);
    if (!std::isfinite(d.a) || !std::isfinite(d.b)) continue;
    d.se_a = has_se_a ? a.at(l, se) : std::numeric_limits<double>::quiet_NaN();
    d.se_b = has_se_b ? b.at(l, se) : std::numeric_limits<double>::quiet_NaN();
    d.diff = d.a - d.b;
    const double sa = std::isfinite(d.se_a) ? d.se_a : 0.0, sb = std::isfinite(d.se_b) ? d.se_b : 0.0;
    d.z = z_ratio(d.diff, std::sqrt(sa * sa + sb * sb));
    out.push_back(d);
  }
  return out;
}

}  // namespace sigprop
