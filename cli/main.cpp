// The sigprop command line: parses argv, reads files, calls the library. No science here.
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <fstream>
#include <new>
#include <utility>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/guard.hpp"
#include "cli/progress.hpp"
#include "cli/seed.hpp"
#include "cli/report_cmd.hpp"
#include "cli/ode_cmd.hpp"
#include "cli/simulate_cmd.hpp"
#include "cli/spectrum_cmd.hpp"
#include "cli/table.hpp"
#include "cli/study_cmd.hpp"
#include "cli/train_cmd.hpp"
#include "cli/validate_cmd.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/memory.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "sigprop/version.hpp"
#include "theory/engine.hpp"
#include "theory/meanfield.hpp"

namespace {

struct Range {
  double lo, hi;
  int n;
};

Range parse_range(const std::string& s, const std::string& opt) {
  // "lo:hi:n", every part read whole: sscanf("%d") would take "4.5" as 4 and "3e9" as 3.
  const auto bad = [&]() -> Range {
    throw sigprop::ConfigError(fmt::format("{}: expected lo:hi:n (n a whole number of points), got \"{}\"", opt,
                                           s.substr(0, 80)));
  };
  const auto c1 = s.find(':'), c2 = c1 == std::string::npos ? c1 : s.find(':', c1 + 1);
  if (c2 == std::string::npos || s.find(':', c2 + 1) != std::string::npos) return bad();
  auto number = [&](const std::string& t, double& out) {
    char* end = nullptr;
    out = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(out)) bad();
  };
  Range r{0, 0, 0};
  number(s.substr(0, c1), r.lo);
  number(s.substr(c1 + 1, c2 - c1 - 1), r.hi);
  const std::string n = s.substr(c2 + 1);
  if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos)
    throw sigprop::ConfigError(
        fmt::format("{}: the point count n of lo:hi:n must be a whole number below 10^9, got \"{}\"", opt,
                    n.substr(0, 40)));
  r.n = std::stoi(n);
  return r;
}

void write_outputs(const sigprop::Profile& p, const std::string& json, const std::string& csv) {
  if (!json.empty()) sigprop::write_file_atomic(json, p.to_json().dump(2) + "\n");
  if (!csv.empty()) sigprop::write_file_atomic(csv, p.to_csv());
}

// MemAvailable of /proc/meminfo in bytes (the kernel's estimate of what can be allocated without
// swapping); 0 = no limit when it cannot be read (not Linux).
std::uint64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::uint64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// Library messages name the setting ("samples: must be in ...", "lr = 0 must be > 0",
// "continuum: rel_tol = ..."); on the command line the user typed a flag, so the flags of the
// running command whose settings the message names are appended: "(--samples)". The setting of
// --foo-bar is foo_bar. It counts as named when it stands as a word (at the start, or after a space,
// "(" or "/") followed by ":", " =", "/" or ",", or in parentheses alone: "(max_evals)".
bool names_setting(std::string_view msg, std::string_view key) {
  for (std::size_t pos = msg.find(key); pos != std::string_view::npos; pos = msg.find(key, pos + 1)) {
    const char prev = pos == 0 ? ' ' : msg[pos - 1];
    const std::string_view rest = msg.substr(pos + key.size());
    if (rest.empty()) continue;
    const bool after = rest[0] == ':' || rest[0] == '/' || rest[0] == ',' || rest.starts_with(" =") ||
                       (prev == '(' && rest[0] == ')');
    if ((prev == ' ' || prev == '(' || prev == '/') && after) return true;
  }
  return false;
}

