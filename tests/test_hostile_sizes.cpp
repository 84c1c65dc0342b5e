// [hostile] Sizes, memory and hostile text (issue 19, classes 2-5 and 8): nesting and length
// limits before the TOML parser, 64-bit derived sizes, strict seeds and grid counts, memory
// estimates that refuse before allocating (checked with a lowered memory limit, never by
// allocating), checkpoint metadata checked against the tensors, and no placeholder values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "core/toml_text.hpp"
#include "reports/config.hpp"
#include "mc/engine.hpp"
#include "tests/shared/cli_run.hpp"
#include "theory/clustering.hpp"
#include "theory/engine.hpp"
#include "validate/measure.hpp"
#include "validate/model.hpp"
#include "validate/safetensors.hpp"

namespace fs = std::filesystem;
using sigprop::ConfigError;
using sigprop::StackSpec;

namespace {

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("hostile_sizes");
  return dir;
}
sigprop::test::cli::Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }
using sigprop::test::cli::write_text;

// Sets the process-wide memory limit for a scope and restores the previous one after it.
struct MemoryLimit {
  explicit MemoryLimit(std::uint64_t bytes) : before(sigprop::memory_limit()) { sigprop::set_memory_limit(bytes); }
  ~MemoryLimit() { sigprop::set_memory_limit(before); }
  MemoryLimit(const MemoryLimit&) = delete;
  MemoryLimit& operator=(const MemoryLimit&) = delete;
  std::uint64_t before;
};

std::string dotted(int levels) {
  std::string s = "a";
  for (int i = 1; i < levels; ++i) s += ".a";
  return s;
}

