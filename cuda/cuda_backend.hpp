#pragma once
/// @file The GPU Monte Carlo backend (setting `backend = "cuda"`), reached only through the
/// run-time plug-in (cuda/plugin.hpp, mc/backends.hpp): MODEL.md §1 exactly as
/// sim/reference.hpp defines it, on a batch of samples at once. No CUDA type appears here.
///
///  - Random numbers: every weight, X_0 and Delta_L is drawn in-kernel from the reference's
///    streams (core/hd_math.hpp's Philox4x32-10 + Box-Muller, the definition of core/rng.hpp),
///    in double, scaled in double and rounded once to float, like the CPU float backend.
///    Weights are generated per layer for the whole batch and regenerated in the backward
///    pass; they are never stored for more than one layer.
///  - Products: cuBLAS strided-batched GEMMs over the samples of a batch (each sample has its
///    own weights); attention products per head, batched over samples. --precision tf32 lets
///    cuBLAS use TF32 tensor cores for them (FP32 accumulation).
///  - Norms, masked softmax, activations and their backward are fused kernels
///    (cuda/kernels.cu) over the per-element maths of core/hd_math.hpp.
///  - Metrics: the token kernels K = X X^T / d (double GEMM), their eigenvalues (batched
///    cuSOLVER syev), and every metric of MODEL.md §2 are computed on the device; only the
///    (L + 1) x samples x 7 table of per-layer values comes back to the host.
///  - Memory per sample is O(L T d + d^2 + T^2 H) floats; the batch size is chosen from a fixed
///    budget (not from the free memory), so a run's numbers do not depend on other processes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/plugin.hpp"  // DeviceInfo
#include "sim/backend.hpp"

namespace sigprop::cuda {

/// What the CUDA runtime reports; never throws.
DeviceInfo device_info();

/// "float" (default: FP32 GEMMs) and "tf32" (TF32 tensor-core GEMMs, FP32 everywhere else).
const std::vector<std::string>& precisions();

/// Samples per batch the backend would use for `spec` (memory budget / bytes per sample).
int batch_size_for(const StackSpec& spec);

/// The backend; the spec must already be validated (sim::validate_for_simulation). Throws
/// CudaError when no device is usable, ConfigError for an unknown precision.
std::unique_ptr<sim::StackBackend> make_backend(const StackSpec& spec, uint64_t seed, const std::string& precision);

}  // namespace sigprop::cuda
