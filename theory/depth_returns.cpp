#include "theory/depth_returns.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop::theory {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// ang_dist of a block that leaves the stream's direction unchanged is arccos(1 - a few ulp)/pi,
// up to about 1e-8 from rounding: a stack whose largest ang_dist is below this moves nothing.
constexpr double kNoMove = 1e-7;

nlohmann::json num_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::vector<double> ang_dist_of(const Profile& p) {
  if (!p.has("ang_dist"))
    throw ConfigError(fmt::format("depth returns need the ang_dist column; this {} profile has none", p.engine));
  return p.series("ang_dist");
}

// The knee of the (finite part of the) curve; fills r.knee and r.note.
void finish(DepthReturns& r) {
  std::size_t n = 0;
  while (n < r.effective_depth.size() && std::isfinite(r.effective_depth[n])) ++n;
  if (n < r.effective_depth.size())
    r.note = fmt::format("ang_dist is not finite in the depth-{} stack (the recursion diverged): the curve stops at "
                         "depth {}",
                         r.depth[n], n > 0 ? r.depth[n - 1] : 0);
  KneeInput in;
  in.depth.assign(r.depth.begin(), r.depth.begin() + static_cast<long>(n));
  in.value.assign(r.effective_depth.begin(), r.effective_depth.begin() + static_cast<long>(n));
  in.fraction = r.fraction;
  in.lower_is_better = false;
  in.per_layer = true;
  if (n >= 2) {
    r.knee = find_knee(in);
  } else {
    r.knee = KneeResult{};
    r.knee.knee_depth = kNaN;
    r.knee.index = n > 0 ? n - 1 : 0;
    r.knee.rule = "no knee: the curve has fewer than two depths";
  }
}

void check_fraction(double fraction) {
  if (!(fraction > 0 && fraction < 1))
    throw ConfigError(fmt::format("depth returns: fraction = {} is not in (0, 1)", fraction));
}

}  // namespace

bool depth_independent(const StackSpec& spec) {
  return spec.norm != Norm::DeepNorm && spec.branch_scale.kind != BranchScaleKind::InvSqrtL &&
         spec.branch_scale.kind != BranchScaleKind::InvSqrt2L;
}

std::vector<double> layer_returns(const std::vector<double>& ang_dist) {
  const std::size_t L = ang_dist.empty() ? 0 : ang_dist.size() - 1;
  std::vector<double> r(L, kNaN);
  std::size_t finite_end = 1;  // layers 1 .. finite_end - 1 are finite
  double mx = 0;
  while (finite_end <= L && std::isfinite(ang_dist[finite_end])) mx = std::max(mx, ang_dist[finite_end++]);
  for (std::size_t l = 1; l < finite_end; ++l) r[l - 1] = mx > kNoMove ? ang_dist[l] / mx : 0.0;
  return r;
}

double effective_depth(const std::vector<double>& ang_dist) {
  double s = 0;
  for (double r : layer_returns(ang_dist)) s += r;  // NaN propagates
  return s;
}

std::vector<int> doubling_grid(int L) {
  if (L < 1) throw ConfigError(fmt::format("depth returns: stack.depth = {} must be >= 1", L));
  std::vector<int> g;
  for (long d = 1; d < L; d *= 2) g.push_back(static_cast<int>(d));
  g.push_back(L);
  return g;
}

DepthReturns depth_returns(const Profile& p, double fraction) {
  check_fraction(fraction);
  const std::vector<double> ang = ang_dist_of(p);
  if (static_cast<int>(ang.size()) != p.spec.depth + 1)
    throw ConfigError(fmt::format("depth returns: the profile has {} rows for stack.depth = {} (needs one per layer "
                                  "0..L)",
                                  ang.size(), p.spec.depth));
  DepthReturns r;
  r.fraction = fraction;
  r.layer_return = layer_returns(ang);
  const int L = p.spec.depth;
  if (depth_independent(p.spec)) {
    r.curve = "prefix";
    r.depth = doubling_grid(L);
    for (int d : r.depth) r.effective_depth.push_back(effective_depth({ang.begin(), ang.begin() + d + 1}));
  } else {
    r.curve = "single depth (the spec depends on L: the curve needs a theory run per depth)";
    r.depth = {L};
    r.effective_depth = {effective_depth(ang)};
  }
  finish(r);
  return r;
}

DepthReturns depth_returns(const StackSpec& spec, const TheorySettings& st, double fraction,
                           const Profile* at_depth_L) {
  check_fraction(fraction);
  spec.validate();
  TheorySettings inner = st;
  inner.depth_returns = false;  // the runs below need ang_dist only, not their own curves
  if (depth_independent(spec)) {
    if (at_depth_L) return depth_returns(*at_depth_L, fraction);
    return depth_returns(TheoryEngine(inner).run(spec), fraction);
  }
  const Profile full = at_depth_L ? *at_depth_L : TheoryEngine(inner).run(spec);
  const std::vector<double> ang = ang_dist_of(full);
  DepthReturns r;
  r.fraction = fraction;
  r.curve = "rerun";
  r.layer_return = layer_returns(ang);
  r.depth = doubling_grid(spec.depth);
  for (int d : r.depth) {
    if (d == spec.depth) {
      r.effective_depth.push_back(effective_depth(ang));
      continue;
    }
    StackSpec s = spec;
    s.depth = d;
    r.effective_depth.push_back(effective_depth(ang_dist_of(TheoryEngine(inner).run(s))));
  }
  finish(r);
  return r;
}

nlohmann::json to_json(const DepthReturns& r) {
  nlohmann::json j;
  j["definition"] =
      "layer_return_l = ang_dist_l / max_k ang_dist_k; effective_depth = sum of layer_return over the stack of that "
      "depth; return_per_added_layer = (effective_depth(d') - effective_depth(d)) / (d' - d) for consecutive grid "
      "depths (docs/theory.md, Depth returns)";
  nlohmann::json lr = nlohmann::json::array();
  for (double v : r.layer_return) lr.push_back(num_or_null(v));
  j["layer_return"] = lr;
  j["depth"] = r.depth;
  nlohmann::json ed = nlohmann::json::array();
  for (double v : r.effective_depth) ed.push_back(num_or_null(v));
  j["effective_depth"] = ed;
  nlohmann::json g = nlohmann::json::array();
  for (double v : r.knee.gain) g.push_back(num_or_null(v));
  j["return_per_added_layer"] = g;
  j["knee_depth"] = r.knee.found ? nlohmann::json(static_cast<int>(r.knee.knee_depth)) : nlohmann::json(nullptr);
  j["knee_rule"] = r.knee.rule;
  j["fraction"] = r.fraction;
  j["curve"] = r.curve;
  if (!r.note.empty()) j["note"] = r.note;
  return j;
}

}  // namespace sigprop::theory
