// `sigprop validate`: measured metrics of a language model and their predictions (measure.hpp).
#include "validate/measure.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "core/compare.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/memory.hpp"
#include "core/parallel.hpp"
#include "core/spec.hpp"
#include "core/stats.hpp"
#include "mc/engine.hpp"
#include "sigprop/version.hpp"
#include "sim/reference.hpp"  // kMaxSamples
#include "validate/import.hpp"
#include "validate/train.hpp"

namespace sigprop::validate {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Adds grad_var_rel (and its _se when grad_var has one) = grad_var_l / grad_var_L to a
/// theory or Monte Carlo profile: their Delta_L is iid N(0, 1), E grad_var_L = 1, and the ratio
/// of the means is their prediction of the measured ratio.
void add_grad_var_rel(Profile& p) {
  const int L = p.layers() - 1;
  const double top = p.at(L, "grad_var");
  const bool se = p.has("grad_var_se");
  p.columns.push_back("grad_var_rel");
  if (se) p.columns.push_back("grad_var_rel_se");
  for (int l = 0; l <= L; ++l) {
    const double g = p.rows[l][p.column("grad_var")];
    p.rows[l].push_back(g / top);
    if (se) p.rows[l].push_back(l == L ? 0.0 : p.rows[l][p.column("grad_var_se")] / top);
  }
}

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

const std::vector<std::string>& measured_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = metric_names();
    n.push_back("grad_var_rel");
    return n;
  }();
  return names;
}

Sequences cut_sequences(std::span<const unsigned char> corpus, int T, long long tokens,
                        const std::string& corpus_name) {
  if (tokens < 1) throw ConfigError(fmt::format("tokens: must be >= 1, got {}", tokens));
  const long long n = tokens / T;
  if (n < 2)
    throw ConfigError(fmt::format("tokens = {}: fewer than 2 sequences of T = {} tokens (a standard error needs at "
                                  "least 2; use tokens >= {} or a smaller seq_len)",
                                  tokens, T, 2 * T));
  const long long B = static_cast<long long>(corpus.size());
  if (B < T + 1)
    throw ConfigError(fmt::format("{}: {} bytes is shorter than one sequence of T = {} tokens (T + 1 bytes with the "
                                  "last target)",
                                  corpus_name, B, T));
  const long long room = (B - 1) / T;
  if (n > room)
    throw ConfigError(fmt::format("{}: {} bytes hold {} sequences of T = {} tokens, tokens = {} asks for {}",
                                  corpus_name, B, room, T, tokens, n));
  Sequences s;
  s.T = T;
  const long long stride = (B - 1) / n;  // >= T: the windows do not overlap
  for (long long i = 0; i < n; ++i) {
    const std::size_t o = static_cast<std::size_t>(i * stride);
    s.offsets.push_back(o);
    std::vector<int> in(static_cast<std::size_t>(T)), tg(static_cast<std::size_t>(T));
    for (int t = 0; t < T; ++t) {
      in[static_cast<std::size_t>(t)] = corpus[o + static_cast<std::size_t>(t)];
      tg[static_cast<std::size_t>(t)] = corpus[o + static_cast<std::size_t>(t) + 1];
    }
    s.inputs.push_back(std::move(in));
    s.targets.push_back(std::move(tg));
  }
  return s;
}

