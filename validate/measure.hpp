#pragma once
/// @file `sigprop validate`: the MODEL.md §2 metrics of a language model (validate/model.hpp)
/// fed real text, and what the theory, the Monte Carlo and an ensemble of freshly initialised
/// models of the same architecture predict for them (docs/validate.md).
///
/// Measurement. The corpus (bytes = tokens of the byte-level model) is cut into n sequences of
/// T tokens, at the fixed offsets o_i = i * floor((B - 1) / n), i = 0..n-1 (B the corpus size):
/// evenly spread over the corpus and non-overlapping (the stride is >= T). Sequence i is
/// inputs bytes[o_i .. o_i + T - 1], targets bytes[o_i + 1 .. o_i + T]. For each sequence the
/// model runs forward (X_0 = the embedding output .. X_L) and backward from loss = the
/// sequence's mean cross-entropy (Delta_l = dloss/dX_l); the metrics of X_0..X_L are
/// sim::stream_metrics (the Monte Carlo's code), grad_var_l = ||Delta_l||^2 / (T d).
/// grad_var_rel_l = grad_var_l / grad_var_L per sequence: the backward pass is linear in
/// Delta_L, so this ratio is what the theory and the Monte Carlo (Delta_L iid N(0, 1)) predict
/// for a loss gradient of another scale. The profile reports, per layer, the mean over
/// sequences and its standard error (`<name>_se`), columns metric_names(), grad_var_rel, then
/// the `_se` columns in the same order.
///
/// Predictions (each optional; a note says why one is missing):
///  - theory: the theory engine on the model's StackSpec with tokens = T and input q0, rho0 set
///    to the measured q and rho of X_0 (rho clipped to [0, 1]);
///  - simulate: the Monte Carlo engine (cpu backend) on the same spec at the model's width;
///  - init_ensemble: S models Model::initial(cfg, seed + k), k = 1..S, measured on the same
///    sequences; mean over models of each model's sequence mean, standard error sd / sqrt(S).
///    This is the Monte Carlo over weights with the real input (and the real loss gradient).
/// Theory and simulate implement MODEL.md §1 only: for models with architecture extensions
/// (sim::BlockExt, imported families) they are skipped, and so is the ensemble (Model::initial
/// refuses them); a note says so and the measured profile stands alone.
///
/// Agreement, per prediction, metric and layer: diff = measured - predicted,
/// z = diff / sqrt(se_meas^2 + se_pred^2) (is the model's mean the ensemble mean?) and
/// z_pi = diff / sqrt(sd_pred^2 + se_pred^2 + se_meas^2), the prediction interval of one draw
/// of the ensemble (sd_pred = se_pred sqrt(S), the spread of one model about the mean).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/engine.hpp"
#include "core/profile.hpp"
#include "theory/engine.hpp"
#include "validate/model.hpp"

namespace sigprop::validate {

/// Columns of a measured profile's values: metric_names() order, then grad_var_rel.
inline constexpr int kGradRel = sim::kNumCols;
inline constexpr int kMeasuredCols = sim::kNumCols + 1;
/// metric_names() and "grad_var_rel".
const std::vector<std::string>& measured_metric_names();

/// n sequences of T tokens cut from a corpus (see the file comment for the offsets).
struct Sequences {
  int T = 0;
  std::vector<std::size_t> offsets;
  std::vector<std::vector<int>> inputs, targets;
  [[nodiscard]] int count() const { return static_cast<int>(inputs.size()); }
};

/// Cuts `tokens` / T sequences of T tokens (bytes as token ids) from corpus, at least 2.
/// @throws ConfigError naming `corpus_name` when the corpus is shorter than one sequence of
///   T + 1 bytes or has no room for the sequences asked for, and tokens when it asks for
///   fewer than 2 sequences.
Sequences cut_sequences(std::span<const unsigned char> corpus, int T, long long tokens,
                        const std::string& corpus_name);

/// The metrics of one model on every sequence: per[i][l][col] (kMeasuredCols columns, NaN
/// where undefined), and the sequence's mean cross-entropy in loss[i]. Sequences run on
/// `threads` workers (0 = all cores); every number is independent of the thread count.
/// progress (optional) is called once per finished sequence, serialized, with fraction
/// done / n and `engine` as the name in CancelledError; returning false cancels.
struct PerSequence {
  std::vector<std::vector<std::vector<double>>> values;
  std::vector<double> loss;
};
template <class Real>
PerSequence measure_sequences(const Model<Real>& m, const Sequences& seqs, int threads = 1,
                              const ProgressFn& progress = {}, std::string_view engine = "measured");

/// Mean and standard error over the first index of per[i][l][col] into a profile with
/// columns measured_metric_names() and their `_se`; a metric that is non-finite for some
/// sequence is null at that layer and named in the warnings.
Profile reduce_profile(const std::vector<std::vector<std::vector<double>>>& per, const StackSpec& spec,
                       const std::string& engine, const std::string& unit);

/// What MeasureEngine measures: the token batch and the names written into the settings.
struct MeasureSettings {
  long long tokens = 8192;  ///< tokens measured in all (sequences = tokens / T)
  int seq_len = 0;          ///< T (0 = the model's context stack.tokens)
  int threads = 1;          ///< worker threads (0 = all cores); never changes a number
  std::string checkpoint;   ///< names written into the settings
  std::string corpus;
};

/// The trained-model measurement behind the Engine interface: a model and the token batch cut
/// from a corpus (see the file comment). run(spec) takes the model's architecture at T tokens
/// (spec(); input.q0 and input.rho0 are ignored: they are measured) and returns the measured
/// profile, engine "measured", whose input.q0 and input.rho0 are the measured q and rho of X_0
/// (rho clipped to [0, 1]). Progress: once per measured sequence. Not copyable or movable
/// (it may borrow its model); one run() at a time.
template <class Real>
class MeasureEngine final : public Engine {
 public:
  /// Borrows m, which must outlive the engine. @throws ConfigError naming seq_len, tokens or
  /// the corpus (too short for the sequences, or a byte outside the model's vocabulary).
  MeasureEngine(const Model<Real>& m, std::span<const unsigned char> corpus, MeasureSettings st);
  /// Owns m; otherwise as above.
  MeasureEngine(Model<Real>&& m, std::span<const unsigned char> corpus, MeasureSettings st);
  /// Loads a sigprop checkpoint or Hugging Face folder (load_model) and a corpus file
  /// (read_corpus_bytes); st.checkpoint and st.corpus default to the paths.
  /// @throws ConfigError naming `checkpoint_key` or `corpus_key` (with the path) when a file is
  ///   missing or unreadable, and as the constructors.
  static std::unique_ptr<MeasureEngine> from_files(const std::string& checkpoint, const std::string& corpus,
                                                   MeasureSettings st, const std::string& checkpoint_key = "checkpoint",
                                                   const std::string& corpus_key = "corpus");
  MeasureEngine(const MeasureEngine&) = delete;
  MeasureEngine& operator=(const MeasureEngine&) = delete;

