#pragma once
/// @file `sigprop simulate`: the finite-width Monte Carlo engine from the command line.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "mc/engine.hpp"

namespace sigprop::cli {

struct SimulateArgs {
  std::string spec_path;
  std::vector<std::string> sets;
  sim::SimSettings settings;
  std::string json_out, csv_out;
  int max_rows = 40;
  bool quiet = false;
};

/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_simulate_command(CLI::App& app, SimulateArgs& args);
/// Runs it: resolves the spec, runs the engine, writes outputs, prints the table.
/// Throws ConfigError (bad spec, key or backend) and IoError like the other subcommands.
int run_simulate(const SimulateArgs& args);

}  // namespace sigprop::cli
