// The batched eigenvalues behind eff_rank (core/metrics.hpp: selfadjoint_eigenvalues,
// state_metrics_from_kernels) against Eigen's SelfAdjointEigenSolver and closed forms.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "core/metrics.hpp"

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;

// Q diag(lambda) Q^T with Q Haar-random (QR of a Gaussian matrix), symmetrised exactly.
MatrixXd with_spectrum(const VectorXd& lambda, std::mt19937_64& rng) {
  const auto n = lambda.size();
  std::normal_distribution<double> g;
  MatrixXd G(n, n);
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < n; ++i) G(i, j) = g(rng);
  const MatrixXd Q = Eigen::HouseholderQR<MatrixXd>(G).householderQ();
  MatrixXd A = Q * lambda.asDiagonal() * Q.transpose();
  return (A + A.transpose()) / 2;
}

MatrixXd equicorrelated(int T, double q, double r) {
  MatrixXd K = MatrixXd::Constant(T, T, q * r);
  K.diagonal().setConstant(q);
  return K;
}

// A test set of symmetric positive semi-definite matrices of every kind the brief of issue 18
// names: random SPD, rank-deficient, repeated and equal eigenvalues, diagonal, tiny sizes, and
// spectra spread over 1e-12 .. 1e12.
std::vector<MatrixXd> cases() {
  std::mt19937_64 rng(20261206);
  std::uniform_real_distribution<double> u(0.1, 3.0);
  std::vector<MatrixXd> out;
  for (int n : {1, 2, 3, 4, 5, 7, 16, 33, 64, 64, 64}) {  // random SPD
    VectorXd lam(n);
    for (int i = 0; i < n; ++i) lam(i) = u(rng);
    out.push_back(with_spectrum(lam, rng));
  }
  for (int r : {1, 3, 20}) {  // rank r < T = 32: X X^T / d with X of rank r
    std::normal_distribution<double> g;
    MatrixXd X(32, r);
    for (Eigen::Index j = 0; j < r; ++j)
      for (Eigen::Index i = 0; i < 32; ++i) X(i, j) = g(rng);
    out.push_back(X * X.transpose() / r);
  }
  for (double rho : {0.5, 1 - 1e-6, 1 - 1e-12, 1.0}) out.push_back(equicorrelated(64, 1.7, rho));  // rho -> 1
  out.push_back(with_spectrum(VectorXd::Constant(16, 2.0), rng));                                  // all equal
  {
    VectorXd lam(24);  // three eigenvalues, each 8 times
    for (int i = 0; i < 24; ++i) lam(i) = 1.0 + i % 3;
    out.push_back(with_spectrum(lam, rng));
  }
  {
    VectorXd lam(40);  // an exact zero 10 times
    for (int i = 0; i < 40; ++i) lam(i) = i < 10 ? 0.0 : u(rng);
    out.push_back(with_spectrum(lam, rng));
  }
  out.push_back(MatrixXd::Identity(64, 64));
  {
    VectorXd dg(50);  // diagonal (already tridiagonal with zero off-diagonal) and unsorted
    for (int i = 0; i < 50; ++i) dg(i) = u(rng);
    out.push_back(dg.asDiagonal());
  }
  out.push_back(MatrixXd::Zero(5, 5));
  for (int n : {8, 64}) {  // spectra spread over 24 decades
    VectorXd lam(n);
    for (int i = 0; i < n; ++i) lam(i) = std::pow(10.0, -12.0 + 24.0 * i / (n - 1));
    out.push_back(with_spectrum(lam, rng));
  }
  for (double s : {1e-12, 1e12}) {  // a whole matrix scaled
    VectorXd lam(20);
    for (int i = 0; i < 20; ++i) lam(i) = s * u(rng);
    out.push_back(with_spectrum(lam, rng));
  }
  return out;
}

}  // namespace

