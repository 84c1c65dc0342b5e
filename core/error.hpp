#pragma once
/// @file Error types thrown by library code. Expected outcomes (divergence at a
/// layer, no fixed point) are values in results, never exceptions.
#include <stdexcept>
#include <string>

namespace sigprop {

/// Base of every exception sigprop throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// A spec, config or command-line value that is unknown, mistyped or out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};
/// A computation that cannot proceed (singular input, non-finite value where
/// one is impossible to report as a value).
class NumericalError : public Error {
 public:
  using Error::Error;
};
/// A file that cannot be read, written or parsed.
class IoError : public Error {
 public:
  using Error::Error;
};
/// A run stopped because its progress callback returned false (core/progress.hpp). Nothing
/// was written; the partial result is discarded.
class CancelledError : public Error {
 public:
  using Error::Error;
};
/// A CUDA runtime or library failure, or no device where one is required.
class CudaError : public Error {
 public:
  using Error::Error;
};

}  // namespace sigprop
