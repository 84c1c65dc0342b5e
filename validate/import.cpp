// Importers for Hugging Face checkpoints (see import.hpp and docs/import.md).
#include "validate/import.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop::validate {

namespace fs = std::filesystem;
using nlohmann::json;
using safetensors::Dtype;

namespace {

// stack.tokens' upper bound (StackSpec::validate). A rotary model's context is capped at it;
// a learned position table must fit.
constexpr int kMaxTokens = 8192;

// ---------------------------------------------------------------------------------------
// config.json

/// Typed access to config.json's keys; every error is "<origin>: <key> ...".
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  [[nodiscard]] const std::string& origin() const { return origin_; }
  /// Present and not null.
  [[nodiscard]] bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  [[nodiscard]] const json& raw(const char* key) const { return j_[key]; }

  [[noreturn]] void fail(const std::string& what) const { throw ConfigError(fmt::format("{}: {}", origin_, what)); }

  int integer(const char* key) const {
    if (!has(key)) fail(fmt::format("missing key \"{}\"", key));
    return as_int(j_[key], key);
  }
  int integer_or(const char* key, int def) const { return has(key) ? as_int(j_[key], key) : def; }
  double number(const char* key) const {
    if (!has(key)) fail(fmt::format("missing key \"{}\"", key));
    return as_number(j_[key], key);
  }
  double number_or(const char* key, double def) const { return has(key) ? as_number(j_[key], key) : def; }
  bool boolean_or(const char* key, bool def) const {
    if (!has(key)) return def;
    if (!j_[key].is_boolean()) fail(fmt::format("\"{}\" must be true or false, got {}", key, j_[key].dump()));
    return j_[key].get<bool>();
  }
  std::string string_or(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    if (!j_[key].is_string()) fail(fmt::format("\"{}\" must be a string, got {}", key, j_[key].dump()));
    return j_[key].get<std::string>();
  }

  int as_int(const json& v, const std::string& key) const {
    if (v.is_number_integer()) {
      const auto x = v.get<long long>();
      if (x >= -(1LL << 31) && x < (1LL << 31)) return static_cast<int>(x);
    }
    fail(fmt::format("\"{}\" must be an integer, got {}", key, v.dump()));
  }
  double as_number(const json& v, const std::string& key) const {
    if (!v.is_number()) fail(fmt::format("\"{}\" must be a number, got {}", key, v.dump()));
    return v.get<double>();
  }

 private:
  const json& j_;
  std::string origin_;
};

Activation hf_activation(const ConfigReader& c, const char* key, const std::string& name) {
  static const std::map<std::string, Activation> kMap = {
      {"gelu_new", Activation::GeluTanh}, {"gelu_pytorch_tanh", Activation::GeluTanh},
      {"gelu", Activation::Gelu},         {"relu", Activation::Relu},
      {"silu", Activation::Silu},         {"swish", Activation::Silu},
      {"tanh", Activation::Tanh},         {"linear", Activation::Linear}};
  const auto it = kMap.find(name);
  if (it == kMap.end()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : kMap) names.push_back(k);
    c.fail(fmt::format("{} = \"{}\" is not supported (supported: {})", key, name, fmt::join(names, ", ")));
  }
  return it->second;
}

/// Rejects what no family here can express: cross-attention, sliding windows, ALiBi.
void reject_common(const ConfigReader& c) {
  if (c.boolean_or("add_cross_attention", false))
    c.fail("add_cross_attention = true: cross-attention is not part of sigprop's decoder stack");
  if (c.boolean_or("is_encoder_decoder", false))
    c.fail("is_encoder_decoder = true: only decoder-only models can be imported");
  if (c.has("sliding_window") && !(c.raw("sliding_window").is_boolean() && !c.raw("sliding_window").get<bool>()))
    c.fail(fmt::format("sliding_window = {}: sliding-window attention is not supported (full causal attention only)",
                       c.raw("sliding_window").dump()));
  if (c.boolean_or("use_sliding_window", false))
    c.fail("use_sliding_window = true: sliding-window attention is not supported (full causal attention only)");
  for (const char* k : {"alibi", "use_alibi", "position_embedding_type"}) {
    if (!c.has(k)) continue;
    const json& v = c.raw(k);
    if ((v.is_boolean() && v.get<bool>()) || (v.is_string() && v.get<std::string>() == "alibi"))
      c.fail(fmt::format("{} = {}: ALiBi position biases are not supported", k, v.dump()));
  }
}

