#pragma once
/// @file The depth study of issue 5 (`sigprop study`): language models of several depths,
/// trained on the same text with the same settings, then
///   - validation loss against depth, with the diminishing-returns fit a + b L^(-c);
///   - per layer, the drop-one-layer loss increase of the trained model against its measured
///     ang_dist and update_ratio and against the theory's prediction for the architecture
///     (Spearman rank correlations, per depth and pooled);
///   - the change of every metric between the initial and the trained model.
/// Every model trains through validate/train.hpp (resumable: a rerun continues where it
/// stopped) and is measured through validate/measure.hpp on the validation split, so the
/// study's numbers are the ones `sigprop train` and `sigprop validate` give. Output: study.json,
/// depth.csv, layers.csv, figures/ (gnuplot, via reports/figures.hpp), report.md, index.html.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/spec.hpp"
#include "validate/train.hpp"

namespace sigprop::validate {

struct StudySettings {
  std::vector<int> depths{1, 2, 4, 8, 16};
  TrainSettings train;           ///< the same for every depth
  long long eval_tokens = 16384;  ///< tokens of the validation split measured per model
  std::string gnuplot = "gnuplot";  ///< empty: no figures drawn (data and scripts still written)

  /// ConfigError naming the setting (depths, eval_tokens) or the train setting.
  void validate() const;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Where the study reports its progress: a line of text per stage, and the trainer's progress.
struct StudyProgress {
  std::function<void(const std::string&)> stage;
  std::function<void(int depth, const TrainProgress&)> train;
};

struct StudyOutcome {
  std::filesystem::path index_html, report_md, json;
  std::vector<std::string> figures_missing;
  std::string gnuplot_problem;
};

/// Runs (or resumes) the study into out_dir (runs/L<depth>/ holds each training run).
/// @throws ConfigError for bad settings; IoError for files that cannot be read or written.
StudyOutcome run_depth_study(const StackSpec& base, const StudySettings& settings,
                             const std::filesystem::path& corpus, const std::filesystem::path& out_dir,
                             const StudyProgress& progress = {});

}  // namespace sigprop::validate
