// The language model around the MODEL.md block (see model.hpp).
#include "validate/model.hpp"

#include "core/memory.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <type_traits>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/rng.hpp"

namespace sigprop::validate {

using safetensors::Dtype;
using sim::StreamKind;

// ---------------------------------------------------------------------------------------
// config

void ModelConfig::validate() const {
  arch.spec.validate();
  sim::validate_ext(arch);
  if (vocab < 1) throw ConfigError(fmt::format("model.vocab = {} must be >= 1", vocab));
  if (arch.spec.weights != WeightDist::Gaussian)
    throw ConfigError("init.weights = \"orthogonal\" is not supported by the language model (gaussian only)");
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = spec_to_json(arch.spec);
  j["model"] = {{"vocab", vocab},           {"learned_pos", learned_pos}, {"final_norm", final_norm},
                {"tied", tied},             {"norm_affine", norm_affine}, {"norm_bias", norm_bias},
                {"mlp_bias", mlp_bias},     {"family", family},           {"kv_heads", arch.ext.kv_heads},
                {"rotary_dims", arch.ext.rotary_dims}, {"rope_theta", arch.ext.rope_theta},
                {"attn_bias", arch.ext.attn_bias},     {"gated_mlp", arch.ext.gated_mlp},
                {"parallel", arch.ext.parallel}};
  return j;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    throw ConfigError(fmt::format("{}: model config has no \"model\" table", origin));
  ModelConfig c;
  nlohmann::json spec = j;
  spec.erase("model");
  try {
    c.arch.spec = spec_from_json(spec);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", origin, e.what()));
  }
  const nlohmann::json& m = j["model"];
  static const std::vector<std::string> known = {"vocab",     "learned_pos", "final_norm", "tied",       "norm_affine",
                                                 "norm_bias", "mlp_bias",    "family",     "kv_heads",   "rotary_dims",
                                                 "rope_theta", "attn_bias",  "gated_mlp",  "parallel"};
  for (auto& [k, v] : m.items())
    if (std::find(known.begin(), known.end(), k) == known.end())
      throw ConfigError(fmt::format("{}: unknown key model.{}", origin, k));
  auto get = [&](const char* key, auto& dst) {
    using T = std::remove_reference_t<decltype(dst)>;
    if (!m.contains(key)) throw ConfigError(fmt::format("{}: missing key model.{}", origin, key));
    const nlohmann::json& v = m[key];
    bool ok = false;
    if constexpr (std::is_same_v<T, bool>)
      ok = v.is_boolean();
    else if constexpr (std::is_same_v<T, int>)  // in range: get<int> would wrap 2^32 + 1 to 1
      ok = v.is_number_integer() && (v.is_number_unsigned() ? v.get<std::uint64_t>() <= 2147483647u
                                                            : v.get<std::int64_t>() >= -2147483647 &&
                                                                  v.get<std::int64_t>() <= 2147483647);
    else if constexpr (std::is_same_v<T, double>)
      ok = v.is_number();
    else
      ok = v.is_string();
    if (!ok) throw ConfigError(fmt::format("{}: model.{} has the wrong type or is out of range", origin, key));
    dst = v.get<T>();
  };
  get("vocab", c.vocab);
  get("learned_pos", c.learned_pos);
  get("final_norm", c.final_norm);
  get("tied", c.tied);
  get("norm_affine", c.norm_affine);
  get("norm_bias", c.norm_bias);
  get("mlp_bias", c.mlp_bias);
  get("family", c.family);
  get("kv_heads", c.arch.ext.kv_heads);
  get("rotary_dims", c.arch.ext.rotary_dims);
  get("rope_theta", c.arch.ext.rope_theta);
  get("attn_bias", c.arch.ext.attn_bias);
  get("gated_mlp", c.arch.ext.gated_mlp);
  get("parallel", c.arch.ext.parallel);
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", origin, e.what()));
  }
  return c;
}

// ---------------------------------------------------------------------------------------
// shapes and initialisation

