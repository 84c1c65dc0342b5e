#pragma once
/// @file Wording shared by every TOML reader (specs, report configs): how a node's type is
/// named in error messages. Needs toml++ (link tomlplusplus::tomlplusplus).
#include <string>

#include <toml++/toml.h>

namespace sigprop {

/// "a string", "an integer", "a number", "a boolean", "a table", "an array" or "a date/time".
std::string toml_type_name(const toml::node& n);

}  // namespace sigprop
