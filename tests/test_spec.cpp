// [config]: every class of bad input is a ConfigError whose message names the key.
#include <catch2/catch.hpp>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"

using namespace sigprop;

namespace {
std::string config_error(const std::string& toml) {
  try {
    parse_spec_toml(toml, "case.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
std::string override_error(const std::vector<std::string>& sets) {
  try {
    resolve_spec("", sets);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("defaults are valid and documented values", "[config]") {
  StackSpec s = parse_spec_toml("", "empty.toml");
  CHECK(s.depth == 24);
  CHECK(s.tokens == 16);
  CHECK(s.blocks == Blocks::AttnMlp);
  CHECK(s.norm == Norm::Pre);
  CHECK(s.activation == Activation::Gelu);
  CHECK(s.qk_scale == QkScale::InvSqrtDh);
  CHECK_NOTHROW(s.validate());
}

TEST_CASE("all keys of MODEL.md §3 parse", "[config]") {
  StackSpec s = parse_spec_toml(R"toml(
[stack]
depth = 48
tokens = 8
width = 256
heads = 4
mlp_ratio = 2
blocks = "attn"
norm = "post"
norm_type = "rmsnorm"
activation = "relu"
mask = "none"
residual = false
branch_scale = "1/sqrt(2L)"
qk_scale = "1/dh"
[init]
sigma_w2 = 2
sigma_b2 = 0.1
sigma_qk2 = 0.5
[input]
q0 = 3
rho0 = 0.25
)toml");
  CHECK(s.depth == 48);
  CHECK(s.mlp_ratio == 2.0);
  CHECK(s.blocks == Blocks::Attn);
  CHECK(s.norm == Norm::Post);
  CHECK(s.norm_type == NormType::RmsNorm);
  CHECK(s.activation == Activation::Relu);
  CHECK(s.mask == Mask::None);
  CHECK_FALSE(s.residual);
  CHECK(s.branch_scale.kind == BranchScaleKind::InvSqrt2L);
  CHECK(s.branch_scale.value(48) == Approx(1 / std::sqrt(96.0)));
  CHECK(s.qk_scale == QkScale::InvDh);
  CHECK(s.sigma_w2 == 2.0);
  CHECK(s.rho0 == 0.25);
}

TEST_CASE("unknown keys are named, with a suggestion", "[config]") {
  auto msg = config_error("[stack]\ndepht = 4\n");
  CHECK_THAT(msg, Catch::Contains("stack.depht") && Catch::Contains("did you mean \"stack.depth\""));
  msg = config_error("[stak]\ndepth = 4\n");
  CHECK_THAT(msg, Catch::Contains("unknown table \"stak\"") && Catch::Contains("[stack]"));
  msg = config_error("depth = 4\n");
  CHECK_THAT(msg, Catch::Contains("\"depth\" must be inside the [stack] table"));
  msg = config_error("[init]\nrho0 = 0.5\n");
  CHECK_THAT(msg, Catch::Contains("init.rho0") && Catch::Contains("belongs in [input]"));
  CHECK_THAT(config_error("[stack]\nactivation = \"gelu2\"\n"),
             Catch::Contains("stack.activation") && Catch::Contains("did you mean \"gelu\""));
  CHECK_THAT(config_error("[stack]\nnorm = \"layer\"\n"), Catch::Contains("stack.norm") && Catch::Contains("allowed"));
}

TEST_CASE("wrong types are named", "[config]") {
  CHECK_THAT(config_error("[stack]\ndepth = \"ten\"\n"),
             Catch::Contains("stack.depth: expected an integer, got a string"));
  CHECK_THAT(config_error("[stack]\ndepth = 2.5\n"), Catch::Contains("stack.depth: expected an integer"));
  CHECK_THAT(config_error("[stack]\nresidual = 1\n"), Catch::Contains("stack.residual: expected true or false"));
  CHECK_THAT(config_error("[init]\nsigma_w2 = \"2\"\n"), Catch::Contains("init.sigma_w2: expected a number"));
  CHECK_THAT(config_error("[stack]\nbranch_scale = \"1/L\"\n"), Catch::Contains("stack.branch_scale"));
  CHECK_THAT(config_error("stack = 3\n"), Catch::Contains("\"stack\" must be a table"));
}

TEST_CASE("out-of-range values are named with what is allowed", "[config]") {
  CHECK_THAT(config_error("[stack]\ndepth = 0\n"), Catch::Contains("stack.depth: must be in [1"));
  CHECK_THAT(config_error("[stack]\ntokens = 1\n"), Catch::Contains("stack.tokens"));
  CHECK_THAT(config_error("[stack]\nwidth = 100\nheads = 3\n"), Catch::Contains("stack.heads: must divide"));
  CHECK_THAT(config_error("[stack]\nmlp_ratio = 0\n"), Catch::Contains("stack.mlp_ratio"));
  CHECK_THAT(config_error("[stack]\nwidth = 10\nheads = 1\nmlp_ratio = 0.55\n"), Catch::Contains("stack.mlp_ratio"));
  CHECK_THAT(config_error("[input]\nrho0 = 1.5\n"), Catch::Contains("input.rho0: must be in [0, 1]"));
  CHECK_THAT(config_error("[input]\nq0 = 0\n"), Catch::Contains("input.q0"));
  CHECK_THAT(config_error("[init]\nsigma_w2 = -1\n"), Catch::Contains("init.sigma_w2"));
  CHECK_THAT(config_error("[init]\nsigma_b2 = nan\n"), Catch::Contains("init.sigma_b2"));
  CHECK_THAT(config_error("[init]\nsigma_qk2 = -0.1\n"), Catch::Contains("init.sigma_qk2"));
  CHECK_THAT(config_error("[stack]\nnorm = \"deepnorm\"\nbranch_scale = \"1/sqrt(L)\"\n"),
             Catch::Contains("stack.branch_scale") && Catch::Contains("deepnorm"));
  CHECK_THAT(config_error("[stack]\nbranch_scale = -1\n"), Catch::Contains("stack.branch_scale"));
  CHECK_THAT(config_error("[stack]\nnorm_eps = -1e-5\n"), Catch::Contains("stack.norm_eps"));
}

TEST_CASE("TOML syntax errors name the file and line", "[config]") {
  CHECK_THAT(config_error("[stack]\ndepth = = 3\n"), Catch::Contains("case.toml:2:") && Catch::Contains("syntax"));
}

TEST_CASE("spec overrides (--set): repeatable, last wins, errors named", "[config]") {
  StackSpec s = resolve_spec("", {"stack.depth=10", "stack.norm=post", "stack.depth=12", "init.sigma_w2=1.5",
                                  "stack.branch_scale=1/sqrt(L)", "stack.residual=false"});
  CHECK(s.depth == 12);
  CHECK(s.norm == Norm::Post);
  CHECK(s.sigma_w2 == 1.5);
  CHECK(s.branch_scale.kind == BranchScaleKind::InvSqrtL);
  CHECK_FALSE(s.residual);
  CHECK(resolve_spec("", {"stack.branch_scale=0.3"}).branch_scale.number == 0.3);
  CHECK(resolve_spec("", {"stack.activation=\"relu\""}).activation == Activation::Relu);
  CHECK_THAT(override_error({"stack.depth"}), Catch::Contains("expected table.key=value"));
  CHECK_THAT(override_error({"depth=3"}), Catch::Contains("table.key"));
  CHECK_THAT(override_error({"stack.dpeth=3"}), Catch::Contains("stack.dpeth") && Catch::Contains("did you mean"));
  CHECK_THAT(override_error({"stack.depth=-3"}), Catch::Contains("stack.depth: must be in"));
  CHECK_THAT(override_error({"stack.depth=abc"}), Catch::Contains("stack.depth: expected an integer"));
  CHECK_THAT(override_error({"input.rho0="}), Catch::Contains("missing value"));
}

TEST_CASE("spec round-trips through TOML and JSON", "[config]") {
  StackSpec s = resolve_spec("", {"stack.norm=lns", "stack.branch_scale=0.7", "init.sigma_b2=0.05",
                                  "stack.activation=silu", "input.rho0=0.3"});
  StackSpec t = parse_spec_toml(to_toml(s));
  CHECK(spec_to_json(t) == spec_to_json(s));
  StackSpec u = spec_from_json(spec_to_json(s));
  CHECK(spec_to_json(u) == spec_to_json(s));
}

TEST_CASE("Profile JSON round trip keeps NaN as null and every column", "[config]") {
  StackSpec s = resolve_spec("", {"stack.depth=3"});
  Profile p = Profile::make(s, "test", {"q", "q_se"});
  for (int l = 0; l <= 3; ++l) p.at(l, "q") = 1.0 + l;
  p.settings = {{"seed", 7}};
  p.warnings.push_back("w");
  Profile r = Profile::from_json(p.to_json());
  CHECK(r.engine == "test");
  CHECK(r.settings["seed"] == 7);
  CHECK(r.at(2, "q") == 3.0);
  CHECK(std::isnan(r.at(2, "q_se")));
  CHECK(r.warnings == p.warnings);
  CHECK(spec_to_json(r.spec) == spec_to_json(s));
  std::string csv = p.to_csv();
  CHECK_THAT(csv, Catch::Contains("layer,q,q_se\n0,1,\n1,2,\n"));
  nlohmann::json bad = p.to_json();
  bad["layers"].erase(1);
  CHECK_THROWS_AS(Profile::from_json(bad), IoError);
}