template <class Real>
PerSequence measure_sequences(const Model<Real>& m, const Sequences& seqs, int threads, const ProgressFn& progress,
                              std::string_view engine) {
  const int n = seqs.count(), L = m.cfg.arch.spec.depth;
  PerSequence out;
  out.values.assign(static_cast<std::size_t>(n), {});
  out.loss.assign(static_cast<std::size_t>(n), kNaN);
  std::mutex progress_mutex;
  int done = 0;
  parallel_for(n, threads, [&](int i) {
    const auto& in = seqs.inputs[static_cast<std::size_t>(i)];
    const auto& tg = seqs.targets[static_cast<std::size_t>(i)];
    const double T = static_cast<double>(in.size());
    const Trace<Real> tr = forward(m, in);
    std::vector<Mat<Real>> deltas;
    backward(m, tr, in, tg, 1.0 / T, static_cast<Model<Real>*>(nullptr), &deltas);  // loss = mean CE
    auto& v = out.values[static_cast<std::size_t>(i)];
    v.assign(static_cast<std::size_t>(L) + 1, std::vector<double>(kMeasuredCols, kNaN));
    sim::stream_metrics(tr.X, L, v);
    const double d = static_cast<double>(m.cfg.arch.spec.width);
    std::vector<double> g(static_cast<std::size_t>(L) + 1);
    for (int l = 0; l <= L; ++l)
      g[static_cast<std::size_t>(l)] =
          deltas[static_cast<std::size_t>(l)].template cast<double>().squaredNorm() / (T * d);
    for (int l = 0; l <= L; ++l) {
      v[l][sim::kGrad] = g[static_cast<std::size_t>(l)];
      v[l][kGradRel] = g[static_cast<std::size_t>(l)] / g[static_cast<std::size_t>(L)];
    }
    out.loss[static_cast<std::size_t>(i)] = sequence_loss(tr, tg) / T;
    if (progress) {  // serialized, and never called again once it said stop (done < 0)
      std::lock_guard<std::mutex> lock(progress_mutex);
      if (done < 0) return;
      const int j = ++done;
      done = -1;  // until the callback returns
      report_progress(progress, static_cast<double>(j) / n, fmt::format("sequence {}/{}", j, n), engine);
      done = j;
    }
  });
  return out;
}

