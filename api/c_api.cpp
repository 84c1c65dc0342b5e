// The C ABI (include/sigprop/sigprop.h) over the C++ facade (include/sigprop/api.hpp): opaque
// handles wrapping the facade's types, every exception turned into a status plus a thread-local
// message, text and numbers copied into caller-owned buffers.
#include "sigprop/sigprop.h"

#include <charconv>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/memory.hpp"
#include "sigprop/api.hpp"
#include "sigprop/version.hpp"

namespace api = sigprop::api;

struct sigprop_spec {
  sigprop::StackSpec spec;
};

enum class EngineKind { Theory, Simulate, Ode, Spectrum, Validate, Report };

struct sigprop_settings {
  EngineKind kind = EngineKind::Theory;
  api::TheorySettings theory;
  api::SimulateSettings simulate;
  api::OdeSettings ode;
  api::SpectrumSettings spectrum;
  api::ValidateSettings validate;
  api::ReportSettings report;
};

struct sigprop_profile {
  api::Profile profile;
};

struct sigprop_validation {
  api::Validation v;
};

struct sigprop_report_result {
  api::ReportResult r;
};

namespace {

thread_local std::string t_last_error;

// Thrown inside this file for misuse of the C interface itself (NULL handle, small buffer).
struct ArgumentError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `body`, turning every exception into a status and the thread's last error. Nothing
// escapes: a C caller has no way to catch it, and unwinding through C frames is undefined.
template <class F>
sigprop_status guarded(F&& body) noexcept {
  try {
    t_last_error.clear();
    body();
    return SIGPROP_OK;
  } catch (...) {
    sigprop_status status = SIGPROP_E_INTERNAL;
    const char* what = "unknown exception";
    try {
      throw;
    } catch (const ArgumentError& e) {
      status = SIGPROP_E_ARGUMENT;
      what = e.what();
    } catch (const sigprop::MemoryLimitError& e) {
      status = SIGPROP_E_MEMORY;
      what = e.what();
    } catch (const sigprop::ConfigError& e) {
      status = SIGPROP_E_CONFIG;
      what = e.what();
    } catch (const sigprop::IoError& e) {
      status = SIGPROP_E_IO;
      what = e.what();
    } catch (const sigprop::NumericalError& e) {
      status = SIGPROP_E_NUMERICAL;
      what = e.what();
    } catch (const sigprop::CancelledError& e) {
      status = SIGPROP_E_CANCELLED;
      what = e.what();
    } catch (const sigprop::CudaError& e) {
      status = SIGPROP_E_CUDA;
      what = e.what();
    } catch (const std::bad_alloc&) {
      status = SIGPROP_E_MEMORY;
      what = "out of memory (std::bad_alloc)";
    } catch (const std::exception& e) {
      status = SIGPROP_E_INTERNAL;
      what = e.what();
    } catch (...) {
      status = SIGPROP_E_INTERNAL;
    }
    try {
      t_last_error = what;
    } catch (...) {  // no memory for the message: an empty one is still a valid C string
      t_last_error.clear();
    }
    return status;
  }
}

template <class T>
void need(const T* p, const char* function, const char* argument) {
  if (p == nullptr) throw ArgumentError(fmt::format("{}: {} is NULL", function, argument));
}

// The buffer protocol of sigprop.h for text: *needed = size + 1; cap 0 sizes, too small fails.
void put_text(const std::string& text, char* buf, std::int64_t cap, std::int64_t* needed, const char* function) {
  const auto size = static_cast<std::int64_t>(text.size()) + 1;
  if (needed != nullptr) *needed = size;
  if (cap == 0) return;
  if (cap < 0) throw ArgumentError(fmt::format("{}: cap is negative ({})", function, cap));
  need(buf, function, "buf (with cap > 0)");
  if (cap < size)
    throw ArgumentError(
        fmt::format("{}: the buffer holds {} bytes, the text needs {} (with its NUL)", function, cap, size));
  std::memcpy(buf, text.c_str(), static_cast<size_t>(size));
}

// The same protocol for doubles: *n = count; cap 0 sizes, too small fails, nothing written then.
void put_doubles(std::span<const double> v, double* buf, std::int64_t cap, std::int64_t* n, const char* function,
                 const std::string& what) {
  const auto size = static_cast<std::int64_t>(v.size());
  if (n != nullptr) *n = size;
  if (cap == 0) return;
  if (cap < 0) throw ArgumentError(fmt::format("{}: cap is negative ({})", function, cap));
  need(buf, function, "buf (with cap > 0)");
  if (cap < size)
    throw ArgumentError(fmt::format("{}: the buffer holds {} doubles, {} has {}", function, cap, what, size));
  std::memcpy(buf, v.data(), v.size() * sizeof(double));
}

// Element i of a list of texts (warnings, metric names), or SIGPROP_E_ARGUMENT naming the range.
const std::string& item(const std::vector<std::string>& list, std::int64_t i, const char* function, const char* what) {
  if (i < 0 || i >= static_cast<std::int64_t>(list.size()))
    throw ArgumentError(fmt::format("{}: index {} out of range (there are {} {})", function, i, list.size(), what));
  return list[static_cast<size_t>(i)];
}

std::string_view engine_name(EngineKind k) {
  switch (k) {
    case EngineKind::Theory:
      return "theory";
    case EngineKind::Simulate:
      return "simulate";
    case EngineKind::Ode:
      return "ode";
    case EngineKind::Spectrum:
      return "spectrum";
    case EngineKind::Validate:
      return "validate";
    case EngineKind::Report:
      return "report";
  }
  return "?";
}

// ---- settings values: the whole string must parse, errors name the engine and the key.

[[noreturn]] void bad_value(EngineKind k, std::string_view key, std::string_view value, const char* expected) {
  throw sigprop::ConfigError(fmt::format("{} settings: key \"{}\": expected {}, got \"{}\"", engine_name(k), key,
                                         expected, value.substr(0, 80)));
}

template <class T>
T parse_integer(EngineKind k, std::string_view key, std::string_view value) {
  T out{};
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec == std::errc::result_out_of_range)
    bad_value(k, key, value, std::is_signed_v<T> ? "an integer in range" : "a non-negative integer in range");
  if (ec != std::errc() || end != value.data() + value.size() || value.empty())
    bad_value(k, key, value, std::is_signed_v<T> ? "an integer" : "a non-negative integer");
  return out;
}

