#pragma once
/// @file What every TOML reader (specs, `--set` values, report configs) shares: the size and
/// nesting limits checked before toml++ sees the text, a bounded file reader, and how a
/// node's type is named in error messages. Needs toml++ (link tomlplusplus::tomlplusplus).
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <toml++/toml.h>

namespace sigprop {

/// Longest TOML text sigprop parses (1 MiB; the built-in report config is 2 kB). docs/limits.md.
inline constexpr std::size_t kMaxTomlBytes = std::size_t{1} << 20;
/// Deepest nesting sigprop parses: table-header components, dotted-key components, arrays and
/// inline tables counted together along one path. sigprop's own files need at most 4; toml++
/// recurses once per level, so unbounded nesting (a 50,000-level `[a.a.a…]`) overflows the stack.
inline constexpr int kMaxTomlNesting = 32;

/// Throws ConfigError "<origin>: …" when `text` is longer than kMaxTomlBytes or nests deeper
/// than kMaxTomlNesting. A linear scan that never recurses; it follows TOML's strings (basic,
/// literal, multi-line), comments, headers, dotted keys, arrays and inline tables well enough
/// to count nesting, and leaves every syntax error to the parser.
void check_toml_limits(std::string_view text, const std::string& origin);

/// Reads a whole TOML file of at most kMaxTomlBytes without ever reading more (so a special
/// file such as /dev/zero ends in an error, not a hang). IoError if it cannot be opened, is a
/// directory, or fails to read; ConfigError naming the file if it is longer than the limit.
/// `what` names the file's role in messages ("spec file", "report config").
std::string read_toml_file(const std::filesystem::path& path, const std::string& what);

/// "a string", "an integer", "a number", "a boolean", "a table", "an array" or "a date/time".
std::string toml_type_name(const toml::node& n);

}  // namespace sigprop
