#include "reports/atlas.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/random/sobol.hpp>
#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/compare.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "mc/engine.hpp"  // pool_simulate_profiles
#include "sim/sample.hpp"  // kCondResolvedRes
#include "reports/figures.hpp"
#include "sigprop/version.hpp"

namespace sigprop::reports {
namespace fs = std::filesystem;
using figures_detail::base64;
using figures_detail::dat_num;
using figures_detail::gp;
using figures_detail::html;
using figures_detail::slurp;

namespace {

/// The index of a Monte Carlo job's width in atlas.widths; widths.size() when it is none of them.
size_t index_of_width(const std::vector<int>& widths, const Job& j) {
  return static_cast<size_t>(std::find(widths.begin(), widths.end(), j.spec.width) - widths.begin());
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// A uniform double in [0, 1) from 53 random bits (platform-independent, unlike
/// std::uniform_real_distribution).
double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

std::vector<std::vector<double>> sobol_points(int n, int dims, uint64_t seed) {
  if (dims < 1 || dims > kSobolMaxDims)
    throw Error(fmt::format("sobol_points: dims must be in [1, {}], got {}", kSobolMaxDims, dims));
  if (n < 0 || static_cast<uint64_t>(n) > (uint64_t{1} << 31)) throw Error("sobol_points: n out of range");
  std::vector<uint32_t> shift(dims, 0);
  if (seed != 0) {
    std::mt19937_64 rng(seed);
    for (auto& s : shift) s = static_cast<uint32_t>(rng() >> 32);
  }
  // Boost's generator (Joe & Kuo direction numbers, Gray-code order) starts at the second point
  // of the sequence; the first is the origin, which keeps the first 2^m points a (t, m, s)-net.
  boost::random::sobol_engine<uint32_t, 32> sob(static_cast<std::size_t>(dims));
  std::vector<std::vector<double>> pts(n, std::vector<double>(dims));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < dims; ++j) pts[i][j] = static_cast<double>((i == 0 ? 0U : sob()) ^ shift[j]) * 0x1.0p-32;
  return pts;
}

std::vector<std::vector<double>> lhs_points(int n, int dims, uint64_t seed) {
  if (dims < 1 || n < 0) throw Error("lhs_points: need dims >= 1 and n >= 0");
  std::mt19937_64 rng(seed);
  std::vector<std::vector<double>> pts(n, std::vector<double>(dims));
  std::vector<int> perm(n);
  for (int j = 0; j < dims; ++j) {
    for (int i = 0; i < n; ++i) perm[i] = i;
    for (int i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng() % static_cast<uint64_t>(i + 1)]);  // Fisher-Yates
    for (int i = 0; i < n; ++i) pts[i][j] = std::min((perm[i] + unit(rng)) / n, std::nextafter(1.0, 0.0));
  }
  return pts;
}

WidthFit fit_width(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                   const std::vector<double>& dof) {
  WidthFit f;
  if (d.size() != y.size() || d.size() != se.size() || d.size() < 2) return f;
  if (!dof.empty() && dof.size() != d.size()) return f;
  const double d0 = *std::min_element(d.begin(), d.end());
  if (!(d0 > 0)) return f;
  // y = m + b' x with x = d0 / d (well scaled), b = b' d0.
  double s0 = 0, s1 = 0, s2 = 0, r0 = 0, r1 = 0;
  std::vector<double> sf(d.size());  // the floored standard errors
  for (size_t i = 0; i < d.size(); ++i) {
    if (!std::isfinite(y[i]) || !std::isfinite(d[i]) || !(se[i] >= 0)) return f;
    const double s = sf[i] = std::max(se[i], 1e-12 * (1 + std::abs(y[i])));
    const double w = 1 / (s * s), x = d0 / d[i];
    s0 += w;
    s1 += w * x;
    s2 += w * x * x;
    r0 += w * y[i];
    r1 += w * x * y[i];
  }
  const double det = s0 * s2 - s1 * s1;
  if (!(det > 1e-12 * s0 * s2)) return f;  // one distinct width
  f.m = (s2 * r0 - s1 * r1) / det;
  f.b = (s0 * r1 - s1 * r0) / det * d0;
  f.se_m = std::sqrt(s2 / det);
  if (!dof.empty()) {
    // m = sum_i c_i y_i with c_i = w_i (s2 - s1 x_i) / det; Var m = sum_i c_i^2 s_i^2 = s2 / det.
    std::vector<std::pair<double, double>> parts;
    for (size_t i = 0; i < d.size(); ++i) {
      const double c = (s2 - s1 * d0 / d[i]) / (sf[i] * sf[i] * det);
      parts.emplace_back(c * c * sf[i] * sf[i], dof[i]);
    }
    f.dof = welch_dof(parts);
  }
  f.ok = std::isfinite(f.m) && std::isfinite(f.se_m);
  return f;
}

WidthCurvature width_curvature(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                               const std::vector<double>& dof) {
  WidthCurvature f;
  const size_t n = d.size();
  if (y.size() != n || se.size() != n || n < 3) return f;
  if (!dof.empty() && dof.size() != n) return f;
  const double d0 = *std::min_element(d.begin(), d.end());
  if (!(d0 > 0)) return f;
  // y = m + b' x + c' x^2 with x = d0 / d (well scaled), c = c' d0^2.
  Eigen::Matrix3d a = Eigen::Matrix3d::Zero();
  std::vector<double> sf(n);
  std::vector<Eigen::Vector3d> rows(n);
  Eigen::Vector3d r = Eigen::Vector3d::Zero();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(y[i]) || !std::isfinite(d[i]) || !(se[i] >= 0)) return f;
    const double s = sf[i] = std::max(se[i], 1e-12 * (1 + std::abs(y[i])));
    const double x = d0 / d[i];
    rows[i] = Eigen::Vector3d(1, x, x * x);
    a += rows[i] * rows[i].transpose() / (s * s);
    r += rows[i] * y[i] / (s * s);
  }
  // Fewer than three distinct widths make a singular; the scaled x lie in (0, 1].
  Eigen::FullPivLU<Eigen::Matrix3d> lu(a);
  lu.setThreshold(1e-10);
  if (lu.rank() < 3) return f;
  const Eigen::Matrix3d inv = lu.inverse();
  const double cs = (inv * r)(2);
  const double var = inv(2, 2);
  if (!(var > 0) || !std::isfinite(cs)) return f;
  f.c = cs * d0 * d0;
  f.se_c = std::sqrt(var) * d0 * d0;
  if (!dof.empty()) {
    // c' = sum_i k_i y_i with k_i = (inv row_i)_2 / s_i^2; Var c' = sum_i k_i^2 s_i^2 = inv(2, 2).
    std::vector<std::pair<double, double>> parts;
    for (size_t i = 0; i < n; ++i) {
      const double k = (inv * rows[i])(2) / (sf[i] * sf[i]);
      parts.emplace_back(k * k * sf[i] * sf[i], dof[i]);
    }
    f.dof = welch_dof(parts);
  }
  f.z = t_as_z(cs / std::sqrt(var), f.dof);
  f.ok = std::isfinite(f.c) && std::isfinite(f.se_c);
  return f;
}

namespace {
/// y² and its standard error by the delta method, 2 |y| se: the values of the squared fits.
std::pair<std::vector<double>, std::vector<double>> squared(const std::vector<double>& y,
                                                            const std::vector<double>& se) {
  std::vector<double> y2(y.size()), se2(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    y2[i] = y[i] * y[i];
    se2[i] = 2 * std::abs(y[i]) * se[i];
  }
  return {y2, se2};
}
}  // namespace

WidthFit fit_width_squared(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                           const std::vector<double>& dof) {
  const auto [y2, se2] = squared(y, se);
  const WidthFit f2 = fit_width(d, y2, se2, dof);
  WidthFit f;
  if (!f2.ok) return f;
  f.m = std::sqrt(std::max(f2.m, 0.0));
  f.b = f2.b;
  // Delta method where m is resolved, else the square root of the variance scale of m^2.
  f.se_m = f.m > 0 ? std::min(f2.se_m / (2 * f.m), std::sqrt(f2.se_m)) : std::sqrt(f2.se_m);
  f.dof = f2.dof;
  f.ok = std::isfinite(f.m) && std::isfinite(f.se_m);
  return f;
}

double percentile(std::vector<double> v, double p) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const double h = (static_cast<double>(v.size()) - 1) * std::clamp(p, 0.0, 1.0);
  const auto lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