std::uint64_t param_count(const ModelConfig& cfg) {
  cfg.validate();
  const StackSpec& s = cfg.arch.spec;
  const sim::Dims D = sim::dims_of(cfg.arch);
  using U = std::uint64_t;
  const U d = static_cast<U>(D.d), R = static_cast<U>(D.R), V = static_cast<U>(cfg.vocab), qkv = static_cast<U>(D.qkv_cols());
  const bool has_norm = s.norm != Norm::None;
  const bool ln_bias = cfg.norm_affine && cfg.norm_bias && s.norm_type == NormType::LayerNorm;
  const U halves = cfg.arch.ext.parallel ? 2 : static_cast<U>(halves_of(s).size());
  // Mirrors Model::zeros tensor by tensor (a test checks that they agree).
  U block = 0;
  if (s.has_attn()) {
    block = sat_add({block, sat_mul({d, qkv}), sat_mul({d, d})});
    if (cfg.arch.ext.attn_bias) block = sat_add({block, qkv, d});
  }
  if (s.has_mlp()) {
    block = sat_add({block, sat_mul({cfg.arch.ext.gated_mlp ? U{3} : U{2}, d, R})});
    if (cfg.mlp_bias) block = sat_add({block, R, d, cfg.arch.ext.gated_mlp ? R : U{0}});
  }
  if (s.blocks == Blocks::Dense) block = sat_add({block, sat_mul({d, d}), d});
  if (has_norm && cfg.norm_affine) block = sat_add({block, sat_mul({halves == 2 ? U{2} : U{1}, ln_bias ? U{2} : U{1}, d})});
  U total = sat_add({sat_mul({V, d}), cfg.learned_pos ? sat_mul({static_cast<U>(D.T), d}) : U{0},
                     sat_mul({static_cast<U>(s.depth), block})});
  if (cfg.final_norm && cfg.norm_affine) total = sat_add({total, ln_bias ? 2 * d : d});
  if (!cfg.tied) total = sat_add({total, sat_mul({d, V})});
  return total;
}

template <class Real>
Model<Real> Model<Real>::zeros(const ModelConfig& cfg) {
  cfg.validate();
  const StackSpec& s = cfg.arch.spec;
  const sim::Dims D = sim::dims_of(cfg.arch);
  Model m;
  m.cfg = cfg;
  m.wte.setZero(cfg.vocab, D.d);
  if (cfg.learned_pos) m.wpe.setZero(D.T, D.d);
  const bool has_norm = s.norm != Norm::None;
  const bool ln_bias = cfg.norm_affine && cfg.norm_bias && s.norm_type == NormType::LayerNorm;
  const int halves = cfg.arch.ext.parallel ? 2 : static_cast<int>(halves_of(s).size());
  m.blocks.resize(static_cast<std::size_t>(s.depth));
  for (auto& w : m.blocks) {
    if (s.has_attn()) {
      w.wqkv.setZero(D.d, D.qkv_cols());
      w.wo.setZero(D.d, D.d);
      if (cfg.arch.ext.attn_bias) {
        w.bqkv.setZero(D.qkv_cols());
        w.bo.setZero(D.d);
      }
    }
    if (s.has_mlp()) {
      w.w1.setZero(D.d, D.R);
      w.w2.setZero(D.R, D.d);
      if (cfg.arch.ext.gated_mlp) w.w3.setZero(D.d, D.R);
      if (cfg.mlp_bias) {
        w.b1.setZero(D.R);
        w.b2.setZero(D.d);
        if (cfg.arch.ext.gated_mlp) w.b3.setZero(D.R);
      }
    }
    if (s.blocks == Blocks::Dense) {
      w.wd.setZero(D.d, D.d);
      w.bd.setZero(D.d);
    }
    if (has_norm && cfg.norm_affine) {
      w.n1g.setZero(D.d);
      if (ln_bias) w.n1b.setZero(D.d);
      if (halves == 2) {
        w.n2g.setZero(D.d);
        if (ln_bias) w.n2b.setZero(D.d);
      }
    }
  }
  if (cfg.final_norm && cfg.norm_affine) {
    m.lnf_g.setZero(D.d);
    if (ln_bias) m.lnf_b.setZero(D.d);
  }
  if (!cfg.tied) m.lm_head.setZero(D.d, cfg.vocab);
  return m;
}

namespace {
template <class Real>
void fill_normal(Mat<Real>& dst, uint64_t seed, StreamKind kind, double sd) {
  std::vector<double> buf(static_cast<std::size_t>(dst.size()));
  NormalStream(seed, stream_id(0, 0, static_cast<uint64_t>(kind), 0)).fill(buf.data(), buf.size());
  for (Eigen::Index i = 0; i < dst.size(); ++i) dst.data()[i] = static_cast<Real>(sd * buf[static_cast<std::size_t>(i)]);
}
}  // namespace

