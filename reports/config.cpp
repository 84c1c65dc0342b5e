#include "reports/config.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/profile.hpp"
#include "core/toml_text.hpp"
#include "reports/sweep.hpp"
#include "validate/import.hpp"

namespace sigprop::reports {
namespace {

const std::vector<std::string> kSpecTables{"stack", "init", "input"};
const std::vector<std::string> kTopTables{"report", "stack", "init", "input", "sweep", "engines", "figures", "atlas"};


[[noreturn]] void fail(const std::string& origin, const std::string& msg) {
  throw ConfigError(fmt::format("{}: {}", origin, msg));
}

void unknown_key(const std::string& origin, const std::string& where, const std::string& key,
                 const std::vector<std::string>& allowed) {
  std::string all;
  for (auto& a : allowed) all += (all.empty() ? "" : ", ") + a;
  std::string hint = did_you_mean(key, allowed);
  fail(origin, fmt::format("unknown key \"{}{}\"; allowed: {}{}", where, key, all,
                           hint.empty() ? "" : fmt::format(" (did you mean \"{}{}\"?)", where, hint)));
}

/// A scalar TOML value written back as a TOML literal (used to rebuild cell specs).
std::string literal(const toml::node& n, const std::string& origin, const std::string& key) {
  if (auto s = n.value_exact<std::string>()) {
    std::string out = "\"";
    for (char c : *s) {
      if (c == '"' || c == '\\') out += '\\';
      if (static_cast<unsigned char>(c) < 0x20) fail(origin, fmt::format("{}: control characters are not allowed", key));
      out += c;
    }
    return out + "\"";
  }
  if (auto i = n.value_exact<int64_t>()) return fmt::format("{}", *i);
  if (auto d = n.value_exact<double>()) {
    std::string t = fmt::format("{:.17g}", *d);
    if (t.find_first_of(".eEn") == std::string::npos) t += ".0";
    return t;
  }
  if (auto b = n.value_exact<bool>()) return *b ? "true" : "false";
  fail(origin, fmt::format("{}: expected a number, string or boolean, got {}", key, toml_type_name(n)));
}

std::string display(const toml::node& n) {
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto i = n.value_exact<int64_t>()) return fmt::format("{}", *i);
  if (auto d = n.value_exact<double>()) return fmt::format("{}", *d);
  if (auto b = n.value_exact<bool>()) return *b ? "true" : "false";
  return "?";
}

int get_int(const toml::node& n, const std::string& origin, const std::string& key, int lo, int hi) {
  auto v = n.value_exact<int64_t>();
  if (!v) fail(origin, fmt::format("{}: expected an integer, got {}", key, toml_type_name(n)));
  if (*v < lo || *v > hi) fail(origin, fmt::format("{}: must be in [{}, {}], got {}", key, lo, hi, *v));
  return static_cast<int>(*v);
}
bool get_bool(const toml::node& n, const std::string& origin, const std::string& key) {
  auto v = n.value_exact<bool>();
  if (!v) fail(origin, fmt::format("{}: expected true or false, got {}", key, toml_type_name(n)));
  return *v;
}
std::string get_string(const toml::node& n, const std::string& origin, const std::string& key) {
  auto v = n.value_exact<std::string>();
  if (!v) fail(origin, fmt::format("{}: expected a string, got {}", key, toml_type_name(n)));
  return *v;
}
uint64_t get_seed(const toml::node& n, const std::string& origin, const std::string& key) {
  auto v = n.value_exact<int64_t>();
  if (!v || *v < 0) fail(origin, fmt::format("{}: expected a non-negative integer, got {}", key, toml_type_name(n)));
  return static_cast<uint64_t>(*v);
}

void parse_sweep(const toml::table& sw, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  for (auto&& [k, node] : sw) {
    std::string name(k.str());
    if (name == "variants") {
      auto* arr = node.as_array();
      if (arr == nullptr || !arr->is_array_of_tables())
        fail(origin, "sweep.variants: expected an array of tables ([[sweep.variants]])");
      std::set<std::string> seen;
      for (size_t i = 0; i < arr->size(); ++i) {
        const auto& t = *arr->get(i)->as_table();
        std::string where = fmt::format("sweep.variants[{}]", i + 1);
        Variant v;
        for (auto&& [vk, vn] : t) {
          std::string vname(vk.str());
          if (vname == "label") {
            v.label = get_string(vn, origin, where + ".label");
            continue;
          }
          if (std::find(kSpecTables.begin(), kSpecTables.end(), vname) == kSpecTables.end() || !vn.is_table())
            unknown_key(origin, where + ".", vname, {"label", "stack.*", "init.*", "input.*"});
          for (auto&& [sk, sn] : *vn.as_table()) {
            std::string key = vname + "." + std::string(sk.str());
            v.sets.emplace_back(key, literal(sn, origin, where + "." + key));
          }
        }
        if (v.label.empty()) fail(origin, fmt::format("{}: needs a label = \"...\"", where));
        if (!seen.insert(v.label).second) fail(origin, fmt::format("{}: label \"{}\" is used twice", where, v.label));
        cfg.variants.push_back(std::move(v));
      }
      continue;
    }
    if (std::find(kSpecTables.begin(), kSpecTables.end(), name) == kSpecTables.end() || !node.is_table())
      unknown_key(origin, "sweep.", name, {"stack.<key>", "init.<key>", "input.<key>", "variants"});
    for (auto&& [sk, sn] : *node.as_table()) {
      SweepAxis ax;
      ax.key = name + "." + std::string(sk.str());
      auto* arr = sn.as_array();
      if (arr == nullptr || arr->empty())
        fail(origin, fmt::format("sweep.{}: expected a non-empty array of values, e.g. [12, 48, 96], got {}", ax.key,
                                 arr ? "an empty array" : toml_type_name(sn)));
      std::set<std::string> seen;
      for (size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        ax.values.push_back(literal(e, origin, fmt::format("sweep.{}[{}]", ax.key, i + 1)));
        ax.labels.push_back(display(e));
        if (!seen.insert(ax.values.back()).second)
          fail(origin, fmt::format("sweep.{}: value {} appears twice", ax.key, ax.values.back()));
      }
      cfg.axes.push_back(std::move(ax));
    }
  }
  for (auto& v : cfg.variants)
    for (auto& [key, val] : v.sets)
      for (auto& ax : cfg.axes)
        if (ax.key == key)
          fail(origin, fmt::format("{} is both a sweep axis and set by variant \"{}\"; choose one", key, v.label));
  std::sort(cfg.axes.begin(), cfg.axes.end(), [](const SweepAxis& a, const SweepAxis& b) { return a.key < b.key; });
}

const std::vector<std::string> kEngineNames{"theory",   "simulate",          "ode",    "sde", "clustering",
                                            "spectrum", "spectrum_simulate", "measure"};

/// A number (integer or float); finite, in [lo, hi], and > lo when open_lo.
double get_double(const toml::node& n, const std::string& origin, const std::string& key, double lo, double hi,
                  bool open_lo = false) {
  double v = 0;
  if (auto d = n.value_exact<double>())
    v = *d;
  else if (auto i = n.value_exact<int64_t>())
    v = static_cast<double>(*i);
  else
    fail(origin, fmt::format("{}: expected a number, got {}", key, toml_type_name(n)));
  if (!std::isfinite(v) || v < lo || v > hi || (open_lo && v == lo))
    fail(origin, fmt::format("{}: must be finite and in {}{}, {}], got {}", key, open_lo ? "(" : "[", lo, hi, v));
  return v;
}
std::string get_choice(const toml::node& n, const std::string& origin, const std::string& key,
                       const std::vector<std::string>& allowed) {
  std::string v = get_string(n, origin, key);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string all;
    for (auto& a : allowed) all += (all.empty() ? "\"" : ", \"") + a + "\"";
    fail(origin, fmt::format("{}: unknown value \"{}\"; allowed: {}", key, v, all));
  }
  return v;
}

