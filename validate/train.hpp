#pragma once
/// @file The trainer of the byte-level language model (validate/model.hpp): corpus, batches,
/// AdamW exactly as torch.optim.AdamW, the llm.c learning-rate schedule, global-norm
/// clipping, validation, checkpoints and resume. docs/train.md describes it; the contract
/// (and the PyTorch oracle the [golden] tests compare with) is tools/train_golden.py.
///
/// Step s = 0 .. steps-1 (train_step):
///   lr_s   = lr (s+1)/warmup (s < warmup), else min_lr + (1 + cos(pi p))(lr - min_lr)/2,
///            p = (s - warmup) / max(1, steps - warmup)
///   loss_s = mean cross-entropy of batch s with the current parameters (before the update)
///   g      = its gradient; norm_s = ||g|| (global, before clipping);
///            g *= max_norm/(norm_s + 1e-6) when that is < 1 (torch.nn.utils.clip_grad_norm_)
///   AdamW (t = s+1): p *= 1 - lr_s wd (wd only for matrices); m += (1-b1)(g - m);
///            v = b2 v + (1-b2) g^2; p -= lr_s/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)
///
/// Batch s is B windows of T+1 bytes of the training split at offsets drawn from Philox
/// keyed by (seed, step s) only, so a resumed run sees the same batches as an uninterrupted one.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/progress.hpp"
#include "validate/model.hpp"

namespace sigprop::validate {

/// Every byte of a corpus file. @throws IoError "corpus <path>: ..." if it is a directory or
/// cannot be opened or read.
/// Largest corpus read (1 GiB; docs/limits.md): the trainer and the validator hold it whole.
inline constexpr std::uint64_t kMaxCorpusBytes = std::uint64_t{1} << 30;
std::vector<std::uint8_t> read_corpus_bytes(const std::filesystem::path& path);

/// A byte corpus (tokens are bytes, vocabulary 256): the training split is bytes
/// [0, train_end), the validation split [train_end, size).
struct Corpus {
  std::string path;
  std::vector<std::uint8_t> bytes;
  std::size_t train_end = 0;
  std::string hash;  ///< FNV-1a 64 of the bytes, 16 hex digits

  /// Reads `path` as bytes; the last floor(size * val_fraction) bytes are the validation split.
  /// @throws IoError naming the file if it cannot be read; ConfigError naming the file when a
  ///         split is shorter than one window of context + 1 bytes.
  static Corpus load(const std::filesystem::path& path, double val_fraction, int context);
  /// {"path", "bytes", "fnv1a64"}
  [[nodiscard]] nlohmann::json to_json() const;
};

/// The trainer's settings (the command line's options carry the same names: --min-lr for min_lr).
struct TrainSettings {
  int steps = 1000;
  int batch = 16;               ///< B sequences per step
  double lr = 1e-3;             ///< peak learning rate
  double min_lr = 1e-4;         ///< end of the cosine decay
  int warmup = -1;              ///< linear warm-up steps; -1: steps / 10 (resolved by resolve())
  double weight_decay = 0.1;    ///< decoupled, on matrices (2-dim tensors) only
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double max_norm = 1.0;        ///< global gradient-norm clip; 0: no clipping
  double val_fraction = 0.1;    ///< last fraction of the corpus held out
  int val_every = 50;           ///< validation loss every this many steps (and at the end)
  int val_batches = 8;          ///< fixed validation batches (of `batch` sequences each)
  int checkpoint_every = 100;   ///< ckpt_step{N}.safetensors every this many steps; 0: init and final only
  std::uint64_t seed = 0;       ///< model initialisation and batch draws
  int threads = 1;              ///< workers (results do not depend on it)
  std::string precision = "float";  ///< float | double