struct Rope {
  double theta;
  double factor;  ///< partial_rotary_factor
};

/// Rotary settings from either spelling: transformers 5's `rope_parameters` object, or the
/// top-level keys of real checkpoints (`rope_theta`, `partial_rotary_factor`; GPT-NeoX's
/// `rotary_emb_base`, `rotary_pct`) with an optional `rope_scaling` that must be null or
/// of type "default".
Rope hf_rope(const ConfigReader& c, double default_factor) {
  Rope r{c.number_or("rope_theta", c.number_or("rotary_emb_base", 10000.0)),
         c.number_or("partial_rotary_factor", c.number_or("rotary_pct", default_factor))};
  auto check_type = [&](const json& obj, const std::string& where) {
    for (const char* k : {"rope_type", "type"}) {
      if (!obj.contains(k) || obj[k].is_null()) continue;
      if (!obj[k].is_string() || obj[k].get<std::string>() != "default")
        c.fail(fmt::format("{}.{} = {}: rotary scaling is not supported (only \"default\" rotary embeddings)", where, k,
                           obj[k].dump()));
    }
  };
  if (c.has("rope_scaling")) {
    const json& s = c.raw("rope_scaling");
    if (!s.is_object()) c.fail(fmt::format("rope_scaling = {} must be null or an object", s.dump()));
    check_type(s, "rope_scaling");
    if (!s.contains("rope_type") && !s.contains("type"))
      c.fail(fmt::format("rope_scaling = {}: rotary scaling is not supported (only null or type \"default\")", s.dump()));
  }
  if (c.has("rope_parameters")) {
    const json& p = c.raw("rope_parameters");
    if (!p.is_object()) c.fail(fmt::format("rope_parameters = {} must be an object", p.dump()));
    check_type(p, "rope_parameters");
    if (p.contains("rope_theta") && !p["rope_theta"].is_null())
      r.theta = c.as_number(p["rope_theta"], "rope_parameters.rope_theta");
    if (p.contains("partial_rotary_factor") && !p["partial_rotary_factor"].is_null())
      r.factor = c.as_number(p["partial_rotary_factor"], "rope_parameters.partial_rotary_factor");
  }
  if (!(r.theta > 0) || !std::isfinite(r.theta)) c.fail(fmt::format("rope_theta = {} must be > 0", r.theta));
  if (!(r.factor >= 0 && r.factor <= 1)) c.fail(fmt::format("partial_rotary_factor = {} must be in [0, 1]", r.factor));
  return r;
}

/// The parts of the spec common to every family: pre-norm, causal, residual, 1/sqrt(dh).
StackSpec base_spec(const ConfigReader& c, int depth, int width, int heads, int inter, const char* inter_key) {
  StackSpec s;
  s.depth = depth;
  s.width = width;
  s.heads = heads;
  if (heads < 1 || width < 1 || width % heads != 0)
    c.fail(fmt::format("the number of attention heads {} must divide the hidden size {}", heads, width));
  if (inter < 1) c.fail(fmt::format("{} = {} must be >= 1", inter_key, inter));
  s.mlp_ratio = static_cast<double>(inter) / width;
  if (s.mlp_width() != inter)
    c.fail(fmt::format("{} = {} is not representable as stack.mlp_ratio * {} (gives {})", inter_key, inter, width,
                       s.mlp_width()));
  s.blocks = Blocks::AttnMlp;
  s.norm = Norm::Pre;
  s.mask = Mask::Causal;
  s.residual = true;
  s.branch_scale = BranchScale{};
  s.qk_scale = QkScale::InvSqrtDh;
  return s;
}

/// Context length: a learned position table must fit stack.tokens' range; a rotary model's
/// context is capped at kMaxTokens (longer sequences could not be run anyway).
int context_length(const ConfigReader& c, const char* key, int value, bool learned) {
  if (value < 2) c.fail(fmt::format("{} = {} must be >= 2", key, value));
  if (value > kMaxTokens) {
    if (learned)
      c.fail(fmt::format("{} = {}: a learned position table longer than {} positions is not supported", key, value,
                         kMaxTokens));
    return kMaxTokens;
  }
  return value;
}

