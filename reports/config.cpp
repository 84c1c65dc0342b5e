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

namespace sigprop::reports {
namespace {

const std::vector<std::string> kSpecTables{"stack", "init", "input"};
const std::vector<std::string> kTopTables{"report", "stack", "init", "input", "sweep", "engines", "figures"};


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

void parse_engines(const toml::table& en, ReportConfig& cfg) {
  const std::string& origin = cfg.origin;
  cfg.theory.enabled = false;
  cfg.simulate.enabled = false;
  for (auto&& [k, node] : en) {
    std::string name(k.str());
    if (!node.is_table()) unknown_key(origin, "engines.", name, {"theory", "simulate"});
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
        else
          unknown_key(origin, "engines.theory.", key, {"enabled", "attn_samples", "error_batches", "seed", "quad_order"});
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
        } else
          unknown_key(origin, "engines.simulate.", key,
                      {"enabled", "samples", "seed", "width", "heads", "backend", "precision"});
      }
      if (s.backend == "reference" && s.precision != "double")
        fail(origin, "engines.simulate.precision: the reference backend is double only; set precision = \"double\"");
    } else {
      unknown_key(origin, "engines.", name, {"theory", "simulate"});
    }
  }
  if (!cfg.theory.enabled && !cfg.simulate.enabled)
    fail(origin, "[engines]: no engine enabled; add [engines.theory] and/or [engines.simulate]");
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
        const auto& names = metric_names();
        if (std::find(names.begin(), names.end(), m) == names.end()) {
          std::string hint = did_you_mean(m, names);
          fail(origin, fmt::format("{}: unknown metric \"{}\"; allowed: q, rho, res, eff_rank, update_ratio, ang_dist, "
                                   "grad_var{}",
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

}  // namespace

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
                               "[figures]{}",
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
    }
  }
  std::ostringstream spec_text;
  spec_text << spec_tables;
  cfg.base = parse_spec_toml(spec_text.str(), origin);  // names unknown spec keys and bad values
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
      << "\nseed = " << s.attn.seed << "\nquad_order = " << s.quad_order << "\n\n";
  }
  if (c.simulate.enabled) {
    const auto& s = c.simulate;
    o << "[engines.simulate]\nsamples = " << s.samples << "\nseed = " << s.seed << "\n";
    if (s.width > 0) o << "width = " << s.width << "\n";
    if (s.heads > 0) o << "heads = " << s.heads << "\n";
    o << "backend = " << quote(s.backend) << "\nprecision = " << quote(s.precision) << "\n\n";
  }
  o << "[figures]\nmetrics = [";
  for (size_t i = 0; i < c.figures.metrics.size(); ++i) o << (i ? ", " : "") << quote(c.figures.metrics[i]);
  o << "]\ndepth_returns = " << (c.figures.depth_returns ? "true" : "false") << "\n";
  return o.str();
}

}  // namespace sigprop::reports
