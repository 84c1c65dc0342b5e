#pragma once
/// @file Infinite-width softmax attention: expectations over the Gaussian logits.
///
/// Regime (MODEL.md §2): d_h -> infinity, then H -> infinity. Per head the logits
/// S = s Q K^T are then Gaussian with Cov(S_ts, S_t's') = sigma_qk^4 K_tt' K_ss'
/// for s = 1/sqrt(d_h) (they vanish for s = 1/d_h, leaving uniform attention), and
/// averaging over infinitely many heads replaces A by its law. So
///   forward:  K_attn = sigma_v^2 sigma_o^2 E[A K A^T]
///   backward: G_in = sigma_v^2 sigma_o^2 ( E[A^T G A]
///                 + sigma_qk^4 (G o E[tr(J_t K J_t' K)])          (query path)
///                 + sigma_qk^4 sum_tt' G_tt' K_tt' E[J_t K J_t'] )  (key path)
/// with J_t = diag(a_t) - a_t a_t^T the softmax Jacobian of row t, G the gradient
/// covariance at the attention output and K the kernel at its input. The query
/// and key paths vanish for s = 1/d_h (they carry an extra 1/sqrt(d_h)).
/// Derivation in docs/theory.md. Breaks down when d_h is not large compared with
/// the logit variance sigma_qk^4 K_tt K_ss (finite-d_h logits are not Gaussian)
/// or H is small (then A stays random across heads: the Monte Carlo engine is the reference).
/// Measured against finite-width simulation (tools/attn_mc_check.py): the query/key-path
/// bias is -3.1%, -1.9%, -0.7%, -0.14% of that path at d_h = 16, 32, 64, 128 (H = 16),
/// plus a +0.65 T/d term; with qk_scale = 1/dh and sigma_qk2 = 2 the uniform limit is
/// reached like 1/d_h (grad_var excess +6.5% at d_h = 16, +0.9% at 128, roughly
/// sigma_qk2^2 K^2 / d_h). Extrapolated to infinite width, every path agrees within 1.7 s.e.
/// Where the residual stream grows (norm = "none") that 1/d_h correction is not small: the
/// uniform limit missed grad_var by 22% at d_h = 64 (docs/atlas.md); AttnSettings::finite_dh
/// keeps the finite-d_h logits and agrees with the Monte Carlo there.
///
/// The Gaussian expectations are T^2-dimensional integrals over logit matrices
/// S = sigma_qk^2 F xi F^T (F F^T = K, columns of F by decreasing eigenvalue, xi a T x T
/// standard normal matrix), the same points xi at every layer (common random numbers: smooth,
/// deterministic profiles), each used with its mirror -xi (antithetic: odd orders cancel).
/// Default method: randomised quasi-Monte Carlo. The first min(T^2, 3667) entries of xi, in the
/// order of the eigenvalue products that scale them (xi_00, then the 2 x 2 block, ...), come
/// from a Sobol sequence (Joe & Kuo 2008 direction numbers, Boost.Random) with a random digital
/// shift per replicate and the inverse normal CDF; further entries from Philox. Each replicate
/// is an unbiased estimate, and the engine's `_se` is the spread of independent replicates
/// (TheoryEngine::run). Method "mc": every entry from Philox, as before.
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "core/spec.hpp"

