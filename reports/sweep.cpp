#include "reports/sweep.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <exception>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/engine.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "sigprop/version.hpp"
#include "mc/backends.hpp"
#include "mc/engine.hpp"
#include "reports/atlas.hpp"
#include "sim/input.hpp"  // check_input_kernel
#include "sim/jacobian.hpp"
#include "theory/clustering.hpp"
#include "theory/continuum.hpp"
#include "theory/engine.hpp"
#include "theory/shaped_sde.hpp"
#include "theory/spectrum.hpp"
#include "validate/measure.hpp"

namespace sigprop::reports {
namespace fs = std::filesystem;
namespace {

std::string slugify(const std::string& s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u))
      out += static_cast<char>(std::tolower(u));
    else if (c == '.')
      out += 'p';  // 0.5 -> 0p5, keeps numbers readable
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "x" : out;
}

/// FNV-1a, 64 bit: stable across platforms and runs (std::hash is not).
std::string fnv1a_hex(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", h);
}

StackSpec build_spec(const ReportConfig& cfg, const std::vector<std::pair<std::string, std::string>>& sets,
                     const std::string& label) {
  toml::table root = toml::parse(std::string_view(cfg.base_toml), std::string_view("<base spec>"));
  std::string where = fmt::format("{}: sweep cell \"{}\"", cfg.origin, label);
  for (auto& [key, lit] : sets) {
    auto dot = key.find('.');
    std::string table = key.substr(0, dot), name = dot == std::string::npos ? "" : key.substr(dot + 1);
    if (dot == std::string::npos || name.empty() || (table != "stack" && table != "init" && table != "input"))
      throw ConfigError(fmt::format("{}: \"{}\" is not a spec key (stack.*, init.*, input.*; MODEL.md §3)", where, key));
    toml::table v = toml::parse("v = " + lit);
    root.get_as<toml::table>(table)->insert_or_assign(name, *v.get("v"));
  }
  std::ostringstream text;
  text << root;
  try {
    return parse_spec_toml(text.str(), where);
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    if (msg.rfind(where, 0) == 0) throw;
    throw ConfigError(fmt::format("{}: {}", where, msg));  // enum errors come without the origin
  }
}

/// "<bytes>@<mtime ticks>" of a file, or of every file directly in a folder (a Hugging Face
/// model); "" when it cannot be read (the engine then names the problem when it runs).
std::string file_stamp(const std::string& path) {
  std::error_code ec;
  auto one = [&](const fs::path& p) {
    const auto size = fs::file_size(p, ec);
    const auto t = fs::last_write_time(p, ec).time_since_epoch().count();
    return ec ? std::string() : fmt::format("{}@{}", size, static_cast<long long>(t));
  };
  if (!fs::is_directory(path, ec)) return one(path);
  std::vector<std::string> parts;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) parts.push_back(e.path().filename().string() + ":" + one(e.path()));
  std::sort(parts.begin(), parts.end());
  return fmt::format("{}", fmt::join(parts, ","));
}

