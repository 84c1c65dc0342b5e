#pragma once
/// @file StackSpec (include/sigprop/spec.hpp) read from TOML (MODEL.md §3), overridden by
/// `--set table.key=value`, validated with errors that name the offending key, and written as
/// JSON. The JSON functions live here, not in the public header, which carries no nlohmann.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sigprop/spec.hpp"

namespace sigprop {

/// Every key of the spec as JSON (the resolved spec written into Profiles).
nlohmann::json spec_to_json(const StackSpec& spec);
/// Parses a JSON object of the spec_to_json form (used to read Profiles back).
StackSpec spec_from_json(const nlohmann::json& j);

/// Parses a TOML document. `origin` names the file in error messages.
StackSpec parse_spec_toml(std::string_view text, const std::string& origin = "<spec>");
/// Reads and parses a TOML file; IoError if unreadable, ConfigError if invalid.
StackSpec load_spec_file(const std::filesystem::path& path);
/// Applies one override "table.key=value" (value in TOML syntax or a bare word).
void apply_override(StackSpec& spec, std::string_view assignment);
/// Applies overrides in order (the last one for a key wins) and validates.
StackSpec resolve_spec(const std::string& path_or_empty, const std::vector<std::string>& overrides);

/// Spec rendered back to TOML (round-trips through parse_spec_toml).
std::string to_toml(const StackSpec& spec);

/// Closest candidate by edit distance, or "" when nothing is close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace sigprop
