#pragma once
/// @file The ABI between sigprop and its CUDA plug-in (libsigprop_cuda.so, cuda/plugin.cpp),
/// loaded at run time by mc/cuda_plugin.cpp so that nothing but the plug-in links the CUDA
/// runtime, cuBLAS or cuSOLVER. Plain C++: no CUDA type, and the only header of cuda/ that
/// mc/ includes.
///
/// The plug-in exports one `extern "C"` symbol, kPluginEntry, returning a PluginTable. The host
/// checks abi_version and sigprop_version before it touches anything else: the table's
/// functions pass std::string, std::vector and std::unique_ptr<StackBackend>, so host and
/// plug-in must come from the same sigprop sources built with the same C++ library.
/// Exceptions (sigprop::ConfigError, CudaError) cross the boundary; core/error.hpp gives the
/// error classes default visibility so the host catches them by type.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/spec.hpp"
#include "sim/backend.hpp"

namespace sigprop::cuda {

/// Raised whenever PluginTable or the meaning of one of its entries changes.
inline constexpr int kPluginAbiVersion = 1;
/// The plug-in's file name (build/lib/, or lib/sigprop/ of an installed prefix).
inline constexpr const char* kPluginFileName = "libsigprop_cuda.so";
/// The symbol the plug-in exports: `extern "C" const PluginTable* sigprop_cuda_plugin_v1()`.
inline constexpr const char* kPluginEntry = "sigprop_cuda_plugin_v1";

/// What the CUDA runtime reports; never throws.
struct DeviceInfo {
  bool available = false;  ///< a device can be used
  std::string name;        ///< e.g. "NVIDIA H100 80GB HBM3"
  std::string why;         ///< when not available: the runtime's reason
  int cc_major = 0, cc_minor = 0;
  double memory_gib = 0;
};

/// The plug-in's entry points (cuda/cuda_backend.hpp documents each).
struct PluginTable {
  int abi_version;              ///< kPluginAbiVersion of the plug-in's build
  const char* sigprop_version;  ///< sigprop::kVersion of the plug-in's build
  DeviceInfo (*device_info)();
  const std::vector<std::string>& (*precisions)();
  int (*batch_size_for)(const StackSpec& spec);
  std::unique_ptr<sim::StackBackend> (*make_backend)(const StackSpec& spec, uint64_t seed,
                                                     const std::string& precision);
};

using PluginEntryFn = const PluginTable* (*)();

}  // namespace sigprop::cuda