template <class Real>
Model<Real> Model<Real>::initial(const ModelConfig& cfg, uint64_t seed) {
  if (!(cfg.arch.ext == sim::BlockExt{}))
    throw ConfigError("a model with architecture extensions (rotary, gated MLP, grouped KV heads, attention biases, "
                      "parallel blocks) can only be imported, not initialised");
  if (!cfg.mlp_bias) throw ConfigError("model.mlp_bias = false can only be imported, not initialised");
  Model m = zeros(cfg);
  const StackSpec& s = cfg.arch.spec;
  for (int l = 1; l <= s.depth; ++l) {
    sim::LayerWeights<Real> w = sim::draw_layer_weights<Real>(s, seed, 0, l);
    sim::LayerWeights<Real>& dst = m.blocks[static_cast<std::size_t>(l - 1)];
    dst.wqkv = std::move(w.wqkv);
    dst.wo = std::move(w.wo);
    dst.w1 = std::move(w.w1);
    dst.w2 = std::move(w.w2);
    dst.b1 = std::move(w.b1);
    dst.b2 = std::move(w.b2);
    dst.wd = std::move(w.wd);
    dst.bd = std::move(w.bd);
    if (dst.n1g.size()) dst.n1g.setOnes();
    if (dst.n2g.size()) dst.n2g.setOnes();
  }
  const double emb_var = cfg.learned_pos ? s.q0 / 2 : s.q0;
  fill_normal(m.wte, seed, StreamKind::Wte, std::sqrt(emb_var));
  if (cfg.learned_pos) fill_normal(m.wpe, seed, StreamKind::Wpe, std::sqrt(emb_var));
  if (m.lnf_g.size()) m.lnf_g.setOnes();
  if (m.lm_head.size()) fill_normal(m.lm_head, seed, StreamKind::LmHead, std::sqrt(1.0 / s.width));
  return m;
}

template <class Real>
Model<Real> Model<Real>::zeros_like() const {
  Model z = *this;
  z.for_each([](const std::string&, auto& t) { t.setZero(); });
  return z;
}

template <class Real>
std::size_t Model<Real>::num_params() const {
  std::size_t n = 0;
  for_each([&](const std::string&, const auto& t) { n += static_cast<std::size_t>(t.size()); });
  return n;
}

// ---------------------------------------------------------------------------------------
// forward and backward

template <class Real>
Trace<Real> forward(const Model<Real>& m, std::span<const int> tokens, int skip_block) {
  const ModelConfig& cfg = m.cfg;
  const StackSpec& s = cfg.arch.spec;
  const int T = static_cast<int>(tokens.size());
  if (T < 1) throw ConfigError("forward: empty sequence");
  if (T > s.tokens)
    throw ConfigError(fmt::format("forward: sequence of {} tokens is longer than the context stack.tokens = {}", T,
                                  s.tokens));
  Trace<Real> tr;
  tr.X.resize(static_cast<std::size_t>(s.depth) + 1);
  Mat<Real>& X0 = tr.X[0];
  X0.resize(T, s.width);
  for (int t = 0; t < T; ++t) {
    const int tok = tokens[static_cast<std::size_t>(t)];
    if (tok < 0 || tok >= cfg.vocab)
      throw ConfigError(fmt::format("forward: token {} at position {} is outside the vocabulary [0, {})", tok, t,
                                    cfg.vocab));
    X0.row(t) = m.wte.row(tok);
    if (cfg.learned_pos) X0.row(t) += m.wpe.row(t);
  }
  if (skip_block < 0 || skip_block > s.depth)
    throw ConfigError(fmt::format("forward: skip_block = {} is not a block of 1..{}", skip_block, s.depth));
  tr.caches.resize(static_cast<std::size_t>(s.depth));
  for (int l = 1; l <= s.depth; ++l) {
    if (l == skip_block) {  // identity: no caches, backward passes the gradient through
      tr.X[l] = tr.X[l - 1];
      continue;
    }
    tr.caches[l - 1] = sim::block_forward_caches<Real>(cfg.arch, m.blocks[l - 1], l, tr.X[l - 1]);
    tr.X[l] = tr.caches[l - 1].back().Y;
  }
  if (cfg.final_norm) {
    sim::norm_forward(tr.xf_hat, tr.rstd_f, tr.X.back(), s.norm_type, s.norm_eps);
    tr.xf = tr.xf_hat;
    if (m.lnf_g.size()) tr.xf = tr.xf * m.lnf_g.asDiagonal();
    if (m.lnf_b.size()) tr.xf.rowwise() += m.lnf_b;
  } else {
    tr.xf = tr.X.back();
  }
  if (cfg.tied)
    tr.logits.noalias() = tr.xf * m.wte.transpose();
  else
    tr.logits.noalias() = tr.xf * m.lm_head;
  return tr;
}

