#include "core/memory.hpp"

#include <atomic>
#include <cctype>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace sigprop {
namespace {
std::atomic<std::uint64_t> g_limit{0};
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
}  // namespace

std::uint64_t sat_mul(std::initializer_list<std::uint64_t> factors) {
  std::uint64_t r = 1;
  for (std::uint64_t f : factors) {
    if (f == 0) return 0;
    if (r > kMax / f) {
      r = kMax;
    } else {
      r *= f;
    }
  }
  return r;
}

std::uint64_t sat_add(std::initializer_list<std::uint64_t> terms) {
  std::uint64_t r = 0;
  for (std::uint64_t t : terms) r = (t > kMax - r) ? kMax : r + t;
  return r;
}

void set_memory_limit(std::uint64_t bytes) { g_limit.store(bytes, std::memory_order_relaxed); }
std::uint64_t memory_limit() { return g_limit.load(std::memory_order_relaxed); }

std::string format_bytes(std::uint64_t b) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b == kMax) return "more than 16 EiB";
  double x = static_cast<double>(b);
  int u = 0;
  while (x >= 1024.0 && u < 6) {
    x /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.3g} {}", x, units[u]);
}

void require_memory(std::uint64_t bytes, const std::string& what, const std::string& keys) {
  const std::uint64_t limit = memory_limit();
  // Without a limit only sizes no 64-bit machine can allocate are refused (the product saturated
  // or exceeds the 2^48-byte virtual address space of x86-64/ARMv8).
  const std::uint64_t cap = limit > 0 ? limit : (std::uint64_t{1} << 48);
  if (bytes <= cap) return;
  throw MemoryLimitError(fmt::format("{} would need about {} ({} bytes), driven by {}; {}", what, format_bytes(bytes),
                                     bytes == kMax ? std::string("> 2^64") : fmt::format("{}", bytes), keys,
                                     limit > 0 ? fmt::format("the memory limit is {}", format_bytes(limit))
                                               : std::string("more than a 64-bit address space holds")));
}

std::uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  auto bad = [&]() -> std::uint64_t {
    throw ConfigError(fmt::format("{}: expected a size such as 8G, 512M or 1000000 (bytes), 0 = no limit; got \"{}\"",
                                  what, text));
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return bad();
  double x = 0;
  try {
    size_t used = 0;
    x = std::stod(text.substr(0, i), &used);
    if (used != i) return bad();
  } catch (const std::exception&) {
    return bad();
  }
  std::string unit = text.substr(i);
  double mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    mult = 1024.0;
  else if (unit == "M" || unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return bad();
  const double v = x * mult;
  if (!std::isfinite(v) || v >= 1.8e19) return bad();
  if (unit.empty() && std::floor(x) != x) return bad();
  return static_cast<std::uint64_t>(v);
}

}  // namespace sigprop
