#pragma once
/// @file Progress and cancellation: one callback type shared by every engine (theory,
/// simulate, spectrum, ode, validate/measure, train, report), the CLI's progress line and
/// the Python package's Ctrl-C.
#include <functional>
#include <string>
#include <string_view>

#include "sigprop/error.hpp"

namespace sigprop {

/// Called by an engine as work finishes. `fraction` is in [0, 1] and never decreases within
/// one run; `message` is a short description of the stage ("layer 12/24", "sample 40/64").
/// Return true to go on, false to cancel: the engine stops at its next check, throws
/// CancelledError and writes no output. Called on the calling thread or on one worker thread
/// at a time (never concurrently), so it needs no locking of its own; it must not throw.
using ProgressFn = std::function<bool(double fraction, std::string_view message)>;

/// Reports progress through `fn` when it is set; throws CancelledError naming `what` (the
/// engine, e.g. "theory") when the callback asks to stop.
inline void report_progress(const ProgressFn& fn, double fraction, std::string_view message,
                            std::string_view what) {
  if (fn && !fn(fraction, message)) throw CancelledError(std::string(what) + ": cancelled by the progress callback");
}

}  // namespace sigprop