double bonferroni_z(double alpha, double tests) {
  const double target = alpha / std::max(1.0, tests);
  double lo = 0, hi = 40;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (std::erfc(mid / std::sqrt(2.0)) > target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double welch_dof(const std::vector<std::pair<double, double>>& var_dof) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double sum = 0;
  for (const auto& [v, nu] : var_dof) {
    if (!(v >= 0) || !(nu > 0)) return kNaN;
    sum += v;
  }
  if (!(sum > 0) || !std::isfinite(sum)) return kInf;
  // In shares of the sum: the variances may be as large as 1e300 or as small as 1e-300.
  double den = 0;
  for (const auto& [v, nu] : var_dof)
    if (std::isfinite(nu)) den += (v / sum) * (v / sum) / nu;
  return den > 0 ? 1 / den : kInf;
}

namespace {
constexpr double kNormalDof = 1e9;  // beyond this Student's t is the normal to ~1e-9 relative
}

double t_as_z(double t, double nu) {
  if (!std::isfinite(t) || t == 0 || !(nu > 0) || nu > kNormalDof) return t;
  namespace bm = boost::math;
  const double p = bm::cdf(bm::complement(bm::students_t_distribution<double>(nu), std::abs(t)));
  if (!(p > std::numeric_limits<double>::min())) return t;  // a tail beyond double: |z| is huge anyway
  if (p >= 0.5) return 0.0;
  return std::copysign(bm::quantile(bm::complement(bm::normal_distribution<double>(), p)), t);
}

double z_as_t(double z, double nu) {
  if (!std::isfinite(z) || z == 0 || !(nu > 0) || nu > kNormalDof) return z;
  namespace bm = boost::math;
  const double p = bm::cdf(bm::complement(bm::normal_distribution<double>(), std::abs(z)));
  if (!(p > std::numeric_limits<double>::min())) return z;
  return std::copysign(bm::quantile(bm::complement(bm::students_t_distribution<double>(nu), p)), z);
}

std::vector<AtlasDraw> atlas_draws(const AtlasConfig& a) {
  // Dimension order: the heat map's axes (sigma_qk2, depth) first, so that they form the
  // sequence's best two-dimensional projection (a (0, m, 2)-net).
  enum { kQk2, kDepth, kNorm, kQkScale, kBlocks, kAct, kNormType, kMask, kW2, kTokens, kBranch, kBranchNum, kDims };
  const auto u =
      a.sampler == "lhs" ? lhs_points(a.configurations, kDims, a.seed) : sobol_points(a.configurations, kDims, a.seed);
  auto pick = [](const std::vector<std::string>& v, double x) {
    return v[std::min(v.size() - 1, static_cast<size_t>(x * static_cast<double>(v.size())))];
  };
  auto log_uniform = [](std::pair<double, double> r, double x) {
    return std::exp(std::log(r.first) + x * (std::log(r.second) - std::log(r.first)));
  };
  auto log_int = [](std::pair<int, int> r, double x) {  // log-uniform over [lo, hi + 1), floored
    const double v = std::exp(std::log(r.first) + x * (std::log(r.second + 1.0) - std::log(r.first)));
    return std::clamp(static_cast<int>(std::floor(v)), r.first, r.second);
  };
  auto quote = [](const std::string& s) { return "\"" + s + "\""; };
  std::vector<AtlasDraw> out;
  for (const auto& p : u) {
    AtlasDraw d;
    const std::string blocks = pick(a.blocks, p[kBlocks]), norm = pick(a.norm, p[kNorm]),
                      norm_type = pick(a.norm_type, p[kNormType]), act = pick(a.activation, p[kAct]),
                      mask = pick(a.mask, p[kMask]), qk = pick(a.qk_scale, p[kQkScale]);
    std::string branch = pick(a.branch_scale, p[kBranch]);
    if (norm == "deepnorm") branch = "1";  // DeepNorm fixes its own branch scale
    std::string branch_lit = quote(branch), branch_label = branch;
    if (branch == "number") {
      const double b = a.branch_number.first + p[kBranchNum] * (a.branch_number.second - a.branch_number.first);
      branch_lit = fmt::format("{:.4f}", b);
      branch_label = branch_lit;
    }
    const double qk2 = log_uniform(a.sigma_qk2, p[kQk2]), w2 = log_uniform(a.sigma_w2, p[kW2]);
    const int depth = log_int(a.depth, p[kDepth]), tokens = log_int(a.tokens, p[kTokens]);
    d.sets = {{"stack.blocks", quote(blocks)},
              {"stack.norm", quote(norm)},
              {"stack.norm_type", quote(norm_type)},
              {"stack.activation", quote(act)},
              {"stack.mask", quote(mask)},
              {"stack.qk_scale", quote(qk)},
              {"stack.branch_scale", branch_lit},
              {"init.sigma_qk2", fmt::format("{:.4f}", qk2)},
              {"init.sigma_w2", fmt::format("{:.4f}", w2)},
              {"stack.depth", fmt::format("{}", depth)},
              {"stack.tokens", fmt::format("{}", tokens)}};
    d.label = fmt::format("{} {} {} {} {} qk {} qk2={:.4f} w2={:.4f} a={} L={} T={}", blocks, norm, norm_type, act,
                          mask, qk, qk2, w2, branch_label, depth, tokens);
    out.push_back(std::move(d));
  }
  return out;
}

namespace {
/// B - 1 for a sampled theory profile with B > 1 error batches, else infinity (no s.e., or exact).
double error_batch_dof(const Profile& t) {
  const auto it = t.settings.find("attention");
  if (it != t.settings.end() && it->is_object()) {
    const auto b = it->find("error_batches");
    if (b != it->end() && b->is_number() && b->get<double>() > 1) return b->get<double>() - 1;
  }
  return std::numeric_limits<double>::infinity();
}
/// n - 1 for a Monte Carlo profile of n samples (its settings; else the atlas config's count).
double sample_dof(const Profile& p, const AtlasConfig& a, const ReportConfig& cfg, size_t w) {
  const auto it = p.settings.find("samples");
  double n = it != p.settings.end() && it->is_number() ? it->get<double>()
                                                        : (a.samples.empty() ? cfg.simulate.samples : a.samples.at(w));
  return n > 1 ? n - 1 : std::numeric_limits<double>::infinity();
}
}  // namespace

double atlas_res_floor(const std::vector<Profile>& mc, double ref, bool single) {
  const double floor_abs_res = single ? 1e-6 : 1e-14;
  // A float stream's res is off by 1.1e-8 to 2.2e-8 (absolute) where res is 9e-6 to 2.4e-4 (8-sample
  // means against a double run of the same streams, c249 at d = 256; sim/block.hpp kResDoubleBelow).
  constexpr double kFloatResRounding = 3e-8;
  // Conditional weight sampling resolves a collapse to res ~1e-14 (sim/sample.hpp kCondNoiseTol,
  // kCondResolvedRes; ~1e-11 before stop 37's Monte Carlo revision 3): below, its tokens collapse
  // faster than the stack's, a bias of the Monte Carlo that the floor counts as its uncertainty.
  const double floor_cond_res = 0.1 * sim::kCondResolvedRes;
  bool conditional = false;
  for (const Profile& q : mc) conditional = conditional || q.settings.value("weights_sampling", "") == "conditional";
  const double cond = conditional ? floor_cond_res : 0.0;
  if (!single) return std::max(floor_abs_res, cond);
  double below = 0;
  for (const Profile& q : mc) {
    const auto it = q.settings.find("res_double_below");
    if (it == q.settings.end() || !it->is_number()) return std::max(floor_abs_res, cond);
    below = std::max(below, it->get<double>());
  }
  return std::max(kFloatResRounding * std::min(1.0, std::abs(ref) / below), cond);
}

std::vector<AtlasPoint> atlas_points(const ReportConfig& cfg, const std::vector<Cell>& cells,
                                     const std::vector<Job>& jobs, const fs::path& out,
                                     std::map<std::string, int>* theory_nulls, bool pool_refined) {
  if (theory_nulls)
    for (const std::string& m : cfg.atlas.metrics) (*theory_nulls)[m] = 0;
  const AtlasConfig& a = cfg.atlas;
  const size_t nw = a.widths.size();
  // Per cell: the theory job and the Monte Carlo jobs in the order of atlas.widths.
  std::vector<const Job*> theory(cells.size(), nullptr), theory_more(cells.size(), nullptr);
  std::vector<std::vector<const Job*>> sims(cells.size(), std::vector<const Job*>(nw, nullptr));
  // refinement: the doubling steps per width, in order of their first sample
  std::vector<std::vector<std::vector<const Job*>>> more(cells.size(), std::vector<std::vector<const Job*>>(nw));
  for (const Job& j : jobs) {
    if (j.engine == EngineKind::Theory) {
      (j.settings.contains("refinement") ? theory_more : theory).at(j.cell) = &j;
    } else {
      const size_t w = index_of_width(a.widths, j);
      if (w == nw) throw Error(fmt::format("atlas: job {} has width {} not in atlas.widths", j.label, j.spec.width));
      if (j.settings.contains("first_sample"))
        more.at(j.cell)[w].push_back(&j);
      else
        sims.at(j.cell)[w] = &j;
    }
  }
  for (auto& per_cell : more)
    for (auto& steps : per_cell)
      std::sort(steps.begin(), steps.end(), [](const Job* x, const Job* y) {
        return x->settings.at("first_sample").get<int>() < y->settings.at("first_sample").get<int>();
      });
  // A float Monte Carlo resolves a value to about 1e-5 relative (rounding through the stack):
  // differences below that are not counted as errors even where both standard errors are 0.
  const bool single = cfg.simulate.precision == "float";
  const double floor_rel = single ? 1e-5 : 1e-10;
  // res of a stack whose tokens have collapsed onto one direction is 0 in exact arithmetic, but
  // a float stream keeps the rounding of every token apart: the medium atlas's collapsed stacks
  // read res = 0.85e-7 .. 1.0e-7 at every width (theory 0). So res's floor is also absolute
  // (atlas_res_floor): 1e-6 for such a float run; a float cpu run that recomputes in double every
  // sample whose res falls below res_double_below (settings; sim revision 2) is off by its float
  // samples' rounding only, about 2e-8 absolute each, and those samples' res is at least that
  // threshold: 3e-8 min(1, |res| / threshold) bounds it.
  std::vector<double> dw(a.widths.begin(), a.widths.end());
  std::vector<AtlasPoint> pts;
  for (const Cell& c : cells) {
    if (!theory[c.index]) throw Error(fmt::format("atlas: cell {} has no theory job", c.label));
    // A refined theory (more logit draws) replaces the first one.
    const Profile t = load_job(out, pool_refined && theory_more[c.index] ? *theory_more[c.index] : *theory[c.index]);
    std::vector<Profile> mc;
    for (size_t w = 0; w < nw; ++w) {
      const Job* j = sims[c.index][w];
      if (!j) throw Error(fmt::format("atlas: cell {} misses a Monte Carlo width", c.label));
      mc.push_back(load_job(out, *j));
      // The refinement's samples continue the same streams: pooled, they are one larger run.
      if (pool_refined)
        for (const Job* step : more[c.index][w]) {
          try {
            mc.back() = sim::pool_simulate_profiles(mc.back(), load_job(out, *step));
          } catch (const Error& e) {
            throw Error(fmt::format("atlas: {} and {}: {}", j->json.string(), step->json.string(), e.what()));
          }
        }
    }
    // Degrees of freedom of the standard errors: a Monte Carlo mean of n samples has n - 1, a
    // sampled theory value with B error batches B - 1 (its settings say how many were used).
    const double nu_t = error_batch_dof(t);
    std::vector<double> nu_mc;
    for (size_t w = 0; w < nw; ++w) nu_mc.push_back(sample_dof(mc[w], a, cfg, w));
    const int depth = c.spec.depth;
    for (const std::string& m : a.metrics) {
      if (!t.has(m)) continue;
      bool all_have = true;
      for (auto& p : mc) all_have = all_have && p.has(m);
      if (!all_have) continue;
      const std::string se = m + "_se";
      for (int l = 0; l < t.layers(); ++l) {
        if (m == "grad_var" ? l == depth : l == 0) continue;  // inputs of the forward / backward pass
        AtlasPoint p;
        p.cell = c.index;
        p.layer = l;
        p.metric = m;
        p.theory = t.at(l, m);
        p.theory_se = t.has(se) && std::isfinite(t.at(l, se)) ? t.at(l, se) : 0.0;
        bool mc_ok = true;
        for (auto& q : mc) {
          if (l >= q.layers()) {
            mc_ok = false;
            break;
          }
          const double y = q.at(l, m), s = q.has(se) ? q.at(l, se) : 0.0;
          mc_ok = mc_ok && std::isfinite(y) && y != 0;
          p.mc.push_back(y);
          p.mc_se.push_back(std::isfinite(s) ? s : 0.0);
        }
        if (mc_ok && !std::isfinite(p.theory) && theory_nulls) ++(*theory_nulls)[m];
        if (!mc_ok || !std::isfinite(p.theory)) continue;
        // The combined s.e. (the floor f is exact) and its Welch-Satterthwaite degrees of freedom.
        auto floor_of = [&](double ref) {
          return std::max(floor_rel * std::abs(ref), m == "res" ? atlas_res_floor(mc, ref, single) : 0.0);
        };
        auto combined = [&](double s, double ref) {
          const double f = floor_of(ref);
          return std::sqrt(p.theory_se * p.theory_se + s * s + f * f);
        };
        auto dof = [&](double s, double nu) {
          return welch_dof({{p.theory_se * p.theory_se, nu_t}, {s * s, nu}});
        };
        for (size_t w = 0; w < nw; ++w) {
          const double diff = p.theory - p.mc[w];
          p.rel.push_back(std::abs(diff) / std::abs(p.mc[w]));
          p.z.push_back(t_as_z(z_ratio(diff, combined(p.mc_se[w], p.mc[w])), dof(p.mc_se[w], nu_mc[w])));
        }
        const bool square = m == "update_ratio" || m == "ang_dist";
        p.mc_dof = nu_mc;
        p.fit = square ? fit_width_squared(dw, p.mc, p.mc_se, nu_mc) : fit_width(dw, p.mc, p.mc_se, nu_mc);
        {
          // Does m + b/d fit the widths? The Monte Carlo side of the comparison only (the theory
          // is one value); each width's s.e. with its float floor, which counts as exact.
          std::vector<double> s(nw), nu(nw);
          for (size_t w = 0; w < nw; ++w) {
            const double f = floor_of(p.mc[w]);
            s[w] = std::sqrt(p.mc_se[w] * p.mc_se[w] + f * f);
            nu[w] = welch_dof({{p.mc_se[w] * p.mc_se[w], nu_mc[w]}, {f * f, std::numeric_limits<double>::infinity()}});
          }
          const auto [y, sy] = square ? squared(p.mc, s) : std::pair{p.mc, s};
          const WidthCurvature cv = width_curvature(dw, y, sy, nu);
          if (cv.ok) p.z_curv = cv.z;
        }
        if (!p.fit.ok || p.fit.m == 0) continue;
        const double diff = p.theory - p.fit.m, s = combined(p.fit.se_m, p.fit.m);
        p.se_ext = s;
        p.dof_ext = dof(p.fit.se_m, p.fit.dof);
        p.theory_dof = nu_t;
        p.floor_ext = floor_of(p.fit.m);
        p.rel_ext = std::abs(diff) / std::abs(p.fit.m);
        p.z_ext = t_as_z(z_ratio(diff, s), p.dof_ext);
        p.excess_ext = std::max(0.0, std::abs(diff) - z_as_t(2.0, p.dof_ext) * s) / std::abs(p.fit.m);
        pts.push_back(std::move(p));
      }
    }
  }
  return pts;
}

namespace {

struct Table {
  std::string title, note;
  std::vector<std::string> head;
  std::vector<std::vector<std::string>> rows;
  int link_col = -1;  ///< a column of relative paths, written as links
};

/// A Markdown table cell: a '|' would end it.
std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string md_table(const Table& t) {
  std::ostringstream o;
  o << "### " << t.title << "\n\n";
  if (!t.note.empty()) o << t.note << "\n\n";
  o << "|";
  for (auto& h : t.head) o << " " << md_cell(h) << " |";
  o << "\n|";
  for (size_t i = 0; i < t.head.size(); ++i) o << (i == 0 ? "---|" : "---:|");
  o << "\n";
  for (auto& r : t.rows) {
    o << "|";
    for (size_t i = 0; i < r.size(); ++i)
      o << " " << (static_cast<int>(i) == t.link_col ? "[" + r[i] + "](" + r[i] + ")" : md_cell(r[i])) << " |";
    o << "\n";
  }
  return o.str() + "\n";
}

std::string html_table(const Table& t) {
  std::ostringstream o;
  o << "<h3>" << html(t.title) << "</h3>\n";
  if (!t.note.empty()) o << "<p>" << html(t.note) << "</p>\n";
  o << "<table>\n<tr>";
  for (auto& h : t.head) o << "<th>" << html(h) << "</th>";
  o << "</tr>\n";
  for (auto& r : t.rows) {
    o << "<tr>";
    for (size_t i = 0; i < r.size(); ++i)
      o << "<td>"
        << (static_cast<int>(i) == t.link_col ? "<a href=\"" + html(r[i]) + "\">" + html(r[i]) + "</a>" : html(r[i]))
        << "</td>";
    o << "</tr>\n";
  }
  return o.str() + "</table>\n";
}

// Two-sided 5% and 1% points of the normal (the width-curvature levels, the goal resolution).
constexpr double kNormal5 = 1.959963984540054, kNormal1 = 2.5758293035489004;

std::string pct(double x) {
  return std::isfinite(x) ? fmt::format("{:.2f}%", 100 * x) : "–";
}
std::string num(double x) {
  return std::isfinite(x) ? fmt::format("{:.6g}", x) : "";
}

bool is_forward(const std::string& m) {
  return m != "grad_var";
}

}  // namespace

double atlas_goal(const std::string& m) {
  return is_forward(m) ? 0.02 : 0.05;
}

bool resolved_to_goal(const AtlasPoint& p) {
  return z_as_t(kNormal1, p.dof_ext) * p.se_ext <= atlas_goal(p.metric) * std::abs(p.fit.m);
}

std::map<int, RefineFactors> atlas_refine_plan(const std::vector<AtlasPoint>& pts, const std::vector<int>& widths,
                                               int max_mc, int max_theory, const std::map<int, RefineCost>& cost) {
  std::map<int, RefineFactors> plan;
  const size_t nw = widths.size();
  const std::vector<double> dw(widths.begin(), widths.end());
  // Every vector of per-width factors (powers of two up to max_mc), the all-ones one first; beyond
  // kMaxVectors (many widths and a large refine) the uniform ones only, as before stop 32.
  constexpr double kMaxVectors = 4096;
  int per_width = 1;
  for (int k = 2; k <= max_mc; k *= 2) ++per_width;
  std::vector<std::vector<int>> ks{std::vector<int>(nw, 1)};
  if (std::pow(per_width, static_cast<double>(nw)) <= kMaxVectors) {
    for (size_t w = 0; w < nw; ++w) {
      const size_t n = ks.size();
      for (int k = 2; k <= max_mc; k *= 2)
        for (size_t i = 0; i < n; ++i) {
          ks.push_back(ks[i]);
          ks.back()[w] = k;
        }
    }
  } else {
    for (int k = 2; k <= max_mc; k *= 2) ks.emplace_back(nw, k);
  }
  std::vector<double> se(nw), nu(nw);
  for (const AtlasPoint& p : pts) {
    if (resolved_to_goal(p) || !std::isfinite(p.fit.se_m)) continue;
    if (p.mc.size() != nw || p.mc_se.size() != nw || p.mc_dof.size() != nw) continue;
    const double target = atlas_goal(p.metric) * std::abs(p.fit.m);
    const auto c = cost.find(p.cell);
    const bool priced = c != cost.end() && c->second.mc.size() == nw;
    const bool square = p.metric == "update_ratio" || p.metric == "ang_dist";
    std::vector<int> best_k;
    int best_kt = 1;
    double best_cost = std::numeric_limits<double>::infinity();
    for (const std::vector<int>& k : ks) {
      // The width fit as atlas_points makes it, with K_w times the samples at width w: its s.e.
      // divided by sqrt K_w, its degrees of freedom K_w n_w - 1.
      double cost_mc = 0;
      for (size_t w = 0; w < nw; ++w) {
        se[w] = p.mc_se[w] / std::sqrt(static_cast<double>(k[w]));
        nu[w] = k[w] * (p.mc_dof[w] + 1) - 1;
        cost_mc += (priced ? c->second.mc[w] : 1.0) * (k[w] - 1);
      }
      if (cost_mc >= best_cost) continue;
      const WidthFit f = square ? fit_width_squared(dw, p.mc, se, nu) : fit_width(dw, p.mc, se, nu);
      if (!f.ok) continue;
      for (int kt = 1; kt <= max_theory; kt *= 2) {
        const double added = cost_mc + (priced ? c->second.theory : 1.0) * (kt - 1);
        if (added == 0 || added >= best_cost) continue;  // nothing added, or not cheaper
        // K_theory times the logit draws in the same error batches: the theory's s.e. falls by
        // sqrt(K_theory), its degrees of freedom stay.
        const double se_t = p.theory_se / std::sqrt(static_cast<double>(kt));
        const double s = std::sqrt(se_t * se_t + f.se_m * f.se_m + p.floor_ext * p.floor_ext);
        const double dof = welch_dof({{se_t * se_t, p.theory_dof}, {f.se_m * f.se_m, f.dof}});
        if (z_as_t(kNormal1, dof) * s <= target) {
          best_k = k;
          best_kt = kt;
          best_cost = added;
        }
      }
    }
    if (!std::isfinite(best_cost)) continue;  // no allowed factors resolve it
    RefineFactors& cur = plan[p.cell];
    if (cur.mc.empty()) cur.mc.assign(nw, 1);
    for (size_t w = 0; w < nw; ++w) cur.mc[w] = std::max(cur.mc[w], best_k[w]);
    cur.theory = std::max(cur.theory, best_kt);
  }
  return plan;
}

namespace {

/// Cost model factor for a Monte Carlo cell whose samples were recomputed in double, when its
/// time was not recorded: the float pass plus the double one took 1.2 to 25 times the cost model
/// (median 10) over the 19 such jobs of the 64-configuration atlas.
constexpr double kDoubleFallbackCost = 10.0;

double recorded_cost(const fs::path& out, const Job& j) {
  if (!job_done(out, j)) return j.cost;  // atlas_points reports the missing cell
  const double measured = measured_cost(out, j);
  if (std::isfinite(measured)) return std::max(measured, 1e-3);
  for (const std::string& w : load_job(out, j).warnings)
    if (w.find("recomputed in double precision") != std::string::npos) return j.cost * kDoubleFallbackCost;
  return j.cost;
}

}  // namespace

std::vector<Job> atlas_refine_jobs(const ReportConfig& cfg, const std::vector<Cell>& cells,
                                   const std::vector<Job>& jobs, const fs::path& out) {
  std::vector<Job> more;
  if (!cfg.atlas.enabled || (cfg.atlas.refine <= 1 && cfg.atlas.refine_theory <= 1)) return more;
  const std::vector<int>& widths = cfg.atlas.widths;
  std::vector<Job> base;
  std::map<int, RefineCost> cost;
  for (const Job& j : jobs) {
    if (j.settings.contains("first_sample") || j.settings.contains("refinement")) continue;
    base.push_back(j);
    // What the first pass's job took (core-seconds, recorded beside its cell) prices its refinement;
    // a cell made before sigprop recorded it falls back to the cost model, times kDoubleFallbackCost
    // where its samples were recomputed in double (the model knows nothing of the fallback).
    base.back().cost = recorded_cost(out, j);
    RefineCost& c = cost[j.cell];
    if (j.engine == EngineKind::Simulate) {
      c.mc.resize(widths.size(), 0.0);
      if (const size_t w = index_of_width(widths, j); w < widths.size()) c.mc[w] = base.back().cost;
    } else {
      c.theory = base.back().cost;
    }
  }
  const std::map<int, RefineFactors> plan = atlas_refine_plan(atlas_points(cfg, cells, base, out, nullptr, false),
                                                              widths, cfg.atlas.refine, cfg.atlas.refine_theory, cost);
  for (const Job& j : base) {
    const auto it = plan.find(j.cell);
    if (it == plan.end()) continue;
    const size_t w = index_of_width(widths, j);
    if (j.engine == EngineKind::Simulate && w < it->second.mc.size() && it->second.mc[w] > 1) {
      // K = 2^s in s doubling steps, samples [f n, 2 f n) for f = 1, 2, .., K/2: a larger K later
      // (or another atlas with the same configuration) reuses the steps already run, and no single
      // job is more than half the refined run.
      const int n = j.settings.at("samples").get<int>(), k = it->second.mc[w];
      for (int f = 1; f < k; f *= 2) {
        Job s = j;
        s.settings["samples"] = f * n;
        s.settings["first_sample"] = f * n;
        s.label = fmt::format("{}, samples {}..{} (refinement x{})", j.label, f * n, 2 * f * n - 1, k);
        s.cost = j.cost * f;
        finish_job(cfg, cells, s);
        more.push_back(std::move(s));
      }
    } else if (j.engine == EngineKind::Theory && it->second.theory > 1) {
      const int k = it->second.theory;
      Job r = j;
      r.settings["attn_samples"] = k * j.settings.at("attn_samples").get<int>();
      r.settings["refinement"] = k;
      r.label = fmt::format("{}, attn_samples {} (refinement x{})", j.label, r.settings["attn_samples"].get<int>(), k);
      r.cost = j.cost * k;
      finish_job(cfg, cells, r);
      more.push_back(std::move(r));
    }
  }
  return more;
}

namespace {

/// Per configuration and metric: the largest errors over its layers.
struct CellMetric {
  int n = 0;
  double rel_ext = 0, absz_ext = 0, excess = 0;
  int worst_layer = -1;     ///< the layer of the largest excess (else of the largest rel_ext)
  std::vector<double> rel;  ///< per width
};

struct Group {
  std::string scope, name;
  std::vector<char> member;  ///< per cell
};

}  // namespace

RenderResult render_atlas(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                          const fs::path& out, const RenderOptions& opt) {
  const AtlasConfig& a = cfg.atlas;
  const size_t nw = a.widths.size();
  RenderResult res;
  std::map<std::string, int> theory_nulls;
  const std::vector<AtlasPoint> pts = atlas_points(cfg, cells, jobs, out, &theory_nulls);
  const double zc = bonferroni_z(a.alpha, static_cast<double>(pts.size()));

  // Refinement: each configuration's factor on its samples (1: the first pass only), the work it
  // added (measured where the jobs recorded it, else the jobs' cost model), and the first pass's
  // points alone, to show what the refinement bought.
  // factor: the largest over the widths; factor_w: per width.
  std::vector<int> factor(cells.size(), 1), factor_theory(cells.size(), 1);
  std::vector<std::vector<int>> factor_w(cells.size(), std::vector<int>(nw, 1));
  double cost_first = 0, cost_more = 0, cost_theory_first = 0, cost_theory_more = 0;
  const bool any_refinement = std::any_of(jobs.begin(), jobs.end(), [](const Job& j) {
    return j.settings.contains("first_sample") || j.settings.contains("refinement");
  });
  std::vector<std::vector<int>> first_samples(cells.size(), std::vector<int>(nw, 0));  // per width, first pass
  for (const Job& j : jobs)
    if (j.engine == EngineKind::Simulate && !j.settings.contains("first_sample"))
      if (const size_t w = index_of_width(a.widths, j); w < nw) first_samples.at(j.cell)[w] = j.settings.at("samples").get<int>();
  for (const Job& j : jobs) {
    const double c = any_refinement ? recorded_cost(out, j) : j.cost;
    if (j.engine == EngineKind::Theory) {
      if (j.settings.contains("refinement")) {
        factor_theory.at(j.cell) = j.settings["refinement"].get<int>();
        cost_theory_more += c;
      } else {
        cost_theory_first += c;
      }
    } else if (j.settings.contains("first_sample")) {
      // A doubling step [f n, 2 f n) of the width's first pass of n samples: the refined run ends
      // at 2 f n, K = 2 f.
      const int end = j.settings["first_sample"].get<int>() + j.settings["samples"].get<int>();
      const size_t w = index_of_width(a.widths, j);
      const int n = w < nw ? first_samples.at(j.cell)[w] : 0;
      if (n > 0) {
        factor.at(j.cell) = std::max(factor.at(j.cell), end / n);
        factor_w.at(j.cell)[w] = std::max(factor_w.at(j.cell)[w], end / n);
      }
      cost_more += c;
    } else {
      cost_first += c;
    }
  }
  const bool refined = cost_more > 0 || cost_theory_more > 0;
  const bool refine_on = a.refine > 1 || a.refine_theory > 1;
  const std::vector<AtlasPoint> pts_first =
      refined ? atlas_points(cfg, cells, jobs, out, nullptr, false) : std::vector<AtlasPoint>{};
  // The lack-of-fit check of m + b/d per metric (points with three or more widths).
  struct CurvStat {
    int n = 0, z5 = 0, z1 = 0, zcrit = 0;
    const AtlasPoint* worst = nullptr;
  };
  std::map<std::string, CurvStat> curv;
  for (const AtlasPoint& p : pts) {
    if (!std::isfinite(p.z_curv)) continue;
    CurvStat& c = curv[p.metric];
    ++c.n;
    const double z = std::abs(p.z_curv);
    c.z5 += z > kNormal5;
    c.z1 += z > kNormal1;
    c.zcrit += z > zc;
    if (!c.worst || z > std::abs(c.worst->z_curv)) c.worst = &p;
  }

  write_file_atomic(out / "config.toml", to_toml(cfg));
  nlohmann::json versions = opt.build;
  versions["sigprop"] = kVersion;
  write_file_atomic(out / "versions.json", versions.dump(2) + "\n");

  // ---- atlas_points.csv ------------------------------------------------------------------
  {
    std::ostringstream o;
    o << "cell,slug,metric,layer,theory,theory_se";
    for (int w : a.widths) o << ",mc_d" << w << ",mc_se_d" << w;
    o << ",mc_extrapolated,mc_extrapolated_se,mc_slope_b";
    for (int w : a.widths) o << ",rel_d" << w << ",z_d" << w;
    o << ",rel_ext,z_ext,dof_ext,excess_ext,z_width_curvature\n";
    for (const AtlasPoint& p : pts) {
      o << p.cell << "," << cells[p.cell].slug << "," << p.metric << "," << p.layer << "," << num(p.theory) << ","
        << num(p.theory_se);
      for (size_t w = 0; w < nw; ++w) o << "," << num(p.mc[w]) << "," << num(p.mc_se[w]);
      o << "," << num(p.fit.m) << "," << num(p.fit.se_m) << "," << num(p.fit.b);
      for (size_t w = 0; w < nw; ++w) o << "," << num(p.rel[w]) << "," << num(p.z[w]);
      o << "," << num(p.rel_ext) << "," << num(p.z_ext) << "," << (std::isinf(p.dof_ext) ? "inf" : num(p.dof_ext))
        << "," << num(p.excess_ext) << "," << num(p.z_curv) << "\n";
    }
    write_file_atomic(out / "atlas_points.csv", o.str());
  }

  // ---- per configuration -----------------------------------------------------------------
  const size_t nm = a.metrics.size();
  auto metric_index = [&](const std::string& m) {
    return static_cast<size_t>(std::find(a.metrics.begin(), a.metrics.end(), m) - a.metrics.begin());
  };
  std::vector<std::vector<CellMetric>> cm(cells.size(), std::vector<CellMetric>(nm));
  for (auto& row : cm)
    for (auto& x : row) x.rel.assign(nw, 0.0);
  for (const AtlasPoint& p : pts) {
    CellMetric& x = cm[p.cell][metric_index(p.metric)];
    ++x.n;
    if (p.excess_ext > x.excess || (x.excess == 0 && p.rel_ext > x.rel_ext)) x.worst_layer = p.layer;
    x.rel_ext = std::max(x.rel_ext, p.rel_ext);
    x.absz_ext = std::max(x.absz_ext, std::abs(p.z_ext));
    x.excess = std::max(x.excess, p.excess_ext);
    for (size_t w = 0; w < nw; ++w) x.rel[w] = std::max(x.rel[w], p.rel[w]);
  }
  {
    std::ostringstream o;
    o << "cell,slug,blocks,norm,norm_type,activation,mask,qk_scale,branch_scale,sigma_qk2,sigma_w2,depth,tokens";
    for (auto& m : a.metrics) {
      o << ",max_rel_ext_" << m << ",max_absz_ext_" << m << ",max_excess_ext_" << m;
      for (int w : a.widths) o << ",max_rel_d" << w << "_" << m;
    }
    for (int w : a.widths) o << ",mc_sample_factor_d" << w;
    o << ",mc_sample_factor,theory_sample_factor\n";
    for (const Cell& c : cells) {
      const StackSpec& s = c.spec;
      o << c.index << "," << c.slug << "," << to_string(s.blocks) << "," << to_string(s.norm) << ","
        << to_string(s.norm_type) << "," << to_string(s.activation) << "," << to_string(s.mask) << ","
        << to_string(s.qk_scale) << "," << s.branch_scale.str() << "," << num(s.sigma_qk2) << "," << num(s.sigma_w2)
        << "," << s.depth << "," << s.tokens;
      for (size_t k = 0; k < nm; ++k) {
        const CellMetric& x = cm[c.index][k];
        if (x.n == 0) {
          o << ",,," << std::string(nw, ',');
          continue;
        }
        o << "," << num(x.rel_ext) << "," << num(x.absz_ext) << "," << num(x.excess);
        for (size_t w = 0; w < nw; ++w) o << "," << num(x.rel[w]);
      }
      for (int f : factor_w[c.index]) o << "," << f;
      o << "," << factor[c.index] << "," << factor_theory[c.index] << "\n";
    }
    write_file_atomic(out / "atlas_configs.csv", o.str());
  }

  // ---- summaries: overall and split by block, norm and qk scale ---------------------------
  std::vector<Group> groups;
  groups.push_back({"all", "all", std::vector<char>(cells.size(), 1)});
  auto split = [&](const std::string& scope, auto key) {
    std::map<std::string, std::vector<char>> by;
    for (const Cell& c : cells) {
      auto& v = by[key(c.spec)];
      v.resize(cells.size(), 0);
      v[c.index] = 1;
    }
    for (auto& [name, member] : by) groups.push_back({scope, name, member});
  };
  split("blocks", [](const StackSpec& s) { return to_string(s.blocks); });
  split("norm", [](const StackSpec& s) { return to_string(s.norm); });
  split("qk_scale", [](const StackSpec& s) { return to_string(s.qk_scale); });

  struct Stat {
    int n = 0;
    double p50 = kNaN, p90 = kNaN, p99 = kNaN, max = kNaN, p99_excess = kNaN, significant = kNaN;
    double resolved = kNaN, p99_resolved = kNaN;  ///< extrapolated only: resolved_to_goal points
  };
  // Over the points v (the atlas's, or its first pass's without the refinement).
  auto stat_of = [&](const std::vector<AtlasPoint>& v, const Group& g, const std::string& m,
                     int width_index) {  // -1 = extrapolated
    std::vector<double> rel, exc, rel_resolved;
    int sig = 0;
    for (const AtlasPoint& p : v) {
      if (p.metric != m || !g.member[p.cell]) continue;
      const double r = width_index < 0 ? p.rel_ext : p.rel[width_index];
      const double z = width_index < 0 ? p.z_ext : p.z[width_index];
      rel.push_back(r);
      if (width_index < 0) {
        exc.push_back(p.excess_ext);
        if (resolved_to_goal(p)) rel_resolved.push_back(r);
      }
      sig += std::abs(z) > zc ? 1 : 0;
    }
    Stat s;
    s.n = static_cast<int>(rel.size());
    if (s.n == 0) return s;
    s.p50 = percentile(rel, 0.5);
    s.p90 = percentile(rel, 0.9);
    s.p99 = percentile(rel, 0.99);
    s.max = percentile(rel, 1.0);
    if (!exc.empty()) s.p99_excess = percentile(exc, 0.99);
    s.significant = static_cast<double>(sig) / s.n;
    if (width_index < 0) {
      s.resolved = static_cast<double>(rel_resolved.size()) / s.n;
      s.p99_resolved = percentile(rel_resolved, 0.99);
    }
    return s;
  };
  auto stat = [&](const Group& g, const std::string& m, int width_index) { return stat_of(pts, g, m, width_index); };
  nlohmann::json jsummary = nlohmann::json::array();
  {
    std::ostringstream o;
    o << "scope,group,metric,basis,n,p50,p90,p99,max,p99_excess,share_beyond_z_crit,share_resolved,p99_resolved\n";
    for (const Group& g : groups)
      for (const std::string& m : a.metrics)
        for (int wi = -1; wi < static_cast<int>(nw); ++wi) {
          const Stat s = stat(g, m, wi);
          const std::string basis = wi < 0 ? "extrapolated" : fmt::format("d={}", a.widths[wi]);
          o << g.scope << "," << g.name << "," << m << "," << basis << "," << s.n << "," << num(s.p50) << ","
            << num(s.p90) << "," << num(s.p99) << "," << num(s.max) << "," << num(s.p99_excess) << ","
            << num(s.significant) << "," << num(s.resolved) << "," << num(s.p99_resolved) << "\n";
          auto jn = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
          jsummary.push_back({{"scope", g.scope},
                              {"group", g.name},
                              {"metric", m},
                              {"basis", basis},
                              {"n", s.n},
                              {"p50", jn(s.p50)},
                              {"p90", jn(s.p90)},
                              {"p99", jn(s.p99)},
                              {"max", jn(s.max)},
                              {"p99_excess", jn(s.p99_excess)},
                              {"share_beyond_z_crit", jn(s.significant)},
                              {"share_resolved", jn(s.resolved)},
                              {"p99_resolved", jn(s.p99_resolved)}});
        }
    write_file_atomic(out / "atlas_summary.csv", o.str());
  }

  // ---- the worst configurations: largest error beyond the uncertainty, then largest error ----
  struct Worst {
    int cell;
    size_t metric;
    double excess, rel;
  };
  std::vector<Worst> worst;
  for (const Cell& c : cells) {
    Worst w{c.index, 0, -1, -1};
    for (size_t k = 0; k < nm; ++k) {
      const CellMetric& x = cm[c.index][k];
      if (x.n > 0 && (x.excess > w.excess || (x.excess == w.excess && x.rel_ext > w.rel)))
        w = {c.index, k, x.excess, x.rel_ext};
    }
    if (w.excess >= 0) worst.push_back(w);
  }
  std::stable_sort(worst.begin(), worst.end(), [](const Worst& x, const Worst& y) {
    return x.excess != y.excess ? x.excess > y.excess : x.rel > y.rel;
  });
  if (worst.size() > static_cast<size_t>(a.worst)) worst.resize(a.worst);

  // ---- figures ------------------------------------------------------------------------------
  std::vector<Figure> figures;
  const std::string header =
      "set encoding utf8\nset datafile missing 'NaN'\nset grid lc rgb '#dddddd'\n"
      "set border lc rgb '#444444'\n";
  auto heat = [&](const std::string& stem, const std::string& what, auto include) {
    Figure f;
    f.stem = stem;
    f.title = fmt::format("Largest relative error of the theory against the extrapolated Monte Carlo ({})", what);
    f.width = 900;
    f.height = 620;
    std::ostringstream data;
    data << "# sigma_qk2 depth max_rel_ext (over the layers and " << what << ") cell\n";
    double top = 0;
    int topcell = -1;
    for (const Cell& c : cells) {
      double e = -1;
      for (size_t k = 0; k < nm; ++k)
        if (include(a.metrics[k]) && cm[c.index][k].n > 0) e = std::max(e, cm[c.index][k].rel_ext);
      if (e < 0) continue;
      data << dat_num(c.spec.sigma_qk2) << " " << c.spec.depth << " " << dat_num(std::max(e, 1e-4)) << " " << c.index
           << "\n";
      if (e > top) {
        top = e;
        topcell = c.index;
      }
    }
    f.data = data.str();
    f.script =
        header + fmt::format(
                     "set title \"{}\"\nset logscale x 2\nset logscale y 2\nset logscale cb\nset cbrange [1e-4:*]\n"
                     "set xlabel 'sigma_qk^2'\nset ylabel 'depth L'\nset cblabel 'max relative error'\n"
                     "set palette defined (0 '#2c7bb6', 1 '#abd9e9', 2 '#ffffbf', 3 '#fdae61', 4 '#d7191c')\n"
                     "plot '{}.dat' using 1:2:3 with points pt 7 ps 1.6 lc palette notitle\n",
                     gp(f.title), stem);
    f.reading = topcell < 0 ? "No configuration has a compared value."
                            : fmt::format(
                                  "Each point is one configuration (sigma_qk^2, depth), coloured by its largest "
                                  "relative error over the layers ({}); errors below 0.01% are drawn at "
                                  "0.01%. The largest, {}, is {}.",
                                  what, pct(top), cells[topcell].label);
    figures.push_back(std::move(f));
  };
  if (std::any_of(a.metrics.begin(), a.metrics.end(), is_forward))
    heat("atlas_heat_forward", "forward metrics", is_forward);
  if (std::find(a.metrics.begin(), a.metrics.end(), "grad_var") != a.metrics.end())
    heat("atlas_heat_grad_var", "grad_var", [](const std::string& m) { return m == "grad_var"; });
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"};
  std::vector<std::string> worst_stems;
  for (size_t k = 0; k < worst.size(); ++k) {
    const Worst& w = worst[k];
    const std::string& m = a.metrics[w.metric];
    Figure f;
    f.stem = fmt::format("atlas_worst_{:02d}_{}", k + 1, cells[w.cell].slug);
    f.title = fmt::format("Worst #{}: {} of {}", k + 1, m, cells[w.cell].label);
    f.width = 1000;
    f.height = 480;
    std::ostringstream data;
    data << "# theory: layer value\n";
    std::vector<const AtlasPoint*> mine;
    for (const AtlasPoint& p : pts)
      if (p.cell == w.cell && p.metric == m) mine.push_back(&p);
    for (auto* p : mine) data << p->layer << " " << dat_num(p->theory) << "\n";
    for (size_t wi = 0; wi < nw; ++wi) {
      data << "\n\n# Monte Carlo d = " << a.widths[wi] << ": layer value se\n";
      for (auto* p : mine) data << p->layer << " " << dat_num(p->mc[wi]) << " " << dat_num(p->mc_se[wi]) << "\n";
    }
    data << "\n\n# extrapolated m + b/d at d = infinity: layer m se_m\n";
    for (auto* p : mine) data << p->layer << " " << dat_num(p->fit.m) << " " << dat_num(p->fit.se_m) << "\n";
    f.data = data.str();
    std::vector<std::string> plots{
        fmt::format("'{}.dat' index 0 using 1:2 with lines lw 2 lc rgb '#000000' title 'theory'", f.stem)};
    for (size_t wi = 0; wi < nw; ++wi)
      plots.push_back(fmt::format(
          "'{}.dat' index {} using 1:2:3 with yerrorbars pt 7 ps 0.6 lc rgb '{}' title 'Monte Carlo d = {}'", f.stem,
          wi + 1, colors[wi % 6], a.widths[wi]));
    plots.push_back(
        fmt::format("'{}.dat' index {} using 1:2:3 with yerrorbars pt 6 ps 0.9 lc rgb '#d62728' title "
                    "'extrapolated m + b/d'",
                    f.stem, nw + 1));
    // The label is long: on a second title line.
    f.script = header + fmt::format(
                            "set title \"{}\\n{}\" noenhanced\nset key outside right\nset xlabel 'layer'\n"
                            "set ylabel '{}'\nset offsets 0.4, 0.4, 0, 0\n{}plot {}\n",
                            gp(fmt::format("Worst #{}: {}", k + 1, m)), gp(cells[w.cell].label), m,
                            cells[w.cell].spec.depth <= 24 ? "set xtics 1\n" : "",
                            fmt::format("{}", fmt::join(plots, ", \\\n     ")));
    const CellMetric& x = cm[w.cell][w.metric];
    f.reading = fmt::format(
        "Largest relative error {} (layer {}), {} beyond 2 s.e., |z| up to {:.1f} against the "
        "extrapolated Monte Carlo; at d = {}: {}.",
        pct(x.rel_ext), x.worst_layer, pct(x.excess), x.absz_ext, a.widths[0], pct(x.rel[0]));
    worst_stems.push_back(f.stem);
    figures.push_back(std::move(f));
  }
  const fs::path figdir = out / "figures";
  const DrawResult drawn = draw_figures(figdir, figures, opt.gnuplot);
  res.figures_drawn = drawn.drawn;
  res.figures_missing = drawn.missing;
  res.gnuplot_problem = drawn.problem;

  // ---- tables -----------------------------------------------------------------------------
  std::vector<Table> tables;
  {
    Table t;
    t.title = "Relative error against the width-extrapolated Monte Carlo, every configuration and layer";
    t.note = fmt::format(
        "Goals (issue 16): p99 ≤ 2% for forward metrics, ≤ 5% for grad_var: \"met\" by the p99 relative "
        "error over all points; \"met where resolved\" when it is met over the points resolved to the goal "
        "(those whose combined s.e. is small enough that a theory without error would stay within the goal "
        "with probability 99%: t_0.995 × s.e. ≤ goal × |m|; \"resolved\": their share, \"p99 resolved\": the "
        "p99 over them) and they are at least half of the points, the others being too noisy to judge the goal; \"not resolved\" when only the p99 of the "
        "part beyond 2 s.e. meets it, else \"not met\". Standard errors estimated from n samples (or batches) have n − 1 "
        "degrees of freedom: z is the normal score of the Student t with the Welch–Satterthwaite degrees of "
        "freedom of the combined s.e., and \"2 s.e.\" is the t quantile of the same tail. \"beyond z_crit\": "
        "share of points with |z| > z_crit = {:.2f} (Bonferroni over the {} points at family-wise rate {}). "
        "\"theory null\": "
        "configurations and layers where the theory reports no value (it says why in its warnings, e.g. a sampled "
        "grad_var that lost all precision) but the Monte Carlo has one; not among the points.",
        zc, pts.size(), a.alpha);
    t.head = {"metric",   "points",        "p50",         "p90",  "p99",        "max", "p99 beyond 2 s.e.",
              "resolved", "p99 resolved", "beyond z_crit", "goal", "theory null"};
    for (const std::string& m : a.metrics) {
      const Stat s = stat(groups[0], m, -1);
      const double goal = atlas_goal(m);
      // "not resolved": the p99 error exceeds the goal but not by more than the Monte Carlo's uncertainty.
      const std::string verdict = s.n == 0                 ? "–"
                                  : s.p99 <= goal          ? "met"
                                  : s.p99_resolved <= goal && s.resolved >= 0.5 ? "met where resolved"
                                  : s.p99_excess <= goal   ? "not resolved"
                                                           : "not met";
      t.rows.push_back({m, fmt::format("{}", s.n), pct(s.p50), pct(s.p90), pct(s.p99), pct(s.max), pct(s.p99_excess),
                        pct(s.resolved), pct(s.p99_resolved), pct(s.significant), verdict,
                        fmt::format("{}", theory_nulls[m])});
    }
    tables.push_back(std::move(t));
  }
  auto refined_counts = [](const std::vector<int>& f) {
    std::map<int, int> by;
    for (int k : f)
      if (k > 1) ++by[k];
    std::vector<std::string> counts;
    for (auto [k, n] : by) counts.push_back(fmt::format("{} × {}", n, k));
    const auto n = f.size() - static_cast<size_t>(std::count(f.begin(), f.end(), 1));
    return counts.empty() ? fmt::format("{}", n) : fmt::format("{} (configurations × K: {})", n, fmt::join(counts, ", "));
  };
  if (refine_on) {
    std::vector<std::string> widths_refined;
    for (size_t w = 0; w < nw; ++w) {
      std::vector<int> f;
      for (const auto& fw : factor_w) f.push_back(fw[w]);
      widths_refined.push_back(fmt::format("d = {}: {}", a.widths[w], refined_counts(f)));
    }
    const std::string per_width = fmt::format("{}", fmt::join(widths_refined, "; "));
    Table t;
    t.title = "Refinement: more samples where the goals were not resolved";
    t.note = fmt::format(
        "atlas.refine = {}, refine_theory = {}: after the first pass, every configuration with points not resolved to "
        "the goal got the powers of two K_w ≤ {} on its Monte Carlo samples at each width and K_theory ≤ {} on the "
        "sampled theory's logit draws that resolve, at the least added cost, every such point some choice can "
        "(chosen from the standard errors alone, never from the error). The extra Monte Carlo samples continue the "
        "same random streams and are pooled with the first pass; a refined theory replaces the first. Monte Carlo "
        "refined in {} of {} configurations (K the largest over the widths; refined per width: {}), {:.0f}% more "
        "Monte Carlo work; theory refined in {}, {:.0f}% more "
        "theory work (core-seconds as the jobs recorded them beside their cells, the jobs' cost model for cells made "
        "before sigprop recorded them). Per metric, the first pass → with the refinement.",
        a.refine, a.refine_theory, a.refine, a.refine_theory, refined_counts(factor), cells.size(), per_width,
        cost_first > 0 ? 100 * cost_more / cost_first : 0.0, refined_counts(factor_theory),
        cost_theory_first > 0 ? 100 * cost_theory_more / cost_theory_first : 0.0);
    t.head = {"metric", "points", "resolved", "p99 resolved", "p99"};
    for (const std::string& m : a.metrics) {
      const Stat after = stat(groups[0], m, -1), before = refined ? stat_of(pts_first, groups[0], m, -1) : after;
      auto arrow = [](const std::string& x, const std::string& y) { return x == y ? x : x + " → " + y; };
      t.rows.push_back({m, arrow(fmt::format("{}", before.n), fmt::format("{}", after.n)),
                        arrow(pct(before.resolved), pct(after.resolved)),
                        arrow(pct(before.p99_resolved), pct(after.p99_resolved)), arrow(pct(before.p99), pct(after.p99))});
    }
    tables.push_back(std::move(t));
  }
  {
    // What limits the largest errors: each point in the top 1% of its metric's relative error
    // (against the extrapolated Monte Carlo) by the first that applies. The relative error of a
    // value the Monte Carlo does not resolve from 0 says nothing about the theory.
    Table t;
    t.title = "What limits the largest 1% of errors";
    t.note =
        "Per metric, the points whose relative error against the extrapolated Monte Carlo is at or above its p99, by "
        "the first that applies: \"beyond the uncertainty\": |theory − m| exceeds 2 s.e. (Student t), an error the "
        "Monte Carlo resolves; else within the uncertainty, and \"res below MC resolution\": res with |m| below "
        "what its Monte Carlo resolves (1e-6 for a float stream without the double fallback of res < 1e-5, "
        "1e-14 for double and for conditional weight sampling, which below that collapses the tokens faster "
        "than the stack); \"m not resolved from 0\": |m| is itself within 2 of its own s.e. "
        "(the Monte Carlo's) of 0, so the relative error of any prediction is large; \"theory s.e. larger\" / \"Monte Carlo s.e. larger\": "
        "which side's sampling error dominates. \"widths reject m + b/d\": of all these points, those whose "
        "Monte Carlo widths bend away from the fit at the 1% level (|z| > 2.58 for the 1/d² term, next table), "
        "where the extrapolation, not the theory, is in question. \"configurations\": the three contributing "
        "most points.";
    t.head = {"metric",
              "points",
              "beyond the uncertainty",
              "res below MC resolution",
              "m not resolved from 0",
              "theory s.e. larger",
              "Monte Carlo s.e. larger",
              "widths reject m + b/d",
              "configurations"};
    for (const std::string& m : a.metrics) {
      const Stat s = stat(groups[0], m, -1);
      if (s.n == 0) continue;
      int n = 0, beyond = 0, floor = 0, zero = 0, th = 0, mc = 0, bent = 0;
      std::map<int, int> by_cell;
      for (const AtlasPoint& p : pts) {
        if (p.metric != m || !(p.rel_ext >= s.p99)) continue;
        ++n;
        ++by_cell[p.cell];
        bent += std::abs(p.z_curv) > kNormal1;
        if (p.excess_ext > 0) {
          ++beyond;
        } else if (m == "res" && std::abs(p.fit.m) < p.floor_ext) {  // below the floor its float stream resolves
          ++floor;
        } else if (std::abs(p.fit.m) <= z_as_t(2.0, p.fit.dof) * p.fit.se_m) {
          ++zero;  // the Monte Carlo's own uncertainty: a theory s.e. larger than |m| is the next class
        } else if (p.theory_se > p.fit.se_m) {
          ++th;
        } else {
          ++mc;
        }
      }
      std::vector<std::pair<int, int>> top(by_cell.begin(), by_cell.end());
      std::sort(top.begin(), top.end(), [](auto& x, auto& y) { return x.second != y.second ? x.second > y.second : x.first < y.first; });
      std::vector<std::string> names;
      for (size_t i = 0; i < std::min<size_t>(3, top.size()); ++i)
        names.push_back(fmt::format("{} ({})", cells[top[i].first].slug, top[i].second));
      t.rows.push_back({m, fmt::format("{}", n), fmt::format("{}", beyond), fmt::format("{}", floor),
                        fmt::format("{}", zero), fmt::format("{}", th), fmt::format("{}", mc),
                        nw >= 3 ? fmt::format("{}", bent) : std::string("–"), fmt::format("{}", fmt::join(names, ", "))});
    }
    tables.push_back(std::move(t));
  }
  if (nw >= 3) {
    // Is the extrapolation's model right? With three or more widths the Monte Carlo alone can test
    // m + b/d against the next term of the width expansion; on an adequate model |z| exceeds the
    // two-sided 5% and 1% points at those rates (layers of one configuration are correlated, so the
    // counts come in clumps, but their expected shares are the nominal ones).
    Table t;
    t.title = "Does m + b/d fit the Monte Carlo's widths?";
    t.note = fmt::format(
        "Per metric, the weighted fit of m + b/d + c/d² to the Monte Carlo's {} widths (update_ratio and ang_dist "
        "in the square, as their extrapolation), z the normal score of c / s.e.(c) under Student's t "
        "(Welch–Satterthwaite). Where m + b/d is the right model, |z| > 1.96 in 5% and |z| > 2.58 in 1% of the "
        "points, and |z| > z_crit = {:.2f} (Bonferroni, family-wise rate {}) nowhere; more means the widths bend "
        "and the extrapolated m, not the theory, is in question there.",
        nw, zc, a.alpha);
    t.head = {"metric", "points", "|z| > 1.96 (5%)", "|z| > 2.58 (1%)", "beyond z_crit", "largest |z| at"};
    for (const std::string& m : a.metrics) {
      const auto it = curv.find(m);
      if (it == curv.end()) continue;
      const CurvStat& c = it->second;
      t.rows.push_back({m, fmt::format("{}", c.n), pct(double(c.z5) / c.n), pct(double(c.z1) / c.n),
                        pct(double(c.zcrit) / c.n),
                        fmt::format("{} layer {} (z = {:.2f})", cells[c.worst->cell].slug, c.worst->layer, c.worst->z_curv)});
    }
    tables.push_back(std::move(t));
  }
  for (size_t wi = 0; wi < nw; ++wi) {
    Table t;
    t.title = fmt::format("Relative error against the Monte Carlo at d = {} (no goal: finite-width bias included)",
                          a.widths[wi]);
    t.head = {"metric", "points", "p50", "p90", "p99", "max", "beyond z_crit"};
    for (const std::string& m : a.metrics) {
      const Stat s = stat(groups[0], m, static_cast<int>(wi));
      t.rows.push_back({m, fmt::format("{}", s.n), pct(s.p50), pct(s.p90), pct(s.p99), pct(s.max), pct(s.significant)});
    }
    tables.push_back(std::move(t));
  }
  for (const std::string scope : {"blocks", "norm", "qk_scale"}) {
    Table t;
    t.title = fmt::format("p99 relative error against the extrapolated Monte Carlo, by {}", scope);
    t.head = {scope};
    for (auto& m : a.metrics) t.head.push_back(m);
    for (const Group& g : groups) {
      if (g.scope != scope) continue;
      std::vector<std::string> row{g.name};
      for (auto& m : a.metrics) row.push_back(pct(stat(g, m, -1).p99));
      t.rows.push_back(std::move(row));
    }
    tables.push_back(std::move(t));
  }
  Table worst_table;
  worst_table.title = fmt::format("The {} worst configurations", worst.size());
  worst_table.note =
      "Ranked by the largest error beyond 2 standard errors of theory and extrapolated Monte Carlo, then by the "
      "largest relative error.";
  worst_table.link_col = 8;
  worst_table.head = {"#",
                      "configuration",
                      "metric",
                      "layer",
                      "rel. error (ext.)",
                      "beyond 2 s.e.",
                      "max |z|",
                      fmt::format("rel. error d = {}", a.widths[0]),
                      "figure"};
  for (size_t k = 0; k < worst.size(); ++k) {
    const CellMetric& x = cm[worst[k].cell][worst[k].metric];
    worst_table.rows.push_back({fmt::format("{}", k + 1), cells[worst[k].cell].label, a.metrics[worst[k].metric],
                                fmt::format("{}", x.worst_layer), pct(x.rel_ext), pct(x.excess),
                                fmt::format("{:.1f}", x.absz_ext), pct(x.rel[0]),
                                "figures/" + worst_stems[k] + ".svg"});
  }
  tables.push_back(worst_table);

  // ---- atlas.json -------------------------------------------------------------------------
  {
    nlohmann::json j;
    j["sigprop"] = kVersion;
    j["configurations"] = cells.size();
    j["widths"] = a.widths;
    j["samples"] = a.samples.empty() ? std::vector<int>(nw, cfg.simulate.samples) : a.samples;
    j["points"] = pts.size();
    j["theory_null"] = theory_nulls;
    j["alpha"] = a.alpha;
    j["z_crit"] = zc;
    j["summary"] = jsummary;
    j["width_curvature"] = nlohmann::json::object();
    for (const auto& [m, c] : curv)
      j["width_curvature"][m] = {{"points", c.n},
                                 {"share_beyond_1.96", double(c.z5) / c.n},
                                 {"share_beyond_2.58", double(c.z1) / c.n},
                                 {"share_beyond_z_crit", double(c.zcrit) / c.n}};
    if (refine_on) {
      nlohmann::json r = {
          {"max_factor", a.refine},
          {"max_factor_theory", a.refine_theory},
          {"configurations_refined", cells.size() - std::count(factor.begin(), factor.end(), 1)},
          {"configurations_refined_theory", cells.size() - std::count(factor_theory.begin(), factor_theory.end(), 1)},
          {"extra_cost_share", cost_first > 0 ? cost_more / cost_first : 0.0},
          {"extra_cost_share_theory", cost_theory_first > 0 ? cost_theory_more / cost_theory_first : 0.0},
          {"factors", nlohmann::json::object()},
          {"factors_width", nlohmann::json::object()},
          {"factors_theory", nlohmann::json::object()},
          {"first_pass", nlohmann::json::object()}};
      for (int f : factor)
        if (f > 1) r["factors"][fmt::format("{}", f)] = r["factors"].value(fmt::format("{}", f), 0) + 1;
      for (size_t w = 0; w < nw; ++w) {  // per width: configurations per factor
        nlohmann::json& fw = r["factors_width"][fmt::format("{}", a.widths[w])] = nlohmann::json::object();
        for (const auto& f : factor_w)
          if (f[w] > 1) fw[fmt::format("{}", f[w])] = fw.value(fmt::format("{}", f[w]), 0) + 1;
      }
      for (int f : factor_theory)
        if (f > 1) r["factors_theory"][fmt::format("{}", f)] = r["factors_theory"].value(fmt::format("{}", f), 0) + 1;
      auto jn = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
      for (const std::string& m : a.metrics) {
        const Stat g = stat_of(refined ? pts_first : pts, groups[0], m, -1);
        r["first_pass"][m] = {{"n", g.n}, {"p99", jn(g.p99)}, {"share_resolved", jn(g.resolved)},
                              {"p99_resolved", jn(g.p99_resolved)}};
      }
      j["refinement"] = r;
    }
    j["worst"] = nlohmann::json::array();
    for (size_t k = 0; k < worst.size(); ++k) {
      const CellMetric& x = cm[worst[k].cell][worst[k].metric];
      j["worst"].push_back({{"cell", worst[k].cell},
                            {"label", cells[worst[k].cell].label},
                            {"metric", a.metrics[worst[k].metric]},
                            {"layer", x.worst_layer},
                            {"rel_ext", x.rel_ext},
                            {"excess_ext", x.excess},
                            {"max_abs_z_ext", x.absz_ext},
                            {"figure", worst_stems[k]}});
    }
    write_file_atomic(out / "atlas.json", j.dump(1) + "\n");
  }

  // ---- report.md and index.html ---------------------------------------------------------------
  const std::string settings = fmt::format(
      "{} configurations ({} sample, seed {}), theory against Monte Carlo at d = {} (H = d/{}) with {} samples{}, "
      "{} compared points",
      cells.size(), a.sampler == "lhs" ? "Latin hypercube" : "digitally shifted Sobol", a.seed,
      fmt::join(a.widths, ", "), a.head_dim,
      a.samples.empty() ? fmt::format("{}", cfg.simulate.samples) : fmt::format("{}", fmt::join(a.samples, ", ")),
      a.refine > 1 ? fmt::format(" (up to {} times as many where the goals need them: refinement)", a.refine) : "",
      pts.size());
  const std::string defs =
      "Relative error |theory − MC| / |MC| per configuration, metric and layer (inputs excluded: layer 0 of the "
      "forward "
      "metrics, grad_var at layer L). The extrapolated MC is m of a weighted least-squares fit m + b/d over the widths "
      "(weights 1/s.e.², s.e. of m from the fit); t = (theory − m) / sqrt(s.e._theory² + s.e._m²), and z its normal "
      "score under Student's t with the Welch–Satterthwaite degrees of freedom of the estimated s.e. (n − 1 for n "
      "samples or error batches). Data: "
      "atlas_points.csv (a row per point), atlas_configs.csv (a row per configuration), atlas_summary.csv, atlas.json; "
      "profiles in cells/. docs/atlas.md defines every statistic.";
  auto drawn_fig = [&](const std::string& stem) {
    return std::find(res.figures_drawn.begin(), res.figures_drawn.end(), stem) != res.figures_drawn.end();
  };
  std::ostringstream md;
  md << "# " << cfg.title << "\n\n" << settings << ". sigprop " << kVersion << ".\n\n" << defs << "\n\n";
  if (!opt.notice.empty()) md << "**" << opt.notice << "**\n\n";
  if (!res.figures_missing.empty())
    md << "**Figures not drawn:** " << res.gnuplot_problem << ". Data and scripts are in `figures/`.\n\n";
  md << "## Summary\n\n";
  for (size_t i = 0; i + 1 < tables.size(); ++i) md << md_table(tables[i]);
  md << "## Where the error is largest\n\n";
  for (auto& f : figures) {
    if (f.stem.rfind("atlas_heat", 0) != 0) continue;
    md << "### " << f.title << "\n\n";
    if (drawn_fig(f.stem)) md << "![" << f.title << "](figures/" << f.stem << ".png)\n\n";
    md << f.reading << "\n\n";
  }
  md << "## Worst configurations\n\n" << md_table(tables.back());
  for (auto& f : figures) {
    if (f.stem.rfind("atlas_worst", 0) != 0) continue;
    md << "### " << f.title << "\n\n";
    if (drawn_fig(f.stem)) md << "![" << f.title << "](figures/" << f.stem << ".png)\n\n";
    md << f.reading << "\n\n";
  }
  md << "## Exact config\n\n```toml\n" << to_toml(cfg) << "```\n";
  res.report_md = out / "report.md";
  write_file_atomic(res.report_md, md.str());

  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << html(cfg.title)
    << "</title>\n<style>\nbody{font-family:system-ui,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1320px;"
       "padding:1.2em 2em;color:#222;line-height:1.45}\nfigure img{width:100%;height:auto;border:1px solid #e4e4e4}\n"
       ".reading{background:#f5f8fc;border-left:4px solid #1f77b4;padding:.5em .9em}\ntable{border-collapse:collapse;"
       "font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}th{background:#f0f0f0}"
       "td:first-child,th:first-child{text-align:left}\npre{background:#f7f7f7;padding:.8em;overflow-x:auto}\n"
       "</style>\n</head>\n<body>\n<h1>"
    << html(cfg.title) << "</h1>\n<p>" << html(settings) << ". sigprop " << html(kVersion) << ".</p>\n<p>" << html(defs)
    << "</p>\n";
  if (!opt.notice.empty()) h << "<p><b>" << html(opt.notice) << "</b></p>\n";
  if (!res.figures_missing.empty())
    h << "<p><b>Figures not drawn:</b> " << html(res.gnuplot_problem) << ". Data and scripts are in figures/.</p>\n";
  h << "<h2>Summary</h2>\n";
  for (size_t i = 0; i + 1 < tables.size(); ++i) h << html_table(tables[i]);
  auto html_fig = [&](const Figure& f) {
    h << "<h3>" << html(f.title) << "</h3>\n";
    if (drawn_fig(f.stem))
      h << "<figure><img alt=\"" << html(f.title) << "\" src=\"data:image/svg+xml;base64,"
        << base64(slurp(figdir / (f.stem + ".svg"))) << "\"></figure>\n";
    h << "<p class=\"reading\">" << html(f.reading) << "</p>\n";
  };
  h << "<h2>Where the error is largest</h2>\n";
  for (auto& f : figures)
    if (f.stem.rfind("atlas_heat", 0) == 0) html_fig(f);
  h << "<h2>Worst configurations</h2>\n" << html_table(tables.back());
  for (auto& f : figures)
    if (f.stem.rfind("atlas_worst", 0) == 0) html_fig(f);
  h << "<h2>Exact config</h2>\n<pre>" << html(to_toml(cfg)) << "</pre>\n</body>\n</html>\n";
  res.index_html = out / "index.html";
  write_file_atomic(res.index_html, h.str());
  return res;
}

}  // namespace sigprop::reports