Profile reduce_profile(const std::vector<std::vector<std::vector<double>>>& per, const StackSpec& spec,
                       const std::string& engine, const std::string& unit) {
  const auto& names = measured_metric_names();
  const int M = static_cast<int>(names.size());
  std::vector<std::string> cols = names;
  for (const auto& n : names) cols.push_back(n + "_se");
  Profile p = Profile::make(spec, engine, cols);
  const int n = static_cast<int>(per.size());
  for (int l = 0; l <= spec.depth; ++l)
    for (int c = 0; c < M; ++c) {
      int finite = 0;
      for (int i = 0; i < n; ++i) finite += std::isfinite(per[i][l][c]) ? 1 : 0;
      if (finite == 0) continue;  // undefined (update_ratio, ang_dist at l = 0)
      if (finite < n) {
        p.warnings.push_back(fmt::format("{} at layer {} is non-finite for {} of {} {}s: null", names[c], l,
                                         n - finite, n, unit));
        continue;
      }
      std::vector<double> x(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = per[i][l][c];
      const MeanSe r = mean_se(x);
      p.rows[l][c] = r.mean;
      p.rows[l][M + c] = r.se;
    }
  return p;
}

std::vector<std::string> compared_metrics(const std::string& prediction) {
  std::vector<std::string> out;
  for (const auto& n : measured_metric_names())
    if (!(n == "grad_var" && prediction != "init_ensemble")) out.push_back(n);
  return out;
}

void compute_agreement(Validation& v) {
  struct Pred {
    std::string name;
    const Profile* p;
    double sd_factor;            ///< sd = se * sd_factor (sqrt of the ensemble size)
    const Profile* sd_from;      ///< another profile whose spread stands in (theory: the Monte Carlo's)
    double sd_from_factor;
  };
  std::vector<Pred> preds;
  const Profile* sim = v.simulate ? &*v.simulate : nullptr;
  const double sim_factor = sim ? std::sqrt(sim->settings.value("samples", 1.0)) : 0.0;
  if (v.init_ensemble)
    preds.push_back({"init_ensemble", &*v.init_ensemble, std::sqrt(v.init_ensemble->settings.value("models", 1.0)),
                     nullptr, 0.0});
  if (sim) preds.push_back({"simulate", sim, sim_factor, nullptr, 0.0});
  if (v.theory) preds.push_back({"theory", &*v.theory, 0.0, sim, sim_factor});
  v.agreement = nlohmann::json::array();
  v.summary = nlohmann::json::array();
  const Profile& m = v.measured;
  for (const Pred& pr : preds) {
    for (const std::string& metric : compared_metrics(pr.name)) {
      if (!pr.p->has(metric)) continue;
      int count = 0, within = 0, worst_layer = -1;
      double worst = 0, worst_z = 0;
      bool any_pi = false;
      for (const LayerDiff& d : compare(m, *pr.p, metric)) {
        const int l = d.layer;
        const double se_p = std::isfinite(d.se_b) ? d.se_b : 0.0;
        double sd_p = kNaN;
        if (pr.sd_factor > 0)
          sd_p = se_p * pr.sd_factor;
        else if (pr.sd_from && pr.sd_from->has(metric + "_se"))
          sd_p = pr.sd_from->at(l, metric + "_se") * pr.sd_from_factor;
        const double sem = std::isfinite(d.se_a) ? d.se_a : 0.0;
        const double z = d.z;
        const double z_pi = z_ratio(d.diff, std::sqrt(sd_p * sd_p + se_p * se_p + sem * sem));
        v.agreement.push_back({{"prediction", pr.name},
                               {"metric", metric},
                               {"layer", l},
                               {"measured", d.a},
                               {"measured_se", num(d.se_a)},
                               {"predicted", d.b},
                               {"predicted_se", se_p},
                               {"predicted_sd", num(sd_p)},
                               {"diff", d.diff},
                               {"z", num(z)},
                               {"z_pi", num(z_pi)}});
        ++count;
        const double zz = std::isnan(z_pi) ? z : z_pi;
        any_pi = any_pi || !std::isnan(z_pi);
        if (std::abs(zz) <= 3) ++within;
        if (!(std::abs(zz) <= worst)) {
          worst = std::abs(zz);
          worst_layer = l;
        }
        worst_z = std::max(worst_z, std::abs(z));
      }
      if (count == 0) continue;
      v.summary.push_back({{"prediction", pr.name},
                           {"metric", metric},
                           {"layers", count},
                           {"statistic", any_pi ? "z_pi" : "z"},
                           {"max_abs", num(worst)},
                           {"max_abs_layer", worst_layer},
                           {"frac_within_3", static_cast<double>(within) / count},
                           {"max_abs_z", num(worst_z)}});
    }
  }
}

nlohmann::json Validation::to_json(const std::string& checkpoint) const {
  nlohmann::json j;
  j["format"] = "sigprop-validate";
  j["format_version"] = 1;
  j["version"] = kVersion;
  j["checkpoint"] = checkpoint;
  j["model"] = model;
  j["measured"] = measured.to_json();
  auto opt = [](const std::optional<Profile>& p) { return p ? p->to_json() : nlohmann::json(nullptr); };
  j["predicted"] = {{"theory", opt(theory)}, {"simulate", opt(simulate)}, {"init_ensemble", opt(init_ensemble)}};
  j["agreement"] = agreement;
  j["summary"] = summary;
  j["notes"] = notes;
  return j;
}

namespace {

/// The checks of validate's settings that need the model, before any work (the ensemble's memory).
template <class Real>
void check_validate_settings(const ModelConfig& cfg, const ValidateSettings& st, int seq_len) {
  const StackSpec& arch = cfg.arch.spec;
  if (seq_len < 0) throw ConfigError(fmt::format("seq_len: must be >= 0 (0 = the context), got {}", seq_len));
  if (st.ensemble < 0) throw ConfigError(fmt::format("ensemble: must be >= 0, got {}", st.ensemble));
  // Checked here, not left to the simulate engine: its ConfigErrors become "no simulate
  // prediction" notes (architectures it cannot run), which must not hide a bad option.
  if (st.samples < 0 || st.samples > sim::kMaxSamples)
    throw ConfigError(fmt::format("samples: must be in [0, {}] (0 = no simulate prediction), got {}",
                                  sim::kMaxSamples, st.samples));
  if (st.threads < 0) throw ConfigError(fmt::format("threads: must be >= 0 (0 = all cores), got {}", st.threads));
  const int T = seq_len > 0 ? std::min(seq_len, arch.tokens) : arch.tokens;
  if (T < 2) throw ConfigError(fmt::format("seq_len: T = {} tokens, at least 2 are needed", T));
  if (st.ensemble > 0) {
    // Before any work: per ensemble member a table of layer means; per worker one model and its traces.
    using U = std::uint64_t;
    const U rows = static_cast<U>(arch.depth) + 1;
    const U workers = static_cast<U>(resolve_threads(st.threads, st.ensemble));
    const U per_model = sat_mul(
        {sat_add({param_count(cfg), sat_mul({rows, static_cast<U>(T), static_cast<U>(arch.width), 4})}), sizeof(Real)});
    require_memory(sat_add({sat_mul({static_cast<U>(st.ensemble), sat_add({sat_mul({rows, kMeasuredCols * 8 + 32}), 64})}),
                            sat_mul({workers, per_model})}),
                   fmt::format("the init ensemble of {} models", st.ensemble),
                   fmt::format("ensemble = {}, stack.depth = {} and the model's size", st.ensemble, arch.depth));
  }
}

/// The first key of spec_to_json where a and b differ ("stack.width"), and both values; "" when equal.
std::string first_difference(const StackSpec& a, const StackSpec& b, std::string& va, std::string& vb) {
  const nlohmann::json ja = spec_to_json(a), jb = spec_to_json(b);
  for (const auto& [table, keys] : ja.items())
    for (const auto& [key, value] : keys.items())
      if (value != jb.at(table).at(key)) {
        va = value.dump();
        vb = jb.at(table).at(key).dump();
        return table + "." + key;
      }
  return "";
}

}  // namespace

template <class Real>
MeasureEngine<Real>::MeasureEngine(const Model<Real>& m, std::span<const unsigned char> corpus, MeasureSettings st)
    : model_(&m), st_(std::move(st)) {
  init(corpus);
}

template <class Real>
MeasureEngine<Real>::MeasureEngine(Model<Real>&& m, std::span<const unsigned char> corpus, MeasureSettings st)
    : owned_(std::move(m)), st_(std::move(st)) {
  model_ = &*owned_;
  init(corpus);
}

template <class Real>
std::unique_ptr<MeasureEngine<Real>> MeasureEngine<Real>::from_files(const std::string& checkpoint,
                                                                     const std::string& corpus, MeasureSettings st,
                                                                     const std::string& checkpoint_key,
                                                                     const std::string& corpus_key) {
  // A corpus that is missing, a device or too big is named before the model is loaded.
  try {
    check_regular_file(corpus, "corpus", kMaxCorpusBytes);
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("{}: {}", corpus_key, e.what()));
  }
  std::error_code ec;
  if (!std::filesystem::exists(checkpoint, ec))
    throw ConfigError(fmt::format("{} {}: no such file or folder", checkpoint_key, checkpoint));
  Model<Real> m = [&] {
    try {
      return load_model<Real>(checkpoint);  // a sigprop checkpoint or a Hugging Face folder
    } catch (const IoError& e) {
      throw ConfigError(fmt::format("{}: {}", checkpoint_key, e.what()));
    }
  }();
  std::vector<unsigned char> bytes;
  try {
    bytes = read_corpus_bytes(corpus);
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("{}: {}", corpus_key, e.what()));
  }
  if (st.checkpoint.empty()) st.checkpoint = checkpoint;
  if (st.corpus.empty()) st.corpus = corpus;
  return std::make_unique<MeasureEngine>(std::move(m), bytes, std::move(st));
}