double parse_double(EngineKind k, std::string_view key, std::string_view value) {
  double out = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) bad_value(k, key, value, "a number");
  return out;
}

bool parse_bool(EngineKind k, std::string_view key, std::string_view value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  bad_value(k, key, value, "true or false");
}

[[noreturn]] void unknown_key(EngineKind k, std::string_view key, const char* known) {
  throw sigprop::ConfigError(
      fmt::format("{} settings: unknown key \"{}\" (known: {})", engine_name(k), key.substr(0, 80), known));
}

void set_theory(api::TheorySettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Theory;
  if (key == "attn_samples")
    s.attn_samples = parse_integer<int>(k, key, v);
  else if (key == "seed")
    s.seed = parse_integer<std::uint64_t>(k, key, v);
  else if (key == "error_batches")
    s.error_batches = parse_integer<int>(k, key, v);
  else if (key == "attn_method")
    s.attn_method = std::string(v);
  else if (key == "quad_order")
    s.quad_order = parse_integer<int>(k, key, v);
  else if (key == "finite_dh")
    s.finite_dh = parse_bool(k, key, v);
  else
    unknown_key(k, key, "attn_samples, seed, error_batches, attn_method, quad_order, finite_dh");
}

void set_simulate(api::SimulateSettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Simulate;
  if (key == "samples")
    s.samples = parse_integer<int>(k, key, v);
  else if (key == "seed")
    s.seed = parse_integer<std::uint64_t>(k, key, v);
  else if (key == "backend")
    s.backend = std::string(v);
  else if (key == "precision")
    s.precision = std::string(v);
  else if (key == "threads")
    s.threads = parse_integer<int>(k, key, v);
  else if (key == "weights_sampling")
    s.weights_sampling = std::string(v);
  else if (key == "cuda_plugin")
    s.cuda_plugin = std::string(v);
  else if (key == "input_kernel")
    s.input_kernel = std::string(v);
  else
    unknown_key(k, key, "samples, seed, backend, precision, threads, weights_sampling, cuda_plugin, input_kernel");
}

