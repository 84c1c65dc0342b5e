// The depth study (see depth_study.hpp).
#include "validate/depth_study.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/stats.hpp"
#include "sigprop/version.hpp"
#include "validate/measure.hpp"

namespace sigprop::validate {
namespace fs = std::filesystem;

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

std::string csv_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : ""; }

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

double col(const Profile& p, int l, const std::string& m) { return p.has(m) ? p.at(l, m) : NAN; }

nlohmann::json corr_json(const RankCorrelation& r) { return {{"rho", r.rho}, {"p", r.p}, {"n", r.n}}; }

}  // namespace

DepthStudy run_depth_study(const StackSpec& base, const StudySettings& st, const fs::path& corpus_path,
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
  const double n_depths = static_cast<double>(st.depths.size());
  // Depth k's share of the fraction: its training [k, k + 0.8) / n, its measurement the rest.
  auto share = [&](std::size_t k, int L, double lo, double width) {
    ProgressFn f;
    if (progress.fraction)
      f = [&progress, k, L, lo, width, n_depths](double x, std::string_view msg) {
        return progress.fraction((static_cast<double>(k) + lo + width * x) / n_depths,
                                 fmt::format("depth {}: {}", L, msg));
      };
    return f;
  };
  for (std::size_t k = 0; k < st.depths.size(); ++k) {
    const int L = st.depths[k];
    StackSpec spec = base;
    spec.depth = L;
    spec.validate();
    const ModelConfig cfg = train_model_config(spec);
    const fs::path dir = out / "runs" / fmt::format("L{}", L);
    stage(fmt::format("depth {}: training into {}", L, dir.string()));
    std::function<void(const TrainProgress&)> cb;
    if (progress.train) cb = [&, L](const TrainProgress& p) { progress.train(L, p); };
    const TrainOutcome trained = train(cfg, ts, corpus_path, dir, cb, share(k, L, 0.0, 0.8));
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
    const Validation v = validate_model(fin, val_split, vs, share(k, L, 0.8, 0.2));
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
  // The last chance to stop: from here on the study only computes and writes its tables.
  if (progress.fraction) report_progress(progress.fraction, 1.0, "analysing", "study");
  stage("analysing");
  nlohmann::json J;
  J["sigprop_version"] = kVersion;
  J["settings"] = st.to_json();
  J["base_spec"] = spec_to_json(base);
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
  std::vector<StudyCorrelation> per_depth, pooled_c;
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
        per_depth.push_back({r.depth, against[k].name, spearman(r.ablation.increase, x)});
        corr.push_back(
            {{"depth", r.depth}, {"against", against[k].name}, {"spearman", corr_json(per_depth.back().spearman)}});
      } catch (const ConfigError&) {  // fewer than 3 finite pairs (e.g. theory missing)
      }
    }
  }
  nlohmann::json pooled = nlohmann::json::array();
  for (std::size_t k = 0; k < against.size(); ++k) {
    try {
      pooled_c.push_back({0, against[k].name, spearman(pooled_drop, pooled_x[k])});
      pooled.push_back({{"against", against[k].name}, {"spearman", corr_json(pooled_c.back().spearman)}});
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
    results[i].gain = gain_of(i);
    const DepthResult& r = results[i];
    const MeanSe gain = r.gain;
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

  write_file_atomic(out / "depth.csv", dcsv.str());
  write_file_atomic(out / "layers.csv", lcsv.str());
  write_file_atomic(out / "study.json", J.dump(1) + "\n");
  DepthStudy o;
  o.folder = out;
  o.base = base;
  o.train = ts;
  o.corpus_path = corpus.path;
  o.corpus_hash = corpus.hash;
  o.corpus_bytes = corpus.bytes.size();
  o.sequences = seqs.count();
  o.tokens_per_sequence = T;
  o.results = std::move(results);
  o.fit = fit;
  o.per_depth = std::move(per_depth);
  o.pooled = std::move(pooled_c);
  return o;
}

}  // namespace sigprop::validate
