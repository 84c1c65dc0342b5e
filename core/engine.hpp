#pragma once
/// @file The Engine interface: a StackSpec goes in, a Profile comes out. Theory,
/// CPU and GPU Monte Carlo, ODE limits and trained-model measurement all implement it.
#include <string>

#include "core/profile.hpp"
#include "core/spec.hpp"

namespace sigprop {

class Engine {
 public:
  virtual ~Engine() = default;
  /// Short name written into Profile::engine ("theory", "simulate", ...).
  [[nodiscard]] virtual std::string name() const = 0;
  /// Computes every metric of MODEL.md §2 for layers 0..spec.depth. Throws
  /// ConfigError for specs the engine cannot represent; divergence is reported
  /// in the Profile (warnings, NaN rows), not thrown.
  virtual Profile run(const StackSpec& spec) = 0;
};

}  // namespace sigprop