ModelConfig gpt2_config(const ConfigReader& c) {
  if (!c.boolean_or("scale_attn_weights", true))
    c.fail("scale_attn_weights = false: attention without the 1/sqrt(head_dim) scale is not supported");
  if (c.boolean_or("scale_attn_by_inverse_layer_idx", false))
    c.fail("scale_attn_by_inverse_layer_idx = true: a per-layer attention scale 1/(l+1) is not supported");
  if (c.boolean_or("reorder_and_upcast_attn", false))
    c.fail("reorder_and_upcast_attn = true is not supported");
  const int d = c.integer("n_embd");
  ModelConfig m;
  StackSpec s = base_spec(c, c.integer("n_layer"), d, c.integer("n_head"), c.integer_or("n_inner", 4 * d), "n_inner");
  s.tokens = context_length(c, "n_positions", c.integer("n_positions"), /*learned=*/true);
  s.norm_type = NormType::LayerNorm;
  s.norm_eps = c.number_or("layer_norm_epsilon", 1e-5);
  s.activation = hf_activation(c, "activation_function", c.string_or("activation_function", "gelu_new"));
  m.arch.spec = s;
  m.arch.ext.attn_bias = true;
  m.vocab = c.integer("vocab_size");
  m.learned_pos = true;
  m.tied = c.boolean_or("tie_word_embeddings", true);
  m.norm_bias = true;
  m.mlp_bias = true;
  m.family = "gpt2";
  return m;
}

ModelConfig neox_config(const ConfigReader& c) {
  const int d = c.integer("hidden_size");
  const int H = c.integer("num_attention_heads");
  ModelConfig m;
  StackSpec s = base_spec(c, c.integer("num_hidden_layers"), d, H, c.integer("intermediate_size"), "intermediate_size");
  s.tokens = context_length(c, "max_position_embeddings", c.integer_or("max_position_embeddings", 2048), false);
  s.norm_type = NormType::LayerNorm;
  s.norm_eps = c.number_or("layer_norm_eps", 1e-5);
  s.activation = hf_activation(c, "hidden_act", c.string_or("hidden_act", "gelu"));
  m.arch.spec = s;
  const Rope r = hf_rope(c, 0.25);  // GPTNeoXConfig's legacy default rotary_pct
  const int rot = static_cast<int>(s.head_dim() * r.factor);  // GPTNeoXAttention.rotary_ndims: int()
  if (rot % 2 != 0)
    c.fail(fmt::format("partial_rotary_factor (rotary_pct) = {} gives an odd number {} of rotary dimensions", r.factor,
                       rot));
  m.arch.ext.rotary_dims = rot;
  m.arch.ext.rope_theta = r.theta;
  m.arch.ext.parallel = c.boolean_or("use_parallel_residual", true);
  m.arch.ext.attn_bias = c.boolean_or("attention_bias", true);
  m.vocab = c.integer("vocab_size");
  m.learned_pos = false;
  m.tied = c.boolean_or("tie_word_embeddings", false);
  m.norm_bias = true;
  m.mlp_bias = true;
  m.family = "gpt-neox";
  return m;
}

