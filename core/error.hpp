#pragma once
/// @file The error types live in the public header (include/sigprop/error.hpp); this one keeps
/// the internal include path working.
#include "sigprop/error.hpp"
