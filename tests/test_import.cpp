// Hugging Face importers (validate/import.hpp).
//   [golden] tests/golden/hf/{gpt2,neox,neox_seq,llama}, written by tools/hf_golden.py from
//            tiny randomised transformers models (see tests/golden/hf/README.md): every X_l,
//            X_L before the final norm, the final-normed state and the logits, in double
//            (6e-16 reached, 1e-12 asserted) and float (3e-7 reached; the bar, 1e-4)
//   [config] what the stack cannot express, and broken weights: errors naming the key, the
//            file and the tensor
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "validate/import.hpp"
#include "validate/model.hpp"
#include "validate/safetensors.hpp"

namespace fs = std::filesystem;
namespace st = sigprop::safetensors;
using nlohmann::json;
using sigprop::ConfigError;
using sigprop::IoError;
using namespace sigprop::validate;

namespace {

const fs::path kHf = fs::path(SIGPROP_SOURCE_DIR) / "tests" / "golden" / "hf";

json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in);
  return json::parse(in);
}

void write_json(const fs::path& p, const json& j) {
  std::ofstream out(p);
  REQUIRE(out);
  out << j.dump(2);
}

/// ||a - b||_F / ||b||_F in double, b a JSON array of rows.
template <class Real>
double rel_err(const Mat<Real>& a, const json& b) {
  REQUIRE(b.is_array());
  REQUIRE(static_cast<Eigen::Index>(b.size()) == a.rows());
  double num = 0, den = 0;
  for (Eigen::Index t = 0; t < a.rows(); ++t) {
    const json& row = b[static_cast<std::size_t>(t)];
    REQUIRE(static_cast<Eigen::Index>(row.size()) == a.cols());
    for (Eigen::Index i = 0; i < a.cols(); ++i) {
      const double ref = row[static_cast<std::size_t>(i)].get<double>();
      const double diff = static_cast<double>(a(t, i)) - ref;
      num += diff * diff;
      den += ref * ref;
    }
  }
  REQUIRE(den > 0);
  return std::sqrt(num / den);
}

/// The largest relative error over X_0..X_{L-1}, X_L (pre_final_norm), the final-normed
/// state (hidden_states[L]) and the logits.
template <class Real>
double golden_max_err(const std::string& name) {
  const fs::path dir = kHf / name;
  const json g = read_json(dir / "golden.json");
  const Model<Real> m = import_hf<Real>(dir);
  const std::vector<int> ids = g["input_ids"].get<std::vector<int>>();
  const Trace<Real> tr = forward(m, ids);
  const int L = m.cfg.arch.spec.depth;
  REQUIRE(g["hidden_states"].size() == static_cast<std::size_t>(L) + 1);
  REQUIRE(g["final_norm_applied_to_last"].get<bool>());
  double worst = 0;
  for (int l = 0; l < L; ++l) {
    const double e = rel_err(tr.X[static_cast<std::size_t>(l)], g["hidden_states"][static_cast<std::size_t>(l)]);
    INFO(name << " X_" << l << " relative error " << e);
    worst = std::max(worst, e);
  }
  worst = std::max(worst, rel_err(tr.X[static_cast<std::size_t>(L)], g["pre_final_norm"]));
  worst = std::max(worst, rel_err(tr.xf, g["hidden_states"][static_cast<std::size_t>(L)]));
  worst = std::max(worst, rel_err(tr.logits, g["logits"]));
  return worst;
}

/// A fresh folder under the system temp dir holding a copy of a golden model, removed at
/// scope exit.
struct TempModel {
  fs::path path;
  TempModel(const std::string& golden, const std::string& tag)
      : path(fs::temp_directory_path() / ("sigprop-import-" + tag + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kHf / golden / f, path / f);
  }
  ~TempModel() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] fs::path weights() const { return path / "model.safetensors"; }
  [[nodiscard]] fs::path config() const { return path / "config.json"; }
  void edit_config(const std::function<void(json&)>& f) const {
    json j = read_json(config());
    f(j);
    write_json(config(), j);
  }
  void edit_weights(const std::function<void(std::vector<st::Tensor>&)>& f) const {
    st::File file = st::read_file(weights());
    f(file.tensors);
    st::write_file(weights(), file.tensors, file.metadata);
  }
};

std::vector<st::Tensor>::iterator find_tensor(std::vector<st::Tensor>& ts, const std::string& name) {
  auto it = std::find_if(ts.begin(), ts.end(), [&](const st::Tensor& t) { return t.name == name; });
  REQUIRE(it != ts.end());
  return it;
}

}  // namespace

TEST_CASE("HF import matches transformers on the golden models in double", "[golden]") {
  for (const char* name : {"gpt2", "neox", "neox_seq", "llama"}) {
    const double e = golden_max_err<double>(name);
    INFO(name << ": largest relative error per layer in double " << e);
    CHECK(e <= 1e-12);  // float64 golden data from the same rounded weights: 6e-16 reached
  }
}

