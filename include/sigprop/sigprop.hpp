#pragma once
/// @file Everything public in one include: the facade (sigprop/api.hpp) with StackSpec,
/// the error types and the progress callback. Link sigprop::sigprop (CMake) or `pkg-config
/// --libs sigprop`; docs/library.md shows how.
#include "sigprop/api.hpp"
#include "sigprop/error.hpp"
#include "sigprop/export.hpp"
#include "sigprop/progress.hpp"
#include "sigprop/spec.hpp"
