#include "core/knee.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop {

namespace {

void check_input(const KneeInput& in) {
  const std::size_t n = in.depth.size();
  if (n < 2) throw ConfigError(fmt::format("find_knee: depth has {} entries; a knee needs at least 2 depths", n));
  if (in.value.size() != n)
    throw ConfigError(fmt::format("find_knee: value has {} entries for {} depths (one per depth)", in.value.size(), n));
  if (!in.gain_se.empty() && in.gain_se.size() != n - 1)
    throw ConfigError(fmt::format("find_knee: gain_se has {} entries for {} depths (one per step, {}, or none)",
                                  in.gain_se.size(), n, n - 1));
  if (!(in.fraction > 0 && in.fraction < 1))
    throw ConfigError(fmt::format("find_knee: fraction = {} is not in (0, 1)", in.fraction));
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(in.depth[i]) || in.depth[i] <= 0)
      throw ConfigError(fmt::format("find_knee: depth[{}] = {} is not a finite positive number", i, in.depth[i]));
    if (i > 0 && !(in.depth[i] > in.depth[i - 1]))
      throw ConfigError(fmt::format("find_knee: depth[{}] = {} is not greater than depth[{}] = {} (depths must "
                                    "increase strictly)",
                                    i, in.depth[i], i - 1, in.depth[i - 1]));
    if (!std::isfinite(in.value[i]))
      throw ConfigError(fmt::format("find_knee: value[{}] = {} (at depth {}) is not finite", i, in.value[i], in.depth[i]));
  }
  for (std::size_t i = 0; i < in.gain_se.size(); ++i)
    if (!std::isfinite(in.gain_se[i]) || in.gain_se[i] < 0)
      throw ConfigError(fmt::format("find_knee: gain_se[{}] = {} (step from depth {} to {}) is not a finite "
                                    "non-negative number",
                                    i, in.gain_se[i], in.depth[i], in.depth[i + 1]));
}

}  // namespace

KneeResult find_knee(const KneeInput& in) {
  check_input(in);
  const std::size_t n = in.depth.size();
  KneeResult r;
  r.rule = fmt::format("knee = the last depth before the first step whose gain{} is <= 0 or below max(2 se, {:g} x "
                       "the first step's)",
                       in.per_layer ? " per added layer" : "", in.fraction);
  r.gain.resize(n - 1);
  r.gain_se.assign(n - 1, 0.0);
  r.threshold.resize(n - 1);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    r.gain[i] = in.lower_is_better ? in.value[i] - in.value[i + 1] : in.value[i + 1] - in.value[i];
    if (!in.gain_se.empty()) r.gain_se[i] = in.gain_se[i];
    if (in.per_layer) {
      r.gain[i] /= in.depth[i + 1] - in.depth[i];
      r.gain_se[i] /= in.depth[i + 1] - in.depth[i];
    }
  }
  const double ref = in.fraction * std::max(r.gain[0], 0.0);
  for (std::size_t i = 0; i + 1 < n; ++i) r.threshold[i] = std::max(2 * r.gain_se[i], ref);
  r.index = n - 1;
  r.knee_depth = std::numeric_limits<double>::quiet_NaN();
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (r.gain[i] <= 0 || r.gain[i] < r.threshold[i]) {
      r.found = true;
      r.index = i;
      r.knee_depth = in.depth[i];
      break;
    }
  }
  return r;
}

}  // namespace sigprop