template <class Real>
void MeasureEngine<Real>::init(std::span<const unsigned char> corpus) {
  const ModelConfig& cfg = model_->cfg;
  if (st_.seq_len < 0) throw ConfigError(fmt::format("seq_len: must be >= 0 (0 = the context), got {}", st_.seq_len));
  if (st_.threads < 0) throw ConfigError(fmt::format("threads: must be >= 0 (0 = all cores), got {}", st_.threads));
  const int T = st_.seq_len > 0 ? std::min(st_.seq_len, cfg.arch.spec.tokens) : cfg.arch.spec.tokens;
  if (T < 2) throw ConfigError(fmt::format("seq_len: T = {} tokens, at least 2 are needed", T));
  const std::string corpus_name = st_.corpus.empty() ? "<corpus>" : st_.corpus;
  for (std::size_t i = 0; i < corpus.size(); ++i)
    if (corpus[i] >= cfg.vocab)
      throw ConfigError(fmt::format("{}: byte {} at offset {} is outside the model's vocabulary [0, {}) (validate "
                                    "feeds bytes as token ids)",
                                    corpus_name, corpus[i], i, cfg.vocab));
  seqs_ = cut_sequences(corpus, T, st_.tokens, corpus_name);
  corpus_bytes_ = corpus.size();
  spec_ = cfg.arch.spec;
  spec_.tokens = T;
}

