#include "cli/simulate_cmd.hpp"
#include "cli/seed.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "cli/progress.hpp"
#include "cli/table.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "mc/backends.hpp"

namespace sigprop::cli {

CLI::App* add_simulate_command(CLI::App& app, SimulateArgs& a) {
  auto* c = app.add_subcommand("simulate", "Finite-width Monte Carlo of every metric per layer (mean and s.e.)");
  c->add_option("spec", a.spec_path, "Spec TOML file (MODEL.md §3); built-in default when omitted")
      ->check(CLI::ExistingFile);
  c->add_option("--set", a.sets, "Override a spec key: table.key=value (repeatable, last wins)");
  c->add_option("--samples", a.settings.samples, "Independent random stacks (weights, input, Delta_L)")->required();
  c->add_option("--seed", a.settings.seed, "Seed of every random stream")->transform(sigprop::cli::seed_check())->required();
  c->add_option("--backend", a.settings.backend,
                "Backend: reference (double precision, plain loops), cpu (Eigen GEMMs, float or double) or cuda "
                "(GPU, batched over samples, float or tf32; the run-time plug-in libsigprop_cuda.so of builds with "
                "SIGPROP_ENABLE_CUDA, found beside the executable, in ../lib, or at $SIGPROP_CUDA_PLUGIN)");
  a.settings.precision.clear();  // the backend's own default unless given
  c->add_option("--precision", a.settings.precision,
                "float or double for cpu (default double; the reference is double only), float or tf32 for cuda "
                "(default float)");
  a.settings.threads = 0;  // the command line's documented default: every core (the library's is 1)
  c->add_option("--threads", a.settings.threads, "Worker threads (0 = all cores); results do not depend on it");
  c->add_option("--weights-sampling", a.settings.weights_sampling,
                "Gaussian weight matrices: explicit (every entry drawn, O(T d^2) per layer) or conditional (only the "
                "projections on the T input and cotangent rows, equal in law, O(T^2 d)); default: conditional for "
                "reference/cpu when T < min(fan_in, fan_out), else explicit (the profile's settings say which)");
  c->add_option("--input-kernel", a.settings.input_kernel,
                "Input X_0: sampled (default, MODEL.md: Gaussian, its kernel off K0 by O(1/sqrt d) per sample) or exact "
                "(the same Gaussians orthonormalised so that every sample's X_0 X_0^T / d is K0 exactly; reference/cpu "
                "only, needs width >= tokens + 1)");
  c->add_option("--json", a.json_out, "Write the profile as JSON");
  c->add_option("--csv", a.csv_out, "Write the profile as CSV");
  c->add_option("--rows", a.max_rows, "Layers shown in the terminal table (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_flag("--quiet,-q", a.quiet, "Do not print the table");
  return c;
}

int run_simulate(const SimulateArgs& a) {
  StackSpec spec = resolve_spec(a.spec_path, a.sets);
  sim::SimSettings settings = a.settings;
  if (settings.precision.empty()) settings.precision = sim::default_precision(settings.backend);
  // The library never reads the environment: the CUDA plug-in's path override is the CLI's.
  if (const char* plugin = std::getenv("SIGPROP_CUDA_PLUGIN"); plugin != nullptr) settings.cuda_plugin = plugin;
  sim::MonteCarloEngine eng(settings);  // checks backend, samples, threads before any work
  eng.set_progress(progress_line("simulate", show_progress() && !a.quiet));
  Profile p = eng.run(spec);
  if (!a.json_out.empty()) write_file_atomic(a.json_out, p.to_json().dump(2) + "\n");
  if (!a.csv_out.empty()) write_file_atomic(a.csv_out, p.to_csv());
  for (auto& w : p.warnings) fmt::print(stderr, "sigprop: warning: {}\n", w);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  if (!a.quiet && (tty || (a.json_out.empty() && a.csv_out.empty()))) {
    fmt::print(
        "sigprop simulate: {} blocks, norm={} ({}), {} tokens, width {}, {} heads, depth {}, activation {}, "
        "mask {}, branch_scale {}, qk_scale {}; {} samples, seed {}, backend {} ({}), {} weights{}\n",
        to_string(spec.blocks), to_string(spec.norm), to_string(spec.norm_type), spec.tokens, spec.width, spec.heads,
        spec.depth, to_string(spec.activation), to_string(spec.mask), spec.branch_scale.str(), to_string(spec.qk_scale),
        a.settings.samples, a.settings.seed, a.settings.backend, settings.precision,
        p.settings.value("weights_sampling", std::string("explicit")),
        p.settings.contains("input_kernel") ? ", exact input kernel" : "");
    fmt::print("{}", format_table(p, a.max_rows,
                                  fmt::format("Monte Carlo standard error over {} samples", a.settings.samples)));
  }
  return 0;
}

}  // namespace sigprop::cli