  [[nodiscard]] std::string name() const override { return "measured"; }
  /// @throws ConfigError naming the first key (e.g. stack.width) where spec differs from spec().
  Profile run(const StackSpec& spec) override;

  /// The model's architecture at T tokens: the spec run() accepts.
  [[nodiscard]] const StackSpec& spec() const { return spec_; }
  [[nodiscard]] const Model<Real>& model() const { return *model_; }
  [[nodiscard]] const Sequences& sequences() const { return seqs_; }
  [[nodiscard]] const MeasureSettings& settings() const { return st_; }
  [[nodiscard]] std::size_t corpus_bytes() const { return corpus_bytes_; }
  /// Each sequence's mean cross-entropy in the last run(), in offset order.
  [[nodiscard]] const std::vector<double>& sequence_loss() const { return loss_; }

 private:
  void init(std::span<const unsigned char> corpus);
  std::optional<Model<Real>> owned_;
  const Model<Real>* model_ = nullptr;
  MeasureSettings st_;
  StackSpec spec_;
  Sequences seqs_;
  std::size_t corpus_bytes_ = 0;
  std::vector<double> loss_;
};

struct ValidateSettings {
  long long tokens = 8192;   ///< tokens measured in all (sequences = tokens / T)
  int seq_len = 0;           ///< T (0 = the model's context stack.tokens)
  int ensemble = 32;         ///< S freshly initialised models (0 = no init ensemble)
  int samples = 64;          ///< Monte Carlo samples (0 = no simulate prediction)
  bool theory = true;        ///< run the theory engine
  uint64_t seed = 0;         ///< Monte Carlo seed; the ensemble uses seeds seed + 1 .. seed + S
  int threads = 1;           ///< worker threads (0 = all cores; 1 by default, not to oversubscribe a host's pool); never changes a number
  std::string checkpoint;    ///< names written into the settings
  std::string corpus;
  theory::TheorySettings theory_settings{};
};

struct Validation {
  nlohmann::json model;  ///< ModelConfig::to_json()
  Profile measured;
  std::optional<Profile> theory, simulate, init_ensemble;
  nlohmann::json agreement = nlohmann::json::array();  ///< one object per prediction, metric, layer
  nlohmann::json summary = nlohmann::json::array();    ///< per prediction and metric
  std::vector<std::string> notes;
  std::vector<double> sequence_loss;  ///< each measured sequence's mean cross-entropy, in offset order
  /// {"checkpoint", "model", "measured", "predicted": {...}, "agreement", "summary", "notes"}
  [[nodiscard]] nlohmann::json to_json(const std::string& checkpoint) const;
};

/// The whole of `sigprop validate` on a loaded model and corpus (see the file comment).
/// @throws ConfigError for bad settings or a corpus too short, naming the setting or file.
/// @param progress called as the stages finish (the measurement, then theory, simulate and the
///        init ensemble when they run, each an equal share of [0, 1]; simulate per sample, the
///        ensemble per model); returning false throws CancelledError. Never called concurrently.
template <class Real>
Validation validate_model(const Model<Real>& m, std::span<const unsigned char> corpus, const ValidateSettings& st,
                          const ProgressFn& progress = {});
/// The same on a MeasureEngine, which measures (its progress is the first stage's); st's tokens,
/// seq_len, checkpoint and corpus are not used (the engine's settings are).
template <class Real>
Validation validate_model(MeasureEngine<Real>& measure, const ValidateSettings& st, const ProgressFn& progress = {});

/// Fills v.agreement and v.summary from v.measured and the predictions present.
void compute_agreement(Validation& v);

/// The metrics compared against a prediction: every metric of measured_metric_names(), except
/// grad_var for theory and simulate (their Delta_L is iid N(0, 1), not the loss gradient: they
/// predict grad_var_rel).
std::vector<std::string> compared_metrics(const std::string& prediction);

}  // namespace sigprop::validate