std::string nesting_error(const std::string& text) {
  try {
    sigprop::check_toml_limits(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("TOML nesting is bounded before parsing, in every form", "[hostile][config]") {
  const int n = sigprop::kMaxTomlNesting;
  // At the limit: no nesting error (the parser or the key checks may still refuse).
  // A value's depth counts its table header, its key and the arrays around it.
  CHECK(nesting_error("[" + dotted(n - 1) + "]\nx = 1\n").empty());
  CHECK(nesting_error(dotted(n) + " = 1\n").empty());
  CHECK(nesting_error("x = " + std::string(n - 1, '[') + std::string(n - 1, ']') + "\n").empty());
  CHECK_FALSE(nesting_error("[" + dotted(n) + "]\nx = 1\n").empty());
  // One level more, each way of nesting: a header, a dotted key, an array of tables, arrays,
  // inline tables, a dotted key under a header, and a mixture.
  const std::vector<std::string> deep{
      "[" + dotted(n + 1) + "]\n",
      dotted(n + 1) + " = 1\n",
      "[[" + dotted(n) + "]]\n",
      "x = " + std::string(n + 1, '[') + std::string(n + 1, ']') + "\n",
      [&] {
        std::string s = "x = ";
        for (int i = 0; i < n + 1; ++i) s += "{a = ";
        s += "1";
        for (int i = 0; i < n + 1; ++i) s += "}";
        return s + "\n";
      }(),
      "[" + dotted(n / 2) + "]\n" + dotted(n / 2 + 1) + " = 1\n",
      "x = [1, {a.b.c = [" + std::string(n, '[') + "]}]\n",
      "x = [\n  # a comment [\n  " + std::string(n + 1, '[') + "\n]\n",
  };
  for (const auto& text : deep) {
    INFO(text.substr(0, 80));
    CHECK_THAT(nesting_error(text), Catch::Contains("t.toml:") && Catch::Contains("nested deeper than"));
  }
  // Brackets, braces and dots inside strings and comments are not nesting.
  const std::string many(5000, '[');
  CHECK(nesting_error("title = \"" + many + "a.b.c\"\n").empty());
  CHECK(nesting_error("title = '" + many + "'\n").empty());
  CHECK(nesting_error("title = \"\"\"\n" + many + "\n\"\"\"\n").empty());
  CHECK(nesting_error("title = '''\n" + many + "\n'''\nx = 1\n").empty());
  CHECK(nesting_error("# " + many + "\n").empty());
  CHECK(nesting_error("\"" + dotted(100) + "\" = 1\n").empty());  // one quoted key
  CHECK(nesting_error("x = [1.5, 2.5, 3.5e-3, " + many.substr(0, 0) + "4.0]\n").empty());
}

TEST_CASE("deeply nested and oversized TOML: ConfigError for specs, --set and report configs", "[hostile][config]") {
  // The example: a 50,000-level table header (100 kB) used to overflow toml++'s stack.
  const std::string header = "[" + dotted(50000) + "]\nx = 1\n";
  CHECK_THROWS_WITH(sigprop::parse_spec_toml(header, "deep.toml"), Catch::Contains("nested deeper than"));
  CHECK_THROWS_WITH(sigprop::reports::parse_report_config(header, "deep.toml"), Catch::Contains("nested deeper than"));
  const std::string arrays = "[stack]\ndepth = " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  CHECK_THROWS_WITH(sigprop::parse_spec_toml(arrays, "a.toml"), Catch::Contains("a.toml:2:"));
  CHECK_THROWS_WITH(sigprop::reports::parse_report_config(arrays, "a.toml"), Catch::Contains("nested deeper than"));
  StackSpec s;
  CHECK_THROWS_WITH(sigprop::apply_override(s, "stack.depth=" + std::string(100000, '[')),
                    Catch::Contains("override stack.depth") && Catch::Contains("nested deeper than"));
  // Length: one byte over the limit, in memory and from a file; a special file ends, too.
  const std::string big = "# " + std::string(sigprop::kMaxTomlBytes, 'x') + "\n";
  CHECK_THROWS_WITH(sigprop::parse_spec_toml(big, "big.toml"), Catch::Contains("big.toml") && Catch::Contains("longer"));
  CHECK_THROWS_WITH(sigprop::reports::parse_report_config(big, "big.toml"), Catch::Contains("longer"));
  write_text(scratch() / "big.toml", big);
  CHECK_THROWS_AS(sigprop::load_spec_file(scratch() / "big.toml"), ConfigError);
  CHECK_THROWS_AS(sigprop::reports::load_report_config(scratch() / "big.toml"), ConfigError);
  if (fs::exists("/dev/zero")) {
    CHECK_THROWS_WITH(sigprop::load_spec_file("/dev/zero"), Catch::Contains("/dev/zero") && Catch::Contains("longer"));
  }
  CHECK_THROWS_AS(sigprop::load_spec_file(scratch()), sigprop::IoError);  // a directory
  // Ordinary files are unaffected.
  CHECK(sigprop::parse_spec_toml("[stack]\ndepth = 3\n", "ok.toml").depth == 3);
  CHECK_NOTHROW(sigprop::reports::default_report_config());
}

TEST_CASE("CLI: a 100 kB deeply nested spec exits 2 with a message", "[hostile][cli]") {
  write_text(scratch() / "deep.toml", "[" + dotted(50000) + "]\nx = 1\n");
  auto r = run("theory " + (scratch() / "deep.toml").string());
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("deep.toml:1: TOML nested deeper than"));
  std::string inline_tables = "x = ";
  for (int i = 0; i < 60000; ++i) inline_tables += "{a = ";
  write_text(scratch() / "deep_report.toml", inline_tables + "\n");
  r = run("report " + (scratch() / "deep_report.toml").string() + " --out " + (scratch() / "rep").string());
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("nested deeper than"));
  CHECK_FALSE(fs::exists(scratch() / "rep" / "index.html"));
}

TEST_CASE("derived sizes are 64-bit and range-checked: mlp_ratio cannot wrap", "[hostile][config]") {
  // 268435457 * 16 = 2^32 + 16: an int would wrap to a hidden width of 16 (mlp_ratio = 1).
  StackSpec s;
  s.width = 16;
  s.heads = 1;
  s.mlp_ratio = 268435457;
  CHECK_THROWS_WITH(s.validate(), Catch::Contains("stack.mlp_ratio") && Catch::Contains("at most"));
  CHECK_THROWS_WITH(s.mlp_width(), Catch::Contains("stack.mlp_ratio"));
  CHECK_THROWS_WITH(sigprop::parse_spec_toml("[stack]\nwidth = 16\nheads = 1\nmlp_ratio = 268435457\n", "r.toml"),
                    Catch::Contains("stack.mlp_ratio"));
  s.mlp_ratio = 1048576;  // 2^24 exactly: the largest hidden width
  CHECK_NOTHROW(s.validate());
  CHECK(s.mlp_width() == sigprop::kMaxMlpWidth);
  s.mlp_ratio = 1048577;
  CHECK_THROWS_AS(s.validate(), ConfigError);
  // The same through train's model config and a checkpoint's metadata.
  nlohmann::json j = sigprop::validate::ModelConfig{}.to_json();
  j["stack"]["width"] = 16;
  j["stack"]["heads"] = 1;
  j["stack"]["mlp_ratio"] = 268435457;
  CHECK_THROWS_WITH(sigprop::validate::ModelConfig::from_json(j, "ck"), Catch::Contains("stack.mlp_ratio"));
  j = sigprop::validate::ModelConfig{}.to_json();
  j["model"]["vocab"] = 4294967297LL;  // 2^32 + 1 would become vocab 1 through get<int>
  CHECK_THROWS_WITH(sigprop::validate::ModelConfig::from_json(j, "ck"), Catch::Contains("model.vocab"));
  j = sigprop::validate::ModelConfig{}.to_json();
  j["stack"]["depth"] = 18446744073709551615ULL;
  CHECK_THROWS_AS(sigprop::validate::ModelConfig::from_json(j, "ck"), ConfigError);
  CHECK(sigprop::sat_mul({std::uint64_t{1} << 40, std::uint64_t{1} << 40}) == UINT64_MAX);
  CHECK(sigprop::sat_add({UINT64_MAX - 1, 5}) == UINT64_MAX);
}

TEST_CASE("CLI: seeds outside [0, 2^64 - 1] and fractional grid counts are errors", "[hostile][cli]") {
  // Every bad form on one command, one on each other command with a seed (each is a process:
  // kept few so that the test stays fast under ASan).
  struct Bad {
    std::string cmd, seed;
  };
  std::vector<Bad> bad;
  for (const char* seed : {"-1", "18446744073709551616", "99999999999999999999999", "1.5", "0x10", ""})
    bad.push_back({"theory --set stack.depth=2", seed});
  bad.push_back({"simulate --set stack.depth=1 --set stack.width=8 --set stack.heads=2 --samples 2", "-1"});
  bad.push_back({"ode --kind clustering --points 2", "18446744073709551616"});
  for (const auto& b : bad) {
    INFO(b.cmd << " --seed '" << b.seed << "'");
    auto r = run(b.cmd + " --seed '" + b.seed + "' --json " + (scratch() / "s.json").string());
    CHECK(r.code != 0);
    CHECK_THAT(r.err, Catch::Contains("seed"));
    CHECK_FALSE(fs::exists(scratch() / "s.json"));
  }
  // The largest seed is accepted and kept exactly; leading zeros are decimal, not octal.
  auto r = run("theory --set stack.depth=2 --seed 18446744073709551615 --json " + (scratch() / "a.json").string());
  REQUIRE(r.code == 0);
  CHECK(sigprop::read_profile_json(scratch() / "a.json").settings["attention"]["seed"].get<std::uint64_t>() ==
        18446744073709551615ULL);
  r = run("theory --set stack.depth=2 --seed 010 --json " + (scratch() / "b.json").string());
  REQUIRE(r.code == 0);
  CHECK(sigprop::read_profile_json(scratch() / "b.json").settings["attention"]["seed"].get<std::uint64_t>() == 10);
  for (const char* grid : {"0.5:4:4.5", "0.5:4:3e9", "0.5:4:-3", "a:4:3"}) {
    INFO(grid);
    r = run(std::string("phase --sigma-w2 ") + grid + " --sigma-b2 0:0.1:2");
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("--sigma-w2"));
  }
  CHECK(run("phase --sigma-w2 0.5:4:3 --sigma-b2 0:0.1:2").code == 0);
}

