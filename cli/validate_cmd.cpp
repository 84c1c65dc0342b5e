#include "cli/validate_cmd.hpp"
#include "cli/seed.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "api/internal.hpp"
#include "cli/progress.hpp"
#include "core/files.hpp"
#include "core/profile.hpp"

namespace sigprop::cli {

namespace {

std::string pm(double v, double se) {
  if (!std::isfinite(v)) return "-";
  return std::isfinite(se) ? fmt::format("{:.4g} ± {:.2g}", v, se) : fmt::format("{:.4g}", v);
}

/// Short table: per metric, layers 0, L/2 and L: measured ± se, each prediction, z_pi.
std::string format_validation(const validate::Validation& v) {
  const int L = v.measured.layers() - 1;
  struct P {
    const char* name;
    const Profile* p;
  };
  std::vector<P> preds;
  if (v.init_ensemble) preds.push_back({"init_ensemble", &*v.init_ensemble});
  if (v.simulate) preds.push_back({"simulate", &*v.simulate});
  if (v.theory) preds.push_back({"theory", &*v.theory});
  auto z_of = [&](const std::string& pred, const std::string& metric, int l) -> std::string {
    for (const auto& a : v.agreement)
      if (a["prediction"] == pred && a["metric"] == metric && a["layer"] == l) {
        const auto& z = a["z_pi"].is_null() ? a["z"] : a["z_pi"];
        return z.is_null() ? "-" : fmt::format("{:+.2f}", z.get<double>());
      }
    return "-";
  };
  std::string out = fmt::format("{:<13} {:>5} {:>20}", "metric", "layer", "measured ± se");
  for (const auto& p : preds) out += fmt::format(" {:>20}", p.name);
  for (const auto& p : preds) out += fmt::format(" {:>9}", std::string("z_pi:") + std::string(p.name).substr(0, 3));
  out += "\n";
  for (const std::string& metric : validate::measured_metric_names()) {
    for (int l : {0, L / 2, L}) {
      if (l == 0 && (metric == "update_ratio" || metric == "ang_dist")) continue;
      if (l == L / 2 && (L / 2 == 0 || L / 2 == L)) continue;
      out += fmt::format("{:<13} {:>5} {:>20}", metric, l,
                         pm(v.measured.at(l, metric), v.measured.at(l, metric + "_se")));
      for (const auto& p : preds) {
        const double se = p.p->has(metric + "_se") ? p.p->at(l, metric + "_se") : NAN;
        out += fmt::format(" {:>20}", p.p->has(metric) ? pm(p.p->at(l, metric), se) : "-");
      }
      for (const auto& p : preds) out += fmt::format(" {:>9}", z_of(p.name, metric, l));
      out += "\n";
    }
  }
  out += "z: z_pi = diff / sqrt(sd_pred^2 + se_pred^2 + se_meas^2), the prediction interval of one model\n";
  for (const auto& p : preds) {
    double worst = 0, n = 0, within = 0;
    std::string where;
    for (const auto& s : v.summary) {
      if (s["prediction"] != p.name) continue;
      const int layers = s["layers"].get<int>();
      n += layers;
      within += s["frac_within_3"].get<double>() * layers;
      const double w = s["max_abs"].is_null() ? INFINITY : s["max_abs"].get<double>();
      if (w >= worst) {
        worst = w;
        where = fmt::format("{} at layer {}", s["metric"].get<std::string>(), s["max_abs_layer"].get<int>());
      }
    }
    const char* stat = std::string(p.name) == "theory" && v.simulate ? "max |z_pi| (Monte Carlo spread)"
                       : std::string(p.name) == "theory"                ? "max |z|"
                                                                        : "max |z_pi|";
    out += fmt::format("{}: {} = {:.2f} ({}); {:.0f} of {:.0f} metric-layers within 3\n", p.name, stat, worst, where,
                       within, n);
  }
  return out;
}

}  // namespace

int run_validate(const ValidateArgs& a) {
  api::ValidateSettings st;
  st.checkpoint = a.checkpoint;
  st.corpus = a.corpus;
  st.tokens = a.settings.tokens;
  st.seq_len = a.settings.seq_len;
  st.ensemble = a.settings.ensemble;
  st.samples = a.settings.samples;
  st.theory = !a.no_theory;
  st.seed = a.settings.seed;
  st.threads = a.settings.threads;
  st.precision = a.precision;
  // Errors name the flags; the engine's own words (seq_len, samples, ...) get their flag from main.
  api::detail::ValidateNames names;
  names.checkpoint = "--checkpoint";
  names.corpus = "--corpus";
  names.tokens = "--tokens";
  names.seq_len = "seq_len";
  names.ensemble = "ensemble";
  names.samples = "samples";
  names.threads = "threads";
  names.precision = "--precision";
  const validate::Validation v =
      api::detail::run_validation(st, progress_line("validate", show_progress() && !a.quiet), names);
  if (!a.json_out.empty()) write_file_atomic(a.json_out, v.to_json(a.checkpoint).dump(2) + "\n");
  if (!a.csv_out.empty()) write_file_atomic(a.csv_out, v.measured.to_csv());
  for (const Profile* p : {&v.measured, v.theory ? &*v.theory : nullptr, v.simulate ? &*v.simulate : nullptr,
                           v.init_ensemble ? &*v.init_ensemble : nullptr})
    if (p)
      for (const auto& w : p->warnings) fmt::print(stderr, "sigprop: warning: {}: {}\n", p->engine, w);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  if (!a.quiet && (a.table || tty || (a.json_out.empty() && a.csv_out.empty()))) {
    const auto& s = v.measured.settings;
    fmt::print("sigprop validate: {} on {}: {} sequences of {} tokens, loss {:.4f} ± {:.2g} nats/token", a.checkpoint,
               a.corpus, s["sequences"].get<int>(), s["seq_len"].get<int>(), v.measured.extras["loss"].get<double>(),
               v.measured.extras["loss_se"].is_number() ? v.measured.extras["loss_se"].get<double>() : NAN);
    if (v.init_ensemble)
      fmt::print(" (init ensemble {:.4f})", v.init_ensemble->extras["loss"].get<double>());
    fmt::print("\n{}", format_validation(v));
    for (const auto& n : v.notes) fmt::print("note: {}\n", n);
  }
  return 0;
}

CLI::App* add_validate_command(CLI::App& app, ValidateArgs& a) {
  auto* c = app.add_subcommand("validate",
                               "Metrics of a checkpoint on real text against theory, Monte Carlo and an ensemble of "
                               "freshly initialised models of its architecture (docs/validate.md)");
  c->add_option("--checkpoint", a.checkpoint, "sigprop checkpoint (safetensors) to measure")->required();
  c->add_option("--corpus", a.corpus, "Text file; its bytes are the tokens of the byte-level model")->required();
  c->add_option("--json", a.json_out, "Write measured profile, predictions, agreement table and notes as JSON");
  c->add_option("--csv", a.csv_out, "Write the measured profile as CSV");
  c->add_option("--tokens", a.settings.tokens, "Tokens measured in all: tokens / T sequences (>= 2)");
  c->add_option("--seq-len", a.settings.seq_len, "Tokens per sequence T (0 = the model's context; at most it)");
  c->add_option("--ensemble", a.settings.ensemble,
                "Freshly initialised models of the init ensemble (seeds seed+1 .. seed+S; 0 = none)");
  c->add_option("--samples", a.settings.samples, "Monte Carlo samples of the simulate prediction (0 = none)");
  c->add_flag("--no-theory", a.no_theory, "Skip the theory prediction");
  c->add_option("--seed", a.settings.seed, "Seed of the Monte Carlo and base of the ensemble's seeds")->transform(sigprop::cli::seed_check());
  a.settings.threads = 0;  // the command line's documented default: every core (the library's is 1)
  c->add_option("--threads", a.settings.threads, "Worker threads (0 = all cores); results do not depend on it");
  c->add_option("--precision", a.precision, "float or double: the model's arithmetic (metrics are summed in double)")
      ->check(CLI::IsMember({"float", "double"}));
  c->add_flag("--table", a.table, "Print the table even when writing files and stdout is not a terminal");
  c->add_flag("--quiet,-q", a.quiet, "Do not print the table");
  return c;
}

}  // namespace sigprop::cli
