#pragma once
/// @file Error types thrown by library code. Expected outcomes (divergence at a
/// layer, no fixed point) are values in results, never exceptions.
/// Every class here is exported, so a consumer of libsigprop.so catches them by type.
#include <stdexcept>
#include <string>

#include "sigprop/export.hpp"

namespace sigprop {

/// Base of every exception sigprop throws.
class SIGPROP_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// A spec, config or command-line value that is unknown, mistyped or out of range.
class SIGPROP_API ConfigError : public Error {
 public:
  using Error::Error;
};
/// A computation that cannot proceed (singular input, non-finite value where
/// one is impossible to report as a value).
class SIGPROP_API NumericalError : public Error {
 public:
  using Error::Error;
};
/// A file that cannot be read, written or parsed.
class SIGPROP_API IoError : public Error {
 public:
  using Error::Error;
};
/// A run stopped because its progress callback returned false (sigprop/progress.hpp). Nothing
/// was written; the partial result is discarded.
class SIGPROP_API CancelledError : public Error {
 public:
  using Error::Error;
};
/// A CUDA runtime or library failure, or no device where one is required.
class SIGPROP_API CudaError : public Error {
 public:
  using Error::Error;
};

}  // namespace sigprop
