#pragma once
/// @file Turns the finished jobs of a sweep into the report folder: tidy CSVs, figures
/// drawn by gnuplot (SVG and PNG, with the .gp script and .dat data kept beside them),
/// index.html (self-contained) and report.md, each reading generated from the numbers.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reports/config.hpp"
#include "reports/sweep.hpp"

namespace sigprop::reports {

struct RenderOptions {
  /// gnuplot program (a name on PATH or a path); empty = do not draw. When it cannot be
  /// run, the report keeps its data and scripts and says which figures were not drawn.
  std::string gnuplot = "gnuplot";
  /// Build facts written into versions.json and the report (sigprop version, compiler, MPI).
  nlohmann::json build = nlohmann::json::object();
};

struct RenderResult {
  std::filesystem::path index_html, report_md;
  std::vector<std::string> figures_drawn;    ///< stems under figures/ with .svg and .png
  std::vector<std::string> figures_missing;  ///< stems whose drawing failed or was impossible
  std::string gnuplot_problem;               ///< why figures are missing ("" when none)
};

/// Reads every job's profile from out/cells (they must all be done) and writes:
/// config.toml (resolved), versions.json, profiles.csv (row per job x layer), summary.csv
/// (row per job), figures/, index.html and report.md. Every write is atomic. The output
/// depends only on the config and the profiles, never on how the jobs were run.
RenderResult render_report(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                           const std::filesystem::path& out, const RenderOptions& opt);

}  // namespace sigprop::reports