TEST_CASE("HF import matches transformers on the golden models in float", "[golden]") {
  for (const char* name : {"gpt2", "neox", "neox_seq", "llama"}) {
    const double e = golden_max_err<float>(name);
    INFO(name << ": largest relative error per layer in float " << e);
    CHECK(e <= 1e-4);  // the bar; float GEMMs over d = 32 reach 3e-7
  }
}

TEST_CASE("HF import maps each family onto the right architecture", "[golden]") {
  const Model<double> gpt2 = import_hf<double>(kHf / "gpt2");
  CHECK(gpt2.cfg.family == "gpt2");
  CHECK(gpt2.cfg.tied);
  CHECK(gpt2.cfg.learned_pos);
  CHECK(gpt2.cfg.arch.spec.activation == sigprop::Activation::GeluTanh);
  CHECK(gpt2.cfg.arch.spec.tokens == 16);
  CHECK(gpt2.cfg.arch.spec.mlp_width() == 128);
  const Model<double> neox = import_hf<double>(kHf / "neox" / "model.safetensors");  // a file, config.json next to it
  CHECK(neox.cfg.family == "gpt-neox");
  CHECK(neox.cfg.arch.ext.parallel);
  CHECK(neox.cfg.arch.ext.rotary_dims == 4);
  CHECK(neox.cfg.arch.spec.activation == sigprop::Activation::Gelu);
  CHECK_FALSE(neox.cfg.tied);
  CHECK_FALSE(import_hf<double>(kHf / "neox_seq").cfg.arch.ext.parallel);
  const Model<double> llama = import_hf<double>(kHf / "llama");
  CHECK(llama.cfg.family == "llama");
  CHECK(llama.cfg.arch.ext.kv_heads == 2);
  CHECK(llama.cfg.arch.ext.gated_mlp);
  CHECK(llama.cfg.arch.ext.rotary_dims == 8);
  CHECK(llama.cfg.arch.spec.norm_type == sigprop::NormType::RmsNorm);
  CHECK(llama.cfg.arch.spec.norm_eps == 1e-6);
  CHECK(llama.cfg.arch.spec.mlp_width() == 48);
  CHECK_FALSE(llama.cfg.norm_bias);
  CHECK_FALSE(llama.cfg.mlp_bias);
}

TEST_CASE("HF import reads the legacy NeoX rotary keys rotary_pct and rotary_emb_base", "[golden]") {
  TempModel t("neox_seq", "legacy");
  t.edit_config([](json& j) {
    j.erase("rope_parameters");
    j["rotary_pct"] = 0.5;
    j["rotary_emb_base"] = 10000;
    j["rope_scaling"] = nullptr;
  });
  const Model<double> a = import_hf<double>(t.path);
  const Model<double> b = import_hf<double>(kHf / "neox_seq");
  CHECK(a.cfg.to_json() == b.cfg.to_json());
  // and the legacy default rotary_pct 0.25 when no key is given
  t.edit_config([](json& j) { j.erase("rotary_pct"); });
  CHECK(import_hf<double>(t.path).cfg.arch.ext.rotary_dims == 2);
}

TEST_CASE("HF import reads a top-level rope_theta as real Llama configs have it", "[golden]") {
  TempModel t("llama", "theta");
  t.edit_config([](json& j) {
    j.erase("rope_parameters");
    j["rope_theta"] = 500000.0;
  });
  CHECK(import_hf<double>(t.path).cfg.arch.ext.rope_theta == 500000.0);
}

TEST_CASE("load_model reads sigprop checkpoints and HF folders", "[golden]") {
  const Model<double> hf = load_model<double>(kHf / "llama");
  const Trace<double> a = forward(hf, std::vector<int>{1, 2, 3});
  TempModel t("gpt2", "load");
  const fs::path ck = t.path / "sub" / "ck.safetensors";
  fs::create_directories(ck.parent_path());
  save_checkpoint(ck, hf, {}, st::Dtype::F64);
  const Model<double> back = load_model<double>(ck);
  CHECK(back.cfg.to_json() == hf.cfg.to_json());
  CHECK(forward(back, std::vector<int>{1, 2, 3}).logits == a.logits);
  // a plain safetensors file with config.json next to it is imported
  CHECK(load_model<double>(t.weights()).cfg.family == "gpt2");
  // neither: no sigprop metadata, no config.json
  st::write_file(t.path / "sub" / "plain.safetensors", st::read_file(t.weights()).tensors);
  try {
    (void)load_model<double>(t.path / "sub" / "plain.safetensors");
    FAIL("expected an IoError");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("plain.safetensors") != std::string::npos);
    CHECK(msg.find("sigprop.model") != std::string::npos);
    CHECK(msg.find("config.json") != std::string::npos);
  }
  CHECK_THROWS_AS(load_model<double>(t.path / "nothing-here"), IoError);
}