void set_ode(api::OdeSettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Ode;
  if (key == "kind") {
    if (v == "continuum")
      s.kind = api::OdeKind::Continuum;
    else if (v == "clustering")
      s.kind = api::OdeKind::Clustering;
    else if (v == "shaped-sde")
      s.kind = api::OdeKind::ShapedSde;
    else
      bad_value(k, key, v, "continuum, clustering or shaped-sde");
  } else if (key == "abs_tol")
    s.abs_tol = parse_double(k, key, v);
  else if (key == "rel_tol")
    s.rel_tol = parse_double(k, key, v);
  else if (key == "max_evals")
    s.max_evals = parse_integer<std::int64_t>(k, key, v);
  else if (key == "seed")
    s.seed = parse_integer<std::uint64_t>(k, key, v);
  else if (key == "attn_samples")
    s.attn_samples = parse_integer<int>(k, key, v);
  else if (key == "steps")
    s.steps = parse_integer<int>(k, key, v);
  else if (key == "quad_order")
    s.quad_order = parse_integer<int>(k, key, v);
  else if (key == "variant")
    s.variant = std::string(v);
  else if (key == "beta")
    s.beta = parse_double(k, key, v);
  else if (key == "t_end")
    s.t_end = parse_double(k, key, v);
  else if (key == "points")
    s.points = parse_integer<int>(k, key, v);
  else if (key == "equiangular")
    s.equiangular = parse_bool(k, key, v);
  else if (key == "model")
    s.model = std::string(v);
  else if (key == "shape_c")
    s.shape_c = parse_double(k, key, v);
  else if (key == "gamma2")
    s.gamma2 = parse_double(k, key, v);
  else if (key == "tau0")
    s.tau0 = parse_double(k, key, v);
  else if (key == "key_dim")
    s.key_dim = parse_integer<int>(k, key, v);
  else if (key == "paths")
    s.paths = parse_integer<int>(k, key, v);
  else if (key == "samples")
    s.samples = parse_integer<int>(k, key, v);
  else if (key == "substeps")
    s.substeps = parse_integer<int>(k, key, v);
  else
    unknown_key(k, key,
                "kind, abs_tol, rel_tol, max_evals, seed, attn_samples, steps, quad_order, variant, beta, t_end, "
                "points, equiangular, model, shape_c, gamma2, tau0, key_dim, paths, samples, substeps");
}

void set_spectrum(api::SpectrumSettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Spectrum;
  if (key == "engine")
    s.engine = std::string(v);
  else if (key == "grid_lo")
    s.grid_lo = parse_double(k, key, v);
  else if (key == "grid_hi")
    s.grid_hi = parse_double(k, key, v);
  else if (key == "grid_points")
    s.grid_points = parse_integer<int>(k, key, v);
  else if (key == "panels")
    s.panels = parse_integer<int>(k, key, v);
  else if (key == "samples")
    s.samples = parse_integer<int>(k, key, v);
  else if (key == "seed")
    s.seed = parse_integer<std::uint64_t>(k, key, v);
  else if (key == "map")
    s.map = std::string(v);
  else if (key == "token")
    s.token = parse_integer<int>(k, key, v);
  else if (key == "jacobian_method")
    s.jacobian_method = std::string(v);
  else if (key == "threads")
    s.threads = parse_integer<int>(k, key, v);
  else
    unknown_key(k, key,
                "engine, grid_lo, grid_hi, grid_points, panels, samples, seed, map, token, jacobian_method, threads");
}

void set_validate(api::ValidateSettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Validate;
  if (key == "checkpoint")
    s.checkpoint = std::string(v);
  else if (key == "corpus")
    s.corpus = std::string(v);
  else if (key == "tokens")
    s.tokens = parse_integer<std::int64_t>(k, key, v);
  else if (key == "seq_len")
    s.seq_len = parse_integer<int>(k, key, v);
  else if (key == "ensemble")
    s.ensemble = parse_integer<int>(k, key, v);
  else if (key == "samples")
    s.samples = parse_integer<int>(k, key, v);
  else if (key == "theory")
    s.theory = parse_bool(k, key, v);
  else if (key == "seed")
    s.seed = parse_integer<std::uint64_t>(k, key, v);
  else if (key == "threads")
    s.threads = parse_integer<int>(k, key, v);
  else if (key == "precision")
    s.precision = std::string(v);
  else
    unknown_key(k, key, "checkpoint, corpus, tokens, seq_len, ensemble, samples, theory, seed, threads, precision");
}

