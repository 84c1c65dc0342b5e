// The depth study's page (see depth_study_page.hpp); the study itself is validate/depth_study.cpp.
#include "reports/depth_study_page.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

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

// ---- figures ---------------------------------------------------------------------------
std::vector<Figure> study_figures(const DepthStudy& study) {
  const std::vector<DepthResult>& results = study.results;
  const std::optional<validate::PowerLawFit>& fit = study.fit;
  std::vector<Figure> figs;
  {
    Figure f;
    f.stem = "loss_vs_depth";
    f.title = "Validation loss against depth";
    f.width = 900;
    f.height = 520;
    std::ostringstream d;
    d << "# depth val_loss val_loss_se init_val_loss\n";
    for (const auto& r : results)
      d << r.depth << " " << dat_num(r.val.mean) << " " << dat_num(r.val.se) << " " << dat_num(r.val_init.mean) << "\n";
    f.data = d.str();
    std::ostringstream s;
    s << "set title \"" << gp(f.title) << " (trained on the same text, same steps)\"\n"
      << "set xlabel \"depth L (blocks)\"\nset ylabel \"validation loss (nats per byte)\"\n"
      << "set logscale x 2\nset grid\nset key top right\nset xrange [" << 0.8 * results.front().depth << ":"
      << 1.25 * results.back().depth
      << "]\n";
    if (fit) s << fmt::format("a = {:.10g}\nb = {:.10g}\nc = {:.10g}\nf(x) = a + b * x**(-c)\n", fit->a, fit->b, fit->c);
    s << "plot \"" << f.stem << ".dat\" using 1:2:3 with yerrorbars pt 7 lc rgb \"#1f77b4\" title \"trained\"";
    if (fit)
      s << ", f(x) with lines lc rgb \"#d62728\" title sprintf(\"fit %.3f + %.3f L^{-%.2f}\", a, b, c)";
    s << "\n";
    f.script = s.str();
    if (fit && !fit->degenerate)
      f.reading = fmt::format("Fit: loss(L) = {} + {} L^-{}: the loss an arbitrarily deep model of this width would "
                              "approach is {}.",
                              num(fit->a), num(fit->b), num(fit->c, 3), num(fit->a));
    else if (fit)
      f.reading = "These losses do not follow a diminishing-returns curve a + b L^-c with a, b >= 0 (the fit is "
                  "degenerate: too few depths or too little training); the fitted line is shown for reference only.";
    figs.push_back(f);
  }
  {
    Figure f;
    f.stem = "drop_one_layer";
    f.title = "Drop-one-layer loss increase and ang_dist per layer";
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
    const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
    std::ostringstream s;
    s << "set multiplot layout 1,2 title \"" << gp(f.title) << "\"\nset grid\nset xlabel \"layer l / L\"\n"
      << "set key top right\nset ylabel \"loss increase without block l (nats)\"\nset logscale y\n";
    std::vector<std::string> p1, p2;
    int b = 0;
    for (const auto& r : results) {
      if (r.depth < 2) continue;
      const char* c = colors[b % 8];
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
  {
    const DepthResult& r = results.back();
    Figure f;
    f.stem = "trained_vs_initial";
    f.title = fmt::format("Depth {}: initial vs trained model, per layer", r.depth);
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
  return figs;
}

// ---- readings ------------------------------------------------------------------------------
std::vector<std::string> study_readings(const DepthStudy& study) {
  const std::vector<DepthResult>& results = study.results;
  const std::optional<validate::PowerLawFit>& fit = study.fit;
  std::vector<std::string> readings;
  std::vector<std::string> parts;
  for (std::size_t i = 1; i < results.size(); ++i)
    parts.push_back(fmt::format("{}→{}: {} ± {}", results[i - 1].depth, results[i].depth, num(results[i].gain.mean, 3),
                                num(results[i].gain.se, 2)));
  if (!parts.empty())
    readings.push_back(fmt::format("Validation loss falls from {} (depth {}) to {} (depth {}); the gain of each "
                                   "step in depth, in nats per byte (± paired s.e. over the same sequences): {}.",
                                   num(results.front().val.mean), results.front().depth, num(results.back().val.mean),
                                   results.back().depth, fmt::join(parts, ", ")));
  if (fit)
    readings.push_back(fmt::format("A diminishing-returns fit loss(L) = a + b L^-c gives a = {}, b = {}, c = {} "
                                   "(residual sum of squares {}){}.",
                                   num(fit->a), num(fit->b), num(fit->c, 3), num(fit->rss, 2),
                                   fit->degenerate ? "; the fit is degenerate (c at its search bound or a, b < 0), "
                                                     "so these losses show no diminishing-returns curve"
                                                   : ""));
  for (const auto& c : study.pooled)
    readings.push_back(fmt::format("Drop-one-layer loss increase vs {} over every layer of the models of depth "
                                   ">= 2: Spearman rho = {} (p = {}, n = {}).",
                                   c.against, num(c.spearman.rho, 3), num(c.spearman.p, 2), c.spearman.n));
  const DepthResult& r = results.back();
  if (r.depth >= 2) {
    const int n = std::max(1, r.depth / 4);
    double early = 0, late = 0;
    for (int l = 1; l <= n; ++l) early += r.ablation.increase[l - 1], late += r.ablation.increase[r.depth - l];
    readings.push_back(fmt::format("In the depth-{} model, removing one of the first {} blocks costs {} nats on "
                                   "average, one of the last {} costs {}.",
                                   r.depth, n, num(early / n, 3), n, num(late / n, 3)));
  }
  return readings;
}

bool was_drawn(const DrawResult& drawn, const Figure& f) {
  return std::find(drawn.drawn.begin(), drawn.drawn.end(), f.stem) != drawn.drawn.end();
}

// ---- report.md ------------------------------------------------------------------------------
std::string study_markdown(const DepthStudy& study, const std::vector<std::string>& readings,
                           const std::vector<Figure>& figs, const DrawResult& drawn) {
  const std::vector<DepthResult>& results = study.results;
  const std::optional<validate::PowerLawFit>& fit = study.fit;
  const StackSpec& base = study.base;
  const validate::TrainSettings& ts = study.train;
  const int T = study.tokens_per_sequence;
  std::ostringstream md;
  md << "# sigprop depth study\n\n";
  md << fmt::format("Corpus `{}` ({} bytes, fnv1a64 {}); validation split measured on {} sequences of {} tokens. "
                    "Base spec: width {}, heads {}, mlp_ratio {}, norm {}, context {}; {} steps of batch {} per depth.\n\n",
                    study.corpus_path, study.corpus_bytes, study.corpus_hash, study.sequences, T, base.width,
                    base.heads, base.mlp_ratio, to_string(base.norm), T, ts.steps, ts.batch);
  for (const auto& s : readings) md << "- " << s << "\n";
  md << "\n## Loss against depth\n\n| depth | parameters | val loss | ± s.e. | initial val loss | gain vs previous | ± "
        "paired s.e. | fit | train s |\n|---|---|---|---|---|---|---|---|---|\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const DepthResult& r = results[i];
    md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.depth, r.params, num(r.val.mean, 5),
                      num(r.val.se, 2), num(r.val_init.mean, 5), i > 0 ? num(r.gain.mean, 3) : std::string("—"),
                      i > 0 ? num(r.gain.se, 2) : std::string("—"),
                      fit ? num((*fit)(r.depth), 5) : std::string("—"), num(r.seconds, 3));
  }
  md << "\n## Rank correlations of the drop-one-layer loss increase (Spearman)\n\n| depth | against | rho | p | n "
        "|\n|---|---|---|---|---|\n";
  for (const auto& c : study.per_depth)
    md << fmt::format("| {} | {} | {} | {} | {} |\n", c.depth, c.against, num(c.spearman.rho, 3),
                      num(c.spearman.p, 2), c.spearman.n);
  for (const auto& c : study.pooled)
    md << fmt::format("| pooled | {} | {} | {} | {} |\n", c.against, num(c.spearman.rho, 3), num(c.spearman.p, 2),
                      c.spearman.n);
  {
    const DepthResult& r = results.back();
    md << fmt::format("\n## Depth {}: per layer, trained vs initial\n\n| layer | drop increase | ± s.e. | ang_dist "
                      "trained | initial | theory | update_ratio trained | initial | theory | eff_rank trained | "
                      "initial |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
                      r.depth);
    for (int l = 1; l <= r.depth; ++l)
      md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", l,
                        num(r.ablation.increase[l - 1], 3), num(r.ablation.increase_se[l - 1], 2),
                        num(col(r.trained, l, "ang_dist"), 3), num(col(r.initial, l, "ang_dist"), 3),
                        num(r.theory ? col(*r.theory, l, "ang_dist") : NAN, 3),
                        num(col(r.trained, l, "update_ratio"), 3), num(col(r.initial, l, "update_ratio"), 3),
                        num(r.theory ? col(*r.theory, l, "update_ratio") : NAN, 3),
                        num(col(r.trained, l, "eff_rank"), 3), num(col(r.initial, l, "eff_rank"), 3));
  }
  md << "\n## Figures\n\n";
  for (const auto& f : figs) {
    const bool ok = was_drawn(drawn, f);
    md << "### " << f.title << "\n\n";
    if (ok) md << "![" << f.title << "](figures/" << f.stem << ".svg)\n\n";
    if (!f.reading.empty()) md << f.reading << "\n\n";
    md << "Data `figures/" << f.stem << ".dat`, script `figures/" << f.stem << ".gp`.\n\n";
  }
  if (!drawn.problem.empty()) md << "**Figures not drawn:** " << drawn.problem << "\n\n";
  md << "Files: `study.json` (everything), `depth.csv`, `layers.csv`, `runs/L<depth>/` (loss.csv, checkpoints).\n";

  return md.str();
}