namespace sigprop::theory {

enum class AttnMethod { Qmc, Mc };

struct AttnSettings {
  int samples = 256;         ///< logit draws per layer of one recursion (rounded up to even: antithetic pairs)
  uint64_t seed = 0x5197A7;  ///< key of the random shifts (QMC) and of the Philox draws
  int replicate = 0;         ///< independent replicate: its own shift (QMC) or its own draws (MC)
  AttnMethod method = AttnMethod::Qmc;
  /// qk_scale = 1/dh only. false (default): the d_h -> infinity limit, uniform attention (MODEL.md §2).
  /// true: keep the logits' finite-d_h variance. S = Q K^T / d_h = (Q K^T / sqrt(d_h)) / sqrt(d_h), so
  /// at the spec's d_h = width / heads the logits are those of qk_scale = 1/sqrt(dh) with sigma_qk^2
  /// replaced by sigma_qk^2 / sqrt(d_h) (Gaussian, sampled like the 1/sqrt(dh) case, query and key
  /// paths included). It matters where sigma_qk^4 K_tt K_ss / d_h is not small: norm = "none"
  /// stacks whose residual stream grows, large sigma_qk2 (docs/atlas.md, "What the atlas found").
  bool finite_dh = false;
};

/// True when the softmax expectations are exact and uniform (no sampling): sigma_qk2 = 0, or
/// qk_scale = 1/dh in the d_h -> infinity limit (settings.finite_dh false).
[[nodiscard]] bool attention_uniform(const StackSpec& spec, const AttnSettings& settings);
/// The sigma_qk^2 of the Gaussian logits S = sigma_qk^2 F xi F^T: spec.sigma_qk2 for 1/sqrt(dh),
/// spec.sigma_qk2 / sqrt(width / heads) for 1/dh with settings.finite_dh.
[[nodiscard]] double logit_sigma_qk2(const StackSpec& spec, const AttnSettings& settings);

AttnMethod parse_attn_method(const std::string& s);
std::string to_string(AttnMethod m);

/// What the backward pass may reuse from the forward pass of the same layer.
struct AttnTape {
  bool keep_softmax = false;        ///< store the softmax matrices (memory: samples x Tp^2 doubles)
  Eigen::MatrixXd L;                ///< sigma_qk F, the logit factor of the input kernel (zero-padded to Tp x Tp)
  std::vector<Eigen::MatrixXd> A;   ///< A^T of softmax(+base), softmax(-base) for every point (if kept), zero-padded to Tp x Tp
};

/// Softmax attention at infinite width for one spec. Uniform (exact) for qk_scale = 1/dh
/// (unless AttnSettings::finite_dh) or sigma_qk2 = 0; quasi-Monte Carlo over Gaussian logits otherwise.
class AttentionKernel {
 public:
  AttentionKernel(const StackSpec& spec, AttnSettings settings);
  /// True when attention is uniform (exact closed form, no sampling).
  [[nodiscard]] bool uniform() const { return uniform_; }
  /// E[A K A^T] for input kernel K (T x T). Does not include the V/O weight variances.
  /// @param tape if given, receives what backward() of the same K may reuse
  [[nodiscard]] Eigen::MatrixXd forward(const Eigen::MatrixXd& K, AttnTape* tape = nullptr) const;
  /// forward(K, tape) and, from the same softmax draws, *AKcA = E[A Kc A^T] for a second kernel Kc
  /// and *Amean = E[A] (T x T each): the collapse gap's recursion (theory/engine.cpp, docs/theory.md
  /// "res below 1e-8") carries K's doubly centred part through attention with them. The returned
  /// kernel is bitwise forward(K, tape)'s.
  [[nodiscard]] Eigen::MatrixXd forward(const Eigen::MatrixXd& K, AttnTape* tape, const Eigen::MatrixXd& Kc,
                                        Eigen::MatrixXd& AKcA, Eigen::MatrixXd& Amean) const;
  /// Gradient covariance at the attention input given the input kernel K and the
  /// gradient covariance G at the attention output (before W_O).
  /// @param vo_var sigma_v^2 sigma_o^2 (weight variances of V and O, incl. DeepNorm beta^2)
  /// @param tape the tape forward(K) filled, or nullptr (everything recomputed: same numbers)
  [[nodiscard]] Eigen::MatrixXd backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var,
                                         const AttnTape* tape = nullptr) const;
  /// backward() without the expanded products: per draw the softmax Jacobians J_t (the diagonal
  /// a_s (1 - a_s) of the largest entry from the sum of the others, no cancellation), the query
  /// path as <F^T J_t F, F^T J_t' F> and the key path as sum_tt' W_tt' (J_t F)(J_t' F)^T with
  /// F F^T the doubly centred K: sums of non-negative or well-scaled terms, O(T^4) per draw instead
  /// of O(T^3). backward() falls back to it where the expanded products' rounding is not small
  /// against the result (a softmax saturated onto single tokens in a growing stream); public for tests.
  [[nodiscard]] Eigen::MatrixXd backward_direct(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var,
                                                const AttnTape* tape = nullptr) const;
  /// The base points xi (T x T each; each is used with its mirror -xi): what forward() and
  /// backward() average over, for tests that evaluate the integrand independently.
  [[nodiscard]] std::vector<Eigen::MatrixXd> base_points() const;

 private:
  Eigen::MatrixXd forward_impl(const Eigen::MatrixXd& K, AttnTape* tape, const Eigen::MatrixXd* Kc,
                               Eigen::MatrixXd* AKcA, Eigen::MatrixXd* Amean) const;
  int T_;
  int Tp_;  ///< T rounded up to the SIMD lane count: the size of the padded matrices of the integral
  bool causal_;
  bool uniform_;
  double sqk2_;
  AttnSettings st_;
  std::vector<Eigen::MatrixXd> points_;  ///< the samples/2 base points xi (mirrored in use), stored as xi^T, Tp x Tp
  Eigen::MatrixXd factor(const Eigen::MatrixXd& K) const;
  /// Bt = base^T = L xi_p^T L^T for point p (Tp x Tp, L the padded sigma_qk F; tmp: workspace).
  void logits_t(const Eigen::MatrixXd& L, int p, Eigen::MatrixXd& tmp, Eigen::MatrixXd& Bt) const;
  /// scratch: T x (SIMD lanes) doubles
  void softmax_cols(const double* Bt, double sign, double* At, double* scratch) const;
  /// Calls f(At) for every draw in order (each point, then its mirror), At = A^T padded to Tp x Tp:
  /// from the tape where it kept the softmax matrices, else computed from the logit factor L.
  template <class Fn>
  void for_each_softmax(const Eigen::MatrixXd& L, const AttnTape* tape, Fn&& f) const;
};

/// H K H with H = I - 11^T / T: K less its row and column means (K symmetric; the result is
/// symmetrised). The attention's backward factors it; the theory engine's collapse-gap form
/// (theory/engine.cpp Centred) is it plus K's row means.
[[nodiscard]] Eigen::MatrixXd double_centred(const Eigen::MatrixXd& K);

}  // namespace sigprop::theory
