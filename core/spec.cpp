#include "core/spec.hpp"
#include "core/toml_text.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/error.hpp"
#include "core/files.hpp"

namespace sigprop {
namespace {

template <class E>
struct EnumNames {
  std::vector<std::pair<std::string, E>> items;
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (auto& [n, e] : items) out.push_back(n);
    return out;
  }
  [[nodiscard]] std::string name(E e) const {
    for (auto& [n, v] : items)
      if (v == e) return n;
    throw Error("internal: enum value without a name");
  }
  E parse(const std::string& key, const std::string& s) const {
    for (auto& [n, v] : items)
      if (n == s) return v;
    std::string all;
    for (auto& n : names()) all += (all.empty() ? "" : ", ") + fmt::format("\"{}\"", n);
    std::string hint = did_you_mean(s, names());
    throw ConfigError(fmt::format("{}: unknown value \"{}\"; allowed: {}{}", key, s, all,
                                  hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
  }
};

const EnumNames<Blocks> kBlocks{
    {{"attn+mlp", Blocks::AttnMlp}, {"attn", Blocks::Attn}, {"mlp", Blocks::Mlp}, {"dense", Blocks::Dense}}};
const EnumNames<Norm> kNorm{
    {{"pre", Norm::Pre}, {"post", Norm::Post}, {"none", Norm::None}, {"lns", Norm::Lns}, {"deepnorm", Norm::DeepNorm}}};
const EnumNames<NormType> kNormType{{{"layernorm", NormType::LayerNorm}, {"rmsnorm", NormType::RmsNorm}}};
const EnumNames<Activation> kAct{{{"relu", Activation::Relu},
                                  {"gelu", Activation::Gelu},
                                  {"tanh", Activation::Tanh},
                                  {"erf", Activation::Erf},
                                  {"silu", Activation::Silu},
                                  {"gelu_tanh", Activation::GeluTanh},
                                  {"linear", Activation::Linear}}};
const EnumNames<Mask> kMask{{{"causal", Mask::Causal}, {"none", Mask::None}}};
const EnumNames<QkScale> kQk{{{"1/sqrt(dh)", QkScale::InvSqrtDh}, {"1/dh", QkScale::InvDh}}};
const EnumNames<WeightDist> kWeights{{{"gaussian", WeightDist::Gaussian}, {"orthogonal", WeightDist::Orthogonal}}};

const std::map<std::string, std::vector<std::string>> kKeys{
    {"stack",
     {"depth", "tokens", "width", "heads", "mlp_ratio", "blocks", "norm", "norm_type", "norm_eps", "activation", "mask",
      "residual", "branch_scale", "qk_scale"}},
    {"init", {"sigma_w2", "sigma_b2", "sigma_qk2", "weights"}},
    {"input", {"q0", "rho0"}},
};


int get_int(const toml::node& n, const std::string& key) {
  if (auto v = n.value_exact<int64_t>()) {
    if (*v < -2147483647 || *v > 2147483647)
      throw ConfigError(fmt::format("{}: {} does not fit in an integer", key, *v));
    return static_cast<int>(*v);
  }
  if (auto d = n.value_exact<double>(); d && std::floor(*d) == *d && std::abs(*d) < 2e9) return static_cast<int>(*d);
  throw ConfigError(fmt::format("{}: expected an integer, got {}", key, toml_type_name(n)));
}
double get_double(const toml::node& n, const std::string& key) {
  if (auto v = n.value_exact<double>()) return *v;
  if (auto v = n.value_exact<int64_t>()) return static_cast<double>(*v);
  throw ConfigError(fmt::format("{}: expected a number, got {}", key, toml_type_name(n)));
}
std::string get_string(const toml::node& n, const std::string& key) {
  if (auto v = n.value_exact<std::string>()) return *v;
  throw ConfigError(fmt::format("{}: expected a string, got {}", key, toml_type_name(n)));
}
bool get_bool(const toml::node& n, const std::string& key) {
  if (auto v = n.value_exact<bool>()) return *v;
  throw ConfigError(fmt::format("{}: expected true or false, got {}", key, toml_type_name(n)));
}

BranchScale parse_branch_scale(const toml::node& n) {
  const std::string key = "stack.branch_scale";
  BranchScale b;
  if (n.is_number()) {
    b.kind = BranchScaleKind::Number;
    b.number = get_double(n, key);
    return b;
  }
  if (!n.is_string())
    throw ConfigError(
        fmt::format("{}: expected \"1\", \"1/sqrt(L)\", \"1/sqrt(2L)\" or a number, got {}", key, toml_type_name(n)));
  std::string s = *n.value_exact<std::string>();
  if (s == "1") return b;
  if (s == "1/sqrt(L)") {
    b.kind = BranchScaleKind::InvSqrtL;
    return b;
  }
  if (s == "1/sqrt(2L)") {
    b.kind = BranchScaleKind::InvSqrt2L;
    return b;
  }
  char* end = nullptr;
  double x = std::strtod(s.c_str(), &end);
  if (!s.empty() && end == s.c_str() + s.size()) {
    b.kind = BranchScaleKind::Number;
    b.number = x;
    return b;
  }
  std::string hint = did_you_mean(s, {"1", "1/sqrt(L)", "1/sqrt(2L)"});
  throw ConfigError(fmt::format("{}: unknown value \"{}\"; allowed: \"1\", \"1/sqrt(L)\", \"1/sqrt(2L)\" or a number{}",
                                key, s, hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
}

std::vector<std::string> all_tables() {
  std::vector<std::string> t;
  for (auto& [k, v] : kKeys) t.push_back(k);
  return t;
}

void check_keys(const toml::table& root, const std::string& origin) {
  for (auto&& [k, node] : root) {
    std::string name(k.str());
    auto it = kKeys.find(name);
    if (it == kKeys.end()) {
      // A key at top level that belongs in a table is the commonest mistake: say where it goes.
      for (auto& [table, keys] : kKeys)
        if (std::find(keys.begin(), keys.end(), name) != keys.end())
          throw ConfigError(fmt::format("{}: key \"{}\" must be inside the [{}] table", origin, name, table));
      std::string hint = did_you_mean(name, all_tables());
      throw ConfigError(fmt::format("{}: unknown table \"{}\"; allowed: [stack], [init], [input]{}", origin, name,
                                    hint.empty() ? "" : fmt::format(" (did you mean [{}]?)", hint)));
    }
    if (!node.is_table())
      throw ConfigError(fmt::format("{}: \"{}\" must be a table ([{}]), got {}", origin, name, name, toml_type_name(node)));
    for (auto&& [k2, n2] : *node.as_table()) {
      std::string key(k2.str());
      auto& keys = it->second;
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
      // Also offer keys of the other tables: a key in the wrong table is a likely slip.
      std::vector<std::string> cands = keys;
      std::string where;
      for (auto& [table, ks] : kKeys)
        if (table != name && std::find(ks.begin(), ks.end(), key) != ks.end()) where = table;
      if (!where.empty())
        throw ConfigError(fmt::format("{}: unknown key \"{}.{}\": it belongs in [{}]", origin, name, key, where));
      std::string hint = did_you_mean(key, cands);
      throw ConfigError(fmt::format("{}: unknown key \"{}.{}\"{}", origin, name, key,
                                    hint.empty() ? "" : fmt::format(" (did you mean \"{}.{}\"?)", name, hint)));
    }
  }
}

StackSpec spec_from_table(const toml::table& root, const std::string& origin) {
  check_keys(root, origin);
  StackSpec s;
  auto field = [&](const char* table, const char* key) -> const toml::node* {
    if (auto* t = root.get_as<toml::table>(table)) return t->get(key);
    return nullptr;
  };
  auto full = [](const char* t, const char* k) { return fmt::format("{}.{}", t, k); };
  if (auto* n = field("stack", "depth")) s.depth = get_int(*n, full("stack", "depth"));
  if (auto* n = field("stack", "tokens")) s.tokens = get_int(*n, full("stack", "tokens"));
  if (auto* n = field("stack", "width")) s.width = get_int(*n, full("stack", "width"));
  if (auto* n = field("stack", "heads")) s.heads = get_int(*n, full("stack", "heads"));
  if (auto* n = field("stack", "mlp_ratio")) s.mlp_ratio = get_double(*n, full("stack", "mlp_ratio"));
  if (auto* n = field("stack", "blocks")) s.blocks = kBlocks.parse("stack.blocks", get_string(*n, "stack.blocks"));
  if (auto* n = field("stack", "norm")) s.norm = kNorm.parse("stack.norm", get_string(*n, "stack.norm"));
  if (auto* n = field("stack", "norm_type"))
    s.norm_type = kNormType.parse("stack.norm_type", get_string(*n, "stack.norm_type"));
  if (auto* n = field("stack", "norm_eps")) s.norm_eps = get_double(*n, "stack.norm_eps");
  if (auto* n = field("stack", "activation"))
    s.activation = kAct.parse("stack.activation", get_string(*n, "stack.activation"));
  if (auto* n = field("stack", "mask")) s.mask = kMask.parse("stack.mask", get_string(*n, "stack.mask"));
  if (auto* n = field("stack", "residual")) s.residual = get_bool(*n, "stack.residual");
  if (auto* n = field("stack", "branch_scale")) s.branch_scale = parse_branch_scale(*n);
  if (auto* n = field("stack", "qk_scale")) s.qk_scale = kQk.parse("stack.qk_scale", get_string(*n, "stack.qk_scale"));
  if (auto* n = field("init", "sigma_w2")) s.sigma_w2 = get_double(*n, "init.sigma_w2");
  if (auto* n = field("init", "sigma_b2")) s.sigma_b2 = get_double(*n, "init.sigma_b2");
  if (auto* n = field("init", "sigma_qk2")) s.sigma_qk2 = get_double(*n, "init.sigma_qk2");
  if (auto* n = field("init", "weights")) s.weights = kWeights.parse("init.weights", get_string(*n, "init.weights"));
  if (auto* n = field("input", "q0")) s.q0 = get_double(*n, "input.q0");
  if (auto* n = field("input", "rho0")) s.rho0 = get_double(*n, "input.rho0");
  try {
    s.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", origin, e.what()));
  }
  return s;
}

toml::table parse_table(std::string_view text, const std::string& origin) {
  check_toml_limits(text, origin);
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(fmt::format("{}:{}:{}: TOML syntax error: {}", origin, b.line, b.column, e.description()));
  }
}

void override_table(toml::table& root, std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos) throw ConfigError(fmt::format("override {}: expected table.key=value", assignment));
  std::string lhs(assignment.substr(0, eq)), rhs(assignment.substr(eq + 1));
  auto trim = [](std::string& x) {
    x.erase(0, x.find_first_not_of(" \t"));
    x.erase(x.find_last_not_of(" \t") + 1);
  };
  trim(lhs);
  trim(rhs);
  auto dot = lhs.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == lhs.size())
    throw ConfigError(fmt::format("override {}: the key must be table.key, e.g. stack.depth=48", assignment));
  std::string table = lhs.substr(0, dot), key = lhs.substr(dot + 1);
  if (rhs.empty()) throw ConfigError(fmt::format("override {}: missing value", assignment));
  // Value in TOML syntax when it parses (numbers, booleans, quoted strings), else a bare string.
  toml::table tmp;
  bool parsed = false;
  check_toml_limits("v = " + rhs, fmt::format("override {}", lhs));
  try {
    tmp = toml::parse("v = " + rhs);
    parsed = true;
  } catch (const toml::parse_error&) {
  }
  if (!root.contains(table)) root.insert(table, toml::table{});
  auto* t = root.get_as<toml::table>(table);
  if (t == nullptr) throw ConfigError(fmt::format("override {}: \"{}\" is not a table", assignment, table));
  if (parsed)
    t->insert_or_assign(key, *tmp.get("v"));
  else
    t->insert_or_assign(key, rhs);
}

int edit_distance(std::string_view a, std::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string toml_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date/time";
  }
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = 1 << 30;
  for (auto& c : candidates) {
    int d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Close enough to be a typo: at most a third of the longer word, and at least 1 edit allowed.
  int limit = std::max<int>(2, static_cast<int>(std::max(word.size(), best.size()) / 3));
  return best_d <= limit ? best : std::string{};
}

double BranchScale::value(int depth) const {
  switch (kind) {
    case BranchScaleKind::One:
      return 1.0;
    case BranchScaleKind::InvSqrtL:
      return 1.0 / std::sqrt(static_cast<double>(depth));
    case BranchScaleKind::InvSqrt2L:
      return 1.0 / std::sqrt(2.0 * depth);
    case BranchScaleKind::Number:
      return number;
  }
  throw Error("internal: unknown branch scale");
}

std::string BranchScale::str() const {
  switch (kind) {
    case BranchScaleKind::One:
      return "1";
    case BranchScaleKind::InvSqrtL:
      return "1/sqrt(L)";
    case BranchScaleKind::InvSqrt2L:
      return "1/sqrt(2L)";
    case BranchScaleKind::Number:
      return fmt::format("{}", number);
  }
  throw Error("internal: unknown branch scale");
}

int StackSpec::mlp_width() const {
  // In double then range-checked: mlp_ratio * width must never wrap into a plausible int
  // (268435457 * 16 = 2^32 + 16 would otherwise give a hidden width of 16).
  const double r = mlp_ratio * static_cast<double>(width);
  if (!(r >= 1 && r <= kMaxMlpWidth))
    throw ConfigError(fmt::format("stack.mlp_ratio: mlp_ratio * width = {} * {} = {} must be in [1, {}]", mlp_ratio,
                                  width, r, kMaxMlpWidth));
  return static_cast<int>(std::llround(r));
}

void StackSpec::validate() const {
  auto bad = [](const char* key, const std::string& why) { throw ConfigError(fmt::format("{}: {}", key, why)); };
  if (depth < 1 || depth > 1000000) bad("stack.depth", fmt::format("must be in [1, 1000000], got {}", depth));
  if (tokens < 2 || tokens > 8192)
    bad("stack.tokens", fmt::format("must be in [2, 8192] (rho needs a pair of tokens), got {}", tokens));
  if (width < 1 || width > 1 << 20) bad("stack.width", fmt::format("must be in [1, 1048576], got {}", width));
  if (heads < 1) bad("stack.heads", fmt::format("must be >= 1, got {}", heads));
  if (width % heads != 0)
    bad("stack.heads", fmt::format("must divide stack.width = {} (head dim d/H), got {}", width, heads));
  if (!(mlp_ratio > 0) || !std::isfinite(mlp_ratio))
    bad("stack.mlp_ratio", fmt::format("must be a positive number, got {}", mlp_ratio));
  if (mlp_ratio * width > kMaxMlpWidth)
    bad("stack.mlp_ratio", fmt::format("mlp_ratio * width must be at most {} (the MLP hidden width), got {} * {} = {:.17g}",
                                       kMaxMlpWidth, mlp_ratio, width, mlp_ratio * width));
  if (std::abs(mlp_ratio * width - std::round(mlp_ratio * width)) > 1e-9 || std::round(mlp_ratio * width) < 1)
    bad("stack.mlp_ratio", fmt::format("mlp_ratio * width must be a positive integer, got {} * {}", mlp_ratio, width));
  if (!(norm_eps >= 0) || !std::isfinite(norm_eps) || norm_eps > 1)
    bad("stack.norm_eps", fmt::format("must be in [0, 1], got {}", norm_eps));
  if (branch_scale.kind == BranchScaleKind::Number && (!std::isfinite(branch_scale.number) || branch_scale.number < 0))
    bad("stack.branch_scale",
        fmt::format("a numeric branch scale must be finite and >= 0, got {}", branch_scale.number));
  if (norm == Norm::DeepNorm && branch_scale.kind != BranchScaleKind::One)
    bad("stack.branch_scale", "must be \"1\" with norm = \"deepnorm\" (DeepNorm fixes its own scales lambda and beta)");
  if (norm == Norm::DeepNorm && !residual)
    bad("stack.residual", "must be true with norm = \"deepnorm\" (its skip weight lambda needs the residual)");
  if (!(sigma_w2 > 0) || !std::isfinite(sigma_w2)) bad("init.sigma_w2", fmt::format("must be > 0, got {}", sigma_w2));
  if (!(sigma_b2 >= 0) || !std::isfinite(sigma_b2)) bad("init.sigma_b2", fmt::format("must be >= 0, got {}", sigma_b2));
  if (!(sigma_qk2 >= 0) || !std::isfinite(sigma_qk2))
    bad("init.sigma_qk2", fmt::format("must be >= 0, got {}", sigma_qk2));
  if (!(q0 > 0) || !std::isfinite(q0)) bad("input.q0", fmt::format("must be > 0, got {}", q0));
  if (!(rho0 >= 0 && rho0 <= 1)) bad("input.rho0", fmt::format("must be in [0, 1], got {}", rho0));
}

std::string to_string(Blocks v) {
  return kBlocks.name(v);
}
std::string to_string(Norm v) {
  return kNorm.name(v);
}
std::string to_string(NormType v) {
  return kNormType.name(v);
}
std::string to_string(Activation v) {
  return kAct.name(v);
}
std::string to_string(Mask v) {
  return kMask.name(v);
}
std::string to_string(QkScale v) {
  return kQk.name(v);
}
std::string to_string(WeightDist v) {
  return kWeights.name(v);
}

nlohmann::json spec_to_json(const StackSpec& s) {
  nlohmann::json j;
  nlohmann::json bs;
  if (s.branch_scale.kind == BranchScaleKind::Number)
    bs = s.branch_scale.number;
  else
    bs = s.branch_scale.str();
  j["stack"] = {{"depth", s.depth},          {"tokens", s.tokens},
                {"width", s.width},          {"heads", s.heads},
                {"mlp_ratio", s.mlp_ratio},  {"blocks", to_string(s.blocks)},
                {"norm", to_string(s.norm)}, {"norm_type", to_string(s.norm_type)},
                {"norm_eps", s.norm_eps},    {"activation", to_string(s.activation)},
                {"mask", to_string(s.mask)}, {"residual", s.residual},
                {"branch_scale", bs},        {"qk_scale", to_string(s.qk_scale)}};
  j["init"] = {{"sigma_w2", s.sigma_w2},
               {"sigma_b2", s.sigma_b2},
               {"sigma_qk2", s.sigma_qk2},
               {"weights", to_string(s.weights)}};
  j["input"] = {{"q0", s.q0}, {"rho0", s.rho0}};
  return j;
}

std::string to_toml(const StackSpec& s) {
  std::ostringstream o;
  auto num = [](double x) {
    return fmt::format("{:.17g}", x).find_first_of(".eEn") == std::string::npos ? fmt::format("{:.17g}.0", x)
                                                                                : fmt::format("{:.17g}", x);
  };
  o << "[stack]\n"
    << "depth = " << s.depth << "\ntokens = " << s.tokens << "\nwidth = " << s.width << "\nheads = " << s.heads
    << "\nmlp_ratio = " << num(s.mlp_ratio) << "\nblocks = \"" << to_string(s.blocks) << "\"\nnorm = \""
    << to_string(s.norm) << "\"\nnorm_type = \"" << to_string(s.norm_type) << "\"\nnorm_eps = " << num(s.norm_eps)
    << "\nactivation = \"" << to_string(s.activation) << "\"\nmask = \"" << to_string(s.mask)
    << "\"\nresidual = " << (s.residual ? "true" : "false") << "\nbranch_scale = "
    << (s.branch_scale.kind == BranchScaleKind::Number ? num(s.branch_scale.number)
                                                       : "\"" + s.branch_scale.str() + "\"")
    << "\nqk_scale = \"" << to_string(s.qk_scale) << "\"\n\n[init]\nsigma_w2 = " << num(s.sigma_w2)
    << "\nsigma_b2 = " << num(s.sigma_b2) << "\nsigma_qk2 = " << num(s.sigma_qk2) << "\nweights = \""
    << to_string(s.weights) << "\"\n\n[input]\nq0 = " << num(s.q0)
    << "\nrho0 = " << num(s.rho0) << "\n";
  return o.str();
}

StackSpec spec_from_json(const nlohmann::json& j) {
  // Route through TOML so that JSON specs get exactly the same key and range checks.
  toml::table root;
  for (auto& [table, obj] : j.items()) {
    if (!obj.is_object()) throw ConfigError(fmt::format("spec JSON: \"{}\" must be an object", table));
    toml::table t;
    for (auto& [k, v] : obj.items()) {
      if (v.is_boolean())
        t.insert(k, v.get<bool>());
      else if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw ConfigError(fmt::format("spec JSON: {}.{} = {} is out of range", table, k, v.get<uint64_t>()));
      else if (v.is_number_integer())
        t.insert(k, v.get<int64_t>());
      else if (v.is_number())
        t.insert(k, v.get<double>());
      else if (v.is_string())
        t.insert(k, v.get<std::string>());
      else
        throw ConfigError(fmt::format("spec JSON: {}.{} has an unsupported type", table, k));
    }
    root.insert(table, std::move(t));
  }
  return spec_from_table(root, "spec JSON");
}

StackSpec parse_spec_toml(std::string_view text, const std::string& origin) {
  return spec_from_table(parse_table(text, origin), origin);
}

StackSpec load_spec_file(const std::filesystem::path& path) {
  return parse_spec_toml(read_toml_file(path, "spec file"), path.string());
}

void apply_override(StackSpec& spec, std::string_view assignment) {
  toml::table root = parse_table(to_toml(spec), "<resolved spec>");
  override_table(root, assignment);
  spec = spec_from_table(root, fmt::format("override {}", assignment));
}

StackSpec resolve_spec(const std::string& path_or_empty, const std::vector<std::string>& overrides) {
  toml::table root;
  std::string origin = "<default spec>";
  if (!path_or_empty.empty()) {
    root = parse_table(read_toml_file(path_or_empty, "spec file"), path_or_empty);
    origin = path_or_empty;
    check_keys(root, origin);  // report file errors against the file, before overrides
  }
  for (auto& o : overrides) {
    override_table(root, o);
    try {
      check_keys(root, "override " + o);
    } catch (const ConfigError&) {
      throw;
    }
  }
  std::string where = overrides.empty() ? origin : origin + " with overrides";
  return spec_from_table(root, where);
}

}  // namespace sigprop