/// The hashed settings of an engine other than theory and simulate on one cell, and its rough
/// cost (seconds on one core); throws ConfigError (without the cell) for a spec it cannot run.
nlohmann::json extra_engine_settings(const ReportConfig& cfg, EngineKind kind, const StackSpec& spec, double& cost) {
  const double T = spec.tokens, L = spec.depth, d = spec.width;
  switch (kind) {
    case EngineKind::Ode: {
      (void)theory::continuum_a02(spec);  // names stack.branch_scale / stack.norm / stack.residual
      const auto& s = cfg.ode.settings;
      const bool sampled = spec.has_attn() && !theory::attention_uniform(spec, s.attn);
      cost = (T * T / 256.0) * (sampled ? 0.05 * s.fixed_steps * s.attn.samples / 1024.0 : 0.05);
      return {{"abs_tol", s.abs_tol},    {"rel_tol", s.rel_tol},       {"max_evals", s.max_evals},
              {"attn_samples", s.attn.samples}, {"attn_seed", s.attn.seed}, {"steps", s.fixed_steps},
              {"quad_order", s.quad_order}};
    }
    case EngineKind::Sde: {
      const auto& s = cfg.sde.settings;
      if (spec.width < spec.tokens)
        throw ConfigError(fmt::format("stack.width = {}: the shaped networks need width >= tokens ({})", spec.width,
                                      spec.tokens));
      // Euler-Maruyama: T^2 per path, substep and layer; a network: T d^2 per layer.
      cost = 1e-8 * L * (s.paths * T * T * s.substeps + s.samples * T * d * d) + 1e-3;
      return {{"seed", s.seed},   {"model", theory::to_string(s.model)}, {"shape_c", s.shape_c},
              {"gamma2", s.gamma2}, {"tau0", s.tau0},                    {"key_dim", s.key_dim},
              {"paths", s.paths}, {"samples", s.samples},                {"substeps", s.substeps}};
    }
    case EngineKind::Clustering: {
      const auto& s = cfg.clustering.settings;
      if (spec.tokens < 2) throw ConfigError("stack.tokens: the clustering flow needs at least 2 tokens");
      if (spec.width < 2) throw ConfigError("stack.width: the clustering flow needs width >= 2");
      cost = 1e-6 * s.points * T * T * d + 1e-3;
      return {{"abs_tol", s.abs_tol}, {"rel_tol", s.rel_tol},   {"max_evals", s.max_evals},
              {"seed", s.seed},       {"variant", s.variant == theory::AttnDynamics::SA ? "sa" : "usa"},
              {"beta", s.beta},       {"t_end", s.t_end},       {"points", s.points},
              {"equiangular", s.equiangular}};
    }
    case EngineKind::Spectrum: {
      theory::check_spectrum_spec(spec);  // names stack.blocks / stack.norm / init.weights
      const auto& s = cfg.spectrum.settings;
      cost = 1e-4 * cfg.spectrum.grid_points * (1 + L / 16.0);
      return {{"panels", s.panels}, {"panel_order", s.panel_order}, {"eta_rel", s.eta_rel},
              {"max_newton", s.max_newton}, {"grid_points", cfg.spectrum.grid_points}};
    }
    case EngineKind::SpectrumSimulate: {
      const auto& s = cfg.spectrum_simulate.settings;
      (void)sim::resolve_jacobian_method(spec, s);  // names the option or key it cannot run
      const double n = s.map == "full" ? T * d : d;
      cost = 1e-9 * s.samples * L * n * n * n + 1e-3;
      return {{"samples", s.samples}, {"seed", s.seed},       {"map", s.map},
              {"token", s.token},     {"method", s.method},   {"grid_points", cfg.spectrum_simulate.grid_points}};
    }
    case EngineKind::Measure: {
      const auto& m = cfg.measure;
      cost = 1e-7 * static_cast<double>(m.tokens) * L * d * d / 64.0 + 0.01;
      // The files enter the hash by size and modification time: a retrained checkpoint is measured again.
      return {{"checkpoint", m.checkpoint}, {"checkpoint_stamp", file_stamp(m.checkpoint)},
              {"corpus", m.corpus},         {"corpus_stamp", file_stamp(m.corpus)},
              {"tokens", m.tokens},         {"seq_len", m.seq_len},
              {"precision", m.precision}};
    }
    case EngineKind::Theory:
    case EngineKind::Simulate: break;
  }
  throw Error("reports: extra_engine_settings called for theory or simulate");
}

/// The density grid of the spectrum engines on spec (as `sigprop spectrum` sizes it when no grid
/// is given): n points up to mean + 6 sd of the theory's J_L J_L^T, or, for a stack the theory
/// does not cover, up to 1.25 x the largest squared singular value of a pilot sample.
std::vector<double> spectrum_grid(const StackSpec& spec, const theory::SpectrumSettings& th,
                                  const sim::JacobianSettings* mc, int n) {
  try {
    theory::check_spectrum_spec(spec);
    return theory::default_spectrum_grid(theory::spectrum_moments(spec, th), n);
  } catch (const ConfigError&) {
    if (mc == nullptr) throw;
  }
  sim::JacobianSettings one = *mc;
  one.samples = 1;
  const sim::JacobianSample pilot = sim::jacobian_sample(spec, one, 0);
  const double hi = pilot.sv2.empty() ? 1.0 : 1.25 * pilot.sv2.back();
  std::vector<double> grid;
  for (int i = 0; i < n; ++i) grid.push_back(hi * (i + 1) / n);
  return grid;
}

