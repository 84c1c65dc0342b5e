#include "cli/ode_cmd.hpp"
#include "cli/seed.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <set>

#include <fmt/format.h>

#include "cli/progress.hpp"
#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"

namespace sigprop::cli {

namespace {

// Every column of any profile (the ode kinds have their own columns), at most max_rows rows.
std::string format_columns(const Profile& p, int max_rows) {
  std::string out = fmt::format("{:>6}", "row");
  for (auto& c : p.columns) out += fmt::format(" {:>12}", c.size() > 12 ? c.substr(0, 12) : c);
  out += "\n";
  const int n = p.layers();
  std::set<int> rows;
  if (max_rows <= 0 || max_rows >= n) {
    for (int l = 0; l < n; ++l) rows.insert(l);
  } else {
    for (int i = 0; i < max_rows; ++i) rows.insert(static_cast<int>(std::lround(i * (n - 1.0) / (max_rows - 1))));
  }
  for (int l : rows) {
    out += fmt::format("{:>6}", l);
    for (size_t c = 0; c < p.columns.size(); ++c) {
      const double v = p.rows[l][c];
      out += std::isnan(v) ? fmt::format(" {:>12}", "-") : fmt::format(" {:>12.6g}", v);
    }
    out += "\n";
  }
  return out;
}

}  // namespace

CLI::App* add_ode_command(CLI::App& app, OdeArgs& a) {
  auto* c = app.add_subcommand(
      "ode", "Depth limits: continuum ODE of the kernel recursion, token clustering ODE, shaped-network SDE");
  c->add_option("spec", a.spec_path, "Spec TOML file (MODEL.md §3); built-in default when omitted")
      ->check(CLI::ExistingFile);
  c->add_option("--set", a.sets, "Override a spec key: table.key=value (repeatable, last wins)");
  c->add_option("--kind", a.kind,
                "continuum: L -> infinity limit of the theory recursion (branch_scale 1/sqrt(L)); "
                "clustering: tokens on the sphere under self-attention dynamics; "
                "shaped-sde: kernel SDE of shaped networks at fixed depth/width, with a finite-width check")
      ->check(CLI::IsMember({"continuum", "clustering", "shaped-sde"}));
  c->add_option("--abs-tol", a.abs_tol, "Dormand-Prince absolute tolerance per step (continuum, clustering)");
  c->add_option("--rel-tol", a.rel_tol, "Dormand-Prince relative tolerance per step (continuum, clustering)");
  c->add_option("--max-evals", a.max_evals,
                "Right-hand-side evaluations one Dormand-Prince solve may spend before it stops with an error "
                "(continuum, clustering)")
      ->capture_default_str();
  c->add_option("--attn-samples", a.continuum.attn.samples,
                "continuum: logit draws for 1/sqrt(dh) attention (as sigprop theory)")
      ->check(CLI::Range(2, 100000000));
  c->add_option("--steps", a.continuum.fixed_steps,
                "continuum: RK4 steps over [0, 1] when the attention integral is sampled (qk_scale 1/sqrt(dh))")
      ->check(CLI::Range(1, 10000000));
  c->add_option("--quad-order", a.continuum.quad_order, "continuum: Gauss-Legendre points per piece (tanh, silu)")
      ->check(CLI::Range(8, 400));
  c->add_option("--variant", a.variant, "clustering: sa (softmax-normalised) or usa (unnormalised, 1/n)");
  c->add_option("--beta", a.clustering.beta, "clustering: inverse temperature beta >= 0");
  c->add_option("--t-end", a.clustering.t_end, "clustering: final time");
  c->add_option("--points", a.clustering.points, "clustering: output intervals between 0 and --t-end");
  c->add_flag("--equiangular", a.clustering.equiangular,
              "clustering: start equiangular with correlation input.rho0 (needs width >= tokens); default: random");
  c->add_option("--model", a.model, "shaped-sde: mlp (shaped ReLU) or attn (shaped attention)");
  c->add_option("--shape-c", a.shaped.shape_c, "shaped-sde mlp: slopes 1 +- c/sqrt(width)");
  c->add_option("--gamma2", a.shaped.gamma2, "shaped-sde attn: branch weight gamma^2, skip 1 - gamma^2");
  c->add_option("--tau0", a.shaped.tau0, "shaped-sde attn: logits divided by tau0 sqrt(width)");
  c->add_option("--key-dim", a.shaped.key_dim, "shaped-sde attn: query/key width (0 = width)");
  c->add_option("--paths", a.shaped.paths, "shaped-sde: Euler-Maruyama paths");
  c->add_option("--samples", a.shaped.samples, "shaped-sde: finite-width networks (0 = none)");
  c->add_option("--substeps", a.shaped.substeps, "shaped-sde: Euler-Maruyama steps per layer");
  c->add_option("--seed", a.clustering.seed, "Seed (clustering random start, shaped-sde noise and networks)")->transform(sigprop::cli::seed_check());
  c->add_option("--json", a.json_out, "Write the profile as JSON");
  c->add_option("--csv", a.csv_out, "Write the profile as CSV");
  c->add_option("--rows", a.max_rows, "Rows shown in the terminal table (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_flag("--quiet,-q", a.quiet, "Do not print the table");
  return c;
}

int run_ode(OdeArgs a) {
  StackSpec spec = resolve_spec(a.spec_path, a.sets);
  const ProgressFn progress = progress_line("ode " + a.kind, show_progress() && !a.quiet);
  Profile p;
  std::string head;
  if (a.kind == "continuum") {
    a.continuum.abs_tol = a.abs_tol;
    a.continuum.rel_tol = a.rel_tol;
    a.continuum.max_evals = a.max_evals;
    theory::ContinuumEngine eng(a.continuum);
    eng.set_progress(progress);
    p = eng.run(spec);
    head = fmt::format(
        "sigprop ode --kind continuum: {} blocks, norm={}, {} tokens, grid L = {}, activation {}, "
        "branch_scale {} (a0^2 = {})",
        to_string(spec.blocks), to_string(spec.norm), spec.tokens, spec.depth, to_string(spec.activation),
        spec.branch_scale.str(), p.settings["a0_squared"].get<double>());
  } else if (a.kind == "clustering") {
    a.clustering.abs_tol = a.abs_tol;
    a.clustering.rel_tol = a.rel_tol;
    a.clustering.max_evals = a.max_evals;
    a.clustering.variant = theory::parse_attn_dynamics(a.variant);
    p = theory::clustering_profile(spec, a.clustering, progress);
    head = fmt::format("sigprop ode --kind clustering: {} tokens on S^{}, {} beta = {}, {} start, t in [0, {}]",
                       spec.tokens, spec.width - 1, a.variant, a.clustering.beta,
                       a.clustering.equiangular ? "equiangular" : "random", a.clustering.t_end);
  } else {
    a.shaped.model = theory::parse_shaped_model(a.model);
    a.shaped.seed = a.clustering.seed;
    p = theory::shaped_profile(spec, a.shaped, progress);
    head = fmt::format("sigprop ode --kind shaped-sde: model {}, {} tokens, width n = {}, depth L = {} (t = L/n = {})",
                       a.model, spec.tokens, spec.width, spec.depth, static_cast<double>(spec.depth) / spec.width);
    if (p.extras["last_layer"].contains("ks_D"))
      head += fmt::format("\nlast layer: KS D = {:.4f}, p = {:.3g} (SDE {} paths vs {} networks)",
                          p.extras["last_layer"]["ks_D"].get<double>(), p.extras["last_layer"]["ks_p"].get<double>(),
                          a.shaped.paths, a.shaped.samples);
  }
  if (!a.json_out.empty()) write_file_atomic(a.json_out, p.to_json().dump(2) + "\n");
  if (!a.csv_out.empty()) write_file_atomic(a.csv_out, p.to_csv());
  for (auto& w : p.warnings) fmt::print(stderr, "sigprop: warning: {}\n", w);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  if (!a.quiet && (tty || (a.json_out.empty() && a.csv_out.empty())))
    fmt::print("{}\n{}", head, format_columns(p, a.max_rows));
  return 0;
}

}  // namespace sigprop::cli
