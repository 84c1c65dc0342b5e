#pragma once
/// @file Output files and folders (docs/limits.md): the one atomic writer every output goes
/// through, the lock that keeps two runs out of one output folder, bounded reads of input
/// files, and the escaping of untrusted text in error messages.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sigprop {

/// Writes text to path so that a reader never sees a half-written file:
/// - a regular file (or nothing) at path: bytes go to a temporary `.<name>.sigprop-tmp` in the
///   same folder, which is then renamed over path (mode of an existing file kept). A killed
///   write leaves at most that one temporary, which the next write of the same path reuses;
/// - a symbolic link: followed; its final target is written as above, the link stays a link;
/// - a device, FIFO or socket (/dev/null, a pipe): written in place, never replaced;
/// - /dev/stdout, /dev/stderr, or anything reached through /proc or /dev/fd: appended in
///   place (a shell's `> file` or `>> file` behind it keeps what is already there);
/// - a folder, an empty path or a link loop: IoError naming the path.
/// Missing parent folders of path are created. Throws IoError naming the path and the reason.
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

/// Suffix of the temporary file write_file_atomic renames into place.
inline constexpr std::string_view kTempSuffix = ".sigprop-tmp";

/// An exclusive advisory lock (flock) on `<folder>/.sigprop.lock`, held for the object's
/// life (and released by the kernel when the process dies). The folder is created first.
/// A second sigprop run on the same folder gets ConfigError naming the folder and `what`.
class FolderLock {
 public:
  FolderLock(const std::filesystem::path& folder, const std::string& what);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

/// Largest input file read whole (corpora): 4 GiB.
inline constexpr std::uint64_t kMaxInputFileBytes = std::uint64_t{4} << 30;

/// Reads a regular file whole. `what` names it in errors ("corpus", "spec"). Throws IoError
/// for a missing file, a folder, a device/FIFO/socket (they may never end, e.g. /dev/zero),
/// a file larger than max_bytes, or a read error.
std::string read_regular_file(const std::filesystem::path& path, const std::string& what,
                              std::uint64_t max_bytes = kMaxInputFileBytes);
/// The checks of read_regular_file without reading: throws the same IoError.
void check_regular_file(const std::filesystem::path& path, const std::string& what,
                        std::uint64_t max_bytes = kMaxInputFileBytes);
/// read_regular_file into bytes.
std::vector<std::uint8_t> read_regular_file_bytes(const std::filesystem::path& path, const std::string& what,
                                                  std::uint64_t max_bytes = kMaxInputFileBytes);

/// Largest spec or report config read: 64 MiB.
inline constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t{64} << 20;

/// Reads a file of any kind (a pipe too: `sigprop theory /dev/stdin`) up to max_bytes; more is
/// an IoError naming the file, `what` and the limit (so /dev/zero ends at once). A folder or a
/// missing file is an IoError too.
std::string read_bounded_file(const std::filesystem::path& path, const std::string& what,
                              std::uint64_t max_bytes = kMaxTextFileBytes);

/// Untrusted text for a one-line message: control characters (ANSI escapes, newlines) and
/// Unicode bidi/invisible formatting characters as \xNN / \u{NNNN}; invalid UTF-8 bytes as
/// \xNN; longer than max_chars bytes: cut, with "... (N bytes in all)".
std::string printable(std::string_view s, std::size_t max_chars = 200);

}  // namespace sigprop
