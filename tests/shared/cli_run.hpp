#pragma once
/// @file What the tests share for files and commands: running the sigprop executable (or a
/// shell command line) with its exit code, stdout and stderr; a per-process scratch folder;
/// reading and writing whole files, and listing a folder. Used by the [cli] tests of every
/// subcommand and by the tests of progress, reports and the Monte Carlo's command.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace sigprop::test::cli {

namespace fs = std::filesystem;

struct Run {
  int code;
  std::string out, err;
};

/// The whole text of a file, byte for byte ("" if it cannot be read).
inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
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

/// Writes `text` to p, byte for byte, replacing the file.
inline void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

/// The regular files under dir, recursively, relative to dir (none when dir does not exist).
inline std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir));
  return out;
}

/// Runs a shell command line through std::system with its stdout and stderr (those of the
/// line's last command) captured in files of `dir`.
inline Run run_shell(const std::string& command, const fs::path& dir) {
  fs::path o = dir / "stdout", e = dir / "stderr";
  std::string cmd = command + " >" + o.string() + " 2>" + e.string();
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(o), slurp(e)};
}

/// Runs `sigprop <args>` with stdout and stderr captured in files of `dir`.
inline Run run_sigprop(const std::string& args, const fs::path& dir) {
  return run_shell(std::string(SIGPROP_CLI_PATH) + " " + args, dir);
}

}  // namespace sigprop::test::cli
