// The depth study (see depth_study.hpp).
#include "validate/depth_study.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/stats.hpp"
#include "reports/figures.hpp"
#include "sigprop/version.hpp"
#include "validate/measure.hpp"
#include "validate/study.hpp"

namespace sigprop::validate {
namespace fs = std::filesystem;
using reports::Figure;
using reports::figures_detail::base64;
using reports::figures_detail::gp;
using reports::figures_detail::html;
using reports::figures_detail::slurp;

void StudySettings::validate() const {
  if (depths.empty()) throw ConfigError("depths: needs at least one depth");
  for (std::size_t i = 0; i < depths.size(); ++i) {
    if (depths[i] < 1) throw ConfigError(fmt::format("depths: depth {} must be >= 1", depths[i]));
    if (i > 0 && depths[i] <= depths[i - 1]) throw ConfigError("depths: depths must be strictly increasing");
  }
  if (eval_tokens < 2) throw ConfigError(fmt::format("eval_tokens: {} must be >= 2 sequences' worth", eval_tokens));
  train.validate();
}

nlohmann::json StudySettings::to_json() const {
  return {{"depths", depths}, {"train", train.resolved().to_json()}, {"eval_tokens", eval_tokens}};
}

namespace {

std::string num(double x, int sig = 4) {
  if (!std::isfinite(x)) return "n/a";
  return fmt::format("{:.{}g}", x, sig);
}
std::string csv_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : ""; }
// gnuplot data: whitespace-separated, so a missing value must be a token ("NaN" is skipped)
std::string dat_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : "NaN"; }


// Total training seconds of a run: the last `seconds` field of its loss.csv (NaN if absent).
double train_seconds(const fs::path& loss_csv) {
  std::ifstream in(loss_csv);
  std::string line, header, last;
  if (!std::getline(in, header)) return NAN;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  std::vector<std::string> h, v;
  auto split = [](const std::string& s, std::vector<std::string>& out) {
    std::stringstream ss(s);
    std::string f;
    while (std::getline(ss, f, ',')) out.push_back(f);
  };
  split(header, h);
  split(last, v);
  for (std::size_t i = 0; i < h.size() && i < v.size(); ++i)
    if (h[i] == "seconds") return std::strtod(v[i].c_str(), nullptr);
  return NAN;
}

struct DepthResult {
  int depth = 0;
  std::size_t params = 0;
  MeanSe val, val_init;  // mean loss per token over the validation sequences
  std::vector<double> seq_loss;  // each validation sequence's loss (the same sequences at every depth)
  double seconds = NAN;
  Profile trained, initial;
  std::optional<Profile> theory;  // the theory for the architecture, fed the trained X_0's q and rho
  Ablation ablation;
  std::vector<std::string> notes;
};

double col(const Profile& p, int l, const std::string& m) { return p.has(m) ? p.at(l, m) : NAN; }

nlohmann::json corr_json(const RankCorrelation& r) { return {{"rho", r.rho}, {"p", r.p}, {"n", r.n}}; }

}  // namespace