void set_report(api::ReportSettings& s, std::string_view key, std::string_view v) {
  const auto k = EngineKind::Report;
  if (key == "out")
    s.out = std::string(v);
  else if (key == "jobs")
    s.jobs = parse_integer<int>(k, key, v);
  else if (key == "threads")
    s.threads = parse_integer<int>(k, key, v);
  else if (key == "gnuplot")
    s.gnuplot = std::string(v);
  else if (key == "figures")
    s.figures = parse_bool(k, key, v);
  else if (key == "snapshot")
    s.snapshot = parse_bool(k, key, v);
  else
    unknown_key(k, key, "out, jobs, threads, gnuplot, figures, snapshot");
}

// The C callback as the facade's ProgressFn; the stage text gets its NUL here.
sigprop::ProgressFn progress_fn(sigprop_progress_fn fn, void* user) {
  if (fn == nullptr) return nullptr;
  return [fn, user](double fraction, std::string_view message) {
    const std::string stage(message);
    return fn(user, fraction, stage.c_str()) != 0;
  };
}

// The settings an engine call uses: the caller's, which must be made for this engine, or the
// defaults when NULL.
sigprop_settings settings_for(const char* function, EngineKind kind, const sigprop_settings* settings) {
  if (settings == nullptr) {
    sigprop_settings defaults;
    defaults.kind = kind;
    return defaults;
  }
  if (settings->kind != kind)
    throw ArgumentError(fmt::format("{}: the settings were made for engine \"{}\", not \"{}\"", function,
                                    engine_name(settings->kind), engine_name(kind)));
  return *settings;
}

// Shared body of the four engine calls.
template <class Run>
sigprop_status run_engine(const char* function, EngineKind kind, const sigprop_spec* spec,
                          const sigprop_settings* settings, sigprop_progress_fn progress, void* user,
                          sigprop_profile** out, Run&& run) {
  return guarded([&] {
    need(spec, function, "spec");
    need(out, function, "out");
    *out = new sigprop_profile{run(spec->spec, settings_for(function, kind, settings), progress_fn(progress, user))};
  });
}

const sigprop_profile& checked(const sigprop_profile* p, const char* function) {
  need(p, function, "profile");
  return *p;
}

}  // namespace

extern "C" {

int32_t sigprop_abi_version(void) {
  return SIGPROP_ABI_VERSION;
}

const char* sigprop_version(void) {
  return sigprop::kVersion;
}

const char* sigprop_last_error(void) {
  return t_last_error.c_str();
}

const char* sigprop_status_name(sigprop_status status) {
  switch (status) {
    case SIGPROP_OK:
      return "SIGPROP_OK";
    case SIGPROP_E_CONFIG:
      return "SIGPROP_E_CONFIG";
    case SIGPROP_E_IO:
      return "SIGPROP_E_IO";
    case SIGPROP_E_NUMERICAL:
      return "SIGPROP_E_NUMERICAL";
    case SIGPROP_E_CANCELLED:
      return "SIGPROP_E_CANCELLED";
    case SIGPROP_E_CUDA:
      return "SIGPROP_E_CUDA";
    case SIGPROP_E_MEMORY:
      return "SIGPROP_E_MEMORY";
    case SIGPROP_E_ARGUMENT:
      return "SIGPROP_E_ARGUMENT";
    case SIGPROP_E_INTERNAL:
      return "SIGPROP_E_INTERNAL";
    default:
      return "unknown status";
  }
}

// ---- specs

sigprop_status sigprop_spec_default(sigprop_spec** out) {
  return guarded([&] {
    need(out, "sigprop_spec_default", "out");
    *out = new sigprop_spec{api::default_spec()};
  });
}

sigprop_status sigprop_spec_from_toml(const char* text, const char* origin, sigprop_spec** out) {
  return guarded([&] {
    need(text, "sigprop_spec_from_toml", "text");
    need(out, "sigprop_spec_from_toml", "out");
    *out = new sigprop_spec{api::spec_from_toml(text, origin != nullptr ? origin : "<spec>")};
  });
}

sigprop_status sigprop_spec_from_file(const char* path, sigprop_spec** out) {
  return guarded([&] {
    need(path, "sigprop_spec_from_file", "path");
    need(out, "sigprop_spec_from_file", "out");
    *out = new sigprop_spec{api::spec_from_file(path)};
  });
}

sigprop_status sigprop_spec_set(sigprop_spec* spec, const char* assignment) {
  return guarded([&] {
    need(spec, "sigprop_spec_set", "spec");
    need(assignment, "sigprop_spec_set", "assignment");
    api::apply_overrides(spec->spec, {assignment});  // all or nothing
  });
}

sigprop_status sigprop_spec_to_toml(const sigprop_spec* spec, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    need(spec, "sigprop_spec_to_toml", "spec");
    put_text(api::spec_to_toml(spec->spec), buf, cap, needed, "sigprop_spec_to_toml");
  });
}

