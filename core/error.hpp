#pragma once
/// @file Error types thrown by library code. Expected outcomes (divergence at a
/// layer, no fixed point) are values in results, never exceptions.
#include <stdexcept>
#include <string>

// Default visibility for the error classes although the libraries hide everything else: the
// CUDA plug-in (cuda/plugin.hpp) throws them into the host, which catches them by type, so
// their type_info must be one object process-wide.
#define SIGPROP_ERROR_VISIBLE __attribute__((visibility("default")))

namespace sigprop {

/// Base of every exception sigprop throws.
class SIGPROP_ERROR_VISIBLE Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// A spec, config or command-line value that is unknown, mistyped or out of range.
class SIGPROP_ERROR_VISIBLE ConfigError : public Error {
 public:
  using Error::Error;
};
/// A computation that cannot proceed (singular input, non-finite value where
/// one is impossible to report as a value).
class SIGPROP_ERROR_VISIBLE NumericalError : public Error {
 public:
  using Error::Error;
};
/// A file that cannot be read, written or parsed.
class SIGPROP_ERROR_VISIBLE IoError : public Error {
 public:
  using Error::Error;
};
/// A run stopped because its progress callback returned false (core/progress.hpp). Nothing
/// was written; the partial result is discarded.
class SIGPROP_ERROR_VISIBLE CancelledError : public Error {
 public:
  using Error::Error;
};
/// A CUDA runtime or library failure, or no device where one is required.
class SIGPROP_ERROR_VISIBLE CudaError : public Error {
 public:
  using Error::Error;
};

}  // namespace sigprop
