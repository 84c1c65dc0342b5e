// The depth study (see depth_study.hpp).
#include "validate/depth_study.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/profile.hpp"
#include "core/stats.hpp"
#include "mc/backends.hpp"
#include "sigprop/version.hpp"
#include "theory/depth_returns.hpp"
#include "validate/measure.hpp"

namespace sigprop::validate {
namespace fs = std::filesystem;

std::vector<std::uint64_t> StudySettings::resolved_seeds() const {
  return seeds.empty() ? std::vector<std::uint64_t>{train.seed} : seeds;
}

std::vector<StudyArch> StudySettings::resolved_archs() const {
  return archs.empty() ? std::vector<StudyArch>{{"base", {}}} : archs;
}

void StudySettings::validate() const {
  if (depths.empty()) throw ConfigError("depths: needs at least one depth");
  for (std::size_t i = 0; i < depths.size(); ++i) {
    if (depths[i] < 1) throw ConfigError(fmt::format("depths: depth {} must be >= 1", depths[i]));
    if (i > 0 && depths[i] <= depths[i - 1]) throw ConfigError("depths: depths must be strictly increasing");
  }
  if (eval_tokens < 2) throw ConfigError(fmt::format("eval_tokens: {} must be >= 2 sequences' worth", eval_tokens));
  if (std::set<std::uint64_t>(seeds.begin(), seeds.end()).size() != seeds.size())
    throw ConfigError("seeds: every seed must differ");
  std::set<std::string> names;
  for (const StudyArch& a : archs) {
    if (a.name.empty() || a.name == "." || a.name == ".." ||
        !std::all_of(a.name.begin(), a.name.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
        }))
      throw ConfigError(fmt::format("archs: name \"{}\" must be letters, digits, '_', '-' or '.'", a.name));
    if (!names.insert(a.name).second) throw ConfigError(fmt::format("archs: name \"{}\" appears twice", a.name));
  }
  if (noise_samples != 0 && (noise_samples < 2 || noise_samples > 65536))
    throw ConfigError(fmt::format("noise_samples: {} must be 0 (none) or in [2, 65536]", noise_samples));
  if (!(knee_fraction > 0 && knee_fraction < 1))
    throw ConfigError(fmt::format("knee_fraction: {} must be in (0, 1)", knee_fraction));
  if (!(spike_factor > 1)) throw ConfigError(fmt::format("spike_factor: {} must be > 1", spike_factor));
  if (!(last_fraction > 0 && last_fraction <= 1))
    throw ConfigError(fmt::format("last_fraction: {} must be in (0, 1]", last_fraction));
  train.validate();
}

nlohmann::json StudySettings::to_json() const {
  nlohmann::json a = nlohmann::json::array();
  for (const StudyArch& x : resolved_archs()) a.push_back({{"name", x.name}, {"sets", x.sets}});
  return {{"depths", depths},
          {"seeds", resolved_seeds()},
          {"archs", a},
          {"train", train.resolved().to_json()},
          {"eval_tokens", eval_tokens},
          {"noise_samples", noise_samples},
          {"knee_fraction", knee_fraction},
          {"spike_factor", spike_factor},
          {"last_fraction", last_fraction}};
}

namespace {

std::string csv_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : ""; }
nlohmann::json jnum(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// A run's history from its loss.csv: per step row its train loss and grad norm (NaN where
// empty), and the last `seconds` field (NaN if absent).
struct History {
  std::vector<double> loss, grad_norm;
  double seconds = NAN;
};
History read_history(const fs::path& loss_csv) {
  History h;
  std::ifstream in(loss_csv);
  std::string line, header;
  if (!std::getline(in, header)) return h;
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string f;
    while (std::getline(ss, f, ',')) out.push_back(f);
    if (!s.empty() && s.back() == ',') out.emplace_back();
    return out;
  };
  const std::vector<std::string> hd = split(header);
  auto index = [&](const char* name) {
    const auto it = std::find(hd.begin(), hd.end(), name);
    return it == hd.end() ? std::size_t(-1) : static_cast<std::size_t>(it - hd.begin());
  };
  const std::size_t il = index("train_loss"), ig = index("grad_norm"), is = index("seconds");
  auto field = [](const std::vector<std::string>& v, std::size_t i) {
    return i < v.size() && !v[i].empty() ? std::strtod(v[i].c_str(), nullptr) : NAN;
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const std::vector<std::string> v = split(line);
    const double l = field(v, il);
    if (std::isfinite(l)) {
      h.loss.push_back(l);
      h.grad_norm.push_back(field(v, ig));
    }
    const double sec = field(v, is);
    if (std::isfinite(sec)) h.seconds = sec;
  }
  return h;
}

