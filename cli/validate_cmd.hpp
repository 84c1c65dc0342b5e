#pragma once
/// @file `sigprop validate`: the MODEL.md §2 metrics of a checkpoint on real text, against the
/// theory, the Monte Carlo and an ensemble of freshly initialised models of the same
/// architecture (validate/measure.hpp, docs/validate.md).
#include <string>

#include <CLI/CLI.hpp>

#include "validate/measure.hpp"

namespace sigprop::cli {

struct ValidateArgs {
  std::string checkpoint, corpus;
  validate::ValidateSettings settings;
  bool no_theory = false;
  std::string precision = "float";
  std::string json_out, csv_out;
  bool table = false, quiet = false;
};

/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_validate_command(CLI::App& app, ValidateArgs& args);
/// Runs it. Bad input (a missing or unreadable checkpoint or corpus, bad options) throws
/// ConfigError naming the file or option (exit status 2 in main); failing to write an
/// output throws IoError.
int run_validate(const ValidateArgs& args);

}  // namespace sigprop::cli