// ---- index.html -----------------------------------------------------------------------------
std::string study_html(const fs::path& folder, const std::vector<std::string>& readings,
                       const std::vector<Figure>& figs, const DrawResult& drawn) {
  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>sigprop depth study</title><style>"
       "body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "figure{margin:1.5em 0}img{max-width:100%}</style></head><body>\n<h1>sigprop depth study</h1>\n<ul>";
  for (const auto& s : readings) h << "<li>" << html(s) << "</li>";
  h << "</ul>\n";
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
  h << "<p>The tables are in <a href=\"report.md\">report.md</a>, <a href=\"depth.csv\">depth.csv</a>, <a "
       "href=\"layers.csv\">layers.csv</a>, and everything in <a href=\"study.json\">study.json</a>.</p></body></html>\n";

  return h.str();
}

}  // namespace

StudyPage render_depth_study_page(const DepthStudy& study, const StudyPageOptions& opt) {
  if (study.results.empty()) throw ConfigError("depth study: no depths to report");
  const std::vector<Figure> figs = study_figures(study);
  const DrawResult drawn = draw_figures(study.folder / "figures", figs, opt.gnuplot);
  const std::vector<std::string> readings = study_readings(study);
  StudyPage page;
  page.report_md = study.folder / "report.md";
  page.index_html = study.folder / "index.html";
  write_file_atomic(page.report_md, study_markdown(study, readings, figs, drawn));
  write_file_atomic(page.index_html, study_html(study.folder, readings, figs, drawn));
  page.figures_drawn = drawn.drawn;
  page.figures_missing = drawn.missing;
  page.gnuplot_problem = drawn.problem;
  return page;
}

}  // namespace sigprop::reports
