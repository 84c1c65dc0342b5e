#include "cli/report_cmd.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>

#include <fmt/format.h>

#include "api/internal.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "reports/config.hpp"
#include "reports/report.hpp"
#include "reports/sweep.hpp"
#include "sigprop/version.hpp"

#ifdef SIGPROP_HAVE_MPI
#include <mpi.h>
#endif

namespace sigprop::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_sigint(int) {
  if (g_stop.load()) {  // second Ctrl-C: stop now (finished cells are on disk already)
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  g_stop.store(true);
  const char msg[] = "\nreport: interrupted; finishing the running cells (Ctrl-C again to quit now)\n";
  ssize_t r = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
}

std::string duration(double s) {
  if (!(s >= 0)) return "?";
  if (s < 90) return fmt::format("{:.0f} s", s);
  if (s < 5400) return fmt::format("{:.0f} min {:02.0f} s", std::floor(s / 60), std::fmod(s, 60));
  return fmt::format("{:.1f} h", s / 3600);
}

/// MPI when started by mpirun (its environment says so), one process otherwise.
struct Ranks {
  int rank = 0, size = 1;
  bool mpi = false;
  Ranks() {
#ifdef SIGPROP_HAVE_MPI
    if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK")) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      mpi = true;
    }
#else
    // Started by mpirun but unable to talk MPI: every rank would run the whole sweep.
    const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
    if (n && std::atoi(n) > 1)
      throw ConfigError(
          "this sigprop was built without MPI support (SIGPROP_ENABLE_MPI, libopenmpi-dev); run it without mpirun "
          "and use --jobs N, or rebuild with MPI");
#endif
  }
  ~Ranks() {
#ifdef SIGPROP_HAVE_MPI
    if (mpi) MPI_Finalize();
#endif
  }
  Ranks(const Ranks&) = delete;
  Ranks& operator=(const Ranks&) = delete;
  /// Largest value over ranks (status codes: any failure wins).
  [[nodiscard]] int max(int v) const {
#ifdef SIGPROP_HAVE_MPI
    if (mpi) {
      int out = v;
      MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      return out;
    }
#endif
    return v;
  }
};

nlohmann::json build_info() {
  nlohmann::json b;
  b["sigprop"] = kVersion;
#if defined(__VERSION__)
  b["compiler"] = __VERSION__;
#endif
#ifdef SIGPROP_HAVE_MPI
#ifdef OMPI_MAJOR_VERSION
  b["mpi"] = fmt::format("Open MPI {}.{}.{} (cells shared among ranks under mpirun)", OMPI_MAJOR_VERSION,
                         OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION);
#else
  b["mpi"] = fmt::format("MPI {}.{}", MPI_VERSION, MPI_SUBVERSION);
#endif
#else
  b["mpi"] = "not built with MPI";
#endif
  return b;
}

}  // namespace

CLI::App* add_report_command(CLI::App& app, ReportArgs& a) {
  auto* c = app.add_subcommand(
      "report", "Sweep engines over spec keys and write figures, tables, index.html and report.md (docs/report.md)");
  c->add_option("config", a.config_path,
                "Report config TOML (base spec, [sweep], [engines], [figures]); built-in default when omitted")
      ->check(CLI::ExistingFile);
  c->add_option("--out,-o", a.out, "Output folder (created; finished cells in it are reused)");
  c->add_option("--jobs,-j", a.jobs, "Cells run in parallel per process (0 = all cores; 1 per rank under mpirun)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--gnuplot", a.gnuplot, "gnuplot program (default: $SIGPROP_GNUPLOT, else gnuplot on PATH)");
  c->add_flag("--no-figures", a.no_figures, "Write data, tables and HTML without drawing figures");
  c->add_flag("--print-default", a.print_default, "Print the built-in default config and exit");
  c->add_flag("--quiet,-q", a.quiet, "No progress lines");
  c->add_flag("--snapshot", a.snapshot,
              "Run nothing: render the cells done so far in --out into <out>/snapshot/ (safe while a run, or its "
              "MPI ranks, is still going)");
  return c;
}