ModelConfig llama_config(const ConfigReader& c) {
  const int d = c.integer("hidden_size");
  const int H = c.integer("num_attention_heads");
  const int Hkv = c.integer_or("num_key_value_heads", H);
  ModelConfig m;
  StackSpec s = base_spec(c, c.integer("num_hidden_layers"), d, H, c.integer("intermediate_size"), "intermediate_size");
  if (c.has("head_dim") && c.integer("head_dim") != d / H)
    c.fail(fmt::format("head_dim = {} differs from hidden_size / num_attention_heads = {}: not supported",
                       c.integer("head_dim"), d / H));
  if (Hkv < 1 || H % Hkv != 0)
    c.fail(fmt::format("num_key_value_heads = {} must divide num_attention_heads = {}", Hkv, H));
  s.tokens = context_length(c, "max_position_embeddings", c.integer_or("max_position_embeddings", 2048), false);
  s.norm_type = NormType::RmsNorm;
  s.norm_eps = c.number_or("rms_norm_eps", 1e-6);
  s.activation = hf_activation(c, "hidden_act", c.string_or("hidden_act", "silu"));
  m.arch.spec = s;
  const Rope r = hf_rope(c, 1.0);
  if (r.factor != 1.0)
    c.fail(fmt::format("partial_rotary_factor = {}: Llama rotates the whole head (factor 1 only)", r.factor));
  m.arch.ext.kv_heads = Hkv;
  m.arch.ext.rotary_dims = s.head_dim();
  m.arch.ext.rope_theta = r.theta;
  m.arch.ext.gated_mlp = true;
  m.arch.ext.attn_bias = c.boolean_or("attention_bias", false);
  m.vocab = c.integer("vocab_size");
  m.learned_pos = false;
  m.tied = c.boolean_or("tie_word_embeddings", false);
  m.norm_bias = false;
  m.mlp_bias = c.boolean_or("mlp_bias", false);
  m.family = "llama";
  return m;
}

// ---------------------------------------------------------------------------------------
// weights

/// The tensors of one checkpoint (one or several shards), handed out by name with checks,
/// remembering which were used.
class Weights {
 public:
  explicit Weights(const std::vector<safetensors::File>& files) : files_(files) {
    for (const auto& f : files)
      for (const auto& t : f.tensors) {
        auto [it, fresh] = index_.emplace(t.name, Entry{&f, &t});
        if (!fresh)
          throw IoError(fmt::format("{}: tensor '{}' also appears in {}", f.source, t.name, it->second.file->source));
      }
  }

  [[nodiscard]] bool has(const std::string& name) const { return index_.count(name) != 0; }

  /// The values of `name` (C order, widened to double), which must exist with `shape`, a
  /// float dtype and finite values.
  std::vector<double> take(const std::string& name, const std::vector<std::uint64_t>& shape) {
    const auto it = index_.find(name);
    if (it == index_.end()) throw IoError(fmt::format("{}: no tensor '{}'", sources(), name));
    const safetensors::File& f = *it->second.file;
    const safetensors::Tensor& t = *it->second.tensor;
    std::vector<double> v = checked_values(t, f.source, shape);
    used_.insert(name);
    return v;
  }

  /// IoError naming every tensor that was not used, except known buffers.
  void check_all_used(const std::string& family) const {
    std::map<std::string, std::vector<std::string>> unused;  // source -> names
    for (const auto& [name, e] : index_)
      if (!used_.count(name) && !is_known_buffer(name)) unused[e.file->source].push_back("'" + name + "'");
    if (unused.empty()) return;
    const auto& [src, names] = *unused.begin();
    throw IoError(fmt::format("{}: unexpected tensor{} {} (not part of a {} model with this config.json)", src,
                              names.size() > 1 ? "s" : "", fmt::join(names, ", "), family));
  }

  [[nodiscard]] std::string sources() const {
    std::vector<std::string> s;
    for (const auto& f : files_) s.push_back(f.source);
    return fmt::format("{}", fmt::join(s, ", "));
  }

 private:
  struct Entry {
    const safetensors::File* file;
    const safetensors::Tensor* tensor;
  };
  const std::vector<safetensors::File>& files_;
  std::map<std::string, Entry> index_;
  std::set<std::string> used_;

  /// Non-parameter buffers that older checkpoints saved: GPT-2's causal mask `attn.bias` and
  /// `attn.masked_bias`, GPT-NeoX's `attention.bias` / `attention.masked_bias`, and the
  /// rotary frequencies `rotary_emb.inv_freq` (recomputed from the config).
  static bool is_known_buffer(const std::string& name) {
    auto ends = [&](std::string_view suf) {
      return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0 &&
             (name.size() == suf.size() || name[name.size() - suf.size() - 1] == '.');
    };
    return ends("attn.bias") || ends("attn.masked_bias") || ends("attention.bias") || ends("attention.masked_bias") ||
           ends("rotary_emb.inv_freq");
  }
};

using Shape = std::vector<std::uint64_t>;
Shape shp(Eigen::Index a) { return {static_cast<std::uint64_t>(a)}; }
Shape shp(Eigen::Index a, Eigen::Index b) { return {static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b)}; }