TEST_CASE("memory estimates refuse before allocating, naming the size and the keys", "[hostile][config]") {
  const MemoryLimit cap(std::uint64_t{64} << 20);  // 64 MiB
  // Monte Carlo: weights and streams grow with width.
  StackSpec s;
  s.depth = 2;
  s.width = 4096;
  s.heads = 8;
  sigprop::sim::SimSettings ss;
  ss.samples = 2;
  ss.backend = "reference";
  ss.threads = 1;
  ss.weights_sampling = "explicit";  // d x d weights; conditional sampling needs O(T d) (checked below)
  CHECK_THROWS_AS(sigprop::sim::MonteCarloEngine(ss).run(s), sigprop::MemoryLimitError);
  CHECK_THROWS_WITH(sigprop::sim::MonteCarloEngine(ss).run(s), Catch::Contains("simulate engine") && Catch::Contains("would need about") &&
                                                                   Catch::Contains("stack.width = 4096") &&
                                                                   Catch::Contains("the memory limit is 64 MiB"));
  {
    sigprop::sim::SimSettings cond = ss;
    cond.weights_sampling = "conditional";
    CHECK(sigprop::sim::MonteCarloEngine(cond).run(s).settings["weights_sampling"] == "conditional");
  }
  // One matrix beyond 32-bit indexing is refused whatever the limit (the width 2^20).
  {
    const MemoryLimit none(0);
    StackSpec w;
    w.width = 1 << 20;
    w.heads = 1;
    w.depth = 1;
    CHECK_THROWS_WITH(sigprop::sim::MonteCarloEngine(ss).run(w), Catch::Contains("single matrix"));
  }
  // Theory: T x T kernels per layer (the 8192 tokens).
  StackSpec t;
  t.tokens = 8192;
  t.depth = 4;
  t.qk_scale = sigprop::QkScale::InvDh;  // causal attention: a full T x T kernel per layer
  t.activation = sigprop::Activation::Relu;
  CHECK_THROWS_WITH(sigprop::theory::TheoryEngine(sigprop::theory::TheorySettings{}).run(t),
                    Catch::Contains("theory engine") && Catch::Contains("stack.tokens = 8192"));
  // Clustering: output points.
  sigprop::theory::ClusteringSettings cs;
  cs.points = 100000000;
  StackSpec c;
  c.tokens = 8;
  c.width = 8;
  CHECK_THROWS_WITH(sigprop::theory::clustering_profile(c, cs), Catch::Contains("points = 100000000"));
  // The init ensemble of validate (the 10^9 models), before any measurement.
  sigprop::validate::ModelConfig mc;
  mc.arch.spec.depth = 1;
  mc.arch.spec.tokens = 8;
  mc.arch.spec.width = 8;
  mc.arch.spec.heads = 2;
  const auto m = sigprop::validate::Model<float>::initial(mc, 1);
  sigprop::validate::ValidateSettings vs;
  vs.ensemble = 1000000000;
  vs.samples = 0;
  vs.theory = false;
  vs.tokens = 16;
  const std::vector<unsigned char> text(64, 'a');
  CHECK_THROWS_WITH(sigprop::validate::validate_model(m, text, vs),
                    Catch::Contains("init ensemble of 1000000000 models") && Catch::Contains("ensemble = "));
  // Ordinary sizes pass under the same limit.
  StackSpec small;
  small.depth = 2;
  small.width = 16;
  small.heads = 2;
  CHECK_NOTHROW(sigprop::sim::MonteCarloEngine(ss).run(small));
  CHECK_NOTHROW(sigprop::theory::TheoryEngine(sigprop::theory::TheorySettings{}).run(small));
}

