// The trainer of the byte-level language model (see train.hpp and docs/train.md).
#include "validate/train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numbers>
#include <sstream>
#include <type_traits>

#include <Random123/philox.h>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/memory.hpp"
#include "core/profile.hpp"

namespace sigprop::validate {

namespace fs = std::filesystem;
using safetensors::Dtype;

// ---------------------------------------------------------------------------------------
// corpus

namespace {
std::string fnv1a64_hex(const std::vector<std::uint8_t>& b) {
  std::uint64_t h = 14695981039346656037ull;
  for (std::uint8_t c : b) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}
}  // namespace

std::vector<std::uint8_t> read_corpus_bytes(const fs::path& path) {
  // Regular files only, at most kMaxCorpusBytes: /dev/zero or a FIFO would never end.
  return read_regular_file_bytes(path, "corpus", kMaxCorpusBytes);
}

Corpus Corpus::load(const fs::path& path, double val_fraction, int context) {
  Corpus c;
  c.path = path.string();
  c.bytes = read_corpus_bytes(path);
  const std::size_t n = c.bytes.size();
  const auto n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * val_fraction));
  c.train_end = n - n_val;
  const auto window = static_cast<std::size_t>(context) + 1;
  if (c.train_end < window || n_val < window)
    throw ConfigError(fmt::format(
        "corpus {}: {} bytes are too short: the training split has {} bytes and the validation split "
        "(val_fraction {}) {}, each needs at least one window of stack.tokens + 1 = {} bytes",
        path.string(), n, c.train_end, val_fraction, n_val, window));
  c.hash = fnv1a64_hex(c.bytes);
  return c;
}

nlohmann::json Corpus::to_json() const { return {{"path", path}, {"bytes", bytes.size()}, {"fnv1a64", hash}}; }

// ---------------------------------------------------------------------------------------
// settings

void TrainSettings::validate() const {
  auto bad = [](const char* opt, auto value, const char* rule) {
    throw ConfigError(fmt::format("{} = {} {}", opt, value, rule));
  };
  if (steps < 1) bad("steps", steps, "must be >= 1");
  if (batch < 1) bad("batch", batch, "must be >= 1");
  if (!(lr > 0) || !std::isfinite(lr)) bad("lr", lr, "must be > 0 and finite");
  if (!(min_lr >= 0) || !(min_lr <= lr)) bad("min_lr", min_lr, "must be in [0, lr]");
  if (warmup < -1) bad("warmup", warmup, "must be >= 0 (or -1 for steps / 10)");
  if (!(weight_decay >= 0) || !std::isfinite(weight_decay)) bad("weight_decay", weight_decay, "must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) bad("beta1", beta1, "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) bad("beta2", beta2, "must be in [0, 1)");
  if (!(eps > 0) || !std::isfinite(eps)) bad("eps", eps, "must be > 0");
  if (!(max_norm >= 0) || !std::isfinite(max_norm)) bad("max_norm", max_norm, "must be >= 0 (0: no clipping)");
  if (!(val_fraction > 0 && val_fraction < 1)) bad("val_fraction", val_fraction, "must be in (0, 1)");
  if (val_every < 1) bad("val_every", val_every, "must be >= 1");
  if (val_batches < 1) bad("val_batches", val_batches, "must be >= 1");
  if (checkpoint_every < 0) bad("checkpoint_every", checkpoint_every, "must be >= 0 (0: init and final only)");
  if (threads < 1) bad("threads", threads, "must be >= 1");
  if (precision != "float" && precision != "double")
    throw ConfigError(fmt::format("precision = \"{}\" must be float or double", precision));
}

TrainSettings TrainSettings::resolved() const {
  TrainSettings s = *this;
  if (s.warmup < 0) s.warmup = s.steps / 10;
  return s;
}

nlohmann::json TrainSettings::to_json() const {
  return {{"steps", steps},
          {"batch", batch},
          {"lr", lr},
          {"min_lr", min_lr},
          {"warmup", warmup},
          {"weight_decay", weight_decay},
          {"betas", {beta1, beta2}},
          {"eps", eps},
          {"max_norm", max_norm},
          {"val_fraction", val_fraction},
          {"val_every", val_every},
          {"val_batches", val_batches},
          {"checkpoint_every", checkpoint_every},
          {"seed", seed},
          {"threads", threads},
          {"precision", precision}};
}

