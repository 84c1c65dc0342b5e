#pragma once
/// @file Sweeps: the grid of a ReportConfig expanded into cells (one resolved spec each)
/// and jobs (cell x engine), each identified by a hash of its resolved spec and engine
/// settings; running the jobs that are not yet done, in parallel, resumably.
#include <atomic>
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
#include "reports/config.hpp"

namespace sigprop::reports {

/// One point of the grid: a variant (or none) crossed with one value of every axis.
struct Cell {
  int index = 0;
  int variant = -1;             ///< index into ReportConfig::variants, -1 when there are none
  std::vector<int> axis_value;  ///< per axis, index into SweepAxis::values
  std::string label;            ///< "Pre-LN, stack.depth=12"
  std::string slug;             ///< file-name stem, unique per cell ("pre-ln_depth-12")
  StackSpec spec;               ///< base + variant + axis values, validated
};

/// The report's engines, in the order their jobs are made per cell ([engines.<to_string>]).
enum class EngineKind { Theory, Simulate, Ode, Sde, Clustering, Spectrum, SpectrumSimulate, Measure };
/// The [engines.*] table name: "theory", "simulate", "ode", "sde", "clustering", "spectrum", "spectrum_simulate",
/// "measure".
std::string to_string(EngineKind);
/// Every engine kind, in job order.
const std::vector<EngineKind>& all_engine_kinds();
/// Whether [engines.<kind>] is enabled in cfg.
bool engine_enabled(const ReportConfig& cfg, EngineKind kind);

/// One engine on one cell. Its hash covers everything that can change its numbers.
struct Job {
  int cell = 0;
  std::string label;             ///< the cell's label (an atlas Monte Carlo job adds " (d = <width>)")
  EngineKind engine = EngineKind::Theory;
  StackSpec spec;                 ///< what the engine runs (the Monte Carlo may override width/heads)
  nlohmann::json settings;        ///< engine settings that enter the hash (never thread counts)
  std::string hash;               ///< 16 hex digits, FNV-1a 64 of {engine, spec, settings, version[, theory_numerics]}
  double cost = 0;                ///< rough seconds on one core, for scheduling and the time-left estimate
  std::filesystem::path json, csv;  ///< relative to the output folder: cells/<slug>.<engine>.json/.csv
  /// what the job took ({"hash", "seconds", "threads"}), written before the CSV and JSON: cells/<...>.timing.json
  std::filesystem::path timing;
};

/// Expands the grid; ConfigError names the cell and key when a combination is invalid.
std::vector<Cell> expand_cells(const ReportConfig& cfg);
/// Every job of every cell, in cell order, then in the order of all_engine_kinds().
std::vector<Job> make_jobs(const ReportConfig& cfg, const std::vector<Cell>& cells);

/// Sets a job's hash and file names from its engine, spec and settings (make_jobs does this for every
/// job; a job made later, such as an atlas's refinement, calls it itself).
void finish_job(const ReportConfig& cfg, const std::vector<Cell>& cells, Job& job);

/// True when out/job.json holds a profile whose recorded hash equals job.hash.
bool job_done(const std::filesystem::path& out, const Job& job);
/// Reads a finished job's profile (IoError when missing or not matching).
Profile load_job(const std::filesystem::path& out, const Job& job);
/// What a finished job took, in core-seconds, as run_jobs recorded it beside its cell (job.timing):
/// the CPU seconds of the threads that ran it where the record has them (`cpu_seconds`: a job
/// that shared the cores with other work, or whose process was stopped, took more wall time but
/// not more CPU time), else wall seconds x the threads it ran on; NaN when there is no record for
/// this job's hash (a cell written before sigprop recorded it, or an unreadable record).
double measured_cost(const std::filesystem::path& out, const Job& job);

/// Which MPI rank runs each job of a sweep, from the jobs' costs alone (in the order they are
/// run, costly first): each job goes to the rank with the least cost dealt so far (ties: fewer
/// jobs, then the lower rank), the longest-processing-time rule, which every rank computes alike
/// without talking to the others. Round-robin in that order gave rank 0 the larger job of every
/// pair. A cost that is not finite or is negative counts as 0 (all-zero costs: round-robin).
std::vector<int> deal_to_ranks(const std::vector<double>& costs, int ranks);

struct RunOptions {
  int jobs = 1;         ///< cells run in parallel (threads)
  int sim_threads = 1;  ///< threads inside one Monte Carlo job (never changes a number)
  int rank = 0, ranks = 1;  ///< this process takes the pending jobs deal_to_ranks gives it
  /// Set from a signal handler: no new job starts, running ones finish and are kept.
  const std::atomic<bool>* stop = nullptr;
  /// After each finished job: (job, seconds it took, jobs finished by this process, jobs this
  /// process runs, estimated seconds left). Called from worker threads, never concurrently.
  std::function<void(const Job&, double, int, int, double)> on_done;
  /// Progress of this process's jobs (fraction of them done, counting the running ones' own
  /// progress) and cancellation: when it returns false the running jobs stop at their next
  /// check and are discarded, no new job starts, and run_jobs throws CancelledError ("report");
  /// jobs finished before stay on disk, so running again resumes. Never called concurrently.
  ProgressFn progress;
};

struct RunStats {
  int total = 0;     ///< jobs in the sweep
  int skipped = 0;   ///< already done (resume)
  int assigned = 0;  ///< pending jobs this process had to run
  int ran = 0;       ///< of those, finished now
  bool interrupted = false;
};

/// Runs the pending jobs assigned to this process, writing cells/<slug>.<engine>.{csv,json}
/// atomically (JSON last: it marks the job done). The numbers do not depend on jobs,
/// sim_threads or ranks. The first engine error stops new jobs and is rethrown; a cancel through
/// opt.progress throws CancelledError after the running jobs stopped.
RunStats run_jobs(const ReportConfig& cfg, const std::vector<Job>& jobs, const std::filesystem::path& out,
                  const RunOptions& opt);

}  // namespace sigprop::reports
