#pragma once
/// @file The depth study of issues 5 and 17 (`sigprop study`): language models of several
/// depths, of one or more architectures, each trained with one or more seeds on the same text
/// with the same settings, then
///   - validation loss against depth (mean over seeds), the gain of each step in depth with
///     the standard error of the seed-paired differences, the diminishing-returns fit
///     a + b L^(-c) and the knee (core/knee.hpp) per architecture;
///   - per layer, the drop-one-layer loss increase of the trained model against its measured
///     ang_dist and update_ratio and against the theory's prediction for the architecture
///     (Spearman rank correlations, per depth and pooled);
///   - the change of every metric between the initial and the trained model;
///   - every cause of diminishing returns measured per depth (DepthCauses): gradient
///     attenuation, saturation/redundancy, optimisation difficulty, overfitting, cost and
///     finite-width noise accumulation (docs/study.md defines each measure).
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

#include "core/knee.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"
#include "core/stats.hpp"
#include "validate/study.hpp"
#include "validate/train.hpp"

namespace sigprop::validate {

/// One architecture of the study: the base spec with these overrides.
struct StudyArch {
  std::string name;               ///< letters, digits, '_', '-', '.'; names runs/<name>/
  std::vector<std::string> sets;  ///< spec overrides "table.key=value" (as --set), applied in order
};

struct StudySettings {
  std::vector<int> depths{1, 2, 4, 8, 16};
  /// Training seeds: every depth of every architecture trains once per seed, and depths are
  /// compared seed by seed. Empty: {train.seed}.
  std::vector<std::uint64_t> seeds;
  /// Architectures compared; empty: the base spec alone, named "base".
  std::vector<StudyArch> archs;
  TrainSettings train;            ///< the same for every run (its seed replaced by each of seeds)
  long long eval_tokens = 16384;  ///< tokens of the validation split (and of the training split) measured per model
  int noise_samples = 32;         ///< Monte Carlo samples per architecture and depth for the noise measure; 0: none
  double knee_fraction = 0.25;    ///< KneeInput::fraction of the measured knee
  double spike_factor = 3.0;      ///< curve_stats: a spike exceeds this times the running median grad norm
  double last_fraction = 0.5;     ///< curve_stats: instability over this last fraction of the steps

