#pragma once
/// @file The validity atlas (docs/atlas.md): a report whose cells are a space-filling sample of
/// specs ([atlas] in the report config) instead of a grid, each run by the theory and by the
/// Monte Carlo at several widths. The cells, jobs, resume and MPI sharing are the report
/// engine's (reports/sweep.hpp); this file draws the sample, compares the profiles (relative
/// error and error in standard errors, at each width and against the width-extrapolated Monte
/// Carlo m + b/d) and writes the atlas folder.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "reports/config.hpp"
#include "reports/report.hpp"
#include "reports/sweep.hpp"

namespace sigprop::reports {

// ---- space-filling samples of [0, 1)^dims ------------------------------------------------------

/// The largest dimension sobol_points accepts (the atlas draws 13).
inline constexpr int kSobolMaxDims = 16;
/// n points of the Sobol sequence (Boost.Random's sobol_engine: Joe-Kuo direction numbers, Gray-code
/// order; point 0, the origin, included) in `dims`
/// dimensions, each dimension XORed with a random 32-bit digital shift drawn from `seed`
/// (a scrambling that keeps the net property: with n = 2^m every 1-D projection has exactly
/// one point per interval [k/n, (k+1)/n), and dimensions 1 and 2 form a (0, m, 2)-net).
/// seed = 0 is the unshifted sequence. Throws Error for dims outside [1, kSobolMaxDims].
std::vector<std::vector<double>> sobol_points(int n, int dims, uint64_t seed);
/// n points of a Latin hypercube: in every dimension exactly one point per interval
/// [k/n, (k+1)/n), uniformly placed inside it, intervals permuted independently from `seed`.
std::vector<std::vector<double>> lhs_points(int n, int dims, uint64_t seed);

// ---- statistics ----------------------------------------------------------------------------------

/// Weighted least-squares fit y = m + b / d with weights 1 / se^2 (known standard errors, not
/// rescaled by the residuals). se_m is the standard error of m from (X' W X)^-1. A standard
/// error of 0 (an exact value) is floored at 1e-12 (1 + |y|) so that it dominates the fit.
///
/// `dof`, when given (one per width), are the degrees of freedom of the standard errors (n - 1 for
/// the s.e. of a mean of n samples): the fit's `dof` is then the Welch-Satterthwaite degrees of
/// freedom of se_m^2 = sum_i c_i^2 se_i^2, m = sum_i c_i y_i; without them it is infinite.
struct WidthFit {
  double m = 0, b = 0, se_m = 0;
  double dof = std::numeric_limits<double>::infinity();  ///< degrees of freedom of se_m
  bool ok = false;  ///< false with fewer than two distinct widths or a non-finite input
};
WidthFit fit_width(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                   const std::vector<double>& dof = {});

/// The fit of y^2 = m^2 + b / d (se of y^2 by the delta method, 2 |y| se), returning m =
/// sqrt(max(m^2, 0)) and its standard error: for norms of small updates (update_ratio,
/// ang_dist) the Monte Carlo mean's square, E[u]^2 = E[u^2] - Var u, has the 1/d bias, while
/// E[u] goes like sqrt(t^2 + c/d) once the finite-width part c/d is not small against t^2.
/// b is the slope of the square.
/// Its dof are those of the squared fit (the delta method scales se_m, not its distribution).
WidthFit fit_width_squared(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                           const std::vector<double>& dof = {});

/// The lack-of-fit check of m + b/d: the weighted least-squares fit y = m + b/d + c/d^2 (the next
/// term of the width expansion; weights 1/se^2, floored as in fit_width) over three or more distinct
/// widths. se_c from (X'WX)^-1; dof, when given (one per width), the Welch-Satterthwaite degrees of
/// freedom of se_c^2 through the fit's coefficients (as WidthFit::dof); z = t_as_z(c / se_c, dof),
/// the normal score of the evidence that the widths bend away from m + b/d. With exactly three
/// widths c is the interpolating parabola's (whatever the weights) and z^2 is the weighted residual
/// chi^2 of fit_width. ok = false with fewer than three distinct widths or a non-finite input.
struct WidthCurvature {
  double c = 0, se_c = 0;
  double dof = std::numeric_limits<double>::infinity();
  double z = std::numeric_limits<double>::quiet_NaN();
  bool ok = false;
};
WidthCurvature width_curvature(const std::vector<double>& d, const std::vector<double>& y, const std::vector<double>& se,
                               const std::vector<double>& dof = {});

/// The Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates v_i with
/// nu_i degrees of freedom each: (sum v_i)^2 / sum (v_i^2 / nu_i). An infinite nu_i (a variance
/// known exactly) adds nothing to the denominator; infinite when every v_i with a finite nu_i is 0.
double welch_dof(const std::vector<std::pair<double, double>>& var_dof);

/// The standard normal score with the same tail as t under Student's t with nu degrees of
/// freedom: sign(t) Phi^-1(1 - P(T_nu > |t|)), so |result| <= |t|, and t itself for nu = infinity
/// (or nu > 1e9). A t that is not finite, or whose tail underflows, is returned as it is.
double t_as_z(double t, double nu);

/// The Student-t (nu degrees of freedom) quantile with the normal tail of z: F_nu^-1(Phi(z));
/// z for nu = infinity. z_as_t(2, 7) = 2.5195..., the "two standard errors" of a 7-dof s.e.
double z_as_t(double z, double nu);

/// The p-quantile (p in [0, 1]) of v with linear interpolation between order statistics
/// (Hyndman-Fan type 7, as numpy's default); NaN for an empty v. NaNs in v are ignored.
double percentile(std::vector<double> v, double p);

/// z with P(|N(0,1)| > z) = alpha / tests: the Bonferroni critical value of `tests` two-sided
/// z-tests at family-wise false-alarm rate alpha.
double bonferroni_z(double alpha, double tests);

// ---- the atlas ---------------------------------------------------------------------------------

/// One drawn configuration: the spec keys it sets (TOML literals, as a sweep variant) and a label.
struct AtlasDraw {
  std::vector<std::pair<std::string, std::string>> sets;
  std::string label;
};
/// The atlas's configurations, in sample order (deterministic in the config).
std::vector<AtlasDraw> atlas_draws(const AtlasConfig& a);

/// One compared (configuration, metric, layer).
struct AtlasPoint {
  int cell = 0, layer = 0;
  std::string metric;
  double theory = 0, theory_se = 0;  ///< theory_se 0 where the theory reports none
  std::vector<double> mc, mc_se;     ///< per width of AtlasConfig::widths
  std::vector<double> mc_dof;        ///< per width: the degrees of freedom of mc_se (samples - 1)
  /// Per width: |theory - mc| / |mc|, and z: the normal score of t = (theory - mc) / combined s.e.
  /// under Student's t with the Welch-Satterthwaite degrees of freedom of the combined s.e. (t_as_z)
  std::vector<double> rel, z;
  WidthFit fit;                      ///< the Monte Carlo extrapolated to infinite width
  double rel_ext = 0, z_ext = 0;     ///< theory against fit.m (z as above)
  double se_ext = 0;                 ///< the combined s.e. of theory - m (theory, fit, float floor)
  double dof_ext = std::numeric_limits<double>::infinity();  ///< degrees of freedom of se_ext
  double theory_dof = std::numeric_limits<double>::infinity();  ///< degrees of freedom of theory_se
  double floor_ext = 0;  ///< the float resolution floor f in se_ext (exact)
  /// max(0, |theory - m| - k s) / |m| with k = z_as_t(2, dof_ext) (2 for known errors): the error
  /// beyond two standard errors' worth of uncertainty
  double excess_ext = 0;
  /// z of width_curvature on the Monte Carlo (in the square for update_ratio and ang_dist, as the
  /// fit; standard errors with the float floor of z): whether the widths reject m + b/d. NaN with
  /// fewer than three widths.
  double z_curv = std::numeric_limits<double>::quiet_NaN();
};

/// The absolute resolution floor of res in the atlas's combined standard errors, for one
/// configuration's Monte Carlo profiles (one per width) at the value ref: what the Monte Carlo
/// resolves, counted as an exact uncertainty ("Statistics" in docs/atlas.md). float (the config's
/// precision): 1e-6 (a float stream's rounding), or, where every profile says res_double_below
/// (samples below it were recomputed in double), 3e-8 min(1, |ref| / res_double_below); double:
/// 1e-14. At least 1e-11 where a profile used conditional weight sampling (its tokens collapse
/// faster than the stack's below res ~1e-11).
double atlas_res_floor(const std::vector<Profile>& mc, double ref, bool single);

/// Compares every cell's theory profile with its Monte Carlo profiles (loaded from out/cells):
/// every metric of atlas.metrics at every layer where all values are finite and the Monte Carlo
/// value is not 0, except the inputs (layer 0 for forward metrics, grad_var at layer L).
/// @param theory_nulls if given, receives per metric the number of (configuration, layer) the
///        theory left null (e.g. a sampled grad_var that lost all precision) where every Monte
///        Carlo value is finite and not 0: points the theory does not predict, not compared
///        (counted over the base runs' values)
/// @param pool_refined whether a refinement job's samples (AtlasConfig::refine, atlas_refine_jobs)
///        are pooled into its configuration and width's Monte Carlo (true), or only the first pass's
///        runs are compared (false: the atlas before refinement)
std::vector<AtlasPoint> atlas_points(const ReportConfig& cfg, const std::vector<Cell>& cells,
                                     const std::vector<Job>& jobs, const std::filesystem::path& out,
                                     std::map<std::string, int>* theory_nulls = nullptr, bool pool_refined = true);

/// The goal of a metric's p99 relative error after width extrapolation (issue 16): 5% for grad_var,
/// 2% for the forward metrics.
double atlas_goal(const std::string& metric);
/// Whether a point's comparison can judge the goal: a theory without error would show a relative
/// error within the goal with probability 99% (t_0.995 of dof_ext times se_ext <= goal |m|).
bool resolved_to_goal(const AtlasPoint& p);

/// Refinement (AtlasConfig::refine, refine_theory; docs/atlas.md "Refinement"): per configuration,
/// the factors (powers of two) on its Monte Carlo samples, one per width of AtlasConfig::widths,
/// and on the sampled theory's logit draws.
struct RefineFactors {
  std::vector<int> mc;  ///< per width (1: that width keeps its first pass)
  int theory = 1;
  bool operator==(const RefineFactors&) const = default;
};
/// What a configuration's first pass cost (core-seconds, or any common unit): its Monte Carlo job
/// per width, its theory job.
struct RefineCost {
  std::vector<double> mc;
  double theory = 1;
};
/// The refinement plan, from the standard errors alone, never the error: for every point not
/// resolved to the goal, the factors (K_w <= max_mc per width, K_theory <= max_theory, powers of
/// two) of least added cost, sum_w cost_w (K_w - 1) + cost_theory (K_theory - 1), that would resolve
/// it: the width fit redone with each width's s.e. divided by sqrt K_w at K_w n_w - 1 degrees of
/// freedom (se_m and its degrees of freedom as atlas_points computes them), theory_se / sqrt
/// K_theory at the same degrees of freedom, the float floor unchanged. Points no allowed factors
/// resolve (a float floor above the goal, m near 0, heavy tails) are left out, not capped; so are
/// points without per-width data. Every vector of factors is tried while there are at most 4096 of
/// them (log2 max_mc + 1 per width, to the power of the widths), else only uniform ones. A
/// configuration takes, per width, the largest factor its points need; configurations needing none
/// have no entry. `widths` are AtlasConfig::widths; `cost` gives
/// per configuration its first pass's cost, without an entry every job counts 1.
std::map<int, RefineFactors> atlas_refine_plan(const std::vector<AtlasPoint>& pts, const std::vector<int>& widths,
                                               int max_mc, int max_theory, const std::map<int, RefineCost>& cost = {});
/// The refinement jobs of an atlas whose first-pass jobs are all done: for every configuration and
/// width with a Monte Carlo factor K = 2^s, s doubling jobs, samples [f n, 2 f n) for f = 1, 2, .., K/2
/// (the same seed: the first run's streams continued; cells/<cNNN>.simulate-d<width>-s<f n>.json: a
/// larger K later reuses the steps of a smaller one, each costs f first passes), and with a
/// theory factor K, a theory job with K times attn_samples that replaces the first
/// (cells/<cNNN>.theory-x<K>.json), labelled and hashed like any job. Empty when atlas.refine and
/// refine_theory are 1. Deterministic in the config and the first pass's cells, so a rerun finds the
/// same jobs (resume, MPI ranks).
std::vector<Job> atlas_refine_jobs(const ReportConfig& cfg, const std::vector<Cell>& cells,
                                   const std::vector<Job>& jobs, const std::filesystem::path& out);

/// Writes the atlas folder (docs/atlas.md "Output"); called by render_report for an [atlas] config.
RenderResult render_atlas(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                          const std::filesystem::path& out, const RenderOptions& opt);

}  // namespace sigprop::reports
