#pragma once
/// @file `sigprop spectrum`: singular-value spectra of the input-output Jacobian, predicted by
/// free probability (--engine theory) or measured by finite-width Monte Carlo (--engine simulate).
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "sim/jacobian.hpp"
#include "theory/spectrum.hpp"

namespace sigprop::cli {

struct SpectrumArgs {
  std::string spec_path;
  std::vector<std::string> sets;
  std::string engine = "theory";  ///< "theory" | "simulate"
  int width = 0;                  ///< > 0 overrides stack.width
  std::string grid;               ///< "lo:hi:n"; empty = a default from the theory moments
  sim::JacobianSettings mc;
  theory::SpectrumSettings th;
  std::string json_out, csv_out, density_csv_out;
  int max_rows = 40;
  bool quiet = false;
};

/// Registers the subcommand and its options (bound to args) on app.
CLI::App* add_spectrum_command(CLI::App& app, SpectrumArgs& args);
/// Runs it. Throws ConfigError for bad input (exit status 2 in main) and IoError.
int run_spectrum(const SpectrumArgs& args);

/// A density grid: n evenly spaced points from lo to hi.
struct Grid {
  double lo = 0, hi = 0;
  int n = 0;
};
/// Parses "lo:hi:n" (n in [2, 10^7], finite lo < hi); ConfigError naming `option`.
Grid parse_grid(const std::string& text, const std::string& option);

/// The density table of a spectrum profile as CSV: '#' lines (engine, version, settings, spec), then
/// "x,density[,density_se]"; atom0 in a '#' line. Throws ConfigError when the profile has no density.
std::string density_csv(const Profile& p);

}  // namespace sigprop::cli
