// libFuzzer harness for checkpoint metadata -> model config (validate/model.hpp).
//
// The input is the JSON text of a checkpoint's __metadata__ "sigprop.model". Two paths:
//   - ModelConfig::from_json must return a config or throw ConfigError (or nlohmann's
//     parse_error for text that is not JSON); an accepted config validates, has a finite
//     parameter count that Model::zeros agrees with when small, and round-trips through to_json;
//   - model_from_safetensors on a file holding that metadata and no tensors must throw IoError
//     (or MemoryLimitError) before allocating the model it declares: libFuzzer's -rss_limit_mb
//     turns an allocation of the declared model into a finding.
// Run with scripts/fuzz.sh (seed corpus: fuzz/corpus/checkpoint_meta).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "validate/model.hpp"

namespace v = sigprop::validate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sigprop::set_memory_limit(std::uint64_t{256} << 20);
  sigprop::safetensors::File f;
  f.source = "fuzz-input";
  f.metadata["sigprop.model"] = text;
  try {
    (void)v::model_from_safetensors<float>(f);
    std::abort();  // no tensors: a model can never be complete
  } catch (const sigprop::IoError&) {
  } catch (const sigprop::MemoryLimitError&) {
  }

  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  v::ModelConfig cfg;
  try {
    cfg = v::ModelConfig::from_json(j, "fuzz-input");
  } catch (const sigprop::ConfigError&) {
    return 0;
  }
  cfg.validate();
  const std::uint64_t n = v::param_count(cfg);
  if (n == 0) std::abort();  // saturates at 2^64 - 1 for the largest configs, never wraps to 0
  if (n < (std::uint64_t{1} << 16) && v::Model<float>::zeros(cfg).num_params() != n) std::abort();
  if (v::ModelConfig::from_json(cfg.to_json(), "<round trip>").to_json() != cfg.to_json()) std::abort();
  return 0;
}