bool TrainSettings::resumable_change(const std::string& key) {
  return key == "threads" || key == "val_every" || key == "checkpoint_every";
}

ModelConfig train_model_config(const StackSpec& spec) {
  ModelConfig c;
  c.arch.spec = spec;
  c.vocab = 256;
  c.learned_pos = true;
  c.final_norm = spec.norm == Norm::Pre || spec.norm == Norm::Lns;
  c.tied = false;
  c.family = "sigprop";
  c.validate();
  return c;
}

double lr_at(const TrainSettings& s, int step) {
  if (step < s.warmup) return s.lr * (step + 1) / s.warmup;
  const double p = static_cast<double>(step - s.warmup) / std::max(1, s.steps - s.warmup);
  return s.min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * p)) * (s.lr - s.min_lr);
}

// ---------------------------------------------------------------------------------------
// batches

std::uint64_t uniform_index(std::uint64_t seed, std::uint64_t stream, std::uint64_t i, std::uint64_t n) {
  using G = r123::Philox4x32;
  G gen;
  G::key_type key = {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  G::ctr_type ctr = {{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), static_cast<uint32_t>(stream),
                      static_cast<uint32_t>(stream >> 32)}};
  const G::ctr_type r = gen(ctr, key);
  const std::uint64_t u = (static_cast<std::uint64_t>(r[1]) << 32) | r[0];
  __extension__ using u128 = unsigned __int128;
  return static_cast<std::uint64_t>((static_cast<u128>(u) * n) >> 64);
}

namespace {
// Stream ids: a purpose in the top byte (not used by the weight streams of core/rng.hpp's
// stream_id, whose purposes are small), then the step or validation batch index.
constexpr std::uint64_t kTrainStream = 0xA5ull << 56;
constexpr std::uint64_t kValStream = 0xA6ull << 56;

Batch windows(const Corpus& c, int B, int T, std::uint64_t seed, std::uint64_t stream, std::size_t lo,
              std::size_t hi) {
  Batch b;
  const std::uint64_t n_off = hi - lo - static_cast<std::size_t>(T);  // offsets lo .. hi - T - 1
  for (int i = 0; i < B; ++i) {
    const std::size_t off = lo + uniform_index(seed, stream, static_cast<std::uint64_t>(i), n_off);
    std::vector<int> x(static_cast<std::size_t>(T)), y(static_cast<std::size_t>(T));
    for (int t = 0; t < T; ++t) {
      x[t] = c.bytes[off + t];
      y[t] = c.bytes[off + t + 1];
    }
    b.inputs.push_back(std::move(x));
    b.targets.push_back(std::move(y));
  }
  return b;
}
}  // namespace

Batch train_batch(const Corpus& c, int B, int T, std::uint64_t seed, std::int64_t step) {
  return windows(c, B, T, seed, kTrainStream | static_cast<std::uint64_t>(step), 0, c.train_end);
}

Batch val_batch(const Corpus& c, int B, int T, std::uint64_t seed, int j) {
  return windows(c, B, T, seed, kValStream | static_cast<std::uint64_t>(j), c.train_end, c.bytes.size());
}

// ---------------------------------------------------------------------------------------
// the step

namespace {
template <class Real>
struct View {
  std::string name;
  Real* data;
  Eigen::Index n;
  bool matrix;
  std::vector<std::uint64_t> shape;
};

template <class Real>
std::vector<View<Real>> views(Model<Real>& m) {
  std::vector<View<Real>> out;
  m.for_each([&](const std::string& name, auto& t) {
    std::vector<std::uint64_t> shape = tensor_shape(t);
    const bool matrix = shape.size() == 2;
    out.push_back({name, t.data(), t.size(), matrix, std::move(shape)});
  });
  return out;
}
}  // namespace

