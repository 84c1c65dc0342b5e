// The public facade (include/sigprop/api.hpp) over the internal engines: converts settings,
// runs, and wraps the internal Profile (nlohmann JSON inside) behind a pimpl.
#include "sigprop/api.hpp"

#include "api/internal.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <utility>

#include <fmt/format.h>

#include "core/memory.hpp"
#include "core/profile.hpp"
#include "core/spec.hpp"
#include "sigprop/version.hpp"
#include "sim/backend.hpp"
#include "sim/jacobian.hpp"
#include "mc/engine.hpp"
#include "theory/attention.hpp"
#include "theory/clustering.hpp"
#include "theory/continuum.hpp"
#include "theory/depth_returns.hpp"
#include "theory/engine.hpp"
#include "theory/shaped_sde.hpp"
#include "theory/spectrum.hpp"

namespace sigprop::api {

struct Profile::Impl {
  sigprop::Profile p;
  std::vector<std::vector<double>> cols;  // cols[c][l]: the rows transposed, contiguous per metric

  explicit Impl(sigprop::Profile profile) : p(std::move(profile)) {
    cols.assign(p.columns.size(), std::vector<double>(p.rows.size()));
    for (size_t l = 0; l < p.rows.size(); ++l)
      for (size_t c = 0; c < p.columns.size(); ++c) cols[c][l] = p.rows[l][c];
  }
};

namespace {

Profile wrap(sigprop::Profile p) {
  return Profile(std::make_unique<Profile::Impl>(std::move(p)));
}

// The engines' own parsers name command-line flags; the library names the settings field.
const std::string& one_of(const std::string& value, std::initializer_list<const char*> allowed, const char* field) {
  for (const char* a : allowed)
    if (value == a) return value;
  // As the engines' own checks word it: expected "a", "b" or "c", got "x".
  std::string list;
  std::size_t i = 0;
  for (const char* a : allowed) {
    list += fmt::format("{}\"{}\"", i == 0 ? "" : (i + 1 == allowed.size() ? " or " : ", "), a);
    ++i;
  }
  throw ConfigError(fmt::format("{}: expected {}, got \"{}\"", field, list, value.substr(0, 80)));
}

}  // namespace

Profile detail::wrap_profile(sigprop::Profile p) {
  return wrap(std::move(p));
}

// ---------------------------------------------------------------------------------------------
// Specs

StackSpec default_spec() {
  return StackSpec{};
}

StackSpec spec_from_toml(std::string_view text, const std::string& origin) {
  StackSpec s = parse_spec_toml(text, origin);
  s.validate();
  return s;
}

StackSpec spec_from_file(const std::string& path) {
  StackSpec s = load_spec_file(path);
  s.validate();
  return s;
}

void apply_overrides(StackSpec& spec, const std::vector<std::string>& overrides) {
  StackSpec s = spec;  // all or nothing
  for (const auto& o : overrides) apply_override(s, o);
  s.validate();
  spec = s;
}

void validate(const StackSpec& spec) {
  spec.validate();
}

std::string spec_to_toml(const StackSpec& spec) {
  return to_toml(spec);
}

std::string spec_to_json(const StackSpec& spec, int indent) {
  return sigprop::spec_to_json(spec).dump(indent);
}

std::string version() {
  return kVersion;
}

void set_memory_limit(std::uint64_t bytes) {
  sigprop::set_memory_limit(bytes);
}

std::uint64_t memory_limit() {
  return sigprop::memory_limit();
}

// ---------------------------------------------------------------------------------------------
// Profile

Profile::Profile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Profile::Profile(const Profile& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Profile::Profile(Profile&& other) noexcept = default;
Profile& Profile::operator=(const Profile& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
Profile& Profile::operator=(Profile&& other) noexcept = default;
Profile::~Profile() = default;

std::string Profile::engine() const {
  return impl_->p.engine;
}
std::string Profile::version() const {
  return impl_->p.version;
}
int Profile::layers() const {
  return impl_->p.layers();
}
const std::vector<std::string>& Profile::metrics() const {
  return impl_->p.columns;
}
bool Profile::has(std::string_view metric) const {
  const auto& c = impl_->p.columns;
  return std::find(c.begin(), c.end(), metric) != c.end();
}

std::span<const double> Profile::values(std::string_view metric) const {
  const auto& c = impl_->p.columns;
  const auto it = std::find(c.begin(), c.end(), metric);
  if (it == c.end())
    throw ConfigError(fmt::format("profile of engine {}: no metric \"{}\"; it has {}", impl_->p.engine,
                                  metric.substr(0, 80), fmt::join(c, ", ")));
  return impl_->cols[static_cast<size_t>(it - c.begin())];
}

const StackSpec& Profile::spec() const {
  return impl_->p.spec;
}
std::string Profile::spec_toml() const {
  return to_toml(impl_->p.spec);
}
std::string Profile::spec_json() const {
  return sigprop::spec_to_json(impl_->p.spec).dump();
}
std::string Profile::settings_json() const {
  return impl_->p.settings.dump();
}
std::string Profile::extras_json() const {
  return impl_->p.extras.dump();
}
const std::vector<std::string>& Profile::warnings() const {
  return impl_->p.warnings;
}
std::string Profile::to_json(int indent) const {
  return impl_->p.to_json().dump(indent);
}
std::string Profile::to_csv() const {
  return impl_->p.to_csv();
}

// ---------------------------------------------------------------------------------------------
// Engines

namespace {
theory::TheorySettings internal_theory_settings(const TheorySettings& settings) {
  theory::TheorySettings ts;
  if (settings.attn_samples) ts.attn.samples = *settings.attn_samples;
  if (settings.seed) ts.attn.seed = *settings.seed;
  if (settings.error_batches) ts.error_batches = *settings.error_batches;
  if (settings.attn_method)
    ts.attn.method =
        theory::parse_attn_method(one_of(*settings.attn_method, {"qmc", "mc"}, "TheorySettings.attn_method"));
  if (settings.quad_order) ts.quad_order = *settings.quad_order;
  if (settings.finite_dh) ts.attn.finite_dh = *settings.finite_dh;
  return ts;
}

DepthReturns public_depth_returns(const theory::DepthReturns& r) {
  DepthReturns o;
  o.layer_return = r.layer_return;
  o.depth = r.depth;
  o.effective_depth = r.effective_depth;
  o.return_per_added_layer = r.knee.gain;
  o.knee_found = r.knee.found;
  o.knee_depth = r.knee.found ? static_cast<int>(r.knee.knee_depth) : 0;
  o.fraction = r.fraction;
  o.rule = r.knee.rule;
  o.curve = r.curve;
  o.note = r.note;
  return o;
}

double json_num(const nlohmann::json& v) { return v.is_null() ? std::nan("") : v.get<double>(); }
}  // namespace

Profile theory(const StackSpec& spec, const TheorySettings& settings, const ProgressFn& progress) {
  theory::TheoryEngine eng(internal_theory_settings(settings));
  eng.set_progress(progress);
  return wrap(eng.run(spec));
}

DepthReturns depth_returns(const Profile& profile) {
  const nlohmann::json extras = nlohmann::json::parse(profile.extras_json());
  if (!extras.contains("depth_returns")) {
    if (!profile.has("ang_dist"))
      throw ConfigError(fmt::format("depth_returns: the {} profile has no ang_dist column", profile.engine()));
    sigprop::Profile p = sigprop::Profile::make(profile.spec(), profile.engine(), {"ang_dist"});
    const std::span<const double> ang = profile.values("ang_dist");
    for (std::size_t l = 0; l < ang.size() && l < p.rows.size(); ++l) p.rows[l][0] = ang[l];
    return public_depth_returns(theory::depth_returns(p));
  }
  const nlohmann::json& j = extras["depth_returns"];
  DepthReturns o;
  for (auto& v : j.at("layer_return")) o.layer_return.push_back(json_num(v));
  o.depth = j.at("depth").get<std::vector<int>>();
  for (auto& v : j.at("effective_depth")) o.effective_depth.push_back(json_num(v));
  for (auto& v : j.at("return_per_added_layer")) o.return_per_added_layer.push_back(json_num(v));
  o.knee_found = !j.at("knee_depth").is_null();
  o.knee_depth = o.knee_found ? j["knee_depth"].get<int>() : 0;
  o.fraction = j.at("fraction").get<double>();
  o.rule = j.at("knee_rule").get<std::string>();
  o.curve = j.at("curve").get<std::string>();
  o.note = j.value("note", "");
  return o;
}

DepthReturns depth_returns(const StackSpec& spec, const TheorySettings& settings, double fraction) {
  return public_depth_returns(theory::depth_returns(spec, internal_theory_settings(settings), fraction));
}

Profile simulate(const StackSpec& spec, const SimulateSettings& settings, const ProgressFn& progress) {
  sim::SimSettings ss;
  ss.samples = settings.samples;
  ss.seed = settings.seed;
  ss.backend = settings.backend;
  ss.precision = settings.precision.empty() ? sim::default_precision(settings.backend) : settings.precision;
  ss.threads = settings.threads;
  ss.weights_sampling = settings.weights_sampling;
  ss.cuda_plugin = settings.cuda_plugin;
  ss.input_kernel = settings.input_kernel;
  sim::MonteCarloEngine eng(ss);
  eng.set_progress(progress);
  return wrap(eng.run(spec));
}

Profile ode(const StackSpec& spec, const OdeSettings& s, const ProgressFn& progress) {
  switch (s.kind) {
    case OdeKind::Continuum: {
      theory::ContinuumSettings cs;
      if (s.abs_tol) cs.abs_tol = *s.abs_tol;
      if (s.rel_tol) cs.rel_tol = *s.rel_tol;
      if (s.max_evals) cs.max_evals = *s.max_evals;
      if (s.attn_samples) cs.attn.samples = *s.attn_samples;
      if (s.steps) cs.fixed_steps = *s.steps;
      if (s.quad_order) cs.quad_order = *s.quad_order;
      theory::ContinuumEngine eng(cs);
      eng.set_progress(progress);
      return wrap(eng.run(spec));
    }
    case OdeKind::Clustering: {
      theory::ClusteringSettings cs;
      if (s.abs_tol) cs.abs_tol = *s.abs_tol;
      if (s.rel_tol) cs.rel_tol = *s.rel_tol;
      if (s.max_evals) cs.max_evals = *s.max_evals;
      if (s.seed) cs.seed = *s.seed;
      if (s.variant) cs.variant = theory::parse_attn_dynamics(one_of(*s.variant, {"sa", "usa"}, "OdeSettings.variant"));
      if (s.beta) cs.beta = *s.beta;
      if (s.t_end) cs.t_end = *s.t_end;
      if (s.points) cs.points = *s.points;
      if (s.equiangular) cs.equiangular = *s.equiangular;
      theory::ClusteringEngine eng(cs);
      eng.set_progress(progress);
      return wrap(eng.run(spec));
    }
    case OdeKind::ShapedSde: {
      theory::ShapedSettings ss;
      if (s.seed) ss.seed = *s.seed;
      if (s.model) ss.model = theory::parse_shaped_model(one_of(*s.model, {"mlp", "attn"}, "OdeSettings.model"));
      if (s.shape_c) ss.shape_c = *s.shape_c;
      if (s.gamma2) ss.gamma2 = *s.gamma2;
      if (s.tau0) ss.tau0 = *s.tau0;
      if (s.key_dim) ss.key_dim = *s.key_dim;
      if (s.paths) ss.paths = *s.paths;
      if (s.samples) ss.samples = *s.samples;
      if (s.substeps) ss.substeps = *s.substeps;
      theory::ShapedSdeEngine eng(ss);
      eng.set_progress(progress);
      return wrap(eng.run(spec));
    }
  }
  throw ConfigError("ode: settings.kind is not continuum, clustering or shaped-sde");
}

// The grid and settings of `sigprop spectrum` (cli/spectrum_cmd.cpp runs this with its flags' names).
sigprop::Profile detail::run_spectrum(const StackSpec& spec, const SpectrumSettings& s, const ProgressFn& progress,
                                      const SpectrumNames& names) {
  const bool by_theory = one_of(s.engine, {"theory", "simulate"}, names.engine.c_str()) == "theory";
  spec.validate();
  theory::SpectrumSettings th;
  if (s.panels) {
    if (*s.panels < 1 || *s.panels > 100000)
      throw ConfigError(fmt::format("{}: must be in [1, 100000], got {}", names.panels, *s.panels));
    th.panels = *s.panels;
  }
  sim::JacobianSettings mc;
  if (s.samples) mc.samples = *s.samples;
  if (s.seed) mc.seed = *s.seed;
  if (s.map) mc.map = one_of(*s.map, {"token", "full"}, names.map.c_str());
  if (s.token) mc.token = *s.token;
  if (s.jacobian_method)
    mc.method = one_of(*s.jacobian_method, {"auto", "explicit", "backward"}, names.jacobian_method.c_str());
  if (s.threads < 0)
    throw ConfigError(fmt::format("{}: must be >= 0 (0 = all cores), got {}", names.threads, s.threads));
  mc.threads = s.threads;

  if (s.grid_lo.has_value() != s.grid_hi.has_value())
    throw ConfigError("SpectrumSettings.grid_lo, grid_hi: set both ends of the grid or neither");
  const int n = s.grid_points.value_or(200);
  if (n < 2 || n > 10000000)
    throw ConfigError(fmt::format("SpectrumSettings.grid_points: must be in [2, 10000000], got {}", n));
  std::vector<double> grid;
  if (s.grid_lo) {
    const double lo = *s.grid_lo, hi = *s.grid_hi;
    if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi))
      throw ConfigError(
          fmt::format("SpectrumSettings.grid_lo, grid_hi: need finite grid_lo < grid_hi, got {} and {}", lo, hi));
    grid.resize(n);
    for (int i = 0; i < n; ++i) grid[i] = lo + (hi - lo) * i / (n - 1);
    if (grid.front() <= 0 && by_theory)
      throw ConfigError(fmt::format(
          "{}: the theory density is defined for x > 0 (the point mass at 0 is reported separately as atom0); "
          "start the grid above 0",
          names.grid_lo));
  } else {
    try {
      theory::check_spectrum_spec(spec);
      grid = theory::default_spectrum_grid(theory::spectrum_moments(spec, th), n);
    } catch (const ConfigError&) {
      if (by_theory) throw;  // the theory cannot run this spec: say why
      grid.clear();          // Monte Carlo of a stack the theory does not cover: grid below
    }
  }
  if (by_theory) {
    theory::SpectrumEngine eng(std::move(grid), th);
    eng.set_progress(progress);
    return eng.run(spec);
  }
  if (grid.empty()) {
    // No theory to size the grid: a pilot sample sizes it (max squared singular value x 1.25).
    sim::JacobianSettings one = mc;
    one.samples = 1;
    const sim::JacobianSample pilot = sim::jacobian_sample(spec, one, 0);
    const double hi = pilot.sv2.empty() ? 1.0 : 1.25 * pilot.sv2.back();
    for (int i = 0; i < n; ++i) grid.push_back(hi * (i + 1) / n);
  }
  sim::SpectrumSimulateEngine eng(mc, std::move(grid));
  eng.set_progress(progress);
  return eng.run(spec);
}

Profile spectrum(const StackSpec& spec, const SpectrumSettings& settings, const ProgressFn& progress) {
  return wrap(detail::run_spectrum(spec, settings, progress, detail::SpectrumNames{}));
}

}  // namespace sigprop::api
