#pragma once
/// @file The structure of a stack shared by every engine: each block of MODEL.md §1 is
/// one or two half-blocks  Y = post( lam X + a F(pre(X)) ), with pre = N (pre), N/sqrt(l)
/// (lns) or identity, post = N (post, deepnorm) or identity. See docs/theory.md.
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/spec.hpp"

namespace sigprop {

/// The branch F of a half-block.
enum class Branch { Attn, Mlp, Dense };

struct HalfParams {
  bool pre = false, post = false;
  double pre_gain = 1.0;  ///< 1/sqrt(l) for LayerNorm Scaling (standard-deviation factor)
  double lam = 1.0;       ///< skip weight (0 without residual)
  double a = 1.0;         ///< branch scale
};

/// Half-block parameters of block l (1-based) of spec s.
inline HalfParams half_params(const StackSpec& s, int l) {
  HalfParams p;
  p.pre = s.norm == Norm::Pre || s.norm == Norm::Lns;
  p.post = s.norm == Norm::Post || s.norm == Norm::DeepNorm;
  if (s.norm == Norm::Lns) p.pre_gain = 1.0 / std::sqrt(static_cast<double>(l));  // Sun et al. 2025
  p.a = s.branch_scale.value(s.depth);
  if (s.norm == Norm::DeepNorm) {
    p.lam = std::pow(2.0 * s.depth, 0.25);  // Wang et al. 2022 (DeepNet), decoder-only
    p.a = 1.0;
  }
  if (!s.residual) p.lam = 0.0;
  return p;
}

/// DeepNorm's beta = (8L)^{-1/4} on V, O, W1, W2 and dense W; 1 otherwise (a standard-deviation factor).
inline double weight_beta(const StackSpec& s) {
  return s.norm == Norm::DeepNorm ? std::pow(8.0 * s.depth, -0.25) : 1.0;
}

/// The branches of one block, in order.
inline std::vector<Branch> halves_of(const StackSpec& s) {
  switch (s.blocks) {
    case Blocks::AttnMlp:
      return {Branch::Attn, Branch::Mlp};
    case Blocks::Attn:
      return {Branch::Attn};
    case Blocks::Mlp:
      return {Branch::Mlp};
    case Blocks::Dense:
      return {Branch::Dense};
  }
  throw Error("internal: unknown blocks");
}

}  // namespace sigprop
