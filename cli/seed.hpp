#pragma once
/// @file The check every --seed option shares: a decimal whole number in [0, 2^64 - 1]. CLI11
/// alone would read "-1" as 2^64 - 1, saturate 99999999999999999999 to it, and read "010" as
/// octal 8; a seed is never wrapped, saturated or reinterpreted.
#include <string>

#include <CLI/CLI.hpp>

// Attach with ->transform(seed_check()), not ->check(): only a transform's rewrite of the
// text ("010" -> "10") reaches the conversion.

namespace sigprop::cli {

inline CLI::Validator seed_check() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const std::string why = "a seed is a whole number in [0, 18446744073709551615], got \"" + s.substr(0, 40) +
                                (s.size() > 40 ? "…" : "") + "\"";
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return why;
        const std::size_t nz = s.find_first_not_of('0');
        std::string digits = nz == std::string::npos ? "0" : s.substr(nz);  // "010" is ten, not octal
        if (digits.size() > 20 || (digits.size() == 20 && digits > "18446744073709551615")) return why;
        s = digits;
        return "";
      },
      "SEED", "seed");
}

}  // namespace sigprop::cli
