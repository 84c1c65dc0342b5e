// The exact-kernel Monte Carlo input (sim/input.hpp).
#include "sim/input.hpp"

#include <cmath>
#include <cstddef>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop::sim {

void check_input_kernel(const StackSpec& spec, InputKernel kernel) {
  if (kernel == InputKernel::Exact && spec.width < spec.tokens + 1)
    throw ConfigError(fmt::format(
        "input_kernel: \"exact\" orthonormalises T + 1 = {} directions in R^d, so it needs stack.width >= "
        "stack.tokens + 1; got stack.tokens = {} and stack.width = {} (use input_kernel = \"sampled\")",
        spec.tokens + 1, spec.tokens, spec.width));
}

std::vector<double> exact_kernel_input(const std::vector<double>& G, const std::vector<double>& g, int T, int d,
                                       double q0, double rho0) {
  const auto n = static_cast<std::size_t>(T) * static_cast<std::size_t>(d);
  if (G.size() != n || g.size() != static_cast<std::size_t>(d) || d < T + 1)
    throw Error(fmt::format("internal: exact_kernel_input with G of {} entries, g of {}, (T, d) = ({}, {})", G.size(),
                            g.size(), T, d));
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // M = [g, G^T] (d, T+1): column 0 is g, column 1 + t is token t's row of G.
  Eigen::MatrixXd M(d, T + 1);
  M.col(0) = Eigen::Map<const Eigen::VectorXd>(g.data(), d);
  M.rightCols(T) = Eigen::Map<const RowMat>(G.data(), T, d).transpose();
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(M);
  Eigen::MatrixXd Q = qr.householderQ() * Eigen::MatrixXd::Identity(d, T + 1);  // thin Q (d, T+1)
  // M = Q R with R's diagonal made positive: the Gram-Schmidt basis of M's columns (unique for
  // full column rank, which holds with probability one).
  const double scale = std::sqrt(static_cast<double>(d));
  for (int j = 0; j <= T; ++j) Q.col(j) *= (qr.matrixQR()(j, j) < 0 ? -scale : scale);
  const double a = std::sqrt(q0 * (1.0 - rho0)), b = std::sqrt(q0 * rho0);
  std::vector<double> X(n);
  Eigen::Map<RowMat> Xm(X.data(), T, d);
  Xm = a * Q.rightCols(T).transpose();
  Xm.rowwise() += b * Q.col(0).transpose();
  return X;
}

}  // namespace sigprop::sim