template <class Real>
Profile MeasureEngine<Real>::run(const StackSpec& spec) {
  {
    StackSpec want = spec_, got = spec;
    got.q0 = want.q0;  // measured, not an input
    got.rho0 = want.rho0;
    std::string vg, vw;
    const std::string key = first_difference(got, want, vg, vw);
    if (!key.empty())
      throw ConfigError(
          fmt::format("{}: the spec has {}, the measured model{} has {} (the measurement runs the "
                      "model's own architecture at T = {} tokens)",
                      key, vg, st_.checkpoint.empty() ? "" : " " + st_.checkpoint, vw, spec_.tokens));
  }
  const int n = seqs_.count(), T = seqs_.T;
  PerSequence per = measure_sequences(*model_, seqs_, st_.threads, progress_callback(), name());
  Profile p = reduce_profile(per.values, spec_, "measured", "sequence");
  // input.q0 and input.rho0 of the profile's spec: the measured q and rho of X_0
  StackSpec s = spec_;
  s.q0 = p.at(0, "q");
  s.rho0 = std::clamp(p.at(0, "rho"), 0.0, 1.0);
  p.spec = s;
  const MeanSe loss = mean_se(per.loss);
  loss_ = std::move(per.loss);
  p.settings = {{"engine", "measured"},
                {"checkpoint", st_.checkpoint},
                {"corpus", st_.corpus},
                {"corpus_bytes", corpus_bytes_},
                {"tokens", static_cast<long long>(n) * T},
                {"sequences", n},
                {"seq_len", T},
                {"offsets", fmt::format("o_i = i * {} (floor((bytes - 1) / sequences)), i = 0..{}",
                                        n > 1 ? seqs_.offsets[1] : 0, n - 1)},
                {"loss", "mean cross-entropy of each sequence (nats per token); Delta_l = dloss/dX_l"},
                {"grad_var_rel", "grad_var_l / grad_var_L per sequence"},
                {"spec_input", "input.q0 and input.rho0 of the spec are the measured q and rho of X_0"},
                {"precision", std::is_same_v<Real, float> ? "float" : "double"},
                {"version", kVersion}};
  p.extras["loss"] = loss.mean;
  p.extras["loss_se"] = loss.se;
  return p;
}

template <class Real>
Validation validate_model(const Model<Real>& m, std::span<const unsigned char> corpus, const ValidateSettings& st,
                          const ProgressFn& progress) {
  check_validate_settings<Real>(m.cfg, st, st.seq_len);
  MeasureEngine<Real> measure(m, corpus, MeasureSettings{st.tokens, st.seq_len, st.threads, st.checkpoint, st.corpus});
  return validate_model(measure, st, progress);
}

