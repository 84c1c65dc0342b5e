#pragma once
/// @file `sigprop report`: a sweep of engines over spec keys, turned into figures, tables,
/// index.html and report.md (reports/). Cells are shared among MPI ranks under mpirun.
#include <string>

#include <CLI/CLI.hpp>

namespace sigprop::cli {

struct ReportArgs {
  std::string config_path;  ///< empty = the built-in default
  std::string out = "out/report";
  int jobs = 0;             ///< cells in parallel per process; 0 = all cores (1 per rank under MPI)
  std::string gnuplot;      ///< gnuplot program; empty = $SIGPROP_GNUPLOT or "gnuplot"
  bool no_figures = false;
  bool print_default = false;
  bool quiet = false;
  bool snapshot = false;    ///< render what is done so far into <out>/snapshot/, run nothing
};

/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_report_command(CLI::App& app, ReportArgs& args);
/// Runs it. ConfigError (exit 2) for a bad config before any work starts; returns 130
/// when interrupted (finished cells are kept; the same command resumes).
int run_report(const ReportArgs& args, int argc, char** argv);

}  // namespace sigprop::cli