/// The engine of one job, configured from the report's [engines.*] table; `threads` for the
/// Monte Carlo engines (simulate, spectrum_simulate, measure).
std::unique_ptr<Engine> make_engine(const ReportConfig& cfg, const Job& job, int threads) {
  switch (job.engine) {
    case EngineKind::Theory: {
      theory::TheorySettings t = cfg.theory.settings;
      t.attn.seed = job.settings.value("attn_seed", t.attn.seed);  // an atlas keys it by configuration
      t.attn.samples = job.settings.value("attn_samples", t.attn.samples);  // an atlas's refinement raises it
      return std::make_unique<theory::TheoryEngine>(t);
    }
    case EngineKind::Ode: return std::make_unique<theory::ContinuumEngine>(cfg.ode.settings);
    case EngineKind::Sde: return std::make_unique<theory::ShapedSdeEngine>(cfg.sde.settings);
    case EngineKind::Clustering: return std::make_unique<theory::ClusteringEngine>(cfg.clustering.settings);
    case EngineKind::Spectrum:
      return std::make_unique<theory::SpectrumEngine>(
          spectrum_grid(job.spec, cfg.spectrum.settings, nullptr, cfg.spectrum.grid_points), cfg.spectrum.settings);
    case EngineKind::SpectrumSimulate: {
      sim::JacobianSettings js = cfg.spectrum_simulate.settings;
      js.threads = threads;
      return std::make_unique<sim::SpectrumSimulateEngine>(
          js, spectrum_grid(job.spec, theory::SpectrumSettings{}, &js, cfg.spectrum_simulate.grid_points));
    }
    case EngineKind::Measure: {
      const MeasureRun& m = cfg.measure;
      const validate::MeasureSettings ms{m.tokens, m.seq_len, threads, m.checkpoint, m.corpus};
      if (m.precision == "double")
        return validate::MeasureEngine<double>::from_files(m.checkpoint, m.corpus, ms, "engines.measure.checkpoint",
                                                           "engines.measure.corpus");
      return validate::MeasureEngine<float>::from_files(m.checkpoint, m.corpus, ms, "engines.measure.checkpoint",
                                                        "engines.measure.corpus");
    }
    case EngineKind::Simulate: {
      sim::SimSettings s;
      s.samples = job.settings.value("samples", cfg.simulate.samples);  // an atlas sets it per width
      s.seed = job.settings.value("seed", cfg.simulate.seed);  // an atlas keys it by configuration and width
      s.first_sample = job.settings.value("first_sample", 0);   // an atlas's refinement continues the streams
      s.backend = cfg.simulate.backend;
      s.precision = cfg.simulate.precision;
      s.input_kernel = cfg.simulate.input_kernel;
      s.threads = threads;
      return std::make_unique<sim::MonteCarloEngine>(s);
    }
  }
  throw Error("reports: unknown engine kind");
}

}  // namespace

std::string to_string(EngineKind e) {
  switch (e) {
    case EngineKind::Theory: return "theory";
    case EngineKind::Simulate: return "simulate";
    case EngineKind::Ode: return "ode";
    case EngineKind::Sde: return "sde";
    case EngineKind::Clustering: return "clustering";
    case EngineKind::Spectrum: return "spectrum";
    case EngineKind::SpectrumSimulate: return "spectrum_simulate";
    case EngineKind::Measure: return "measure";
  }
  throw Error("reports: unknown engine kind");
}

const std::vector<EngineKind>& all_engine_kinds() {
  static const std::vector<EngineKind> kinds{EngineKind::Theory,     EngineKind::Simulate, EngineKind::Ode,
                                             EngineKind::Sde,        EngineKind::Clustering, EngineKind::Spectrum,
                                             EngineKind::SpectrumSimulate, EngineKind::Measure};
  return kinds;
}

