#pragma once
/// @file `sigprop train`: trains the byte-level language model (validate/train.hpp) on a
/// corpus file, with checkpoints, loss.csv and resume (docs/train.md).
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "validate/train.hpp"

namespace sigprop::cli {

struct TrainArgs {
  std::string spec_path;
  std::vector<std::string> sets;
  std::string corpus, out;
  validate::TrainSettings settings;
  bool quiet = false;
};

/// The trainer's options (--steps, --batch, --lr, ..., --precision) bound to s, shared by
/// `sigprop train` and `sigprop study`.
void add_train_settings_options(CLI::App* c, validate::TrainSettings& s);
/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_train_command(CLI::App& app, TrainArgs& args);
/// Runs it; throws ConfigError for bad input (exit 2 in main) and IoError like the other subcommands.
int run_train(TrainArgs args);

}  // namespace sigprop::cli
