#include "cli/study_cmd.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cli/progress.hpp"
#include "cli/train_cmd.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/spec.hpp"
#include "reports/depth_study_page.hpp"

namespace sigprop::cli {

CLI::App* add_study_command(CLI::App& app, StudyArgs& a) {
  validate::TrainSettings& s = a.settings.train;
  // the study's defaults: a small model that trains in minutes per depth on 2 cores
  s.steps = 1500;
  s.lr = 3e-3;
  s.min_lr = 3e-4;
  s.threads = 0;
  s.val_every = 250;
  s.checkpoint_every = 500;
  auto* c = app.add_subcommand(
      "study", "Depth study: train models of several depths on one text and explain the returns (docs/study.md)");
  c->add_option("spec", a.spec_path,
                "Spec TOML file of the base model (stack.depth is replaced by each of --depths); default: width 64, "
                "4 heads, context 64, Pre-LN")
      ->check(CLI::ExistingFile);
  c->add_option("--set", a.sets, "Override a spec key: table.key=value (repeatable, last wins)");
  c->add_option("--corpus", a.corpus, "Training text, read as bytes (e.g. data/kjv.txt)")->required();
  c->add_option("--out", a.out, "Output folder (resumable: a rerun continues unfinished training runs)")->required();
  c->add_option("--depths", a.depths, "Comma-separated increasing depths")->capture_default_str();
  c->add_option("--seeds", a.seeds,
                "Comma-separated training seeds: every depth trains once per seed, gains are paired by seed "
                "(default: --seed alone)");
  c->add_option("--arch", a.archs,
                "An architecture to compare, NAME or NAME:table.key=value,table.key=value (spec overrides on top "
                "of the base spec; repeatable; default: the base spec alone). Runs go to runs/NAME/L<depth>/s<seed>/");
  c->add_option("--noise-samples", a.settings.noise_samples,
                "Monte Carlo samples per architecture and depth for the noise-accumulation measure (0: none)")
      ->capture_default_str();
  c->add_option("--knee-fraction", a.settings.knee_fraction,
                "The knee: the first step in depth whose gain is below this fraction of the first step's gain "
                "(or within 2 paired s.e. of zero)")
      ->capture_default_str();
  c->add_option("--eval-tokens", a.settings.eval_tokens, "Validation-split tokens measured per model")
      ->capture_default_str();
  add_train_settings_options(c, s);
  c->add_flag("--no-figures", a.no_figures, "Do not run gnuplot (data and scripts are still written)");
  c->add_flag("--quiet,-q", a.quiet, "No progress on stderr");
  return c;
}

int run_study(StudyArgs a) {
  // The base model when no spec is given: small enough for a study on 2 cores.
  std::vector<std::string> sets = {"stack.width=64", "stack.heads=4", "stack.tokens=64", "stack.depth=1"};
  if (!a.spec_path.empty()) sets.clear();
  sets.insert(sets.end(), a.sets.begin(), a.sets.end());
  const StackSpec base = resolve_spec(a.spec_path, sets);
  validate::StudySettings& st = a.settings;
  st.depths.clear();
  std::stringstream ss(a.depths);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      st.depths.push_back(v);
    } catch (const std::exception&) {
      throw ConfigError(fmt::format("--depths: \"{}\" is not an integer", item));
    }
  }
  st.seeds.clear();
  if (!a.seeds.empty()) {
    std::stringstream sd(a.seeds);
    while (std::getline(sd, item, ',')) {
      try {
        std::size_t used = 0;
        if (item.empty() || item[0] == '-') throw std::invalid_argument(item);
        const unsigned long long v = std::stoull(item, &used);
        if (used != item.size()) throw std::invalid_argument(item);
        st.seeds.push_back(v);
      } catch (const std::exception&) {
        throw ConfigError(fmt::format("--seeds: \"{}\" is not a non-negative integer", item));
      }
    }
  }
  st.archs.clear();
  for (const std::string& spec : a.archs) {
    validate::StudyArch arch;
    const std::size_t colon = spec.find(':');
    arch.name = spec.substr(0, colon);
    if (colon != std::string::npos) {
      std::stringstream sa(spec.substr(colon + 1));
      while (std::getline(sa, item, ','))
        if (!item.empty()) arch.sets.push_back(item);
    }
    st.archs.push_back(arch);
  }
  if (st.train.threads == 0) st.train.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  reports::StudyPageOptions page_opt;
  if (a.no_figures) page_opt.gnuplot.clear();
  try {
    st.validate();
  } catch (const ConfigError& e) {  // main names the option of every other setting; archs come from --arch
    const std::string what = e.what();
    if (what.rfind("archs:", 0) == 0) throw ConfigError("--arch" + what.substr(5));
    throw;
  }
  try {  // a missing, special or oversized file is named before any work
    check_regular_file(a.corpus, "corpus", validate::kMaxCorpusBytes);
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("--corpus: {}", e.what()));
  }
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  validate::StudyProgress progress;
  if (!a.quiet) {
    progress.stage = [tty](const std::string& s) {
      fmt::print(stderr, "{}study: {}\n", tty ? "\r\033[K" : "", s);
      std::fflush(stderr);
    };
    progress.train = [tty](int depth, const validate::TrainProgress& p) {
      if (!tty && !p.val_loss) return;
      const std::string line =
          fmt::format("study: depth {} step {}/{}  loss {}{}  {:.0f} tok/s", depth, p.step, p.steps,
                      std::isfinite(p.train_loss) ? fmt::format("{:.4f}", p.train_loss) : std::string("-"),
                      p.val_loss ? fmt::format("  val {:.4f}", *p.val_loss) : std::string(), p.tokens_per_s);
      if (tty)
        fmt::print(stderr, "\r{}\033[K", line);
      else
        fmt::print(stderr, "{}\n", line);
      std::fflush(stderr);
    };
  }
  // Ctrl-C stops at the next training step or measurement stage (exit 130); finished depths keep
  // their runs and a rerun resumes. The lines above draw the progress, this only cancels (as train).
  progress.fraction = progress_line("study", false);
  const FolderLock lock(a.out, "--out");  // a second study on this folder would interleave its files
  const validate::DepthStudy study = [&] {
    try {
      return validate::run_depth_study(base, st, a.corpus, a.out, progress);
    } catch (const ConfigError& e) {  // an --arch override the spec rejects
      const std::string what = e.what();
      if (what.rfind("archs:", 0) == 0) throw ConfigError("--arch" + what.substr(5));
      throw;
    }
  }();
  const reports::StudyPage page = reports::render_depth_study_page(study, page_opt);
  if (!page.gnuplot_problem.empty()) fmt::print(stderr, "study: figures not drawn: {}\n", page.gnuplot_problem);
  fmt::print("{}\n", page.index_html.string());
  return 0;
}

}  // namespace sigprop::cli