double col(const Profile& p, int l, const std::string& m) { return p.has(m) ? p.at(l, m) : NAN; }

nlohmann::json corr_json(const RankCorrelation& r) { return {{"rho", r.rho}, {"p", r.p}, {"n", r.n}}; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, ++n;
  return n > 0 ? s / n : NAN;
}

double sample_var(const std::vector<double>& v) {
  std::vector<double> f;
  for (double x : v)
    if (std::isfinite(x)) f.push_back(x);
  if (f.size() < 2) return NAN;
  const MeanSe m = mean_se(f);
  return m.se * m.se * static_cast<double>(f.size());
}

// Finite-width noise: the sample variances of log q_L and log grad_var_0 over `samples`
// Monte Carlo samples of spec (cpu backend, its default sampling) with seed `seed`.
std::pair<double, double> mc_noise(const StackSpec& spec, int samples, std::uint64_t seed, int threads) {
  const std::string backend = "cpu";
  const sim::SamplingChoice choice = sim::resolve_weight_sampling(spec, backend, "");
  const auto be = sim::make_stack_backend(spec, seed, backend, "", choice.sampling);
  std::vector<double> lq(samples, NAN), lg(samples, NAN);
  const int L = spec.depth;
  parallel_for(samples, threads, [&](int i) {
    const sim::SampleMetrics m = be->run_sample(i);
    lq[i] = std::log(m.values[L][sim::kQ]);
    lg[i] = std::log(m.values[0][sim::kGrad]);
  });
  return {sample_var(lq), sample_var(lg)};
}

// Measures one trained run (folder dir, training finished).
SeedRun measure_run(const StackSpec& spec, std::uint64_t seed, const fs::path& dir, const StudySettings& st,
                    const fs::path& corpus_path, std::span<const unsigned char> val_split,
                    const Sequences& seqs, const Batch& eval_batch, const Batch& train_seqs, int threads,
                    const ProgressFn& fraction) {
  SeedRun r;
  r.seed = seed;
  r.dir = dir;
  const Model<float> init = load_checkpoint<float>(dir / "init.safetensors");
  const Model<float> fin = load_checkpoint<float>(dir / "final.safetensors");
  const History hist = read_history(dir / "loss.csv");
  r.seconds = hist.seconds;
  r.curve = curve_stats(hist.loss, hist.grad_norm, st.last_fraction, st.spike_factor);
  // The trained model is measured once, by validate_model (on the same sequences as seqs:
  // same corpus span, T and token count), which also runs the theory with its fitted input.
  ValidateSettings vs;
  vs.tokens = st.eval_tokens;
  vs.seq_len = spec.tokens;
  vs.ensemble = 0;
  vs.samples = 0;
  vs.theory = true;
  vs.threads = threads;
  vs.corpus = corpus_path.string();
  const Validation v = validate_model(fin, val_split, vs, fraction);
  r.trained = v.measured;
  r.seq_loss = v.sequence_loss;
  r.val = mean_se(r.seq_loss);
  const PerSequence pi = measure_sequences(init, seqs, threads);
  r.val_init = mean_se(pi.loss);
  r.initial = reduce_profile(pi.values, spec, "measured", "sequence");
  r.theory = v.theory;
  r.notes = v.notes;
  r.ablation = drop_one_layer(fin, eval_batch, threads);
  r.update_cos = update_cosines(fin, eval_batch, threads);
  r.train_loss = loss_and_grad<float>(fin, train_seqs, nullptr, threads);
  return r;
}