sigprop_status sigprop_spec_to_json(const sigprop_spec* spec, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    need(spec, "sigprop_spec_to_json", "spec");
    put_text(api::spec_to_json(spec->spec), buf, cap, needed, "sigprop_spec_to_json");
  });
}

sigprop_status sigprop_spec_copy(const sigprop_spec* spec, sigprop_spec** out) {
  return guarded([&] {
    need(spec, "sigprop_spec_copy", "spec");
    need(out, "sigprop_spec_copy", "out");
    *out = new sigprop_spec{*spec};
  });
}

void sigprop_spec_free(sigprop_spec* spec) {
  delete spec;
}

// ---- settings

sigprop_status sigprop_settings_new(const char* engine, sigprop_settings** out) {
  return guarded([&] {
    need(engine, "sigprop_settings_new", "engine");
    need(out, "sigprop_settings_new", "out");
    const std::string_view e(engine);
    auto s = std::make_unique<sigprop_settings>();
    if (e == "theory")
      s->kind = EngineKind::Theory;
    else if (e == "simulate")
      s->kind = EngineKind::Simulate;
    else if (e == "ode")
      s->kind = EngineKind::Ode;
    else if (e == "spectrum")
      s->kind = EngineKind::Spectrum;
    else if (e == "validate")
      s->kind = EngineKind::Validate;
    else if (e == "report")
      s->kind = EngineKind::Report;
    else
      throw sigprop::ConfigError(fmt::format(
          "sigprop_settings_new: engine: expected one of theory, simulate, ode, spectrum, validate, report, got \"{}\"",
          e.substr(0, 80)));
    *out = s.release();
  });
}

sigprop_status sigprop_settings_set(sigprop_settings* settings, const char* key, const char* value) {
  return guarded([&] {
    need(settings, "sigprop_settings_set", "settings");
    need(key, "sigprop_settings_set", "key");
    need(value, "sigprop_settings_set", "value");
    sigprop_settings next = *settings;  // unchanged on failure
    switch (next.kind) {
      case EngineKind::Theory:
        set_theory(next.theory, key, value);
        break;
      case EngineKind::Simulate:
        set_simulate(next.simulate, key, value);
        break;
      case EngineKind::Ode:
        set_ode(next.ode, key, value);
        break;
      case EngineKind::Spectrum:
        set_spectrum(next.spectrum, key, value);
        break;
      case EngineKind::Validate:
        set_validate(next.validate, key, value);
        break;
      case EngineKind::Report:
        set_report(next.report, key, value);
        break;
    }
    *settings = std::move(next);
  });
}

sigprop_status sigprop_settings_engine(const sigprop_settings* settings, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    need(settings, "sigprop_settings_engine", "settings");
    put_text(std::string(engine_name(settings->kind)), buf, cap, needed, "sigprop_settings_engine");
  });
}

sigprop_status sigprop_settings_copy(const sigprop_settings* settings, sigprop_settings** out) {
  return guarded([&] {
    need(settings, "sigprop_settings_copy", "settings");
    need(out, "sigprop_settings_copy", "out");
    *out = new sigprop_settings{*settings};
  });
}

void sigprop_settings_free(sigprop_settings* settings) {
  delete settings;
}

// ---- engines

