// The CUDA plug-in's one exported symbol (cuda/plugin.hpp): the table of the GPU backend's
// entry points. Everything else in libsigprop_cuda.so is hidden (CMAKE_CXX_VISIBILITY_PRESET).
#include "cuda/plugin.hpp"

#include "cuda/cuda_backend.hpp"
#include "sigprop/version.hpp"

extern "C" __attribute__((visibility("default"))) const sigprop::cuda::PluginTable* sigprop_cuda_plugin_v1() {
  static const sigprop::cuda::PluginTable table{sigprop::cuda::kPluginAbiVersion, sigprop::kVersion,
                                                &sigprop::cuda::device_info,      &sigprop::cuda::precisions,
                                                &sigprop::cuda::batch_size_for,   &sigprop::cuda::make_backend};
  return &table;
}