/// dst (rows, cols) = the (rows, cols) tensor as stored (Conv1D (in, out), embeddings).
template <class Real>
void copy_as_is(Mat<Real>& dst, const std::vector<double>& v) {
  for (Eigen::Index i = 0; i < dst.size(); ++i) dst.data()[i] = static_cast<Real>(v[static_cast<std::size_t>(i)]);
}
template <class Real>
void copy_vec(RowVec<Real>& dst, const std::vector<double>& v, Eigen::Index off = 0) {
  for (std::size_t i = 0; i < v.size(); ++i) dst(off + static_cast<Eigen::Index>(i)) = static_cast<Real>(v[i]);
}
/// dst.middleCols(col0, out) (in, out) = W^T for an nn.Linear weight W (out, in).
template <class Real>
void copy_transposed(Mat<Real>& dst, const std::vector<double>& v, Eigen::Index out, Eigen::Index in,
                     Eigen::Index col0 = 0) {
  for (Eigen::Index o = 0; o < out; ++o)
    for (Eigen::Index i = 0; i < in; ++i) dst(i, col0 + o) = static_cast<Real>(v[static_cast<std::size_t>(o * in + i)]);
}

/// The LM head: tied models take none (or one identical to the embedding); untied ones need
/// one of `names`, an nn.Linear weight (V, d).
template <class Real>
void fill_lm_head(Model<Real>& m, Weights& w, const std::vector<std::string>& names) {
  const Eigen::Index V = m.cfg.vocab, d = m.cfg.arch.spec.width;
  std::optional<std::string> found;
  for (const auto& n : names)
    if (w.has(n)) {
      if (found)
        throw IoError(fmt::format("{}: both '{}' and '{}' are present; expected one LM head", w.sources(), *found, n));
      found = n;
    }
  if (m.cfg.tied) {
    if (!found) return;
    const std::vector<double> v = w.take(*found, shp(V, d));
    Mat<Real> head(V, d);
    copy_as_is(head, v);
    if (head != m.wte)
      throw IoError(fmt::format("{}: tensor '{}' differs from the token embedding, but config.json ties them "
                                "(tie_word_embeddings)",
                                w.sources(), *found));
    return;
  }
  if (!found)
    throw IoError(fmt::format("{}: no tensor '{}' (the LM head; config.json has tie_word_embeddings = false)",
                              w.sources(), names.front()));
  copy_transposed(m.lm_head, w.take(*found, shp(V, d)), V, d);
}

template <class Real>
void fill_gpt2(Model<Real>& m, Weights& w) {
  const StackSpec& s = m.cfg.arch.spec;
  const Eigen::Index d = s.width, R = s.mlp_width(), T = s.tokens, V = m.cfg.vocab;
  // the hub's original gpt2 files have no "transformer." prefix
  const std::string p = w.has("wte.weight") && !w.has("transformer.wte.weight") ? "" : "transformer.";
  copy_as_is(m.wte, w.take(p + "wte.weight", shp(V, d)));
  copy_as_is(m.wpe, w.take(p + "wpe.weight", shp(T, d)));
  for (int l = 1; l <= s.depth; ++l) {
    auto& b = m.blocks[static_cast<std::size_t>(l - 1)];
    const std::string h = fmt::format("{}h.{}.", p, l - 1);
    copy_vec(b.n1g, w.take(h + "ln_1.weight", shp(d)));
    copy_vec(b.n1b, w.take(h + "ln_1.bias", shp(d)));
    copy_as_is(b.wqkv, w.take(h + "attn.c_attn.weight", shp(d, 3 * d)));  // Conv1D (in, out), [Q | K | V]
    copy_vec(b.bqkv, w.take(h + "attn.c_attn.bias", shp(3 * d)));
    copy_as_is(b.wo, w.take(h + "attn.c_proj.weight", shp(d, d)));
    copy_vec(b.bo, w.take(h + "attn.c_proj.bias", shp(d)));
    copy_vec(b.n2g, w.take(h + "ln_2.weight", shp(d)));
    copy_vec(b.n2b, w.take(h + "ln_2.bias", shp(d)));
    copy_as_is(b.w1, w.take(h + "mlp.c_fc.weight", shp(d, R)));
    copy_vec(b.b1, w.take(h + "mlp.c_fc.bias", shp(R)));
    copy_as_is(b.w2, w.take(h + "mlp.c_proj.weight", shp(R, d)));
    copy_vec(b.b2, w.take(h + "mlp.c_proj.bias", shp(d)));
  }
  copy_vec(m.lnf_g, w.take(p + "ln_f.weight", shp(d)));
  copy_vec(m.lnf_b, w.take(p + "ln_f.bias", shp(d)));
  fill_lm_head(m, w, {"lm_head.weight"});
}