namespace {
void check_targets(std::span<const int> targets, Eigen::Index T, int vocab) {
  if (static_cast<Eigen::Index>(targets.size()) != T)
    throw ConfigError(fmt::format("{} targets for a sequence of {} tokens", targets.size(), T));
  for (std::size_t t = 0; t < targets.size(); ++t)
    if (targets[t] < 0 || targets[t] >= vocab)
      throw ConfigError(fmt::format("target {} at position {} is outside the vocabulary [0, {})", targets[t], t, vocab));
}
}  // namespace

template <class Real>
double sequence_loss(const Trace<Real>& tr, std::span<const int> targets) {
  check_targets(targets, tr.logits.rows(), static_cast<int>(tr.logits.cols()));
  double total = 0;
  for (Eigen::Index t = 0; t < tr.logits.rows(); ++t) {
    const auto row = tr.logits.row(t).template cast<double>();
    const double mx = row.maxCoeff();
    const double lse = mx + std::log((row.array() - mx).exp().sum());
    total += lse - row(targets[static_cast<std::size_t>(t)]);
  }
  return total;
}

template <class Real>
void backward(const Model<Real>& m, const Trace<Real>& tr, std::span<const int> tokens, std::span<const int> targets,
              double scale, Model<Real>* grads, std::vector<Mat<Real>>* deltas) {
  const ModelConfig& cfg = m.cfg;
  const StackSpec& s = cfg.arch.spec;
  const Eigen::Index T = tr.logits.rows();
  check_targets(targets, T, cfg.vocab);
  // dlogits = scale (softmax - onehot), row by row
  Mat<Real> dlogits(T, cfg.vocab);
  for (Eigen::Index t = 0; t < T; ++t) {
    const Real mx = tr.logits.row(t).maxCoeff();
    dlogits.row(t) = (tr.logits.row(t).array() - mx).exp().matrix();
    dlogits.row(t) /= dlogits.row(t).sum();
    dlogits(t, targets[static_cast<std::size_t>(t)]) -= Real(1);
  }
  dlogits *= static_cast<Real>(scale);
  Mat<Real> dxf;
  if (cfg.tied) {
    dxf.noalias() = dlogits * m.wte;
    if (grads) grads->wte.noalias() += dlogits.transpose() * tr.xf;
  } else {
    dxf.noalias() = dlogits * m.lm_head.transpose();
    if (grads) grads->lm_head.noalias() += tr.xf.transpose() * dlogits;
  }
  Mat<Real> D;
  if (cfg.final_norm) {
    if (grads && m.lnf_g.size()) grads->lnf_g += dxf.cwiseProduct(tr.xf_hat).colwise().sum();
    if (grads && m.lnf_b.size()) grads->lnf_b += dxf.colwise().sum();
    if (m.lnf_g.size()) dxf = dxf * m.lnf_g.asDiagonal();
    sim::norm_backward(D, dxf, tr.xf_hat, tr.rstd_f, s.norm_type);
  } else {
    D = std::move(dxf);
  }
  if (deltas) deltas->assign(static_cast<std::size_t>(s.depth) + 1, Mat<Real>());
  if (deltas) (*deltas)[static_cast<std::size_t>(s.depth)] = D;
  for (int l = s.depth; l >= 1; --l) {
    if (tr.caches[l - 1].empty()) {  // a skipped block
      if (deltas) (*deltas)[static_cast<std::size_t>(l - 1)] = D;
      continue;
    }
    D = sim::block_backward_caches<Real>(cfg.arch, m.blocks[l - 1], l, tr.caches[l - 1], D,
                                         grads ? &grads->blocks[l - 1] : nullptr);
    if (deltas) (*deltas)[static_cast<std::size_t>(l - 1)] = D;
  }
  if (grads) {
    for (Eigen::Index t = 0; t < T; ++t) {
      grads->wte.row(tokens[static_cast<std::size_t>(t)]) += D.row(t);
      if (cfg.learned_pos) grads->wpe.row(t) += D.row(t);
    }
  }
}