void parse_ode(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  auto& s = cfg.ode.settings;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.ode." + key;
    if (key == "enabled")
      cfg.ode.enabled = get_bool(tn, origin, full);
    else if (key == "abs_tol")
      s.abs_tol = get_double(tn, origin, full, 0, 1, true);
    else if (key == "rel_tol")
      s.rel_tol = get_double(tn, origin, full, 0, 1, true);
    else if (key == "max_evals")
      s.max_evals = get_int(tn, origin, full, 1, 2000000000);
    else if (key == "attn_samples")
      s.attn.samples = get_int(tn, origin, full, 2, 100000000);
    else if (key == "steps")
      s.fixed_steps = get_int(tn, origin, full, 1, 1000000);
    else if (key == "quad_order")
      s.quad_order = get_int(tn, origin, full, 8, 400);
    else
      unknown_key(origin, "engines.ode.", key, {"enabled", "abs_tol", "rel_tol", "max_evals", "attn_samples", "steps",
                                                "quad_order"});
  }
}

void parse_sde(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  auto& s = cfg.sde.settings;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.sde." + key;
    if (key == "enabled")
      cfg.sde.enabled = get_bool(tn, origin, full);
    else if (key == "seed")
      s.seed = get_seed(tn, origin, full);
    else if (key == "model")
      s.model = theory::parse_shaped_model(get_choice(tn, origin, full, {"mlp", "attn"}));
    else if (key == "shape_c")
      s.shape_c = get_double(tn, origin, full, -1e300, 1e300);
    else if (key == "gamma2")
      s.gamma2 = get_double(tn, origin, full, 0, 1, true);
    else if (key == "tau0")
      s.tau0 = get_double(tn, origin, full, 0, 1e300, true);
    else if (key == "key_dim")
      s.key_dim = get_int(tn, origin, full, 0, 1 << 20);
    else if (key == "paths")
      s.paths = get_int(tn, origin, full, 2, 65535);
    else if (key == "samples")
      s.samples = get_int(tn, origin, full, 0, 65535);
    else if (key == "substeps")
      s.substeps = get_int(tn, origin, full, 1, 1000000);
    else
      unknown_key(origin, "engines.sde.", key, {"enabled", "seed", "model", "shape_c", "gamma2", "tau0", "key_dim",
                                                "paths", "samples", "substeps"});
  }
}

void parse_clustering(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  auto& s = cfg.clustering.settings;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.clustering." + key;
    if (key == "enabled")
      cfg.clustering.enabled = get_bool(tn, origin, full);
    else if (key == "abs_tol")
      s.abs_tol = get_double(tn, origin, full, 0, 1, true);
    else if (key == "rel_tol")
      s.rel_tol = get_double(tn, origin, full, 0, 1, true);
    else if (key == "max_evals")
      s.max_evals = get_int(tn, origin, full, 1, 2000000000);
    else if (key == "seed")
      s.seed = get_seed(tn, origin, full);
    else if (key == "variant")
      s.variant = theory::parse_attn_dynamics(get_choice(tn, origin, full, {"sa", "usa"}));
    else if (key == "beta")
      s.beta = get_double(tn, origin, full, 0, 1e300);
    else if (key == "t_end")
      s.t_end = get_double(tn, origin, full, 0, 1e300, true);
    else if (key == "points")
      s.points = get_int(tn, origin, full, 1, 1000000);
    else if (key == "equiangular")
      s.equiangular = get_bool(tn, origin, full);
    else
      unknown_key(origin, "engines.clustering.", key, {"enabled", "abs_tol", "rel_tol", "max_evals", "seed", "variant",
                                                       "beta", "t_end", "points", "equiangular"});
  }
}

