#pragma once
/// @file Memory estimates made before an engine allocates (docs/limits.md "Sizes and memory").
/// Every engine adds up what it is about to allocate in saturating 64-bit arithmetic and calls
/// require_memory(), which refuses with MemoryLimitError (naming the sizes and the keys that
/// drive them) when the estimate exceeds the process-wide limit. The library's default limit
/// is 0 = none; the CLI sets it from --max-memory or /proc/meminfo's MemAvailable.
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/error.hpp"

namespace sigprop {

/// An engine would need more memory than the limit allows. A ConfigError: the fix is a
/// smaller input (the keys named in the message) or a larger limit.
class SIGPROP_API MemoryLimitError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

/// a * b * ..., saturating at UINT64_MAX (so an absurd size stays absurd instead of wrapping).
std::uint64_t sat_mul(std::initializer_list<std::uint64_t> factors);
/// a + b + ..., saturating at UINT64_MAX.
std::uint64_t sat_add(std::initializer_list<std::uint64_t> terms);

/// Sets the memory one engine run may plan to allocate, in bytes (0 = no limit). Process-wide;
/// set it before starting runs (it is read, never written, by engines).
void set_memory_limit(std::uint64_t bytes);
/// The current limit in bytes (0 = no limit).
[[nodiscard]] std::uint64_t memory_limit();

/// Throws MemoryLimitError "<what> would need about X (N bytes), driven by <keys>; the memory
/// limit is Y" when `bytes` exceeds memory_limit() (and no limit is set, when it exceeds
/// what a 64-bit address space can hold, i.e. the product saturated).
void require_memory(std::uint64_t bytes, const std::string& what, const std::string& keys);

/// "1.5 GiB", "12 MiB", "800 B": a size for people (binary units).
[[nodiscard]] std::string format_bytes(std::uint64_t bytes);

/// Parses a size such as "8G", "512M", "1.5GiB", "100000" (bytes) or "0" (no limit);
/// ConfigError naming `what` otherwise.
[[nodiscard]] std::uint64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace sigprop
