#pragma once
/// @file Free-probability spectra of the input-output Jacobian (Pennington, Schoenholz &
/// Ganguli 2017 "Resurrecting the sigmoid ..." and 2018 "The emergence of spectral
/// universality in deep networks"). For a dense stack (MODEL.md blocks = "dense",
/// norm = "none") the per-token Jacobian of x_l with respect to x_0 is
///   J_l = prod_{k=1..l} (lam I + a D_k W_k),   D_k = diag(phi'(x_{k-1})),
/// lam = 0 without residual (J = prod D_k W_k) and 1 with it (x + a (phi(x) W + b)).
/// At infinite width W_k and D_k are asymptotically free (the assumption of both papers),
/// and the squared singular values of J_l (the eigenvalues of J_l J_l^T) have a limiting law:
///  * product stacks (lam = 0): S_{JJ^T}(m) = prod_k S_{W_k W_k^T}(m) S_{D_k^2}(m)
///    (Pennington 2018 eq. 8), S_{WW^T} = 1/(sigma_w^2 (1 + m)) for Gaussian and 1/sigma_w^2
///    for Haar-orthogonal W; mean and variance of the squared singular values, and the
///    density, by solving chi_J(psi) = 1/x for the moment generating function psi.
///  * residual stacks (lam = 1): mean and variance by the free-moment recursion of
///    docs/spectrum.md (derived there; no density, which needs the Brown-measure machinery
///    of Tarnowski et al. 2019 and is not implemented).
/// D_k^2 is the law of phi'(h)^2, h ~ N(0, q_{k-1}), with q_k from the mean-field recursion
/// (the same kernels as theory/gauss.hpp), so a stack that does not start at its fixed point
/// q* is handled layer by layer, not by assuming q_k = q*.
#include <complex>
#include <utility>
#include <vector>

#include "core/engine.hpp"
#include "core/profile.hpp"
#include "core/progress.hpp"
#include "core/spec.hpp"

namespace sigprop::theory {

/// A discrete law on [0, inf): P(g = g[i]) = w[i]; used for g = phi'(h)^2.
struct DiscreteLaw {
  std::vector<double> g, w;
  double mu1 = 0, mu2 = 0;  ///< E[g], E[g^2]
  double atom0 = 0;         ///< P(g = 0) (relu: 1/2)
  /// psi(z) = E[z g / (1 - z g)] (the moment generating function sum_k E[g^k] z^k).
  [[nodiscard]] std::complex<double> psi(std::complex<double> z) const;
  /// psi'(z) = E[g / (1 - z g)^2].
  [[nodiscard]] std::complex<double> dpsi(std::complex<double> z) const;
};

struct SpectrumSettings {
  /// Gauss-Legendre panels x points per panel over h/sqrt(q) in [-10, 10] for the law of
  /// phi'(h)^2 when phi' is smooth (tanh, erf, gelu, silu); relu and linear are exact two-point laws.
  int panels = 32;
  int panel_order = 8;
  /// The density is -Im G(x + i eta)/pi with eta = eta_rel * x: a Cauchy smoothing of
  /// relative width eta_rel (1e-9 leaves it far below any other error).
  double eta_rel = 1e-9;
  int max_newton = 200;  ///< Newton steps per grid point and homotopy stage
};

/// Law of phi'(h)^2 for h ~ N(0, q) (exact for relu and linear, quadrature otherwise).
DiscreteLaw deriv_sq_law(Activation act, double q, const SpectrumSettings& st = {});

/// Mean and variance of the squared singular values of J_l, l = 0..L, and the stream variance.
struct SpectrumMoments {
  std::vector<double> q;     ///< per-coordinate variance of x_l (mean-field recursion)
  std::vector<double> mean;  ///< tau(J_l J_l^T) = E[s^2]
  std::vector<double> var;   ///< tau((J_l J_l^T)^2) - mean^2 = Var[s^2]
  std::vector<double> mu1, mu2;  ///< E[phi'(h)^2], E[phi'(h)^4] at layer l's input (l = 1..L; [0] unused)
  double atom0 = 0;              ///< mass of J_L J_L^T at 0 (max over layers of P(phi' = 0), products only)
};

/// Density of the squared singular values of J_L on a grid.
struct SpectrumDensity {
  std::vector<double> x;        ///< grid (x > 0; points x <= 0 get NaN)
  std::vector<double> density;  ///< continuous part; it integrates to 1 - atom0
  double atom0 = 0;             ///< point mass at 0
  int failed = 0;               ///< grid points where the solver did not converge (NaN there)
  int homotopies = 0;           ///< grid points solved by the eta homotopy (not from a neighbour)
};

/// Throws ConfigError naming the key unless spec is a stack this engine implements:
/// blocks = "dense", norm = "none" (residual true or false), init.weights gaussian or orthogonal.
void check_spectrum_spec(const StackSpec& spec);

/// True when the density is implemented for spec (product stacks: residual = false).
bool spectrum_has_density(const StackSpec& spec);

/// Per-layer moments (free probability, infinite width).
SpectrumMoments spectrum_moments(const StackSpec& spec, const SpectrumSettings& st = {});

/// Density of the squared singular values of J_L at each x (product stacks only; throws
/// ConfigError naming stack.residual otherwise).
/// `progress` is called before every grid point; returning false throws CancelledError ("spectrum").
SpectrumDensity spectrum_density(const StackSpec& spec, const std::vector<double>& x, const SpectrumSettings& st = {},
                                 const ProgressFn& progress = {});

/// A default grid for spec: n points on (0, hi], hi = mean + 6 sd of J_L J_L^T (at least 4 mean).
std::vector<double> default_spectrum_grid(const SpectrumMoments& m, int n);

/// The "spectrum" theory engine's Profile: columns q, sv2_mean, sv2_var per layer; the density
/// (when implemented) in extras["density"] = {x, density, atom0, layer, failed}.
/// `progress` follows the density's grid points and reaches 1 at the end; returning false
/// throws CancelledError ("spectrum").
Profile spectrum_theory_profile(const StackSpec& spec, const std::vector<double>& grid,
                                const SpectrumSettings& st = {}, const ProgressFn& progress = {});

/// Engine "spectrum-theory": spectrum_theory_profile on the density grid and settings given at
/// construction (the grid is the caller's: default_spectrum_grid sizes one from the moments),
/// with the callback of set_progress.
class SpectrumEngine final : public Engine {
 public:
  explicit SpectrumEngine(std::vector<double> grid, SpectrumSettings st = {}) : grid_(std::move(grid)), st_(st) {}
  [[nodiscard]] std::string name() const override { return "spectrum-theory"; }
  Profile run(const StackSpec& spec) override { return spectrum_theory_profile(spec, grid_, st_, progress_callback()); }

 private:
  std::vector<double> grid_;
  SpectrumSettings st_;
};

}  // namespace sigprop::theory
