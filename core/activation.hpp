#pragma once
/// @file sigprop::Activation (core/spec.hpp) onto hd::Act (core/hd_math.hpp), whose act_forward,
/// act_derivative, act_forward_derivative and act_derivative_from_value are the one definition
/// of phi and phi' for the theory engine, the cpu backend and the CUDA kernels (the reference
/// backend, sim/reference.cpp, keeps its own formulas as the independent oracle).
#include "core/hd_math.hpp"
#include "core/spec.hpp"

namespace sigprop {

static_assert(static_cast<int>(Activation::Relu) == static_cast<int>(hd::Act::Relu) &&
                  static_cast<int>(Activation::Gelu) == static_cast<int>(hd::Act::Gelu) &&
                  static_cast<int>(Activation::Tanh) == static_cast<int>(hd::Act::Tanh) &&
                  static_cast<int>(Activation::Erf) == static_cast<int>(hd::Act::Erf) &&
                  static_cast<int>(Activation::Silu) == static_cast<int>(hd::Act::Silu) &&
                  static_cast<int>(Activation::Linear) == static_cast<int>(hd::Act::Linear) &&
                  static_cast<int>(Activation::GeluTanh) == static_cast<int>(hd::Act::GeluTanh),
              "hd::Act must list the activations in sigprop::Activation's order");

constexpr hd::Act to_hd(Activation a) {
  return static_cast<hd::Act>(static_cast<int>(a));
}

}  // namespace sigprop
