#include "reports/report.hpp"
#include "reports/atlas.hpp"
#include "reports/figures.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/compare.hpp"
#include "core/error.hpp"
#include "sigprop/version.hpp"
#include "theory/depth_returns.hpp"

namespace sigprop::reports {
namespace fs = std::filesystem;
namespace {

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
constexpr int kNumColors = 8;

std::string num(double x) {
  if (!std::isfinite(x)) return "n/a";
  return fmt::format("{:.3g}", x);
}
std::string csv_num(double x) {
  return std::isfinite(x) ? fmt::format("{:.17g}", x) : "";
}
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}
using figures_detail::base64;
using figures_detail::dat_num;
using figures_detail::gp;
using figures_detail::html;
using figures_detail::slurp;

const char* metric_label(const std::string& m) {
  if (m == "q") return "q = |X_l|^2 / (T d)";
  if (m == "rho") return "rho (mean token cosine)";
  if (m == "res") return "res (distance from rank one)";
  if (m == "eff_rank") return "effective rank";
  if (m == "update_ratio") return "update ratio |X_l - X_{l-1}| / |X_{l-1}|";
  if (m == "ang_dist") return "angular distance (x_{l-1}, x_l) / pi";
  if (m == "grad_var") return "grad_var = |Delta_l|^2 / (T d)";
  if (m == "sv2_mean") return "mean squared singular value of the Jacobian J_l";
  if (m == "sv2_var") return "variance of the squared singular values of J_l";
  return "";
}

/// Last-layer value of a metric; grad_var is taken at layer 0, where the backward pass ends.
int summary_layer(const std::string& m, int depth) {
  return m == "grad_var" ? 0 : depth;
}
std::string summary_name(const std::string& m) {
  return m == "grad_var" ? "grad_var at layer 0" : m + " at layer L";
}

double value(const Profile& p, int layer, const std::string& m) {
  return p.has(m) && layer >= 0 && layer < p.layers() ? p.at(layer, m) : std::nan("");
}
double se(const Profile& p, int layer, const std::string& m) {
  return p.has(m + "_se") && layer >= 0 && layer < p.layers() ? p.at(layer, m + "_se") : std::nan("");
}

/// Engines whose numbers carry a Monte Carlo standard error (drawn with error bars).
bool sampled_engine(EngineKind k) {
  return k == EngineKind::Simulate || k == EngineKind::Sde || k == EngineKind::SpectrumSimulate ||
         k == EngineKind::Measure;
}

/// How an engine other than theory and simulate is named in keys and settings lines.
std::string engine_description(const ReportConfig& cfg, EngineKind k) {
  switch (k) {
    case EngineKind::Ode: return "ode: depth-continuum limit (L → ∞)";
    case EngineKind::Sde:
      return fmt::format("sde: shaped {} SDE ({} paths, ±1 s.e.)", theory::to_string(cfg.sde.settings.model),
                         cfg.sde.settings.paths);
    case EngineKind::Spectrum: return "spectrum: Jacobian moments (d → ∞)";
    case EngineKind::SpectrumSimulate:
      return fmt::format("spectrum_simulate: Jacobian Monte Carlo ({} samples, ±1 s.e.)",
                         cfg.spectrum_simulate.settings.samples);
    case EngineKind::Measure:
      return fmt::format("measure: checkpoint {} on corpus {} ({} tokens, ±1 s.e. over sequences; its grad_var is the "
                         "loss gradient's, not compared)",
                         cfg.measure.checkpoint, cfg.measure.corpus, cfg.measure.tokens);
    case EngineKind::Clustering:
      return fmt::format("clustering: token-clustering flow to t = {} in {} steps (its rows are flow times, not "
                         "layers: tables and profiles.csv only)",
                         num(cfg.clustering.settings.t_end), cfg.clustering.settings.points);
    default: return to_string(k);
  }
}

/// The short key of an engine other than theory and simulate in figures.
std::string engine_key(const ReportConfig& cfg, EngineKind k) {
  switch (k) {
    case EngineKind::Ode: return "ode (L → ∞)";
    case EngineKind::Sde: return fmt::format("sde ({} paths)", cfg.sde.settings.paths);
    case EngineKind::Spectrum: return "spectrum (d → ∞)";
    case EngineKind::SpectrumSimulate: return fmt::format("spectrum MC ({} samples)", cfg.spectrum_simulate.settings.samples);
    case EngineKind::Measure: return "measured (checkpoint on text)";
    default: return to_string(k);
  }
}

/// gnuplot dash type and point type of the i-th extra engine (theory is solid, simulate points).
int extra_dash(size_t i) {
  return static_cast<int>(2 + i % 4);
}
int extra_point(size_t i) {
  static const int pts[] = {4, 6, 8, 10, 12};
  return pts[i % 5];
}

/// Mean ang_dist over the last ceil(L/4) layers, and a bound on its standard error
/// (the mean of the per-layer s.e.: exact when the layers are perfectly correlated,
/// conservative otherwise).
std::pair<double, double> quarter_ang(const Profile& p) {
  const int L = p.spec.depth, n = std::max(1, (L + 3) / 4);
  double s = 0, e = 0;
  int k = 0;
  for (int l = L - n + 1; l <= L; ++l) {
    s += value(p, l, "ang_dist");
    e += se(p, l, "ang_dist");
    ++k;
  }
  return {s / k, e / k};
}

struct Entry {
  const Cell* cell = nullptr;
  const Job* job = nullptr;
  Profile profile;
};

/// How cells map onto figures: a series (colour) per variant, or per value of the first
/// non-depth axis when there are no variants; a panel per combination of the other axes.
struct Layout {
  int series_axis = -1, depth_axis = -1;
  std::vector<std::string> series_labels;
  const ReportConfig* cfg = nullptr;
  explicit Layout(const ReportConfig& c) : cfg(&c) {
    for (size_t a = 0; a < c.axes.size(); ++a)
      if (c.axes[a].key == "stack.depth") depth_axis = static_cast<int>(a);
    if (!c.variants.empty()) {
      for (auto& v : c.variants) series_labels.push_back(v.label);
    } else {
      for (size_t a = 0; a < c.axes.size(); ++a)
        if (static_cast<int>(a) != depth_axis) {
          series_axis = static_cast<int>(a);
          break;
        }
      if (series_axis >= 0) {
        const auto& ax = c.axes[series_axis];
        std::string k = ax.key.substr(ax.key.find('.') + 1);
        for (auto& l : ax.labels) series_labels.push_back(k + "=" + l);
      } else {
        series_labels.push_back("base spec");
      }
    }
  }
  [[nodiscard]] int series(const Cell& c) const {
    if (c.variant >= 0) return c.variant;
    return series_axis >= 0 ? c.axis_value[series_axis] : 0;
  }
  /// Axis values that pick the panel (all axes but the series axis; optionally not depth).
  [[nodiscard]] std::vector<int> panel(const Cell& c, bool drop_depth) const {
    std::vector<int> k;
    for (size_t a = 0; a < c.axis_value.size(); ++a) {
      if (static_cast<int>(a) == series_axis || (drop_depth && static_cast<int>(a) == depth_axis)) continue;
      k.push_back(c.axis_value[a]);
    }
    return k;
  }
  [[nodiscard]] std::string panel_title(const Cell& c, bool drop_depth) const {
    std::vector<std::string> parts;
    for (size_t a = 0; a < c.axis_value.size(); ++a) {
      if (static_cast<int>(a) == series_axis || (drop_depth && static_cast<int>(a) == depth_axis)) continue;
      const auto& ax = cfg->axes[a];
      std::string k = ax.key.substr(ax.key.find('.') + 1);
      parts.push_back(k == "depth" ? "depth L = " + ax.labels[c.axis_value[a]] : k + " = " + ax.labels[c.axis_value[a]]);
    }
    return fmt::format("{}", fmt::join(parts, ", "));
  }
};


/// Decide a log axis: every finite value positive and spanning more than a factor 20.
bool wants_log(const std::vector<double>& v) {
  double lo = INFINITY, hi = 0;
  bool any = false;
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    if (x <= 0) return false;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    any = true;
  }
  return any && hi / lo > 20;
}

