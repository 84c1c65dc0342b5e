#pragma once
/// @file Checks of the command line before any work (docs/limits.md): no option given an
/// empty value, no two outputs on one path, no output on an input file.
#include <CLI/CLI.hpp>

namespace sigprop::cli {

/// Throws ConfigError when an option of the parsed subcommand `sub` that takes a value was
/// given an empty one (`--json ""`, `--out ""`), when two of its outputs (--json, --csv,
/// --density-csv, --out) name one file, or when an output names one of its inputs (the spec or
/// config argument, --corpus, --checkpoint), through links and relative paths alike.
void check_command_line(const CLI::App& sub);

}  // namespace sigprop::cli
