#pragma once
/// @file Finite-width Monte Carlo of the input-output Jacobian spectrum ("sigprop spectrum
/// --samples N"). For sample i the random stack of MODEL.md §1 is the one `simulate` draws
/// (same Philox streams, sim/reference.hpp), its Jacobian J_l = dX_l/dX_0 is built exactly,
/// and the squared singular values of J_L come from Eigen's BDCSVD.
///
/// Two ways to build J (`method`):
///  * "explicit": dense stacks with norm = "none" (x' = lam x + a (phi(x) W + b)), per token:
///    J_l = J_{l-1} (lam I + a D_l W_l), one d x d GEMM per layer. Implements
///    init.weights = "orthogonal" (Haar: W = sqrt(sigma_w2) Q, G = QR from the layer's Gaussian
///    stream with diag(R) > 0, Mezzadri 2007). The full T d map of a dense stack is block
///    diagonal (tokens do not interact), so its spectrum is the union of the tokens' spectra.
///  * "backward": any stack the reference backend runs (Gaussian weights): row i of each
///    block's Jacobian is the hand-written backward pass applied to the unit vector e_i
///    (StackBackend::block_backward), and P_l = J_l P_{l-1} on the full T d map; the token map
///    is the diagonal block (t, t) of P_l. Cost ~ L T d backward passes + L (T d)^3: small stacks.
/// Moments per layer use traces (tau(P P^T) = |P|_F^2/n, tau((P P^T)^2) = |P^T P|_F^2/n); the
/// SVD gives the spectrum of J_L.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/engine.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"

namespace sigprop::sim {

struct JacobianSettings {
  int samples = 16;              ///< independent stacks, 1..65536
  uint64_t seed = 0;             ///< Philox key (the same streams as `simulate`)
  std::string map = "token";     ///< "token": dx_{L,t}/dx_{0,t} (d x d); "full": dX_L/dX_0 (T d x T d)
  int token = -1;                ///< t for map = "token"; -1 = the last token
  std::string method = "auto";   ///< "auto" (explicit when possible), "explicit" or "backward"
  int threads = 1;               ///< worker threads (0 = every core; 1 by default, not to oversubscribe a host's pool); never changes a number
};

/// One sample: traces of A_l = P_l P_l^T (n x n, n = d or T d) for l = 0..L and the
/// squared singular values of P_L.
struct JacobianSample {
  std::vector<double> m1, m2;  ///< tau(A_l), tau(A_l^2)
  std::vector<double> sv2;     ///< eigenvalues of A_L, ascending
};

/// The method "auto" resolves to for spec; throws ConfigError naming the option or key when
/// the settings or spec cannot be run (orthogonal weights outside the explicit method, T d too
/// large for the full map by the backward method, a token out of range).
std::string resolve_jacobian_method(const StackSpec& spec, const JacobianSettings& st);

/// The Jacobian spectrum of sample `sample`.
JacobianSample jacobian_sample(const StackSpec& spec, const JacobianSettings& st, int sample);

/// Histogram density of values on a grid: bin i is centred on grid[i] with edges halfway to
/// its neighbours (the outer bins are symmetric); values outside every bin are not counted.
std::vector<double> histogram_density(const std::vector<double>& values, const std::vector<double>& grid);

/// The "spectrum-simulate" Profile: per layer sv2_mean, sv2_mean_se, sv2_var, sv2_var_se (the
/// mean and variance of the squared singular values within a sample, averaged over samples,
/// standard errors over samples), and in extras["density"] the histogram density of J_L's squared
/// singular values on `grid` with its standard error over samples, and atom0 (fraction of
/// numerically zero singular values: below 1e-13 of the sample's largest).
/// When `sv2_out` is given it receives every sample's squared singular values. `progress` is
/// called after every sample (never concurrently); returning false throws CancelledError ("spectrum").
Profile jacobian_profile(const StackSpec& spec, const JacobianSettings& st, const std::vector<double>& grid,
                         std::vector<std::vector<double>>* sv2_out = nullptr, const ProgressFn& progress = {});

/// Engine "spectrum-simulate": jacobian_profile with the settings and density grid given at
/// construction and the callback of set_progress (no per-sample singular values kept).
class SpectrumSimulateEngine final : public Engine {
 public:
  SpectrumSimulateEngine(JacobianSettings st, std::vector<double> grid) : st_(std::move(st)), grid_(std::move(grid)) {}
  [[nodiscard]] std::string name() const override { return "spectrum-simulate"; }
  Profile run(const StackSpec& spec) override {
    return jacobian_profile(spec, st_, grid_, nullptr, progress_callback());
  }

 private:
  JacobianSettings st_;
  std::vector<double> grid_;
};

}  // namespace sigprop::sim