std::string mc_description(const ReportConfig& cfg, const std::vector<Entry>& entries) {
  for (auto& e : entries)
    if (e.job->engine == EngineKind::Simulate)
      return fmt::format("Monte Carlo (d = {}, H = {}, {} samples, ±1 s.e.)", e.job->spec.width, e.job->spec.heads,
                         cfg.simulate.samples);
  return "Monte Carlo";
}

// Figure geometry in pixels: a title strip on top, a key strip at the bottom, and a grid
// of panels placed by explicit screen margins (gnuplot's layout margins are not reliable).
constexpr int kTitlePx = 40, kKeyPx = 64, kPadLeft = 78, kPadRight = 18, kPadTop = 34, kPadBottom = 62;

std::string multiplot_header(const std::string& title) {
  return fmt::format(
      "set encoding utf8\nset datafile missing 'NaN'\nset grid lc rgb '#dddddd'\nset border lc rgb '#444444'\n"
      "set multiplot title \"{}\" font ',14'\nunset key\n",
      gp(title));
}

/// Screen margins of panel pi in a rows x cols grid on a width x height canvas.
std::string panel_box(int pi, int rows, int cols, int width, int height, int key_px = kKeyPx) {
  const double cw = static_cast<double>(width) / cols;
  const double ch = static_cast<double>(height - kTitlePx - key_px) / rows;
  const int r = pi / cols, c = pi % cols;
  const double x0 = c * cw + kPadLeft, x1 = (c + 1) * cw - kPadRight;
  const double ytop = height - kTitlePx - r * ch - kPadTop, ybot = height - kTitlePx - (r + 1) * ch + kPadBottom;
  return fmt::format(
      "set lmargin at screen {:.4f}\nset rmargin at screen {:.4f}\nset tmargin at screen {:.4f}\n"
      "set bmargin at screen {:.4f}\n",
      x0 / width, x1 / width, ytop / height, ybot / height);
}

/// The shared key: an empty plot spanning the bottom strip, one entry per series (colour)
/// and one per engine (line style), laid out horizontally. `extra` holds the keyentry plots of
/// the engines other than theory and simulate.
std::string key_strip(const std::vector<std::string>& series, bool theory, bool sim, const std::string& mc_desc,
                      int height, const std::vector<std::string>& extra = {}, int key_px = kKeyPx) {
  std::vector<std::string> e;
  for (size_t s = 0; s < series.size(); ++s)
    e.push_back(fmt::format("keyentry with {} lw 3 lc rgb '{}' title \"{}\"", theory ? "lines" : "points",
                            kColors[s % kNumColors], gp(series[s])));
  if (theory) e.push_back("keyentry with lines lw 2 lc rgb 'black' title 'theory (d → ∞)'");
  if (sim) e.push_back(fmt::format("keyentry with yerrorbars pt 7 ps 0.8 lc rgb 'black' title \"{}\"", gp(mc_desc)));
  for (auto& x : extra) e.push_back(x);
  return fmt::format(
      "set lmargin at screen 0.01\nset rmargin at screen 0.99\nset bmargin at screen 0.0\n"
      "set tmargin at screen {:.4f}\nunset border\nunset tics\nunset grid\nunset xlabel\nunset ylabel\n"
      "unset title\nunset logscale\nset xrange [0:1]\nset yrange [0:1]\n"
      "set key center center horizontal maxrows {} samplen 2.5 spacing 1.1 font ',11'\nplot NaN notitle, {}\n",
      static_cast<double>(key_px) / height, key_px > kKeyPx ? 4 : 2, fmt::join(e, ", "));
}

/// What every part of the report reads: the config, each job's cell and profile, and how
/// cells map onto figures.
struct Sweep {
  const ReportConfig& cfg;
  const std::vector<Cell>& cells;
  std::vector<Entry> entries;
  Layout lay;
  bool have_theory, have_sim;
  EngineKind ref_engine;  ///< the engine the readings quote
  std::string mc_desc;
  /// Enabled engines drawn besides theory and simulate (ode, sde, spectrum, spectrum_simulate),
  /// in job order; clustering is not drawn (its rows are flow times, not layers).
  std::vector<EngineKind> extra;

  /// Height of the key strip: two rows of entries, four when other engines add theirs.
  [[nodiscard]] int key_px() const { return extra.empty() ? kKeyPx : kKeyPx + 44; }

  /// The key entries of the extra engines (black, in their line style).
  [[nodiscard]] std::vector<std::string> extra_keys() const {
    std::vector<std::string> k;
    for (size_t i = 0; i < extra.size(); ++i)
      k.push_back(sampled_engine(extra[i])
                      ? fmt::format("keyentry with yerrorlines dt {} pt {} ps 0.8 lw 1.5 lc rgb 'black' title \"{}\"",
                                    extra_dash(i), extra_point(i), gp(engine_key(cfg, extra[i])))
                      : fmt::format("keyentry with lines dt {} lw 2 lc rgb 'black' title \"{}\"", extra_dash(i),
                                    gp(engine_key(cfg, extra[i]))));
    return k;
  }
};

/// One extra engine's series of a figure: writes its data block ("x value" or, with a standard
/// error, "x value low high") and returns the plot clause; "" when the profile lacks the metric.
std::string extra_block(const Sweep& sw, size_t i, const std::vector<std::array<double, 3>>& pts,
                        const std::string& stem, int& block, const char* col, std::ostringstream& data,
                        std::vector<double>& all, const std::string& every = "") {
  if (pts.empty()) return "";
  const bool bars = sampled_engine(sw.extra[i]);
  for (auto& p : pts) {
    if (!bars) {
      data << p[0] << " " << dat_num(p[1]) << "\n";
    } else if (std::isfinite(p[1])) {
      double d = std::isfinite(p[2]) ? p[2] : 0.0, lo = p[1] - d;
      if (p[1] > 0 && lo <= 0) lo = p[1] * 1e-3;  // keep bars drawable on a log axis
      data << p[0] << fmt::format(" {:.10g} {:.10g} {:.10g}", p[1], lo, p[1] + d) << "\n";
    } else {
      data << p[0] << " NaN NaN NaN\n";
    }
    all.push_back(p[1]);
  }
  data << "\n\n";
  if (bars)
    return fmt::format("'{}.dat' index {} {}using 1:2:3:4 with yerrorlines dt {} pt {} ps 0.55 lw 1.5 lc rgb '{}' notitle",
                       stem, block++, every, extra_dash(i), extra_point(i), col);
  return fmt::format("'{}.dat' index {} using 1:2 with lines dt {} lw 2 lc rgb '{}' notitle", stem, block++,
                     extra_dash(i), col);
}

/// The metric columns of profiles.csv and summary.csv: MODEL.md §2's, and the spectrum
/// engines' sv2_mean and sv2_var when one of them ran.
std::vector<std::string> csv_metrics(const ReportConfig& cfg) {
  std::vector<std::string> names = metric_names();
  if (cfg.spectrum.enabled || cfg.spectrum_simulate.enabled) {
    names.emplace_back("sv2_mean");
    names.emplace_back("sv2_var");
  }
  return names;
}

