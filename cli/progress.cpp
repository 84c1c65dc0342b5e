// The progress line and Ctrl-C (see progress.hpp).
#include "cli/progress.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string_view>

#include <fmt/format.h>

namespace sigprop::cli {
namespace {

volatile std::sig_atomic_t g_cancel = 0;
volatile std::sig_atomic_t g_armed = 0;  // a progress callback exists that will see g_cancel
bool g_forced = false;

void on_cancel_sigint(int) {
  std::signal(SIGINT, SIG_DFL);  // async-signal-safe; the second Ctrl-C is not caught
  if (g_armed == 0) {
    std::raise(SIGINT);  // nothing checks the flag (a command without a callback): quit as before
    return;
  }
  g_cancel = 1;
}

}  // namespace

void cancel_on_sigint() { std::signal(SIGINT, on_cancel_sigint); }

bool cancel_requested() { return g_cancel != 0; }

void force_progress(bool on) { g_forced = on; }

bool show_progress() { return g_forced || ::isatty(STDERR_FILENO) != 0; }

ProgressFn progress_line(std::string what, bool show) {
  g_armed = 1;
  const auto start = std::chrono::steady_clock::now();
  // On a terminal the line waits 0.3 s, so that millisecond runs print nothing; --progress draws at once.
  const double delay = g_forced ? 0.0 : 0.3;
  return [what = std::move(what), show, start, delay, shown = -1, drawn = false](
             double fraction, std::string_view message) mutable {
    if (g_cancel != 0) return false;
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
