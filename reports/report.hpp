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
  /// A paragraph put at the top of index.html and report.md ("" for none): a snapshot's
  /// "what is done so far".
  std::string notice;
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

/// What is done so far of a report whose run may still be going (`sigprop report --snapshot`,
/// docs/report.md "Snapshots"): the complete cells and their jobs, renumbered, ready for
/// render_report.
struct Snapshot {
  /// The cells whose every first-pass job is done, in their order, `index` renumbered 0..n-1
  /// (labels and slugs kept: file names and the report's names are the run's).
  std::vector<Cell> cells;
  /// Their done jobs, `cell` renumbered; for an atlas whose first pass is complete, also the
  /// refinement jobs done: a theory refinement, and per configuration and width the doubling
  /// steps done without a gap from the first (a later step waits for the earlier ones).
  std::vector<Job> jobs;
  int cells_total = 0;
  int jobs_total = 0;      ///< the first pass, plus the refinement where it is planned
  int jobs_done = 0;       ///< of those, done in out/cells (also those not usable yet)
  int jobs_used = 0;       ///< of those, in `jobs`
  bool refinement_planned = false;  ///< an atlas with refinement whose first pass is complete
  std::string notice;      ///< the paragraph for RenderOptions::notice
};
/// Reads out/cells (never writes; safe while ranks are running the jobs). ConfigError naming the
/// folder when no cell is complete yet.
Snapshot snapshot(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                  const std::filesystem::path& out);

}  // namespace sigprop::reports