// ---- tidy CSV: one row per job x layer --------------------------------------------
void write_profiles_csv(const Sweep& sw, const fs::path& out) {
  const std::vector<Entry>& entries = sw.entries;
  const ReportConfig& cfg = sw.cfg;
  const auto names = csv_metrics(cfg);
  std::ostringstream o;
  o << "cell,label,variant";
  for (auto& ax : cfg.axes) o << "," << ax.key;
  o << ",engine,width,heads,samples,depth,layer";
  for (auto& m : names) o << "," << m << "," << m << "_se";
  o << "\n";
  for (auto& e : entries) {
    const Profile& p = e.profile;
    for (int l = 0; l < p.layers(); ++l) {
      o << e.cell->slug << "," << csv_field(e.cell->label) << ","
        << csv_field(e.cell->variant >= 0 ? cfg.variants[e.cell->variant].label : "");
      for (size_t a = 0; a < cfg.axes.size(); ++a) o << "," << csv_field(cfg.axes[a].labels[e.cell->axis_value[a]]);
      const EngineKind k = e.job->engine;
      const bool sim = k == EngineKind::Simulate;
      // Finite width: simulate (d, H), and the engines that sample width-d networks or points (d only).
      const bool finite = sim || k == EngineKind::Sde || k == EngineKind::SpectrumSimulate ||
                          k == EngineKind::Clustering || k == EngineKind::Measure;
      const bool infinite = k == EngineKind::Theory || k == EngineKind::Ode || k == EngineKind::Spectrum;
      std::string samples = sim ? std::to_string(cfg.simulate.samples) : "";
      if (!sim && e.job->settings.contains("samples")) samples = std::to_string(e.job->settings["samples"].get<int>());
      o << "," << to_string(k) << "," << (finite ? std::to_string(p.spec.width) : infinite ? "inf" : "") << ","
        << (sim ? std::to_string(p.spec.heads) : infinite ? "inf" : "") << "," << samples << "," << p.spec.depth << ","
        << l;
      for (auto& m : names) o << "," << csv_num(value(p, l, m)) << "," << csv_num(se(p, l, m));
      o << "\n";
    }
  }
  write_file_atomic(out / "profiles.csv", o.str());
}

// ---- summary CSV: one row per job -----------------------------------------------
void write_summary_csv(const Sweep& sw, const fs::path& out) {
  const std::vector<Entry>& entries = sw.entries;
  const auto names = csv_metrics(sw.cfg);
  std::ostringstream o;
  o << "cell,label,engine,depth";
  for (auto& m : names) o << "," << csv_field(summary_name(m)) << "," << csv_field(summary_name(m) + " se");
  o << ",ang_dist mean of last quarter,ang_dist mean of last quarter se bound\n";
  for (auto& e : entries) {
    const Profile& p = e.profile;
    o << e.cell->slug << "," << csv_field(e.cell->label) << "," << to_string(e.job->engine) << "," << p.spec.depth;
    for (auto& m : names) {
      int l = summary_layer(m, p.spec.depth);
      o << "," << csv_num(value(p, l, m)) << "," << csv_num(se(p, l, m));
    }
    auto [qa, qe] = quarter_ang(p);
    o << "," << csv_num(qa) << "," << csv_num(qe) << "\n";
  }
  write_file_atomic(out / "summary.csv", o.str());
}