template <class Real>
double loss_and_grad(const Model<Real>& m, const Batch& batch, Model<Real>* grads, int threads, int skip_block) {
  const std::size_t B = batch.inputs.size();
  if (B == 0 || batch.targets.size() != B) throw ConfigError("loss_and_grad: empty batch or inputs/targets mismatch");
  const std::size_t T = batch.inputs[0].size();
  for (std::size_t b = 0; b < B; ++b)
    if (batch.inputs[b].size() != T || batch.targets[b].size() != T)
      throw ConfigError(fmt::format("loss_and_grad: sequence {} has another length than sequence 0", b));
  const double scale = 1.0 / (static_cast<double>(B) * static_cast<double>(T));
  // Fixed chunks of sequences, each with its own accumulator, summed in chunk order: the
  // result does not depend on the number of threads.
  constexpr std::size_t kChunk = 4;
  const std::size_t nchunks = (B + kChunk - 1) / kChunk;
  std::vector<double> losses(nchunks, 0.0);
  std::vector<Model<Real>> acc(grads ? nchunks : 0);
  parallel_for(static_cast<int>(nchunks), std::max(1, threads), [&](int ci) {
    const auto c = static_cast<std::size_t>(ci);
    if (grads) acc[c] = m.zeros_like();
    for (std::size_t b = c * kChunk; b < std::min(B, (c + 1) * kChunk); ++b) {
      const Trace<Real> tr = forward(m, batch.inputs[b], skip_block);
      losses[c] += sequence_loss(tr, batch.targets[b]);
      if (grads) backward(m, tr, batch.inputs[b], batch.targets[b], scale, &acc[c]);
    }
  });
  double loss = 0;
  for (double l : losses) loss += l;
  if (grads) {
    *grads = std::move(acc[0]);
    for (std::size_t c = 1; c < nchunks; ++c)
      grads->for_each_pair(acc[c], [](const std::string&, auto& mine, const auto& theirs) { mine += theirs; });
  }
  return loss * scale;
}

template <class Real>
double global_norm(const Model<Real>& g) {
  double ss = 0;
  g.for_each([&](const std::string&, const auto& t) { ss += t.template cast<double>().squaredNorm(); });
  return std::sqrt(ss);
}

// ---------------------------------------------------------------------------------------
// checkpoints

template <class Real>
void save_checkpoint(const std::filesystem::path& path, const Model<Real>& m, const safetensors::Metadata& extra,
                     Dtype dtype) {
  std::vector<safetensors::Tensor> tensors;
  m.for_each([&](const std::string& name, const auto& t) {
    tensors.push_back(safetensors::make_tensor(name, dtype, tensor_shape(t),
                                               std::span<const Real>(t.data(), static_cast<std::size_t>(t.size()))));
  });
  safetensors::Metadata meta = extra;
  meta["sigprop.model"] = m.cfg.to_json().dump();
  safetensors::write_file(path, tensors, meta);
}

void check_config_fits_files(const ModelConfig& cfg, const std::vector<const safetensors::File*>& files,
                              const std::string& origin, std::size_t scalar_bytes) {
  const std::uint64_t need = param_count(cfg);
  std::uint64_t held = 0;
  for (const safetensors::File* f : files)
    for (const auto& t : f->tensors) held = sat_add({held, t.numel()});
  const StackSpec& s = cfg.arch.spec;
  // Only a claim far beyond the file is refused here: allocating up to twice what the tensors
  // hold (plus 2^20 values, 8 MiB in double) costs no more than reading them, and a config that
  // misses or misshapes a few tensors then gets the precise per-tensor error (name, both shapes).
  if (need > sat_add({sat_mul({2, held}), std::uint64_t{1} << 20}))
    throw IoError(fmt::format("{}: the model config declares {} parameters (stack.depth = {}, stack.width = {}, "
                              "mlp width {}, model.vocab = {}) but the file's tensors hold only {} values: the "
                              "config does not describe these tensors (nothing was allocated)",
                              origin, need, s.depth, s.width, s.mlp_width(), cfg.vocab, held));
  require_memory(sat_mul({need, static_cast<std::uint64_t>(scalar_bytes)}), fmt::format("{}: the model", origin),
                 "stack.depth, stack.width, stack.mlp_ratio and model.vocab of its config");
}

