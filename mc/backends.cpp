// The backend registry (mc/backends.hpp): names, precisions and construction of the Monte
// Carlo backends; "cuda" goes through the plug-in loader (mc/cuda_plugin.cpp).
#include "mc/backends.hpp"

#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "sim/eigen_backend.hpp"
#include "sim/reference.hpp"

namespace sigprop::sim {

const std::vector<std::string>& available_backends() {
  // cuda is a run-time plug-in: whether it loads (and finds a device) is known only when it is used.
  static const std::vector<std::string> names{"reference", "cpu", "cuda"};
  return names;
}

const std::vector<std::string>& backend_precisions(const std::string& backend) {
  // cuda's list is the plug-in's (cuda/cuda_backend.hpp precisions(), checked on loading), known
  // here so that a wrong precision is a ConfigError before any plug-in or device is looked for.
  static const std::vector<std::string> ref{"double"}, cpu{"float", "double"}, cuda{"float", "tf32"}, none{};
  if (backend == "reference") return ref;
  if (backend == "cpu") return cpu;
  if (backend == "cuda") return cuda;
  return none;
}

std::string default_precision(const std::string& backend) { return backend == "cuda" ? "float" : "double"; }

namespace {

// The reference backend behind the StackBackend interface (ReferenceStack itself stays a plain class).
class ReferenceBackend final : public StackBackend {
 public:
  ReferenceBackend(const StackSpec& spec, uint64_t seed, WeightSampling sampling, InputKernel input_kernel)
      : st_(spec, seed, sampling, false, input_kernel) {}
  [[nodiscard]] const StackSpec& spec() const override { return st_.spec(); }
  [[nodiscard]] WeightSampling sampling() const override { return st_.sampling(); }
  [[nodiscard]] std::string backend() const override { return "reference"; }
  [[nodiscard]] std::string precision() const override { return "double"; }
  [[nodiscard]] std::vector<double> input(int sample) const override { return st_.input(sample); }
  [[nodiscard]] std::vector<double> output_grad(int sample) const override { return st_.output_grad(sample); }
  [[nodiscard]] std::vector<double> block_forward(int sample, int layer, const std::vector<double>& X) const override {
    return st_.block_forward(sample, layer, X);
  }
  [[nodiscard]] std::vector<double> block_backward(int sample, int layer, const std::vector<double>& X,
                                                   const std::vector<double>& dY) const override {
    return st_.block_backward(sample, layer, X, dY);
  }
  [[nodiscard]] SampleMetrics run_sample(int sample) const override { return st_.run_sample(sample); }

 private:
  ReferenceStack st_;
};

}  // namespace

void check_backend(const std::string& b) {
  const auto& ok = available_backends();
  if (std::find(ok.begin(), ok.end(), b) != ok.end()) return;
  const std::string avail = fmt::format("{}", fmt::join(ok, ", "));
  std::string hint = b == "eigen" ? "cpu" : did_you_mean(b, {"reference", "cpu", "cuda"});
  throw ConfigError(fmt::format("backend: unknown backend \"{}\"{}; available: {}", b,
                                hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint), avail));
}

void check_precision(const std::string& backend, const std::string& precision) {
  const auto& ok = backend_precisions(backend);
  if (std::find(ok.begin(), ok.end(), precision) != ok.end()) return;
  if (precision == "float" || precision == "double")
    throw ConfigError(fmt::format("precision: the {} backend runs in {} only, not \"{}\"", backend,
                                  fmt::join(ok, ", "), precision));
  throw ConfigError(fmt::format("precision: unknown precision \"{}\"; the {} backend offers: {}", precision, backend,
                                fmt::join(ok, ", ")));
}

SamplingChoice resolve_weight_sampling(const StackSpec& spec, const std::string& backend,
                                       const std::string& requested) {
  if (requested != "" && requested != "explicit" && requested != "conditional") {
    const std::string hint = did_you_mean(requested, {"explicit", "conditional"});
    throw ConfigError(fmt::format("weights_sampling: unknown mode \"{}\"{}; expected explicit or conditional",
                                  requested, hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
  }
  if (requested == "explicit") return {WeightSampling::Explicit, ""};
  if (backend == "cuda") {
    if (requested == "conditional")
      throw ConfigError("weights_sampling: the cuda backend draws its weights explicitly only; use "
                        "weights_sampling = explicit, or backend = cpu or reference for conditional sampling");
    return {WeightSampling::Explicit, "the cuda backend draws its weights explicitly"};
  }
  // Conditioning costs O(T^2 (n + m)) per n x m matrix against explicit's O(T n m): faster iff T < min(n, m).
  const int min_nm = spec.has_mlp() ? std::min(spec.width, spec.mlp_width()) : spec.width;
  if (spec.tokens >= min_nm)
    return {WeightSampling::Explicit,
            fmt::format("{}T = {} >= {} = the smallest fan-in or fan-out of a weight matrix: explicit sampling "
                        "(conditioning would be exact but not faster)",
                        requested == "conditional" ? "conditional requested, but " : "", spec.tokens, min_nm)};
  return {WeightSampling::Conditional, ""};
}

InputKernel resolve_input_kernel(const std::string& backend, const std::string& requested) {
  if (requested != "" && requested != "sampled" && requested != "exact") {
    const std::string hint = did_you_mean(requested, {"sampled", "exact"});
    throw ConfigError(fmt::format("input_kernel: unknown value \"{}\"{}; expected sampled or exact", requested,
                                  hint.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", hint)));
  }
  if (requested != "exact") return InputKernel::Sampled;
  if (backend == "cuda")
    throw ConfigError("input_kernel: the cuda backend draws its input as MODEL.md §1 only (sampled); use "
                      "input_kernel = sampled, or backend = cpu or reference for input_kernel = exact");
  return InputKernel::Exact;
}

std::unique_ptr<StackBackend> make_stack_backend(const StackSpec& spec, uint64_t seed, const std::string& backend,
                                                 const std::string& precision, WeightSampling sampling,
                                                 const std::string& cuda_plugin_path, InputKernel input_kernel) {
  check_backend(backend);
  const std::string prec = precision.empty() ? default_precision(backend) : precision;
  check_precision(backend, prec);
  if (backend == "cuda" && sampling == WeightSampling::Conditional)
    throw ConfigError("weights_sampling: the cuda backend draws its weights explicitly only");
  if (backend == "cuda" && input_kernel == InputKernel::Exact)
    throw ConfigError("input_kernel: the cuda backend draws its input as MODEL.md §1 only (sampled)");
  if (backend == "reference") return std::make_unique<ReferenceBackend>(spec, seed, sampling, input_kernel);
  if (backend == "cuda") {
    validate_for_simulation(spec);
    return cuda_plugin(cuda_plugin_path).make_backend(spec, seed, prec);
  }
  if (prec == "float")
    return std::make_unique<EigenStack<float>>(spec, seed, kWeightCacheBytes, sampling, false, input_kernel);
  return std::make_unique<EigenStack<double>>(spec, seed, kWeightCacheBytes, sampling, false, input_kernel);
}

}  // namespace sigprop::sim