// ---- per-layer figures --------------------------------------------------------------
std::vector<Figure> layer_figures(const Sweep& sw) {
  const std::vector<Entry>& entries = sw.entries;
  const std::vector<Cell>& cells = sw.cells;
  const std::string& mc_desc = sw.mc_desc;
  const EngineKind ref_engine = sw.ref_engine;
  const ReportConfig& cfg = sw.cfg;
  const Layout& lay = sw.lay;
  const bool have_theory = sw.have_theory, have_sim = sw.have_sim;
  std::vector<Figure> figures;
  std::vector<std::vector<int>> panel_keys;
  std::vector<const Cell*> panel_first;
  for (auto& c : cells) {
    auto k = lay.panel(c, false);
    if (std::find(panel_keys.begin(), panel_keys.end(), k) == panel_keys.end()) {
      panel_keys.push_back(k);
      panel_first.push_back(&c);
    }
  }
  auto find_entry = [&](int panel, int series, EngineKind eng) -> const Entry* {
    for (auto& e : entries)
      if (e.job->engine == eng && lay.series(*e.cell) == series && lay.panel(*e.cell, false) == panel_keys[panel])
        return &e;
    return nullptr;
  };
  // The panel read in the prose: the deepest one.
  int read_panel = 0;
  for (size_t pi = 0; pi < panel_first.size(); ++pi)
    if (panel_first[pi]->spec.depth > panel_first[read_panel]->spec.depth) read_panel = static_cast<int>(pi);

  const int npan = static_cast<int>(panel_keys.size());
  const int cols = std::min(3, npan), rows = (npan + cols - 1) / cols;
  const int nseries = static_cast<int>(lay.series_labels.size());
  for (const std::string& m : cfg.figures.metrics) {
    Figure f;
    f.stem = "layer_" + m;
    f.title = fmt::format("{} against layer", m);
    f.width = 1300;
    f.height = 380 * rows + kTitlePx + sw.key_px();
    std::ostringstream data, script;
    script << multiplot_header(fmt::format("{}: {}", m, metric_label(m)));
    int block = 0;
    for (int pi = 0; pi < npan; ++pi) {
      std::vector<std::string> plots;
      std::vector<double> all;
      int depth = panel_first[pi]->spec.depth;
      for (int s = 0; s < nseries; ++s) {
        const char* col = kColors[s % kNumColors];
        if (const Entry* e = find_entry(pi, s, EngineKind::Theory)) {
          data << "# panel " << pi << ", " << lay.series_labels[s] << ", theory\n";
          for (int l = 0; l < e->profile.layers(); ++l) {
            double v = value(e->profile, l, m);
            data << l << " " << dat_num(v) << "\n";
            all.push_back(v);
          }
          data << "\n\n";
          plots.push_back(
              fmt::format("'{}.dat' index {} using 1:2 with lines lw 2 lc rgb '{}' notitle", f.stem, block++, col));
        }
        if (const Entry* e = find_entry(pi, s, EngineKind::Simulate)) {
          data << "# panel " << pi << ", " << lay.series_labels[s] << ", Monte Carlo: layer mean low high\n";
          for (int l = 0; l < e->profile.layers(); ++l) {
            double v = value(e->profile, l, m), d = se(e->profile, l, m);
            if (!std::isfinite(d)) d = 0;
            double lo = v - d, hi = v + d;
            if (v > 0 && lo <= 0) lo = v * 1e-3;  // keep bars drawable on a log axis
            if (std::isfinite(v))
              data << l << " " << fmt::format("{:.10g} {:.10g} {:.10g}", v, lo, hi) << "\n";
            else
              data << l << " NaN NaN NaN\n";
            all.push_back(v);
          }
          data << "\n\n";
          int every = std::max(1, static_cast<int>(std::lround(depth / 24.0)));
          plots.push_back(fmt::format(
              "'{}.dat' index {} every {} using 1:2:3:4 with yerrorbars pt 7 ps 0.55 lw 1 lc rgb '{}' notitle", f.stem,
              block++, every, col));
        }
        for (size_t x = 0; x < sw.extra.size(); ++x) {
          const Entry* e = find_entry(pi, s, sw.extra[x]);
          if (!e || !e->profile.has(m)) continue;
          data << "# panel " << pi << ", " << lay.series_labels[s] << ", " << to_string(sw.extra[x])
               << (sampled_engine(sw.extra[x]) ? ": layer mean low high\n" : "\n");
          std::vector<std::array<double, 3>> pts;
          for (int l = 0; l < e->profile.layers(); ++l)
            pts.push_back({double(l), value(e->profile, l, m), se(e->profile, l, m)});
          const int every = std::max(1, static_cast<int>(std::lround(depth / 24.0)));
          plots.push_back(extra_block(sw, x, pts, f.stem, block, col, data, all, fmt::format("every {} ", every)));
        }
      }
      script << panel_box(pi, rows, cols, f.width, f.height, sw.key_px());
      script << fmt::format("set title \"{}\" font ',12'\n", gp(lay.panel_title(*panel_first[pi], false)));
      script << "set xlabel 'layer l'\nset ylabel \"" << gp(m) << "\"\n";
      script << fmt::format("set xrange [0:{}]\n", depth) << (depth <= 12 ? "set xtics 1\n" : "set xtics autofreq\n");
      script << (wants_log(all) ? "set logscale y\nset format y '%g'\n" : "unset logscale y\nset format y '%g'\n");
      if (plots.empty())
        script << "set label 1 'no data' at graph 0.5,0.5 center\nplot NaN notitle\nunset label 1\n";
      else
        script << "plot " << fmt::format("{}", fmt::join(plots, ", \\\n     ")) << "\n";
    }
    script << key_strip(lay.series_labels, have_theory, have_sim, mc_desc, f.height, sw.extra_keys(), sw.key_px())
           << "unset multiplot\n";
    f.data = data.str();
    f.script = script.str();

    // Reading, from the numbers of the deepest panel, quoting the reference engine or, for a metric
    // it does not produce (sv2_mean), the first engine that does.
    auto engine_has = [&](EngineKind k) {
      return std::any_of(entries.begin(), entries.end(),
                         [&](const Entry& e) { return e.job->engine == k && e.profile.has(m); });
    };
    EngineKind read_engine = ref_engine;
    if (!engine_has(read_engine))
      for (EngineKind k : all_engine_kinds())
        if (k != EngineKind::Clustering && engine_has(k)) {
          read_engine = k;
          break;
        }
    std::ostringstream r;
    const int L = panel_first[read_panel]->spec.depth;
    // Gradients travel backwards: read grad_var from the top (where Delta_L enters) down to layer 0.
    const bool backward = m == "grad_var";
    const int l0 = backward ? L : (m == "update_ratio" || m == "ang_dist") ? 1 : 0, l1 = backward ? 0 : L;
    std::string where = lay.panel_title(*panel_first[read_panel], false);
    r << (where.empty() ? "" : "At " + where + ", ")
      << fmt::format("{} from layer {} {} layer {} ({}): ", m, l0, backward ? "back to" : "to", l1,
                     to_string(read_engine));
    std::vector<std::string> parts;
    double best = -INFINITY, worst = INFINITY;
    std::string best_s, worst_s;
    for (int s = 0; s < nseries; ++s) {
      const Entry* e = find_entry(read_panel, s, read_engine);
      if (!e) continue;
      double a = value(e->profile, l0, m), b = value(e->profile, l1, m);
      std::string part = fmt::format("{} {} → {}", lay.series_labels[s], num(a), num(b));
      if (std::isfinite(a) && std::isfinite(b) && a != 0 && b / a > 0) part += fmt::format(" (×{})", num(b / a));
      parts.push_back(part);
      if (std::isfinite(b) && b > best) best = b, best_s = lay.series_labels[s];
      if (std::isfinite(b) && b < worst) worst = b, worst_s = lay.series_labels[s];
    }
    r << fmt::format("{}", fmt::join(parts, "; ")) << ".";
    if (nseries > 1 && !best_s.empty() && best_s != worst_s)
      r << fmt::format(" At layer {} it is largest for {} ({}) and smallest for {} ({}).", l1, best_s, num(best),
                       worst_s, num(worst));
    if (have_theory && have_sim) {
      int within = 0, count = 0;
      double worst_rel = 0;
      std::string worst_at;
      for (int pi = 0; pi < npan; ++pi)
        for (int s = 0; s < nseries; ++s) {
          const Entry* t = find_entry(pi, s, EngineKind::Theory);
          const Entry* mc = find_entry(pi, s, EngineKind::Simulate);
          if (!t || !mc) continue;
          for (const LayerDiff& d : compare(mc->profile, t->profile, m)) {
            ++count;
            if (std::abs(d.z) <= 3) ++within;
            double rel = std::abs(d.diff) / std::max(std::abs(d.b), 1e-12);
            if (rel > worst_rel) {
              worst_rel = rel;
              worst_at = fmt::format("{}, {}, layer {}", lay.series_labels[s], lay.panel_title(*panel_first[pi], false),
                                     d.layer);
            }
          }
        }
      if (count > 0)
        r << fmt::format(
            " Monte Carlo against theory: within 3 s.e. on {} of {} layer values ({:.0f}%); largest relative gap "
            "{:.1f}% ({}). Gaps beyond the error bars are finite-width effects (they grow like depth/width).",
            within, count, 100.0 * within / count, 100 * worst_rel, worst_at);
    }
    // Every other engine against theory (for sv2_mean, sv2_var: against the spectrum theory): z
    // within 3 standard errors where the engine has them, and the largest relative gap.
    const EngineKind cmp_ref = engine_has(EngineKind::Theory) ? EngineKind::Theory : EngineKind::Spectrum;
    for (size_t x = 0; engine_has(cmp_ref) && x < sw.extra.size(); ++x) {
      if (sw.extra[x] == cmp_ref) continue;
      // A measured grad_var starts from the loss gradient, the theory's from iid Delta_L (validate's rule).
      if (sw.extra[x] == EngineKind::Measure && m == "grad_var") continue;
      int within = 0, count = 0, with_se = 0;
      double worst_rel = 0;
      std::string worst_at;
      for (int pi = 0; pi < npan; ++pi)
        for (int s = 0; s < nseries; ++s) {
          const Entry* t = find_entry(pi, s, cmp_ref);
          const Entry* o = find_entry(pi, s, sw.extra[x]);
          if (!t || !o) continue;
          for (const LayerDiff& d : compare(o->profile, t->profile, m)) {
            ++count;
            if (std::isfinite(d.se_a)) {
              ++with_se;
              if (std::abs(d.z) <= 3) ++within;
            }
            double rel = std::abs(d.diff) / std::max(std::abs(d.b), 1e-12);
            if (rel > worst_rel || worst_at.empty()) {
              worst_rel = std::max(rel, worst_rel);
              worst_at = fmt::format("{}, {}, layer {}", lay.series_labels[s], lay.panel_title(*panel_first[pi], false),
                                     d.layer);
            }
          }
        }
      if (count == 0) continue;
      r << " " << to_string(sw.extra[x]) << " against " << to_string(cmp_ref) << ":";
      if (with_se > 0)
        r << fmt::format(" within 3 s.e. on {} of {} layer values ({:.0f}%);", within, with_se, 100.0 * within / with_se);
      r << fmt::format(" largest relative gap {:.3g}% ({}).", 100 * worst_rel, worst_at);
    }
    f.reading = r.str();
    figures.push_back(std::move(f));
  }
  return figures;
}