TEST_CASE("batched eigenvalues agree with Eigen's SelfAdjointEigenSolver", "[analytic][metrics]") {
  const std::vector<MatrixXd> A = cases();
  std::vector<const MatrixXd*> ptr;
  for (const MatrixXd& a : A) ptr.push_back(&a);
  const std::vector<VectorXd> eig = sigprop::selfadjoint_eigenvalues(ptr);
  const std::vector<sigprop::StateMetrics> sm = sigprop::state_metrics_from_kernels(ptr);
  REQUIRE(eig.size() == A.size());
  REQUIRE(sm.size() == A.size());
  for (std::size_t i = 0; i < A.size(); ++i) {
    INFO("matrix " << i << ", n = " << A[i].rows());
    Eigen::SelfAdjointEigenSolver<MatrixXd> es(A[i], Eigen::EigenvaluesOnly);
    REQUIRE(es.info() == Eigen::Success);
    const VectorXd& ref = es.eigenvalues();
    REQUIRE(eig[i].size() == ref.size());
    const double big = std::max(ref.cwiseAbs().maxCoeff(), std::numeric_limits<double>::min());
    for (Eigen::Index j = 0; j < ref.size(); ++j) {
      INFO("eigenvalue " << j);
      CHECK(std::abs(eig[i](j) - ref(j)) <= 1e-12 * big);
      if (j > 0) CHECK(eig[i](j) >= eig[i](j - 1));  // ascending
    }
    // eff_rank and the other state metrics against the single-kernel path (Eigen's solver), to
    // 1e-12 plus eff_rank's own sensitivity to the eigenvalues' rounding: each eigenvalue is only
    // determined to about +-eps * big (the two paths' tridiagonalisations sum in different
    // orders), which moves its singular value by ds = sqrt(lambda + delta) - sqrt(lambda - delta)
    // and exp(H) by about ds / sum(s) (|log p| + 2) relative. Negligible for well-conditioned
    // kernels; up to ~1e-6 for rank-deficient ones, whose rounding-level eigenvalues have
    // singular values of sqrt(eps * big).
    const sigprop::StateMetrics one = sigprop::state_metrics_from_kernel(A[i]);
    const double delta = 4 * std::numeric_limits<double>::epsilon() * big;
    const VectorXd sv = ref.cwiseMax(0.0).cwiseSqrt();
    double tol = 1e-12;
    if (sv.sum() > 0)
      for (Eigen::Index j = 0; j < ref.size(); ++j) {
        const double ds = std::sqrt(std::max(ref(j) + delta, 0.0)) - std::sqrt(std::max(ref(j) - delta, 0.0));
        const double p = std::max(sv(j) / sv.sum(), std::numeric_limits<double>::min());
        tol += ds / sv.sum() * (std::abs(std::log(p)) + 2);
      }
    if (std::isnan(one.eff_rank)) {
      CHECK(std::isnan(sm[i].eff_rank));
    } else {
      CHECK(std::abs(sm[i].eff_rank - one.eff_rank) <= tol * one.eff_rank);
    }
    CHECK((sm[i].q == one.q || (std::isnan(sm[i].q) && std::isnan(one.q))));
    CHECK((sm[i].rho == one.rho || (std::isnan(sm[i].rho) && std::isnan(one.rho))));
    CHECK((sm[i].res == one.res || (std::isnan(sm[i].res) && std::isnan(one.res))));
  }
}

