// The depth study's page (see depth_study_page.hpp); the study itself is validate/depth_study.cpp.
#include "reports/depth_study_page.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "reports/figures.hpp"

namespace sigprop::reports {
namespace fs = std::filesystem;
using figures_detail::base64;
using figures_detail::dat_num;
using figures_detail::gp;
using figures_detail::html;
using figures_detail::slurp;
using validate::DepthResult;
using validate::DepthStudy;

namespace {

std::string num(double x, int sig = 4) {
  if (!std::isfinite(x)) return "n/a";
  return fmt::format("{:.{}g}", x, sig);
}

double col(const Profile& p, int l, const std::string& m) { return p.has(m) ? p.at(l, m) : NAN; }

// A figure's stem: the name alone for a study of one architecture, else suffixed with the architecture's.
std::string stem_for(const std::string& stem, const validate::ArchStudy& a, const DepthStudy& study) {
  return study.archs.size() == 1 ? stem : stem + "_" + a.arch.name;
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

// ---- the causes: one indicator per cause, flagged above a stated threshold ------------------
// The rules are stated in docs/study.md ("Which cause dominates where") and in the page.
struct Flag {
  std::string cause, why;
  double severity;  ///< indicator / threshold (>= 1 when flagged)
};
constexpr double kGradOrders = 1.0;      // |log10 grad_var_rel at l = 0 (trained)| >= 1
constexpr double kLateEarly = 0.25;      // late/early drop-one ratio <= 0.25
constexpr double kSpikeRate = 0.01;      // >= 1 % of the judged steps spike
constexpr double kInstabilityX = 2.0;    // or instability >= 2x the shallowest depth's
constexpr double kGap = 0.05;            // validation - training loss >= 0.05 nats
constexpr double kCostFraction = 0.25;   // gain per FLOP <= 0.25 x the first step's
constexpr double kNoiseVar = 0.1;        // Var(log q_L) >= 0.1
constexpr double kMaxSeverity = 10;      // indicator / threshold, capped (a ratio <= 0 counts as 10)
const char* kRulesText =
    "A cause is flagged at a depth when its indicator crosses a stated threshold: gradient attenuation when "
    "|log10 grad_var_rel| at the first block of the trained model >= 1; saturation when the mean drop-one-layer "
    "loss increase of the last half of the blocks is <= 0.25 of the first half's; optimisation difficulty when >= 1 % "
    "of the steps are gradient-norm spikes or the loss instability is >= 2x the shallowest depth's; overfitting when "
    "the validation loss exceeds the training-split loss by >= 0.05 nats; cost when a step still gains but its gain per "
    "training FLOP is <= 0.25 of the first step's; noise when Var(log q_L) over Monte Carlo draws is >= 0.1. The "
    "dominant cause is the flagged one whose indicator exceeds its threshold by the largest factor (capped at 10; a "
    "late/early ratio <= 0 counts as 10).";

std::vector<Flag> flags_at(const validate::ArchStudy& a, std::size_t i) {
  const auto& r = a.results[i];
  const validate::DepthCauses& c = r.causes;
  const validate::DepthCauses& c0 = a.results.front().causes;
  std::vector<Flag> f;
  const double g = std::abs(std::log10(c.grad_first_trained));
  if (std::isfinite(g) && g >= kGradOrders)
    f.push_back({"gradient attenuation", fmt::format("grad_var_rel at block 1 = {}", num(c.grad_first_trained, 3)),
                 g / kGradOrders});
  if (std::isfinite(c.drop_late_ratio) && c.drop_late_ratio <= kLateEarly)
    f.push_back({"saturation", fmt::format("late/early drop-one = {}", num(c.drop_late_ratio, 2)),
                 c.drop_late_ratio > 0 ? kLateEarly / c.drop_late_ratio : kMaxSeverity});
  {
    const double sr = std::isfinite(c.spike_rate) ? c.spike_rate / kSpikeRate : 0;
    const double in = i > 0 && std::isfinite(c.instability) && c0.instability > 0
                          ? c.instability / (kInstabilityX * c0.instability)
                          : 0;
    if (sr >= 1 || in >= 1)
      f.push_back({"optimisation",
                   fmt::format("spike rate {}, instability {}", num(c.spike_rate, 2), num(c.instability, 3)),
                   std::max(sr, in)});
  }
  if (std::isfinite(c.gap) && c.gap >= kGap)
    f.push_back({"overfitting", fmt::format("val - train = {}", num(c.gap, 3)), c.gap / kGap});
  // cost: a step that still gains, but at <= 0.25 of the first step's gain per FLOP (a step that
  // gains nothing is not explained by its cost)
  if (i >= 2 && c.gain_per_flop > 0 && a.results[1].causes.gain_per_flop > 0 &&
      c.gain_per_flop <= kCostFraction * a.results[1].causes.gain_per_flop)
    f.push_back({"cost", fmt::format("gain per FLOP {}", num(c.gain_per_flop, 2)),
                 kCostFraction * a.results[1].causes.gain_per_flop / c.gain_per_flop});
  if (std::isfinite(c.var_log_q) && c.var_log_q >= kNoiseVar)
    f.push_back({"noise", fmt::format("Var(log q_L) = {}", num(c.var_log_q, 3)), c.var_log_q / kNoiseVar});
  for (Flag& x : f) x.severity = std::min(x.severity, kMaxSeverity);
  std::stable_sort(f.begin(), f.end(), [](const Flag& x, const Flag& y) { return x.severity > y.severity; });
  return f;
}

std::string flags_text(const std::vector<Flag>& f) {
  if (f.empty()) return "none";
  std::vector<std::string> v;
  for (const auto& x : f) v.push_back(x.cause);
  return fmt::format("{}", fmt::join(v, ", "));
}

// ---- figures ---------------------------------------------------------------------------
// The causes' table of every architecture, one gnuplot data block per architecture.
std::string causes_data(const DepthStudy& study) {
  std::ostringstream d;
  for (const auto& a : study.archs) {
    d << "# " << a.arch.name
      << ": depth grad_first_init grad_first_trained ang_dist ang_dist_init drop_late_over_early update_cos "
         "instability spike_rate val_minus_train gain_per_param gain_per_flop var_log_q var_log_grad L_over_d "
         "drop_mean\n";
    for (const auto& r : a.results) {
      const validate::DepthCauses& c = r.causes;
      std::vector<std::string> v;
      for (double x : {static_cast<double>(r.depth), c.grad_first_init, c.grad_first_trained, c.ang_dist_mean,
                       c.ang_dist_init_mean, c.drop_late_ratio, c.update_cos_mean, c.instability, c.spike_rate, c.gap,
                       c.gain_per_param, c.gain_per_flop, c.var_log_q, c.var_log_grad, c.depth_over_width,
                       c.drop_mean})
        v.push_back(dat_num(x));
      d << fmt::format("{}", fmt::join(v, " ")) << "\n";
    }
    d << "\n\n";
  }
  return d.str();
}

// One panel per (column, label, log y): a line per architecture.
std::string cause_plots(const DepthStudy& study, const std::string& stem,
                        const std::vector<std::tuple<int, std::string, bool>>& panels, int dashed_col = 0) {
  std::ostringstream s;
  s << "set grid\nset xlabel \"depth L\"\nset logscale x 2\nset key top right\n";
  for (const auto& [colno, label, logy] : panels) {
    s << "set ylabel \"" << gp(label) << "\"\n" << (logy ? "set logscale y\n" : "unset logscale y\n");
    std::vector<std::string> p;
    for (std::size_t k = 0; k < study.archs.size(); ++k) {
      p.push_back(fmt::format("\"{}.dat\" index {} using 1:{} with linespoints pt 7 lc rgb \"{}\" title \"{}\"", stem,
                              k, logy ? fmt::format("(${0} > 0 ? ${0} : 1/0)", colno) : fmt::format("{}", colno),
                              kColors[k % 8], gp(study.archs[k].arch.name)));
      if (dashed_col > 0 && colno == 4)
        p.push_back(fmt::format("\"{}.dat\" index {} using 1:{} with lines dt 2 lc rgb \"{}\" title \"{} at init\"",
                                stem, k, dashed_col, kColors[k % 8], gp(study.archs[k].arch.name)));
    }
    s << "plot " << fmt::format("{}", fmt::join(p, ", ")) << "\n";
  }
  return s.str();
}

std::vector<Figure> study_figures(const DepthStudy& study) {
  std::vector<Figure> figs;
  const auto& archs = study.archs;
  const int lo = archs.front().results.front().depth, hi = archs.front().results.back().depth;
  {
    Figure f;
    f.stem = "loss_vs_depth";
    f.title = "Validation loss against depth";
    f.width = 900;
    f.height = 520;
    std::ostringstream d;
    // one gnuplot data block per architecture and per predicted curve, addressed by index when
    // there is more than one block
    const bool any_predicted =
        std::any_of(archs.begin(), archs.end(), [](const auto& a) { return a.predicted.has_value(); });
    const bool indexed = archs.size() > 1 || any_predicted;
    for (const auto& a : archs) {
      if (archs.size() > 1) d << "# " << a.arch.name << "\n";
      d << "# depth val_loss val_loss_se init_val_loss\n";
      for (const auto& r : a.results)
        d << r.depth << " " << dat_num(r.val.mean) << " " << dat_num(r.val.se) << " " << dat_num(r.val_init.mean)
          << "\n";
      if (indexed) d << "\n\n";
    }
    for (const auto& a : archs)
      if (a.predicted) {
        d << "# predicted " << a.arch.name << " (" << a.predicted->source << "): depth value\n";
        for (std::size_t i = 0; i < a.predicted->depth.size() && i < a.predicted->value.size(); ++i)
          d << dat_num(a.predicted->depth[i]) << " " << dat_num(a.predicted->value[i]) << "\n";
        d << "\n\n";
      }
    f.data = d.str();
    std::ostringstream s;
    s << "set title \"" << gp(f.title) << " (trained on the same text, same steps)\"\n"
      << "set xlabel \"depth L (blocks)\"\nset ylabel \"validation loss (nats per byte)\"\n"
      << "set logscale x 2\nset grid\nset key top right\nset xrange [" << 0.8 * lo << ":" << 1.25 * hi << "]\n";
    if (any_predicted) s << "set y2label \"predicted effective depth (dashed)\"\nset y2tics\n";
    std::vector<std::string> p;
    int block = 0;
    for (std::size_t k = 0; k < archs.size(); ++k) {
      const auto& a = archs[k];
      const std::string name = archs.size() > 1 ? a.arch.name + " " : std::string();
      p.push_back(fmt::format("\"{}.dat\" {}using 1:2:3 with yerrorbars pt 7 lc rgb \"{}\" title \"{}trained\"", f.stem,
                              indexed ? fmt::format("index {} ", k) : std::string(), kColors[k % 8],
                              gp(name)));
      if (a.fit)
        p.push_back(fmt::format("{:.10g} + {:.10g} * x**(-{:.10g}) with lines lc rgb \"{}\" title \"{}fit {} + {} "
                                "L^{{-{}}}\"",
                                a.fit->a, a.fit->b, a.fit->c, kColors[k % 8], gp(name), num(a.fit->a, 3),
                                num(a.fit->b, 3), num(a.fit->c, 2)));
      if (a.knee && a.knee->found)
        s << fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead dt 3 lc rgb \"{1}\"\n", a.knee->knee_depth,
                         kColors[k % 8]);
      ++block;
    }
    for (std::size_t k = 0; k < archs.size(); ++k)
      if (archs[k].predicted)
        p.push_back(fmt::format("\"{}.dat\" index {} using 1:2 axes x1y2 with lines dt 2 lc rgb \"{}\" title \"{} "
                                "predicted\"",
                                f.stem, block++, kColors[k % 8], gp(archs[k].arch.name)));
    s << "plot " << fmt::format("{}", fmt::join(p, ", ")) << "\n";
    f.script = s.str();
    std::vector<std::string> parts;
    for (const auto& a : archs) {
      if (a.fit && !a.fit->degenerate)
        parts.push_back(fmt::format("{}fit loss(L) = {} + {} L^-{}: the loss an arbitrarily deep model of this width "
                                    "would approach is {}.",
                                    archs.size() > 1 ? a.arch.name + ": " : "", num(a.fit->a), num(a.fit->b),
                                    num(a.fit->c, 3), num(a.fit->a)));
      else if (a.fit)
        parts.push_back(fmt::format("{}these losses do not follow a diminishing-returns curve a + b L^-c with a, b >= 0 "
                                    "(the fit is degenerate: too few depths or too little training); the fitted line "
                                    "is shown for reference only.",
                                    archs.size() > 1 ? a.arch.name + ": " : ""));
    }
    f.reading = fmt::format("{}", fmt::join(parts, " "));
    if (!f.reading.empty()) f.reading[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(f.reading[0])));
    figs.push_back(f);
  }
  for (const auto& a : archs) {
    const std::vector<DepthResult>& results = a.results;
    Figure f;
    f.stem = stem_for("drop_one_layer", a, study);
    f.title = fmt::format("Drop-one-layer loss increase and ang_dist per layer{}",
                          archs.size() > 1 ? " (" + a.arch.name + ")" : "");
    f.width = 1200;
    f.height = 480;
    std::ostringstream d;
    int blocks = 0;
    for (const auto& r : results) {
      if (r.depth < 2) continue;
      d << "# depth " << r.depth << ": layer/L drop drop_se ang_dist ang_dist_theory\n";
      for (int l = 1; l <= r.depth; ++l)
        d << dat_num(static_cast<double>(l) / r.depth) << " " << dat_num(r.ablation.increase[l - 1]) << " "
          << dat_num(r.ablation.increase_se[l - 1]) << " " << dat_num(col(r.trained, l, "ang_dist")) << " "
          << dat_num(r.theory ? col(*r.theory, l, "ang_dist") : NAN) << "\n";
      d << "\n\n";
      ++blocks;
    }
    f.data = d.str();
    std::ostringstream s;
    s << "set multiplot layout 1,2 title \"" << gp(f.title) << "\"\nset grid\nset xlabel \"layer l / L\"\n"
      << "set key top right\nset ylabel \"loss increase without block l (nats)\"\nset logscale y\n";
    std::vector<std::string> p1, p2;
    int b = 0;
    for (const auto& r : results) {
      if (r.depth < 2) continue;
      const char* c = kColors[b % 8];
      p1.push_back(fmt::format("\"{}.dat\" index {} using 1:($2 > 0 ? $2 : 1/0):3 with yerrorlines pt 7 lc rgb \"{}\" "
                               "title \"L = {}\"",
                               f.stem, b, c, r.depth));
      p2.push_back(fmt::format("\"{}.dat\" index {} using 1:4 with linespoints pt 7 lc rgb \"{}\" title \"L = {} "
                               "trained\", \"\" index {} using 1:5 with lines dt 2 lc rgb \"{}\" notitle",
                               f.stem, b, c, r.depth, b, c));
      ++b;
    }
    if (blocks > 0) {
      s << "plot " << fmt::format("{}", fmt::join(p1, ", ")) << "\n";
      s << "unset logscale y\nset ylabel \"ang_dist (solid: trained, dashed: theory at init)\"\n";
      s << "plot " << fmt::format("{}", fmt::join(p2, ", ")) << "\n";
    }
    s << "unset multiplot\n";
    f.script = s.str();
    if (blocks > 0) figs.push_back(f);
  }
  for (const auto& a : archs) {
    const DepthResult& r = a.results.back();
    Figure f;
    f.stem = stem_for("trained_vs_initial", a, study);
    f.title = fmt::format("Depth {}{}: initial vs trained model, per layer", r.depth,
                          archs.size() > 1 ? " (" + a.arch.name + ")" : "");
    f.width = 1200;
    f.height = 800;
    std::ostringstream d;
    const std::vector<std::string> ms = {"ang_dist", "update_ratio", "eff_rank", "grad_var_rel"};
    d << "# layer";
    for (const auto& m : ms) d << " " << m << "_init " << m << "_trained " << m << "_theory";
    d << "\n";
    for (int l = 0; l <= r.depth; ++l) {
      d << l;
      for (const auto& m : ms)
        d << " " << dat_num(col(r.initial, l, m)) << " " << dat_num(col(r.trained, l, m)) << " "
          << dat_num(r.theory ? col(*r.theory, l, m == "grad_var_rel" ? "grad_var" : m) /
                                    (m == "grad_var_rel" ? col(*r.theory, r.depth, "grad_var") : 1.0)
                              : NAN);
      d << "\n";
    }
    f.data = d.str();
    std::ostringstream s;
    s << "set multiplot layout 2,2 title \"" << gp(f.title) << "\"\nset grid\nset xlabel \"layer l\"\nset key top right\n";
    for (std::size_t k = 0; k < ms.size(); ++k) {
      const int c0 = 2 + 3 * static_cast<int>(k);
      s << "set ylabel \"" << ms[k] << "\"\n";
      s << (ms[k] == "grad_var_rel" ? "set logscale y\n" : "unset logscale y\n");
      s << fmt::format("plot \"{0}.dat\" using 1:{1} with linespoints pt 6 lc rgb \"#7f7f7f\" title \"initial\", "
                       "\"\" using 1:{2} with linespoints pt 7 lc rgb \"#1f77b4\" title \"trained\", "
                       "\"\" using 1:{3} with lines dt 2 lc rgb \"#d62728\" title \"theory\"\n",
                       f.stem, c0, c0 + 1, c0 + 2);
    }
    s << "unset multiplot\n";
    f.script = s.str();
    figs.push_back(f);
  }
  // one figure per cause
  const std::string cdata = causes_data(study);
  auto cause_fig = [&](const std::string& stem, const std::string& title, int rows, int cols,
                       const std::vector<std::tuple<int, std::string, bool>>& panels, const std::string& reading,
                       int dashed = 0) {
    Figure f;
    f.stem = stem;
    f.title = title;
    f.width = 520 * cols;
    f.height = 420 * rows;
    f.data = cdata;
    f.script = fmt::format("set multiplot layout {},{} title \"{}\"\n", rows, cols, gp(title)) +
               cause_plots(study, stem, panels, dashed) + "unset multiplot\n";
    f.reading = reading;
    figs.push_back(f);
  };
  cause_fig("cause_gradient", "Gradient attenuation: grad_var_rel at the first block", 1, 2,
            {{2, "grad_var_rel at l = 0, initial model", true}, {3, "grad_var_rel at l = 0, trained model", true}},
            "The gradient reaching the first block relative to the one at the last (MODEL.md grad_var_rel at l = 0); "
            "far from 1 means attenuation (< 1) or amplification (> 1) through depth.");
  cause_fig("cause_saturation", "Saturation and redundancy", 1, 3,
            {{4, "mean ang_dist over blocks (dashed: initial)", false},
             {6, "drop-one increase, last half / first half", false},
             {7, "cosine of consecutive blocks' updates", false}},
            "Late blocks that move the stream little (ang_dist), cost little when removed (late/early drop-one ratio "
            "well below 1) or repeat the previous block's update (cosine near 1) are redundant.",
            5);
  cause_fig("cause_optimisation", "Optimisation difficulty", 1, 2,
            {{8, "loss instability (std of step-to-step change, last half)", false},
             {9, "share of steps with a gradient-norm spike", false}},
            "Instability: the standard deviation of the train loss's step-to-step change over the last half of "
            "training. A spike: a step whose gradient norm exceeds 3x the median of the 50 steps before it.");
  cause_fig("cause_overfitting", "Overfitting: validation minus training-split loss", 1, 1,
            {{10, "validation - training loss (nats per byte)", false}},
            "Both measured on as many sequences of the same length, after training.");
  cause_fig("cause_cost", "Cost: loss gain per added parameter and per added training FLOP", 1, 2,
            {{11, "gain per added parameter (nats)", true}, {12, "gain per added training FLOP (nats)", true}},
            "FLOPs per run: 6 N D + 6 L T d D (N parameters, D = steps x batch x context training tokens; Kaplan et "
            "al. 2020).");
  {
    Figure f;
    f.stem = "cause_noise";
    f.title = "Noise accumulation: Monte Carlo spread of log q_L and log grad_var_0 against L/d";
    f.width = 1040;
    f.height = 420;
    f.data = cdata;
    std::ostringstream s;
    s << "set multiplot layout 1,2 title \"" << gp(f.title) << "\"\nset grid\nset xlabel \"L / d\"\nset key top left\n";
    for (const auto& [colno, label, k_of] :
         std::vector<std::tuple<int, std::string, int>>{{13, "Var(log q_L)", 0}, {14, "Var(log grad_var_0)", 1}}) {
      s << "set ylabel \"" << gp(label) << " over samples\"\n";
      std::vector<std::string> p;
      for (std::size_t k = 0; k < archs.size(); ++k) {
        const double kk = k_of == 0 ? archs[k].noise_k_q : archs[k].noise_k_grad;
        p.push_back(fmt::format("\"{}.dat\" index {} using 15:{} with linespoints pt 7 lc rgb \"{}\" title \"{}\"",
                                f.stem, k, colno, kColors[k % 8], gp(archs[k].arch.name)));
        if (std::isfinite(kk))
          p.push_back(fmt::format("{:.10g} * x with lines dt 2 lc rgb \"{}\" title \"{} L/d\"", kk, kColors[k % 8],
                                  num(kk, 3)));
      }
      s << "plot " << fmt::format("{}", fmt::join(p, ", ")) << "\n";
    }
    s << "unset multiplot\n";
    f.script = s.str();
    std::vector<std::string> parts;
    for (const auto& a : archs)
      if (std::isfinite(a.noise_k_q))
        parts.push_back(fmt::format("{}: Var(log q_L) ~ {} L/d, Var(log grad_var_0) ~ {} L/d", a.arch.name,
                                    num(a.noise_k_q, 3), num(a.noise_k_grad, 3)));
    f.reading = parts.empty() ? "No Monte Carlo samples were drawn (noise_samples = 0)."
                              : fmt::format("Finite-width theory (Hanin & Rolnick 2018) predicts variances growing "
                                            "like L/d; least squares through the origin: {}.",
                                            fmt::join(parts, "; "));
    figs.push_back(f);
  }
  return figs;
}

// ---- the causes' summary table (report.md and index.html) --------------------------------
std::vector<std::string> causes_header() {
  return {"arch",          "depth",          "gain ± s.e.",  "grad_var_rel block 1 init / trained",
          "ang_dist mean", "drop-one late/early", "update cosine", "loss instability",
          "spike rate",    "val − train",    "gain / param", "gain / FLOP",
          "Var log q_L",   "Var log grad_0", "flagged"};
}

std::vector<std::vector<std::string>> causes_rows(const DepthStudy& study) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : study.archs)
    for (std::size_t i = 0; i < a.results.size(); ++i) {
      const DepthResult& r = a.results[i];
      const validate::DepthCauses& c = r.causes;
      rows.push_back({a.arch.name, std::to_string(r.depth),
                      i > 0 ? fmt::format("{} ± {}", num(r.gain.mean, 3), num(r.gain.se, 2)) : std::string("—"),
                      fmt::format("{} / {}", num(c.grad_first_init, 3), num(c.grad_first_trained, 3)),
                      num(c.ang_dist_mean, 3), num(c.drop_late_ratio, 3), num(c.update_cos_mean, 3),
                      num(c.instability, 3), num(c.spike_rate, 2), num(c.gap, 3), num(c.gain_per_param, 3),
                      num(c.gain_per_flop, 3), num(c.var_log_q, 3), num(c.var_log_grad, 3),
                      flags_text(flags_at(a, i))});
    }
  return rows;
}