// The seed-averaged causes of one depth (gain-dependent ones are filled by the caller).
DepthCauses causes_of(const DepthResult& d) {
  DepthCauses c;
  std::vector<double> gi, gt, ad, adi, dm, dr, uc, ins, sr, sp, tl;
  const int L = d.depth;
  for (const SeedRun& r : d.runs) {
    gi.push_back(col(r.initial, 0, "grad_var_rel"));
    gt.push_back(col(r.trained, 0, "grad_var_rel"));
    std::vector<double> a, ai;
    for (int l = 1; l <= L; ++l) a.push_back(col(r.trained, l, "ang_dist")), ai.push_back(col(r.initial, l, "ang_dist"));
    ad.push_back(mean_of(a));
    adi.push_back(mean_of(ai));
    dm.push_back(mean_of(r.ablation.increase));
    if (L >= 2) {
      const int h = L / 2;
      const std::vector<double> first(r.ablation.increase.begin(), r.ablation.increase.begin() + h);
      const std::vector<double> last(r.ablation.increase.end() - h, r.ablation.increase.end());
      const double early = mean_of(first);
      dr.push_back(early > 0 ? mean_of(last) / early : NAN);  // undefined when the early blocks cost nothing
      uc.push_back(mean_of(r.update_cos));
    }
    ins.push_back(r.curve.instability);
    sr.push_back(r.curve.spike_rate);
    sp.push_back(r.curve.spikes);
    tl.push_back(r.train_loss);
  }
  c.grad_first_init = mean_of(gi);
  c.grad_first_trained = mean_of(gt);
  c.ang_dist_mean = mean_of(ad);
  c.ang_dist_init_mean = mean_of(adi);
  c.drop_mean = mean_of(dm);
  c.drop_late_ratio = mean_of(dr);
  c.update_cos_mean = mean_of(uc);
  c.instability = mean_of(ins);
  c.spike_rate = mean_of(sr);
  c.spikes = mean_of(sp);
  c.train_loss = mean_of(tl);
  c.gap = d.val.mean - c.train_loss;
  return c;
}

nlohmann::json causes_json(const DepthCauses& c) {
  return {{"gradient_attenuation", {{"grad_var_rel_first_init", jnum(c.grad_first_init)},
                                    {"grad_var_rel_first_trained", jnum(c.grad_first_trained)}}},
          {"saturation", {{"ang_dist_mean", jnum(c.ang_dist_mean)},
                          {"ang_dist_init_mean", jnum(c.ang_dist_init_mean)},
                          {"drop_one_mean", jnum(c.drop_mean)},
                          {"drop_one_late_over_early", jnum(c.drop_late_ratio)},
                          {"update_cosine_mean", jnum(c.update_cos_mean)}}},
          {"optimisation", {{"loss_instability", jnum(c.instability)},
                            {"grad_spike_rate", jnum(c.spike_rate)},
                            {"grad_spikes", jnum(c.spikes)}}},
          {"overfitting", {{"train_loss", jnum(c.train_loss)}, {"val_minus_train", jnum(c.gap)}}},
          {"cost", {{"train_flops", jnum(c.flops)},
                    {"gain_per_param", jnum(c.gain_per_param)},
                    {"gain_per_flop", jnum(c.gain_per_flop)}}},
          {"noise", {{"samples", c.noise_samples},
                     {"var_log_q_L", jnum(c.var_log_q)},
                     {"var_log_grad_var_0", jnum(c.var_log_grad)},
                     {"L_over_d", jnum(c.depth_over_width)}}}};
}

}  // namespace