bool engine_enabled(const ReportConfig& cfg, EngineKind kind) {
  switch (kind) {
    case EngineKind::Theory: return cfg.theory.enabled;
    case EngineKind::Simulate: return cfg.simulate.enabled;
    case EngineKind::Ode: return cfg.ode.enabled;
    case EngineKind::Sde: return cfg.sde.enabled;
    case EngineKind::Clustering: return cfg.clustering.enabled;
    case EngineKind::Spectrum: return cfg.spectrum.enabled;
    case EngineKind::SpectrumSimulate: return cfg.spectrum_simulate.enabled;
    case EngineKind::Measure: return cfg.measure.enabled;
  }
  return false;
}

std::vector<Cell> expand_cells(const ReportConfig& cfg) {
  std::vector<Cell> cells;
  if (cfg.atlas.enabled) {  // the atlas's sample instead of a grid
    const std::vector<AtlasDraw> draws = atlas_draws(cfg.atlas);
    const int digits = static_cast<int>(fmt::format("{}", draws.size() - 1).size());
    // The theory's spec has the largest width; it depends on the width only through d_h = head_dim
    // (heads = width / head_dim), so with streams "by-width" it gets a nominal width that does not
    // depend on atlas.widths, and neither does its hash.
    const int hd = cfg.atlas.head_dim;
    const int w = cfg.atlas.streams == "by-width" ? hd * std::clamp((1 << 20) / hd, 1, 64) : cfg.atlas.widths.back();
    for (const AtlasDraw& d : draws) {
      Cell cell;
      cell.index = static_cast<int>(cells.size());
      cell.slug = fmt::format("c{:0{}d}", cell.index, digits);
      cell.label = fmt::format("{}: {}", cell.slug, d.label);
      auto sets = d.sets;
      sets.emplace_back("stack.width", fmt::format("{}", w));
      sets.emplace_back("stack.heads", fmt::format("{}", w / cfg.atlas.head_dim));
      cell.spec = build_spec(cfg, sets, cell.label);
      cells.push_back(std::move(cell));
    }
    return cells;
  }
  const int nv = cfg.variants.empty() ? 1 : static_cast<int>(cfg.variants.size());
  size_t combos = 1;  // saturating: many long axes must not wrap into a small count
  for (auto& ax : cfg.axes) combos = sat_mul({combos, ax.values.size()});
  if (sat_mul({combos, static_cast<size_t>(nv)}) > 100000) throw ConfigError(fmt::format("{}: the sweep has {} cells (limit 100000)", cfg.origin, combos * nv));
  std::set<std::string> slugs;
  for (int v = 0; v < nv; ++v) {
    for (size_t c = 0; c < combos; ++c) {
      Cell cell;
      cell.index = static_cast<int>(cells.size());
      cell.variant = cfg.variants.empty() ? -1 : v;
      std::vector<std::pair<std::string, std::string>> sets;
      std::vector<std::string> parts, slug_parts;
      if (cell.variant >= 0) {
        sets = cfg.variants[v].sets;
        parts.push_back(cfg.variants[v].label);
        slug_parts.push_back(slugify(cfg.variants[v].label));
      }
      // Last axis varies fastest.
      size_t rest = c;
      cell.axis_value.assign(cfg.axes.size(), 0);
      for (size_t a = cfg.axes.size(); a-- > 0;) {
        cell.axis_value[a] = static_cast<int>(rest % cfg.axes[a].values.size());
        rest /= cfg.axes[a].values.size();
      }
      for (size_t a = 0; a < cfg.axes.size(); ++a) {
        const auto& ax = cfg.axes[a];
        sets.emplace_back(ax.key, ax.values[cell.axis_value[a]]);
        std::string short_key = ax.key.substr(ax.key.find('.') + 1);
        parts.push_back(fmt::format("{}={}", short_key, ax.labels[cell.axis_value[a]]));
        slug_parts.push_back(slugify(short_key) + "-" + slugify(ax.labels[cell.axis_value[a]]));
      }
      cell.label = parts.empty() ? "base spec" : fmt::format("{}", fmt::join(parts, ", "));
      std::string slug = slug_parts.empty() ? "base" : fmt::format("{}", fmt::join(slug_parts, "_"));
      if (!slugs.insert(slug).second) slug += fmt::format("_{}", cell.index);  // labels that slugify alike
      slugs.insert(slug);
      cell.slug = slug;
      cell.spec = build_spec(cfg, sets, cell.label);
      cells.push_back(std::move(cell));
    }
  }
  return cells;
}