sigprop_status sigprop_theory(const sigprop_spec* spec, const sigprop_settings* settings, sigprop_progress_fn progress,
                              void* user, sigprop_profile** out) {
  return run_engine("sigprop_theory", EngineKind::Theory, spec, settings, progress, user, out,
                    [](const sigprop::StackSpec& sp, const sigprop_settings& s, const sigprop::ProgressFn& pf) {
                      return api::theory(sp, s.theory, pf);
                    });
}

sigprop_status sigprop_simulate(const sigprop_spec* spec, const sigprop_settings* settings,
                                sigprop_progress_fn progress, void* user, sigprop_profile** out) {
  return run_engine("sigprop_simulate", EngineKind::Simulate, spec, settings, progress, user, out,
                    [](const sigprop::StackSpec& sp, const sigprop_settings& s, const sigprop::ProgressFn& pf) {
                      return api::simulate(sp, s.simulate, pf);
                    });
}

sigprop_status sigprop_ode(const sigprop_spec* spec, const sigprop_settings* settings, sigprop_progress_fn progress,
                           void* user, sigprop_profile** out) {
  return run_engine("sigprop_ode", EngineKind::Ode, spec, settings, progress, user, out,
                    [](const sigprop::StackSpec& sp, const sigprop_settings& s, const sigprop::ProgressFn& pf) {
                      return api::ode(sp, s.ode, pf);
                    });
}

sigprop_status sigprop_spectrum(const sigprop_spec* spec, const sigprop_settings* settings,
                                sigprop_progress_fn progress, void* user, sigprop_profile** out) {
  return run_engine("sigprop_spectrum", EngineKind::Spectrum, spec, settings, progress, user, out,
                    [](const sigprop::StackSpec& sp, const sigprop_settings& s, const sigprop::ProgressFn& pf) {
                      return api::spectrum(sp, s.spectrum, pf);
                    });
}

// ---- profiles

sigprop_status sigprop_profile_rows(const sigprop_profile* profile, int64_t* n) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_rows");
    need(n, "sigprop_profile_rows", "n");
    *n = p.profile.layers();
  });
}

sigprop_status sigprop_profile_metric_count(const sigprop_profile* profile, int64_t* n) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_metric_count");
    need(n, "sigprop_profile_metric_count", "n");
    *n = static_cast<int64_t>(p.profile.metrics().size());
  });
}

sigprop_status sigprop_profile_metric_name(const sigprop_profile* profile, int64_t i, char* buf, int64_t cap,
                                           int64_t* needed) {
  return guarded([&] {
    const auto& m = checked(profile, "sigprop_profile_metric_name").profile.metrics();
    put_text(item(m, i, "sigprop_profile_metric_name", "metrics"), buf, cap, needed, "sigprop_profile_metric_name");
  });
}

sigprop_status sigprop_profile_has_metric(const sigprop_profile* profile, const char* name, int32_t* yes) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_has_metric");
    need(name, "sigprop_profile_has_metric", "name");
    need(yes, "sigprop_profile_has_metric", "yes");
    *yes = p.profile.has(name) ? 1 : 0;
  });
}

sigprop_status sigprop_profile_values(const sigprop_profile* profile, const char* name, double* buf, int64_t cap,
                                      int64_t* n) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_values");
    need(name, "sigprop_profile_values", "name");
    // ConfigError naming the metric and the available ones when it is unknown
    put_doubles(p.profile.values(name), buf, cap, n, "sigprop_profile_values", fmt::format("metric \"{}\"", name));
  });
}

sigprop_status sigprop_profile_engine(const sigprop_profile* profile, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_engine").profile.engine(), buf, cap, needed, "sigprop_profile_engine");
  });
}

sigprop_status sigprop_profile_to_json(const sigprop_profile* profile, int32_t indent, char* buf, int64_t cap,
                                       int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_to_json").profile.to_json(indent), buf, cap, needed,
             "sigprop_profile_to_json");
  });
}

sigprop_status sigprop_profile_to_csv(const sigprop_profile* profile, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_to_csv").profile.to_csv(), buf, cap, needed, "sigprop_profile_to_csv");
  });
}

sigprop_status sigprop_profile_settings_json(const sigprop_profile* profile, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_settings_json").profile.settings_json(), buf, cap, needed,
             "sigprop_profile_settings_json");
  });
}