template <class Real>
StepResult train_step(Model<Real>& model, AdamState<Real>& state, const Batch& batch, const TrainSettings& s,
                      int step, int threads) {
  StepResult r;
  r.lr = lr_at(s, step);
  Model<Real> g;
  r.loss = loss_and_grad(model, batch, &g, threads);
  r.grad_norm = global_norm(g);
  auto P = views(model), G = views(g), M = views(state.m), V = views(state.v);
  if (P.size() != G.size() || P.size() != M.size() || P.size() != V.size())
    throw Error("internal: optimizer state and model have different tensors");
  if (s.max_norm > 0) {
    const double coef = s.max_norm / (r.grad_norm + 1e-6);
    if (coef < 1) {
      r.clipped = true;
      const Real c = static_cast<Real>(coef);
      for (auto& v : G)
        for (Eigen::Index i = 0; i < v.n; ++i) v.data[i] *= c;
    }
  }
  const int t = step + 1;
  const Real b2 = static_cast<Real>(s.beta2);
  const Real one_b1 = static_cast<Real>(1 - s.beta1), one_b2 = static_cast<Real>(1 - s.beta2);
  const Real step_size = static_cast<Real>(r.lr / (1 - std::pow(s.beta1, t)));
  const Real bc2_sqrt = static_cast<Real>(std::sqrt(1 - std::pow(s.beta2, t)));
  const Real eps = static_cast<Real>(s.eps);
  const Real decay = static_cast<Real>(1 - r.lr * s.weight_decay);
  for (std::size_t k = 0; k < P.size(); ++k) {
    Real* p = P[k].data;
    const Real* gk = G[k].data;
    Real* m = M[k].data;
    Real* v = V[k].data;
    const bool wd = P[k].matrix && s.weight_decay != 0;
    for (Eigen::Index i = 0; i < P[k].n; ++i) {
      if (wd) p[i] *= decay;
      m[i] += one_b1 * (gk[i] - m[i]);
      v[i] = b2 * v[i] + one_b2 * gk[i] * gk[i];
      const Real denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] -= step_size * (m[i] / denom);
    }
  }
  return r;
}

template <class Real>
double eval_loss(const Model<Real>& model, const std::vector<Batch>& batches, int threads) {
  double total = 0;
  for (const Batch& b : batches) total += loss_and_grad<Real>(model, b, nullptr, threads);
  return total / static_cast<double>(batches.size());
}

// ---------------------------------------------------------------------------------------
// the run: outputs, checkpoints, resume

namespace {

struct Row {
  int step = 0;
  std::optional<double> lr, train_loss, grad_norm, val_loss;
  long long tokens = 0;
  double seconds = 0;
};

std::string opt_str(const std::optional<double>& v) { return v ? fmt::format("{}", *v) : std::string(); }

const char* kCsvHeader = "step,lr,train_loss,grad_norm,val_loss,tokens_seen,seconds\n";

std::string csv_text(const std::vector<std::string>& kept, const std::vector<Row>& rows) {
  std::string out = kCsvHeader;
  for (const auto& line : kept) out += line + "\n";
  for (const Row& r : rows)
    out += fmt::format("{},{},{},{},{},{},{:.3f}\n", r.step, opt_str(r.lr), opt_str(r.train_loss),
                       opt_str(r.grad_norm), opt_str(r.val_loss), r.tokens, r.seconds);
  return out;
}

// Lines of an existing loss.csv for steps < before (in order), and the seconds of the last one.
std::vector<std::string> kept_rows(const fs::path& csv, int before, double& seconds) {
  std::vector<std::string> kept;
  seconds = 0;
  std::ifstream in(csv);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    if (line.empty()) continue;
    int step = -1;
    try {
      step = std::stoi(line.substr(0, line.find(',')));
    } catch (...) {
      continue;
    }
    if (step >= before) continue;
    // keep only complete rows (a provisional validation row has no train loss)
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    if (f.size() < 6 || f[2].empty()) continue;  // rows rebuilt from checkpoints have no seconds
    if (f.size() < 7) f.emplace_back();
    try {
      seconds = std::stod(f[6]);
    } catch (...) {
    }
    kept.push_back(line);
  }
  return kept;
}