namespace {

/// The sampled theory's seed of cell c: engines.theory.seed, plus the configuration's index in an
/// atlas with independent streams (reports/config.hpp AtlasConfig::streams).
uint64_t theory_seed(const ReportConfig& cfg, const Cell& c) {
  const uint64_t base = cfg.theory.settings.attn.seed;
  if (!cfg.atlas.enabled || cfg.atlas.streams == "shared") return base;
  return base + static_cast<uint64_t>(c.index);
}

/// The Monte Carlo seed of cell c at `width`: engines.simulate.seed, or in an atlas with
/// independent streams seed + index * (number of widths) + (the width's position), distinct for
/// every (configuration, width) so that no two Monte Carlo jobs share a random stream.
uint64_t simulate_seed(const ReportConfig& cfg, const Cell& c, int width) {
  const uint64_t base = cfg.simulate.seed;
  if (!cfg.atlas.enabled || cfg.atlas.streams == "shared") return base;
  // by-width: widths are at most 2^20 (config.cpp), so (configuration, width) -> seed is one-to-one.
  if (cfg.atlas.streams == "by-width")
    return base + (static_cast<uint64_t>(c.index) << 21) + static_cast<uint64_t>(width);
  const auto& w = cfg.atlas.widths;
  const auto pos = static_cast<uint64_t>(std::find(w.begin(), w.end(), width) - w.begin());
  return base + static_cast<uint64_t>(c.index) * static_cast<uint64_t>(w.size()) + pos;
}

}  // namespace

