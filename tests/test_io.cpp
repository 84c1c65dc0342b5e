// Output files: atomic replacement of regular files, in-place writes to devices and pipes.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.hpp"
#include "core/profile.hpp"

namespace fs = std::filesystem;

TEST_CASE("write_file_atomic replaces a regular file and leaves no temporary behind", "[config]") {
  const fs::path dir = fs::temp_directory_path() / ("sigprop_io_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path f = dir / "out.json";
  sigprop::write_file_atomic(f, "first\n");
  sigprop::write_file_atomic(f, "second\n");
  std::ifstream in(f);
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK(ss.str() == "second\n");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) entries += e.exists() ? 1 : 0;
  CHECK(entries == 1);
  fs::remove_all(dir);
}

TEST_CASE("write_file_atomic writes into a pipe instead of replacing it (as /dev/null, /dev/stdout)",
          "[config]") {
  const fs::path dir = fs::temp_directory_path() / ("sigprop_fifo_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // A non-blocking reader first, so the writer's open succeeds at once (and a regression
  // that renames over the pipe cannot hang the test).
  const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(fd >= 0);
  sigprop::write_file_atomic(fifo, "through the pipe\n");
  CHECK(fs::is_fifo(fs::status(fifo)));
  char buf[64] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "through the pipe\n");
  fs::remove_all(dir);
}