/// Repairs the history of a resume at step `start` when loss.csv is missing or lost rows: every
/// step in [0, start) must have one row. Missing rows are rebuilt from the checkpoints' metadata
/// where one exists (ckpt at step k+1: train loss of row k; ckpt at step k: val loss of row k;
/// lr from the schedule; grad norm and seconds are not stored, so left empty); the rest are
/// named in `warnings`.
void repair_history(std::vector<std::string>& kept, int start, const TrainSettings& s, long long tokens_per_step,
                    const std::function<fs::path(int)>& ckpt_path, const fs::path& csv,
                    std::vector<std::string>& warnings) {
  std::vector<char> have(static_cast<std::size_t>(start), 0);
  std::vector<std::string> unique;
  for (const std::string& line : kept) {
    const int k = std::stoi(line.substr(0, line.find(',')));
    if (k >= 0 && k < start && !have[static_cast<std::size_t>(k)]) {
      have[static_cast<std::size_t>(k)] = 1;
      unique.push_back(line);
    }
  }
  int missing = 0;
  for (char h : have) missing += h ? 0 : 1;
  if (missing == 0) {
    kept = std::move(unique);
    return;
  }
  std::error_code ec;
  const std::string what = fs::exists(csv, ec) ? fmt::format("{} lacks {} of the {} rows before step {}", csv.string(),
                                                             missing, start, start)
                                               : fmt::format("{} is missing", csv.string());
  // step -> (train loss of row step-1, val loss of row step) from the checkpoint at that step
  auto from_ckpt = [&](int step, const char* key) -> std::optional<double> {
    const fs::path p = ckpt_path(step);
    if (!fs::exists(p, ec)) return std::nullopt;
    try {
      const safetensors::File f = safetensors::read_file(p);
      const auto it = f.metadata.find(key);
      if (it == f.metadata.end() || it->second.empty()) return std::nullopt;
      return std::stod(it->second);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
  int rebuilt = 0;
  std::vector<int> lost;
  std::vector<std::pair<int, std::string>> rows;
  for (const std::string& line : unique) rows.emplace_back(std::stoi(line.substr(0, line.find(','))), line);
  for (int k = 0; k < start; ++k) {
    if (have[static_cast<std::size_t>(k)]) continue;
    const std::optional<double> tl = from_ckpt(k + 1, "sigprop.train_loss");
    if (!tl) {
      lost.push_back(k);
      continue;
    }
    const std::optional<double> vl = from_ckpt(k, "sigprop.val_loss");
    rows.emplace_back(k, fmt::format("{},{},{},,{},{},", k, lr_at(s, k), *tl, opt_str(vl), (k + 1) * tokens_per_step));
    ++rebuilt;
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  kept.clear();
  for (auto& r : rows) kept.push_back(std::move(r.second));
  std::string lost_text;
  for (std::size_t i = 0; i < lost.size();) {  // ranges a-b
    std::size_t j = i;
    while (j + 1 < lost.size() && lost[j + 1] == lost[j] + 1) ++j;
    lost_text += fmt::format("{}{}", lost_text.empty() ? "" : ", ",
                             i == j ? std::to_string(lost[i]) : fmt::format("{}-{}", lost[i], lost[j]));
    i = j + 1;
  }
  warnings.push_back(fmt::format(
      "{}: rebuilt {} row(s) from the checkpoints' metadata (train loss, validation loss, lr; no grad_norm or "
      "seconds){}",
      what, rebuilt,
      lost.empty() ? std::string()
                   : fmt::format("; the rows of {} step(s) are lost (steps {}): no checkpoint holds them", lost.size(),
                                 lost_text)));
}

template <class Real>
std::vector<safetensors::Tensor> state_tensors(AdamState<Real>& st, Dtype dtype) {
  std::vector<safetensors::Tensor> out;
  for (auto [prefix, model] : {std::pair{"m.", &st.m}, std::pair{"v.", &st.v}})
    for (auto& v : views(*model))
      out.push_back(safetensors::make_tensor(prefix + v.name, dtype, v.shape,
                                             std::span<const Real>(v.data, static_cast<std::size_t>(v.n))));
  return out;
}

template <class Real>
void fill_state(AdamState<Real>& st, const safetensors::File& f) {
  for (auto [prefix, model] : {std::pair{"m.", &st.m}, std::pair{"v.", &st.v}})
    for (auto& v : views(*model)) {
      const safetensors::Tensor& t = f.at(prefix + v.name);
      if (t.shape != v.shape)
        throw IoError(fmt::format("{}: tensor '{}{}' has another shape than the model's", f.source, prefix, v.name));
      const std::vector<double> x = t.to_double();
      for (Eigen::Index i = 0; i < v.n; ++i) v.data[i] = static_cast<Real>(x[static_cast<std::size_t>(i)]);
    }
}

std::string meta_or(const safetensors::Metadata& m, const std::string& key, const std::string& source) {
  auto it = m.find(key);
  if (it == m.end()) throw IoError(fmt::format("{}: no __metadata__ key \"{}\"", source, key));
  return it->second;
}

// The stored run must match this one (settings except resumable ones, corpus, model).
void check_same_run(const safetensors::File& f, const nlohmann::json& train_json, const nlohmann::json& corpus_json,
                    const nlohmann::json& model_json) {
  nlohmann::json theirs;
  try {
    theirs = nlohmann::json::parse(meta_or(f.metadata, "sigprop.train", f.source));
  } catch (const nlohmann::json::exception& e) {
    throw IoError(fmt::format("{}: \"sigprop.train\" is not JSON: {}", f.source, e.what()));
  }
  const std::string hint = "; resuming needs the same settings and corpus (or choose another output folder)";
  for (auto& [k, v] : train_json.items()) {
    if (TrainSettings::resumable_change(k)) continue;
    if (!theirs.contains(k) || theirs[k] != v)
      throw ConfigError(fmt::format("{}: the run in this folder has {} = {}, this one {}{}", f.source, k,
                                    theirs.contains(k) ? theirs[k].dump() : "(missing)", v.dump(), hint));
  }
  const nlohmann::json c = nlohmann::json::parse(meta_or(f.metadata, "sigprop.corpus", f.source));
  if (c.value("bytes", nlohmann::json()) != corpus_json["bytes"] ||
      c.value("fnv1a64", nlohmann::json()) != corpus_json["fnv1a64"])
    throw ConfigError(fmt::format("{}: the run in this folder was trained on another corpus ({}, {} bytes){}",
                                  f.source, c.value("path", std::string("?")), c.value("bytes", 0), hint));
  const nlohmann::json m = nlohmann::json::parse(meta_or(f.metadata, "sigprop.model", f.source));
  if (m != model_json) {
    std::string key = "the model";
    for (auto& [k, v] : model_json.items())
      if (!m.contains(k) || m[k] != v) {
        key = k;
        break;
      }
    throw ConfigError(fmt::format("{}: the run in this folder has another model ({} differs){}", f.source, key, hint));
  }
}

// Up-front estimate (docs/limits.md): the model, its gradient and AdamW's two moments, one
// gradient accumulator per chunk of 4 sequences (model.cpp's fixed chunks), the validation and
// training batches as int token ids, one forward trace per worker, and a checkpoint's bytes.
void check_train_memory(const ModelConfig& cfg, const TrainSettings& s, std::size_t real_bytes) {
  using U = std::uint64_t;
  const StackSpec& sp = cfg.arch.spec;
  const U P = param_count(cfg), real = real_bytes, B = static_cast<U>(s.batch), T = static_cast<U>(sp.tokens);
  const U d = static_cast<U>(sp.width), L = static_cast<U>(sp.depth), H = static_cast<U>(sp.heads);
  const U wide = std::max<U>(d, sp.has_mlp() ? static_cast<U>(sp.mlp_width()) : 0), V = static_cast<U>(cfg.vocab);
  const U chunks = (B + 3) / 4;
  const U workers = std::min<U>(static_cast<U>(std::max(1, s.threads)), chunks);
  const U trace = sat_mul({sat_add({sat_mul({L + 1, T, d}), sat_mul({L, sat_add({sat_mul({8, T, wide}), sat_mul({2, H, T, T})})}),
                                    sat_mul({3, T, V})}),
                           real});
  const U batches = sat_mul({static_cast<U>(s.val_batches) + 1, B, sat_add({sat_mul({2, T, 4}), 64})});
  const U total = sat_add({sat_mul({sat_add({6, chunks}), P, real}), batches, sat_mul({workers, trace})});
  require_memory(total, "training",
                 fmt::format("batch = {} ({} gradient accumulators), val_batches = {}, the model's {} parameters "
                             "(stack.depth, stack.width, stack.mlp_ratio) and stack.tokens = {}",
                             s.batch, chunks, s.val_batches, P, sp.tokens));
}

template <class Real>
TrainOutcome train_impl(const ModelConfig& cfg, const TrainSettings& s, const fs::path& corpus_path,
                        const fs::path& out, const std::function<void(const TrainProgress&)>& progress,
                        const ProgressFn& cancel) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const int T = cfg.arch.spec.tokens, B = s.batch;
  const Dtype dtype = std::is_same_v<Real, double> ? Dtype::F64 : Dtype::F32;
  check_train_memory(cfg, s, sizeof(Real));  // before the corpus, batches or model are allocated
  const Corpus corpus = Corpus::load(corpus_path, s.val_fraction, T);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out))
    throw IoError(fmt::format("{}: cannot create the output folder: {}", out.string(), ec.message()));

  const nlohmann::json train_json = s.to_json(), corpus_json = corpus.to_json(), model_json = cfg.to_json();
  const fs::path optim_path = out / "optim.safetensors", csv_path = out / "loss.csv";
  auto ckpt_path = [&](int step) {
    if (step == 0) return out / "init.safetensors";
    if (step == s.steps) return out / "final.safetensors";
    return out / fmt::format("ckpt_step{}.safetensors", step);
  };
  auto meta = [&](int step, std::optional<double> train_loss, std::optional<double> val_loss) {
    safetensors::Metadata m;
    m["sigprop.step"] = std::to_string(step);
    m["sigprop.train_loss"] = opt_str(train_loss);
    m["sigprop.val_loss"] = opt_str(val_loss);
    m["sigprop.train"] = train_json.dump();
    m["sigprop.corpus"] = corpus_json.dump();
    return m;
  };

  Model<Real> model;
  AdamState<Real> state;
  int start = 0;
  std::optional<double> pending_val;  // validation loss at step `start` (before update `start`)
  std::vector<std::string> kept;
  double seconds_before = 0;
  std::vector<std::string> resume_warnings;
  std::vector<Batch> vals;
  for (int j = 0; j < s.val_batches; ++j) vals.push_back(val_batch(corpus, B, T, s.seed, j));

  if (fs::exists(optim_path)) {
    const safetensors::File of = safetensors::read_file(optim_path);
    check_same_run(of, train_json, corpus_json, model_json);
    try {
      start = std::stoi(meta_or(of.metadata, "sigprop.step", of.source));
    } catch (const std::logic_error&) {
      throw IoError(fmt::format("{}: bad \"sigprop.step\"", of.source));
    }
    if (start < 0 || start > s.steps) throw IoError(fmt::format("{}: step {} out of range", of.source, start));
    const safetensors::File cf = safetensors::read_file(ckpt_path(start));
    check_same_run(cf, train_json, corpus_json, model_json);
    if (meta_or(cf.metadata, "sigprop.step", cf.source) != std::to_string(start))
      throw IoError(fmt::format("{}: its step differs from {}'s ({})", cf.source, of.source, start));
    model = model_from_safetensors<Real>(cf);
    state = AdamState<Real>::zeros(model);
    fill_state(state, of);
    const std::string v = meta_or(cf.metadata, "sigprop.val_loss", cf.source);
    if (!v.empty()) pending_val = std::stod(v);
    kept = kept_rows(csv_path, start, seconds_before);
    repair_history(kept, start, s, static_cast<long long>(B) * T, ckpt_path, csv_path, resume_warnings);
  } else {
    model = Model<Real>::initial(cfg, s.seed);
    state = AdamState<Real>::zeros(model);
    pending_val = eval_loss(model, vals, s.threads);
    save_checkpoint(ckpt_path(0), model, meta(0, std::nullopt, pending_val), dtype);
    safetensors::Metadata om = meta(0, std::nullopt, pending_val);
    om["sigprop.model"] = model_json.dump();
    safetensors::write_file(optim_path, state_tensors(state, dtype), om);
  }

  TrainOutcome outcome;
  outcome.start_step = start;
  outcome.steps = s.steps;
  outcome.first_val = pending_val;
  outcome.warnings = resume_warnings;
  std::vector<Row> rows;
  const long long tokens_per_step = static_cast<long long>(B) * T;
  auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - t0).count(); };
  auto write_csv = [&](int done) {
    std::vector<Row> all = rows;
    if (pending_val) {  // provisional row of the next step: its validation loss only
      Row r;
      r.step = done;
      r.val_loss = pending_val;
      r.tokens = done * tokens_per_step;
      r.seconds = seconds_before + elapsed();
      all.push_back(r);
    }
    write_file_atomic(csv_path, csv_text(kept, all));
  };
  if (start == s.steps) {  // already complete
    if (!outcome.warnings.empty()) write_csv(start);  // the repaired history
    outcome.last_val = pending_val;
    outcome.seconds = elapsed();
    return outcome;
  }
  write_csv(start);
  if (progress && pending_val) {
    TrainProgress p;
    p.step = start;
    p.steps = s.steps;
    p.train_loss = std::nan("");
    p.val_loss = pending_val;
    p.seconds = elapsed();
    progress(p);
  }
  const auto t_loop = clock::now();
  for (int step = start; step < s.steps; ++step) {
    const StepResult r = train_step(model, state, train_batch(corpus, B, T, s.seed, step), s, step, s.threads);
    Row row;
    row.step = step;
    row.lr = r.lr;
    row.train_loss = r.loss;
    row.grad_norm = r.grad_norm;
    row.val_loss = pending_val;
    row.tokens = (step + 1) * tokens_per_step;
    row.seconds = seconds_before + elapsed();
    rows.push_back(row);
    outcome.train_losses.push_back(r.loss);
    pending_val.reset();
    if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
      write_csv(step + 1);
      throw NumericalError(fmt::format("training diverged: loss {} and gradient norm {} at step {} (try a smaller lr)",
                                       r.loss, r.grad_norm, step));
    }
    const int done = step + 1;
    const bool do_val = done % s.val_every == 0 || done == s.steps;
    if (do_val) pending_val = eval_loss(model, vals, s.threads);
    const bool do_ckpt = done == s.steps || (s.checkpoint_every > 0 && done % s.checkpoint_every == 0);
    if (do_ckpt) {
      save_checkpoint(ckpt_path(done), model, meta(done, r.loss, pending_val), dtype);
      safetensors::Metadata om = meta(done, r.loss, pending_val);
      om["sigprop.model"] = model_json.dump();
      safetensors::write_file(optim_path, state_tensors(state, dtype), om);
    }
    if (do_val || do_ckpt) write_csv(done);
    if (progress) {
      const double loop_s = std::chrono::duration<double>(clock::now() - t_loop).count();
      TrainProgress p;
      p.step = done;
      p.steps = s.steps;
      p.train_loss = r.loss;
      p.val_loss = pending_val;
      p.seconds = elapsed();
      p.tokens_per_s = loop_s > 0 ? static_cast<double>(done - start) * tokens_per_step / loop_s : 0;
      p.eta_s = loop_s / (done - start) * (s.steps - done);
      progress(p);
    }
    if (cancel)
      report_progress(cancel, static_cast<double>(done) / s.steps, fmt::format("step {}/{}", done, s.steps), "train");
  }
  outcome.last_val = pending_val;
  outcome.seconds = elapsed();
  const double loop_s = std::chrono::duration<double>(clock::now() - t_loop).count();
  outcome.tokens_per_s = loop_s > 0 ? static_cast<double>(s.steps - start) * tokens_per_step / loop_s : 0;
  return outcome;
}

}  // namespace

TrainOutcome train(const ModelConfig& cfg, const TrainSettings& settings, const fs::path& corpus,
                   const fs::path& out_dir, const std::function<void(const TrainProgress&)>& progress,
                   const ProgressFn& cancel) {
  settings.validate();
  const TrainSettings s = settings.resolved();
  cfg.validate();
  if (s.precision == "double") return train_impl<double>(cfg, s, corpus, out_dir, progress, cancel);
  return train_impl<float>(cfg, s, corpus, out_dir, progress, cancel);
}

#define SIGPROP_TRAIN_INSTANTIATE(Real)                                                                          \
  template StepResult train_step(Model<Real>&, AdamState<Real>&, const Batch&, const TrainSettings&, int, int); \
  template double eval_loss(const Model<Real>&, const std::vector<Batch>&, int);

SIGPROP_TRAIN_INSTANTIATE(float)
SIGPROP_TRAIN_INSTANTIATE(double)

}  // namespace sigprop::validate