std::vector<Job> make_jobs(const ReportConfig& cfg, const std::vector<Cell>& cells) {
  std::vector<Job> jobs;
  for (const Cell& c : cells) {
    const double T = c.spec.tokens, L = c.spec.depth;
    if (cfg.theory.enabled) {
      Job j;
      j.cell = c.index;
      j.label = c.label;
      j.engine = EngineKind::Theory;
      j.spec = c.spec;
      const auto& s = cfg.theory.settings;
      j.settings = {{"attn_samples", s.attn.samples},
                    {"attn_seed", theory_seed(cfg, c)},
                    {"error_batches", s.error_batches},
                    {"quad_order", s.quad_order}};
      if (s.attn.finite_dh) j.settings["finite_dh"] = true;  // only when on: older cells keep their keys
      bool sampled = c.spec.has_attn() && !theory::attention_uniform(c.spec, s.attn);
      // Measured: ~0.05 s per layer at T = 16 with 1024 logit draws, ~1 ms without sampling.
      j.cost = L * (T * T / 256.0) *
               (sampled ? 0.05 * s.attn.samples / 1024.0 * (s.error_batches > 0 ? 2.0 : 1.0) : 0.001);
      jobs.push_back(std::move(j));
    }
    // An atlas runs the Monte Carlo at each of its widths (H = d / head_dim), a report at one.
    struct Size {
      int width, heads, samples;
    };
    std::vector<Size> sizes{{cfg.simulate.width, cfg.simulate.heads, cfg.simulate.samples}};
    if (cfg.atlas.enabled) {
      sizes.clear();
      const auto& a = cfg.atlas;
      for (size_t i = 0; i < a.widths.size(); ++i)
        sizes.push_back({a.widths[i], a.widths[i] / a.head_dim, a.samples.empty() ? cfg.simulate.samples : a.samples[i]});
    }
    for (auto [width, heads, samples] : sizes) {
      if (!cfg.simulate.enabled) break;
      Job j;
      j.cell = c.index;
      j.label = cfg.atlas.enabled ? fmt::format("{} (d = {})", c.label, width) : c.label;
      j.engine = EngineKind::Simulate;
      j.spec = c.spec;
      const auto& s = cfg.simulate;
      if (width > 0) j.spec.width = width;
      if (heads > 0) j.spec.heads = heads;
      try {
        j.spec.validate();
        if (s.input_kernel == "exact") sim::check_input_kernel(j.spec, sim::InputKernel::Exact);
      } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("{}: sweep cell \"{}\" with engines.simulate width/heads{}: {}", cfg.origin,
                                      c.label, s.input_kernel == "exact" ? "/input_kernel" : "", e.what()));
      }
      const auto sampling = sim::resolve_weight_sampling(j.spec, s.backend, "").sampling;
      j.settings = {{"samples", samples},
                    {"seed", simulate_seed(cfg, c, width)},
                    {"backend", s.backend},
                    {"precision", s.precision},
                    {"weights_sampling", sim::to_string(sampling)}};
      // Hashed only when exact, so that the cells of existing reports keep their hashes.
      if (s.input_kernel != "sampled") j.settings["input_kernel"] = s.input_kernel;
      double d = j.spec.width;
      if (cfg.atlas.enabled && sampling == sim::WeightSampling::Conditional)
        // Fitted (least squares in the log) to the 214 float jobs of the 64-configuration atlas's
        // first pass whose times its run logs give (portable build, one core each, two at a time):
        // 13.4 ms per sample and layer at d = 1024, T = 16 for attn+mlp, times 0.36 for attention
        // alone and 0.51 for the MLP alone, growing like d^1.07 (d = 1024 to 4096) and T^1.43
        // (T = 4 to 64); the jobs scatter by a factor 1.5 about it. Jobs that fall back to double
        // took ~10 times this (1.2 to 25; see atlas.cpp's refinement pricing).
        j.cost = samples * L * 0.0134 * std::pow(d / 1024.0, 1.07) * std::pow(T / 16.0, 1.43) *
                 (!j.spec.has_mlp() ? 0.36 : !j.spec.has_attn() ? 0.51 : 1.0);
      else  // Measured (Eigen, float, one core): ~2.6 ms per sample and layer at d = 64, T = 16.
        j.cost = samples * L * 2.6e-3 * (d / 64.0) * (d / 64.0) * (T / 16.0) * (s.backend == "reference" ? 1.5 : 1.0);
      jobs.push_back(std::move(j));
    }
    // The other engines: one job per cell each, on the cell's spec. A spec an engine cannot run
    // fails here, before any work starts, naming the cell and the engine's table.
    for (EngineKind kind : all_engine_kinds()) {
      if (kind == EngineKind::Theory || kind == EngineKind::Simulate || !engine_enabled(cfg, kind)) continue;
      Job j;
      j.cell = c.index;
      j.label = c.label;
      j.engine = kind;
      j.spec = c.spec;
      try {
        j.settings = extra_engine_settings(cfg, kind, c.spec, j.cost);
      } catch (const ConfigError& e) {
        throw ConfigError(
            fmt::format("{}: sweep cell \"{}\" with [engines.{}]: {}", cfg.origin, c.label, to_string(kind), e.what()));
      }
      jobs.push_back(std::move(j));
    }
  }
  for (Job& j : jobs) finish_job(cfg, cells, j);
  return jobs;
}

void finish_job(const ReportConfig& cfg, const std::vector<Cell>& cells, Job& j) {
  nlohmann::json id = {{"engine", to_string(j.engine)},
                       {"spec", spec_to_json(j.spec)},
                       {"settings", j.settings},
                       {"version", kVersion}};
  switch (j.engine) {  // the theory family's numerics revision: fixed engines do not reuse old cells
    case EngineKind::Theory:
    case EngineKind::Ode:
    case EngineKind::Clustering:
    case EngineKind::Spectrum: id["theory_numerics"] = theory::kNumericsRevision; break;
    case EngineKind::Simulate:  // from revision 2 on: the cells of revision 1 keep their hashes
      if (sim::kNumericsRevision > 1) id["sim_numerics"] = sim::kNumericsRevision;
      break;
    default: break;
  }
  j.hash = fnv1a_hex(id.dump());
  std::string stem = "cells/" + cells[j.cell].slug + "." + to_string(j.engine);
  if (cfg.atlas.enabled && j.engine == EngineKind::Simulate) stem += fmt::format("-d{}", j.spec.width);
  // A run that continues another's random streams (an atlas's refinement) from sample k.
  if (j.settings.contains("first_sample")) stem += fmt::format("-s{}", j.settings["first_sample"].get<int>());
  // A theory run with K times the logit draws (an atlas's refinement).
  if (j.engine == EngineKind::Theory && j.settings.contains("refinement"))
    stem += fmt::format("-x{}", j.settings["refinement"].get<int>());
  j.json = stem + ".json";
  j.csv = stem + ".csv";
  j.timing = stem + ".timing.json";
}