void parse_spectrum(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.spectrum." + key;
    if (key == "enabled")
      cfg.spectrum.enabled = get_bool(tn, origin, full);
    else if (key == "panels")
      cfg.spectrum.settings.panels = get_int(tn, origin, full, 1, 100000);
    else if (key == "grid_points")
      cfg.spectrum.grid_points = get_int(tn, origin, full, 2, 10000000);
    else
      unknown_key(origin, "engines.spectrum.", key, {"enabled", "panels", "grid_points"});
  }
}

void parse_spectrum_simulate(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  auto& s = cfg.spectrum_simulate.settings;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.spectrum_simulate." + key;
    if (key == "enabled")
      cfg.spectrum_simulate.enabled = get_bool(tn, origin, full);
    else if (key == "samples")
      s.samples = get_int(tn, origin, full, 1, 65536);
    else if (key == "seed")
      s.seed = get_seed(tn, origin, full);
    else if (key == "map")
      s.map = get_choice(tn, origin, full, {"token", "full"});
    else if (key == "token")
      s.token = get_int(tn, origin, full, -1, 1 << 20);
    else if (key == "jacobian_method")
      s.method = get_choice(tn, origin, full, {"auto", "explicit", "backward"});
    else if (key == "grid_points")
      cfg.spectrum_simulate.grid_points = get_int(tn, origin, full, 2, 10000000);
    else
      unknown_key(origin, "engines.spectrum_simulate.", key,
                  {"enabled", "samples", "seed", "map", "token", "jacobian_method", "grid_points"});
  }
}

void parse_measure(const toml::table& t, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  auto& m = cfg.measure;
  for (auto&& [tk, tn] : t) {
    std::string key(tk.str()), full = "engines.measure." + key;
    if (key == "enabled")
      m.enabled = get_bool(tn, origin, full);
    else if (key == "checkpoint")
      m.checkpoint = get_string(tn, origin, full);
    else if (key == "corpus")
      m.corpus = get_string(tn, origin, full);
    else if (key == "tokens")
      m.tokens = get_int(tn, origin, full, 1, 1000000000);
    else if (key == "seq_len")
      m.seq_len = get_int(tn, origin, full, 0, 1 << 20);
    else if (key == "precision")
      m.precision = get_choice(tn, origin, full, {"float", "double"});
    else
      unknown_key(origin, "engines.measure.", key, {"enabled", "checkpoint", "corpus", "tokens", "seq_len", "precision"});
  }
  if (!m.enabled) return;
  if (m.checkpoint.empty())
    fail(origin, "engines.measure.checkpoint: required (a sigprop safetensors checkpoint or a Hugging Face model folder)");
  if (m.corpus.empty()) fail(origin, "engines.measure.corpus: required (a text file)");
}

/// With [engines.measure], the base spec is the checkpoint's architecture at T tokens; the
/// config's [input] keys apply (to the other engines: the measurement measures its input), and
/// its [stack]/[init] keys must equal the checkpoint's; no sweep or variant may change them.
StackSpec measured_base(const ReportConfig& cfg, const toml::table& spec_tables) {
  const std::string& origin = cfg.origin;
  const MeasureRun& m = cfg.measure;
  for (auto& ax : cfg.axes)
    if (ax.key.rfind("input.", 0) != 0)
      fail(origin, fmt::format("sweep.{}: with [engines.measure] the stack comes from the checkpoint {}; only input.* "
                               "keys can be swept",
                               ax.key, m.checkpoint));
  for (auto& v : cfg.variants)
    for (auto& [key, val] : v.sets)
      if (key.rfind("input.", 0) != 0)
        fail(origin, fmt::format("sweep.variants \"{}\": {}: with [engines.measure] the stack comes from the checkpoint "
                                 "{}; variants can set input.* keys only",
                                 v.label, key, m.checkpoint));
  std::error_code ec;
  if (!std::filesystem::exists(m.checkpoint, ec))
    fail(origin, fmt::format("engines.measure.checkpoint {}: no such file or folder", m.checkpoint));
  StackSpec model;
  try {
    model = m.precision == "double" ? validate::load_model<double>(m.checkpoint).cfg.arch.spec
                                    : validate::load_model<float>(m.checkpoint).cfg.arch.spec;
  } catch (const Error& e) {
    fail(origin, fmt::format("engines.measure.checkpoint: {}", e.what()));
  }
  if (m.seq_len > 0) model.tokens = std::min(m.seq_len, model.tokens);
  // The model's spec with the config's keys on top, then every stack/init key compared.
  toml::table root = toml::parse(sigprop::to_toml(model), std::string_view("<checkpoint spec>"));
  for (auto&& [tk, tn] : spec_tables)
    for (auto&& [k, v] : *tn.as_table()) root.get_as<toml::table>(tk.str())->insert_or_assign(k.str(), v);
  std::ostringstream text;
  text << root;
  StackSpec got = parse_spec_toml(text.str(), origin);
  const nlohmann::json a = spec_to_json(got), b = spec_to_json(model);
  for (const char* table : {"stack", "init"})
    for (auto& [k, v] : a[table].items())
      if (v != b[table][k])
        fail(origin, fmt::format("{}.{} = {}: the checkpoint {} has {} (with [engines.measure] the stack comes from the "
                                 "checkpoint; remove the key or set it to that value)",
                                 table, k, v.dump(), m.checkpoint, b[table][k].dump()));
  return got;
}

