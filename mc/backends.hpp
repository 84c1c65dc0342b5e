#pragma once
/// @file The Monte Carlo backend registry: which backends exist, their precisions, and
/// make_stack_backend, which builds "reference" and "cpu" (sim/) in-process and "cuda" through
/// the run-time plug-in libsigprop_cuda.so (cuda/plugin.hpp), so that nothing but the plug-in
/// links the CUDA libraries. The plug-in is loaded on first use only: when backend "cuda" is
/// asked for or its device is queried (cuda_device_info).
///
/// Where the plug-in is looked for (cuda_plugin_candidates): the explicit path when one is
/// given (SimSettings::cuda_plugin; the CLI fills it from SIGPROP_CUDA_PLUGIN) and nothing
/// else; otherwise the folder of the loaded sigprop code (the executable, or libsigprop.so when
/// embedded), then ../lib and ../lib/sigprop relative to that folder, then the dynamic linker's
/// own search (dlopen("libsigprop_cuda.so"): LD_LIBRARY_PATH, the cache).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/spec.hpp"
#include "cuda/plugin.hpp"
#include "sim/backend.hpp"

namespace sigprop::sim {

/// Names of the backends, in the order shown in error messages: "reference", "cpu", "cuda"
/// (whether the plug-in loads and finds a device is known only when it is used).
const std::vector<std::string>& available_backends();

/// Precisions a backend offers, in the order shown in error messages (empty for an unknown one).
/// Known without loading the plug-in; the plug-in's own list is checked against it on loading.
const std::vector<std::string>& backend_precisions(const std::string& backend);

/// Throws ConfigError naming the setting `backend` for a backend this build does not have.
void check_backend(const std::string& backend);
/// Throws ConfigError naming the setting `precision` for one `backend` does not offer.
void check_precision(const std::string& backend, const std::string& precision);

/// The precision a backend runs in when none is asked for: "double" (reference, cpu), "float" (cuda).
std::string default_precision(const std::string& backend);

/// The backend `backend` ("reference" | "cpu" | "cuda") in precision `precision` ("double" |
/// "float", cuda "float" | "tf32"; the reference is double only; "" = default_precision).
/// Validates the spec; throws ConfigError for an unknown backend or a precision the backend
/// does not offer, CudaError for cuda when the plug-in cannot be loaded (the message names
/// every path tried) or no device is usable. sampling: WeightSampling::Conditional for
/// reference and cpu only (ConfigError naming weights_sampling for cuda). cuda_plugin: the
/// plug-in's explicit path, "" to search (see the file comment). input_kernel: InputKernel::Exact
/// for reference and cpu only (ConfigError naming input_kernel for cuda, or when d < T + 1).
std::unique_ptr<StackBackend> make_stack_backend(const StackSpec& spec, uint64_t seed, const std::string& backend,
                                                 const std::string& precision,
                                                 WeightSampling sampling = WeightSampling::Explicit,
                                                 const std::string& cuda_plugin = "",
                                                 InputKernel input_kernel = InputKernel::Sampled);

/// The input kernel a Monte Carlo run uses: `requested` is "" or "sampled" (MODEL.md §1, the
/// default) or "exact" (X_0 conditioned on the exact input kernel, sim/input.hpp). Throws
/// ConfigError naming input_kernel for an unknown value (with a did-you-mean) or "exact" with cuda.
InputKernel resolve_input_kernel(const std::string& backend, const std::string& requested);

/// The sampling a Monte Carlo run uses and why: `requested` is "explicit", "conditional" or ""
/// (the default: conditional where it is exact and faster, i.e. backend reference or cpu and
/// T < min(fan_in, fan_out) of every weight matrix; explicit otherwise). A requested
/// "conditional" with T >= min(n, m) falls back to explicit (conditioning would not be faster)
/// and says so in `note`. Throws ConfigError for an unknown value, or "conditional" with cuda.
struct SamplingChoice {
  WeightSampling sampling;
  std::string note;  ///< empty, or why the run is explicit although conditional was possible or asked for
};
SamplingChoice resolve_weight_sampling(const StackSpec& spec, const std::string& backend,
                                       const std::string& requested);

/// The paths tried for the CUDA plug-in, in order (see the file comment); the last, a bare
/// file name, goes to the dynamic linker's search.
std::vector<std::string> cuda_plugin_candidates(const std::string& explicit_path = "");

/// The loaded plug-in's table: loads it on the first call for a given explicit path and keeps
/// it loaded for the life of the process (backends it made may still run). Thread-safe. Throws
/// CudaError naming the setting `backend` and every path tried when none loads, or the path
/// whose plug-in has another ABI version, another sigprop version or no entry point.
const cuda::PluginTable& cuda_plugin(const std::string& explicit_path = "");

/// The device the plug-in sees (loads the plug-in; never throws: when the plug-in cannot be
/// loaded, available is false and `why` says why).
cuda::DeviceInfo cuda_device_info(const std::string& explicit_path = "");

}  // namespace sigprop::sim
