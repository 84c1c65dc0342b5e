// The progress line and Ctrl-C (see progress.hpp).
#include "cli/progress.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string_view>

#include <fmt/format.h>

namespace sigprop::cli {
namespace {

// Written by the signal handler, read by the engines' worker threads: lock-free atomics are both
// async-signal-safe and race-free.
std::atomic<bool> g_cancel{false};
std::atomic<bool> g_armed{false};  // a progress callback exists that will see g_cancel
static_assert(std::atomic<bool>::is_always_lock_free);
bool g_forced = false;

void on_cancel_sigint(int) {
  std::signal(SIGINT, SIG_DFL);  // async-signal-safe; the second Ctrl-C is not caught
  if (!g_armed) {
    std::raise(SIGINT);  // nothing checks the flag (a command without a callback): quit as before
    return;
  }
  g_cancel = true;
}

}  // namespace

void cancel_on_sigint() {
  std::signal(SIGINT, on_cancel_sigint);
}

void force_progress(bool on) {
  g_forced = on;
}

bool show_progress() {
  return g_forced || ::isatty(STDERR_FILENO) != 0;
}

ProgressFn progress_line(std::string what, bool show) {
  g_armed = true;
  const auto start = std::chrono::steady_clock::now();
  // On a terminal the line waits 0.3 s, so that millisecond runs print nothing; --progress draws at once.
  const double delay = g_forced ? 0.0 : 0.3;
  return [what = std::move(what), show, start, delay, shown = -1, drawn = false](double fraction,
                                                                                 std::string_view message) mutable {
    if (g_cancel) return false;
    if (!show) return true;
    const int pct = static_cast<int>(fraction * 100.0);
    if (pct == shown) return true;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (secs < delay && !drawn) return true;
    shown = pct;
    drawn = true;
    const double left = fraction > 0 ? secs * (1.0 - fraction) / fraction : 0.0;
    fmt::print(stderr, "\r{}: {:3d}% {}, {:.1f} s elapsed, ~{:.1f} s left   {}", what, pct, message, secs, left,
               pct >= 100 ? "\n" : "");
    std::fflush(stderr);
    return true;
  };
}

}  // namespace sigprop::cli
