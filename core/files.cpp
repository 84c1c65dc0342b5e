// Output files and folders, bounded reads, printable messages (see files.hpp, docs/limits.md).
#include "core/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

/// write(2) until done; returns 0 or the errno of the failure.
int write_all(int fd, const std::string& text) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

bool under_proc_or_fd(const fs::path& p) {
  const std::string s = p.lexically_normal().string();
  return s.rfind("/proc/", 0) == 0 || s.rfind("/dev/fd/", 0) == 0 || s == "/dev/stdout" || s == "/dev/stderr";
}

/// Writes in place (devices, pipes, magic links): open without creating, write, close. Through
/// /dev/stdout or /proc/self/fd/N (append = true) the bytes are appended: when that descriptor
/// is a file the shell opened (`> log`, `>> log`), nothing already in it is overwritten.
void write_in_place(const fs::path& shown, const fs::path& path, const std::string& text, bool append) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (append ? O_APPEND : O_TRUNC));
  if (fd < 0) throw IoError(fmt::format("{}: cannot open for writing: {}", shown.string(), errno_text(errno)));
  const int e = write_all(fd, text);
  const int c = ::close(fd) == 0 ? 0 : errno;
  if (e != 0 || c != 0) throw IoError(fmt::format("{}: write failed: {}", shown.string(), errno_text(e ? e : c)));
}

/// Opens (creating) the temporary next to target and locks it, so that two writers of one
/// path never share it; a temporary left by a killed writer is reused. Falls back to a name
/// with the process id when another live writer holds the shared one.
int open_temp(const fs::path& tmp_shared, fs::path& tmp_out, const fs::path& shown) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(tmp_shared.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
      throw IoError(fmt::format("{}: cannot create the temporary file {}: {}", shown.string(), tmp_shared.string(),
                                errno_text(errno)));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      break;  // another live writer: use a private name
    }
    // The file we locked must still be the one under that name (a writer that finished may
    // have renamed it into place between our open and our lock).
    struct stat a{}, b{};
    if (::fstat(fd, &a) == 0 && ::lstat(tmp_shared.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino && S_ISREG(a.st_mode)) {
      if (::ftruncate(fd, 0) != 0) {
        const int e = errno;
        ::close(fd);
        throw IoError(fmt::format("{}: cannot truncate {}: {}", shown.string(), tmp_shared.string(), errno_text(e)));
      }
      tmp_out = tmp_shared;
      return fd;
    }
    ::close(fd);
  }
  tmp_out = tmp_shared.string() + "." + std::to_string(::getpid());
  const int fd = ::open(tmp_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0)
    throw IoError(fmt::format("{}: cannot create the temporary file {}: {}", shown.string(), tmp_out.string(),
                              errno_text(errno)));
  return fd;
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::string& text) {
  if (path.empty()) throw IoError("empty output path");
  // Follow symbolic links to the file they name: the link stays, its target gets the bytes.
  fs::path target = path;
  bool via_link = false;
  for (int hops = 0;; ++hops) {
    if (under_proc_or_fd(fs::absolute(target))) return write_in_place(path, path, text, true);
    struct stat ls{};
    if (::lstat(target.c_str(), &ls) != 0 || !S_ISLNK(ls.st_mode)) break;
    if (hops >= 40) throw IoError(fmt::format("{}: too many levels of symbolic links", path.string()));
    std::error_code ec;
    const fs::path next = fs::read_symlink(target, ec);
    if (ec) throw IoError(fmt::format("{}: cannot read the symbolic link: {}", path.string(), ec.message()));
    target = next.is_absolute() ? next : target.parent_path() / next;
    via_link = true;
  }
  struct stat st{};
  const bool exists = ::stat(target.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode))
    throw IoError(fmt::format("{}: is a folder, not a file", path.string()));
  // A device, pipe or socket (/dev/null, a FIFO) is written in place: renaming a temporary
  // file onto it would replace the device itself.
  if (exists && !S_ISREG(st.st_mode)) return write_in_place(path, target, text, false);

  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  if (!via_link && !fs::exists(dir, ec)) fs::create_directories(dir, ec);
  if (ec) throw IoError(fmt::format("{}: cannot create folder: {}", dir.string(), ec.message()));
  fs::path tmp;
  std::string tmp_name = target.filename().string();
  tmp_name.insert(tmp_name.begin(), '.');
  tmp_name.append(kTempSuffix);
  const int fd = open_temp(dir / tmp_name, tmp, path);
  int e = write_all(fd, text);
  if (e == 0 && exists) (void)::fchmod(fd, st.st_mode & 07777);
  const int c = ::close(fd) == 0 ? 0 : errno;  // the lock goes with the descriptor, after the rename below
  if (e == 0) e = c;
  if (e != 0) {
    ::unlink(tmp.c_str());
    throw IoError(fmt::format("{}: write failed: {}", path.string(), errno_text(e)));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int re = errno;  // read before unlink can change it
    ::unlink(tmp.c_str());
    throw IoError(fmt::format("{}: cannot move {} into place: {}", path.string(), tmp.filename().string(),
                              errno_text(re)));
  }
}

