#pragma once
/// @file ProgressFn lives in the public header (include/sigprop/progress.hpp); this one keeps
/// the internal include path working.
#include "sigprop/progress.hpp"