// ---- depth-returns figures -------------------------------------------------------------
/// Puts the depth-returns figures in front of figures; returns why they are left out ("" when they are not).
std::string add_depth_returns_figures(const Sweep& sw, std::vector<Figure>& figures) {
  const std::vector<Entry>& entries = sw.entries;
  const std::vector<Cell>& cells = sw.cells;
  const std::string& mc_desc = sw.mc_desc;
  const EngineKind ref_engine = sw.ref_engine;
  const ReportConfig& cfg = sw.cfg;
  const Layout& lay = sw.lay;
  const bool have_theory = sw.have_theory, have_sim = sw.have_sim;
  const int nseries = static_cast<int>(lay.series_labels.size());
  std::string depth_note;
  const bool depth_swept = lay.depth_axis >= 0 && cfg.axes[lay.depth_axis].values.size() >= 2;
  if (cfg.figures.depth_returns && !depth_swept)
    depth_note = "The depth-returns figure needs stack.depth as a sweep axis with at least two values; it is left out.";
  if (cfg.figures.depth_returns && depth_swept) {
    std::vector<std::vector<int>> groups;
    std::vector<const Cell*> group_first;
    for (auto& c : cells) {
      auto k = lay.panel(c, true);
      if (std::find(groups.begin(), groups.end(), k) == groups.end()) {
        groups.push_back(k);
        group_first.push_back(&c);
      }
    }
    std::vector<std::string> quantities = cfg.figures.metrics;
    quantities.push_back("ang_dist_quarter");
    quantities.push_back("effective_depth");
    const int nq = static_cast<int>(quantities.size());
    const int qcols = std::min(3, nq), qrows = (nq + qcols - 1) / qcols;
    for (size_t g = 0; g < groups.size(); ++g) {
      Figure f;
      std::string gtitle = lay.panel_title(*group_first[g], true);
      f.stem = groups.size() == 1 ? "depth_returns" : fmt::format("depth_returns_{}", g + 1);
      f.title = "Depth returns" + (gtitle.empty() ? "" : " (" + gtitle + ")");
      f.width = 1300;
      f.height = 340 * qrows + kTitlePx + sw.key_px();
      std::ostringstream data, script;
      script << multiplot_header("Returns of depth: each metric at the end of the stack against depth L" +
                                 (gtitle.empty() ? "" : ", " + gtitle));
      // Per series and engine: (depth, value, se) sorted by depth.
      auto collect = [&](int s, EngineKind eng, const std::string& q) {
        std::vector<std::array<double, 3>> pts;
        for (auto& e : entries) {
          if (e.job->engine != eng || lay.series(*e.cell) != s || lay.panel(*e.cell, true) != groups[g]) continue;
          const Profile& p = e.profile;
          if (!p.has(q == "ang_dist_quarter" || q == "effective_depth" ? std::string("ang_dist") : q)) continue;
          if (q == "ang_dist_quarter") {
            auto [a, b] = quarter_ang(p);
            pts.push_back({double(p.spec.depth), a, b});
          } else if (q == "effective_depth") {  // docs/theory.md "Depth returns"; no se
            pts.push_back({double(p.spec.depth), theory::effective_depth(p.series("ang_dist")), std::nan("")});
          } else {
            int l = summary_layer(q, p.spec.depth);
            pts.push_back({double(p.spec.depth), value(p, l, q), se(p, l, q)});
          }
        }
        std::sort(pts.begin(), pts.end());
        return pts;
      };
      int block = 0;
      std::string xtics;
      {
        std::vector<std::string> t;
        for (auto& lab : cfg.axes[lay.depth_axis].labels) t.push_back(lab);
        xtics = fmt::format("set xtics ({})\n", fmt::join(t, ", "));
      }
      for (int qi = 0; qi < nq; ++qi) {
        const std::string& q = quantities[qi];
        std::vector<std::string> plots;
        std::vector<double> all;
        for (int s = 0; s < nseries; ++s) {
          const char* col = kColors[s % kNumColors];
          if (have_theory) {
            auto pts = collect(s, EngineKind::Theory, q);
            if (!pts.empty()) {
              for (auto& p : pts) {
                data << p[0] << " " << dat_num(p[1]) << "\n";
                all.push_back(p[1]);
              }
              data << "\n\n";
              plots.push_back(fmt::format("'{}.dat' index {} using 1:2 with linespoints lw 2 pt 6 lc rgb '{}' notitle",
                                          f.stem, block++, col));
            }
          }
          if (have_sim) {
            auto pts = collect(s, EngineKind::Simulate, q);
            if (!pts.empty()) {
              for (auto& p : pts) {
                double d = std::isfinite(p[2]) ? p[2] : 0.0, lo = p[1] - d;
                if (p[1] > 0 && lo <= 0) lo = p[1] * 1e-3;
                if (std::isfinite(p[1]))
                  data << p[0] << fmt::format(" {:.10g} {:.10g} {:.10g}", p[1], lo, p[1] + d) << "\n";
                else
                  data << p[0] << " NaN NaN NaN\n";
                all.push_back(p[1]);
              }
              data << "\n\n";
              plots.push_back(fmt::format("'{}.dat' index {} using 1:2:3:4 with yerrorbars pt 7 ps 0.8 lc rgb '{}' notitle",
                                          f.stem, block++, col));
            }
          }
          for (size_t x = 0; x < sw.extra.size(); ++x) {
            std::string clause = extra_block(sw, x, collect(s, sw.extra[x], q), f.stem, block, col, data, all);
            if (!clause.empty()) plots.push_back(clause);
          }
        }
        script << panel_box(qi, qrows, qcols, f.width, f.height, sw.key_px());
        std::string qt = q == "ang_dist_quarter"  ? "mean ang_dist over the last quarter of layers"
                         : q == "effective_depth" ? "effective depth: sum of ang_dist_l / max_k ang_dist_k"
                                                  : summary_name(q);
        script << fmt::format("set title \"{}\" font ',12'\nset xlabel 'depth L'\nset ylabel \"{}\"\n", gp(qt),
                              gp(q == "ang_dist_quarter" ? "ang_dist" : q == "effective_depth" ? "layers" : q));
        script << "set logscale x\n" << xtics;
        script << (wants_log(all) ? "set logscale y\nset format y '%g'\n" : "unset logscale y\nset format y '%g'\n");
        if (plots.empty())
          script << "set label 1 'no data' at graph 0.5,0.5 center\nplot NaN notitle\nunset label 1\n";
        else
          script << "plot " << fmt::format("{}", fmt::join(plots, ", \\\n     ")) << "\n";
        script << "unset xtics\nset xtics\n";
      }
      script << key_strip(lay.series_labels, have_theory, have_sim, mc_desc, f.height, sw.extra_keys(), sw.key_px())
             << "unset multiplot\n";
      f.data = data.str();
      f.script = script.str();

      // Reading: how much the last quarter of layers still moves, shallow against deep.
      std::ostringstream r;
      const auto& dl = cfg.axes[lay.depth_axis];
      std::vector<std::pair<double, std::string>> ratios;
      std::vector<std::string> parts;
      for (int s = 0; s < nseries; ++s) {
        auto pts = collect(s, ref_engine, "ang_dist_quarter");
        if (pts.size() < 2) continue;
        double a = pts.front()[1], b = pts.back()[1];
        parts.push_back(fmt::format("{} {} → {}", lay.series_labels[s], num(a), num(b)));
        if (std::isfinite(a) && std::isfinite(b) && b > 0) ratios.emplace_back(a / b, lay.series_labels[s]);
      }
      r << fmt::format("Mean angular distance moved by each of the last quarter of layers ({}), from depth {} to depth "
                       "{}: {}.",
                       to_string(ref_engine), dl.labels.front(), dl.labels.back(), fmt::join(parts, "; "));
      if (!ratios.empty()) {
        std::sort(ratios.begin(), ratios.end());
        const auto& hi = ratios.back();
        const auto& lo = ratios.front();
        r << fmt::format(" With {} times more layers, a late layer of {} changes the residual stream {} times less",
                         num(std::stod(dl.labels.back()) / std::stod(dl.labels.front())), hi.second, num(hi.first));
        if (ratios.size() > 1)
          r << fmt::format("; for {} the factor is {}", lo.second, num(lo.first));
        r << ". A factor well above 1 means the added layers sit close to the identity: depth gives diminishing "
             "returns.";
      }
      // Within the deepest stack: does a late layer still do as much as an early one?
      std::vector<std::string> eparts;
      for (int s = 0; s < nseries; ++s) {
        const Entry* deep = nullptr;
        for (auto& e : entries)
          if (e.job->engine == ref_engine && lay.series(*e.cell) == s && lay.panel(*e.cell, true) == groups[g] &&
              (!deep || e.profile.spec.depth > deep->profile.spec.depth))
            deep = &e;
        if (!deep) continue;
        const Profile& p = deep->profile;
        const int L = p.spec.depth, n = std::max(1, (L + 3) / 4);
        double early = 0;
        for (int l = 1; l <= n; ++l) early += value(p, l, "ang_dist");
        early /= n;
        double late = quarter_ang(p).first;
        if (std::isfinite(early) && std::isfinite(late) && late > 0)
          eparts.push_back(fmt::format("{} {}", lay.series_labels[s], num(early / late)));
      }
      if (!eparts.empty())
        r << fmt::format(" Inside the depth-{} stack, mean ang_dist of the first quarter of layers over that of the "
                         "last quarter (1 = every layer works alike): {}.",
                         dl.labels.back(), fmt::join(eparts, "; "));
      // Gradient reaching the input.
      std::vector<std::string> gparts;
      for (int s = 0; s < nseries; ++s) {
        auto pts = collect(s, ref_engine, "grad_var");
        if (pts.size() < 2) continue;
        gparts.push_back(fmt::format("{} {} → {}", lay.series_labels[s], num(pts.front()[1]), num(pts.back()[1])));
      }
      if (!gparts.empty() && std::find(quantities.begin(), quantities.end(), "grad_var") != quantities.end())
        r << fmt::format(" grad_var at layer 0 (the gradient that reaches the input), depth {} → {}: {}.",
                         dl.labels.front(), dl.labels.back(), fmt::join(gparts, "; "));
      // The predictor of docs/theory.md "Depth returns": effective depth over the swept depths and
      // the knee of the deepest theory stack (from its profile extra, or from its ang_dist).
      std::vector<std::string> dparts, kparts;
      for (int s = 0; s < nseries; ++s) {
        auto pts = collect(s, ref_engine, "effective_depth");
        if (pts.size() >= 2)
          dparts.push_back(fmt::format("{} {} of {} → {} of {}", lay.series_labels[s], num(pts.front()[1]),
                                       num(pts.front()[0]), num(pts.back()[1]), num(pts.back()[0])));
        const Entry* deep = nullptr;
        for (auto& e : entries)
          if (e.job->engine == EngineKind::Theory && lay.series(*e.cell) == s &&
              lay.panel(*e.cell, true) == groups[g] && (!deep || e.profile.spec.depth > deep->profile.spec.depth))
            deep = &e;
        if (!deep) continue;
        const Profile& p = deep->profile;
        if (p.extras.contains("depth_returns")) {
          const auto& kd = p.extras["depth_returns"]["knee_depth"];
          kparts.push_back(fmt::format("{} {}", lay.series_labels[s],
                                       kd.is_null() ? fmt::format("none up to depth {}", p.spec.depth)
                                                    : fmt::format("depth {}", kd.get<int>())));
        } else if (theory::depth_independent(p.spec)) {
          const theory::DepthReturns dr = theory::depth_returns(p);
          kparts.push_back(fmt::format("{} {}", lay.series_labels[s],
                                       dr.knee.found ? fmt::format("depth {}", dr.knee.knee_depth)
                                                     : fmt::format("none up to depth {}", p.spec.depth)));
        }
      }
      if (!dparts.empty())
        r << fmt::format(" Effective depth (layers that move the stream as much as the strongest one; {}): {}.",
                         to_string(ref_engine), fmt::join(dparts, "; "));
      if (!kparts.empty())
        r << fmt::format(" Predicted knee (theory; the last depth before the first doubling whose added layers "
                         "each return less than a quarter of the first doubling's, docs/theory.md \"Depth "
                         "returns\"): {}.",
                         fmt::join(kparts, "; "));
      f.reading = r.str();
      figures.insert(figures.begin() + static_cast<long>(g), std::move(f));
    }
  }
  return depth_note;
}

