#pragma once
/// @file What the command line shares with the facade beyond include/sigprop/api.hpp (not
/// installed): validate_checkpoint and report with the internal results and the names the
/// command line gives its options in errors, so that `sigprop validate` and `sigprop report` are
/// clients of the same code as the library calls.
#include <atomic>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/profile.hpp"
#include "reports/config.hpp"
#include "reports/sweep.hpp"
#include "sigprop/api.hpp"
#include "validate/measure.hpp"

namespace sigprop::api::detail {

/// The facade's Profile around an internal one (api.cpp).
Profile wrap_profile(sigprop::Profile p);

/// How errors of spectrum name its settings: fields in the library, flags (or the engine's own
/// words, which main turns into flags) in the CLI.
struct SpectrumNames {
  std::string engine = "SpectrumSettings.engine", map = "SpectrumSettings.map",
              jacobian_method = "SpectrumSettings.jacobian_method", panels = "SpectrumSettings.panels",
              threads = "SpectrumSettings.threads", grid_lo = "SpectrumSettings.grid_lo";
};

/// api::spectrum with the internal profile (the CLI formats its extras).
sigprop::Profile run_spectrum(const StackSpec& spec, const SpectrumSettings& settings, const ProgressFn& progress,
                              const SpectrumNames& names);

/// How errors name the inputs of validate: settings fields in the library, flags in the CLI.
struct ValidateNames {
  std::string checkpoint = "ValidateSettings.checkpoint", corpus = "ValidateSettings.corpus",
              tokens = "ValidateSettings.tokens", seq_len = "ValidateSettings.seq_len",
              ensemble = "ValidateSettings.ensemble", samples = "ValidateSettings.samples",
              threads = "ValidateSettings.threads", precision = "ValidateSettings.precision";
};

/// validate_checkpoint with the internal result: checks the settings (naming them as `names`
/// says), then the corpus file, loads the model and runs validate::validate_model.
validate::Validation run_validation(const ValidateSettings& settings, const ProgressFn& progress,
                                    const ValidateNames& names);

/// What the command line adds to a report run: MPI ranks, Ctrl-C, its progress lines.
struct ReportHooks {
  int rank = 0, ranks = 1;  ///< this process takes every ranks-th pending job
  /// Largest value over ranks (nullptr: one process). A collective: every rank calls it alike.
  std::function<int(int)> max_over_ranks;
  /// Set from a signal handler: no new job starts, running ones finish and are kept; then
  /// CancelledError (as a cancel through the progress callback).
  const std::atomic<bool>* stop = nullptr;
  /// Once the plan is made, before the lock and any work: cells, jobs, jobs run in parallel.
  std::function<void(std::size_t, std::size_t, int)> on_start;
  /// When every rank knows that rank 0 holds the output folder's lock, before any job runs.
  std::function<void()> on_locked;
  /// After each finished job (reports::RunOptions::on_done).
  std::function<void(const reports::Job&, double, int, int, double)> on_done;
  /// An atlas with refinement, after its first pass: the number of refinement jobs (done or not).
  std::function<void(std::size_t)> on_refine;
  /// Build facts for versions.json; empty = the library's (no MPI).
  nlohmann::json build;
  std::string out_name = "ReportSettings.out";  ///< how errors about the output folder name it
};

/// The facade's report on a parsed config. Every rank runs its share of the jobs; only rank 0
/// locks the folder and renders (other ranks return a ReportResult without pages). Errors of
/// another rank (the lock, a failed job) throw RankFailed on this one.
ReportResult run_report(const reports::ReportConfig& cfg, const ReportSettings& settings, const ProgressFn& progress,
                        const ReportHooks& hooks);

/// Another rank failed (its error is its own to print); this one stopped.
class RankFailed : public Error {
 public:
  RankFailed(const std::string& what, bool at_lock) : Error(what), at_lock(at_lock) {}
  bool at_lock;  ///< rank 0 could not lock the output folder (nothing ran), else a job failed
};

}  // namespace sigprop::api::detail