template <class Real>
void fill_neox(Model<Real>& m, Weights& w) {
  const StackSpec& s = m.cfg.arch.spec;
  const Eigen::Index d = s.width, R = s.mlp_width(), V = m.cfg.vocab, dh = s.head_dim();
  const bool bias = m.cfg.arch.ext.attn_bias;
  copy_as_is(m.wte, w.take("gpt_neox.embed_in.weight", shp(V, d)));
  for (int l = 1; l <= s.depth; ++l) {
    auto& b = m.blocks[static_cast<std::size_t>(l - 1)];
    const std::string h = fmt::format("gpt_neox.layers.{}.", l - 1);
    copy_vec(b.n1g, w.take(h + "input_layernorm.weight", shp(d)));
    copy_vec(b.n1b, w.take(h + "input_layernorm.bias", shp(d)));
    // query_key_value (3d, d), rows interleaved per head [q_0 k_0 v_0 | q_1 k_1 v_1 | ...]:
    // row 3 dh h + part dh + j goes to column part d + h dh + j of [Q | K | V].
    auto col_of = [&](Eigen::Index r) {
      const Eigen::Index head = r / (3 * dh), part = (r % (3 * dh)) / dh, j = r % dh;
      return part * d + head * dh + j;
    };
    const std::vector<double> wqkv = w.take(h + "attention.query_key_value.weight", shp(3 * d, d));
    for (Eigen::Index r = 0; r < 3 * d; ++r)
      for (Eigen::Index i = 0; i < d; ++i)
        b.wqkv(i, col_of(r)) = static_cast<Real>(wqkv[static_cast<std::size_t>(r * d + i)]);
    copy_transposed(b.wo, w.take(h + "attention.dense.weight", shp(d, d)), d, d);
    if (bias) {
      const std::vector<double> bqkv = w.take(h + "attention.query_key_value.bias", shp(3 * d));
      for (Eigen::Index r = 0; r < 3 * d; ++r) b.bqkv(col_of(r)) = static_cast<Real>(bqkv[static_cast<std::size_t>(r)]);
      copy_vec(b.bo, w.take(h + "attention.dense.bias", shp(d)));
    }
    copy_vec(b.n2g, w.take(h + "post_attention_layernorm.weight", shp(d)));
    copy_vec(b.n2b, w.take(h + "post_attention_layernorm.bias", shp(d)));
    copy_transposed(b.w1, w.take(h + "mlp.dense_h_to_4h.weight", shp(R, d)), R, d);
    copy_vec(b.b1, w.take(h + "mlp.dense_h_to_4h.bias", shp(R)));
    copy_transposed(b.w2, w.take(h + "mlp.dense_4h_to_h.weight", shp(d, R)), d, R);
    copy_vec(b.b2, w.take(h + "mlp.dense_4h_to_h.bias", shp(d)));
  }
  copy_vec(m.lnf_g, w.take("gpt_neox.final_layer_norm.weight", shp(d)));
  copy_vec(m.lnf_b, w.take("gpt_neox.final_layer_norm.bias", shp(d)));
  // the file name of real checkpoints (and of transformers' save) is embed_out
  fill_lm_head(m, w, {"embed_out.weight", "lm_head.weight"});
}

