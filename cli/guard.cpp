// Command-line checks before any work (see guard.hpp).
#include "cli/guard.hpp"

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/files.hpp"

namespace sigprop::cli {
namespace {
namespace fs = std::filesystem;

bool is_output(const std::string& name) {
  return name == "--json" || name == "--csv" || name == "--density-csv" || name == "--out";
}
bool is_input(const std::string& name) {
  return name == "spec" || name == "config" || name == "--corpus" || name == "--checkpoint";
}

/// One file under two names: the same inode when both exist (links followed), else the same
/// path once made absolute with links resolved as far as they exist.
bool same_file(const std::string& a, const std::string& b) {
  std::error_code ea, eb, ec;
  if (fs::exists(a, ea) && fs::exists(b, eb)) return fs::equivalent(a, b, ec) && !ec;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ea), cb = fs::weakly_canonical(fs::absolute(b), eb);
  return !ea && !eb && ca == cb;
}

struct Named {
  std::string option, path;
};

}  // namespace

void check_command_line(const CLI::App& sub) {
  std::vector<Named> outputs, inputs;
  for (const CLI::Option* opt : sub.get_options()) {
    if (opt->count() == 0 || opt->get_type_size_min() == 0) continue;  // not given, or a flag
    const std::string name = opt->get_name();
    for (const std::string& v : opt->results()) {
      if (v.empty())
        throw ConfigError(fmt::format("{}: empty value{}", name,
                                      is_output(name) || is_input(name) ? " (a file or folder name is needed)" : ""));
      if (is_output(name)) outputs.push_back({name, v});
      if (is_input(name)) inputs.push_back({name, v});
    }
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = i + 1; j < outputs.size(); ++j)
      if (same_file(outputs[i].path, outputs[j].path))
        throw ConfigError(fmt::format("{} {} and {} {} name the same file; give each output its own path",
                                      outputs[i].option, printable(outputs[i].path), outputs[j].option,
                                      printable(outputs[j].path)));
    for (const Named& in : inputs)
      if (same_file(outputs[i].path, in.path))
        throw ConfigError(fmt::format("{} {} is the input {} {}; writing it would destroy the input",
                                      outputs[i].option, printable(outputs[i].path), in.option, printable(in.path)));
  }
}

}  // namespace sigprop::cli
