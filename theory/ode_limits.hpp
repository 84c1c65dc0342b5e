#pragma once
/// @file Bounds of the adaptive ODE solves (continuum, clustering; docs/limits.md): the
/// tolerances double precision can honour, and the most right-hand-side evaluations one solve
/// may spend before it stops with an error instead of running (nearly) forever.
#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop::theory {

/// Smallest rel_tol: about 45 units in the last place of double precision (2.2e-16);
/// Dormand-Prince error estimates below it are rounding noise, so step control never settles.
inline constexpr double kMinRelTol = 1e-14;
/// Smallest abs_tol (the states are O(1) kernels and inner products).
inline constexpr double kMinAbsTol = 1e-300;
/// Default budget of right-hand-side evaluations per solve (Dormand-Prince: about 6 per step).
/// The default clustering run needs ~600, continuum ~200; t_end = 1000 at rel_tol 1e-14 ~9000;
/// 2e5 evaluations of the default clustering system take ~30 s on one core.
inline constexpr std::int64_t kDefaultMaxEvals = 200'000;

/// Throws ConfigError naming abs_tol/rel_tol unless kMinAbsTol <= abs_tol, kMinRelTol <=
/// rel_tol, both finite; who is "continuum" or "clustering".
inline void check_tolerances(double abs_tol, double rel_tol, const char* who) {
  if (!(rel_tol >= kMinRelTol) || !std::isfinite(rel_tol))
    throw ConfigError(fmt::format(
        "{}: rel_tol = {} is below what double precision can reach (machine epsilon 2.2e-16); use >= {} "
        "(docs/limits.md)",
        who, rel_tol, kMinRelTol));
  if (!(abs_tol >= kMinAbsTol) || !std::isfinite(abs_tol))
    throw ConfigError(fmt::format("{}: abs_tol = {} must be finite and >= {}", who, abs_tol, kMinAbsTol));
}

/// Counts right-hand-side evaluations; throws NumericalError naming the drivers once more than
/// max_evals are spent (`hint` says which options to change).
inline void count_eval(std::int64_t& calls, std::int64_t max_evals, const char* who, const std::string& hint) {
  if (++calls > max_evals)
    throw NumericalError(fmt::format(
        "{}: stopped after {} right-hand-side evaluations (max_evals) without reaching the end; {}", who,
        max_evals, hint));
}

}  // namespace sigprop::theory