// ---- readings ------------------------------------------------------------------------------
std::vector<std::string> study_readings(const DepthStudy& study) {
  std::vector<std::string> readings;
  const bool many = study.archs.size() > 1;
  for (const auto& a : study.archs) {
    const std::vector<DepthResult>& results = a.results;
    const std::string who = many ? a.arch.name + ": " : "";
    std::vector<std::string> parts;
    for (std::size_t i = 1; i < results.size(); ++i)
      parts.push_back(fmt::format("{}→{}: {} ± {}", results[i - 1].depth, results[i].depth,
                                  num(results[i].gain.mean, 3), num(results[i].gain.se, 2)));
    if (!parts.empty())
      readings.push_back(fmt::format("{}Validation loss falls from {} (depth {}) to {} (depth {}); the gain of each "
                                     "step in depth, in nats per byte (± paired s.e. over the same {}): {}.",
                                     who, num(results.front().val.mean), results.front().depth,
                                     num(results.back().val.mean), results.back().depth,
                                     results.front().runs.size() >= 2 ? "seeds" : "sequences",
                                     fmt::join(parts, ", ")));
    if (a.fit)
      readings.push_back(fmt::format("{}A diminishing-returns fit loss(L) = a + b L^-c gives a = {}, b = {}, c = {} "
                                     "(residual sum of squares {}){}.",
                                     who, num(a.fit->a), num(a.fit->b), num(a.fit->c, 3), num(a.fit->rss, 2),
                                     a.fit->degenerate ? "; the fit is degenerate (c at its search bound or a, b < 0), "
                                                         "so these losses show no diminishing-returns curve"
                                                       : ""));
    if (a.knee)
      readings.push_back(a.knee->found
                             ? fmt::format("{}Measured knee: depth {} (rule: {}).", who, num(a.knee->knee_depth),
                                           a.knee->rule)
                             : fmt::format("{}No knee within the depths studied: every step in depth paid (rule: {}).",
                                           who, a.knee->rule));
    if (a.predicted) {
      const validate::PredictedCurve& pc = *a.predicted;
      std::vector<std::string> dpts;
      for (std::size_t i = 0; i < pc.depth.size() && i < pc.value.size(); ++i)
        dpts.push_back(fmt::format("{}: {}", num(pc.depth[i]), num(pc.value[i], 3)));
      readings.push_back(fmt::format("{}Predicted effective depth ({}; init-time theory of this architecture): {}; "
                                     "predicted knee: {}.",
                                     who, pc.source, fmt::join(dpts, ", "),
                                     pc.knee_depth ? fmt::format("depth {}", num(*pc.knee_depth))
                                                   : std::string("none within the depths predicted")));
      if (a.knee_per_layer) {
        const KneeResult& m = *a.knee_per_layer;
        std::string verdict;
        if (m.found && pc.knee_depth) {
          const double doublings = std::abs(std::log2(m.knee_depth / *pc.knee_depth));
          verdict = fmt::format("measured {} vs predicted {}: {} doubling{} apart, {} the goal of one doubling",
                                num(m.knee_depth), num(*pc.knee_depth), num(doublings, 2),
                                doublings == 1 ? "" : "s", doublings <= 1 + 1e-9 ? "within" : "outside");
        } else if (!m.found && !pc.knee_depth) {
          verdict = "neither the measurement nor the prediction has a knee within the depths studied";
        } else {
          verdict = fmt::format("measured: {}, predicted: {}",
                                m.found ? fmt::format("depth {}", num(m.knee_depth)) : std::string("no knee"),
                                pc.knee_depth ? fmt::format("depth {}", num(*pc.knee_depth)) : std::string("no knee"));
        }
        readings.push_back(fmt::format("{}Knee per added layer, as the prediction defines it (rule: {}): {}.", who,
                                       m.rule, verdict));
      }
    } else if (!a.predictor_problem.empty()) {
      readings.push_back(fmt::format("{}No depth-returns prediction: {}", who, a.predictor_problem));
    }
    for (const auto& c : a.pooled)
      readings.push_back(fmt::format("{}Drop-one-layer loss increase vs {} over every layer of the models of depth "
                                     ">= 2: Spearman rho = {} (p = {}, n = {}).",
                                     who, c.against, num(c.spearman.rho, 3), num(c.spearman.p, 2), c.spearman.n));
    const DepthResult& r = results.back();
    if (r.depth >= 2) {
      const int n = std::max(1, r.depth / 4);
      double early = 0, late = 0;
      for (int l = 1; l <= n; ++l) early += r.ablation.increase[l - 1], late += r.ablation.increase[r.depth - l];
      readings.push_back(fmt::format("{}In the depth-{} model, removing one of the first {} blocks costs {} nats on "
                                     "average, one of the last {} costs {}.",
                                     who, r.depth, n, num(early / n, 3), n, num(late / n, 3)));
    }
    // which cause dominates where
    std::vector<std::string> where;
    for (std::size_t i = 0; i < results.size(); ++i) {
      const std::vector<Flag> f = flags_at(a, i);
      if (f.empty()) continue;
      where.push_back(fmt::format("depth {}: {} (dominant: {}, {})", results[i].depth, flags_text(f), f.front().cause,
                                  f.front().why));
    }
    readings.push_back(where.empty() ? fmt::format("{}No cause crosses its threshold at any depth.", who)
                                     : fmt::format("{}Causes flagged: {}.", who, fmt::join(where, "; ")));
  }
  if (many) {
    std::vector<std::pair<double, std::string>> last;
    for (const auto& a : study.archs) last.push_back({a.results.back().val.mean, a.arch.name});
    std::stable_sort(last.begin(), last.end());
    std::vector<std::string> v;
    for (const auto& [loss, name] : last) v.push_back(fmt::format("{} ({})", name, num(loss)));
    readings.push_back(fmt::format("At the largest depth, from best to worst validation loss: {}.", fmt::join(v, ", ")));
    // the predictor's ordering: more predicted effective depth at the largest depth should mean a lower loss
    const bool all_predicted = std::all_of(study.archs.begin(), study.archs.end(), [](const auto& a) {
      return a.predicted && !a.predicted->value.empty() && std::isfinite(a.predicted->value.back());
    });
    if (all_predicted) {
      std::vector<std::pair<double, std::string>> eff;
      for (const auto& a : study.archs) eff.push_back({-a.predicted->value.back(), a.arch.name});
      std::stable_sort(eff.begin(), eff.end());
      std::vector<std::string> e;
      bool same = true;
      for (std::size_t i = 0; i < eff.size(); ++i) {
        e.push_back(fmt::format("{} ({})", eff[i].second, num(-eff[i].first, 3)));
        same = same && eff[i].second == last[i].second;
      }
      readings.push_back(fmt::format("By predicted effective depth at the largest depth, from most to least: {}; "
                                     "this ordering {} the measured one.",
                                     fmt::join(e, ", "), same ? "equals" : "differs from"));
    }
  }
  return readings;
}

