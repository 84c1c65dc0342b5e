#include "cli/train_cmd.hpp"
#include "cli/progress.hpp"
#include "cli/seed.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/spec.hpp"

namespace sigprop::cli {

namespace {
std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}
}  // namespace

void add_train_settings_options(CLI::App* c, validate::TrainSettings& s) {
  c->add_option("--steps", s.steps, "Optimizer steps")->capture_default_str();
  c->add_option("--batch", s.batch, "Sequences per step")->capture_default_str();
  c->add_option("--lr", s.lr, "Peak learning rate")->capture_default_str();
  c->add_option("--min-lr", s.min_lr, "Learning rate at the end of the cosine decay")->capture_default_str();
  c->add_option("--warmup", s.warmup, "Linear warm-up steps (-1: steps/10)")->capture_default_str();
  c->add_option("--weight-decay", s.weight_decay, "AdamW decoupled weight decay (matrices only)")
      ->capture_default_str();
  c->add_option("--beta1", s.beta1, "AdamW beta1")->capture_default_str();
  c->add_option("--beta2", s.beta2, "AdamW beta2")->capture_default_str();
  c->add_option("--eps", s.eps, "AdamW epsilon")->capture_default_str();
  c->add_option("--max-norm", s.max_norm, "Global gradient-norm clip (0: none)")->capture_default_str();
  c->add_option("--val-fraction", s.val_fraction, "Last fraction of the corpus held out for validation")
      ->capture_default_str();
  c->add_option("--val-every", s.val_every, "Validation loss every N steps (and at the end)")->capture_default_str();
  c->add_option("--val-batches", s.val_batches, "Fixed validation batches")->capture_default_str();
  c->add_option("--checkpoint-every", s.checkpoint_every, "ckpt_step{N}.safetensors every N steps (0: none)")
      ->capture_default_str();
  c->add_option("--seed", s.seed, "Seed of the initial weights and of the batches")->transform(sigprop::cli::seed_check())->capture_default_str();
  c->add_option("--threads", s.threads, "Worker threads (0 = all cores); results do not depend on it")
      ->capture_default_str();
  c->add_option("--precision", s.precision, "float or double")->capture_default_str();
}

CLI::App* add_train_command(CLI::App& app, TrainArgs& a) {
  validate::TrainSettings& s = a.settings;
  s.threads = 0;  // all cores unless given
  auto* c = app.add_subcommand("train", "Train the byte-level language model on a text file (docs/train.md)");
  c->add_option("spec", a.spec_path, "Spec TOML file (MODEL.md §3) of the blocks; stack.tokens is the context")
      ->check(CLI::ExistingFile);
  c->add_option("--set", a.sets, "Override a spec key: table.key=value (repeatable, last wins)");
  c->add_option("--corpus", a.corpus, "Training text, read as bytes (e.g. data/kjv.txt)")->required();
  c->add_option("--out", a.out, "Output folder: loss.csv, checkpoints; a run there with the same settings resumes")
      ->required();
  add_train_settings_options(c, s);
  c->add_flag("--quiet,-q", a.quiet, "No progress on stderr");
  return c;
}

int run_train(TrainArgs a) {
  const StackSpec spec = resolve_spec(a.spec_path, a.sets);
  const validate::ModelConfig cfg = validate::train_model_config(spec);
  validate::TrainSettings& s = a.settings;
  if (s.threads == 0) s.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  s.validate();
  try {  // a missing, special or oversized file is named before any work
    check_regular_file(a.corpus, "corpus", validate::kMaxCorpusBytes);
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("--corpus: {}", e.what()));
  }
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  std::function<void(const validate::TrainProgress&)> progress;
  if (!a.quiet)
    progress = [tty](const validate::TrainProgress& p) {
      const std::string val = p.val_loss ? fmt::format("{:.4f}", *p.val_loss) : std::string("-");
      const std::string loss = std::isfinite(p.train_loss) ? fmt::format("{:.4f}", p.train_loss) : std::string("-");
      const std::string line = fmt::format("train: step {}/{}  loss {}  val {}  {:.0f} tok/s  ETA {}", p.step,
                                           p.steps, loss, val, p.tokens_per_s, hms(p.eta_s));
      if (tty) {
        fmt::print(stderr, "\r{}\033[K", line);
        if (p.step == p.steps) fmt::print(stderr, "\n");
      } else if (p.val_loss) {
        fmt::print(stderr, "{}\n", line);
      }
      std::fflush(stderr);
    };
  if (!a.quiet)
    fmt::print(stderr, "sigprop train: d {}, heads {}, depth {}, context {}, norm {}; batch {}, {} steps, {}\n",
               spec.width, spec.heads, spec.depth, spec.tokens, to_string(spec.norm), s.batch, s.steps, s.precision);
  const FolderLock lock(a.out, "--out");  // a second train on this folder would interleave its files
  // Ctrl-C stops at the next step boundary; the line above draws the progress, this only cancels.
  const validate::TrainOutcome o =
      validate::train(cfg, s, a.corpus, a.out, progress, progress_line("train", false));
  for (const std::string& w : o.warnings) fmt::print(stderr, "sigprop: warning: {}\n", w);
  if (o.start_step == o.steps) {
    fmt::print(stderr, "sigprop train: {} already holds the finished run ({} steps)\n", a.out, o.steps);
    return 0;
  }
  if (!a.quiet) {
    if (o.start_step > 0) fmt::print(stderr, "sigprop train: resumed at step {}\n", o.start_step);
    fmt::print(stderr, "sigprop train: val loss {} -> {} in {:.1f} s ({:.0f} tok/s); {}/final.safetensors\n",
               o.first_val ? fmt::format("{:.4f}", *o.first_val) : std::string("-"),
               o.last_val ? fmt::format("{:.4f}", *o.last_val) : std::string("-"), o.seconds, o.tokens_per_s,
               a.out);
  }
  return 0;
}

}  // namespace sigprop::cli
