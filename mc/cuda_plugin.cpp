// The CUDA plug-in loader (mc/backends.hpp: cuda_plugin, cuda_plugin_candidates,
// cuda_device_info): dlopen of libsigprop_cuda.so on first use, its table checked against
// this build (cuda/plugin.hpp) before anything in it is called.
#include <dlfcn.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "mc/backends.hpp"
#include "sigprop/version.hpp"

namespace sigprop::sim {
namespace {

namespace fs = std::filesystem;

// The folder of the file that holds this code: the executable when sigprop is linked in
// statically, libsigprop.so when it is embedded as a shared library. dladdr names the main
// program as it was started (possibly a bare name found on PATH), so the executable is
// taken from /proc/self/exe instead; symbolic links are resolved, so an installed bin/sigprop
// linked from elsewhere still finds its own ../lib.
fs::path code_folder() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&code_folder), &info) != 0 && info.dli_fname != nullptr &&
      std::strchr(info.dli_fname, '/') != nullptr) {
    const fs::path self = fs::weakly_canonical(info.dli_fname, ec);
    if (!ec && !self.empty()) return self.parent_path();
  }
  if (!exe.empty()) return fs::weakly_canonical(exe, ec).parent_path();
  return {};
}

std::string describe(const std::string& candidate) {
  return candidate.find('/') == std::string::npos
             ? fmt::format("{} (the dynamic linker's search: LD_LIBRARY_PATH, ld.so.cache)", candidate)
             : candidate;
}

// The table of the plug-in at `path` (a file that exists, or the bare name) or nullptr with
// `why` set when dlopen fails; throws CudaError for a file that loads but is not a plug-in of
// this build.
const cuda::PluginTable* open_plugin(const std::string& path, std::string& why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    why = e != nullptr ? e : "dlopen failed";
    return nullptr;
  }
  auto reject = [&](const std::string& what) {
    dlclose(handle);
    return CudaError(fmt::format("backend \"cuda\": the CUDA plug-in {} {}", describe(path), what));
  };
  auto entry = reinterpret_cast<cuda::PluginEntryFn>(dlsym(handle, cuda::kPluginEntry));
  if (entry == nullptr)
    throw reject(fmt::format("is not a sigprop CUDA plug-in (it exports no {})", cuda::kPluginEntry));
  const cuda::PluginTable* t = entry();
  if (t == nullptr) throw reject(fmt::format("returned no table from {}", cuda::kPluginEntry));
  if (t->abi_version != cuda::kPluginAbiVersion)
    throw reject(fmt::format("has plug-in ABI version {}, this sigprop needs {}: use the plug-in built with it",
                             t->abi_version, cuda::kPluginAbiVersion));
  if (t->sigprop_version == nullptr || std::strcmp(t->sigprop_version, kVersion) != 0)
    throw reject(fmt::format("was built with sigprop {}, this is sigprop {}: use the plug-in built with it",
                             t->sigprop_version != nullptr ? t->sigprop_version : "(none)", kVersion));
  if (t->device_info == nullptr || t->precisions == nullptr || t->batch_size_for == nullptr ||
      t->make_backend == nullptr)
    throw reject("has an incomplete entry table");
  if (t->precisions() != backend_precisions("cuda"))
    throw reject(fmt::format("offers precisions {}, this sigprop expects {}", fmt::join(t->precisions(), ", "),
                             fmt::join(backend_precisions("cuda"), ", ")));
  return t;  // the handle stays open for the life of the process: its backends may still run
}

const cuda::PluginTable& load(const std::string& explicit_path) {
  std::vector<std::string> tried;
  for (const std::string& c : cuda_plugin_candidates(explicit_path)) {
    const bool bare = c.find('/') == std::string::npos;
    if (!bare && !fs::exists(c)) {
      tried.push_back(fmt::format("{} (no such file)", c));
      continue;
    }
    std::string why;
    if (const cuda::PluginTable* t = open_plugin(c, why)) return *t;
    if (!bare) throw CudaError(fmt::format("backend \"cuda\": the CUDA plug-in {} cannot be loaded: {}", c, why));
    tried.push_back(fmt::format("{}: {}", describe(c), why));
  }
  if (!explicit_path.empty())
    throw CudaError(
        fmt::format("backend \"cuda\": the CUDA plug-in given as cuda_plugin = \"{}\" does not exist", explicit_path));
#ifdef SIGPROP_CUDA_PLUGIN_BUILT
  const char* build = "it is built as the sigprop_cuda target";
#else
  const char* build = "this sigprop was configured with SIGPROP_ENABLE_CUDA=OFF, so it built none";
#endif
  throw CudaError(
      fmt::format("backend \"cuda\": the CUDA plug-in {} was not found ({}); tried {}. Put it "
                  "beside the sigprop library or executable, or name its path (setting cuda_plugin)",
                  cuda::kPluginFileName, build, fmt::join(tried, "; ")));
}

}  // namespace

std::vector<std::string> cuda_plugin_candidates(const std::string& explicit_path) {
  if (!explicit_path.empty()) return {explicit_path};
  std::vector<std::string> out;
  const fs::path dir = code_folder();
  if (!dir.empty())
    for (const fs::path& sub : {fs::path{}, fs::path{"../lib"}, fs::path{"../lib/sigprop"}})
      out.push_back((dir / sub / cuda::kPluginFileName).lexically_normal().string());
  out.emplace_back(cuda::kPluginFileName);
  return out;
}

const cuda::PluginTable& cuda_plugin(const std::string& explicit_path) {
  static std::mutex mutex;
  static std::map<std::string, const cuda::PluginTable*> loaded;  // by explicit path; failures are not kept
  std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(explicit_path);
  if (it != loaded.end()) return *it->second;
  const cuda::PluginTable& t = load(explicit_path);
  loaded.emplace(explicit_path, &t);
  return t;
}

cuda::DeviceInfo cuda_device_info(const std::string& explicit_path) {
  try {
    return cuda_plugin(explicit_path).device_info();
  } catch (const Error& e) {
    cuda::DeviceInfo none;
    none.why = e.what();
    return none;
  }
}

}  // namespace sigprop::sim