// ---- tables shared by HTML and Markdown ------------------------------------------------
struct Row {
  std::vector<std::string> cells;
};
struct Tables {
  std::vector<std::string> head;
  std::vector<Row> rows;
  std::vector<std::string> warnings;
  std::string settings_line, config_text;
  /// Engines side by side (only when an engine other than theory and simulate ran): a row per
  /// cell, a column group per engine holding the summary metrics it produces.
  std::vector<std::string> side_head;
  std::vector<Row> side_rows;
};

Tables report_tables(const Sweep& sw) {
  const std::vector<Entry>& entries = sw.entries;
  const std::vector<Cell>& cells = sw.cells;
  const ReportConfig& cfg = sw.cfg;
  const bool have_theory = sw.have_theory, have_sim = sw.have_sim;
  std::vector<std::string> head{"cell", "engine"};
  std::vector<std::string> summ = cfg.figures.metrics;
  for (auto& m : summ) head.push_back(summary_name(m));
  head.push_back("mean ang_dist, last quarter");
  std::vector<Row> rows_out;
  for (auto& e : entries) {
    Row r;
    r.cells.push_back(e.cell->label);
    const EngineKind k = e.job->engine;
    r.cells.push_back(k == EngineKind::Theory     ? std::string("theory")
                      : k == EngineKind::Simulate ? fmt::format("MC d={}", e.job->spec.width)
                                                  : to_string(k));
    // A metric the engine does not produce is left empty (not zero, not n/a).
    for (auto& m : summ) {
      int l = summary_layer(m, e.profile.spec.depth);
      double v = value(e.profile, l, m), d = se(e.profile, l, m);
      r.cells.push_back(!e.profile.has(m)                       ? std::string()
                        : std::isfinite(d) && sampled_engine(k) ? num(v) + " ± " + num(d)
                                                                : num(v));
    }
    auto [qa, qe] = quarter_ang(e.profile);
    r.cells.push_back(!e.profile.has("ang_dist")               ? std::string()
                      : std::isfinite(qe) && sampled_engine(k) ? num(qa) + " ± " + num(qe)
                                                               : num(qa));
    rows_out.push_back(std::move(r));
  }
  std::vector<std::string> warnings;
  for (auto& e : entries)
    for (auto& w : e.profile.warnings) warnings.push_back(fmt::format("{} ({}): {}", e.cell->label, to_string(e.job->engine), w));

  std::string settings_line;
  {
    const StackSpec& b = cells.front().spec;
    std::vector<std::string> s;
    const int nengines = enabled_engines(cfg);
    s.push_back(fmt::format("{} cells × {} engine{}", cells.size(), nengines, nengines > 1 ? "s" : ""));
    s.push_back(fmt::format("T = {} tokens, {} blocks, {}, activation {}, mask {}, qk_scale {}, sigma_w2 = {}",
                            b.tokens, to_string(b.blocks), to_string(b.norm_type), to_string(b.activation),
                            to_string(b.mask), to_string(b.qk_scale), num(b.sigma_w2)));
    if (have_theory)
      s.push_back(fmt::format("theory: d → ∞ (softmax integral: {} draws, seed {})", cfg.theory.settings.attn.samples,
                              cfg.theory.settings.attn.seed));
    if (have_sim)
      s.push_back(fmt::format("Monte Carlo: width d = {}, H = {}, {} samples per cell, seed {}, backend {} ({})",
                              cfg.simulate.width > 0 ? cfg.simulate.width : b.width,
                              cfg.simulate.heads > 0 ? cfg.simulate.heads : b.heads, cfg.simulate.samples,
                              cfg.simulate.seed, cfg.simulate.backend, cfg.simulate.precision));
    for (EngineKind k : all_engine_kinds())
      if (k != EngineKind::Theory && k != EngineKind::Simulate && engine_enabled(cfg, k))
        s.push_back(engine_description(cfg, k));
    settings_line = fmt::format("{}", fmt::join(s, "; "));
  }
  const std::string config_text = to_toml(cfg);
  Tables t{head, rows_out, warnings, settings_line, config_text, {}, {}};
  bool others = false;
  for (EngineKind k : all_engine_kinds())
    others |= k != EngineKind::Theory && k != EngineKind::Simulate && engine_enabled(cfg, k);
  if (others) {
    // Columns: per engine (job order), each summary metric some profile of that engine has.
    std::vector<std::pair<EngineKind, std::string>> cols;
    for (EngineKind k : all_engine_kinds()) {
      if (!engine_enabled(cfg, k)) continue;
      for (auto& m : summ)
        if (std::any_of(entries.begin(), entries.end(),
                        [&](const Entry& e) { return e.job->engine == k && e.profile.has(m); }))
          cols.emplace_back(k, m);
    }
    t.side_head.push_back("cell");
    for (auto& [k, m] : cols) t.side_head.push_back(fmt::format("{}: {}", to_string(k), summary_name(m)));
    for (const Cell& c : cells) {
      Row r;
      r.cells.push_back(c.label);
      for (auto& [k, m] : cols) {
        const Entry* e = nullptr;
        for (auto& x : entries)
          if (x.cell == &c && x.job->engine == k) e = &x;
        if (!e || !e->profile.has(m)) {
          r.cells.emplace_back();
          continue;
        }
        int l = summary_layer(m, e->profile.spec.depth);
        double v = value(e->profile, l, m), d = se(e->profile, l, m);
        r.cells.push_back(std::isfinite(d) && sampled_engine(k) ? num(v) + " ± " + num(d) : num(v));
      }
      t.side_rows.push_back(std::move(r));
    }
  }
  return t;
}

