#pragma once
/// @file Running the sigprop executable from a test: a per-process scratch folder, the
/// command's exit code, stdout and stderr. Shared by the [cli] tests of every subcommand.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace sigprop::test::cli {

namespace fs = std::filesystem;

struct Run {
  int code;
  std::string out, err;
};

/// The whole text of a file ("" if it cannot be read).
inline std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A folder of this test process for `tag` (temp/sigprop_<tag>_<pid>), created once.
inline fs::path scratch_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("sigprop_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

/// Runs `sigprop <args>` with stdout and stderr captured in files of `dir`.
inline Run run_sigprop(const std::string& args, const fs::path& dir) {
  fs::path o = dir / "stdout", e = dir / "stderr";
  std::string cmd = std::string(SIGPROP_CLI_PATH) + " " + args + " >" + o.string() + " 2>" + e.string();
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(o), slurp(e)};
}

}  // namespace sigprop::test::cli