template <class Real>
void fill_llama(Model<Real>& m, Weights& w) {
  const StackSpec& s = m.cfg.arch.spec;
  const sim::Dims D = sim::dims_of(m.cfg.arch);
  const Eigen::Index d = D.d, R = D.R, V = m.cfg.vocab, q = D.H * D.dh, kv = D.Hkv * D.dh;
  copy_as_is(m.wte, w.take("model.embed_tokens.weight", shp(V, d)));
  for (int l = 1; l <= s.depth; ++l) {
    auto& b = m.blocks[static_cast<std::size_t>(l - 1)];
    const std::string h = fmt::format("model.layers.{}.", l - 1);
    copy_vec(b.n1g, w.take(h + "input_layernorm.weight", shp(d)));
    copy_transposed(b.wqkv, w.take(h + "self_attn.q_proj.weight", shp(q, d)), q, d, 0);
    copy_transposed(b.wqkv, w.take(h + "self_attn.k_proj.weight", shp(kv, d)), kv, d, D.k_off());
    copy_transposed(b.wqkv, w.take(h + "self_attn.v_proj.weight", shp(kv, d)), kv, d, D.v_off());
    copy_transposed(b.wo, w.take(h + "self_attn.o_proj.weight", shp(d, q)), d, q);
    if (m.cfg.arch.ext.attn_bias) {
      copy_vec(b.bqkv, w.take(h + "self_attn.q_proj.bias", shp(q)), 0);
      copy_vec(b.bqkv, w.take(h + "self_attn.k_proj.bias", shp(kv)), D.k_off());
      copy_vec(b.bqkv, w.take(h + "self_attn.v_proj.bias", shp(kv)), D.v_off());
      copy_vec(b.bo, w.take(h + "self_attn.o_proj.bias", shp(d)));
    }
    copy_vec(b.n2g, w.take(h + "post_attention_layernorm.weight", shp(d)));
    copy_transposed(b.w1, w.take(h + "mlp.gate_proj.weight", shp(R, d)), R, d);
    copy_transposed(b.w3, w.take(h + "mlp.up_proj.weight", shp(R, d)), R, d);
    copy_transposed(b.w2, w.take(h + "mlp.down_proj.weight", shp(d, R)), d, R);
    if (m.cfg.mlp_bias) {
      copy_vec(b.b1, w.take(h + "mlp.gate_proj.bias", shp(R)));
      copy_vec(b.b3, w.take(h + "mlp.up_proj.bias", shp(R)));
      copy_vec(b.b2, w.take(h + "mlp.down_proj.bias", shp(d)));
    }
  }
  copy_vec(m.lnf_g, w.take("model.norm.weight", shp(d)));
  fill_lm_head(m, w, {"lm_head.weight"});
}

// ---------------------------------------------------------------------------------------
// files

json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw IoError(fmt::format("{}: not valid JSON: {}", p.string(), e.what()));
  }
}

/// The shards listed by a model.safetensors.index.json, read.
std::vector<safetensors::File> read_sharded(const fs::path& index) {
  const json j = read_json(index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw IoError(fmt::format("{}: no \"weight_map\" object", index.string()));
  std::set<std::string> shards;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw IoError(fmt::format("{}: weight_map[\"{}\"] is not a file name", index.string(), name));
    const std::string f = file.get<std::string>();
    if (f.empty() || fs::path(f).has_parent_path() || f == "." || f == "..")
      throw IoError(fmt::format("{}: weight_map[\"{}\"] = \"{}\" is not a file in the same folder", index.string(),
                                name, f));
    shards.insert(f);
  }
  if (shards.empty()) throw IoError(fmt::format("{}: weight_map is empty", index.string()));
  std::vector<safetensors::File> files;
  for (const auto& f : shards) files.push_back(safetensors::read_file(index.parent_path() / f));
  return files;
}

}  // namespace

ModelConfig hf_model_config(const json& config, const std::string& origin) {
  if (!config.is_object()) throw ConfigError(fmt::format("{}: config.json must be a JSON object", origin));
  const ConfigReader c(config, origin);
  if (!c.has("model_type") || !c.raw("model_type").is_string())
    c.fail(fmt::format("no \"model_type\" string (supported: {})", fmt::join(kHfModelTypes, ", ")));
  const std::string type = c.raw("model_type").get<std::string>();
  reject_common(c);
  ModelConfig m;
  if (type == "gpt2")
    m = gpt2_config(c);
  else if (type == "gpt_neox")
    m = neox_config(c);
  else if (type == "llama")
    m = llama_config(c);
  else
    c.fail(fmt::format("model_type \"{}\" is not supported (supported: {})", type, fmt::join(kHfModelTypes, ", ")));
  try {
    m.validate();
  } catch (const ConfigError& e) {
    c.fail(e.what());
  }
  return m;
}

