#pragma once
/// @file StackSpec: the stack of MODEL.md §1 as one plain value. Reading it from TOML,
/// `table.key=value` overrides and rendering it as TOML or JSON are in sigprop/api.hpp.
#include <string>

#include "sigprop/export.hpp"

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
struct SIGPROP_API BranchScale {
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
/// and examples/default.toml. Build one in code (every member has its default), from TOML
/// (sigprop/api.hpp: spec_from_toml, spec_from_file) or with overrides (apply_overrides).
struct SIGPROP_API StackSpec {
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
};

/// Names used in TOML and JSON.
SIGPROP_API std::string to_string(Blocks);
SIGPROP_API std::string to_string(Norm);
SIGPROP_API std::string to_string(NormType);
SIGPROP_API std::string to_string(Activation);
SIGPROP_API std::string to_string(Mask);
SIGPROP_API std::string to_string(QkScale);
SIGPROP_API std::string to_string(WeightDist);

}  // namespace sigprop
