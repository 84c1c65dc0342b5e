// ARCHITECTURE.md "Layout": dependencies point one way (core <- theory, sim <- cuda <- mc <-
// validate <- reports <- api <- cli), and no folder includes one above it, even where CMake
// would not notice. Checked on the sources: every `#include "folder/..."` of a library folder
// must name the folder itself, one below it, or the generated/public "sigprop/" headers.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include <catch2/catch.hpp>

namespace fs = std::filesystem;

TEST_CASE("library folders include only the folders below them", "[layering]") {
  const std::set<std::string> core = {"sigprop", "core"};
  std::set<std::string> theory = core, validate = core, reports;
  theory.insert("theory");
  validate.insert({"theory", "sim", "mc", "validate"});
  reports = validate;
  reports.insert("reports");
  const std::map<std::string, std::set<std::string>> allowed = {
      {"core", core}, {"theory", theory}, {"validate", validate}, {"reports", reports}};
  const std::regex include_re(R"(^\s*#\s*include\s*"([^"/]+)/)");
  for (const auto& [folder, ok] : allowed) {
    const fs::path dir = fs::path(SIGPROP_SOURCE_DIR) / folder;
    REQUIRE(fs::is_directory(dir));
    int files = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || (ext != ".hpp" && ext != ".cpp" && ext != ".h" && ext != ".cu" && ext != ".cuh"))
        continue;
      ++files;
      std::ifstream in(e.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        std::smatch m;
        if (!std::regex_search(line, m, include_re)) continue;
        INFO(e.path().string() << ":" << n << ": " << line);
        CHECK(ok.count(m[1].str()) == 1);
      }
    }
    INFO(folder);
    CHECK(files > 0);
  }
}