bool was_drawn(const DrawResult& drawn, const Figure& f) {
  return std::find(drawn.drawn.begin(), drawn.drawn.end(), f.stem) != drawn.drawn.end();
}

// ---- report.md ------------------------------------------------------------------------------
std::string study_markdown(const DepthStudy& study, const std::vector<std::string>& readings,
                           const std::vector<Figure>& figs, const DrawResult& drawn) {
  const StackSpec& base = study.base;
  const validate::TrainSettings& ts = study.train;
  const int T = study.tokens_per_sequence;
  const bool many = study.archs.size() > 1;
  std::ostringstream md;
  md << "# sigprop depth study\n\n";
  md << fmt::format("Corpus `{}` ({} bytes, fnv1a64 {}); validation split measured on {} sequences of {} tokens. "
                    "Base spec: width {}, heads {}, mlp_ratio {}, norm {}, context {}; {} steps of batch {} per depth.\n\n",
                    study.corpus_path, study.corpus_bytes, study.corpus_hash, study.sequences, T, base.width,
                    base.heads, base.mlp_ratio, to_string(base.norm), T, ts.steps, ts.batch);
  if (study.seeds.size() > 1 || many) {
    std::vector<std::string> an;
    for (const auto& a : study.archs)
      an.push_back(a.arch.sets.empty() ? a.arch.name
                                       : fmt::format("{} ({})", a.arch.name, fmt::join(a.arch.sets, ", ")));
    md << fmt::format("Seeds: {}; architectures: {}. Losses are means over the seeds, gains paired by seed.\n\n",
                      fmt::join(study.seeds, ", "), fmt::join(an, "; "));
  }
  for (const auto& s : readings) md << "- " << s << "\n";
  for (const auto& a : study.archs) {
    const std::vector<DepthResult>& results = a.results;
    const std::string sfx = many ? " (" + a.arch.name + ")" : "";
    md << "\n## Loss against depth" << sfx
       << "\n\n| depth | parameters | val loss | ± s.e. | initial val loss | gain vs previous | ± "
          "paired s.e. | fit | train s |\n|---|---|---|---|---|---|---|---|---|\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const DepthResult& r = results[i];
      md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.depth, r.params, num(r.val.mean, 5),
                        num(r.val.se, 2), num(r.val_init.mean, 5), i > 0 ? num(r.gain.mean, 3) : std::string("—"),
                        i > 0 ? num(r.gain.se, 2) : std::string("—"),
                        a.fit ? num((*a.fit)(r.depth), 5) : std::string("—"), num(r.seconds, 3));
    }
    md << "\n## Rank correlations of the drop-one-layer loss increase (Spearman)" << sfx
       << "\n\n| depth | against | rho | p | n |\n|---|---|---|---|---|\n";
    for (const auto& c : a.per_depth)
      md << fmt::format("| {} | {} | {} | {} | {} |\n", c.depth, c.against, num(c.spearman.rho, 3),
                        num(c.spearman.p, 2), c.spearman.n);
    for (const auto& c : a.pooled)
      md << fmt::format("| pooled | {} | {} | {} | {} |\n", c.against, num(c.spearman.rho, 3), num(c.spearman.p, 2),
                        c.spearman.n);
    const DepthResult& r = results.back();
    md << fmt::format("\n## Depth {}{}: per layer, trained vs initial\n\n| layer | drop increase | ± s.e. | ang_dist "
                      "trained | initial | theory | update_ratio trained | initial | theory | eff_rank trained | "
                      "initial |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
                      r.depth, sfx);
    for (int l = 1; l <= r.depth; ++l)
      md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", l,
                        num(r.ablation.increase[l - 1], 3), num(r.ablation.increase_se[l - 1], 2),
                        num(col(r.trained, l, "ang_dist"), 3), num(col(r.initial, l, "ang_dist"), 3),
                        num(r.theory ? col(*r.theory, l, "ang_dist") : NAN, 3),
                        num(col(r.trained, l, "update_ratio"), 3), num(col(r.initial, l, "update_ratio"), 3),
                        num(r.theory ? col(*r.theory, l, "update_ratio") : NAN, 3),
                        num(col(r.trained, l, "eff_rank"), 3), num(col(r.initial, l, "eff_rank"), 3));
  }
  md << "\n## The causes, per depth\n\n" << kRulesText << "\n\n| " << fmt::format("{}", fmt::join(causes_header(), " | "))
     << " |\n|" << fmt::format("{}", fmt::join(std::vector<std::string>(causes_header().size(), "---"), "|")) << "|\n";
  for (const auto& row : causes_rows(study)) md << "| " << fmt::format("{}", fmt::join(row, " | ")) << " |\n";
  for (const auto& a : study.archs)
    if (!a.noise_problem.empty()) md << "\nNo Monte Carlo noise for " << a.arch.name << ": " << a.noise_problem << "\n";
  md << "\n## Figures\n\n";
  for (const auto& f : figs) {
    const bool ok = was_drawn(drawn, f);
    md << "### " << f.title << "\n\n";
    if (ok) md << "![" << f.title << "](figures/" << f.stem << ".svg)\n\n";
    if (!f.reading.empty()) md << f.reading << "\n\n";
    md << "Data `figures/" << f.stem << ".dat`, script `figures/" << f.stem << ".gp`.\n\n";
  }
  if (!drawn.problem.empty()) md << "**Figures not drawn:** " << drawn.problem << "\n\n";
  md << "Files: `study.json` (everything), `depth.csv`, `layers.csv`, `runs/` (loss.csv, checkpoints).\n";

  return md.str();
}