void parse_engines(const toml::table& en, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  cfg.theory.enabled = false;
  cfg.simulate.enabled = false;
  for (auto&& [k, node] : en) {
    std::string name(k.str());
    if (!node.is_table()) unknown_key(origin, "engines.", name, kEngineNames);
    const auto& t = *node.as_table();
    if (name == "theory") {
      cfg.theory.enabled = true;
      auto& s = cfg.theory.settings;
      for (auto&& [tk, tn] : t) {
        std::string key(tk.str()), full = "engines.theory." + key;
        if (key == "enabled")
          cfg.theory.enabled = get_bool(tn, origin, full);
        else if (key == "attn_samples")
          s.attn.samples = get_int(tn, origin, full, 2, 100000000);
        else if (key == "error_batches") {
          s.error_batches = get_int(tn, origin, full, 0, 1000);
          if (s.error_batches == 1) fail(origin, full + ": must be 0 (off) or >= 2, got 1");
        } else if (key == "seed")
          s.attn.seed = get_seed(tn, origin, full);
        else if (key == "quad_order")
          s.quad_order = get_int(tn, origin, full, 8, 400);
        else if (key == "finite_dh")
          s.attn.finite_dh = get_bool(tn, origin, full);
        else
          unknown_key(origin, "engines.theory.", key,
                      {"enabled", "attn_samples", "error_batches", "seed", "quad_order", "finite_dh"});
      }
    } else if (name == "simulate") {
      cfg.simulate.enabled = true;
      auto& s = cfg.simulate;
      for (auto&& [tk, tn] : t) {
        std::string key(tk.str()), full = "engines.simulate." + key;
        if (key == "enabled")
          s.enabled = get_bool(tn, origin, full);
        else if (key == "samples")
          s.samples = get_int(tn, origin, full, 1, 65536);
        else if (key == "seed")
          s.seed = get_seed(tn, origin, full);
        else if (key == "width")
          s.width = get_int(tn, origin, full, 1, 1 << 20);
        else if (key == "heads")
          s.heads = get_int(tn, origin, full, 1, 1 << 20);
        else if (key == "backend") {
          s.backend = get_string(tn, origin, full);
          if (s.backend != "cpu" && s.backend != "reference")
            fail(origin, fmt::format("{}: unknown backend \"{}\"; allowed: \"cpu\", \"reference\"", full, s.backend));
        } else if (key == "precision") {
          s.precision = get_string(tn, origin, full);
          if (s.precision != "float" && s.precision != "double")
            fail(origin, fmt::format("{}: unknown precision \"{}\"; allowed: \"float\", \"double\"", full, s.precision));
        } else if (key == "input_kernel") {
          s.input_kernel = get_string(tn, origin, full);
          if (s.input_kernel != "sampled" && s.input_kernel != "exact") {
            const std::string hint = did_you_mean(s.input_kernel, {"sampled", "exact"});
            fail(origin, fmt::format("{}: unknown value \"{}\"{}; allowed: \"sampled\", \"exact\"", full,
                                     s.input_kernel, hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
          }
        } else
          unknown_key(origin, "engines.simulate.", key,
                      {"enabled", "samples", "seed", "width", "heads", "backend", "precision", "input_kernel"});
      }
      if (s.backend == "reference" && s.precision != "double")
        fail(origin, "engines.simulate.precision: the reference backend is double only; set precision = \"double\"");
    } else if (name == "ode") {
      cfg.ode.enabled = true;
      parse_ode(t, cfg);
    } else if (name == "sde") {
      cfg.sde.enabled = true;
      parse_sde(t, cfg);
    } else if (name == "clustering") {
      cfg.clustering.enabled = true;
      parse_clustering(t, cfg);
    } else if (name == "spectrum") {
      cfg.spectrum.enabled = true;
      parse_spectrum(t, cfg);
    } else if (name == "spectrum_simulate") {
      cfg.spectrum_simulate.enabled = true;
      parse_spectrum_simulate(t, cfg);
    } else if (name == "measure") {
      cfg.measure.enabled = true;
      parse_measure(t, cfg);
    } else {
      unknown_key(origin, "engines.", name, kEngineNames);
    }
  }
  if (enabled_engines(cfg) == 0)
    fail(origin, "[engines]: no engine enabled; add one of [engines.theory], [engines.simulate], [engines.ode], "
                 "[engines.sde], [engines.clustering], [engines.spectrum], [engines.spectrum_simulate], "
                 "[engines.measure]");
}

void parse_figures(const toml::table& fi, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  for (auto&& [k, node] : fi) {
    std::string key(k.str()), full = "figures." + key;
    if (key == "metrics") {
      auto* arr = node.as_array();
      if (arr == nullptr) fail(origin, fmt::format("{}: expected an array of metric names, got {}", full, toml_type_name(node)));
      cfg.figures.metrics.clear();
      for (size_t i = 0; i < arr->size(); ++i) {
        std::string m = get_string(*arr->get(i), origin, fmt::format("{}[{}]", full, i + 1));
        const auto& names = report_metric_names();
        if (std::find(names.begin(), names.end(), m) == names.end()) {
          std::string hint = did_you_mean(m, names);
          fail(origin, fmt::format("{}: unknown metric \"{}\"; allowed: q, rho, res, eff_rank, update_ratio, ang_dist, "
                                   "grad_var, sv2_mean, sv2_var (the last two from [engines.spectrum] and "
                                   "[engines.spectrum_simulate]){}",
                                   full, m, hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
        }
        if (std::find(cfg.figures.metrics.begin(), cfg.figures.metrics.end(), m) != cfg.figures.metrics.end())
          fail(origin, fmt::format("{}: metric \"{}\" listed twice", full, m));
        cfg.figures.metrics.push_back(m);
      }
    } else if (key == "depth_returns") {
      cfg.figures.depth_returns = get_bool(node, origin, full);
    } else {
      unknown_key(origin, "figures.", key, {"metrics", "depth_returns"});
    }
  }
}

std::vector<std::string> get_names(const toml::node& n, const std::string& origin, const std::string& key,
                                   const std::string& spec_key) {
  auto* arr = n.as_array();
  if (arr == nullptr || arr->empty())
    fail(origin, fmt::format("{}: expected a non-empty array of strings, got {}", key,
                             arr ? "an empty array" : toml_type_name(n)));
  std::vector<std::string> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string v = get_string(*arr->get(i), origin, fmt::format("{}[{}]", key, i + 1));
    if (std::find(out.begin(), out.end(), v) != out.end()) fail(origin, fmt::format("{}: \"{}\" listed twice", key, v));
    if (!spec_key.empty()) {  // checked as the spec would: the message names the allowed values
      auto dot = spec_key.find('.');
      std::string text = fmt::format("[{}]\n{} = \"{}\"\n", spec_key.substr(0, dot), spec_key.substr(dot + 1), v);
      try {
        (void)parse_spec_toml(text, key);
      } catch (const ConfigError& e) {
        fail(origin, fmt::format("{}[{}]: {}", key, i + 1, e.what()));
      }
    }
    out.push_back(v);
  }
  return out;
}

std::pair<double, double> get_range(const toml::node& n, const std::string& origin, const std::string& key, double lo,
                                    double hi) {
  auto* arr = n.as_array();
  if (arr == nullptr || arr->size() != 2)
    fail(origin, fmt::format("{}: expected [low, high], got {}", key, arr ? "an array of another length" : toml_type_name(n)));
  double v[2];
  for (size_t i = 0; i < 2; ++i) {
    const toml::node& e = *arr->get(i);
    if (auto d = e.value_exact<double>())
      v[i] = *d;
    else if (auto k = e.value_exact<int64_t>())
      v[i] = static_cast<double>(*k);
    else
      fail(origin, fmt::format("{}[{}]: expected a number, got {}", key, i + 1, toml_type_name(e)));
  }
  if (!(v[0] >= lo && v[1] <= hi && v[0] <= v[1]))
    fail(origin, fmt::format("{}: need {} <= low <= high <= {}, got [{}, {}]", key, lo, hi, v[0], v[1]));
  return {v[0], v[1]};
}

void parse_atlas(const toml::table& at, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  AtlasConfig& a = cfg.atlas;
  a.enabled = true;
  const std::vector<std::string> keys{"configurations", "seed", "sampler", "widths", "samples", "head_dim", "blocks", "norm",
                                      "norm_type", "activation", "mask", "qk_scale", "branch_scale", "branch_number",
                                      "sigma_qk2", "sigma_w2", "depth", "tokens", "metrics", "alpha", "worst",
                                      "streams", "refine", "refine_theory"};
  for (auto&& [k, node] : at) {
    std::string key(k.str()), full = "atlas." + key;
    if (key == "configurations")
      a.configurations = get_int(node, origin, full, 2, 20000);  // bounded: every cell is built at parse time
    else if (key == "seed")
      a.seed = get_seed(node, origin, full);
    else if (key == "sampler") {
      a.sampler = get_string(node, origin, full);
      if (a.sampler != "sobol" && a.sampler != "lhs")
        fail(origin, fmt::format("{}: unknown sampler \"{}\"; allowed: \"sobol\", \"lhs\"", full, a.sampler));
    } else if (key == "widths") {
      auto* arr = node.as_array();
      if (arr == nullptr || arr->size() < 2)
        fail(origin, fmt::format("{}: expected an array of at least two widths (the fit m + b/d needs two), got {}", full,
                                 arr ? "fewer" : toml_type_name(node)));
      a.widths.clear();
      for (size_t i = 0; i < arr->size(); ++i) {
        int w = get_int(*arr->get(i), origin, fmt::format("{}[{}]", full, i + 1), 2, 1 << 20);
        if (!a.widths.empty() && w <= a.widths.back())
          fail(origin, fmt::format("{}: widths must increase, got {} after {}", full, w, a.widths.back()));
        a.widths.push_back(w);
      }
    } else if (key == "samples") {
      auto* arr = node.as_array();
      if (arr == nullptr || arr->empty())
        fail(origin, fmt::format("{}: expected an array of sample counts, one per width, got {}", full,
                                 arr ? "an empty array" : toml_type_name(node)));
      a.samples.clear();
      for (size_t i = 0; i < arr->size(); ++i)
        a.samples.push_back(get_int(*arr->get(i), origin, fmt::format("{}[{}]", full, i + 1), 2, 65536));
    } else if (key == "head_dim")
      a.head_dim = get_int(node, origin, full, 1, 1 << 20);
    else if (key == "blocks")
      a.blocks = get_names(node, origin, full, "stack.blocks");
    else if (key == "norm")
      a.norm = get_names(node, origin, full, "stack.norm");
    else if (key == "norm_type")
      a.norm_type = get_names(node, origin, full, "stack.norm_type");
    else if (key == "activation")
      a.activation = get_names(node, origin, full, "stack.activation");
    else if (key == "mask")
      a.mask = get_names(node, origin, full, "stack.mask");
    else if (key == "qk_scale")
      a.qk_scale = get_names(node, origin, full, "stack.qk_scale");
    else if (key == "branch_scale") {
      a.branch_scale = get_names(node, origin, full, "");
      for (size_t i = 0; i < a.branch_scale.size(); ++i)
        if (a.branch_scale[i] != "1" && a.branch_scale[i] != "1/sqrt(L)" && a.branch_scale[i] != "number")
          fail(origin, fmt::format("{}[{}]: unknown value \"{}\"; allowed: \"1\", \"1/sqrt(L)\", \"number\" (drawn from "
                                   "atlas.branch_number)",
                                   full, i + 1, a.branch_scale[i]));
    } else if (key == "branch_number")
      a.branch_number = get_range(node, origin, full, 0.0, 10.0);
    else if (key == "sigma_qk2")
      a.sigma_qk2 = get_range(node, origin, full, 1e-6, 1e3);  // log-uniform: lo > 0
    else if (key == "sigma_w2")
      a.sigma_w2 = get_range(node, origin, full, 1e-6, 1e3);
    else if (key == "depth") {
      auto r = get_range(node, origin, full, 1, 100000);
      a.depth = {static_cast<int>(r.first), static_cast<int>(r.second)};
      if (a.depth.first != r.first || a.depth.second != r.second) fail(origin, full + ": expected integers");
    } else if (key == "tokens") {
      auto r = get_range(node, origin, full, 2, 8192);
      a.tokens = {static_cast<int>(r.first), static_cast<int>(r.second)};
      if (a.tokens.first != r.first || a.tokens.second != r.second) fail(origin, full + ": expected integers");
    } else if (key == "metrics") {
      a.metrics = get_names(node, origin, full, "");
      for (auto& m : a.metrics) {
        const auto& names = metric_names();
        if (std::find(names.begin(), names.end(), m) == names.end())
          fail(origin, fmt::format("{}: unknown metric \"{}\"; allowed: q, rho, res, eff_rank, update_ratio, ang_dist, "
                                   "grad_var",
                                   full, m));
      }
    } else if (key == "alpha") {
      auto v = node.value<double>();
      if (!v || !(*v > 0 && *v < 1)) fail(origin, full + ": expected a number in (0, 1)");
      a.alpha = *v;
    } else if (key == "worst")
      a.worst = get_int(node, origin, full, 0, 1000);
    else if (key == "streams") {
      a.streams = get_string(node, origin, full);
      if (a.streams != "independent" && a.streams != "shared" && a.streams != "by-width")
        fail(origin, fmt::format("{}: unknown value \"{}\"; allowed: \"independent\", \"by-width\", \"shared\"", full,
                                 a.streams));
    } else if (key == "refine" || key == "refine_theory") {
      int& r = key == "refine" ? a.refine : a.refine_theory;
      r = get_int(node, origin, full, 1, 64);
      if ((r & (r - 1)) != 0)
        fail(origin, fmt::format("{}: must be a power of two (1, 2, 4, ..., 64; 1 = no refinement), got {}", full, r));
    } else
      unknown_key(origin, "atlas.", key, keys);
  }
  if (!a.samples.empty() && a.samples.size() != a.widths.size())
    fail(origin, fmt::format("atlas.samples: {} sample counts for {} widths (atlas.widths); give one per width",
                             a.samples.size(), a.widths.size()));
  if (static_cast<double>(a.configurations) * static_cast<double>(a.widths.size() + 1) > 200000)
    fail(origin, fmt::format("atlas.configurations: {} configurations x ({} widths + theory) is more than 200000 jobs",
                             a.configurations, a.widths.size()));
  for (int w : a.widths)
    if (w % a.head_dim != 0)
      fail(origin, fmt::format("atlas.widths: every width must be a multiple of atlas.head_dim = {} (heads = width / "
                               "head_dim), got {}",
                               a.head_dim, w));
}

}  // namespace

const std::vector<std::string>& report_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = metric_names();
    n.emplace_back("sv2_mean");
    n.emplace_back("sv2_var");
    return n;
  }();
  return names;
}