DepthStudy run_depth_study(const StackSpec& base, const StudySettings& st, const fs::path& corpus_path,
                           const fs::path& out, const StudyProgress& progress) {
  st.validate();
  base.validate();
  auto stage = [&](const std::string& s) {
    if (progress.stage) progress.stage(s);
  };
  const std::vector<std::uint64_t> seeds = st.resolved_seeds();
  const std::vector<StudyArch> arch_list = st.resolved_archs();
  // every architecture's spec first, so that a bad override is named before any training
  std::vector<StackSpec> arch_specs;
  for (const StudyArch& a : arch_list) {
    StackSpec spec = base;
    try {
      for (const std::string& set : a.sets) apply_override(spec, set);
      spec.validate();
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("archs: {}: {}", a.name, e.what()));
    }
    arch_specs.push_back(spec);
  }
  std::error_code ec;
  fs::create_directories(out / "runs", ec);
  if (ec) throw IoError(fmt::format("{}: cannot create folder: {}", (out / "runs").string(), ec.message()));
  const TrainSettings ts = st.train.resolved();
  const int T = base.tokens;
  const Corpus corpus = Corpus::load(corpus_path, ts.val_fraction, T);
  const std::span<const unsigned char> val_split(corpus.bytes.data() + corpus.train_end,
                                                 corpus.bytes.size() - corpus.train_end);
  const std::span<const unsigned char> train_split(corpus.bytes.data(), corpus.train_end);
  const Sequences seqs = cut_sequences(val_split, T, st.eval_tokens, corpus_path.string() + " (validation split)");
  Batch eval_batch;
  eval_batch.inputs = seqs.inputs;
  eval_batch.targets = seqs.targets;
  const Sequences tseqs = cut_sequences(train_split, T, st.eval_tokens, corpus_path.string() + " (training split)");
  Batch train_seqs;
  train_seqs.inputs = tseqs.inputs;
  train_seqs.targets = tseqs.targets;
  const int threads = std::max(1, ts.threads);

  // Run k of n has [k, k + 0.8) / n * kRuns of the fraction for training, the rest of its share
  // for its measurement; the Monte Carlo noise measure takes [kRuns, 1).
  constexpr double kRuns = 0.95;
  const double n_runs = static_cast<double>(arch_list.size() * st.depths.size() * seeds.size());
  auto share = [&](std::size_t k, const std::string& what, double lo, double width) {
    ProgressFn f;
    if (progress.fraction)
      f = [&progress, k, what, lo, width, n_runs](double x, std::string_view msg) {
        return progress.fraction(kRuns * (static_cast<double>(k) + lo + width * x) / n_runs,
                                 fmt::format("{}: {}", what, msg));
      };
    return f;
  };
  const bool legacy = st.legacy_layout();
  std::vector<ArchStudy> archs;
  std::size_t k = 0;
  for (std::size_t a = 0; a < arch_list.size(); ++a) {
    ArchStudy as;
    as.arch = arch_list[a];
    as.spec = arch_specs[a];
    for (const int L : st.depths) {
      StackSpec spec = arch_specs[a];
      spec.depth = L;
      spec.validate();
      const ModelConfig cfg = train_model_config(spec);
      DepthResult d;
      d.depth = L;
      for (const std::uint64_t seed : seeds) {
        const fs::path dir = legacy ? out / "runs" / fmt::format("L{}", L)
                                    : out / "runs" / as.arch.name / fmt::format("L{}", L) / fmt::format("s{}", seed);
        const std::string what = legacy ? fmt::format("depth {}", L)
                                        : fmt::format("{} depth {} seed {}", as.arch.name, L, seed);
        stage(fmt::format("{}: training into {}", what, dir.string()));
        TrainSettings tss = ts;
        tss.seed = seed;
        std::function<void(const TrainProgress&)> cb;
        if (progress.train) cb = [&, L](const TrainProgress& p) { progress.train(L, p); };
        const TrainOutcome trained = train(cfg, tss, corpus_path, dir, cb, share(k, what, 0.0, 0.8));
        for (const std::string& w : trained.warnings) stage(fmt::format("{}: warning: {}", what, w));
        stage(fmt::format("{}: measuring {} validation sequences of {} tokens", what, seqs.count(), T));
        d.runs.push_back(measure_run(spec, seed, dir, st, corpus_path, val_split, seqs, eval_batch, train_seqs,
                                     threads, share(k, what, 0.8, 0.2)));
        ++k;
      }
      d.params = load_checkpoint<float>(d.runs.front().dir / "final.safetensors").num_params();
      const SeedRun& first = d.runs.front();
      d.trained = first.trained;
      d.initial = first.initial;
      d.theory = first.theory;
      d.ablation = first.ablation;
      d.notes = first.notes;
      d.seq_loss = first.seq_loss;
      d.seconds = 0;
      std::vector<double> vm, vi;
      for (const SeedRun& r : d.runs) vm.push_back(r.val.mean), vi.push_back(r.val_init.mean), d.seconds += r.seconds;
      if (d.runs.size() >= 2) {
        d.val = mean_se(vm);
        d.val_init = mean_se(vi);
      } else {
        d.val = first.val;
        d.val_init = first.val_init;
      }
      as.results.push_back(std::move(d));
    }
    archs.push_back(std::move(as));
  }
  // finite-width noise: Monte Carlo at the study's width and context, per architecture and depth
  const double n_noise = static_cast<double>(arch_list.size() * st.depths.size());
  std::size_t kn = 0;
  for (ArchStudy& as : archs)
    for (DepthResult& d : as.results) {
      d.causes = causes_of(d);
      d.causes.depth_over_width = static_cast<double>(d.depth) / as.spec.width;
      if (st.noise_samples > 0) {
        if (progress.fraction)
          report_progress(progress.fraction, kRuns + (1 - kRuns) * static_cast<double>(kn) / n_noise,
                          fmt::format("{} depth {}: Monte Carlo noise, {} samples", as.arch.name, d.depth,
                                      st.noise_samples),
                          "study");
        stage(fmt::format("{} depth {}: Monte Carlo noise ({} samples)", as.arch.name, d.depth, st.noise_samples));
        StackSpec spec = as.spec;
        spec.depth = d.depth;
        try {
          const auto [vq, vg] = mc_noise(spec, st.noise_samples, seeds.front(), threads);
          d.causes.noise_samples = st.noise_samples;
          d.causes.var_log_q = vq;
          d.causes.var_log_grad = vg;
        } catch (const ConfigError& e) {  // a spec the Monte Carlo cannot run: the other causes stand
          as.noise_problem = fmt::format("depth {}: {}", d.depth, e.what());
          stage(fmt::format("{}: no Monte Carlo noise: {}", as.arch.name, as.noise_problem));
        }
      }
      ++kn;
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
  J["eval"] = {{"sequences", seqs.count()}, {"tokens_per_sequence", T}, {"split", "validation"},
               {"train_split_sequences", tseqs.count()}};
  J["layout"] = legacy ? "runs/L<depth>/" : "runs/<arch>/L<depth>/s<seed>/";
  J["flops_formula"] = "6 params tokens + 6 depth context width tokens (Kaplan et al. 2020), tokens = steps batch context";

  // correlations: drop-one-layer increase vs measured and predicted ang_dist / update_ratio
  struct Series {
    std::string name, metric, source;
  };
  const std::vector<Series> against = {{"ang_dist (measured)", "ang_dist", "trained"},
                                       {"update_ratio (measured)", "update_ratio", "trained"},
                                       {"ang_dist (theory)", "ang_dist", "theory"},
                                       {"update_ratio (theory)", "update_ratio", "theory"}};
  auto values_of = [&](const SeedRun& r, int L, const Series& s) {
    std::vector<double> v;
    for (int l = 1; l <= L; ++l) {
      if (s.source == "trained")
        v.push_back(col(r.trained, l, s.metric));
      else
        v.push_back(r.theory ? col(*r.theory, l, s.metric) : NAN);
    }
    return v;
  };
  const double tokens = static_cast<double>(ts.steps) * ts.batch * T;

  std::ostringstream dcsv, lcsv;
  dcsv << "arch,depth,params,seeds,val_loss,val_loss_se,init_val_loss,init_val_loss_se,gain_vs_previous,gain_se,fit,"
          "train_seconds,grad_var_rel_first_init,grad_var_rel_first_trained,ang_dist_mean,ang_dist_init_mean,"
          "drop_one_mean,drop_one_late_over_early,update_cosine_mean,loss_instability,grad_spike_rate,train_loss,"
          "val_minus_train,train_flops,gain_per_param,gain_per_flop,var_log_q_L,var_log_grad_var_0,L_over_d\n";
  lcsv << "arch,depth,seed,layer,drop_increase,drop_increase_se,ang_dist,ang_dist_se,update_ratio,update_ratio_se,"
          "ang_dist_theory,update_ratio_theory,ang_dist_init,update_ratio_init,eff_rank,eff_rank_init,"
          "grad_var_rel,grad_var_rel_init,rho,rho_init,update_cosine_next\n";
  const std::vector<std::string> change_metrics = {"q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var_rel"};
  nlohmann::json jarchs = nlohmann::json::array();
  for (ArchStudy& as : archs) {
    std::vector<DepthResult>& results = as.results;
    nlohmann::json JA;
    JA["name"] = as.arch.name;
    JA["sets"] = as.arch.sets;
    JA["spec"] = spec_to_json(as.spec);
    // gains: paired by seed with 2 seeds or more, else by sequence
    for (std::size_t i = 1; i < results.size(); ++i) {
      DepthResult& r = results[i];
      const DepthResult& p = results[i - 1];
      std::vector<double> a, b;
      if (seeds.size() >= 2) {
        for (std::size_t s = 0; s < seeds.size(); ++s) a.push_back(p.runs[s].val.mean), b.push_back(r.runs[s].val.mean);
      } else {
        a = p.seq_loss;
        b = r.seq_loss;
      }
      r.gain = paired_gain(a, b);
    }
    for (std::size_t i = 0; i < results.size(); ++i) {
      DepthResult& r = results[i];
      r.causes.flops = training_flops(static_cast<double>(r.params), r.depth, T, as.spec.width, tokens);
      if (i > 0) {
        const DepthResult& p = results[i - 1];
        r.causes.gain_per_param = r.gain.mean / (static_cast<double>(r.params) - static_cast<double>(p.params));
        r.causes.gain_per_flop = r.gain.mean / (r.causes.flops - p.causes.flops);
      }
    }
    std::vector<double> dd, vl, lod, vq, vg;
    for (const auto& r : results) {
      dd.push_back(r.depth), vl.push_back(r.val.mean);
      lod.push_back(r.causes.depth_over_width), vq.push_back(r.causes.var_log_q), vg.push_back(r.causes.var_log_grad);
    }
    as.noise_k_q = fit_through_origin(lod, vq);
    as.noise_k_grad = fit_through_origin(lod, vg);
    if (results.size() >= 3) as.fit = fit_power_law(dd, vl);
    if (as.fit)
      JA["fit"] = {{"form", "a + b L^-c"}, {"a", as.fit->a},     {"b", as.fit->b},
                   {"c", as.fit->c},       {"rss", as.fit->rss}, {"degenerate", as.fit->degenerate}};
    if (results.size() >= 2) {
      KneeInput ki;
      ki.depth = dd;
      ki.value = vl;
      ki.fraction = st.knee_fraction;
      bool se_ok = true;
      for (std::size_t i = 1; i < results.size(); ++i) {
        ki.gain_se.push_back(results[i].gain.se);
        se_ok = se_ok && std::isfinite(results[i].gain.se);
      }
      if (!se_ok) ki.gain_se.clear();  // no standard error: the fraction rule alone
      as.knee = find_knee(ki);
      JA["knee"] = {{"found", as.knee->found},
                    {"depth", jnum(as.knee->knee_depth)},
                    {"gain", as.knee->gain},
                    {"gain_se", as.knee->gain_se},
                    {"threshold", as.knee->threshold},
                    {"rule", as.knee->rule}};
      // The same knee per added layer (each doubling's gain and se divided by the layers it
      // adds), the definition the predicted knee uses, so the two compare like for like.
      ki.per_layer = true;
      as.knee_per_layer = find_knee(ki);
      JA["knee_per_layer"] = {{"found", as.knee_per_layer->found},
                              {"depth", jnum(as.knee_per_layer->knee_depth)},
                              {"gain", as.knee_per_layer->gain},
                              {"threshold", as.knee_per_layer->threshold},
                              {"rule", as.knee_per_layer->rule}};
    }
    // The theory's depth-returns predictor (docs/theory.md "Depth returns"): from the init-time
    // theory of this architecture at the study's largest depth alone (the spec's own input, not
    // fitted to any trained model), effective depth on the grid 1, 2, 4, ..., L and its knee.
    JA["predicted"] = nullptr;
    {
      StackSpec ps = as.spec;
      ps.depth = results.back().depth;
      try {
        const theory::DepthReturns dr = theory::depth_returns(ps, theory::TheorySettings{}, st.knee_fraction);
        PredictedCurve pc;
        pc.source = "theory: effective depth";
        for (std::size_t i = 0; i < dr.depth.size() && i < dr.effective_depth.size(); ++i)
          pc.depth.push_back(dr.depth[i]), pc.value.push_back(dr.effective_depth[i]);
        if (dr.knee.found) pc.knee_depth = dr.knee.knee_depth;
        JA["predicted"] = {{"source", pc.source},
                           {"depth", pc.depth},
                           {"effective_depth", pc.value},
                           {"knee_depth", pc.knee_depth ? nlohmann::json(*pc.knee_depth) : nlohmann::json(nullptr)},
                           {"knee_rule", dr.knee.rule},
                           {"curve", dr.curve},
                           {"note", dr.note}};
        as.predicted = std::move(pc);
      } catch (const Error& e) {  // a spec the theory cannot run: the measured study stands
        as.predictor_problem = e.what();
        stage(fmt::format("{}: no depth-returns prediction: {}", as.arch.name, as.predictor_problem));
      }
    }
    JA["noise_fit"] = {{"form", "var = k L / d (Hanin & Rolnick 2018)"},
                       {"k_log_q_L", jnum(as.noise_k_q)},
                       {"k_log_grad_var_0", jnum(as.noise_k_grad)},
                       {"problem", as.noise_problem}};

    nlohmann::json corr = nlohmann::json::array();
    std::vector<std::vector<double>> pooled_x(against.size());
    std::vector<double> pooled_drop;
    for (const auto& r : results) {
      std::vector<double> depth_drop;
      std::vector<std::vector<double>> depth_x(against.size());
      for (const SeedRun& run : r.runs) {
        depth_drop.insert(depth_drop.end(), run.ablation.increase.begin(), run.ablation.increase.end());
        for (std::size_t q = 0; q < against.size(); ++q) {
          const std::vector<double> x = values_of(run, r.depth, against[q]);
          depth_x[q].insert(depth_x[q].end(), x.begin(), x.end());
        }
      }
      if (r.depth >= 2) {
        pooled_drop.insert(pooled_drop.end(), depth_drop.begin(), depth_drop.end());
        for (std::size_t q = 0; q < against.size(); ++q)
          pooled_x[q].insert(pooled_x[q].end(), depth_x[q].begin(), depth_x[q].end());
      }
      if (r.depth < 3) continue;
      for (std::size_t q = 0; q < against.size(); ++q) {
        try {
          as.per_depth.push_back({r.depth, against[q].name, spearman(depth_drop, depth_x[q])});
          corr.push_back({{"depth", r.depth},
                          {"against", against[q].name},
                          {"spearman", corr_json(as.per_depth.back().spearman)}});
        } catch (const ConfigError&) {  // fewer than 3 finite pairs (e.g. theory missing)
        }
      }
    }
    nlohmann::json pooled = nlohmann::json::array();
    for (std::size_t q = 0; q < against.size(); ++q) {
      try {
        as.pooled.push_back({0, against[q].name, spearman(pooled_drop, pooled_x[q])});
        pooled.push_back({{"against", against[q].name}, {"spearman", corr_json(as.pooled.back().spearman)}});
      } catch (const ConfigError&) {
      }
    }
    JA["correlations"] = {{"per_depth", corr}, {"pooled", pooled}};

    nlohmann::json depths = nlohmann::json::array();
    for (std::size_t i = 0; i < results.size(); ++i) {
      const DepthResult& r = results[i];
      const DepthCauses& c = r.causes;
      dcsv << as.arch.name << "," << r.depth << "," << r.params << "," << r.runs.size() << "," << csv_num(r.val.mean)
           << "," << csv_num(r.val.se) << "," << csv_num(r.val_init.mean) << "," << csv_num(r.val_init.se) << ","
           << csv_num(r.gain.mean) << "," << csv_num(r.gain.se) << "," << csv_num(as.fit ? (*as.fit)(r.depth) : NAN)
           << "," << csv_num(r.seconds) << "," << csv_num(c.grad_first_init) << "," << csv_num(c.grad_first_trained)
           << "," << csv_num(c.ang_dist_mean) << "," << csv_num(c.ang_dist_init_mean) << "," << csv_num(c.drop_mean)
           << "," << csv_num(c.drop_late_ratio) << "," << csv_num(c.update_cos_mean) << "," << csv_num(c.instability)
           << "," << csv_num(c.spike_rate) << "," << csv_num(c.train_loss) << "," << csv_num(c.gap) << ","
           << csv_num(c.flops) << "," << csv_num(c.gain_per_param) << "," << csv_num(c.gain_per_flop) << ","
           << csv_num(c.var_log_q) << "," << csv_num(c.var_log_grad) << "," << csv_num(c.depth_over_width) << "\n";
      nlohmann::json runs = nlohmann::json::array();
      for (const SeedRun& run : r.runs) {
        nlohmann::json change = nlohmann::json::object();
        for (const auto& m : change_metrics) {
          std::vector<double> diff;
          for (int l = 0; l <= r.depth; ++l) diff.push_back(col(run.trained, l, m) - col(run.initial, l, m));
          change[m] = diff;
        }
        for (int l = 1; l <= r.depth; ++l) {
          lcsv << as.arch.name << "," << r.depth << "," << run.seed << "," << l << ","
               << csv_num(run.ablation.increase[l - 1]) << "," << csv_num(run.ablation.increase_se[l - 1]) << ","
               << csv_num(col(run.trained, l, "ang_dist")) << "," << csv_num(col(run.trained, l, "ang_dist_se")) << ","
               << csv_num(col(run.trained, l, "update_ratio")) << ","
               << csv_num(col(run.trained, l, "update_ratio_se")) << ","
               << csv_num(run.theory ? col(*run.theory, l, "ang_dist") : NAN) << ","
               << csv_num(run.theory ? col(*run.theory, l, "update_ratio") : NAN) << ","
               << csv_num(col(run.initial, l, "ang_dist")) << "," << csv_num(col(run.initial, l, "update_ratio"))
               << "," << csv_num(col(run.trained, l, "eff_rank")) << "," << csv_num(col(run.initial, l, "eff_rank"))
               << "," << csv_num(col(run.trained, l, "grad_var_rel")) << ","
               << csv_num(col(run.initial, l, "grad_var_rel")) << "," << csv_num(col(run.trained, l, "rho")) << ","
               << csv_num(col(run.initial, l, "rho")) << ","
               << csv_num(l < r.depth ? run.update_cos[l - 1] : NAN) << "\n";
        }
        runs.push_back({{"seed", run.seed},
                        {"dir", fs::relative(run.dir, out).generic_string()},
                        {"val_loss", run.val.mean},
                        {"val_loss_se", run.val.se},
                        {"init_val_loss", run.val_init.mean},
                        {"train_loss", jnum(run.train_loss)},
                        {"train_seconds", jnum(run.seconds)},
                        {"curve", {{"loss_instability", jnum(run.curve.instability)},
                                   {"grad_spikes", run.curve.spikes},
                                   {"steps_judged", run.curve.judged},
                                   {"grad_spike_rate", jnum(run.curve.spike_rate)}}},
                        {"ablation",
                         {{"base_loss", run.ablation.base_loss},
                          {"increase", run.ablation.increase},
                          {"increase_se", run.ablation.increase_se}}},
                        {"update_cosine", run.update_cos},
                        {"trained", run.trained.to_json()},
                        {"initial", run.initial.to_json()},
                        {"theory", run.theory ? run.theory->to_json() : nlohmann::json(nullptr)},
                        {"trained_minus_initial", change},
                        {"notes", run.notes}});
      }
      depths.push_back({{"depth", r.depth},
                        {"params", r.params},
                        {"val_loss", r.val.mean},
                        {"val_loss_se", jnum(r.val.se)},
                        {"init_val_loss", r.val_init.mean},
                        {"init_val_loss_se", jnum(r.val_init.se)},
                        {"gain_vs_previous", jnum(r.gain.mean)},
                        {"gain_vs_previous_se", jnum(r.gain.se)},
                        {"gain_paired_by", seeds.size() >= 2 ? "seed" : "sequence"},
                        {"train_seconds", jnum(r.seconds)},
                        {"causes", causes_json(r.causes)},
                        {"runs", runs}});
    }
    JA["depths"] = depths;
    if (!as.predictor_problem.empty()) JA["predictor_problem"] = as.predictor_problem;
    jarchs.push_back(JA);
  }
  J["archs"] = jarchs;

  write_file_atomic(out / "depth.csv", dcsv.str());
  write_file_atomic(out / "layers.csv", lcsv.str());
  write_file_atomic(out / "study.json", J.dump(1) + "\n");
  DepthStudy o;
  o.folder = out;
  o.base = base;
  o.settings = st;
  o.settings.train = ts;
  o.train = ts;
  o.corpus_path = corpus.path;
  o.corpus_hash = corpus.hash;
  o.corpus_bytes = corpus.bytes.size();
  o.sequences = seqs.count();
  o.tokens_per_sequence = T;
  o.seeds = seeds;
  o.archs = std::move(archs);
  return o;
}

}  // namespace sigprop::validate