// ---- index.html -----------------------------------------------------------------------------
std::string study_html(const DepthStudy& study, const std::vector<std::string>& readings,
                       const std::vector<Figure>& figs, const DrawResult& drawn) {
  const fs::path& folder = study.folder;
  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>sigprop depth study</title><style>"
       "body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "figure{margin:1.5em 0}img{max-width:100%}</style></head><body>\n<h1>sigprop depth study</h1>\n<ul>";
  for (const auto& s : readings) h << "<li>" << html(s) << "</li>";
  h << "</ul>\n<h2>The causes, per depth</h2>\n<p>" << html(kRulesText) << "</p>\n<table><tr>";
  for (const auto& c : causes_header()) h << "<th>" << html(c) << "</th>";
  h << "</tr>\n";
  for (const auto& row : causes_rows(study)) {
    h << "<tr>";
    for (const auto& c : row) h << "<td>" << html(c) << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n";
  for (const auto& f : figs) {
    const bool ok = was_drawn(drawn, f);
    h << "<figure><figcaption><b>" << html(f.title) << "</b> " << html(f.reading) << "</figcaption>";
    if (ok)
      h << "<img alt=\"" << html(f.title) << "\" src=\"data:image/svg+xml;base64,"
        << base64(slurp(folder / "figures" / (f.stem + ".svg"))) << "\">";
    h << "<p>Data <a href=\"figures/" << html(f.stem) << ".dat\">" << html(f.stem) << ".dat</a>, script <a href=\"figures/"
      << html(f.stem) << ".gp\">" << html(f.stem) << ".gp</a></p></figure>\n";
  }
  if (!drawn.problem.empty()) h << "<p><b>Figures not drawn:</b> " << html(drawn.problem) << "</p>";
  h << "<p>The tables, the causes' table included, are in <a href=\"report.md\">report.md</a>, <a "
       "href=\"depth.csv\">depth.csv</a>, <a href=\"layers.csv\">layers.csv</a>, and everything in <a "
       "href=\"study.json\">study.json</a>.</p></body></html>\n";

  return h.str();
}

}  // namespace

StudyPage render_depth_study_page(const DepthStudy& study, const StudyPageOptions& opt) {
  if (study.archs.empty()) throw ConfigError("depth study: no architecture to report");
  for (const auto& a : study.archs)
    if (a.results.empty()) throw ConfigError(fmt::format("depth study: architecture {} has no depth", a.arch.name));
  const std::vector<Figure> figs = study_figures(study);
  const DrawResult drawn = draw_figures(study.folder / "figures", figs, opt.gnuplot);
  const std::vector<std::string> readings = study_readings(study);
  StudyPage page;
  page.report_md = study.folder / "report.md";
  page.index_html = study.folder / "index.html";
  write_file_atomic(page.report_md, study_markdown(study, readings, figs, drawn));
  write_file_atomic(page.index_html, study_html(study, readings, figs, drawn));
  page.figures_drawn = drawn.drawn;
  page.figures_missing = drawn.missing;
  page.gnuplot_problem = drawn.problem;
  return page;
}

}  // namespace sigprop::reports
