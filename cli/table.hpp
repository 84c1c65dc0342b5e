#pragma once
#include <string>

#include "core/profile.hpp"

namespace sigprop::cli {
/// Human-readable per-layer table; at most max_rows layers (evenly spaced, first and
/// last always shown). When the profile has `_se` columns a footer gives the largest
/// relative standard error, introduced by se_label (what the error is an error of).
std::string format_table(const Profile& p, int max_rows, const std::string& se_label);
}  // namespace sigprop::cli
