#pragma once
#include <string>

#include "core/profile.hpp"

namespace sigprop::cli {
/// Human-readable per-layer table; at most max_rows layers (evenly spaced, first and
/// last always shown), with "± se" when the profile has standard errors.
std::string format_table(const Profile& p, int max_rows);
}  // namespace sigprop::cli