TEST_CASE("byte sizes parse strictly", "[hostile][config]") {
  CHECK(sigprop::parse_byte_size("0", "--max-memory") == 0);
  CHECK(sigprop::parse_byte_size("1000", "--max-memory") == 1000);
  CHECK(sigprop::parse_byte_size("64M", "--max-memory") == (std::uint64_t{64} << 20));
  CHECK(sigprop::parse_byte_size("1.5G", "--max-memory") == (std::uint64_t{3} << 29));
  for (const char* bad : {"", "-1", "1.5", "G", "8X", "1e9", "99999999999T"})
    CHECK_THROWS_WITH(sigprop::parse_byte_size(bad, "--max-memory"), Catch::Contains("--max-memory"));
  CHECK(sigprop::format_bytes(3u << 29) == "1.5 GiB");
}

TEST_CASE("CLI: the issue's out-of-memory commands exit 2 with a named error", "[hostile][cli]") {
  fs::path corpus = scratch() / "corpus.txt";
  write_text(corpus, std::string(4096, 'a'));
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases{
      {"simulate --set stack.width=1048576 --set stack.heads=1 --set stack.depth=1 --samples 1 --seed 1 "
       "--weights-sampling explicit",
       "single matrix"},
      {"simulate --set stack.width=1048576 --set stack.heads=1 --set stack.depth=1 --samples 1 --seed 1 "
       "--max-memory 1G",
       "stack.width = 1048576"},
      {"theory --set stack.tokens=8192 --set stack.depth=4 --set stack.qk_scale=1/dh --set stack.blocks=attn+mlp "
       "--set stack.activation=relu --max-memory 1G",
       "stack.tokens = 8192"},
      {"train --corpus " + corpus.string() + " --out " + (scratch() / "tr").string() +
           " --batch 100000000 --max-memory 1G",
       "batch = 100000000"},
      {"ode --kind clustering --points 100000000 --max-memory 1G", "points = 100000000"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    auto r = run(c.args);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("would need") && Catch::Contains(c.says));
  }
  CHECK(run("theory --set stack.depth=2 --max-memory 1X").code == 2);
}

