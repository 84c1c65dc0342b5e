#include "cli/spectrum_cmd.hpp"
#include "cli/seed.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "api/internal.hpp"
#include "cli/progress.hpp"
#include "core/error.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"

namespace sigprop::cli {

Grid parse_grid(const std::string& text, const std::string& option) {
  Grid g;
  char c1 = 0, c2 = 0, extra = 0;
  if (std::sscanf(text.c_str(), "%lf%c%lf%c%d%c", &g.lo, &c1, &g.hi, &c2, &g.n, &extra) != 5 || c1 != ':' || c2 != ':')
    throw ConfigError(fmt::format("{}: expected lo:hi:n, got \"{}\"", option, text));
  if (!(std::isfinite(g.lo) && std::isfinite(g.hi) && g.lo < g.hi))
    throw ConfigError(fmt::format("{}: need finite lo < hi, got \"{}\"", option, text));
  if (g.n < 2 || g.n > 10000000) throw ConfigError(fmt::format("{}: n must be in [2, 10000000], got {}", option, g.n));
  return g;
}

std::string density_csv(const Profile& p) {
  if (!p.extras.contains("density"))
    throw ConfigError("--density-csv: this run has no density (residual stacks have no free-probability density; "
                      "use --engine simulate)");
  const auto& d = p.extras["density"];
  std::ostringstream o;
  o << "# sigprop spectrum density, engine=" << p.engine << ", version=" << p.version << "\n";
  o << "# settings: " << p.settings.dump() << "\n";
  o << "# spec: " << spec_to_json(p.spec).dump() << "\n";
  o << "# density of the squared singular values of J_L (layer " << d["layer"].get<int>()
    << "), continuous part; point mass at 0: atom0 = " << fmt::format("{:.17g}", d["atom0"].get<double>()) << "\n";
  const bool se = d.contains("density_se");
  o << "x,density" << (se ? ",density_se" : "") << "\n";
  const auto& x = d["x"];
  for (size_t i = 0; i < x.size(); ++i) {
    o << fmt::format("{:.17g}", x[i].get<double>()) << ",";
    if (!d["density"][i].is_null()) o << fmt::format("{:.17g}", d["density"][i].get<double>());
    if (se) {
      o << ",";
      if (!d["density_se"][i].is_null()) o << fmt::format("{:.17g}", d["density_se"][i].get<double>());
    }
    o << "\n";
  }
  return o.str();
}

CLI::App* add_spectrum_command(CLI::App& app, SpectrumArgs& a) {
  auto* c = app.add_subcommand(
      "spectrum", "Singular values of the input-output Jacobian: free probability (theory) or Monte Carlo (simulate)");
  c->add_option("spec", a.spec_path, "Spec TOML file (MODEL.md §3); built-in default when omitted")
      ->check(CLI::ExistingFile);
  c->add_option("--set", a.sets, "Override a spec key: table.key=value (repeatable, last wins)");
  c->add_option("--engine", a.engine, "theory (infinite width, dense stacks) or simulate (finite width, any stack)");
  c->add_option("--width", a.width, "Width d (same as --set stack.width=d)")->check(CLI::Range(1, 1 << 20));
  c->add_option("--samples", a.mc.samples, "Monte Carlo: independent stacks (default 16)");
  c->add_option("--seed", a.mc.seed, "Monte Carlo: seed of every random stream (the streams of simulate)")->transform(sigprop::cli::seed_check());
  c->add_option("--grid", a.grid, "Density grid lo:hi:n (default: n = 200 points up to mean + 6 sd of the theory)");
  c->add_option("--map", a.mc.map, "Monte Carlo: token (one token's d x d Jacobian) or full (the T d x T d map)");
  c->add_option("--token", a.mc.token, "Monte Carlo: the token of --map token (default: the last)");
  c->add_option("--method", a.mc.method, "Monte Carlo: auto, explicit (dense stacks) or backward (any, small T d)");
  a.mc.threads = 0;  // the command line's documented default: every core (the library's is 1)
  c->add_option("--threads", a.mc.threads, "Monte Carlo: worker threads (0 = all cores); results do not depend on it");
  c->add_option("--panels", a.th.panels, "Theory: Gauss-Legendre panels for the law of phi'(h)^2")
      ->check(CLI::Range(1, 100000));
  c->add_option("--json", a.json_out, "Write the profile (moments per layer, density in extras) as JSON");
  c->add_option("--csv", a.csv_out, "Write the moments per layer as CSV");
  c->add_option("--density-csv", a.density_csv_out, "Write the density table as CSV");
  c->add_option("--rows", a.max_rows, "Layers shown in the terminal table (0 = all)")->check(CLI::NonNegativeNumber);
  c->add_flag("--quiet,-q", a.quiet, "Do not print the table");
  return c;
}

namespace {

std::string moments_table(const Profile& p, int max_rows) {
  std::vector<std::string> cols;
  for (const char* n : {"q", "sv2_mean", "sv2_mean_se", "sv2_var", "sv2_var_se"})
    if (p.has(n)) cols.push_back(n);
  std::string out = fmt::format("{:>6}", "layer");
  for (auto& n : cols) out += fmt::format(" {:>13}", n);
  out += "\n";
  std::set<int> rows;
  const int L = p.layers() - 1;
  if (max_rows <= 0 || L + 1 <= max_rows)
    for (int l = 0; l <= L; ++l) rows.insert(l);
  else
    for (int i = 0; i < max_rows; ++i)
      rows.insert(static_cast<int>(std::lround(static_cast<double>(i) * L / (max_rows - 1))));
  for (int l : rows) {
    out += fmt::format("{:>6}", l);
    for (auto& n : cols) {
      const double v = p.at(l, n);
      out += std::isfinite(v) ? fmt::format(" {:>13.6g}", v) : fmt::format(" {:>13}", "-");
    }
    out += "\n";
  }
  return out;
}

}  // namespace

int run_spectrum(const SpectrumArgs& a) {
  std::vector<std::string> sets = a.sets;
  if (a.width > 0) sets.push_back(fmt::format("stack.width={}", a.width));
  const StackSpec spec = resolve_spec(a.spec_path, sets);
  if (a.engine != "theory" && a.engine != "simulate") {
    const std::string hint = did_you_mean(a.engine, {"theory", "simulate"});
    throw ConfigError(fmt::format("--engine: expected \"theory\" or \"simulate\", got \"{}\"{}", a.engine,
                                  hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
  }
  api::SpectrumSettings ss;
  ss.engine = a.engine;
  if (!a.grid.empty()) {
    const Grid g = parse_grid(a.grid, "--grid");
    ss.grid_lo = g.lo;
    ss.grid_hi = g.hi;
    ss.grid_points = g.n;
  }
  ss.panels = a.th.panels;
  ss.samples = a.mc.samples;
  ss.seed = a.mc.seed;
  ss.map = a.mc.map;
  ss.token = a.mc.token;
  ss.jacobian_method = a.mc.method;
  ss.threads = a.mc.threads;
  api::detail::SpectrumNames names;  // the engines' words; main adds the flag
  names.engine = "--engine";
  names.map = "map";
  names.jacobian_method = "method";
  names.panels = "--panels";
  names.threads = "threads";
  names.grid_lo = "--grid";
  const Profile p = api::detail::run_spectrum(spec, ss, progress_line("spectrum", show_progress() && !a.quiet), names);
  if (!a.json_out.empty()) write_file_atomic(a.json_out, p.to_json().dump(2) + "\n");
  if (!a.csv_out.empty()) write_file_atomic(a.csv_out, p.to_csv());
  if (!a.density_csv_out.empty()) write_file_atomic(a.density_csv_out, density_csv(p));
  for (auto& w : p.warnings) fmt::print(stderr, "sigprop: warning: {}\n", w);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  if (!a.quiet && (tty || (a.json_out.empty() && a.csv_out.empty() && a.density_csv_out.empty()))) {
    fmt::print("sigprop spectrum ({}): {} stack, residual {}, norm {}, activation {}, weights {}, depth {}{}\n", a.engine,
               to_string(spec.blocks), spec.residual ? "true" : "false", to_string(spec.norm),
               to_string(spec.activation), to_string(spec.weights), spec.depth,
               a.engine == "simulate"
                   ? fmt::format(", width {}, {} samples, seed {}, map {}, method {}", spec.width, a.mc.samples,
                                 a.mc.seed, a.mc.map, p.settings["method"].get<std::string>())
                   : std::string());
    fmt::print("sv2 = squared singular values of J_l = dx_l/dx_0: mean and variance per layer\n");
    fmt::print("{}", moments_table(p, a.max_rows));
    if (p.extras.contains("density")) {
      const auto& d = p.extras["density"];
      fmt::print("density of sv2 at layer {}: {} points on [{:.4g}, {:.4g}], point mass at 0: {:.4g} "
                 "(table: --density-csv or --json)\n",
                 d["layer"].get<int>(), d["x"].size(), d["x"].front().get<double>(), d["x"].back().get<double>(),
                 d["atom0"].get<double>());
    }
  }
  return 0;
}

}  // namespace sigprop::cli