sigprop_status sigprop_profile_extras_json(const sigprop_profile* profile, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_extras_json").profile.extras_json(), buf, cap, needed,
             "sigprop_profile_extras_json");
  });
}

sigprop_status sigprop_profile_spec_toml(const sigprop_profile* profile, char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] {
    put_text(checked(profile, "sigprop_profile_spec_toml").profile.spec_toml(), buf, cap, needed,
             "sigprop_profile_spec_toml");
  });
}

sigprop_status sigprop_profile_spec(const sigprop_profile* profile, sigprop_spec** out) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_spec");
    need(out, "sigprop_profile_spec", "out");
    *out = new sigprop_spec{p.profile.spec()};
  });
}

sigprop_status sigprop_profile_warning_count(const sigprop_profile* profile, int64_t* n) {
  return guarded([&] {
    const auto& p = checked(profile, "sigprop_profile_warning_count");
    need(n, "sigprop_profile_warning_count", "n");
    *n = static_cast<int64_t>(p.profile.warnings().size());
  });
}

sigprop_status sigprop_profile_warning(const sigprop_profile* profile, int64_t i, char* buf, int64_t cap,
                                       int64_t* needed) {
  return guarded([&] {
    const auto& w = checked(profile, "sigprop_profile_warning").profile.warnings();
    put_text(item(w, i, "sigprop_profile_warning", "warnings"), buf, cap, needed, "sigprop_profile_warning");
  });
}

void sigprop_profile_free(sigprop_profile* profile) {
  delete profile;
}

// ---- checkpoints against their predictions

sigprop_status sigprop_validate(const sigprop_settings* settings, sigprop_progress_fn progress, void* user,
                                sigprop_validation** out) {
  return guarded([&] {
    need(out, "sigprop_validate", "out");
    const sigprop_settings& s = settings_for("sigprop_validate", EngineKind::Validate, settings);
    *out = new sigprop_validation{api::validate_checkpoint(s.validate, progress_fn(progress, user))};
  });
}

sigprop_status sigprop_validation_profile(const sigprop_validation* validation, const char* which,
                                          sigprop_profile** out) {
  return guarded([&] {
    need(validation, "sigprop_validation_profile", "validation");
    need(which, "sigprop_validation_profile", "which");
    need(out, "sigprop_validation_profile", "out");
    const api::Validation& v = validation->v;
    const std::string_view w(which);
    const api::Profile* p = nullptr;
    if (w == "measured")
      p = &v.measured();
    else if (w == "theory")
      p = v.theory();
    else if (w == "simulate")
      p = v.simulate();
    else if (w == "init_ensemble")
      p = v.init_ensemble();
    else
      throw ArgumentError(fmt::format(
          "sigprop_validation_profile: which: expected measured, theory, simulate or init_ensemble, got \"{}\"",
          w.substr(0, 80)));
    *out = p != nullptr ? new sigprop_profile{*p} : nullptr;
  });
}

sigprop_status sigprop_validation_to_json(const sigprop_validation* validation, int32_t indent, char* buf, int64_t cap,
                                          int64_t* needed) {
  return guarded([&] {
    need(validation, "sigprop_validation_to_json", "validation");
    put_text(validation->v.to_json(indent), buf, cap, needed, "sigprop_validation_to_json");
  });
}

sigprop_status sigprop_validation_model_json(const sigprop_validation* validation, char* buf, int64_t cap,
                                             int64_t* needed) {
  return guarded([&] {
    need(validation, "sigprop_validation_model_json", "validation");
    put_text(validation->v.model_json(), buf, cap, needed, "sigprop_validation_model_json");
  });
}

sigprop_status sigprop_validation_agreement_json(const sigprop_validation* validation, char* buf, int64_t cap,
                                                 int64_t* needed) {
  return guarded([&] {
    need(validation, "sigprop_validation_agreement_json", "validation");
    put_text(validation->v.agreement_json(), buf, cap, needed, "sigprop_validation_agreement_json");
  });
}

sigprop_status sigprop_validation_summary_json(const sigprop_validation* validation, char* buf, int64_t cap,
                                               int64_t* needed) {
  return guarded([&] {
    need(validation, "sigprop_validation_summary_json", "validation");
    put_text(validation->v.summary_json(), buf, cap, needed, "sigprop_validation_summary_json");
  });
}