#if !defined(__SANITIZE_ADDRESS__)  // ASan maps terabytes of shadow memory: no RLIMIT_DATA under it
TEST_CASE("CLI: an allocation that still fails is a message and exit 1, never an abort", "[hostile][cli]") {
  // No sigprop limit, a data limit of 256 MiB on the child (ulimit -d, RLIMIT_DATA): the theory's
  // 3 x 128 MiB kernels cannot be allocated, and std::bad_alloc must end in a clean exit 1.
  const std::string cmd = std::string("sh -c 'ulimit -d 262144; exec ") + SIGPROP_CLI_PATH +
                          " theory --set stack.tokens=4096 --set stack.depth=2 --set stack.qk_scale=1/dh"
                          " --set stack.blocks=attn+mlp --set stack.activation=relu --max-memory 0 -q'";
  const fs::path err = scratch() / "oom.err";
  const int status = std::system((cmd + " 2>" + err.string()).c_str());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK_THAT(sigprop::test::cli::slurp(err), Catch::Contains("sigprop: error: out of memory"));
}
#endif

TEST_CASE("param_count agrees with the allocated model for every architecture", "[hostile][validate]") {
  using sigprop::validate::ModelConfig;
  std::vector<ModelConfig> cfgs;
  ModelConfig base;
  base.arch.spec.depth = 2;
  base.arch.spec.tokens = 8;
  base.arch.spec.width = 16;
  base.arch.spec.heads = 4;
  base.arch.spec.mlp_ratio = 2.5;
  base.vocab = 11;
  cfgs.push_back(base);
  for (auto blocks : {sigprop::Blocks::Attn, sigprop::Blocks::Mlp, sigprop::Blocks::Dense}) {
    ModelConfig c = base;
    c.arch.spec.blocks = blocks;
    cfgs.push_back(c);
  }
  ModelConfig llama = base;  // grouped KV heads, gated MLP, RMSNorm, tied, no biases
  llama.arch.spec.norm_type = sigprop::NormType::RmsNorm;
  llama.arch.ext.kv_heads = 2;
  llama.arch.ext.gated_mlp = true;
  llama.mlp_bias = false;
  llama.tied = true;
  llama.learned_pos = false;
  cfgs.push_back(llama);
  ModelConfig neox = base;  // parallel blocks with attention biases
  neox.arch.ext.parallel = true;
  neox.arch.ext.attn_bias = true;
  neox.norm_bias = false;
  cfgs.push_back(neox);
  ModelConfig bare = base;
  bare.arch.spec.norm = sigprop::Norm::None;
  bare.final_norm = false;
  bare.norm_affine = false;
  cfgs.push_back(bare);
  for (const auto& c : cfgs) {
    INFO(c.to_json().dump());
    CHECK(sigprop::validate::param_count(c) == sigprop::validate::Model<float>::zeros(c).num_params());
  }
}