template <class Real>
Model<Real> model_from_safetensors(const safetensors::File& f) {
  auto it = f.metadata.find("sigprop.model");
  if (it == f.metadata.end())
    throw IoError(fmt::format("{}: not a sigprop checkpoint (no __metadata__ key \"sigprop.model\"); Hugging Face "
                              "checkpoints (a folder or a file with config.json) are read by validate::load_model and sigprop validate",
                              f.source));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(fmt::format("{}: __metadata__ \"sigprop.model\" is not JSON: {}", f.source, e.what()));
  }
  ModelConfig cfg;
  try {
    cfg = ModelConfig::from_json(j, f.source);
  } catch (const ConfigError& e) {
    throw IoError(e.what());
  }
  check_config_fits_files(cfg, {&f}, f.source, sizeof(Real));  // before allocating what it declares
  Model<Real> m = Model<Real>::zeros(cfg);
  fill_from_safetensors(m, f);
  return m;
}

std::vector<double> checked_values(const safetensors::Tensor& t, const std::string& source,
                                   const std::vector<std::uint64_t>& shape) {
  auto str = [](const std::vector<std::uint64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); };
  if (!safetensors::is_float_dtype(t.dtype))
    throw IoError(fmt::format("{}: tensor '{}' has dtype {}, not a float type", source, t.name,
                              safetensors::dtype_name(t.dtype)));
  if (t.shape != shape)
    throw IoError(
        fmt::format("{}: tensor '{}' has shape {}, the config needs {}", source, t.name, str(t.shape), str(shape)));
  std::vector<double> v = t.to_double();
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw IoError(fmt::format("{}: tensor '{}' has a non-finite value at flat index {}", source, t.name, i));
  return v;
}

template <class Real>
void fill_from_safetensors(Model<Real>& m, const safetensors::File& f) {
  std::size_t used = 0;
  m.for_each([&](const std::string& name, auto& t) {
    const safetensors::Tensor* src = f.find(name);
    if (!src) throw IoError(fmt::format("{}: no tensor '{}'", f.source, name));
    const std::vector<double> v = checked_values(*src, f.source, tensor_shape(t));
    for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = static_cast<Real>(v[i]);
    ++used;
  });
  if (used != f.tensors.size()) {
    for (const auto& t : f.tensors) {
      bool known = false;
      m.for_each([&](const std::string& name, const auto&) { known = known || name == t.name; });
      if (!known) throw IoError(fmt::format("{}: unexpected tensor '{}' for this model config", f.source, t.name));
    }
  }
}

template <class Real>
Model<Real> load_checkpoint(const std::filesystem::path& path) {
  return model_from_safetensors<Real>(safetensors::read_file(path));
}

#define SIGPROP_MODEL_INSTANTIATE(Real)                                                                             \
  template struct Model<Real>;                                                                                      \
  template Trace<Real> forward(const Model<Real>&, std::span<const int>, int);                                     \
  template double sequence_loss(const Trace<Real>&, std::span<const int>);                                         \
  template void backward(const Model<Real>&, const Trace<Real>&, std::span<const int>, std::span<const int>, double, \
                         Model<Real>*, std::vector<Mat<Real>>*);                                                    \
  template double loss_and_grad(const Model<Real>&, const Batch&, Model<Real>*, int, int);                         \
  template double global_norm(const Model<Real>&);                                                                  \
  template void save_checkpoint(const std::filesystem::path&, const Model<Real>&, const safetensors::Metadata&,     \
                                Dtype);                                                                             \
  template Model<Real> model_from_safetensors(const safetensors::File&);                                            \
  template void fill_from_safetensors(Model<Real>&, const safetensors::File&);                                      \
  template Model<Real> load_checkpoint(const std::filesystem::path&);

SIGPROP_MODEL_INSTANTIATE(float)
SIGPROP_MODEL_INSTANTIATE(double)

}  // namespace sigprop::validate
