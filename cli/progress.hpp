#pragma once
/// @file The command line's side of progress and cancellation (core/progress.hpp): one
/// progress line on stderr, and Ctrl-C turned into the callback's "stop" so that the engine
/// throws CancelledError, main prints "cancelled" and exits 130 with no output written.
#include <string>

#include "core/progress.hpp"

namespace sigprop::cli {

/// Installs the SIGINT handler: after the first Ctrl-C every callback made by progress_line()
/// returns false; a second Ctrl-C ends the process at once (the default action), and so does the
/// first when no callback was made (commands that do not check).
void cancel_on_sigint();

/// --progress: draw the progress line even when stderr is not a terminal.
void force_progress(bool on);

/// True when stderr is a terminal or --progress was given.
[[nodiscard]] bool show_progress();

/// The progress callback of a command named `what`: returns false after Ctrl-C; when `show`,
/// draws "\r<what>: 42% <message>, 1.2 s elapsed, ~1.7 s left" on stderr, redrawn when the
/// whole percentage changes and ended with a newline at 100%; on a terminal only once the run
/// has taken 0.3 s (runs of a few milliseconds print nothing), with --progress from the start.
[[nodiscard]] ProgressFn progress_line(std::string what, bool show);

}  // namespace sigprop::cli
