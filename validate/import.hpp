#pragma once
/// @file Importers for Hugging Face checkpoints (issue 5): GPT-2, GPT-NeoX (Pythia) and Llama
/// decoder-only language models, read from `config.json` + `model.safetensors` (or a sharded
/// `model.safetensors.index.json`) onto sigprop's language model (validate/model.hpp), and
/// load_model, which also reads sigprop's own checkpoints. docs/import.md has the mapping
/// table, the architecture extensions used and what is rejected.
///
/// Errors:
///  - ConfigError "<config.json>: ..." for anything the config asks that sigprop's stack
///    cannot compute exactly (an unsupported model_type, rope scaling, sliding windows,
///    cross-attention, an unsupported activation, head_dim != hidden/heads, ...), naming the
///    config key;
///  - IoError "<file>: ..." naming the file and the tensor for a missing, misshaped,
///    non-float or non-finite tensor, an unused tensor (other than known buffers such as
///    GPT-2's `attn.bias` mask or `rotary_emb.inv_freq`), or a file that fails the
///    safetensors validation (validate/safetensors.hpp).
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "validate/model.hpp"
#include "validate/safetensors.hpp"

namespace sigprop::validate {

/// The model_type values of config.json that import_hf reads.
inline const std::vector<std::string> kHfModelTypes = {"gpt2", "gpt_neox", "llama"};

/// Imports a Hugging Face checkpoint: `dir_or_file` is a folder holding config.json and
/// model.safetensors (or model.safetensors.index.json and its shards), or a .safetensors
/// file with config.json next to it. Weights of any float dtype (F64, F32, F16, BF16) are
/// widened exactly and rounded once to Real.
template <class Real>
Model<Real> import_hf(const std::filesystem::path& dir_or_file);

/// The model config that import_hf builds from a parsed config.json (`origin` labels errors).
/// @throws ConfigError "<origin>: ..." naming the key.
ModelConfig hf_model_config(const nlohmann::json& config, const std::string& origin);

/// import_hf on an already parsed config and weights (the tensors of every shard in `files`).
template <class Real>
Model<Real> import_hf(const nlohmann::json& config, const std::string& origin,
                      const std::vector<safetensors::File>& files);

/// Reads a model for measurement: a sigprop checkpoint (a safetensors file whose
/// __metadata__ has "sigprop.model") is read with load_checkpoint; otherwise a folder, or a
/// safetensors file with config.json next to it, is imported with import_hf. Anything else
/// is an IoError saying what was expected.
template <class Real>
Model<Real> load_model(const std::filesystem::path& path);

}  // namespace sigprop::validate