  /// ConfigError naming the setting (depths, seeds, archs, eval_tokens, noise_samples, ...) or the train setting.
  void validate() const;
  [[nodiscard]] nlohmann::json to_json() const;
  /// The seeds the study trains (seeds, or {train.seed}).
  [[nodiscard]] std::vector<std::uint64_t> resolved_seeds() const;
  /// The architectures the study compares (archs, or {"base", {}}).
  [[nodiscard]] std::vector<StudyArch> resolved_archs() const;
  /// One architecture and one seed (no archs given): runs/L<depth>/, the layout of issue 5;
  /// otherwise runs/<arch>/L<depth>/s<seed>/.
  [[nodiscard]] bool legacy_layout() const { return archs.empty() && resolved_seeds().size() == 1; }
};

/// Where the study reports its progress: a line of text per stage, the trainer's progress, and
/// the fraction done with cancellation.
struct StudyProgress {
  std::function<void(const std::string&)> stage;
  std::function<void(int depth, const TrainProgress&)> train;
  /// Fraction of the study done: run k of n (architecture, depth, seed, in that nesting) has
  /// [k/n, (k+1)/n), its training steps the first 80 % of that, its measurement the rest.
  /// Called per training step, per measurement stage and between runs; returning false throws
  /// CancelledError at the next step boundary or stage. What is finished stays: every run
  /// trained so far keeps its folder under runs/ (the one in training its last checkpoint),
  /// nothing else is written, and the same call again resumes (finished runs are not trained
  /// again).
  ProgressFn fraction;
};

/// One trained model (architecture, depth, seed), measured on the validation sequences.
struct SeedRun {
  std::uint64_t seed = 0;
  std::filesystem::path dir;  ///< its training run
  MeanSe val, val_init;  ///< mean loss per token over the validation sequences
  std::vector<double> seq_loss;  ///< each validation sequence's loss (the same sequences in every run)
  double train_loss = NAN;       ///< mean loss over as many sequences of the training split
  double seconds = NAN;          ///< training time from the run's loss.csv
  Profile trained, initial;
  std::optional<Profile> theory;  ///< the theory for the architecture, fed the trained X_0's q and rho
  Ablation ablation;
  std::vector<double> update_cos;  ///< update_cosines() of the trained model, l = 1..L-1
  CurveStats curve;                ///< of the run's loss.csv
  std::vector<std::string> notes;
};

/// Every cause of diminishing returns, measured at one depth (means over the seeds; NaN where
/// undefined, e.g. the gain of the first depth). docs/study.md defines each.
struct DepthCauses {
  // gradient attenuation: grad_var_rel at l = 0 (the gradient reaching the first block)
  double grad_first_init = NAN, grad_first_trained = NAN;
  // saturation / redundancy
  double ang_dist_mean = NAN, ang_dist_init_mean = NAN;  ///< mean over blocks 1..L
  double drop_mean = NAN;        ///< mean drop-one-layer loss increase over blocks
  /// Mean increase of the last floor(L/2) blocks / of the first floor(L/2) (L >= 2; NaN when
  /// the first half's mean is <= 0)
  double drop_late_ratio = NAN;
  double update_cos_mean = NAN;  ///< mean cosine of consecutive blocks' updates (L >= 2)
  // optimisation difficulty
  double instability = NAN;  ///< CurveStats::instability
  double spike_rate = NAN;   ///< CurveStats::spike_rate
  double spikes = NAN;       ///< CurveStats::spikes
  // overfitting
  double train_loss = NAN;
  double gap = NAN;  ///< validation minus training-split loss
  // cost
  double flops = NAN;           ///< training_flops() of one run
  double gain_per_param = NAN;  ///< gain of this step in depth / parameters added
  double gain_per_flop = NAN;   ///< gain / training FLOPs added
  // finite-width noise (Monte Carlo at the study's width and context)
  int noise_samples = 0;
  double var_log_q = NAN;         ///< sample variance of log q_L
  double var_log_grad = NAN;      ///< sample variance of log grad_var_0
  double depth_over_width = NAN;  ///< L / d, the prediction's argument
};

/// One depth of one architecture: its runs (one per seed) and their summary.
struct DepthResult {
  int depth = 0;
  std::size_t params = 0;
  /// Mean over seeds of each run's mean loss; se: over seeds with 2 seeds or more, else over
  /// the sequences of the one run.
  MeanSe val, val_init;
  /// Previous depth's validation loss minus this one's: with 2 seeds or more the mean and
  /// standard error of the seed-paired differences (paired_gain), with one seed those of the
  /// paired per-sequence differences; NaN for the first depth.
  MeanSe gain;
  std::vector<double> seq_loss;  ///< the first seed's per-sequence losses
  double seconds = NAN;          ///< training time summed over the seeds
  /// The first seed's run (per-layer figures and tables).
  Profile trained, initial;
  std::optional<Profile> theory;
  Ablation ablation;
  std::vector<std::string> notes;
  std::vector<SeedRun> runs;  ///< one per seed, in the order of the seeds
  DepthCauses causes;
};

/// Spearman correlation of the drop-one-layer loss increase against one per-layer series.
struct StudyCorrelation {
  int depth = 0;        ///< the model's depth; 0 when pooled over every model of depth >= 2
  std::string against;  ///< "ang_dist (measured)", "update_ratio (theory)", ...
  RankCorrelation spearman;  ///< over every block of every seed's run
};

/// A predicted return-vs-depth curve drawn next to the measured loss (the theory's
/// depth-returns predictor: value = effective depth).
struct PredictedCurve {
  std::string source;  ///< what predicted it, e.g. "theory: effective depth"
  std::vector<double> depth, value;
  std::optional<double> knee_depth;
};

/// The study of one architecture.
struct ArchStudy {
  StudyArch arch;
  StackSpec spec;                           ///< base with arch.sets (stack.depth replaced per depth)
  std::vector<DepthResult> results;         ///< one per depth, increasing
  std::optional<PowerLawFit> fit;           ///< loss against depth, with 3 depths or more
  std::vector<StudyCorrelation> per_depth;  ///< for each depth >= 3 and series (3 finite pairs or more)
  std::vector<StudyCorrelation> pooled;     ///< for each series (3 finite pairs or more)
  std::optional<KneeResult> knee;           ///< find_knee on the mean losses, with 3 depths or more
  double noise_k_q = NAN, noise_k_grad = NAN;  ///< fit_through_origin of var_log_q, var_log_grad against L/d
  std::string noise_problem;  ///< why the Monte Carlo could not run this architecture ("" when it ran or was off)
  /// The theory's depth-returns predictor for this architecture at the largest depth
  /// (theory/depth_returns.hpp): effective depth on the grid 1, 2, 4, ..., L and its knee.
  std::optional<PredictedCurve> predicted;
  std::string predictor_problem;            ///< why the theory could not predict ("" when it did)
  std::optional<KneeResult> knee_per_layer;  ///< the measured knee per added layer (as the predicted one)
};

/// What the study found, as written to study.json: what reports/depth_study_page.hpp draws.
struct DepthStudy {
  std::filesystem::path folder;          ///< out_dir: study.json, depth.csv, layers.csv, runs/
  StackSpec base;                        ///< the base spec (stack.depth replaced per depth)
  StudySettings settings;                ///< with train resolved
  TrainSettings train;                   ///< resolved, the same for every run but its seed
  std::string corpus_path, corpus_hash;  ///< corpus file and its FNV-1a 64
  std::size_t corpus_bytes = 0;
  int sequences = 0;  ///< validation sequences measured per model
  int tokens_per_sequence = 0;
  std::vector<std::uint64_t> seeds;
  std::vector<ArchStudy> archs;  ///< in the order of the settings
};

/// Runs (or resumes) the study into out_dir (runs/ holds each training run, see
/// StudySettings::legacy_layout) and writes study.json, depth.csv and layers.csv there
/// (atomically).
/// @throws ConfigError for bad settings; IoError for files that cannot be read or written.
DepthStudy run_depth_study(const StackSpec& base, const StudySettings& settings, const std::filesystem::path& corpus,
                           const std::filesystem::path& out_dir, const StudyProgress& progress = {});

}  // namespace sigprop::validate