int enabled_engines(const ReportConfig& c) {
  return (c.theory.enabled ? 1 : 0) + (c.simulate.enabled ? 1 : 0) + (c.ode.enabled ? 1 : 0) + (c.sde.enabled ? 1 : 0) +
         (c.clustering.enabled ? 1 : 0) + (c.spectrum.enabled ? 1 : 0) + (c.spectrum_simulate.enabled ? 1 : 0) +
         (c.measure.enabled ? 1 : 0);
}

ReportConfig parse_report_config(std::string_view text, const std::string& origin) {
  check_toml_limits(text, origin);
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(fmt::format("{}:{}:{}: TOML syntax error: {}", origin, b.line, b.column, e.description()));
  }
  ReportConfig cfg;
  cfg.origin = origin;
  toml::table spec_tables;
  for (auto&& [k, node] : root) {
    std::string name(k.str());
    if (std::find(kTopTables.begin(), kTopTables.end(), name) == kTopTables.end()) {
      std::vector<std::string> all;
      for (auto& t : kTopTables) all.push_back(t);
      std::string hint = did_you_mean(name, all);
      fail(origin, fmt::format("unknown table \"{}\"; allowed: [report], [stack], [init], [input], [sweep], [engines], "
                               "[figures], [atlas]{}",
                               name, hint.empty() ? "" : fmt::format(" (did you mean [{}]?)", hint)));
    }
    if (!node.is_table()) fail(origin, fmt::format("\"{}\" must be a table ([{}]), got {}", name, name, toml_type_name(node)));
    const auto& t = *node.as_table();
    if (name == "report") {
      for (auto&& [rk, rn] : t) {
        std::string key(rk.str());
        if (key == "title")
          cfg.title = get_string(rn, origin, "report.title");
        else
          unknown_key(origin, "report.", key, {"title"});
      }
    } else if (std::find(kSpecTables.begin(), kSpecTables.end(), name) != kSpecTables.end()) {
      spec_tables.insert(name, t);
    } else if (name == "sweep") {
      parse_sweep(t, cfg);
    } else if (name == "engines") {
      parse_engines(t, cfg);
    } else if (name == "figures") {
      parse_figures(t, cfg);
    } else if (name == "atlas") {
      parse_atlas(t, cfg);
    }
  }
  if (cfg.atlas.enabled) {
    if (!cfg.axes.empty() || !cfg.variants.empty())
      fail(origin, "[atlas] draws its own configurations: remove [sweep] (an atlas is not a grid)");
    if (!cfg.theory.enabled || !cfg.simulate.enabled)
      fail(origin, "[atlas] compares theory with Monte Carlo: add both [engines.theory] and [engines.simulate]");
    if (enabled_engines(cfg) > 2)
      fail(origin, "[atlas] runs [engines.theory] and [engines.simulate] only; remove the other [engines.*] tables "
                   "(ode, sde, clustering, spectrum, spectrum_simulate are report-grid engines)");
    if (cfg.simulate.width > 0 || cfg.simulate.heads > 0)
      fail(origin, "engines.simulate.width/heads: not used by an atlas (atlas.widths and atlas.head_dim set them); remove them");
    const auto& a = cfg.atlas;
    const int most = a.samples.empty() ? cfg.simulate.samples : *std::max_element(a.samples.begin(), a.samples.end());
    if (static_cast<double>(most) * a.refine > 65536)
      fail(origin, fmt::format("atlas.refine: {} x {} samples is more than the 65536 sample ids of the random streams",
                               a.refine, most));
    if (static_cast<double>(cfg.theory.settings.attn.samples) * a.refine_theory > 100000000)
      fail(origin, fmt::format("atlas.refine_theory: {} x engines.theory.attn_samples = {} is more than 100000000",
                               a.refine_theory, cfg.theory.settings.attn.samples));
  }
  if (cfg.measure.enabled && !cfg.atlas.enabled) {
    cfg.base = measured_base(cfg, spec_tables);
  } else {
    std::ostringstream spec_text;
    spec_text << spec_tables;
    cfg.base = parse_spec_toml(spec_text.str(), origin);  // names unknown spec keys and bad values
  }
  cfg.base_toml = sigprop::to_toml(cfg.base);
  // Build every cell now so that a bad sweep value fails before any work starts.
  (void)make_jobs(cfg, expand_cells(cfg));
  return cfg;
}

