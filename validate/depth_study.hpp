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
/// depth.csv, layers.csv, and the results as a DepthStudy; its page (figures/, report.md,
/// index.html) is drawn by reports/depth_study_page.hpp.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/profile.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"
#include "core/stats.hpp"
#include "validate/study.hpp"
#include "validate/train.hpp"

namespace sigprop::validate {

struct StudySettings {
  std::vector<int> depths{1, 2, 4, 8, 16};
  TrainSettings train;           ///< the same for every depth
  long long eval_tokens = 16384;  ///< tokens of the validation split measured per model

  /// ConfigError naming the setting (depths, eval_tokens) or the train setting.
  void validate() const;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Where the study reports its progress: a line of text per stage, the trainer's progress, and
/// the fraction done with cancellation.
struct StudyProgress {
  std::function<void(const std::string&)> stage;
  std::function<void(int depth, const TrainProgress&)> train;
  /// Fraction of the study done: depth k of n has [k/n, (k+1)/n), its training steps the first
  /// 80 % of that, its measurement the rest. Called per training step, per measurement stage
  /// and between depths; returning false throws CancelledError at the next step boundary or
  /// stage. What is finished stays: every depth trained so far keeps its run in runs/L<depth>/
  /// (the one in training its last checkpoint), nothing else is written, and the same call
  /// again resumes (finished runs are not trained again).
  ProgressFn fraction;
};

/// One depth of the study: its model trained, then measured on the validation sequences.
struct DepthResult {
  int depth = 0;
  std::size_t params = 0;
  MeanSe val, val_init;  ///< mean loss per token over the validation sequences
  /// Previous depth's validation loss minus this one's, with the standard error of the
  /// paired per-sequence differences; NaN for the first depth.
  MeanSe gain;
  std::vector<double> seq_loss;  ///< each validation sequence's loss (the same sequences at every depth)
  double seconds = NAN;          ///< training time from the run's loss.csv
  Profile trained, initial;
  std::optional<Profile> theory;  ///< the theory for the architecture, fed the trained X_0's q and rho
  Ablation ablation;
  std::vector<std::string> notes;
};

/// Spearman correlation of the drop-one-layer loss increase against one per-layer series.
struct StudyCorrelation {
  int depth = 0;        ///< the model's depth; 0 when pooled over every model of depth >= 2
  std::string against;  ///< "ang_dist (measured)", "update_ratio (theory)", ...
  RankCorrelation spearman;
};

/// What the study found, as written to study.json: what reports/depth_study_page.hpp draws.
struct DepthStudy {
  std::filesystem::path folder;          ///< out_dir: study.json, depth.csv, layers.csv, runs/
  StackSpec base;                        ///< the base spec (stack.depth replaced per depth)
  TrainSettings train;                   ///< resolved, the same for every depth
  std::string corpus_path, corpus_hash;  ///< corpus file and its FNV-1a 64
  std::size_t corpus_bytes = 0;
  int sequences = 0;  ///< validation sequences measured per model
  int tokens_per_sequence = 0;
  std::vector<DepthResult> results;         ///< one per depth, increasing
  std::optional<PowerLawFit> fit;           ///< loss against depth, with 3 depths or more
  std::vector<StudyCorrelation> per_depth;  ///< for each depth >= 3 and series (3 finite pairs or more)
  std::vector<StudyCorrelation> pooled;     ///< for each series (3 finite pairs or more)
};

/// Runs (or resumes) the study into out_dir (runs/L<depth>/ holds each training run) and
/// writes study.json, depth.csv and layers.csv there (atomically).
/// @throws ConfigError for bad settings; IoError for files that cannot be read or written.
DepthStudy run_depth_study(const StackSpec& base, const StudySettings& settings, const std::filesystem::path& corpus,
                           const std::filesystem::path& out_dir, const StudyProgress& progress = {});

}  // namespace sigprop::validate