TEST_CASE("batched eigenvalues: closed forms, and a matrix's values do not depend on its batch",
          "[analytic][metrics]") {
  // Equicorrelated: q (1 + (T-1) r) once and q (1 - r) T-1 times.
  const int T = 64;
  const double q = 1.3, r = 0.4;
  const MatrixXd K = equicorrelated(T, q, r);
  const MatrixXd* one[] = {&K};
  const VectorXd ev = sigprop::selfadjoint_eigenvalues(one)[0];
  for (int j = 0; j < T - 1; ++j) CHECK(std::abs(ev(j) - q * (1 - r)) <= 1e-13 * q * T);
  CHECK(std::abs(ev(T - 1) - q * (1 + (T - 1) * r)) <= 1e-13 * q * T);
  // Each lane runs its own matrix: the same values alone, first, last or amid others, for every
  // lane count the batch passes through (more matrices than lanes, of different sizes).
  const std::vector<MatrixXd> A = cases();
  std::vector<const MatrixXd*> fwd, rev;
  for (const MatrixXd& a : A) fwd.push_back(&a);
  rev.assign(fwd.rbegin(), fwd.rend());
  const std::vector<VectorXd> ef = sigprop::selfadjoint_eigenvalues(fwd), er = sigprop::selfadjoint_eigenvalues(rev);
  for (std::size_t i = 0; i < A.size(); ++i) {
    const MatrixXd* alone[] = {&A[i]};
    const VectorXd ea = sigprop::selfadjoint_eigenvalues(alone)[0];
    CHECK(ea == ef[i]);
    CHECK(ea == er[A.size() - 1 - i]);
  }
  CHECK(sigprop::selfadjoint_eigenvalues({}).empty());
}

TEST_CASE("batched eigenvalues: a non-finite matrix ends and gives a non-finite eff_rank", "[analytic][metrics]") {
  MatrixXd bad = equicorrelated(6, 1.0, 0.3);
  bad(3, 2) = bad(2, 3) = std::nan("");
  const MatrixXd good = equicorrelated(6, 1.0, 0.3);
  const MatrixXd* batch[] = {&bad, &good};
  const std::vector<sigprop::StateMetrics> sm = sigprop::state_metrics_from_kernels(batch);
  CHECK(std::isnan(sm[0].eff_rank));
  CHECK(sm[1].eff_rank == Approx(sigprop::state_metrics_from_kernel(good).eff_rank).epsilon(1e-12));
}

TEST_CASE("batched eigenvalues: batches of one size, of every count up to past two lane groups",
          "[analytic][metrics]") {
  // The tridiagonalisation takes same-sized matrices 2, 4 or 8 at a time (one per SIMD lane, the
  // rest of a group zero): every count 1..17 leaves a different remainder, and a matrix's values
  // must be the same whichever lane and group it lands in, and Eigen's to 1e-12 of the largest.
  std::mt19937_64 rng(18);
  std::uniform_real_distribution<double> u(1e-3, 5.0);
  std::vector<MatrixXd> A;
  for (int k = 0; k < 17; ++k) {
    VectorXd lam(12);
    for (int i = 0; i < 12; ++i) lam(i) = k % 5 == 4 && i < 6 ? 0.0 : u(rng);  // every fifth rank-deficient
    A.push_back(with_spectrum(lam, rng));
  }
  std::vector<VectorXd> alone;
  for (const MatrixXd& a : A) {
    const MatrixXd* one[] = {&a};
    alone.push_back(sigprop::selfadjoint_eigenvalues(one)[0]);
    Eigen::SelfAdjointEigenSolver<MatrixXd> es(a, Eigen::EigenvaluesOnly);
    const double big = es.eigenvalues().cwiseAbs().maxCoeff();
    CHECK((alone.back() - es.eigenvalues()).cwiseAbs().maxCoeff() <= 1e-12 * big);
  }
  for (std::size_t count = 1; count <= A.size(); ++count) {
    std::vector<const MatrixXd*> ptr;
    for (std::size_t k = 0; k < count; ++k) ptr.push_back(&A[(k + count) % A.size()]);  // a different lane each time
    const std::vector<VectorXd> eig = sigprop::selfadjoint_eigenvalues(ptr);
    for (std::size_t k = 0; k < count; ++k) {
      INFO("count " << count << ", matrix " << (k + count) % A.size());
      CHECK(eig[k] == alone[(k + count) % A.size()]);
    }
  }
}