FolderLock::FolderLock(const fs::path& folder, const std::string& what) {
  std::error_code ec;
  if (folder.empty()) throw ConfigError(fmt::format("{}: empty folder name", what));
  if (fs::exists(folder, ec) && !fs::is_directory(folder, ec))
    throw ConfigError(fmt::format("{} {}: exists and is not a folder", what, folder.string()));
  fs::create_directories(folder, ec);
  if (ec) throw IoError(fmt::format("{} {}: cannot create folder: {}", what, folder.string(), ec.message()));
  const fs::path lock = folder / ".sigprop.lock";
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd_ < 0) throw IoError(fmt::format("{}: cannot open the lock file: {}", lock.string(), errno_text(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd_);
    fd_ = -1;
    if (e == EWOULDBLOCK)
      throw ConfigError(fmt::format(
          "{} {}: another sigprop run is writing this folder (it holds {}); wait for it to finish, or choose "
          "another folder",
          what, folder.string(), lock.string()));
    throw IoError(fmt::format("{}: cannot lock: {}", lock.string(), errno_text(e)));
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
/// The checks of read_regular_file on a stat result; returns the size.
std::uint64_t check_stat(const struct stat& st, const fs::path& path, const std::string& what,
                         std::uint64_t max_bytes) {
  if (S_ISDIR(st.st_mode)) throw IoError(fmt::format("{} {}: is a folder, not a file", what, path.string()));
  if (!S_ISREG(st.st_mode))
    throw IoError(fmt::format("{} {}: not a regular file (a device, pipe or socket may never end); copy the text "
                              "into a file",
                              what, path.string()));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes)
    throw IoError(fmt::format("{} {}: {} bytes is more than the limit of {} bytes (docs/limits.md)", what,
                              path.string(), size, max_bytes));
  return size;
}

// "<what> <path>: no such file" or "...: cannot open: <reason>", for every reader below.
IoError open_error(const fs::path& path, const std::string& what, int e) {
  return IoError(e == ENOENT ? fmt::format("{} {}: no such file", what, path.string())
                             : fmt::format("{} {}: cannot open: {}", what, path.string(), errno_text(e)));
}

// A file descriptor opened read-only (plus `flags`), closed on scope exit; throws open_error.
struct ReadFd {
  int fd;
  ReadFd(const fs::path& path, const std::string& what, int flags)
      : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | flags)) {
    if (fd < 0) throw open_error(path, what, errno);
  }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  ~ReadFd() { ::close(fd); }
};

template <class Bytes>
Bytes read_regular(const fs::path& path, const std::string& what, std::uint64_t max_bytes) {
  const ReadFd f(path, what, O_NONBLOCK);
  const int fd = f.fd;
  struct stat st{};
  if (::fstat(fd, &st) != 0) throw IoError(fmt::format("{} {}: cannot stat: {}", what, path.string(), errno_text(errno)));
  const auto size = check_stat(st, path, what, max_bytes);
  Bytes out;
  out.resize(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, reinterpret_cast<char*>(out.data()) + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(fmt::format("{} {}: read error: {}", what, path.string(), errno_text(errno)));
    }
    if (n == 0) break;  // shrank while we read
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

}  // namespace

std::string read_regular_file(const fs::path& path, const std::string& what, std::uint64_t max_bytes) {
  return read_regular<std::string>(path, what, max_bytes);
}
void check_regular_file(const fs::path& path, const std::string& what, std::uint64_t max_bytes) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) throw open_error(path, what, errno);
  (void)check_stat(st, path, what, max_bytes);
}
std::vector<std::uint8_t> read_regular_file_bytes(const fs::path& path, const std::string& what,
                                                  std::uint64_t max_bytes) {
  return read_regular<std::vector<std::uint8_t>>(path, what, max_bytes);
}

std::string read_bounded_file(const fs::path& path, const std::string& what, std::uint64_t max_bytes) {
  const ReadFd f(path, what, 0);
  const int fd = f.fd;
  struct stat st{};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
    throw IoError(fmt::format("{} {}: is a folder, not a file", what, path.string()));
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(fmt::format("{} {}: read error: {}", what, path.string(), errno_text(errno)));
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      throw IoError(fmt::format("{} {}: longer than the limit of {} bytes (docs/limits.md)", what, path.string(),
                                max_bytes));
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::string printable(std::string_view s, std::size_t max_chars) {
  std::string o;
  const std::size_t n = s.size();
  std::size_t i = 0;
  for (; i < n && o.size() < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      o += fmt::format("\\x{:02x}", c);
      continue;
    }
    if (c < 0x80) {
      o += static_cast<char>(c);
      continue;
    }
    // UTF-8: decode one code point; invalid bytes are escaped one by one.
    int len = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c >= 0xf8) len = 0;
    char32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (!ok || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      o += fmt::format("\\x{:02x}", c);
      continue;
    }
    // C1 controls, bidi embeddings/overrides/isolates, zero-width and line/paragraph separators.
    const bool hidden = (cp >= 0x80 && cp < 0xa0) || cp == 0x061c || cp == 0x200b || cp == 0x200c || cp == 0x200d ||
                        cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
                        (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
    if (hidden)
      o += fmt::format("\\u{{{:04x}}}", static_cast<unsigned>(cp));
    else
      o.append(s.substr(i, static_cast<std::size_t>(len)));
    i += static_cast<std::size_t>(len) - 1;
  }
  if (i < n) o += fmt::format("... ({} bytes in all)", n);
  return o;
}

}  // namespace sigprop
