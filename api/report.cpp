// api::report, report_from_toml, default_report_config (include/sigprop/api.hpp): `sigprop report`
// as a library call; the command line (cli/report_cmd.cpp) runs detail::run_report with its MPI
// ranks, Ctrl-C flag and progress lines.
#include <algorithm>
#include <exception>
#include <filesystem>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "api/internal.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "reports/atlas.hpp"  // atlas_refine_jobs
#include "reports/report.hpp"
#include "sigprop/version.hpp"

namespace sigprop::api {

namespace detail {

namespace {

nlohmann::json build_facts(const ReportHooks& h) {
  if (!h.build.is_null() && !h.build.empty()) return h.build;
  nlohmann::json b;
  b["sigprop"] = kVersion;
#if defined(__VERSION__)
  b["compiler"] = __VERSION__;
#endif
  b["mpi"] = "not built with MPI";
  return b;
}

/// Renders the report of `jobs` into `out` (figures as the settings say, the hooks' build facts,
/// `notice` atop the pages) and puts its pages and figures into r.
void render_into(ReportResult& r, const reports::ReportConfig& cfg, const std::vector<reports::Cell>& cells,
                 const std::vector<reports::Job>& jobs, const std::filesystem::path& out, const ReportSettings& s,
                 const ReportHooks& h, const std::string& notice = "") {
  reports::RenderOptions ro;
  ro.gnuplot = s.figures ? (s.gnuplot.empty() ? std::string("gnuplot") : s.gnuplot) : std::string();
  ro.build = build_facts(h);
  ro.notice = notice;
  reports::RenderResult rr = reports::render_report(cfg, cells, jobs, out, ro);
  r.index_html = rr.index_html.string();
  r.report_md = rr.report_md.string();
  r.figures_drawn = std::move(rr.figures_drawn);
  r.figures_missing = std::move(rr.figures_missing);
  r.gnuplot_problem = std::move(rr.gnuplot_problem);
}

/// ReportSettings::snapshot: out/snapshot/ from the cells done so far; never touches out/'s lock
/// or its cells (the run keeps going), locks out/snapshot/ against a second snapshot.
ReportResult snapshot_report(const reports::ReportConfig& cfg, const std::vector<reports::Cell>& cells,
                             const std::vector<reports::Job>& jobs, const ReportSettings& s, const ReportHooks& h) {
  const std::filesystem::path out = s.out;
  if (h.ranks > 1)
    throw ConfigError(fmt::format("{}: a snapshot runs in one process, not under mpirun (it runs no jobs)", h.out_name));
  std::error_code ec;
  if (!std::filesystem::is_directory(out / "cells", ec))
    throw ConfigError(fmt::format("{} {}: has no cells/ folder: nothing done to show in a snapshot (is it the running "
                                  "report's output folder?)",
                                  h.out_name, out.string()));
  const std::filesystem::path snap = out / "snapshot";
  const FolderLock lock(snap, h.out_name + " snapshot");
  // The snapshot reads the run's cells through a relative link, so the folder can be moved whole.
  const std::filesystem::path link = snap / "cells";
  if (std::filesystem::is_symlink(std::filesystem::symlink_status(link, ec))) {
    if (std::filesystem::read_symlink(link, ec) != "../cells")
      throw ConfigError(fmt::format("{}: a link, but not to ../cells; remove it", link.string()));
  } else if (std::filesystem::exists(std::filesystem::symlink_status(link, ec))) {
    throw ConfigError(fmt::format("{}: exists and is not the link to ../cells a snapshot makes; remove it", link.string()));
  } else {
    std::filesystem::create_directory_symlink("../cells", link, ec);
    if (ec) throw IoError(fmt::format("{}: cannot link to ../cells: {}", link.string(), ec.message()));
  }
  const reports::Snapshot sn = reports::snapshot(cfg, cells, jobs, out);
  ReportResult r;
  render_into(r, cfg, sn.cells, sn.jobs, snap, s, h, sn.notice);
  const nlohmann::json facts = {{"cells_total", sn.cells_total},         {"cells_shown", sn.cells.size()},
                                {"jobs_total", sn.jobs_total},           {"jobs_done", sn.jobs_done},
                                {"jobs_used", sn.jobs_used},             {"refinement_planned", sn.refinement_planned},
                                {"notice", sn.notice}};
  write_file_atomic(snap / "snapshot.json", facts.dump(2) + "\n");
  r.out = snap.string();
  r.cells = static_cast<int>(sn.cells.size());
  r.jobs = sn.jobs_total;
  r.jobs_reused = sn.jobs_done;
  return r;
}

}  // namespace

ReportResult run_report(const reports::ReportConfig& cfg, const ReportSettings& s, const ProgressFn& progress,
                        const ReportHooks& h) {
  if (s.out.empty()) throw ConfigError(fmt::format("{}: required (the output folder)", h.out_name));
  if (s.jobs < 0) throw ConfigError(fmt::format("ReportSettings.jobs: must be >= 0 (0 = all cores), got {}", s.jobs));
  if (s.threads < 0)
    throw ConfigError(fmt::format("ReportSettings.threads: must be >= 0 (0 = all cores / jobs), got {}", s.threads));
  const std::vector<reports::Cell> cells = reports::expand_cells(cfg);
  const std::vector<reports::Job> jobs = reports::make_jobs(cfg, cells);
  const std::filesystem::path out = s.out;
  if (s.snapshot) return snapshot_report(cfg, cells, jobs, s, h);
  const bool root = h.rank == 0;
  auto max_over_ranks = [&](int v) { return h.max_over_ranks ? h.max_over_ranks(v) : v; };

  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  reports::RunOptions opt;
  opt.rank = h.rank;
  opt.ranks = h.ranks;
  opt.jobs = s.jobs > 0 ? s.jobs : hw;
  opt.sim_threads = s.threads > 0 ? s.threads : std::max(1, hw / opt.jobs);
  opt.stop = h.stop;
  opt.on_done = h.on_done;
  opt.progress = progress;
  if (h.on_start) h.on_start(cells.size(), jobs.size(), opt.jobs);

  // One report per output folder: rank 0 locks it (two runs would share temporary figure and
  // cell names); every rank learns whether it got the lock before any work.
  std::unique_ptr<FolderLock> lock;
  std::exception_ptr lock_error;
  if (root) {
    try {
      lock = std::make_unique<FolderLock>(out, h.out_name);
    } catch (const Error&) {
      lock_error = std::current_exception();
    }
  }
  if (max_over_ranks(lock_error ? 1 : 0) != 0) {
    if (lock_error) std::rethrow_exception(lock_error);
    throw RankFailed("report: rank 0 could not lock the output folder", true);
  }
  if (h.on_locked) h.on_locked();

  // Runs a list of jobs on every rank; 0 ok, 1 stopped, 2 failed, and every rank takes part in the
  // reduction before anything throws (it is also the barrier after which all cells are on disk).
  auto run_all = [&](const std::vector<reports::Job>& list) {
    int status = 0;
    std::exception_ptr error;
    reports::RunStats st;
    try {
      st = reports::run_jobs(cfg, list, out, opt);
      if (st.interrupted) status = 1;
    } catch (const CancelledError&) {
      status = 1;
      error = std::current_exception();
    } catch (const Error&) {
      status = 2;
      error = std::current_exception();
    }
    const int all = max_over_ranks(status);
    if (all == 2) {
      if (status == 2) std::rethrow_exception(error);
      throw RankFailed("report: another rank failed", false);
    }
    if (all == 1 || (h.stop && h.stop->load())) {
      if (error) std::rethrow_exception(error);
      throw CancelledError(fmt::format("report: stopped; finished cells are kept in {}; running again resumes",
                                       (out / "cells").string()));
    }
    return st;
  };
  reports::RunStats st = run_all(jobs);

  // An atlas's refinement (docs/atlas.md "Refinement"): more samples (Monte Carlo, theory draws) where the first
  // pass did not resolve the goals, chosen from its cells (every rank reads the same ones, so every
  // rank makes the same list) and shared among the ranks like the first pass.
  std::vector<reports::Job> all_jobs = jobs;
  if (cfg.atlas.enabled && (cfg.atlas.refine > 1 || cfg.atlas.refine_theory > 1)) {
    std::vector<reports::Job> more;
    std::exception_ptr plan_error;
    try {
      more = reports::atlas_refine_jobs(cfg, cells, jobs, out);
    } catch (const Error&) {
      plan_error = std::current_exception();
    }
    if (max_over_ranks(plan_error ? 2 : 0) != 0) {
      if (plan_error) std::rethrow_exception(plan_error);
      throw RankFailed("report: another rank failed", false);
    }
    if (h.on_refine) h.on_refine(more.size());
    const reports::RunStats st2 = run_all(more);
    st.total += st2.total;
    st.skipped += st2.skipped;
    all_jobs.insert(all_jobs.end(), more.begin(), more.end());
  }

  ReportResult r;
  r.out = out.string();
  r.cells = static_cast<int>(cells.size());
  r.jobs = st.total;
  r.jobs_reused = st.skipped;
  if (!root) return r;
  render_into(r, cfg, cells, all_jobs, out, s, h);
  return r;
}

}  // namespace detail

ReportResult report(const std::string& config_path, const ReportSettings& settings, const ProgressFn& progress) {
  if (config_path.empty())
    throw ConfigError("report: config_path is empty (default_report_config() gives the built-in one)");
  return detail::run_report(reports::load_report_config(config_path), settings, progress, detail::ReportHooks{});
}

ReportResult report_from_toml(std::string_view text, const ReportSettings& settings, const ProgressFn& progress,
                              const std::string& origin) {
  return detail::run_report(reports::parse_report_config(text, origin), settings, progress, detail::ReportHooks{});
}

std::string default_report_config() {
  return reports::default_report_toml();
}

}  // namespace sigprop::api