  /// Throws ConfigError naming the setting (as "<setting> = value") of the first bad value.
  void validate() const;
  /// A copy with warmup = -1 replaced by steps / 10.
  [[nodiscard]] TrainSettings resolved() const;
  /// Every setting (threads included).
  [[nodiscard]] nlohmann::json to_json() const;
  /// Settings that may change when a run is resumed (they do not change the trajectory).
  static bool resumable_change(const std::string& key);
};

/// The model of `sigprop train`: the blocks of `spec`, vocabulary 256, learned positions,
/// a final norm for norm = pre or lns, untied unembedding.
ModelConfig train_model_config(const StackSpec& spec);

/// lr_s of the schedule (file comment).
double lr_at(const TrainSettings& s, int step);

/// Uniform integer in [0, n) number i of Philox stream (seed, stream): the top 64 bits of
/// u * n for the 64-bit u = r[1] << 32 | r[0] of Philox4x32-10 block i (key = seed,
/// counter = (i lo, i hi, stream lo, stream hi)); bias below n / 2^64.
std::uint64_t uniform_index(std::uint64_t seed, std::uint64_t stream, std::uint64_t i, std::uint64_t n);

/// Training batch of step `step`: B windows of T+1 bytes of the training split.
Batch train_batch(const Corpus& c, int B, int T, std::uint64_t seed, std::int64_t step);
/// Validation batch j (0 .. val_batches-1) of the validation split.
Batch val_batch(const Corpus& c, int B, int T, std::uint64_t seed, int j);

/// AdamW's moments, of the model's shapes.
template <class Real>
struct AdamState {
  Model<Real> m, v;
  static AdamState zeros(const Model<Real>& model) { return {model.zeros_like(), model.zeros_like()}; }
};

struct StepResult {
  double lr = 0, loss = 0, grad_norm = 0;
  bool clipped = false;
};

/// One training step s on `batch` (file comment); updates model and state.
template <class Real>
StepResult train_step(Model<Real>& model, AdamState<Real>& state, const Batch& batch, const TrainSettings& s,
                      int step, int threads);

/// Mean loss over the batches.
template <class Real>
double eval_loss(const Model<Real>& model, const std::vector<Batch>& batches, int threads);

/// What the trainer reports as it goes (for the progress line).
struct TrainProgress {
  int step = 0, steps = 0;                ///< steps done so far, of steps
  double train_loss = 0;                  ///< loss of the last step's batch
  std::optional<double> val_loss;         ///< set when validation ran at this point
  double tokens_per_s = 0, eta_s = 0, seconds = 0;
};

struct TrainOutcome {
  int start_step = 0;  ///< > 0 when resumed
  int steps = 0;
  std::vector<double> train_losses;          ///< per step run by this call (start_step .. steps-1)
  std::optional<double> first_val, last_val;  ///< validation loss at start_step and at the end
  double seconds = 0;                         ///< wall time of this call
  double tokens_per_s = 0;
  /// What a resume could not restore (e.g. loss.csv missing or damaged: rows rebuilt from the
  /// checkpoints' metadata, the rest named as lost). Empty on a clean run.
  std::vector<std::string> warnings;
};

/// Trains (or resumes, see docs/train.md) into out_dir: loss.csv, init.safetensors,
/// ckpt_step{N}.safetensors, final.safetensors, optim.safetensors.
/// @param progress the step-by-step details (for a progress line)
/// @param cancel called after every step with the fraction of steps done; returning false throws
///        CancelledError ("train") at that step boundary. Every file is written atomically, so the
///        folder then holds what a kill at that moment would leave: its checkpoints, and running
///        the same command again resumes from the last one.
/// @throws ConfigError for bad settings or an out_dir holding a run with other settings;
///         IoError for files that cannot be read or written.
TrainOutcome train(const ModelConfig& cfg, const TrainSettings& settings, const std::filesystem::path& corpus,
                   const std::filesystem::path& out_dir,
                   const std::function<void(const TrainProgress&)>& progress = {}, const ProgressFn& cancel = {});

}  // namespace sigprop::validate
