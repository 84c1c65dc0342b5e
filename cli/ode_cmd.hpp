#pragma once
/// @file `sigprop ode`: depth-continuum ODE, token-clustering ODE and shaped-network SDE
/// (theory/continuum.hpp, theory/clustering.hpp, theory/shaped_sde.hpp; docs/ode.md).
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "theory/clustering.hpp"
#include "theory/continuum.hpp"
#include "theory/shaped_sde.hpp"

namespace sigprop::cli {

struct OdeArgs {
  std::string spec_path;
  std::vector<std::string> sets;
  std::string kind = "continuum";  ///< continuum | clustering | shaped-sde
  double abs_tol = 1e-10, rel_tol = 1e-10;
  std::int64_t max_evals = theory::kDefaultMaxEvals;  ///< --max-evals (theory/ode_limits.hpp)
  theory::ContinuumSettings continuum;
  theory::ClusteringSettings clustering;
  std::string variant = "sa";
  theory::ShapedSettings shaped;
  std::string model = "mlp";
  std::string json_out, csv_out;
  int max_rows = 40;
  bool quiet = false;
};

/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_ode_command(CLI::App& app, OdeArgs& args);
/// Runs it; throws ConfigError for bad input (exit 2 in main) like the other subcommands.
int run_ode(OdeArgs args);

}  // namespace sigprop::cli