int run_report(const ReportArgs& a, int /*argc*/, char** /*argv*/) {
  if (a.print_default) {
    fmt::print("{}", reports::default_report_toml());
    return 0;
  }
  Ranks ranks;
  const bool root = ranks.rank == 0;
  // Every rank parses the same config: a bad one fails identically everywhere, before any work.
  const reports::ReportConfig cfg =
      a.config_path.empty() ? reports::default_report_config() : reports::load_report_config(a.config_path);
  const std::filesystem::path out = a.out;

  api::ReportSettings rs;
  rs.out = a.out;
  rs.jobs = a.jobs > 0 ? a.jobs : (ranks.mpi ? 1 : 0);
  rs.threads = ranks.mpi ? 1 : 0;  // 0: all cores / jobs
  rs.figures = !a.no_figures;
  rs.snapshot = a.snapshot;
  if (rs.figures) {
    const char* env = std::getenv("SIGPROP_GNUPLOT");
    rs.gnuplot = !a.gnuplot.empty() ? a.gnuplot : (env && *env ? env : "gnuplot");
  }
  api::detail::ReportHooks h;
  h.rank = ranks.rank;
  h.ranks = ranks.size;
  if (ranks.mpi) h.max_over_ranks = [&](int v) { return ranks.max(v); };
  h.stop = &g_stop;
  h.build = build_info();
  h.out_name = "--out";
  const std::string who = ranks.mpi ? fmt::format("report[rank {}/{}]", ranks.rank, ranks.size) : "report";
  const auto t0 = std::chrono::steady_clock::now();
  h.on_start = [&](std::size_t cells, std::size_t jobs, int parallel) {
    if (root && !a.quiet)
      fmt::print(stderr, "report: {} cells x {} engine(s) = {} jobs -> {}{}\n", cells,
                 reports::enabled_engines(cfg), jobs, out.string(),
                 ranks.mpi ? fmt::format(" ({} MPI ranks, {} job(s) each)", ranks.size, parallel)
                           : fmt::format(" ({} job(s) in parallel)", parallel));
  };
  h.on_done = [&](const reports::Job& j, double secs, int done, int total, double left) {
    if (a.quiet) return;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(stderr, "{}: {}/{} done: {} ({}) in {}; {} elapsed, ~{} left\n", who, done, total, j.label,
               reports::to_string(j.engine), duration(secs), duration(el), duration(left));
  };

  h.on_refine = [&](std::size_t jobs) {
    if (root && !a.quiet)
      fmt::print(stderr, "report: atlas refinement: {} more job(s) where the first pass did not resolve the goals "
                         "(atlas.refine = {}, refine_theory = {})\n",
                 jobs, cfg.atlas.refine, cfg.atlas.refine_theory);
  };
  auto prev = std::signal(SIGINT, on_sigint);
  api::ReportResult r;
  int code = -1;
  bool locked = false;  // errors after the lock are the run's: named by rank under MPI
  h.on_locked = [&] { locked = true; };
  try {
    r = api::detail::run_report(cfg, rs, nullptr, h);
  } catch (const api::detail::RankFailed& e) {
    code = e.at_lock ? 2 : 1;  // another rank's error is its own to print
  } catch (const CancelledError&) {
    code = 130;
  } catch (const Error& e) {
    fmt::print(stderr, "sigprop: error: {}{}\n", ranks.mpi && locked ? who + ": " : "", printable(e.what(), 2000));
    code = dynamic_cast<const ConfigError*>(&e) ? 2 : 1;
  }
  std::signal(SIGINT, prev);
  if (code == 130) {
    if (root)
      fmt::print(stderr, "report: interrupted; finished cells are kept in {}; run the same command again to resume\n",
                 (out / "cells").string());
    return 130;
  }
  if (code >= 0) return code;
  if (a.snapshot) {
    if (!r.figures_missing.empty())
      fmt::print(stderr, "sigprop: warning: {} figure(s) not drawn ({}); the report says so and keeps their data\n",
                 r.figures_missing.size(), r.gnuplot_problem);
    fmt::print("report: snapshot of {} of {} jobs done; {} of {} {} shown\n", r.jobs_reused, r.jobs, r.cells,
               reports::expand_cells(cfg).size(),
               cfg.atlas.enabled ? "configurations" : "cells");
    fmt::print("report: open {}\n", std::filesystem::absolute(r.index_html).lexically_normal().string());
    return 0;
  }
  if (root && !a.quiet && r.jobs_reused > 0)
    fmt::print(stderr, "report: {} of {} jobs were already done (resumed)\n", r.jobs_reused, r.jobs);
  if (!root) return 0;
  if (!r.figures_missing.empty())
    fmt::print(stderr, "sigprop: warning: {} figure(s) not drawn ({}); the report says so and keeps their data\n",
               r.figures_missing.size(), r.gnuplot_problem);
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("report: {} jobs ({} computed now, {} reused) in {}; {} figures\n", r.jobs, r.jobs - r.jobs_reused,
             r.jobs_reused, duration(el), r.figures_drawn.size());
  fmt::print("report: open {}\n", std::filesystem::absolute(r.index_html).lexically_normal().string());
  return 0;
}

}  // namespace sigprop::cli