template <class Real>
Validation validate_model(MeasureEngine<Real>& measure, const ValidateSettings& st, const ProgressFn& progress) {
  const Model<Real>& m = measure.model();
  const ModelConfig& cfg = m.cfg;
  check_validate_settings<Real>(cfg, st, measure.settings().seq_len);
  const int T = measure.spec().tokens;
  Validation v;
  v.model = cfg.to_json();
  if (cfg.vocab != 256)
    v.notes.push_back(fmt::format("the model's vocabulary has {} entries; validate feeds the corpus bytes as token "
                                  "ids (the byte-level tokenizer), which only means text for a byte-level model",
                                  cfg.vocab));
  const Sequences& seqs = measure.sequences();

  // Progress: the stages that run share [0, 1] equally; stage k's own fraction f maps to (k + f) / stages.
  const bool extended = !(cfg.arch.ext == sim::BlockExt{});
  const int stages = 1 + (extended ? 0 : int{st.theory} + int{st.samples > 0} + int{st.ensemble > 0});
  int stage = 0;
  auto stage_progress = [&](int k) {
    ProgressFn f;
    if (progress)
      f = [&progress, k, stages](double x, std::string_view msg) { return progress((k + x) / stages, msg); };
    return f;
  };

  // the model itself
  measure.set_progress(stage_progress(0));
  try {
    v.measured = measure.run(measure.spec());
  } catch (...) {
    measure.set_progress(nullptr);  // the callback refers to this call's progress
    throw;
  }
  measure.set_progress(nullptr);
  v.sequence_loss = measure.sequence_loss();
  // the spec every prediction runs: the architecture at T tokens, input fitted to X_0
  const StackSpec spec = v.measured.spec;
  const double rho0 = v.measured.at(0, "rho");
  if (spec.rho0 != rho0)
    v.notes.push_back(
        fmt::format("the measured rho of X_0 = {:.6g} is outside [0, 1]: the predictions use input.rho0 "
                    "= {}",
                    rho0, spec.rho0));

  if (extended) {
    v.notes.push_back(
        "the model has architecture extensions (rotary, gated MLP, grouped KV heads, attention biases or parallel "
        "blocks) that the theory and the Monte Carlo (MODEL.md §1) do not model, and that Model::initial cannot "
        "initialise: no predictions");
  } else {
    if (st.theory) {
      try {
        theory::TheoryEngine eng(st.theory_settings);
        eng.set_progress(stage_progress(++stage));
        v.theory = eng.run(spec);
        add_grad_var_rel(*v.theory);
      } catch (const ConfigError& e) {
        v.notes.push_back(fmt::format("no theory prediction: {}", e.what()));
      }
    }
    if (st.samples > 0) {
      try {
        sim::SimSettings ss;
        ss.samples = st.samples;
        ss.seed = st.seed;
        ss.backend = "cpu";
        ss.precision = "double";
        ss.weights_sampling = "explicit";  // unchanged since before conditional sampling (equal in law)
        ss.threads = st.threads;
        sim::MonteCarloEngine eng(ss);
        eng.set_progress(stage_progress(++stage));
        v.simulate = eng.run(spec);
        add_grad_var_rel(*v.simulate);
      } catch (const ConfigError& e) {
        v.notes.push_back(fmt::format("no simulate prediction: {}", e.what()));
      }
    }
    if (v.theory || v.simulate)
      v.notes.push_back(fmt::format("theory and simulate run the model's architecture at T = {} tokens with input.q0 "
                                    "= {:.6g} and input.rho0 = {:.6g}, the measured q and rho of X_0; their X_0 is "
                                    "Gaussian with equal correlations, the embedding of real text is not",
                                    T, spec.q0, spec.rho0));
    if (v.simulate)
      v.notes.push_back("simulate's spread (sd = se sqrt(samples)) is that of one random stack on one random input; "
                        "the measured value averages the sequences of one model, so its z_pi is conservative");
    if (v.theory)
      v.notes.push_back(v.simulate ? "the theory (d -> infinity) has no finite-width spread: its z_pi borrows "
                                     "simulate's sd at the model's width"
                                   : "the theory (d -> infinity) has no finite-width spread: without simulate "
                                     "(samples = 0) it has z only, not z_pi");
    if (v.theory || v.simulate)
      v.notes.push_back("theory and simulate draw Delta_L iid N(0, 1), not the loss gradient: they predict grad_var_rel "
                        "(= their grad_var_l / grad_var_L), and grad_var is compared with the init ensemble only");
    if (st.ensemble > 0) {
      bool ok = true;
      try {
        (void)Model<Real>::initial(cfg, st.seed + 1);
      } catch (const ConfigError& e) {
        ok = false;
        v.notes.push_back(fmt::format("no init ensemble: {}", e.what()));
      }
      if (ok) {
        const int S = st.ensemble;
        std::vector<std::vector<std::vector<double>>> means(static_cast<std::size_t>(S));
        std::vector<double> losses(static_cast<std::size_t>(S));
        std::vector<char> same(static_cast<std::size_t>(S), 0);
        const ProgressFn member_progress = stage_progress(++stage);
        std::mutex progress_mutex;
        int done = 0;
        parallel_for(S, st.threads, [&](int k) {
          const Model<Real> mk = Model<Real>::initial(cfg, st.seed + 1 + static_cast<uint64_t>(k));
          same[static_cast<std::size_t>(k)] = mk.wte == m.wte ? 1 : 0;
          const PerSequence pk = measure_sequences(mk, seqs, 1);
          const Profile pr = reduce_profile(pk.values, spec, "init_model", "sequence");
          auto& mean = means[static_cast<std::size_t>(k)];
          mean.assign(pr.rows.size(), std::vector<double>(kMeasuredCols));
          for (std::size_t l = 0; l < pr.rows.size(); ++l)
            for (int c = 0; c < kMeasuredCols; ++c) mean[l][c] = pr.rows[l][c];
          losses[static_cast<std::size_t>(k)] = mean_se(pk.loss).mean;
          if (member_progress) {  // serialized, and never called again once it said stop (done < 0)
            std::lock_guard<std::mutex> lock(progress_mutex);
            if (done < 0) return;
            const int j = ++done;
            done = -1;  // until the callback returns
            report_progress(member_progress, static_cast<double>(j) / S, fmt::format("init model {}/{}", j, S),
                            "validate");
            done = j;
          }
        });
        v.init_ensemble = reduce_profile(means, spec, "init_ensemble", "model");
        const MeanSe ensemble_loss = mean_se(losses);
        v.init_ensemble->extras["loss"] = ensemble_loss.mean;
        v.init_ensemble->extras["loss_se"] = ensemble_loss.se;
        v.init_ensemble->settings = {
            {"engine", "init_ensemble"},
            {"models", S},
            {"seeds", fmt::format("Model::initial(config, seed) for seed = {} .. {}", st.seed + 1, st.seed + S)},
            {"sequences", "the measured sequences"},
            {"statistic", "mean over models of each model's mean over sequences; _se = sd over models / sqrt(models)"},
            {"precision", std::is_same_v<Real, float> ? "float" : "double"},
            {"version", kVersion}};
        for (int k = 0; k < S; ++k)
          if (same[static_cast<std::size_t>(k)])
            v.notes.push_back(fmt::format("the measured model has the embedding of ensemble member seed {}: it is "
                                          "probably that very model; choose another seed",
                                          st.seed + 1 + static_cast<uint64_t>(k)));
      }
    }
  }
  compute_agreement(v);
  if (progress) report_progress(progress, 1.0, "done", "validate");
  return v;
}

#define SIGPROP_MEASURE_INSTANTIATE(Real)                                                                         \
  template PerSequence measure_sequences(const Model<Real>&, const Sequences&, int, const ProgressFn&,            \
                                         std::string_view);                                                       \
  template class MeasureEngine<Real>;                                                                             \
  template Validation validate_model(const Model<Real>&, std::span<const unsigned char>, const ValidateSettings&, \
                                     const ProgressFn&);                                                          \
  template Validation validate_model(MeasureEngine<Real>&, const ValidateSettings&, const ProgressFn&);

SIGPROP_MEASURE_INSTANTIATE(float)
SIGPROP_MEASURE_INSTANTIATE(double)

}  // namespace sigprop::validate
