#pragma once
/// @file Metric definitions of MODEL.md §2, in two forms: on an explicit
/// stream X (T x d, finite width) and on its token kernel K = X X^T / d
/// (infinite width). Both forms are the same formulas, so engines agree by construction.
#include <Eigen/Dense>
#include <span>
#include <vector>

namespace sigprop {

/// Layer metrics that depend on one stream X_l.
struct StateMetrics {
  double q = 0;         ///< ||X||_F^2 / (T d)
  double rho = 0;       ///< mean over ordered pairs t != s of cos(x_t, x_s)
  double res = 0;       ///< ||X - 1 xbar^T||_F / ||X||_F
  double eff_rank = 0;  ///< exp(entropy of normalised singular values)
};
/// Metrics between consecutive streams X_{l-1}, X_l.
struct StepMetrics {
  double update_ratio = 0;  ///< ||X_l - X_{l-1}||_F / ||X_{l-1}||_F
  double ang_dist = 0;      ///< mean_t arccos(cos(x_{l-1,t}, x_{l,t})) / pi
};

/// From a token kernel K (T x T, K_ts = x_t . x_s / d). The singular values of X
/// are sqrt(d * eig(K)), so eff_rank uses sqrt of K's eigenvalues.
StateMetrics state_metrics_from_kernel(const Eigen::MatrixXd& K);
/// state_metrics_from_kernel on several kernels at once, the same values: the eigenvalues for
/// eff_rank come from selfadjoint_eigenvalues, which processes the kernels in SIMD lanes.
std::vector<StateMetrics> state_metrics_from_kernels(std::span<const Eigen::MatrixXd* const> Ks);
/// The eigenvalues, ascending, of each symmetric matrix in As (its lower triangle is read), by
/// the algorithm of Eigen's SelfAdjointEigenSolver with EigenvaluesOnly (scaling by the largest
/// entry, Householder tridiagonalisation, implicit symmetric QR steps with Wilkinson shift,
/// Golub & Van Loan §8.3), but with same-sized matrices processed together, one per SIMD lane
/// (8 with AVX-512, 4 with AVX, 2 otherwise; the QR iterations of 3 or 6 vectors stepped
/// alternately, so that their chains of dependent divisions and square roots overlap). On 1001
/// random 64 x 64 kernels, one core: 35 ms with AVX-512, 48 ms with AVX2, 91 ms with SSE2, against
/// 128 ms for Eigen's solver one matrix at a time (docs/theory.md, Performance). The values agree
/// with Eigen's to rounding (the tridiagonalisation sums in another order) and do not depend on
/// the rest of the batch. A matrix whose iteration does not converge within Eigen's limit
/// (30 n QR steps) keeps its unsorted values, as Eigen's does.
std::vector<Eigen::VectorXd> selfadjoint_eigenvalues(std::span<const Eigen::MatrixXd* const> As);
/// From the kernels of two consecutive layers and their cross kernel
/// C_ts = x_{l-1,t} . x_{l,s} / d (only the diagonal of C is used).
StepMetrics step_metrics_from_kernels(const Eigen::MatrixXd& Kprev, const Eigen::MatrixXd& Kcur,
                                      const Eigen::MatrixXd& C);
/// res = ||X - 1 xbar^T||_F / ||X||_F (MODEL.md §2) from the stream X itself (T x d, row-major,
/// read in double): the token mean is subtracted entry by entry, so a double stream resolves res
/// down to its own rounding (about T eps of ||X||), where the kernel form's tr K - 1^T K 1 / T
/// cancels to the rounding of tr K and floors res at about sqrt(eps) = 1.5e-8. In a stack whose
/// tokens collapse (res falling geometrically with depth) the kernel form flattens at that floor;
/// this one follows the collapse (docs/simulate.md "res below 1e-8"). NaN when X is all zeros.
double stream_res(const double* X, int T, int d);
/// Effective rank exp(H(p)), p_i = s_i / sum s_j, from singular values s (negative
/// round-off values are clipped to 0).
double effective_rank(const Eigen::VectorXd& singular_values);

}  // namespace sigprop
