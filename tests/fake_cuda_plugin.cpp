// A stand-in for libsigprop_cuda.so (cuda/plugin.hpp) for tests/test_cuda_plugin.cpp, built as
// one MODULE per FAKE_PLUGIN_* kind: NODEVICE is well-formed and reports no device (its
// make_backend throws CudaError, which the host must catch by type); ABI and VERSION carry a
// wrong ABI or sigprop version; NOENTRY exports no entry point at all.
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "cuda/plugin.hpp"
#include "sigprop/version.hpp"

#ifndef FAKE_PLUGIN_NOENTRY
namespace {

using sigprop::cuda::DeviceInfo;

DeviceInfo fake_device_info() {
  DeviceInfo d;
  d.why = "fake plug-in: no device";
  return d;
}

const std::vector<std::string>& fake_precisions() {
  static const std::vector<std::string> p{"float", "tf32"};
  return p;
}

int fake_batch_size_for(const sigprop::StackSpec&) {
  return 7;
}

std::unique_ptr<sigprop::sim::StackBackend> fake_make_backend(const sigprop::StackSpec&, uint64_t,
                                                              const std::string& precision) {
  throw sigprop::CudaError("fake plug-in: no usable CUDA device (precision " + precision + ")");
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const sigprop::cuda::PluginTable* sigprop_cuda_plugin_v1() {
#ifdef FAKE_PLUGIN_ABI
  constexpr int abi = 999;
#else
  constexpr int abi = sigprop::cuda::kPluginAbiVersion;
#endif
#ifdef FAKE_PLUGIN_VERSION
  const char* version = "0.0.0-fake";
#else
  const char* version = sigprop::kVersion;
#endif
  static const sigprop::cuda::PluginTable table{
      abi, version, &fake_device_info, &fake_precisions, &fake_batch_size_for, &fake_make_backend};
  return &table;
}
#else
extern "C" __attribute__((visibility("default"))) int not_a_sigprop_plugin() {
  return 0;
}
#endif