bool job_done(const fs::path& out, const Job& job) {
  std::error_code ec;
  if (!fs::exists(out / job.json, ec) || !fs::exists(out / job.csv, ec)) return false;
  try {
    std::ifstream in(out / job.json);
    nlohmann::json j = nlohmann::json::parse(in);
    return j.at("extras").at("report_cell").at("hash").get<std::string>() == job.hash;
  } catch (const std::exception&) {
    return false;  // unreadable or from another config: recompute
  }
}

double measured_cost(const fs::path& out, const Job& job) {
  constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  std::error_code ec;
  if (!fs::exists(out / job.timing, ec)) return kNone;
  try {
    std::ifstream in(out / job.timing);
    const nlohmann::json t = nlohmann::json::parse(in);
    if (t.at("hash").get<std::string>() != job.hash) return kNone;  // left by another config
    if (const auto cpu = t.find("cpu_seconds"); cpu != t.end()) {
      const double c = cpu->get<double>();
      return c >= 0 ? c : kNone;
    }
    const double secs = t.at("seconds").get<double>();
    const int threads = t.at("threads").get<int>();
    return secs >= 0 && threads >= 1 ? secs * threads : kNone;
  } catch (const std::exception&) {
    return kNone;  // unreadable: the cost model prices the job instead
  }
}

Profile load_job(const fs::path& out, const Job& job) {
  Profile p = read_profile_json(out / job.json);
  if (!p.extras.contains("report_cell") || p.extras["report_cell"].value("hash", "") != job.hash)
    throw IoError(fmt::format("{}: profile does not match the sweep cell (hash {}); rerun the report",
                              (out / job.json).string(), job.hash));
  return p;
}

namespace {

/// Seconds of CPU time on `clock` (CLOCK_THREAD_CPUTIME_ID: the calling thread's;
/// CLOCK_PROCESS_CPUTIME_ID: every thread of the process); NaN where the clock is unavailable.
double cpu_seconds(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

std::vector<int> deal_to_ranks(const std::vector<double>& costs, int ranks) {
  if (ranks < 1) throw Error(fmt::format("deal_to_ranks: ranks must be >= 1, got {}", ranks));
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  std::vector<size_t> count(static_cast<size_t>(ranks), 0);
  std::vector<int> rank_of(costs.size());
  for (size_t i = 0; i < costs.size(); ++i) {
    size_t r = 0;
    for (size_t k = 1; k < load.size(); ++k)
      if (load[k] < load[r] || (load[k] == load[r] && count[k] < count[r])) r = k;
    const double c = costs[i];
    load[r] += std::isfinite(c) && c > 0 ? c : 0.0;
    ++count[r];
    rank_of[i] = static_cast<int>(r);
  }
  return rank_of;
}

RunStats run_jobs(const ReportConfig& cfg, const std::vector<Job>& jobs, const fs::path& out, const RunOptions& opt) {
  RunStats st;
  st.total = static_cast<int>(jobs.size());
  if (opt.ranks < 1 || opt.rank < 0 || opt.rank >= opt.ranks) throw Error("run_jobs: bad rank/ranks");
  // Longest first (better balance across threads and ranks); ranks split this fixed order,
  // not the pending list, so that no rank depends on when another one wrote a file.
  std::vector<int> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return jobs[a].cost > jobs[b].cost; });
  // Dealt over all jobs, done or not: a rank's share must not depend on which files another rank
  // has written by the time it looks.
  std::vector<double> sorted_costs(order.size());
  for (size_t i = 0; i < order.size(); ++i) sorted_costs[i] = jobs[order[i]].cost;
  const std::vector<int> rank_of = deal_to_ranks(sorted_costs, opt.ranks);
  std::vector<int> mine;
  for (size_t i = 0; i < order.size(); ++i) {
    const Job& j = jobs[order[i]];
    if (job_done(out, j)) {
      ++st.skipped;
      continue;
    }
    if (rank_of[i] == opt.rank) mine.push_back(order[i]);
  }
  st.assigned = static_cast<int>(mine.size());
  if (mine.empty()) return st;

