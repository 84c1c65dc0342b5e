#pragma once
/// @file A decoder-only language model built from the MODEL.md §1 block (sim/block.hpp, the
/// same code the Monte Carlo runs): token and (optionally) learned position embeddings,
/// L blocks with learnable norm gains and biases, a final norm and an unembedding.
///
///   X_0[t] = wte[token_t] + wpe[t];  X_l = block_l(X_{l-1});  logits = N_f(X_L) W_U
///   loss   = mean over positions of cross-entropy(logits[t], target_t)
///
/// Tensor names (sigprop checkpoints; matrices are (fan_in, fan_out), applied as x W; blocks
/// are numbered 1..L as in MODEL.md):
///   wte (V, d), wpe (T, d), h.{l}.ln1.g / .b (norm of the attention half, or of the only
///   half), h.{l}.attn.wqkv (d, (H + 2 H_kv) dh), h.{l}.attn.bqkv, h.{l}.attn.wo (d, d),
///   h.{l}.attn.bo, h.{l}.ln2.g / .b (norm of the MLP half), h.{l}.mlp.w1 (d, R) [the gate
///   when gated], h.{l}.mlp.b1, h.{l}.mlp.w3 (d, R) [gated only], h.{l}.mlp.b3, h.{l}.mlp.w2
///   (R, d), h.{l}.mlp.b2, h.{l}.dense.w (d, d), h.{l}.dense.b, lnf.g, lnf.b, lm_head (d, V)
///   (absent when tied to wte). Absent parameters (no bias, no affine part) are absent tensors.
///
/// Initialisation (Model::initial): the blocks are Monte Carlo sample 0 of
/// sim::draw_layer_weights(spec, seed) — so an untrained model is one draw of the ensemble
/// the Monte Carlo averages over — with gains 1 and biases 0; wte and wpe entries
/// N(0, q0/2) each (N(0, q0) for wte without positions), so E|x_t|^2/d = q0 as MODEL.md's
/// X_0; lm_head N(0, 1/d).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/block.hpp"
#include "validate/safetensors.hpp"

namespace sigprop::validate {

using sim::ColVec;
using sim::Mat;
using sim::RowVec;

/// Everything that defines the model's shape and function (stored in every checkpoint).
struct ModelConfig {
  sim::Arch arch;             ///< the blocks; arch.spec.tokens is the context length
  int vocab = 256;            ///< V (256: the byte tokenizer)
  bool learned_pos = true;    ///< wpe
  bool final_norm = true;     ///< N_f before the unembedding
  bool tied = false;          ///< W_U = wte^T
  bool norm_affine = true;    ///< learnable gain in every norm
  bool norm_bias = true;      ///< learnable bias in every LayerNorm (RMSNorm never has one)
  bool mlp_bias = true;       ///< b1, b2 (and b3) in the MLP (MODEL.md has them; Llama does not)
  std::string family = "sigprop";  ///< where the weights came from: sigprop, gpt2, gpt-neox, llama

  /// Throws ConfigError naming the setting (spec keys as MODEL.md, others as "model.<key>").
  void validate() const;
  [[nodiscard]] nlohmann::json to_json() const;
  /// @throws ConfigError "<origin>: ..." naming the missing or bad key.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
};

/// Number of parameters (scalars) of cfg's model, computed from the config alone (nothing is
/// allocated; saturates at 2^64 - 1). Validates cfg. Checkpoint readers compare it with what
/// a file holds before allocating, and the trainer's memory estimate starts from it.
std::uint64_t param_count(const ModelConfig& cfg);

/// Before a checkpoint's model is allocated: IoError "<origin>: ..." when cfg declares more than
/// twice the values the files' tensors hold, plus 2^20 (a small file cannot make a reader allocate a huge
/// model), and MemoryLimitError when the model would not fit the memory limit (core/memory.hpp).
void check_config_fits_files(const ModelConfig& cfg, const std::vector<const safetensors::File*>& files,
                             const std::string& origin, std::size_t scalar_bytes);

/// The model's parameters in precision Real.
template <class Real>
struct Model {
  ModelConfig cfg;
  Mat<Real> wte;      ///< (V, d)
  Mat<Real> wpe;      ///< (T, d), learned_pos only
  std::vector<sim::LayerWeights<Real>> blocks;  ///< blocks[l - 1] is block l
  RowVec<Real> lnf_g, lnf_b;  ///< (d), final norm's affine part
  Mat<Real> lm_head;  ///< (d, V), empty when tied