sigprop_status sigprop_validation_note_count(const sigprop_validation* validation, int64_t* n) {
  return guarded([&] {
    need(validation, "sigprop_validation_note_count", "validation");
    need(n, "sigprop_validation_note_count", "n");
    *n = static_cast<int64_t>(validation->v.notes().size());
  });
}

sigprop_status sigprop_validation_note(const sigprop_validation* validation, int64_t i, char* buf, int64_t cap,
                                       int64_t* needed) {
  return guarded([&] {
    need(validation, "sigprop_validation_note", "validation");
    put_text(item(validation->v.notes(), i, "sigprop_validation_note", "notes"), buf, cap, needed,
             "sigprop_validation_note");
  });
}

sigprop_status sigprop_validation_sequence_loss(const sigprop_validation* validation, double* buf, int64_t cap,
                                                int64_t* n) {
  return guarded([&] {
    need(validation, "sigprop_validation_sequence_loss", "validation");
    put_doubles(validation->v.sequence_loss(), buf, cap, n, "sigprop_validation_sequence_loss", "sequence_loss");
  });
}

void sigprop_validation_free(sigprop_validation* validation) {
  delete validation;
}

// ---- reports

sigprop_status sigprop_report(const char* config_path, const sigprop_settings* settings, sigprop_progress_fn progress,
                              void* user, sigprop_report_result** out) {
  return guarded([&] {
    need(config_path, "sigprop_report", "config_path");
    need(out, "sigprop_report", "out");
    const sigprop_settings& s = settings_for("sigprop_report", EngineKind::Report, settings);
    *out = new sigprop_report_result{api::report(config_path, s.report, progress_fn(progress, user))};
  });
}

sigprop_status sigprop_report_from_toml(const char* text, const char* origin, const sigprop_settings* settings,
                                        sigprop_progress_fn progress, void* user, sigprop_report_result** out) {
  return guarded([&] {
    need(text, "sigprop_report_from_toml", "text");
    need(out, "sigprop_report_from_toml", "out");
    const sigprop_settings& s = settings_for("sigprop_report_from_toml", EngineKind::Report, settings);
    *out = new sigprop_report_result{api::report_from_toml(text, s.report, progress_fn(progress, user),
                                                           origin != nullptr ? origin : "<report config>")};
  });
}

sigprop_status sigprop_report_result_json(const sigprop_report_result* result, char* buf, int64_t cap,
                                          int64_t* needed) {
  return guarded([&] {
    need(result, "sigprop_report_result_json", "result");
    const api::ReportResult& r = result->r;
    const nlohmann::json j = {{"out", r.out},
                              {"index_html", r.index_html},
                              {"report_md", r.report_md},
                              {"cells", r.cells},
                              {"jobs", r.jobs},
                              {"jobs_reused", r.jobs_reused},
                              {"figures_drawn", r.figures_drawn},
                              {"figures_missing", r.figures_missing},
                              {"gnuplot_problem", r.gnuplot_problem}};
    put_text(j.dump(), buf, cap, needed, "sigprop_report_result_json");
  });
}

void sigprop_report_result_free(sigprop_report_result* result) {
  delete result;
}

sigprop_status sigprop_default_report_config(char* buf, int64_t cap, int64_t* needed) {
  return guarded([&] { put_text(api::default_report_config(), buf, cap, needed, "sigprop_default_report_config"); });
}

// ---- memory

sigprop_status sigprop_set_memory_limit(int64_t bytes) {
  return guarded([&] {
    if (bytes < 0) throw ArgumentError(fmt::format("sigprop_set_memory_limit: bytes is negative ({})", bytes));
    api::set_memory_limit(static_cast<std::uint64_t>(bytes));
  });
}

sigprop_status sigprop_memory_limit(int64_t* bytes) {
  return guarded([&] {
    need(bytes, "sigprop_memory_limit", "bytes");
    const std::uint64_t limit = api::memory_limit();
    *bytes = limit > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max())
                 ? std::numeric_limits<int64_t>::max()
                 : static_cast<int64_t>(limit);
  });
}

}  // extern "C"