std::string with_flag(const std::string& msg, const CLI::App* sub) {
  // core/spec.cpp's table.key=value overrides came from --set: "override stack.x=1: ..." -> "--set stack.x=1: ..."
  if (msg.starts_with("override ")) return "--set " + msg.substr(9);
  if (sub == nullptr) return msg;
  std::string named;
  for (const CLI::Option* opt : sub->get_options()) {
    const std::string flag = opt->get_name();
    if (!flag.starts_with("--") || flag == "--set") continue;
    std::string key = flag.substr(2);
    std::replace(key.begin(), key.end(), '-', '_');
    if (names_setting(msg, key)) named += (named.empty() ? "" : ", ") + flag;
  }
  return named.empty() ? msg : msg + " (" + named + ")";
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Keep freed memory in the process (docs/simulate.md, "Memory between samples"): a Monte
  // Carlo sample allocates and frees its layers' matrices (tens to hundreds of MB at d >= 1024),
  // and glibc's default returns that to the system after every sample (heap trimming, and mmap
  // for blocks above a threshold that adapts only upwards), so the next sample page-faults and
  // the kernel clears the same memory again: a fifth of the CPU time at d = 1024. Blocks below
  // 32 MiB come from the heap, which is trimmed only past 512 MiB of free top; the peak RSS
  // is unchanged (the memory was in use during the sample anyway).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  CLI::App app{"sigprop: signal propagation in deep transformer stacks, from theory and simulation"};
  app.set_version_flag("--version", std::string("sigprop ") + sigprop::kVersion);
  app.require_subcommand(1);

  // sigprop theory
  auto* th = app.add_subcommand("theory", "Infinite-width (mean-field) prediction of every metric per layer");
  std::string spec_path, json_out, csv_out;
  std::vector<std::string> sets;
  sigprop::theory::TheorySettings ts;
  int max_rows = 40;
  bool quiet = false, force_table = false;
  th->add_option("spec", spec_path, "Spec TOML file (MODEL.md §3); built-in default when omitted")
      ->check(CLI::ExistingFile);
  th->add_option("--set", sets, "Override a spec key: table.key=value (repeatable, last wins)");
  th->add_option("--json", json_out, "Write the profile as JSON");
  th->add_option("--csv", csv_out, "Write the profile as CSV");
  th->add_option("--attn-samples", ts.attn.samples,
                 "Logit draws per layer for 1/sqrt(dh) attention, over all error batches (a multiple of "
                 "2 x --error-batches, >= 16 per batch)")
      ->check(CLI::Range(2, 100000000))
      ->capture_default_str();
  th->add_option("--seed", ts.attn.seed, "Seed of the attention integral's draws")->transform(sigprop::cli::seed_check());
  th->add_option("--error-batches", ts.error_batches,
                 "Independent replicates of the attention integral: the value is their mean, _se their "
                 "spread / sqrt(B) (0 = off, >= 2)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  std::string attn_method = "qmc";
  th->add_option("--attn-method", attn_method,
                 "qmc (randomised Sobol points) or mc (Philox pseudo-random draws) for the softmax integral")
      ->check(CLI::IsMember({"qmc", "mc"}))
      ->capture_default_str();
  th->add_option("--quad-order", ts.quad_order, "Gauss-Legendre points per piece for tanh, silu and gelu_tanh")
      ->check(CLI::Range(8, 400));
  th->add_flag("--finite-dh", ts.attn.finite_dh,
               "qk_scale = 1/dh: keep the logit variance at d_h = width/heads (Gaussian logits with "
               "sigma_qk2/sqrt(d_h), sampled) instead of the uniform d_h -> infinity limit");
  th->add_option("--rows", max_rows, "Layers shown in the terminal table (0 = all)")->check(CLI::NonNegativeNumber);
  th->add_flag("--quiet,-q", quiet, "Do not print the table");
  th->add_flag("--table", force_table, "Print the table even when writing files and stdout is not a terminal");

  // sigprop phase
  auto* ph = app.add_subcommand("phase", "Order/chaos phase diagram of a dense stack over (sigma_w2, sigma_b2)");
  std::string act = "tanh", sw = "0.5:4:36", sb = "0:0.3:16", phase_csv;
  ph->add_option("--activation", act, "relu, gelu, tanh, erf, silu or linear");
  ph->add_option("--sigma-w2", sw, "Grid lo:hi:n of weight variances");
  ph->add_option("--sigma-b2", sb, "Grid lo:hi:n of bias variances");
  ph->add_option("--csv", phase_csv, "Write the diagram as CSV (else printed)");

  sigprop::cli::SimulateArgs sim_args;
  auto* si = sigprop::cli::add_simulate_command(app, sim_args);
  sigprop::cli::ReportArgs report_args;
  auto* rep = sigprop::cli::add_report_command(app, report_args);
  sigprop::cli::SpectrumArgs spectrum_args;
  auto* spc = sigprop::cli::add_spectrum_command(app, spectrum_args);
  sigprop::cli::OdeArgs ode_args;
  auto* od = sigprop::cli::add_ode_command(app, ode_args);
  sigprop::cli::TrainArgs train_args;
  auto* tr = sigprop::cli::add_train_command(app, train_args);
  sigprop::cli::ValidateArgs validate_args;
  auto* va = sigprop::cli::add_validate_command(app, validate_args);
  sigprop::cli::StudyArgs study_args;
  auto* sty = sigprop::cli::add_study_command(app, study_args);

  // `sigprop bogus`: name the unknown command (CLI11 would only say that arguments were not expected).
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      fmt::print(stderr, "sigprop: error: unknown command '{}'; the commands are {} (sigprop --help)\n",
                 sigprop::printable(argv[1]), names);
      return 2;
    }
  }
  // Every command takes --max-memory: the cap on what one engine run plans to allocate.
  std::string max_memory;
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
    sub->add_option("--max-memory", max_memory,
                    "Refuse runs whose memory estimate exceeds this (8G, 512M, bytes; 0 = no limit); "
                    "default: MemAvailable of /proc/meminfo");
  // Every command takes --progress: the progress line on stderr even when it is not a terminal.
  bool force_progress = false;
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
    sub->add_flag("--progress", force_progress, "Show the progress line on stderr even when it is not a terminal");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Bad command lines exit 2 (README), whatever CLI11's own code; the text is escaped.
    fmt::print(stderr, "sigprop: error: {}\nRun with --help for more information.\n",
               sigprop::printable(e.what(), 2000));
    return 2;
  }

  const CLI::App* sub = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
  sigprop::cli::force_progress(force_progress);
  sigprop::cli::cancel_on_sigint();  // Ctrl-C: the engine stops at its next check, nothing is written, exit 130
  try {
    for (const CLI::App* sub : app.get_subcommands()) sigprop::cli::check_command_line(*sub);
    sigprop::set_memory_limit(max_memory.empty() ? available_memory()
                                                 : sigprop::parse_byte_size(max_memory, "--max-memory"));
    if (si->parsed()) return sigprop::cli::run_simulate(sim_args);
    if (rep->parsed()) return sigprop::cli::run_report(report_args, argc, argv);
    if (spc->parsed()) return sigprop::cli::run_spectrum(spectrum_args);
    if (od->parsed()) return sigprop::cli::run_ode(ode_args);
    if (tr->parsed()) return sigprop::cli::run_train(train_args);
    if (va->parsed()) return sigprop::cli::run_validate(validate_args);
    if (sty->parsed()) return sigprop::cli::run_study(study_args);
    if (th->parsed()) {
      sigprop::StackSpec spec = sigprop::resolve_spec(spec_path, sets);
      ts.attn.method = sigprop::theory::parse_attn_method(attn_method);
      sigprop::theory::TheoryEngine eng(ts);
      eng.set_progress(sigprop::cli::progress_line("theory", sigprop::cli::show_progress() && !quiet));
      sigprop::Profile p = eng.run(spec);
      write_outputs(p, json_out, csv_out);
      for (auto& w : p.warnings) fmt::print(stderr, "sigprop: warning: {}\n", w);
      bool tty = ::isatty(STDOUT_FILENO) != 0;
      if (!quiet && (force_table || tty || (json_out.empty() && csv_out.empty()))) {
        fmt::print(
            "sigprop theory: {} blocks, norm={} ({}), {} tokens, depth {}, activation {}, mask {}, "
            "branch_scale {}, qk_scale {}\n",
            sigprop::to_string(spec.blocks), sigprop::to_string(spec.norm), sigprop::to_string(spec.norm_type),
            spec.tokens, spec.depth, sigprop::to_string(spec.activation), sigprop::to_string(spec.mask),
            spec.branch_scale.str(), sigprop::to_string(spec.qk_scale));
        fmt::print("{}", sigprop::cli::format_table(p, max_rows, "numerical error (1 s.e. of the attention integral)"));
        if (p.extras.contains("mean_field")) fmt::print("mean field: {}\n", p.extras["mean_field"].dump());
        if (p.extras.contains("depth_returns")) {
          const auto& dr = p.extras["depth_returns"];
          std::vector<std::string> pts;
          for (std::size_t i = 0; i < dr["depth"].size(); ++i)
            pts.push_back(fmt::format("{}: {}", dr["depth"][i].get<int>(),
                                      dr["effective_depth"][i].is_null()
                                          ? std::string("-")
                                          : fmt::format("{:.3g}", dr["effective_depth"][i].get<double>())));
          fmt::print("depth returns: effective depth by depth {{{}}}; predicted knee: {} (docs/theory.md)\n",
                     fmt::join(pts, ", "),
                     dr["knee_depth"].is_null() ? std::string("none")
                                                : fmt::format("depth {}", dr["knee_depth"].get<int>()));
        }
      }
      return 0;
    }
    if (ph->parsed()) {
      sigprop::StackSpec probe;
      sigprop::apply_override(probe, "stack.activation=" + act);
      Range rw = parse_range(sw, "--sigma-w2"), rb = parse_range(sb, "--sigma-b2");
      // Nothing is written before the end, so a cancelled diagram leaves no file.
      const sigprop::ProgressFn progress = sigprop::cli::progress_line("phase", sigprop::cli::show_progress());
      auto rows =
          sigprop::theory::phase_diagram(probe.activation, rw.lo, rw.hi, rw.n, rb.lo, rb.hi, rb.n, 48, progress);
      std::string text = sigprop::theory::phase_diagram_csv(rows, probe.activation);
      if (phase_csv.empty())
        fmt::print("{}", text);
      else
        sigprop::write_file_atomic(phase_csv, text);
      return 0;
    }
  } catch (const sigprop::CancelledError&) {
    fmt::print(stderr, "\nsigprop: cancelled\n");
    return 130;
  } catch (const sigprop::MemoryLimitError& e) {
    fmt::print(stderr, "sigprop: error: {} (--max-memory sets the limit)\n", with_flag(e.what(), sub));
    return 2;
  } catch (const sigprop::ConfigError& e) {
    // Messages may quote untrusted values (spec strings, file names): escaped and cut.
    fmt::print(stderr, "sigprop: error: {}\n", sigprop::printable(with_flag(e.what(), sub), 2000));
    return 2;
  } catch (const sigprop::Error& e) {
    fmt::print(stderr, "sigprop: error: {}\n", sigprop::printable(with_flag(e.what(), sub), 2000));
    return 1;
  } catch (const std::bad_alloc&) {
    // An allocation the estimates did not foresee (they cover the big, input-driven ones).
    fmt::print(stderr, "sigprop: error: out of memory (an allocation failed); try smaller sizes or fewer --threads\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sigprop: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
