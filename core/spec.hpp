#pragma once
/// @file StackSpec: the stack of ../shared/MODEL.md §1 as one value, read from
/// TOML (MODEL.md §3), overridden by `--set table.key=value`, and validated
/// with errors that name the offending key.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sigprop {

enum class Blocks { AttnMlp, Attn, Mlp, Dense };
enum class Norm { Pre, Post, None, Lns, DeepNorm };
enum class NormType { LayerNorm, RmsNorm };
/// GeluTanh is GPT-2's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))).
enum class Activation { Relu, Gelu, Tanh, Erf, Silu, Linear, GeluTanh };
enum class Mask { Causal, None };
enum class QkScale { InvSqrtDh, InvDh };
enum class BranchScaleKind { One, InvSqrtL, InvSqrt2L, Number };
/// Distribution of the weight matrices V, O, W1, W2 and dense W (init.weights).
enum class WeightDist { Gaussian, Orthogonal };

/// Branch multiplier a_l (MODEL.md §1). All supported forms are constant in l.
struct BranchScale {
  BranchScaleKind kind = BranchScaleKind::One;
  double number = 1.0;  ///< used when kind == Number
  /// The multiplier a for a stack of depth L (a standard-deviation scale, not a variance).
  [[nodiscard]] double value(int depth) const;
  [[nodiscard]] std::string str() const;
};

/// Largest MLP hidden width mlp_ratio * width (2^24): every engine indexes hidden units and
/// T x R buffers with it, and 64x the largest width leaves room for any real ratio.
inline constexpr int kMaxMlpWidth = 1 << 24;

/// The full description of a random stack. Defaults are documented in README.md
/// and examples/default.toml; `to_json` always writes every key (the resolved spec).
struct StackSpec {
  // [stack]
  int depth = 24;          ///< number of blocks L (>= 1)
  int tokens = 16;         ///< T (>= 2)
  int width = 512;         ///< d; ignored by the infinite-width theory
  int heads = 8;           ///< H, must divide width
  double mlp_ratio = 4.0;  ///< r, MLP hidden width r*d (r*d must be an integer)
  Blocks blocks = Blocks::AttnMlp;
  Norm norm = Norm::Pre;
  NormType norm_type = NormType::LayerNorm;
  double norm_eps = 1e-5;  ///< eps inside the norm's square root (sigprop extension of MODEL.md)
  Activation activation = Activation::Gelu;
  Mask mask = Mask::Causal;
  bool residual = true;
  BranchScale branch_scale{};
  QkScale qk_scale = QkScale::InvSqrtDh;
  // [init]: variances (sigma^2), per fan-in for weights
  double sigma_w2 = 1.0;   ///< weight variance * fan_in for V, O, W1, W2 and dense weights
  double sigma_b2 = 0.0;   ///< bias variance for MLP and dense biases
  double sigma_qk2 = 1.0;  ///< weight variance * fan_in for Q and K
  /// "gaussian": iid N(0, sigma_w2/fan_in) entries (MODEL.md §1). "orthogonal": a Haar-random
  /// orthogonal matrix times sqrt(sigma_w2) (same per-entry variance); only `sigprop spectrum`
  /// implements it, the other engines reject it with a ConfigError naming init.weights.
  WeightDist weights = WeightDist::Gaussian;
  // [input]
  double q0 = 1.0;    ///< input second moment per coordinate
  double rho0 = 0.1;  ///< input correlation between distinct tokens, in [0, 1]

  /// Throws ConfigError naming the first key whose value is out of range.
  void validate() const;
  [[nodiscard]] int head_dim() const { return width / heads; }
  /// round(mlp_ratio * width), computed in double; ConfigError naming stack.mlp_ratio when
  /// it is outside [1, kMaxMlpWidth] (validate() checks this too).
  [[nodiscard]] int mlp_width() const;
  [[nodiscard]] bool has_attn() const { return blocks == Blocks::AttnMlp || blocks == Blocks::Attn; }
  [[nodiscard]] bool has_mlp() const { return blocks == Blocks::AttnMlp || blocks == Blocks::Mlp; }
  [[nodiscard]] nlohmann::json to_json() const;
  /// Parses a JSON object of the to_json form (used to read Profiles back).
  static StackSpec from_json(const nlohmann::json& j);
};

/// Parses a TOML document. `origin` names the file in error messages.
StackSpec parse_spec_toml(std::string_view text, const std::string& origin = "<spec>");
/// Reads and parses a TOML file; IoError if unreadable, ConfigError if invalid.
StackSpec load_spec_file(const std::filesystem::path& path);
/// Applies one override "table.key=value" (value in TOML syntax or a bare word).
void apply_override(StackSpec& spec, std::string_view assignment);
/// Applies overrides in order (the last one for a key wins) and validates.
StackSpec resolve_spec(const std::string& path_or_empty, const std::vector<std::string>& overrides);

/// Names used in TOML and JSON.
std::string to_string(Blocks);
std::string to_string(Norm);
std::string to_string(NormType);
std::string to_string(Activation);
std::string to_string(Mask);
std::string to_string(QkScale);
std::string to_string(WeightDist);

/// Spec rendered back to TOML (round-trips through parse_spec_toml).
std::string to_toml(const StackSpec& spec);

/// Closest candidate by edit distance, or "" when nothing is close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace sigprop