TEST_CASE("a small checkpoint cannot make a reader allocate the huge model its metadata claims", "[hostile][validate]") {
  using namespace sigprop::validate;
  ModelConfig small;
  small.arch.spec.depth = 2;
  small.arch.spec.tokens = 16;
  small.arch.spec.width = 32;
  small.arch.spec.heads = 4;
  const fs::path good = scratch() / "good.safetensors", bad = scratch() / "claims_huge.safetensors";
  save_checkpoint(good, Model<float>::initial(small, 3));
  CHECK_NOTHROW(load_checkpoint<float>(good));
  // The same tensors under metadata declaring depth 200, width 2048 (the 2 GB claim).
  sigprop::safetensors::File f = sigprop::safetensors::read_file(good);
  ModelConfig huge = small;
  huge.arch.spec.depth = 200;
  huge.arch.spec.width = 2048;
  huge.arch.spec.heads = 16;
  f.metadata["sigprop.model"] = huge.to_json().dump();
  sigprop::safetensors::write_file(bad, f.tensors, f.metadata);
  CHECK(fs::file_size(bad) < (std::uint64_t{1} << 20));
  // Refused from the config and the tensors alone: nothing of the declared size is allocated,
  // so this holds even under a 16 MiB memory limit that the declared model would exceed 100-fold.
  const MemoryLimit cap(std::uint64_t{16} << 20);
  CHECK_THROWS_AS(load_checkpoint<float>(bad), sigprop::IoError);
  CHECK_THROWS_WITH(load_checkpoint<float>(bad), Catch::Contains("claims_huge.safetensors") &&
                                                     Catch::Contains("stack.depth = 200") &&
                                                     Catch::Contains("stack.width = 2048") && Catch::Contains("hold only"));
  // A claim of another shape is refused too (by the count or, failing that, by every tensor's shape).
  ModelConfig wider = small;
  wider.arch.spec.width = 48;
  wider.arch.spec.heads = 4;
  wider.arch.spec.depth = 1;  // fewer layers, wider: the count is checked first, then every shape
  f.metadata["sigprop.model"] = wider.to_json().dump();
  sigprop::safetensors::write_file(bad, f.tensors, f.metadata);
  CHECK_THROWS_AS(load_checkpoint<float>(bad), sigprop::IoError);
}

TEST_CASE("clustering: no placeholder values reach the profile when the flow overflows", "[hostile][ode]") {
  StackSpec s;
  s.tokens = 16;
  s.width = 16;
  sigprop::theory::ClusteringSettings cs;
  cs.variant = sigprop::theory::AttnDynamics::USA;
  cs.beta = 50;
  cs.points = 20;
  const sigprop::Profile p = sigprop::theory::clustering_profile(s, cs);
  bool any_null = false;
  for (const auto& row : p.rows)
    for (double v : row) {
      CHECK((std::isnan(v) || std::abs(v) < 1e100));  // 1e300 / -1e300 were the placeholders
      any_null = any_null || std::isnan(v);
    }
  if (any_null) {
    REQUIRE_FALSE(p.warnings.empty());
    CHECK_THAT(p.warnings.front(), Catch::Contains("first at t ="));
  }
  // Every null is explained: a column null at output i has a warning naming that column.
  for (const std::string col : {"rho", "rho_min", "rho_max", "rho_eq", "norm_dev"})
    for (int i = 0; i <= cs.points; ++i)
      if (std::isnan(p.at(i, col))) {
        bool named = false;
        for (const auto& w : p.warnings) named = named || w.rfind("non-finite " + col + " first", 0) == 0;
        CHECK(named);
        break;
      }
}

TEST_CASE("theory: every null metric is named by a warning with its first layer", "[hostile][theory]") {
  // norm = none at depth 400 overflows: rho first (layer ~35, from finite kernels), the kernel
  // itself later (~245), and grad_var everywhere. The old single warning named only the kernel.
  StackSpec s;
  s.depth = 400;
  s.norm = sigprop::Norm::None;
  s.qk_scale = sigprop::QkScale::InvDh;
  sigprop::theory::TheorySettings ts;
  ts.quad_order = 8;
  const sigprop::Profile p = sigprop::theory::TheoryEngine(ts).run(s);
  REQUIRE_FALSE(p.warnings.empty());
  std::string all;
  for (const auto& w : p.warnings) all += w + " | ";
  int fwd = -1;
  for (const auto& w : p.warnings)
    if (w.rfind("non-finite kernel K_l first at layer ", 0) == 0) fwd = std::stoi(w.substr(37));
  int nulls = 0;
  for (const std::string& m : sigprop::metric_names())
    for (int l = 0; l <= s.depth; ++l) {
      if (l == 0 && (m == "update_ratio" || m == "ang_dist")) continue;
      if (std::isfinite(p.at(l, m))) continue;
      ++nulls;
      const bool by_kernel = fwd >= 0 && (l >= fwd || m == "grad_var");
      const std::string named = "non-finite " + m + " first at layer ";
      bool by_metric = false;
      for (const auto& w : p.warnings)
        if (w.rfind(named, 0) == 0) by_metric = by_metric || std::stoi(w.substr(named.size())) <= l;
      INFO(m << " null at layer " << l << "; warnings: " << all);
      CHECK((by_kernel || by_metric));
    }
  CHECK(nulls > 0);
}