TEST_CASE("HF import ties Llama embeddings when tie_word_embeddings is true", "[config]") {
  TempModel t("llama", "tied");
  t.edit_config([](json& j) { j["tie_word_embeddings"] = true; });
  // an lm_head that differs from the embedding contradicts the config
  CHECK_THROWS_WITH(import_hf<double>(t.path), Catch::Contains("lm_head.weight") && Catch::Contains("differs"));
  t.edit_weights([](std::vector<st::Tensor>& ts) { ts.erase(find_tensor(ts, "lm_head.weight")); });
  const Model<double> m = import_hf<double>(t.path);
  CHECK(m.cfg.tied);
  CHECK(m.lm_head.size() == 0);
}

// ---------------------------------------------------------------------------------------
// config.json: what sigprop's stack cannot express

namespace {
std::string config_error(const std::string& golden, const std::string& tag, const std::function<void(json&)>& edit) {
  TempModel t(golden, tag);
  t.edit_config(edit);
  try {
    (void)import_hf<double>(t.path);
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("config.json") != std::string::npos);
    return msg;
  }
  FAIL("expected a ConfigError");
  return {};
}
}  // namespace

TEST_CASE("HF import rejects an unsupported model_type and lists the supported ones", "[config]") {
  const std::string msg = config_error("llama", "type", [](json& j) { j["model_type"] = "mistral"; });
  INFO(msg);
  CHECK(msg.find("\"mistral\"") != std::string::npos);
  CHECK(msg.find("gpt2, gpt_neox, llama") != std::string::npos);
}

TEST_CASE("HF import rejects rotary scaling", "[config]") {
  std::string msg = config_error("llama", "rope1", [](json& j) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  });
  INFO(msg);
  CHECK(msg.find("rope_scaling") != std::string::npos);
  CHECK(msg.find("linear") != std::string::npos);
  msg = config_error("llama", "rope2", [](json& j) { j["rope_parameters"]["rope_type"] = "llama3"; });
  INFO(msg);
  CHECK(msg.find("rope_parameters.rope_type") != std::string::npos);
  // a default rope_scaling is fine
  TempModel t("llama", "rope3");
  t.edit_config([](json& j) { j["rope_scaling"] = {{"type", "default"}}; });
  CHECK_NOTHROW(import_hf<double>(t.path));
}