  std::error_code ec;
  fs::create_directories(out / "cells", ec);
  if (ec) throw IoError(fmt::format("{}: cannot create folder: {}", (out / "cells").string(), ec.message()));

  double total_cost = 0;
  for (int i : mine) total_cost += jobs[i].cost;
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr first_error;
  double done_cost = 0;
  int done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  // Cancellation through opt.progress: set under mu, read by every job's engine at its next check.
  std::atomic<bool> cancelled{false};
  double shown = 0;  // last fraction reported (jobs run in parallel: kept monotone)
  // Reports (done + f) / assigned, f the running job's own fraction; call with mu held.
  auto report = [&](double f, std::string_view message) {
    if (!opt.progress || cancelled) return;
    shown = std::max(shown, std::min(1.0, (done + f) / st.assigned));
    if (!opt.progress(shown, message)) cancelled = true;
  };

  const int nthreads = std::max(1, std::min<int>(opt.jobs, static_cast<int>(mine.size())));
  auto worker = [&] {
    for (;;) {
      if ((opt.stop && opt.stop->load()) || cancelled) return;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (first_error) return;
      }
      size_t k = next.fetch_add(1);
      if (k >= mine.size()) return;
      const Job& job = jobs[mine[k]];
      // What the job costs in core-seconds is its CPU time: the worker thread's when the job runs
      // on it alone (a theory job, or a Monte Carlo one with sim_threads = 1: no thread pool, no
      // OpenMP runtime), the process's when it runs one job at a time; else wall x threads. A niced
      // run beside other work (a CI run, another rank) then prices its jobs as if it had the cores.
      const int threads = job.engine == EngineKind::Simulate ? std::max(1, opt.sim_threads) : 1;
      const clockid_t cpu_clock = threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID;
      const bool cpu_timed = threads == 1 || nthreads == 1;
      try {
        auto start = std::chrono::steady_clock::now();
        const double cpu_start = cpu_timed ? cpu_seconds(cpu_clock) : 0.0;
        const ProgressFn job_progress = [&](double f, std::string_view m) {
          std::lock_guard<std::mutex> lk(mu);
          report(f, fmt::format("{} ({}): {}", job.label, to_string(job.engine), m));
          return !cancelled;
        };
        const std::unique_ptr<Engine> eng = make_engine(cfg, job, std::max(1, opt.sim_threads));
        eng->set_progress(job_progress);
        Profile p = eng->run(job.spec);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double cpu = cpu_timed ? cpu_seconds(cpu_clock) - cpu_start : std::numeric_limits<double>::quiet_NaN();
        p.extras["report_cell"] = {{"hash", job.hash}, {"label", job.label}, {"engine_settings", job.settings}};
        // What the job took (an atlas's refinement is priced with it), beside the cell: the cell
        // itself stays the same bytes whoever runs it, with however many threads.
        nlohmann::json timing{{"hash", job.hash}, {"seconds", std::round(secs * 1000) / 1000}, {"threads", threads}};
        if (std::isfinite(cpu) && cpu >= 0) timing["cpu_seconds"] = std::round(cpu * 1000) / 1000;
        write_file_atomic(out / job.timing, timing.dump() + "\n");
        write_file_atomic(out / job.csv, p.to_csv());
        write_file_atomic(out / job.json, p.to_json().dump(1) + "\n");  // written last: marks the job done
        std::lock_guard<std::mutex> lk(mu);
        ++done;
        done_cost += job.cost;
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double left = done_cost > 0 ? elapsed * (total_cost - done_cost) / done_cost : 0.0;
        if (opt.on_done) opt.on_done(job, secs, done, st.assigned, left);
        report(0.0, fmt::format("{} cells of {} done", done, st.assigned));
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (cancelled) return;  // the running job stopped: its profile is discarded, nothing was written
        if (!first_error) first_error = std::current_exception();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nthreads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
  if (cancelled)
    throw CancelledError(fmt::format("report: cancelled by the progress callback; the {} finished cells are kept in "
                                     "{} (running the same sweep again resumes)",
                                     done, (out / "cells").string()));
  st.ran = done;
  st.interrupted = done < st.assigned;
  return st;
}

}  // namespace sigprop::reports
