#pragma once
/// @file The proportional depth-and-width limit (L/n fixed) of shaped networks: the token
/// kernel K (T x T) of a width-n network follows, in t = l/n, the SDE
///   dK = b(K) dt + (matrix Brownian terms),
/// so the correlation at the last layer is random even as n -> infinity (Li, Nica & Roy 2022,
/// "The neural covariance SDE"; Noci et al. 2023, "The shaped transformer"). Two networks,
/// defined exactly in docs/ode.md §3, where the drift and diffusion are also derived:
///
///  * shaped MLP: h' = W phi_s(h) / sqrt(n + c^2), W iid N(0, 1) (n x n),
///    phi_s(x) = x + (c/sqrt(n)) |x| (a ReLU with slopes 1 +- c/sqrt(n));
///      b(K)_ab = c^2 (E|u_a||u_b| - K_ab), u ~ N(0, K);
///      noise (1/sqrt 2)(L dXi L^T + transpose),  K = L L^T, dXi iid N(0, dt) (T x T).
///    For two inputs the correlation obeys Li-Nica-Roy's
///      d rho = [ (2c^2/pi)(sqrt(1-rho^2) - rho arccos rho) - rho (1-rho^2)/2 ] dt + (1-rho^2) dB.
///  * shaped attention (single head, no MLP): X' = lambda X + gamma A X W / sqrt(n),
///    lambda^2 + gamma^2 = 1, A = I + softmax(S / (tau0 sqrt(n))) - 11^T/T,
///    S = (X W_Q)(X W_K)^T / (n sqrt(n_k)), W, W_Q, W_K iid N(0, 1).
///
/// The Euler-Maruyama integrator draws its normals from Philox streams (core/rng.hpp). The
/// finite-width simulator samples those networks exactly in distribution at O(T n) cost per
/// layer (a Gaussian layer's output given its input depends on the input only through its
/// Gram matrix; docs/ode.md §3.3), so KS tests compare the SDE with the finite network itself.
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "core/engine.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"

namespace sigprop::theory {

enum class ShapedModel { Mlp, Attn };
ShapedModel parse_shaped_model(const std::string& s);
std::string to_string(ShapedModel m);

struct ShapedSettings {
  ShapedModel model = ShapedModel::Mlp;
  double shape_c = 1.0;  ///< MLP: phi_s slopes 1 +- c/sqrt(n)
  double gamma2 = 0.5;   ///< attention: branch weight gamma^2 (skip lambda^2 = 1 - gamma^2), in (0, 1]
  double tau0 = 1.0;     ///< attention: logits divided by tau0 sqrt(n)
  int key_dim = 0;       ///< attention: n_k of W_Q, W_K (0 = width)
  int paths = 2000;      ///< SDE paths
  int samples = 2000;    ///< finite-width networks (0 = no Monte Carlo)
  int substeps = 4;      ///< Euler-Maruyama steps per layer (dt = 1 / (n substeps))
  uint64_t seed = 1;     ///< Philox seed of the SDE noise and of the networks
};

/// Drift b(K) per unit t = l/n of the chosen model.
Eigen::MatrixXd shaped_drift(const Eigen::MatrixXd& K, const ShapedSettings& st);
/// Diffusion term for one step: the kernel increment caused by the normals xi
/// (3 T x T blocks, iid N(0, 1), column-major), scaled by sqrt(dt).
Eigen::MatrixXd shaped_noise(const Eigen::MatrixXd& K, const ShapedSettings& st, const double* xi, double sqrt_dt);

struct ShapedEnsemble {
  std::vector<double> t;  ///< l / n, l = 0..L
  Eigen::MatrixXd rho;    ///< (members x (L+1)) mean pairwise correlation
  Eigen::MatrixXd q;      ///< (members x (L+1)) mean diagonal of K
};

/// Euler-Maruyama paths of the kernel SDE from K0 = q0((1-rho0) I + rho0 11^T), reported at
/// t = l/n for l = 0..L (L = spec.depth, n = spec.width, T = spec.tokens).
/// `progress` is called before every path (fraction of paths done); returning false throws
/// CancelledError ("shaped-sde"). The same for the networks below, per sample.
ShapedEnsemble shaped_sde_paths(const StackSpec& spec, const ShapedSettings& st, const ProgressFn& progress = {});
/// Finite-width networks of the same model (exact in distribution), same grid.
ShapedEnsemble shaped_network_samples(const StackSpec& spec, const ShapedSettings& st,
                                      const ProgressFn& progress = {});

/// Two-sample Kolmogorov-Smirnov statistic D = sup |F1 - F2| and its asymptotic p-value
/// (Kolmogorov distribution with Stephens' small-sample correction).
struct KsResult {
  double D = 0;
  double p = 1;
};
KsResult ks_two_sample(std::vector<double> a, std::vector<double> b);
/// Kolmogorov survival function Q(lambda) = 2 sum_{k>=1} (-1)^{k-1} exp(-2 k^2 lambda^2).
double kolmogorov_q(double lambda);
/// Sample quantile (linear interpolation between order statistics, "type 7").
double quantile(std::vector<double> v, double p);

/// Profile: one row per layer l = 0..L at t = l/n; columns t, rho, rho_se, rho_q05, rho_q50,
/// rho_q95, q, q_se of the SDE ensemble and mc_* of the finite-width networks; extras hold
/// the last layer's quantiles and KS test. `progress` covers the paths, then the networks (in
/// proportion to their counts) and reaches 1 at the end; returning false throws CancelledError.
Profile shaped_profile(const StackSpec& spec, const ShapedSettings& st, const ProgressFn& progress = {});

/// Engine "shaped-sde": shaped_profile with the settings given at construction and the callback
/// of set_progress.
class ShapedSdeEngine final : public Engine {
 public:
  explicit ShapedSdeEngine(ShapedSettings st = {}) : st_(st) {}
  [[nodiscard]] std::string name() const override { return "shaped-sde"; }
  Profile run(const StackSpec& spec) override { return shaped_profile(spec, st_, progress_callback()); }

 private:
  ShapedSettings st_;
};

}  // namespace sigprop::theory
