#pragma once
/// @file `sigprop study`: the depth study (validate/depth_study.hpp, docs/study.md): models of
/// several depths trained on one corpus, then loss against depth, drop-one-layer ablations
/// against measured and predicted ang_dist / update_ratio, trained-vs-initial metrics, several
/// seeds and architectures, every cause of diminishing returns per depth and the knee.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "validate/depth_study.hpp"

namespace sigprop::cli {

struct StudyArgs {
  std::string spec_path;
  std::vector<std::string> sets;
  std::string corpus, out, depths = "1,2,4,8,16";
  std::string seeds;               ///< comma-separated; empty: --seed alone
  std::vector<std::string> archs;  ///< NAME or NAME:table.key=value,table.key=value
  validate::StudySettings settings;
  bool no_figures = false, quiet = false;
};

CLI::App* add_study_command(CLI::App& app, StudyArgs& args);
/// Throws ConfigError for bad input (exit 2 in main), IoError for files.
int run_study(StudyArgs args);

}  // namespace sigprop::cli