// ---- index.html ------------------------------------------------------------------------
std::string html_page(const Sweep& sw, const Tables& t, const std::vector<Figure>& figures,
                      const std::string& depth_note, const RenderResult& res, const std::string& gnuplot_version,
                      const fs::path& figdir, const std::string& notice) {
  const std::vector<Entry>& entries = sw.entries;
  const ReportConfig& cfg = sw.cfg;
  const auto& head = t.head;
  const auto& rows_out = t.rows;
  const auto& warnings = t.warnings;
  const std::string& settings_line = t.settings_line;
  const std::string& config_text = t.config_text;
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << html(cfg.title)
    << "</title>\n<style>\n"
       "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:"
       "1320px;padding:1.2em 2em;color:#222;line-height:1.45}\n"
       "h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\n"
       ".meta{color:#555;font-size:.92em}figure{margin:1em 0}figure img{width:100%;height:auto;border:1px solid "
       "#e4e4e4}\n"
       "figcaption{font-size:.95em;margin-top:.3em}.reading{background:#f5f8fc;border-left:4px solid "
       "#1f77b4;padding:.5em .9em;margin:.6em 0}\n"
       "table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em "
       ".55em;text-align:right}th{background:#f0f0f0}th:first-child,th:nth-child(2){text-align:left}td:first-child,td:nth-child(2){text-align:left}\n"
       ".missing{background:#fff4e5;border-left:4px solid #e67e22;padding:.5em .9em}pre{background:#f7f7f7;padding:"
       ".8em;overflow-x:auto;font-size:.85em}\n.warn{color:#a33}\n"
       "</style>\n</head>\n<body>\n";
  h << "<h1>" << html(cfg.title) << "</h1>\n<p class=\"meta\">" << html(settings_line) << ". sigprop "
    << html(kVersion) << ". Metrics as defined in MODEL.md §2; figures also as <code>figures/*.svg</code> and "
    << "<code>*.png</code>, numbers in <a href=\"profiles.csv\">profiles.csv</a> (a row per cell × layer) and "
    << "<a href=\"summary.csv\">summary.csv</a>.</p>\n";
  if (!notice.empty()) h << "<p class=\"missing\"><b>" << html(notice) << "</b></p>\n";
  if (!res.figures_missing.empty()) {
    h << "<p class=\"missing\"><b>Figures not drawn:</b> " << html(res.gnuplot_problem) << ". Missing: ";
    for (size_t i = 0; i < res.figures_missing.size(); ++i)
      h << (i ? ", " : "") << "<code>" << html(res.figures_missing[i]) << "</code>";
    h << ". Their data and gnuplot scripts are in <code>figures/</code> (<code>.dat</code>, <code>.gp</code>); the "
         "tables below are complete.</p>\n";
  }
  if (!depth_note.empty()) h << "<p class=\"missing\">" << html(depth_note) << "</p>\n";
  for (auto& f : figures) {
    h << "<h2>" << html(f.title) << "</h2>\n";
    bool drawn = std::find(res.figures_drawn.begin(), res.figures_drawn.end(), f.stem) != res.figures_drawn.end();
    if (drawn) {
      h << "<figure><img alt=\"" << html(f.title) << "\" src=\"data:image/svg+xml;base64,"
        << base64(slurp(figdir / (f.stem + ".svg"))) << "\">\n<figcaption>Files: <a href=\"figures/" << html(f.stem)
        << ".svg\">SVG</a> · <a href=\"figures/" << html(f.stem) << ".png\">PNG</a> · <a href=\"figures/"
        << html(f.stem) << ".dat\">data</a> · <a href=\"figures/" << html(f.stem)
        << ".gp\">gnuplot script</a></figcaption></figure>\n";
    } else {
      h << "<p class=\"missing\">Figure <code>" << html(f.stem) << "</code> could not be drawn ("
        << html(res.gnuplot_problem) << "). Data: <a href=\"figures/" << html(f.stem) << ".dat\">" << html(f.stem)
        << ".dat</a>, script: <a href=\"figures/" << html(f.stem) << ".gp\">" << html(f.stem) << ".gp</a>.</p>\n";
    }
    h << "<p class=\"reading\">" << html(f.reading) << "</p>\n";
  }
  h << "<h2>Summary per cell</h2>\n<p class=\"meta\">Values at the last layer L (grad_var at layer 0, where the "
       "backward pass arrives). Monte Carlo entries are mean ± 1 standard error over samples; for the last-quarter "
       "mean the ± is a bound (mean of the per-layer s.e.).</p>\n<table>\n<tr>";
  for (auto& c : head) h << "<th>" << html(c) << "</th>";
  h << "</tr>\n";
  for (auto& r : rows_out) {
    h << "<tr>";
    for (auto& c : r.cells) h << "<td>" << html(c) << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n";
  if (!t.side_head.empty()) {
    h << "<h2>Engines side by side</h2>\n<p class=\"meta\">A column group per engine, with the metrics it "
         "produces (clustering: at the flow's last time).</p>\n<table>\n<tr>";
    for (auto& c : t.side_head) h << "<th>" << html(c) << "</th>";
    h << "</tr>\n";
    for (auto& r : t.side_rows) {
      h << "<tr>";
      for (auto& c : r.cells) h << "<td>" << html(c) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n";
  }
  if (!warnings.empty()) {
    h << "<h2>Warnings from the engines</h2>\n<ul>\n";
    for (auto& w : warnings) h << "<li class=\"warn\">" << html(w) << "</li>\n";
    h << "</ul>\n";
  }
  h << "<h2>Cells</h2>\n<p class=\"meta\">One profile per cell and engine (JSON and CSV), named by the cell; a "
       "cell is recomputed only when the hash of its resolved spec and engine settings changes.</p>\n<table>\n"
       "<tr><th>cell</th><th>engine</th><th>hash</th><th>files</th></tr>\n";
  for (auto& e : entries)
    h << "<tr><td>" << html(e.cell->label) << "</td><td>" << to_string(e.job->engine) << "</td><td><code>"
      << e.job->hash << "</code></td><td><a href=\"" << html(e.job->json.generic_string()) << "\">JSON</a> · <a href=\""
      << html(e.job->csv.generic_string()) << "\">CSV</a></td></tr>\n";
  h << "</table>\n<h2>Exact config</h2>\n<p class=\"meta\">Also in <a href=\"config.toml\">config.toml</a>; "
       "versions in <a href=\"versions.json\">versions.json</a>";
  if (!gnuplot_version.empty()) h << "; figures drawn with " << html(gnuplot_version);
  h << ".</p>\n<pre>" << html(config_text) << "</pre>\n</body>\n</html>\n";
  return h.str();
}

// ---- report.md ------------------------------------------------------------------------------
std::string markdown_page(const Sweep& sw, const Tables& t, const std::vector<Figure>& figures,
                          const std::string& depth_note, const RenderResult& res, const std::string& notice) {
  const ReportConfig& cfg = sw.cfg;
  const auto& head = t.head;
  const auto& rows_out = t.rows;
  const auto& warnings = t.warnings;
  const std::string& settings_line = t.settings_line;
  const std::string& config_text = t.config_text;
  std::ostringstream md;
  md << "# " << cfg.title << "\n\n" << settings_line << ". sigprop " << kVersion
     << ". Numbers: `profiles.csv` (a row per cell × layer), `summary.csv`.\n\n";
  if (!notice.empty()) md << "**" << notice << "**\n\n";
  if (!res.figures_missing.empty())
    md << "**Figures not drawn:** " << res.gnuplot_problem << ". Missing: " << fmt::format("{}", fmt::join(res.figures_missing, ", "))
       << ". Data and scripts are in `figures/`.\n\n";
  if (!depth_note.empty()) md << depth_note << "\n\n";
  for (auto& f : figures) {
    md << "## " << f.title << "\n\n";
    if (std::find(res.figures_drawn.begin(), res.figures_drawn.end(), f.stem) != res.figures_drawn.end())
      md << "![" << f.title << "](figures/" << f.stem << ".png)\n\n";
    md << f.reading << "\n\n";
  }
  md << "## Summary per cell\n\nLast layer L (grad_var at layer 0); Monte Carlo: mean ± 1 s.e.\n\n|";
  for (auto& c : head) md << " " << c << " |";
  md << "\n|";
  for (size_t i = 0; i < head.size(); ++i) md << (i < 2 ? "---|" : "---:|");
  md << "\n";
  for (auto& r : rows_out) {
    md << "|";
    for (auto& c : r.cells) md << " " << c << " |";
    md << "\n";
  }
  if (!t.side_head.empty()) {
    md << "\n## Engines side by side\n\nA column group per engine, with the metrics it produces (clustering: at the "
          "flow's last time).\n\n|";
    for (auto& c : t.side_head) md << " " << c << " |";
    md << "\n|";
    for (size_t i = 0; i < t.side_head.size(); ++i) md << (i < 1 ? "---|" : "---:|");
    md << "\n";
    for (auto& r : t.side_rows) {
      md << "|";
      for (auto& c : r.cells) md << " " << c << " |";
      md << "\n";
    }
  }
  if (!warnings.empty()) {
    md << "\n## Warnings from the engines\n\n";
    for (auto& w : warnings) md << "- " << w << "\n";
  }
  md << "\n## Exact config\n\n```toml\n" << config_text << "```\n";
  return md.str();
}

}  // namespace

RenderResult render_report(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                           const fs::path& out, const RenderOptions& opt) {
  if (cfg.atlas.enabled) return render_atlas(cfg, cells, jobs, out, opt);
  RenderResult res;
  std::vector<Entry> entries;
  for (const Job& j : jobs) entries.push_back({&cells.at(j.cell), &j, load_job(out, j)});
  const std::string mc_desc = mc_description(cfg, entries);
  const bool have_theory = cfg.theory.enabled, have_sim = cfg.simulate.enabled;
  // Drawn besides theory and simulate: every other enabled engine but clustering (flow times, not layers).
  std::vector<EngineKind> extra;
  for (EngineKind k : all_engine_kinds())
    if (k != EngineKind::Theory && k != EngineKind::Simulate && k != EngineKind::Clustering && engine_enabled(cfg, k))
      extra.push_back(k);
  // The reference engine for readings: theory when it ran, else the Monte Carlo, else the first other one.
  const EngineKind ref_engine = have_theory ? EngineKind::Theory
                                : have_sim  ? EngineKind::Simulate
                                : !extra.empty() ? extra.front()
                                                 : EngineKind::Clustering;
  const Sweep sw{cfg, cells, std::move(entries), Layout(cfg), have_theory, have_sim, ref_engine, mc_desc, extra};

  // ---- resolved config and versions ------------------------------------------------
  write_file_atomic(out / "config.toml", to_toml(cfg));
  nlohmann::json versions = opt.build;
  versions["sigprop"] = kVersion;
  write_file_atomic(out / "versions.json", versions.dump(2) + "\n");

  write_profiles_csv(sw, out);
  write_summary_csv(sw, out);
  std::vector<Figure> figures = layer_figures(sw);
  const std::string depth_note = add_depth_returns_figures(sw, figures);

  // ---- draw -------------------------------------------------------------------------------
  fs::path figdir = out / "figures";
  const DrawResult drawn = draw_figures(figdir, figures, opt.gnuplot);
  res.figures_drawn = drawn.drawn;
  res.figures_missing = drawn.missing;
  res.gnuplot_problem = drawn.problem;
  const std::string& gnuplot_version = drawn.gnuplot_version;

  const Tables tables = report_tables(sw);
  res.index_html = out / "index.html";
  write_file_atomic(res.index_html, html_page(sw, tables, figures, depth_note, res, gnuplot_version, figdir, opt.notice));
  res.report_md = out / "report.md";
  write_file_atomic(res.report_md, markdown_page(sw, tables, figures, depth_note, res, opt.notice));
  return res;
}

}  // namespace sigprop::reports
