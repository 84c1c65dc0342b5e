#pragma once
/// @file The exact-kernel Monte Carlo input (InputKernel::Exact, docs/simulate.md "Input kernel:
/// sampled or exact"), shared by the reference and the Eigen backends.
///
/// MODEL.md §1 draws X_0 = sqrt(q0) (sqrt(1-rho0) G + sqrt(rho0) 1 g^T) with G (T, d) and g (d)
/// i.i.d. N(0, 1), so each sample's input kernel X_0 X_0^T / d is K0 = q0 ((1-rho0) I + rho0 11^T)
/// only up to O(1/sqrt d). The exact variant takes the same G and g, orthonormalises the d x (T+1)
/// matrix [g, G^T] (thin Householder QR in double, signs fixed so that R's diagonal is positive:
/// the unique Gram-Schmidt basis, close to [g, G^T] / sqrt(d) at large d), scales its columns to
/// squared norm d (g~, G~^T) and forms X_0 = sqrt(q0) (sqrt(1-rho0) G~ + sqrt(rho0) 1 g~^T), whose
/// Gram X_0 X_0^T / d equals K0 to rounding for every rho0 in [0, 1] and every sample. The law of
/// the Monte Carlo's stack is then its law conditional on the input kernel.
#include <vector>

#include "core/spec.hpp"
#include "sim/sample.hpp"  // InputKernel

namespace sigprop::sim {

/// Throws ConfigError naming input_kernel, stack.tokens and stack.width when `kernel` is Exact and
/// d < T + 1 (T + 1 orthonormal directions need d >= T + 1); nothing otherwise.
void check_input_kernel(const StackSpec& spec, InputKernel kernel);

/// The exact-kernel X_0 (T, d), row-major, in double, from G (T, d) row-major and g (d): the
/// streams InputG and InputG1 of the sample, unit normals. Needs d >= T + 1 (check_input_kernel).
std::vector<double> exact_kernel_input(const std::vector<double>& G, const std::vector<double>& g, int T, int d,
                                       double q0, double rho0);

}  // namespace sigprop::sim
