#pragma once
/// @file The depth study's page (`sigprop study`, docs/study.md): from the results of
/// validate::run_depth_study, the figures (figures/, gnuplot via reports/figures.hpp),
/// report.md and a self-contained index.html, whose readings are generated from the numbers.
/// The study's data files (study.json, depth.csv, layers.csv) are validate's; the page links them.
#include <filesystem>
#include <string>
#include <vector>

#include "validate/depth_study.hpp"

namespace sigprop::reports {

struct StudyPageOptions {
  /// gnuplot program (a name on PATH or a path); empty = do not draw (the figures' data and
  /// scripts are still written).
  std::string gnuplot = "gnuplot";
};

struct StudyPage {
  std::filesystem::path index_html, report_md;
  std::vector<std::string> figures_drawn;    ///< stems under figures/ with .svg and .png
  std::vector<std::string> figures_missing;  ///< stems whose drawing failed or was impossible
  std::string gnuplot_problem;               ///< why figures are missing ("" when none)
};

/// Writes figures/, report.md and index.html into study.folder (each file atomically); a
/// rerun on the same results writes the same bytes.
/// @throws ConfigError when study has no depth; IoError for files that cannot be written.
StudyPage render_depth_study_page(const validate::DepthStudy& study, const StudyPageOptions& opt = {});

}  // namespace sigprop::reports
