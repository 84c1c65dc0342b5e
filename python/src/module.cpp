// sigprop._core: the nanobind binding of the C++ facade (include/sigprop/api.hpp). The Python
// API (python/sigprop/__init__.py) builds on it; docs/python.md describes both.
//
// Engines run with the GIL released. Every run gets a progress hook that takes the GIL, checks
// for signals (Ctrl-C -> KeyboardInterrupt) and calls the user's callback, if any; a callback
// that returns False or raises, or a pending signal, cancels the run through the facade's
// CancelledError, and the Python exception that caused it is raised instead.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sigprop/api.hpp"

namespace nb = nanobind;
using namespace nb::literals;
namespace api = sigprop::api;

namespace {

// The Python exception classes (sigprop.Error and its subclasses, defined in __init__.py),
// registered once by sigprop/__init__.py through _set_exceptions.
struct PyErrors {
  nb::object error, config, io, numerical, cuda, cancelled;
};
PyErrors& py_errors() {
  static PyErrors* e = new PyErrors();  // never destroyed: outlives interpreter shutdown
  return *e;
}

void raise_as(const nb::object& cls, const char* fallback_msg, const char* msg) {
  if (cls.is_valid())
    PyErr_SetString(cls.ptr(), msg);
  else
    PyErr_SetString(PyExc_RuntimeError, (std::string(fallback_msg) + msg).c_str());
}

void translate(const std::exception_ptr& p, void*) {
  const PyErrors& e = py_errors();
  try {
    std::rethrow_exception(p);
  } catch (const sigprop::ConfigError& x) {
    raise_as(e.config, "ConfigError: ", x.what());
  } catch (const sigprop::IoError& x) {
    raise_as(e.io, "IoError: ", x.what());
  } catch (const sigprop::NumericalError& x) {
    raise_as(e.numerical, "NumericalError: ", x.what());
  } catch (const sigprop::CudaError& x) {
    raise_as(e.cuda, "CudaError: ", x.what());
  } catch (const sigprop::CancelledError& x) {
    raise_as(e.cancelled, "CancelledError: ", x.what());
  } catch (const sigprop::Error& x) {
    raise_as(e.error, "Error: ", x.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Progress, cancellation and the GIL

// One engine run: the hook handed to the facade, and the Python error that stopped it.
class Run {
 public:
  explicit Run(nb::object callback) : callback_(std::move(callback)) {}

  sigprop::ProgressFn hook() {
    return [this](double fraction, std::string_view message) { return on_progress(fraction, message); };
  }

  // Runs `fn` (a facade call taking the hook) with the GIL released; raises the Python error
  // that cancelled it, if any, or translates the facade's exception.
  template <class Fn>
  auto operator()(Fn&& fn) -> decltype(fn(sigprop::ProgressFn{})) {
    std::optional<decltype(fn(sigprop::ProgressFn{}))> result;
    try {
      nb::gil_scoped_release unlocked;
      result.emplace(fn(hook()));
    } catch (const sigprop::CancelledError&) {
      raise_pending();
      throw;
    }
    // An engine may return although the hook asked it to stop (a stop asked at a progress point
    // that does not cancel): the callback's exception or the Ctrl-C is raised all the same.
    raise_pending();
    return std::move(*result);
  }

 private:
  void raise_pending() {
    if (!error_) return;
    error_->restore();
    error_.reset();
    throw nb::python_error();
  }

  bool on_progress(double fraction, std::string_view message) {
    nb::gil_scoped_acquire locked;
    if (error_) return false;
    // Signal handlers run on the main thread only; elsewhere this returns 0 at once.
    if (PyErr_CheckSignals() != 0) {
      error_.emplace();  // takes the pending KeyboardInterrupt (or the handler's exception)
      return false;
    }
    if (!callback_.is_valid() || callback_.is_none()) return true;
    try {
      nb::object r = callback_(fraction, 1.0, nb::str(message.data(), message.size()));
      return !(r.is_valid() && r.ptr() == Py_False);
    } catch (nb::python_error& e) {
      error_.emplace(std::move(e));
      return false;
    }
  }

  nb::object callback_;
  std::optional<nb::python_error> error_;
};

// ---------------------------------------------------------------------------------------------
// Settings: a dict of the keyword arguments the Python API was given (None already dropped).

class Settings {
 public:
  Settings(const nb::dict& d, const char* engine) : d_(d), engine_(engine) {}

  template <class T>
  void get(const char* key, std::optional<T>& out) {
    nb::handle v = take(key);
    if (v.is_valid()) out = as<T>(key, v);
  }
  template <class T>
  void get(const char* key, T& out) {
    nb::handle v = take(key);
    if (v.is_valid()) out = as<T>(key, v);
  }
  // Every key must have been taken: an unknown one is a ConfigError naming it.
  void finish() const {
    for (auto [k, v] : d_) {
      const std::string key = nb::cast<std::string>(nb::str(k));
      bool used = false;
      for (const auto& u : used_) used = used || u == key;
      if (!used) throw sigprop::ConfigError(engine_ + " setting '" + key + "' is unknown");
    }
  }

 private:
  nb::handle take(const char* key) {
    used_.emplace_back(key);
    if (!d_.contains(key)) return {};
    nb::handle v = d_[key];
    return v.is_none() ? nb::handle() : v;
  }
  template <class T>
  T as(const char* key, nb::handle v) const {
    // bool is an int in Python: only accept it where a bool is wanted.
    if constexpr (!std::is_same_v<T, bool>) {
      if (PyBool_Check(v.ptr())) throw sigprop::ConfigError(engine_ + " setting '" + key + "' must not be a bool");
    }
    T out{};
    if (!nb::try_cast<T>(v, out)) {
      throw sigprop::ConfigError(engine_ + " setting '" + key + "' has the wrong type (" +
                                 nb::cast<std::string>(nb::str(v.type().attr("__name__"))) + ")");
    }
    return out;
  }

  const nb::dict& d_;
  std::string engine_;
  std::vector<std::string> used_;
};

api::TheorySettings theory_settings(const nb::dict& d) {
  api::TheorySettings s;
  Settings r(d, "theory");
  r.get("attn_samples", s.attn_samples);
  r.get("seed", s.seed);
  r.get("error_batches", s.error_batches);
  r.get("attn_method", s.attn_method);
  r.get("quad_order", s.quad_order);
  r.get("finite_dh", s.finite_dh);
  r.finish();
  return s;
}

api::SimulateSettings simulate_settings(const nb::dict& d) {
  api::SimulateSettings s;
  Settings r(d, "simulate");
  r.get("samples", s.samples);
  r.get("seed", s.seed);
  r.get("backend", s.backend);
  r.get("precision", s.precision);
  r.get("threads", s.threads);
  r.get("weights_sampling", s.weights_sampling);
  r.get("cuda_plugin", s.cuda_plugin);
  r.get("input_kernel", s.input_kernel);
  r.finish();
  return s;
}

api::OdeSettings ode_settings(const nb::dict& d) {
  api::OdeSettings s;
  Settings r(d, "ode");
  std::string kind = "continuum";
  r.get("kind", kind);
  if (kind == "continuum")
    s.kind = api::OdeKind::Continuum;
  else if (kind == "clustering")
    s.kind = api::OdeKind::Clustering;
  else if (kind == "shaped-sde")
    s.kind = api::OdeKind::ShapedSde;
  else
    throw sigprop::ConfigError("ode setting 'kind' must be \"continuum\", \"clustering\" or \"shaped-sde\", not \"" +
                               kind + "\"");
  r.get("abs_tol", s.abs_tol);
  r.get("rel_tol", s.rel_tol);
  r.get("max_evals", s.max_evals);
  r.get("seed", s.seed);
  r.get("attn_samples", s.attn_samples);
  r.get("steps", s.steps);
  r.get("quad_order", s.quad_order);
  r.get("variant", s.variant);
  r.get("beta", s.beta);
  r.get("t_end", s.t_end);
  r.get("points", s.points);
  r.get("equiangular", s.equiangular);
  r.get("model", s.model);
  r.get("shape_c", s.shape_c);
  r.get("gamma2", s.gamma2);
  r.get("tau0", s.tau0);
  r.get("key_dim", s.key_dim);
  r.get("paths", s.paths);
  r.get("samples", s.samples);
  r.get("substeps", s.substeps);
  r.finish();
  return s;
}

api::SpectrumSettings spectrum_settings(const nb::dict& d) {
  api::SpectrumSettings s;
  Settings r(d, "spectrum");
  r.get("engine", s.engine);
  r.get("grid_lo", s.grid_lo);
  r.get("grid_hi", s.grid_hi);
  r.get("grid_points", s.grid_points);
  r.get("panels", s.panels);
  r.get("samples", s.samples);
  r.get("seed", s.seed);
  r.get("map", s.map);
  r.get("token", s.token);
  r.get("jacobian_method", s.jacobian_method);
  r.get("threads", s.threads);
  r.finish();
  return s;
}

api::ValidateSettings validate_settings(const nb::dict& d) {
  api::ValidateSettings s;
  Settings r(d, "validate");
  r.get("checkpoint", s.checkpoint);
  r.get("corpus", s.corpus);
  r.get("tokens", s.tokens);
  r.get("seq_len", s.seq_len);
  r.get("ensemble", s.ensemble);
  r.get("samples", s.samples);
  r.get("theory", s.theory);
  r.get("seed", s.seed);
  r.get("threads", s.threads);
  r.get("precision", s.precision);
  r.finish();
  return s;
}

api::ReportSettings report_settings(const nb::dict& d) {
  api::ReportSettings s;
  Settings r(d, "report");
  r.get("out", s.out);
  r.get("jobs", s.jobs);
  r.get("threads", s.threads);
  r.get("gnuplot", s.gnuplot);
  r.get("figures", s.figures);
  r.get("snapshot", s.snapshot);
  r.finish();
  return s;
}

nb::dict report_result(const api::ReportResult& r) {
  nb::dict d;
  d["out"] = r.out;
  d["index_html"] = r.index_html;
  d["report_md"] = r.report_md;
  d["cells"] = r.cells;
  d["jobs"] = r.jobs;
  d["jobs_reused"] = r.jobs_reused;
  d["figures_drawn"] = r.figures_drawn;
  d["figures_missing"] = r.figures_missing;
  d["gnuplot_problem"] = r.gnuplot_problem;
  return d;
}

std::optional<api::Profile> maybe(const api::Profile* p) {
  if (p == nullptr) return std::nullopt;
  return *p;
}

// ---------------------------------------------------------------------------------------------
// The batch call: many theory runs on C++ threads, the GIL released; the calling thread wakes
// every 50 ms to check for Ctrl-C.

std::vector<api::Profile> theory_many(const std::vector<sigprop::StackSpec>& specs, const nb::dict& settings,
                                      int threads) {
  const api::TheorySettings st = theory_settings(settings);
  if (threads < 0) throw sigprop::ConfigError("theory_many: threads must be >= 0 (0 = every hardware thread)");
  const size_t n = specs.size();
  size_t workers = threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : static_cast<size_t>(threads);
  workers = std::max<size_t>(1, std::min(workers, n));

  std::vector<std::optional<api::Profile>> out(n);
  std::vector<std::exception_ptr> errors(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  const sigprop::ProgressFn keep_going = [&stop](double, std::string_view) { return !stop.load(); };

  std::optional<nb::python_error> interrupted;
  {
    nb::gil_scoped_release unlocked;
    std::vector<std::future<void>> done;
    for (size_t w = 0; w < workers; ++w) {
      done.push_back(std::async(std::launch::async, [&] {
        for (size_t i = next++; i < n && !stop.load(); i = next++) {
          try {
            out[i].emplace(api::theory(specs[i], st, keep_going));
          } catch (...) {
            errors[i] = std::current_exception();
            stop = true;
          }
        }
      }));
    }
    for (auto& f : done) {
      while (f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
        if (stop.load()) continue;
        nb::gil_scoped_acquire locked;
        if (PyErr_CheckSignals() != 0) {
          interrupted.emplace();
          stop = true;
        }
      }
      f.get();
    }
  }
  if (interrupted) {
    interrupted->restore();
    throw nb::python_error();
  }
  // The first failure by index (CancelledErrors of runs stopped because of it come later or
  // are of runs that did not fail on their own).
  for (size_t i = 0; i < n; ++i) {
    if (!errors[i]) continue;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const sigprop::CancelledError&) {
      continue;
    } catch (const sigprop::Error& e) {
      // name the spec that failed; keep the class
      const std::string msg = "specs[" + std::to_string(i) + "]: " + e.what();
      if (dynamic_cast<const sigprop::ConfigError*>(&e)) throw sigprop::ConfigError(msg);
      if (dynamic_cast<const sigprop::IoError*>(&e)) throw sigprop::IoError(msg);
      if (dynamic_cast<const sigprop::NumericalError*>(&e)) throw sigprop::NumericalError(msg);
      if (dynamic_cast<const sigprop::CudaError*>(&e)) throw sigprop::CudaError(msg);
      throw sigprop::Error(msg);
    }
  }
  std::vector<api::Profile> result;
  result.reserve(n);
  for (auto& p : out) {
    if (!p) throw sigprop::Error("theory_many: a run neither finished nor failed");  // not reached
    result.push_back(std::move(*p));
  }
  return result;
}

using ReadOnlyArray = nb::ndarray<nb::numpy, const double, nb::ndim<1>>;

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "The C++ binding behind the sigprop package (use the sigprop module, not this one)";
  nb::register_exception_translator(translate);

  m.def(
      "_set_exceptions",
      [](nb::object error, nb::object config, nb::object io, nb::object numerical, nb::object cuda,
         nb::object cancelled) {
        py_errors() = PyErrors{std::move(error),     std::move(config), std::move(io),
                               std::move(numerical), std::move(cuda),   std::move(cancelled)};
      },
      "error"_a, "config"_a, "io"_a, "numerical"_a, "cuda"_a, "cancelled"_a);

  nb::class_<sigprop::StackSpec>(m, "Spec")
      .def("to_json", [](const sigprop::StackSpec& s) { return api::spec_to_json(s); })
      .def("to_toml", [](const sigprop::StackSpec& s) { return api::spec_to_toml(s); });

  m.def("default_spec", &api::default_spec);
  m.def("spec_from_toml", &api::spec_from_toml, "text"_a, "origin"_a);
  m.def("spec_from_file", &api::spec_from_file, "path"_a);
  m.def(
      "apply_overrides",
      [](sigprop::StackSpec spec, const std::vector<std::string>& overrides) {
        api::apply_overrides(spec, overrides);
        return spec;
      },
      "spec"_a, "overrides"_a);
  m.def("version", &api::version);

  nb::class_<api::Profile>(m, "Profile")
      .def_prop_ro("engine", &api::Profile::engine)
      .def_prop_ro("version", &api::Profile::version)
      .def_prop_ro("rows", &api::Profile::layers)
      .def_prop_ro("metrics", &api::Profile::metrics)
      .def_prop_ro("warnings", &api::Profile::warnings)
      .def("has", &api::Profile::has, "metric"_a)
      .def(
          "values",
          [](nb::handle self, std::string_view metric) {
            const api::Profile& p = nb::cast<const api::Profile&>(self);
            std::span<const double> v = p.values(metric);
            // A read-only view of the Profile's own column; the array keeps the Profile alive.
            return ReadOnlyArray(v.data(), {v.size()}, self);
          },
          "metric"_a)
      .def("spec", [](const api::Profile& p) { return p.spec(); })
      .def("spec_json", &api::Profile::spec_json)
      .def("settings_json", &api::Profile::settings_json)
      .def("extras_json", &api::Profile::extras_json)
      .def("to_json", &api::Profile::to_json, "indent"_a = 2)
      .def("to_csv", &api::Profile::to_csv);

  m.def(
      "theory",
      [](const sigprop::StackSpec& spec, const nb::dict& settings, nb::object progress) {
        const api::TheorySettings st = theory_settings(settings);
        return Run(std::move(progress))([&](const sigprop::ProgressFn& h) { return api::theory(spec, st, h); });
      },
      "spec"_a, "settings"_a, "progress"_a.none());
  m.def(
      "simulate",
      [](const sigprop::StackSpec& spec, const nb::dict& settings, nb::object progress) {
        const api::SimulateSettings st = simulate_settings(settings);
        return Run(std::move(progress))([&](const sigprop::ProgressFn& h) { return api::simulate(spec, st, h); });
      },
      "spec"_a, "settings"_a, "progress"_a.none());
  m.def(
      "ode",
      [](const sigprop::StackSpec& spec, const nb::dict& settings, nb::object progress) {
        const api::OdeSettings st = ode_settings(settings);
        return Run(std::move(progress))([&](const sigprop::ProgressFn& h) { return api::ode(spec, st, h); });
      },
      "spec"_a, "settings"_a, "progress"_a.none());
  m.def(
      "spectrum",
      [](const sigprop::StackSpec& spec, const nb::dict& settings, nb::object progress) {
        const api::SpectrumSettings st = spectrum_settings(settings);
        return Run(std::move(progress))([&](const sigprop::ProgressFn& h) { return api::spectrum(spec, st, h); });
      },
      "spec"_a, "settings"_a, "progress"_a.none());
  m.def("theory_many", &theory_many, "specs"_a, "settings"_a, "threads"_a);
  nb::class_<api::Validation>(m, "Validation")
      .def("measured", [](const api::Validation& v) { return v.measured(); })
      .def("theory", [](const api::Validation& v) { return maybe(v.theory()); })
      .def("simulate", [](const api::Validation& v) { return maybe(v.simulate()); })
      .def("init_ensemble", [](const api::Validation& v) { return maybe(v.init_ensemble()); })
      .def("model_json", &api::Validation::model_json)
      .def("agreement_json", &api::Validation::agreement_json)
      .def("summary_json", &api::Validation::summary_json)
      .def_prop_ro("notes", &api::Validation::notes)
      .def("sequence_loss",
           [](nb::handle self) {
             std::span<const double> v = nb::cast<const api::Validation&>(self).sequence_loss();
             return ReadOnlyArray(v.data(), {v.size()}, self);
           })
      .def("to_json", &api::Validation::to_json, "indent"_a = 2);
  m.def(
      "validate",
      [](const nb::dict& settings, nb::object progress) {
        const api::ValidateSettings st = validate_settings(settings);
        return Run(std::move(progress))([&](const sigprop::ProgressFn& h) { return api::validate_checkpoint(st, h); });
      },
      "settings"_a, "progress"_a.none());
  m.def(
      "report",
      [](std::optional<std::string> path, std::optional<std::string> text, const nb::dict& settings,
         nb::object progress) {
        const api::ReportSettings st = report_settings(settings);
        api::ReportResult r = Run(std::move(progress))([&](const sigprop::ProgressFn& h) {
          return path ? api::report(*path, st, h) : api::report_from_toml(text.value_or(""), st, h, "<report config>");
        });
        return report_result(r);
      },
      "path"_a.none(), "text"_a.none(), "settings"_a, "progress"_a.none());
  m.def("default_report_config", &api::default_report_config);
}