template <class Real>
Model<Real> import_hf(const json& config, const std::string& origin, const std::vector<safetensors::File>& files) {
  const ModelConfig cfg = hf_model_config(config, origin);
  std::vector<const safetensors::File*> fps;
  for (const auto& f : files) fps.push_back(&f);
  check_config_fits_files(cfg, fps, origin, sizeof(Real));  // before allocating what config.json declares
  Model<Real> m = Model<Real>::zeros(cfg);
  Weights w(files);
  if (cfg.family == "gpt2")
    fill_gpt2(m, w);
  else if (cfg.family == "gpt-neox")
    fill_neox(m, w);
  else
    fill_llama(m, w);
  w.check_all_used(config["model_type"].get<std::string>());
  return m;
}

namespace {
/// config.json's path and the weights of a folder or of a file with config.json next to it.
std::pair<fs::path, std::vector<safetensors::File>> locate_hf(const fs::path& p) {
  if (fs::is_directory(p)) {
    const fs::path cfg = p / "config.json";
    if (!fs::is_regular_file(cfg))
      throw IoError(fmt::format("{}: no config.json in this folder (a Hugging Face checkpoint folder holds config.json "
                                "and model.safetensors)",
                                p.string()));
    if (fs::is_regular_file(p / "model.safetensors")) return {cfg, {safetensors::read_file(p / "model.safetensors")}};
    if (fs::is_regular_file(p / "model.safetensors.index.json"))
      return {cfg, read_sharded(p / "model.safetensors.index.json")};
    throw IoError(fmt::format("{}: no model.safetensors (or model.safetensors.index.json) in this folder", p.string()));
  }
  if (!fs::exists(p)) throw IoError(fmt::format("{}: no such file or folder", p.string()));
  const fs::path cfg = p.parent_path() / "config.json";
  if (!fs::is_regular_file(cfg))
    throw IoError(fmt::format("{}: no config.json next to it (needed to import a Hugging Face checkpoint)", p.string()));
  const std::string name = p.filename().string();
  if (name.size() > 11 && name.ends_with(".index.json")) return {cfg, read_sharded(p)};
  return {cfg, {safetensors::read_file(p)}};
}
}  // namespace

template <class Real>
Model<Real> import_hf(const fs::path& dir_or_file) {
  auto [cfg, files] = locate_hf(dir_or_file);
  return import_hf<Real>(read_json(cfg), cfg.string(), files);
}

template <class Real>
Model<Real> load_model(const fs::path& path) {
  if (fs::is_directory(path)) return import_hf<Real>(path);
  if (!fs::exists(path))
    throw IoError(fmt::format("{}: no such file or folder (expected a sigprop checkpoint, or a Hugging Face checkpoint: "
                              "a folder with config.json and model.safetensors)",
                              path.string()));
  const std::string name = path.filename().string();
  if (name.ends_with(".index.json")) return import_hf<Real>(path);
  safetensors::File f = safetensors::read_file(path);
  if (f.metadata.count("sigprop.model")) return model_from_safetensors<Real>(f);
  const fs::path cfg = path.parent_path() / "config.json";
  if (!fs::is_regular_file(cfg))
    throw IoError(fmt::format("{}: neither a sigprop checkpoint (no __metadata__ key \"sigprop.model\") nor a Hugging "
                              "Face checkpoint (no config.json next to it)",
                              path.string()));
  std::vector<safetensors::File> files;
  files.push_back(std::move(f));
  return import_hf<Real>(read_json(cfg), cfg.string(), files);
}

#define SIGPROP_IMPORT_INSTANTIATE(Real)                                                                     \
  template Model<Real> import_hf(const fs::path&);                                                           \
  template Model<Real> import_hf(const json&, const std::string&, const std::vector<safetensors::File>&); \
  template Model<Real> load_model(const fs::path&);

SIGPROP_IMPORT_INSTANTIATE(float)
SIGPROP_IMPORT_INSTANTIATE(double)

}  // namespace sigprop::validate