  /// Every tensor of cfg's model, zero; validates cfg.
  static Model zeros(const ModelConfig& cfg);
  /// The initial model (see the file comment); validates cfg. ConfigError for extensions
  /// (BlockExt), which only come from imported checkpoints.
  static Model initial(const ModelConfig& cfg, uint64_t seed);
  /// Zeros of the same shapes (a gradient accumulator).
  [[nodiscard]] Model zeros_like() const;
  /// f(name, tensor) for every parameter tensor that exists, in a fixed order; tensor is an
  /// Eigen matrix or row vector (Mat<Real>& or RowVec<Real>&).
  template <class F>
  void for_each(F&& f);
  template <class F>
  void for_each(F&& f) const;
  /// f(name, mine, other's) over two models of the same shapes.
  template <class F>
  void for_each_pair(const Model& other, F&& f);
  [[nodiscard]] std::size_t num_params() const;
};

/// One sequence's forward pass, with what the backward pass and the measurements need.
template <class Real>
struct Trace {
  std::vector<Mat<Real>> X;                                ///< X_0 .. X_L, each (T, d)
  std::vector<std::vector<sim::HalfCache<Real>>> caches;  ///< caches[l - 1]: block l's half-blocks
  Mat<Real> xf_hat;                                        ///< (T, d) N_f(X_L) before its affine part
  ColVec<Real> rstd_f;                                     ///< (T)
  Mat<Real> xf;                                            ///< (T, d) input of the unembedding
  Mat<Real> logits;                                        ///< (T, V)
};

/// Forward through the model for token ids (T <= context, each in [0, V)). skip_block = l
/// (1..L) replaces block l by the identity (X_l = X_{l-1}: the drop-one-layer ablation);
/// 0 runs every block.
/// @throws ConfigError naming the position of a bad token or a too-long sequence.
template <class Real>
Trace<Real> forward(const Model<Real>& m, std::span<const int> tokens, int skip_block = 0);

/// Summed cross-entropy of the trace's logits against the targets (one per position), in double.
template <class Real>
double sequence_loss(const Trace<Real>& tr, std::span<const int> targets);

/// Back through the model from loss = scale * (summed cross-entropy of this sequence). Adds
/// the parameter gradients into *grads when grads is non-null; fills (*deltas)[l] = dloss/dX_l
/// (l = 0..L) when deltas is non-null.
template <class Real>
void backward(const Model<Real>& m, const Trace<Real>& tr, std::span<const int> tokens,
              std::span<const int> targets, double scale, Model<Real>* grads,
              std::vector<Mat<Real>>* deltas = nullptr);

/// A batch of sequences: inputs[b] and targets[b], each of the same length T.
struct Batch {
  std::vector<std::vector<int>> inputs, targets;
};

/// Mean cross-entropy over every position of the batch and, when grads is non-null, its
/// gradient (grads is overwritten). Sequences run on `threads` workers in fixed chunks summed
/// in a fixed order, so the numbers do not depend on the thread count. skip_block as forward().
template <class Real>
double loss_and_grad(const Model<Real>& m, const Batch& batch, Model<Real>* grads, int threads = 1,
                     int skip_block = 0);

/// Global L2 norm of every tensor of a model (a gradient), in double.
template <class Real>
double global_norm(const Model<Real>& g);

/// Writes the model as a safetensors checkpoint (tensors in `dtype`, a float type) with
/// metadata["sigprop.model"] = the config as JSON, plus `extra`. Atomic.
template <class Real>
void save_checkpoint(const std::filesystem::path& path, const Model<Real>& m,
                     const safetensors::Metadata& extra = {}, safetensors::Dtype dtype = safetensors::Dtype::F32);

/// Reads a sigprop checkpoint (written by save_checkpoint). Every expected tensor must be
/// present with its shape, nothing else may be: IoError naming the file and the tensor.
template <class Real>
Model<Real> load_checkpoint(const std::filesystem::path& path);

/// The model from an already parsed sigprop checkpoint (metadata "sigprop.model").
template <class Real>
Model<Real> model_from_safetensors(const safetensors::File& f);

/// The values of tensor t of file `source` (C order, widened to double) after checking that
/// it has a float dtype, exactly `shape`, and finite values: IoError "<source>: tensor
/// '<name>' ..." otherwise. Shared by sigprop checkpoints and the Hugging Face importers.
std::vector<double> checked_values(const safetensors::Tensor& t, const std::string& source,
                                   const std::vector<std::uint64_t>& shape);

/// Fills every tensor of m (shapes from m.cfg) from f by name: each must be present with
/// m's shape, a float dtype and finite values, and f may hold nothing else (IoError naming
/// the file and the tensor).
template <class Real>
void fill_from_safetensors(Model<Real>& m, const safetensors::File& f);

// ---------------------------------------------------------------------------------------
// template definitions

/// The safetensors shape of a model tensor: {rows, cols} for a matrix, {n} for a row vector.
template <class T>
std::vector<std::uint64_t> tensor_shape(const T& t) {
  if constexpr (T::RowsAtCompileTime == 1)
    return {static_cast<std::uint64_t>(t.cols())};
  else
    return {static_cast<std::uint64_t>(t.rows()), static_cast<std::uint64_t>(t.cols())};
}

namespace detail {
/// Field names of sim::LayerWeights in for_each_pair order.
inline const char* const kLayerTensorNames[] = {"attn.wqkv", "attn.bqkv", "attn.wo", "attn.bo", "mlp.w1",
                                               "mlp.w3",    "mlp.w2",    "mlp.b1",  "mlp.b3",  "mlp.b2",
                                               "dense.w",   "dense.b",   "ln1.g",   "ln1.b",   "ln2.g",
                                               "ln2.b"};
}  // namespace detail

template <class Real>
template <class F>
void Model<Real>::for_each(F&& f) {
  static_cast<const Model&>(*this).for_each(
      [&](const std::string& name, const auto& t) { f(name, const_cast<std::remove_cvref_t<decltype(t)>&>(t)); });
}

template <class Real>
template <class F>
void Model<Real>::for_each(F&& f) const {
  if (wte.size()) f(std::string("wte"), wte);
  if (wpe.size()) f(std::string("wpe"), wpe);
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    int i = 0;
    const std::string prefix = "h." + std::to_string(l + 1) + ".";
    blocks[l].for_each_pair(blocks[l], [&](const auto& t, const auto&) {
      const char* field = detail::kLayerTensorNames[i++];
      if (t.size()) f(prefix + field, t);
    });
  }
  if (lnf_g.size()) f(std::string("lnf.g"), lnf_g);
  if (lnf_b.size()) f(std::string("lnf.b"), lnf_b);
  if (lm_head.size()) f(std::string("lm_head"), lm_head);
}

template <class Real>
template <class F>
void Model<Real>::for_each_pair(const Model& other, F&& f) {
  // Both walks visit the same tensors in the same order when the configs agree.
  if (!(cfg.to_json() == other.cfg.to_json())) throw Error("internal: for_each_pair over models of different configs");
  std::vector<const void*> theirs;
  other.for_each([&](const std::string&, const auto& t) { theirs.push_back(&t); });
  std::size_t k = 0;
  for_each([&](const std::string& name, auto& t) {
    using T = std::remove_cvref_t<decltype(t)>;
    f(name, t, *static_cast<const T*>(theirs[k++]));
  });
}

}  // namespace sigprop::validate