ReportConfig load_report_config(const std::filesystem::path& path) {
  return parse_report_config(read_toml_file(path, "report config"), path.string());
}

const std::string& default_report_toml() {
  // Kept identical to examples/report_default.toml (a [config] test compares them).
  static const std::string text = R"TOML(# The built-in default of `sigprop report`: why does depth give diminishing returns?
# Pre-LN, Post-LN, Pre-LN with 1/sqrt(L) branch scaling and LayerNorm Scaling at three
# depths, infinite-width theory against finite-width Monte Carlo. Sized to finish in a
# few minutes on 2 cores: the Monte Carlo uses d = 96, H = 4 (d_h = 24), T = 16 tokens
# and 32 samples per cell, so expect finite-width deviations growing like depth/width.
[report]
title = "Why does depth give diminishing returns?"

[stack]
tokens = 16
width = 96
heads = 4
mlp_ratio = 4.0
blocks = "attn+mlp"
norm_type = "layernorm"
activation = "gelu"
mask = "causal"
qk_scale = "1/sqrt(dh)"

[init]
sigma_w2 = 1.0
sigma_qk2 = 1.0

[input]
q0 = 1.0
rho0 = 0.1

[sweep]
stack.depth = [12, 48, 96]

[[sweep.variants]]
label = "Pre-LN"
stack.norm = "pre"

[[sweep.variants]]
label = "Post-LN"
stack.norm = "post"

[[sweep.variants]]
label = "Pre-LN, 1/sqrt(L)"
stack.norm = "pre"
stack.branch_scale = "1/sqrt(L)"

[[sweep.variants]]
label = "LayerNorm Scaling"
stack.norm = "lns"

[engines.theory]
attn_samples = 1024
error_batches = 0
seed = 0

[engines.simulate]
samples = 32
seed = 1
backend = "cpu"
precision = "float"

[figures]
metrics = ["q", "rho", "grad_var", "update_ratio", "ang_dist"]
depth_returns = true
)TOML";
  return text;
}

