#pragma once
/// @file The Engine interface: a StackSpec goes in, a Profile comes out. Theory,
/// CPU and GPU Monte Carlo, ODE limits and trained-model measurement all implement it.
#include <string>
#include <string_view>
#include <utility>

#include "core/profile.hpp"
#include "core/progress.hpp"
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

  /// Progress and cancellation for the following run() calls (empty: none). The callback
  /// may return false to cancel: run() then throws CancelledError and returns nothing.
  void set_progress(ProgressFn fn) { progress_ = std::move(fn); }
  [[nodiscard]] const ProgressFn& progress_callback() const { return progress_; }

 protected:
  /// Reports progress for this engine; throws CancelledError when the callback says stop.
  void progress(double fraction, std::string_view message) const {
    report_progress(progress_, fraction, message, name());
  }

 private:
  ProgressFn progress_;
};

}  // namespace sigprop