TEST_CASE("HF import rejects config settings the stack cannot compute", "[config]") {
  struct Case {
    const char* golden;
    const char* key;
    json value;
  };
  const std::vector<Case> cases = {
      {"gpt2", "scale_attn_by_inverse_layer_idx", true},
      {"gpt2", "reorder_and_upcast_attn", true},
      {"gpt2", "scale_attn_weights", false},
      {"gpt2", "add_cross_attention", true},
      {"gpt2", "activation_function", "quick_gelu"},
      {"neox", "hidden_act", "gelu_10"},
      {"llama", "head_dim", 16},
      {"llama", "sliding_window", 4},
      {"llama", "num_key_value_heads", 3},
      {"gpt2", "n_positions", 100000},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string msg = config_error(c.golden, "bad" + std::to_string(i++), [&](json& j) { j[c.key] = c.value; });
    INFO(msg);
    CHECK(msg.find(c.key) != std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------
// model.safetensors: missing, misshaped, wrong-dtype and unknown tensors

namespace {
std::string weights_error(const std::string& golden, const std::string& tag,
                          const std::function<void(std::vector<st::Tensor>&)>& edit) {
  TempModel t(golden, tag);
  t.edit_weights(edit);
  try {
    (void)import_hf<double>(t.path);
  } catch (const IoError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("model.safetensors") != std::string::npos);
    return msg;
  }
  FAIL("expected an IoError");
  return {};
}
}  // namespace

TEST_CASE("HF import names a missing tensor", "[config]") {
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  const std::string msg = weights_error("llama", "missing", [&](auto& ts) { ts.erase(find_tensor(ts, name)); });
  INFO(msg);
  CHECK(msg.find("'" + name + "'") != std::string::npos);
}

TEST_CASE("HF import names a missing untied NeoX LM head", "[config]") {
  const std::string msg = weights_error("neox", "nohead", [&](auto& ts) { ts.erase(find_tensor(ts, "embed_out.weight")); });
  INFO(msg);
  CHECK(msg.find("embed_out.weight") != std::string::npos);
}

TEST_CASE("HF import names a misshaped tensor and both shapes", "[config]") {
  const std::string name = "transformer.h.0.attn.c_proj.weight";
  const std::string msg = weights_error("gpt2", "shape", [&](auto& ts) {
    auto it = find_tensor(ts, name);
    const std::vector<double> v(32 * 16, 0.5);
    *it = st::make_tensor(name, st::Dtype::F32, {32, 16}, std::span<const double>(v));
  });
  INFO(msg);
  CHECK(msg.find("'" + name + "'") != std::string::npos);
  CHECK(msg.find("[32, 16]") != std::string::npos);
  CHECK(msg.find("[32, 32]") != std::string::npos);
}

TEST_CASE("HF import names a tensor of integer dtype", "[config]") {
  const std::string name = "gpt_neox.layers.0.attention.dense.weight";
  const std::string msg = weights_error("neox", "dtype", [&](auto& ts) {
    auto it = find_tensor(ts, name);
    st::Tensor t;
    t.name = name;
    t.dtype = st::Dtype::I32;
    t.shape = it->shape;
    t.bytes.assign(static_cast<std::size_t>(t.numel()) * 4, std::byte{0});
    *it = std::move(t);
  });
  INFO(msg);
  CHECK(msg.find("'" + name + "'") != std::string::npos);
  CHECK(msg.find("I32") != std::string::npos);
}

TEST_CASE("HF import names unknown tensors but skips known buffers", "[config]") {
  const std::vector<double> v(4, 1.0);
  const std::string msg = weights_error("gpt2", "extra", [&](auto& ts) {
    ts.push_back(st::make_tensor("transformer.h.0.attn.extra_proj", st::Dtype::F32, {4}, std::span<const double>(v)));
  });
  INFO(msg);
  CHECK(msg.find("'transformer.h.0.attn.extra_proj'") != std::string::npos);
  // GPT-2's causal-mask buffers and rotary inv_freq of older files are not parameters
  TempModel t("gpt2", "buffers");
  t.edit_weights([&](auto& ts) {
    ts.push_back(st::make_tensor("transformer.h.0.attn.bias", st::Dtype::F32, {4}, std::span<const double>(v)));
    ts.push_back(st::make_tensor("transformer.h.1.attn.masked_bias", st::Dtype::F32, {}, std::span<const double>(v.data(), 1)));
  });
  CHECK_NOTHROW(import_hf<double>(t.path));
  TempModel n("neox_seq", "buffers");
  n.edit_weights([&](auto& ts) {
    ts.push_back(st::make_tensor("gpt_neox.layers.0.attention.rotary_emb.inv_freq", st::Dtype::F32, {2},
                                 std::span<const double>(v.data(), 2)));
  });
  CHECK_NOTHROW(import_hf<double>(n.path));
}

TEST_CASE("HF import reports a file that fails safetensors validation", "[config]") {
  TempModel t("gpt2", "corrupt");
  fs::resize_file(t.weights(), fs::file_size(t.weights()) - 4);  // truncated buffer
  CHECK_THROWS_WITH(import_hf<double>(t.path), Catch::Contains("model.safetensors"));
  CHECK_THROWS_AS(import_hf<double>(t.path), IoError);
}

TEST_CASE("HF import reads the hub's unprefixed GPT-2 names", "[golden]") {
  TempModel t("gpt2", "noprefix");
  t.edit_weights([](auto& ts) {
    for (auto& x : ts)
      if (x.name.rfind("transformer.", 0) == 0) x.name = x.name.substr(12);
  });
  const Model<double> a = import_hf<double>(t.path);
  const Model<double> b = import_hf<double>(kHf / "gpt2");
  CHECK(a.wte == b.wte);
  CHECK(a.blocks[1].wqkv == b.blocks[1].wqkv);
}

TEST_CASE("HF import reads a sharded checkpoint through model.safetensors.index.json", "[golden]") {
  TempModel t("llama", "sharded");
  st::File f = st::read_file(t.weights());
  json index;
  std::vector<st::Tensor> a, b;
  for (auto& x : f.tensors) {
    const bool first = x.name.find("layers.1.") == std::string::npos;
    index["weight_map"][x.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (first ? a : b).push_back(std::move(x));
  }
  st::write_file(t.path / "model-00001-of-00002.safetensors", a);
  st::write_file(t.path / "model-00002-of-00002.safetensors", b);
  write_json(t.path / "model.safetensors.index.json", index);
  fs::remove(t.weights());
  const Model<double> sharded = import_hf<double>(t.path);
  const Model<double> whole = import_hf<double>(kHf / "llama");
  const std::vector<int> ids{3, 1, 4, 1, 5};
  CHECK(forward(sharded, ids).logits == forward(whole, ids).logits);
  // a missing tensor names every shard searched
  b.erase(b.begin());
  st::write_file(t.path / "model-00002-of-00002.safetensors", b);
  CHECK_THROWS_WITH(import_hf<double>(t.path), Catch::Contains("model-00002-of-00002.safetensors"));
}