ReportConfig default_report_config() {
  return parse_report_config(default_report_toml(), "<built-in default report>");
}

std::string to_toml(const ReportConfig& c) {
  std::ostringstream o;
  auto quote = [](const std::string& s) {
    // Control characters as \uXXXX: a raw CR or DEL in a title would not parse back
    // (found by fuzz/fuzz_report_config; reproducer in fuzz/corpus/report_config/).
    std::string out = "\"";
    for (char ch : s) {
      const auto u = static_cast<unsigned char>(ch);
      if (u < 0x20 || u == 0x7f) {
        out += fmt::format("\\u{:04X}", u);
        continue;
      }
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    return out + "\"";
  };
  o << "# Resolved report config: every default filled in. Run it with `sigprop report THIS_FILE`.\n";
  o << "[report]\ntitle = " << quote(c.title) << "\n\n" << c.base_toml << "\n";
  if (!c.axes.empty() || !c.variants.empty()) {
    o << "[sweep]\n";
    for (auto& ax : c.axes) {
      o << ax.key << " = [";
      for (size_t i = 0; i < ax.values.size(); ++i) o << (i ? ", " : "") << ax.values[i];
      o << "]\n";
    }
    for (auto& v : c.variants) {
      o << "\n[[sweep.variants]]\nlabel = " << quote(v.label) << "\n";
      for (auto& [k, val] : v.sets) o << k << " = " << val << "\n";
    }
    o << "\n";
  }
  if (c.theory.enabled) {
    const auto& s = c.theory.settings;
    o << "[engines.theory]\nattn_samples = " << s.attn.samples << "\nerror_batches = " << s.error_batches
      << "\nseed = " << s.attn.seed << "\nquad_order = " << s.quad_order << "\n";
    if (s.attn.finite_dh) o << "finite_dh = true\n";
    o << "\n";
  }
  if (c.simulate.enabled) {
    const auto& s = c.simulate;
    o << "[engines.simulate]\nsamples = " << s.samples << "\nseed = " << s.seed << "\n";
    if (s.width > 0) o << "width = " << s.width << "\n";
    if (s.heads > 0) o << "heads = " << s.heads << "\n";
    o << "backend = " << quote(s.backend) << "\nprecision = " << quote(s.precision) << "\n";
    if (s.input_kernel != "sampled") o << "input_kernel = " << quote(s.input_kernel) << "\n";
    o << "\n";
  }
  auto real = [](double x) {
    std::string t = fmt::format("{:.17g}", x);
    if (t.find_first_of(".eEn") == std::string::npos) t += ".0";
    return t;
  };
  if (c.ode.enabled) {
    const auto& s = c.ode.settings;
    o << "[engines.ode]\nabs_tol = " << real(s.abs_tol) << "\nrel_tol = " << real(s.rel_tol)
      << "\nmax_evals = " << s.max_evals << "\nattn_samples = " << s.attn.samples << "\nsteps = " << s.fixed_steps
      << "\nquad_order = " << s.quad_order << "\n\n";
  }
  if (c.sde.enabled) {
    const auto& s = c.sde.settings;
    o << "[engines.sde]\nseed = " << s.seed << "\nmodel = " << quote(theory::to_string(s.model))
      << "\nshape_c = " << real(s.shape_c) << "\ngamma2 = " << real(s.gamma2) << "\ntau0 = " << real(s.tau0)
      << "\nkey_dim = " << s.key_dim << "\npaths = " << s.paths << "\nsamples = " << s.samples
      << "\nsubsteps = " << s.substeps << "\n\n";
  }
  if (c.clustering.enabled) {
    const auto& s = c.clustering.settings;
    o << "[engines.clustering]\nabs_tol = " << real(s.abs_tol) << "\nrel_tol = " << real(s.rel_tol)
      << "\nmax_evals = " << s.max_evals << "\nseed = " << s.seed
      << "\nvariant = " << quote(s.variant == theory::AttnDynamics::SA ? "sa" : "usa") << "\nbeta = " << real(s.beta)
      << "\nt_end = " << real(s.t_end) << "\npoints = " << s.points
      << "\nequiangular = " << (s.equiangular ? "true" : "false") << "\n\n";
  }
  if (c.spectrum.enabled)
    o << "[engines.spectrum]\npanels = " << c.spectrum.settings.panels << "\ngrid_points = " << c.spectrum.grid_points
      << "\n\n";
  if (c.measure.enabled)
    o << "[engines.measure]\ncheckpoint = " << quote(c.measure.checkpoint) << "\ncorpus = " << quote(c.measure.corpus)
      << "\ntokens = " << c.measure.tokens << "\nseq_len = " << c.measure.seq_len
      << "\nprecision = " << quote(c.measure.precision) << "\n\n";
  if (c.spectrum_simulate.enabled) {
    const auto& s = c.spectrum_simulate.settings;
    o << "[engines.spectrum_simulate]\nsamples = " << s.samples << "\nseed = " << s.seed << "\nmap = " << quote(s.map)
      << "\ntoken = " << s.token << "\njacobian_method = " << quote(s.method)
      << "\ngrid_points = " << c.spectrum_simulate.grid_points << "\n\n";
  }
  o << "[figures]\nmetrics = [";
  for (size_t i = 0; i < c.figures.metrics.size(); ++i) o << (i ? ", " : "") << quote(c.figures.metrics[i]);
  o << "]\ndepth_returns = " << (c.figures.depth_returns ? "true" : "false") << "\n";
  if (c.atlas.enabled) {
    const AtlasConfig& a = c.atlas;
    auto names = [&](const std::vector<std::string>& v) {
      std::string r = "[";
      for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + quote(v[i]);
      return r + "]";
    };
    auto num = [](double x) {
      std::string t = fmt::format("{:.17g}", x);
      if (t.find_first_of(".eEn") == std::string::npos) t += ".0";
      return t;
    };
    o << "\n[atlas]\nconfigurations = " << a.configurations << "\nseed = " << a.seed << "\nsampler = " << quote(a.sampler)
      << "\nwidths = [" << fmt::format("{}", fmt::join(a.widths, ", ")) << "]\n"
      << (a.samples.empty() ? std::string() : fmt::format("samples = [{}]\n", fmt::join(a.samples, ", ")))
      << "head_dim = " << a.head_dim
      << "\nblocks = " << names(a.blocks) << "\nnorm = " << names(a.norm) << "\nnorm_type = " << names(a.norm_type)
      << "\nactivation = " << names(a.activation) << "\nmask = " << names(a.mask) << "\nqk_scale = " << names(a.qk_scale)
      << "\nbranch_scale = " << names(a.branch_scale) << "\nbranch_number = [" << num(a.branch_number.first) << ", "
      << num(a.branch_number.second) << "]\nsigma_qk2 = [" << num(a.sigma_qk2.first) << ", " << num(a.sigma_qk2.second)
      << "]\nsigma_w2 = [" << num(a.sigma_w2.first) << ", " << num(a.sigma_w2.second) << "]\ndepth = [" << a.depth.first
      << ", " << a.depth.second << "]\ntokens = [" << a.tokens.first << ", " << a.tokens.second
      << "]\nmetrics = " << names(a.metrics) << "\nalpha = " << num(a.alpha) << "\nworst = " << a.worst
      << "\nstreams = " << quote(a.streams) << "\n" << (a.refine != 1 ? fmt::format("refine = {}\n", a.refine) : "")
      << (a.refine_theory != 1 ? fmt::format("refine_theory = {}\n", a.refine_theory) : "");
  }
  return o.str();
}

}  // namespace sigprop::reports