StudyOutcome run_depth_study(const StackSpec& base, const StudySettings& st, const fs::path& corpus_path,
                             const fs::path& out, const StudyProgress& progress) {
  st.validate();
  base.validate();
  auto stage = [&](const std::string& s) {
    if (progress.stage) progress.stage(s);
  };
  std::error_code ec;
  fs::create_directories(out / "runs", ec);
  if (ec) throw IoError(fmt::format("{}: cannot create folder: {}", (out / "runs").string(), ec.message()));
  const TrainSettings ts = st.train.resolved();
  const int T = base.tokens;
  const Corpus corpus = Corpus::load(corpus_path, ts.val_fraction, T);
  const std::span<const unsigned char> val_split(corpus.bytes.data() + corpus.train_end,
                                                 corpus.bytes.size() - corpus.train_end);
  const Sequences seqs = cut_sequences(val_split, T, st.eval_tokens, corpus_path.string() + " (validation split)");
  Batch eval_batch;
  eval_batch.inputs = seqs.inputs;
  eval_batch.targets = seqs.targets;
  const int threads = std::max(1, ts.threads);

  std::vector<DepthResult> results;
  for (int L : st.depths) {
    StackSpec spec = base;
    spec.depth = L;
    spec.validate();
    const ModelConfig cfg = train_model_config(spec);
    const fs::path dir = out / "runs" / fmt::format("L{}", L);
    stage(fmt::format("depth {}: training into {}", L, dir.string()));
    std::function<void(const TrainProgress&)> cb;
    if (progress.train) cb = [&, L](const TrainProgress& p) { progress.train(L, p); };
    const TrainOutcome trained = train(cfg, ts, corpus_path, dir, cb);
    for (const std::string& w : trained.warnings) stage(fmt::format("depth {}: warning: {}", L, w));
    stage(fmt::format("depth {}: measuring {} validation sequences of {} tokens", L, seqs.count(), T));
    DepthResult r;
    r.depth = L;
    const Model<float> init = load_checkpoint<float>(dir / "init.safetensors");
    const Model<float> fin = load_checkpoint<float>(dir / "final.safetensors");
    r.params = fin.num_params();
    r.seconds = train_seconds(dir / "loss.csv");
    // The trained model is measured once, by validate_model (on the same sequences as seqs:
    // same corpus span, T and token count), which also runs the theory with its fitted input.
    ValidateSettings vs;
    vs.tokens = st.eval_tokens;
    vs.seq_len = T;
    vs.ensemble = 0;
    vs.samples = 0;
    vs.theory = true;
    vs.threads = threads;
    vs.corpus = corpus_path.string();
    const Validation v = validate_model(fin, val_split, vs);
    r.trained = v.measured;
    r.seq_loss = v.sequence_loss;
    r.val = mean_se(r.seq_loss);
    const PerSequence pi = measure_sequences(init, seqs, threads);
    r.val_init = mean_se(pi.loss);
    r.initial = reduce_profile(pi.values, spec, "measured", "sequence");
    r.theory = v.theory;
    r.notes = v.notes;
    r.ablation = drop_one_layer(fin, eval_batch, threads);
    results.push_back(std::move(r));
  }

  // ---- analysis ------------------------------------------------------------------------
  stage("analysing");
  nlohmann::json J;
  J["sigprop_version"] = kVersion;
  J["settings"] = st.to_json();
  J["base_spec"] = base.to_json();
  J["corpus"] = corpus.to_json();
  J["eval"] = {{"sequences", seqs.count()}, {"tokens_per_sequence", T}, {"split", "validation"}};
  std::vector<double> dd, vl;
  for (const auto& r : results) dd.push_back(r.depth), vl.push_back(r.val.mean);
  std::optional<PowerLawFit> fit;
  if (results.size() >= 3) fit = fit_power_law(dd, vl);
  if (fit)
    J["fit"] = {{"form", "a + b L^-c"}, {"a", fit->a},     {"b", fit->b},
                {"c", fit->c},          {"rss", fit->rss}, {"degenerate", fit->degenerate}};

  // correlations: drop-one-layer increase vs measured and predicted ang_dist / update_ratio
  struct Series {
    std::string name, metric, source;
  };
  const std::vector<Series> against = {{"ang_dist (measured)", "ang_dist", "trained"},
                                       {"update_ratio (measured)", "update_ratio", "trained"},
                                       {"ang_dist (theory)", "ang_dist", "theory"},
                                       {"update_ratio (theory)", "update_ratio", "theory"}};
  auto values_of = [&](const DepthResult& r, const Series& s) {
    std::vector<double> v;
    for (int l = 1; l <= r.depth; ++l) {
      if (s.source == "trained")
        v.push_back(col(r.trained, l, s.metric));
      else
        v.push_back(r.theory ? col(*r.theory, l, s.metric) : NAN);
    }
    return v;
  };
  nlohmann::json corr = nlohmann::json::array();
  std::vector<std::vector<double>> pooled_x(against.size());
  std::vector<double> pooled_drop;
  for (const auto& r : results) {
    if (r.depth >= 2)
      pooled_drop.insert(pooled_drop.end(), r.ablation.increase.begin(), r.ablation.increase.end());
    for (std::size_t k = 0; k < against.size(); ++k) {
      const std::vector<double> x = values_of(r, against[k]);
      if (r.depth >= 2) pooled_x[k].insert(pooled_x[k].end(), x.begin(), x.end());
      if (r.depth < 3) continue;
      try {
        corr.push_back({{"depth", r.depth}, {"against", against[k].name}, {"spearman", corr_json(spearman(r.ablation.increase, x))}});
      } catch (const ConfigError&) {  // fewer than 3 finite pairs (e.g. theory missing)
      }
    }
  }
  nlohmann::json pooled = nlohmann::json::array();
  std::vector<std::optional<RankCorrelation>> pooled_r(against.size());
  for (std::size_t k = 0; k < against.size(); ++k) {
    try {
      pooled_r[k] = spearman(pooled_drop, pooled_x[k]);
      pooled.push_back({{"against", against[k].name}, {"spearman", corr_json(*pooled_r[k])}});
    } catch (const ConfigError&) {
    }
  }
  J["correlations"] = {{"per_depth", corr}, {"pooled", pooled}};

  nlohmann::json depths = nlohmann::json::array();
  std::ostringstream dcsv, lcsv;
  dcsv << "depth,params,val_loss,val_loss_se,init_val_loss,init_val_loss_se,gain_vs_previous,gain_se,fit,"
          "train_seconds\n";
  // The gain of each step in depth, with the standard error of the paired per-sequence differences.
  auto gain_of = [&](std::size_t i) {
    if (i == 0) return MeanSe{};
    std::vector<double> d;
    for (std::size_t k = 0; k < results[i].seq_loss.size(); ++k)
      d.push_back(results[i - 1].seq_loss[k] - results[i].seq_loss[k]);
    return mean_se(d);
  };
  lcsv << "depth,layer,drop_increase,drop_increase_se,ang_dist,ang_dist_se,update_ratio,update_ratio_se,"
          "ang_dist_theory,update_ratio_theory,ang_dist_init,update_ratio_init,eff_rank,eff_rank_init,"
          "grad_var_rel,grad_var_rel_init,rho,rho_init\n";
  const std::vector<std::string> change_metrics = {"q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var_rel"};
  for (std::size_t i = 0; i < results.size(); ++i) {
    const DepthResult& r = results[i];
    const MeanSe gain = gain_of(i);
    dcsv << r.depth << "," << r.params << "," << csv_num(r.val.mean) << "," << csv_num(r.val.se) << ","
         << csv_num(r.val_init.mean) << "," << csv_num(r.val_init.se) << "," << csv_num(gain.mean) << ","
         << csv_num(gain.se) << ","
         << csv_num(fit ? (*fit)(r.depth) : NAN) << "," << csv_num(r.seconds) << "\n";
    nlohmann::json change = nlohmann::json::object();
    for (const auto& m : change_metrics) {
      std::vector<double> diff;
      for (int l = 0; l <= r.depth; ++l) diff.push_back(col(r.trained, l, m) - col(r.initial, l, m));
      change[m] = diff;
    }
    for (int l = 1; l <= r.depth; ++l) {
      lcsv << r.depth << "," << l << "," << csv_num(r.ablation.increase[l - 1]) << ","
           << csv_num(r.ablation.increase_se[l - 1]) << "," << csv_num(col(r.trained, l, "ang_dist")) << ","
           << csv_num(col(r.trained, l, "ang_dist_se")) << "," << csv_num(col(r.trained, l, "update_ratio")) << ","
           << csv_num(col(r.trained, l, "update_ratio_se")) << ","
           << csv_num(r.theory ? col(*r.theory, l, "ang_dist") : NAN) << ","
           << csv_num(r.theory ? col(*r.theory, l, "update_ratio") : NAN) << ","
           << csv_num(col(r.initial, l, "ang_dist")) << "," << csv_num(col(r.initial, l, "update_ratio")) << ","
           << csv_num(col(r.trained, l, "eff_rank")) << "," << csv_num(col(r.initial, l, "eff_rank")) << ","
           << csv_num(col(r.trained, l, "grad_var_rel")) << "," << csv_num(col(r.initial, l, "grad_var_rel")) << ","
           << csv_num(col(r.trained, l, "rho")) << "," << csv_num(col(r.initial, l, "rho")) << "\n";
    }
    depths.push_back({{"depth", r.depth},
                      {"params", r.params},
                      {"val_loss", r.val.mean},
                      {"val_loss_se", r.val.se},
                      {"init_val_loss", r.val_init.mean},
                      {"init_val_loss_se", r.val_init.se},
                      {"gain_vs_previous", gain.mean},
                      {"gain_vs_previous_se", gain.se},
                      {"train_seconds", r.seconds},
                      {"ablation",
                       {{"base_loss", r.ablation.base_loss},
                        {"increase", r.ablation.increase},
                        {"increase_se", r.ablation.increase_se}}},
                      {"trained", r.trained.to_json()},
                      {"initial", r.initial.to_json()},
                      {"theory", r.theory ? r.theory->to_json() : nlohmann::json(nullptr)},
                      {"trained_minus_initial", change},
                      {"notes", r.notes}});
  }
  J["depths"] = depths;

  // ---- figures ---------------------------------------------------------------------------
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
      << "set logscale x 2\nset grid\nset key top right\nset xrange [" << 0.8 * dd.front() << ":" << 1.25 * dd.back()
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
  const reports::DrawResult drawn = reports::draw_figures(out / "figures", figs, st.gnuplot);

  // ---- readings, markdown, html --------------------------------------------------------------
  std::vector<std::string> readings;
  {
    std::vector<std::string> parts;
    for (std::size_t i = 1; i < results.size(); ++i)
      parts.push_back(fmt::format("{}→{}: {} ± {}", results[i - 1].depth, results[i].depth, num(gain_of(i).mean, 3),
                                  num(gain_of(i).se, 2)));
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
    for (std::size_t k = 0; k < against.size(); ++k)
      if (pooled_r[k])
        readings.push_back(fmt::format("Drop-one-layer loss increase vs {} over every layer of the models of depth "
                                       ">= 2: Spearman rho = {} (p = {}, n = {}).",
                                       against[k].name, num(pooled_r[k]->rho, 3), num(pooled_r[k]->p, 2),
                                       pooled_r[k]->n));
    const DepthResult& r = results.back();
    if (r.depth >= 2) {
      const int n = std::max(1, r.depth / 4);
      double early = 0, late = 0;
      for (int l = 1; l <= n; ++l) early += r.ablation.increase[l - 1], late += r.ablation.increase[r.depth - l];
      readings.push_back(fmt::format("In the depth-{} model, removing one of the first {} blocks costs {} nats on "
                                     "average, one of the last {} costs {}.",
                                     r.depth, n, num(early / n, 3), n, num(late / n, 3)));
    }
  }
  std::ostringstream md;
  md << "# sigprop depth study\n\n";
  md << fmt::format("Corpus `{}` ({} bytes, fnv1a64 {}); validation split measured on {} sequences of {} tokens. "
                    "Base spec: width {}, heads {}, mlp_ratio {}, norm {}, context {}; {} steps of batch {} per depth.\n\n",
                    corpus.path, corpus.bytes.size(), corpus.hash, seqs.count(), T, base.width, base.heads,
                    base.mlp_ratio, to_string(base.norm), T, ts.steps, ts.batch);
  for (const auto& s : readings) md << "- " << s << "\n";
  md << "\n## Loss against depth\n\n| depth | parameters | val loss | ± s.e. | initial val loss | gain vs previous | ± "
        "paired s.e. | fit | train s |\n|---|---|---|---|---|---|---|---|---|\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const DepthResult& r = results[i];
    md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.depth, r.params, num(r.val.mean, 5),
                      num(r.val.se, 2), num(r.val_init.mean, 5), i > 0 ? num(gain_of(i).mean, 3) : std::string("—"),
                      i > 0 ? num(gain_of(i).se, 2) : std::string("—"),
                      fit ? num((*fit)(r.depth), 5) : std::string("—"), num(r.seconds, 3));
  }
  md << "\n## Rank correlations of the drop-one-layer loss increase (Spearman)\n\n| depth | against | rho | p | n "
        "|\n|---|---|---|---|---|\n";
  for (const auto& c : corr)
    md << fmt::format("| {} | {} | {} | {} | {} |\n", c["depth"].get<int>(), c["against"].get<std::string>(),
                      num(c["spearman"]["rho"].get<double>(), 3), num(c["spearman"]["p"].get<double>(), 2),
                      c["spearman"]["n"].get<int>());
  for (const auto& c : pooled)
    md << fmt::format("| pooled | {} | {} | {} | {} |\n", c["against"].get<std::string>(),
                      num(c["spearman"]["rho"].get<double>(), 3), num(c["spearman"]["p"].get<double>(), 2),
                      c["spearman"]["n"].get<int>());
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
    const bool ok = std::find(drawn.drawn.begin(), drawn.drawn.end(), f.stem) != drawn.drawn.end();
    md << "### " << f.title << "\n\n";
    if (ok) md << "![" << f.title << "](figures/" << f.stem << ".svg)\n\n";
    if (!f.reading.empty()) md << f.reading << "\n\n";
    md << "Data `figures/" << f.stem << ".dat`, script `figures/" << f.stem << ".gp`.\n\n";
  }
  if (!drawn.problem.empty()) md << "**Figures not drawn:** " << drawn.problem << "\n\n";
  md << "Files: `study.json` (everything), `depth.csv`, `layers.csv`, `runs/L<depth>/` (loss.csv, checkpoints).\n";

  std::ostringstream h;
  h << "<!doctype html><html><head><meta charset=\"utf-8\"><title>sigprop depth study</title><style>"
       "body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "figure{margin:1.5em 0}img{max-width:100%}</style></head><body>\n<h1>sigprop depth study</h1>\n<ul>";
  for (const auto& s : readings) h << "<li>" << html(s) << "</li>";
  h << "</ul>\n";
  for (const auto& f : figs) {
    const bool ok = std::find(drawn.drawn.begin(), drawn.drawn.end(), f.stem) != drawn.drawn.end();
    h << "<figure><figcaption><b>" << html(f.title) << "</b> " << html(f.reading) << "</figcaption>";
    if (ok)
      h << "<img alt=\"" << html(f.title) << "\" src=\"data:image/svg+xml;base64,"
        << base64(slurp(out / "figures" / (f.stem + ".svg"))) << "\">";
    h << "<p>Data <a href=\"figures/" << html(f.stem) << ".dat\">" << html(f.stem) << ".dat</a>, script <a href=\"figures/"
      << html(f.stem) << ".gp\">" << html(f.stem) << ".gp</a></p></figure>\n";
  }
  if (!drawn.problem.empty()) h << "<p><b>Figures not drawn:</b> " << html(drawn.problem) << "</p>";
  h << "<p>The tables are in <a href=\"report.md\">report.md</a>, <a href=\"depth.csv\">depth.csv</a>, <a "
       "href=\"layers.csv\">layers.csv</a>, and everything in <a href=\"study.json\">study.json</a>.</p></body></html>\n";

  write_file_atomic(out / "depth.csv", dcsv.str());
  write_file_atomic(out / "layers.csv", lcsv.str());
  write_file_atomic(out / "study.json", J.dump(1) + "\n");
  write_file_atomic(out / "report.md", md.str());
  write_file_atomic(out / "index.html", h.str());
  StudyOutcome o;
  o.index_html = out / "index.html";
  o.report_md = out / "report.md";
  o.json = out / "study.json";
  o.figures_missing = drawn.missing;
  o.gnuplot_problem = drawn.problem;
  return o;
}

}  // namespace sigprop::validate
