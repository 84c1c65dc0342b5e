#include "theory/engine.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numbers>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/metrics.hpp"
#include "core/stats.hpp"
#include "sigprop/version.hpp"
#include "theory/depth_returns.hpp"
#include "theory/gauss.hpp"
#include "theory/meanfield.hpp"
#include "theory/small_gemm.hpp"

namespace sigprop::theory {
namespace {

// What the backward pass needs from one half-block  Y = post( lam X + a F(pre(X)) ).
struct HalfTape {
  Branch branch;
  Eigen::VectorXd d_pre;   // pre-norm scales 1/sqrt(K_tt + eps) (empty: no pre-norm)
  double pre_gain2 = 1.0;  // extra variance factor of the pre-transform (1/l for LayerNorm Scaling)
  Eigen::MatrixXd Kz;      // kernel at the branch input (sampled attention only; else empty)
  Eigen::MatrixXd Kd;      // E[phi'(u)phi'(u)^T] (mlp, dense)
  AttnTape attn;           // factor and softmax draws of the forward pass (sampled attention)
  Eigen::VectorXd d_post;  // post-norm scales (empty: no post-norm)
  double lam2 = 1.0;       // skip weight squared (0 without residual)
  double a2 = 1.0;         // branch scale squared
};

// M.allFinite() as one vectorised sum (Eigen's allFinite compares entry by entry): x * 0 is
// 0 for every finite x and NaN for NaN and +-inf, so the sum is 0 exactly when all are finite.
template <class D>
bool all_finite(const Eigen::MatrixBase<D>& M) {
  return (M.array() * 0.0).sum() == 0.0;
}

Eigen::VectorXd norm_scales(const Eigen::MatrixXd& K, double eps) {
  // At infinite width the per-token coordinate mean vanishes, so LayerNorm and RMSNorm
  // both divide token t by sqrt(K_tt + eps); their difference is O(1/d) (MC engines see it).
  Eigen::VectorXd d(K.rows());
  for (Eigen::Index t = 0; t < K.rows(); ++t) d(t) = 1.0 / std::sqrt(K(t, t) + eps);
  return d;
}

Eigen::MatrixXd scale2(const Eigen::MatrixXd& K, const Eigen::VectorXd& d) {
  return d.asDiagonal() * K * d.asDiagonal();
}

// The collapse gap's form of a kernel (docs/theory.md "res below 1e-8"): K = Kc + v 1^T + 1 v^T +
// m 1 1^T with Kc doubly centred (Kc 1 = 0) and v centred (1^T v = 0). Where the tokens collapse,
// Kc and v are far below m, and K's entries hold them only to the rounding of m (res floored at
// ~1.5e-8); carried in this form through the norms, attention and the residual sums, they keep
// their own precision.
struct Centred {
  Eigen::MatrixXd Kc;
  Eigen::VectorXd v;
  double m = 0;
};

// The form of K by subtraction: exact to the rounding of K's entries.
Centred centred_of(const Eigen::MatrixXd& K) {
  const Eigen::VectorXd r = K.rowwise().mean();  // K 1 / T
  Centred c;
  c.m = r.mean();
  c.v = r.array() - c.m;
  c.Kc = double_centred(K);
  return c;
}

// The form of K = W + u 1^T + 1 u^T + m 1 1^T for W and u of the gap's size: W's own form plus u's
// centred part and mean, never subtracting anything of m's size.
Centred recentre(const Eigen::MatrixXd& W, const Eigen::VectorXd& u, double m) {
  Centred c = centred_of(W);
  const double ub = u.mean();
  c.v.array() += u.array() - ub;
  c.m = m + (c.m + 2 * ub);
  return c;
}

// a K, on the form
void scale(Centred& x, double a) {
  x.Kc *= a;
  x.v *= a;
  x.m *= a;
}

// D K D, D = diag(sqrt(gain2) / sqrt(K_tt + eps)) (norm_scales' scales), on the form: K_tt =
// m + delta_t with delta_t = Kc_tt + 2 v_t, so D = f (I + E), f^2 = gain2 / (m + eps) and e_t =
// (1 + delta_t / (m + eps))^(-1/2) - 1 by expm1/log1p; (I + E) K (I + E) = W + u 1^T + 1 u^T + m 1 1^T
// with w = (I + E) v, W = (I + E) Kc (I + E) + w e^T + e w^T + m e e^T and u = w + m e, all of the
// gap's size (e is, relative to 1).
Centred centred_norm(const Centred& c, double eps, double gain2) {
  const Eigen::Index T = c.v.size();
  const double me = c.m + eps;
  Eigen::VectorXd e(T);
  for (Eigen::Index t = 0; t < T; ++t) e(t) = std::expm1(-0.5 * std::log1p((c.Kc(t, t) + 2 * c.v(t)) / me));
  const Eigen::VectorXd w = c.v + e.cwiseProduct(c.v);
  const Eigen::VectorXd one_e = Eigen::VectorXd::Ones(T) + e;
  Eigen::MatrixXd W = one_e.asDiagonal() * c.Kc * one_e.asDiagonal();
  W += w * e.transpose() + e * w.transpose() + c.m * (e * e.transpose());
  Centred r = recentre(W, w + c.m * e, c.m);
  scale(r, gain2 / me);
  return r;
}

// x = a x + b y
void axpby(Centred& x, double a, const Centred& y, double b) {
  x.Kc = a * x.Kc + b * y.Kc;
  x.v = a * x.v + b * y.v;
  x.m = a * x.m + b * y.m;
}

// Kc of the activation kernel E[phi(u) phi(u)^T], u ~ N(0, Ku) with Ku given by its form cu, from
// the tokens' pairwise distances D_ts = E[(phi(u_t) - phi(u_s))^2] (ActKernel::distance, precise
// where they nearly coincide) by H K H = -1/2 H D H (H = I - 11^T/T): each distance's inputs
// come from the form, a_t = m + delta_t with delta_t = Kc_tt + 2 v_t, c_ts = m + Kc_ts + v_t + v_s,
// a_t a_s - c_ts^2 = m (Kc_tt + Kc_ss - 2 Kc_ts) + delta_t delta_s - (c_ts - m)^2, none of them a
// difference of m-sized numbers. K's own entries hold Kc only to the rounding of m.
Eigen::MatrixXd act_centred(const ActKernel& ak, const Centred& cu) {
  const Eigen::Index T = cu.v.size();
  Eigen::VectorXd delta(T);
  for (Eigen::Index t = 0; t < T; ++t) delta(t) = cu.Kc(t, t) + 2 * cu.v(t);
  Eigen::MatrixXd D = Eigen::MatrixXd::Zero(T, T);
  for (Eigen::Index s = 0; s < T; ++s)
    for (Eigen::Index t = s + 1; t < T; ++t) {
      const double off = cu.Kc(t, s) + cu.v(t) + cu.v(s);
      const double din = cu.Kc(t, t) + cu.Kc(s, s) - 2 * cu.Kc(t, s);
      const double det = cu.m * din + delta(t) * delta(s) - off * off;
      D(t, s) = D(s, t) = ak.distance(cu.m + delta(t), cu.m + delta(s), cu.m + off, det);
    }
  return -0.5 * double_centred(D);
}

// res of an equicorrelated kernel (d, o) from its gap d - o: tr K - 1^T K 1 / T = (T-1)(d - o).
double equi_res(double d, double gap, int T) { return std::sqrt(std::max((T - 1) * gap, 0.0) / (T * d)); }

// res from the form: tr K = tr Kc + T m (tr of v 1^T is 1^T v = 0).
double centred_res(const Centred& c) {
  const double tc = c.Kc.trace();
  return std::sqrt(std::max(tc, 0.0) / (tc + static_cast<double>(c.v.size()) * c.m));
}

// Below this res^2 the recursion carries the form (the attention branch then costs two more
// products per draw); above it the form is taken from K (relative error eps / res^2 <= 2e-12).
constexpr double kGapTrackRes2 = 1e-4;

// KernelTables of one recursion, keyed by the exact variance pair (a <= b). Local to one
// kernel_recursion call (no global state: the engine may run on several threads at once) and
// bounded: cleared when it holds kMaxTables (a pre-norm stack needs one table per layer).
class TableCache {
 public:
  explicit TableCache(const ActKernel& ak) : ak_(ak) {}
  // The returned reference stays valid until the next evict_if_full(): a layer takes pointers
  // to all its tables first and evaluates them after (clearing inside get() left the pointers
  // of the layer's earlier tables dangling once the cache filled).
  const KernelTable& get(double a, double b) {
    if (a > b) std::swap(a, b);
    auto it = tables_.find({a, b});
    if (it != tables_.end()) return it->second;
    return tables_.try_emplace({a, b}, ak_, a, b).first->second;
  }
  // Called once per layer before any get(): bounds the memory across layers (a layer itself
  // needs at most T(T-1)/2 / kMinEntriesPerTable tables, 84 at T = 64).
  void evict_if_full() {
    if (tables_.size() >= kMaxTables) tables_.clear();
  }

 private:
  static constexpr size_t kMaxTables = 64;
  const ActKernel& ak_;
  std::map<std::pair<double, double>, KernelTable> tables_;
};

// A table is built from 17..257 quadratures: below this many entries per variance pair the
// entries are integrated directly.
constexpr int kMinEntriesPerTable = 24;
constexpr double kMaxSoftmaxBytes = 256.0 * (1 << 20);
// Relative spread of the variances below which they share one 3 x 3 set of tables, and the
// fewest off-diagonal entries for which those 6 tables are worth building.
constexpr double kClusterSpread = 1e-3;
// Below this relative spread the variances are one value for the tables (act_kernels).
constexpr double kEqualSpread = 1e-12;
constexpr long kMinEntriesForCluster = 6 * kMinEntriesPerTable;

// E[phi(u)phi(u)^T] and E[phi'(u)phi'(u)^T] for u ~ N(0, Ku). Closed forms entry by entry;
// for quadrature activations (tables != nullptr) the diagonal by 1-D quadrature and the other
// entries from a KernelTable per distinct pair of variances that has enough entries.
void act_kernels(const ActKernel& ak, TableCache* tables, const Eigen::MatrixXd& Ku, Eigen::MatrixXd& Kphi,
                 Eigen::MatrixXd& Kd) {
  const auto T = Ku.rows();
  Kphi.resize(T, T);
  Kd.resize(T, T);
  if (ak.exact() || tables == nullptr) {
    std::vector<ActKernel::Var> var(T);  // each token's variance and its square roots, once
    for (Eigen::Index t = 0; t < T; ++t) var[t] = ActKernel::var(Ku(t, t));
    // The lower triangle column by column (contiguous: Eigen is column-major), then mirrored.
    for (Eigen::Index s = 0; s < T; ++s)
      ak.eval_row(var[s], &var[s], &Ku(s, s), static_cast<int>(T - s), &Kphi(s, s), &Kd(s, s));
    for (Eigen::Index s = 1; s < T; ++s)
      for (Eigen::Index t = 0; t < s; ++t) {
        Kphi(t, s) = Kphi(s, t);
        Kd(t, s) = Kd(s, t);
      }
    return;
  }
  tables->evict_if_full();
  // Distinct diagonal values (bitwise) and the number of off-diagonal entries per pair.
  std::vector<double> vals;
  std::vector<int> idx(T);
  for (Eigen::Index t = 0; t < T; ++t) {
    const double v = Ku(t, t);
    auto it = std::find(vals.begin(), vals.end(), v);
    idx[t] = static_cast<int>(it - vals.begin());
    if (it == vals.end()) vals.push_back(v);
  }
  const auto n = vals.size();
  // Variances spread by at most kClusterSpread (relative): a pre-norm leaves K_tt / (K_tt + eps),
  // distinct per token only through eps. Then k(a, b, rho) is interpolated in a and b at fixed
  // rho between tables at 3 Chebyshev nodes of [lo, hi]: quadratic Lagrange interpolation, whose
  // error is h^3/192 x |d^3 k / da^3| for h = hi - lo <= 1e-3 lo, below 1e-11 of the kernel's
  // scale for these smooth activations (tests/test_theory_fast.cpp checks the stack against
  // direct quadrature to 1e-8).
  const auto [lo_it, hi_it] = std::minmax_element(vals.begin(), vals.end());
  const double lo = *lo_it, hi = *hi_it;
  const long offdiag = static_cast<long>(T) * (T - 1) / 2;
  if (n > 1 && lo > 0 && hi - lo <= kEqualSpread * lo && offdiag >= kMinEntriesForCluster) {
    // Variances equal but for rounding (a post-norm stack whose tokens have collapsed reads
    // K_tt a few ulp apart): three Chebyshev nodes in [lo, hi] would coincide after rounding
    // and the Lagrange weights divide by zero (NaN kernels, the validity atlas's c101). One
    // table at the midpoint: k(a, b, rho) moves by |dk/da| (hi - lo) / 2 <= 1e-12 of its scale.
    const KernelTable& tb = tables->get(0.5 * (lo + hi), 0.5 * (lo + hi));
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index s = 0; s <= t; ++s) {
        const KernelPair kp = s == t ? ak.eval(Ku(t, t), Ku(t, t), Ku(t, t))
                                     : tb.eval_rho(Ku(t, s) / (std::sqrt(Ku(t, t)) * std::sqrt(Ku(s, s))));
        Kphi(t, s) = Kphi(s, t) = kp.k;
        Kd(t, s) = Kd(s, t) = kp.kd;
      }
    return;
  }
  if (n > 1 && lo > 0 && hi - lo <= kClusterSpread * lo && offdiag >= kMinEntriesForCluster) {
    constexpr int m = 3;
    double node[m];
    for (int i = 0; i < m; ++i) node[i] = 0.5 * (lo + hi) + 0.5 * (hi - lo) * std::cos(std::numbers::pi * (2 * i + 1) / (2 * m));
    const KernelTable* tab[m][m];
    for (int i = 0; i < m; ++i)
      for (int j = i; j < m; ++j) tab[i][j] = tab[j][i] = &tables->get(node[i], node[j]);
    auto lagrange = [&](double x, double* w) {
      double sum = 0;
      for (int i = 0; i < m; ++i) {
        w[i] = 1;
        for (int j = 0; j < m; ++j)
          if (j != i) w[i] *= (x - node[j]) / (node[i] - node[j]);
        sum += w[i];
      }
      // The weights sum to 1 exactly; their rounding (ulp(x) / (hi - lo) each, large when the
      // spread is small) would not, and would move k by that much times k itself. Normalised,
      // it moves k by the rounding times the tables' differences only.
      for (int i = 0; i < m; ++i) w[i] /= sum;
    };
    std::vector<std::array<double, m>> wt(T);
    for (Eigen::Index t = 0; t < T; ++t) lagrange(Ku(t, t), wt[t].data());
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index s = 0; s <= t; ++s) {
        KernelPair kp{0, 0};
        if (s == t) {
          kp = ak.eval(Ku(t, t), Ku(t, t), Ku(t, t));
        } else {
          const double rho = Ku(t, s) / (std::sqrt(Ku(t, t)) * std::sqrt(Ku(s, s)));
          for (int i = 0; i < m; ++i)
            for (int j = 0; j < m; ++j) {
              const KernelPair v = tab[i][j]->eval_rho(rho);
              const double w = wt[t][i] * wt[s][j];
              kp.k += w * v.k;
              kp.kd += w * v.kd;
            }
        }
        Kphi(t, s) = Kphi(s, t) = kp.k;
        Kd(t, s) = Kd(s, t) = kp.kd;
      }
    return;
  }
  std::vector<int> count(n * n, 0);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s < t; ++s) ++count[std::min(idx[t], idx[s]) * n + std::max(idx[t], idx[s])];
  std::vector<const KernelTable*> tab(n * n, nullptr);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i; j < n; ++j)
      if (count[i * n + j] >= kMinEntriesPerTable) tab[i * n + j] = &tables->get(vals[i], vals[j]);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s <= t; ++s) {
      const KernelTable* kt = s == t ? nullptr : tab[std::min(idx[t], idx[s]) * n + std::max(idx[t], idx[s])];
      KernelPair kp = kt ? kt->eval(Ku(t, s)) : ak.eval(Ku(t, t), Ku(s, s), Ku(t, s));
      Kphi(t, s) = Kphi(s, t) = kp.k;
      Kd(t, s) = Kd(s, t) = kp.kd;
    }
}

// An equicorrelated T x T kernel: d on the diagonal, o off it.
struct Equi {
  double d = 0, o = 0;
};

Eigen::MatrixXd to_matrix(Equi e, int T) {
  Eigen::MatrixXd K = Eigen::MatrixXd::Constant(T, T, e.o);
  K.diagonal().setConstant(e.d);
  return K;
}

// The mean of all T^2 entries (uniform attention without a mask averages over every token).
double equi_mean(Equi e, int T) {
  return (e.d + (T - 1) * e.o) / T;
}

}  // namespace

Eigen::MatrixXd input_kernel(const StackSpec& spec) {
  const int T = spec.tokens;
  Eigen::MatrixXd K = Eigen::MatrixXd::Constant(T, T, spec.q0 * spec.rho0);
  K.diagonal().setConstant(spec.q0);
  return K;
}

bool keeps_equicorrelation(const StackSpec& spec, const AttnSettings& attn) {
  if (!spec.has_attn()) return true;
  return attention_uniform(spec, attn) && spec.mask == Mask::None;
}

namespace {

// Progress of one recursion: step `done` of `total` (L forward layers, then L backward layers).
void layer_progress(const ProgressFn& progress, int done, int total, const char* pass, int l) {
  if (progress) report_progress(progress, static_cast<double>(done) / total, fmt::format("{} layer {}", pass, l), "theory");
}

// kernel_recursion on equicorrelated kernels: the same operations, in the same order, on the
// two distinct entries (diagonal d, off-diagonal o) of K and G. O(1) per layer.
// The equicorrelated recursion's result: per layer the two distinct entries of K and G and the
// (common) diagonal entry of the cross kernel. NaN past a divergence.
struct EquiTrace {
  std::vector<Equi> K, G;
  std::vector<double> C;
  /// The collapse gap d - o of K, carried by its own recursion: where the tokens collapse
  /// (rho -> 1) d - o from the two entries cancels to the rounding of d and floors res at
  /// sqrt(eps) = 1.5e-8; the gap's recursion has no cancellation (docs/theory.md "res below 1e-8").
  std::vector<double> gap;
  int first_nonfinite = -1;
};

EquiTrace equi_scalars(const StackSpec& spec, const TheorySettings& st, const ProgressFn& progress) {
  const int L = spec.depth, T = spec.tokens;
  const ActKernel ak(spec.activation, st.quad_order);
  const double beta = weight_beta(spec);
  const double sw2 = spec.sigma_w2 * beta * beta;
  const std::vector<Branch> halves = halves_of(spec);
  struct Tape {
    Branch branch;
    double d_pre = 0;  // 0: no pre-norm
    double pre_gain2 = 1.0;
    Equi Kd{};
    double d_post = 0;  // 0: no post-norm
    double lam2 = 1.0, a2 = 1.0;
  };
  const double nan = std::nan("");
  EquiTrace tr;
  tr.K.assign(L + 1, Equi{nan, nan});
  tr.G.assign(L + 1, Equi{nan, nan});
  tr.C.assign(L + 1, nan);
  tr.gap.assign(L + 1, nan);
  std::vector<std::vector<Tape>> tape(L + 1);
  auto finite = [](Equi e) { return std::isfinite(e.d) && std::isfinite(e.o); };
  // The activation kernel's gap k(a, a, a) - k(a, a, a - g) for a pre-activation kernel with
  // diagonal a and gap g (Kphi: its two entries). Far from collapse the entries' difference;
  // below g = 1e-3 a, where that difference would cancel, Price's theorem dk/dc = kd gives
  // k(a, a, a) - k(a, a, a - g) = integral over [a - g, a] of kd(a, a, s) ds = 2 g int_0^1
  // t kd(a, a, a - g t^2) dt (the substitution s = a - g t^2 makes relu's sqrt(a - s)
  // behaviour at s = a smooth in t), by 8-point Gauss-Legendre: kd has no cancellation.
  const GaussLegendre gl8(8);
  auto act_gap = [&](double a, double g, Equi Kphi) {
    if (!(g < 1e-3 * a)) return Kphi.d - Kphi.o;
    if (g <= 0) return 0.0;
    double sum = 0;
    for (std::size_t i = 0; i < gl8.x.size(); ++i) {
      const double t = 0.5 * (gl8.x[i] + 1.0);
      sum += 0.5 * gl8.w[i] * t * ak.eval(a, a, a - g * t * t).kd;
    }
    return 2 * g * sum;
  };
  // The activation kernels of an equicorrelated pre-activation kernel U.
  auto act = [&](Equi U, Equi& Kphi, Equi& Kd) {
    KernelPair dg = ak.eval(U.d, U.d, U.d), od = ak.eval(U.d, U.d, U.o);
    Kphi = {dg.k, od.k};
    Kd = {dg.kd, od.kd};
  };

  Equi K{spec.q0, spec.q0 * spec.rho0};
  double gap = spec.q0 * (1.0 - spec.rho0);
  tr.K[0] = K;
  tr.gap[0] = gap;
  for (int l = 1; l <= L; ++l) {
    double c = K.d;
    const HalfParams hp = half_params(spec, l);
    for (Branch br : halves) {
      Tape h;
      h.branch = br;
      h.lam2 = hp.lam * hp.lam;
      h.a2 = hp.a * hp.a;
      Equi Kz = K;
      double gz = gap;
      if (hp.pre) {
        h.d_pre = 1.0 / std::sqrt(K.d + spec.norm_eps);
        h.pre_gain2 = hp.pre_gain * hp.pre_gain;
        Kz = {h.pre_gain2 * (h.d_pre * K.d * h.d_pre), h.pre_gain2 * (h.d_pre * K.o * h.d_pre)};
        gz = h.pre_gain2 * (h.d_pre * gap * h.d_pre);
      }
      Equi KF, Kphi;
      double gF = 0;  // uniform attention gives every token the same output: no gap
      switch (br) {
        case Branch::Attn: {
          const double m = (sw2 * sw2) * equi_mean(Kz, T);
          KF = {m, m};
          break;
        }
        case Branch::Mlp: {
          Equi Ku{sw2 * Kz.d + spec.sigma_b2, sw2 * Kz.o + spec.sigma_b2};
          act(Ku, Kphi, h.Kd);
          KF = {sw2 * Kphi.d + spec.sigma_b2, sw2 * Kphi.o + spec.sigma_b2};
          gF = sw2 * act_gap(Ku.d, sw2 * gz, Kphi);
          break;
        }
        case Branch::Dense:
          act(Kz, Kphi, h.Kd);
          KF = {sw2 * Kphi.d + spec.sigma_b2, sw2 * Kphi.o + spec.sigma_b2};
          gF = sw2 * act_gap(Kz.d, gz, Kphi);
          break;
      }
      K = {h.lam2 * K.d + h.a2 * KF.d, h.lam2 * K.o + h.a2 * KF.o};
      gap = h.lam2 * gap + h.a2 * gF;
      c *= std::sqrt(h.lam2);
      if (hp.post) {
        h.d_post = 1.0 / std::sqrt(K.d + spec.norm_eps);
        K = {h.d_post * K.d * h.d_post, h.d_post * K.o * h.d_post};
        gap = h.d_post * gap * h.d_post;
        c = c * h.d_post;
      }
      tape[l].push_back(h);
    }
    tr.K[l] = K;
    tr.gap[l] = gap;
    if (!finite(K)) {
      tr.first_nonfinite = l;
      return tr;
    }
    tr.C[l] = c;
    layer_progress(progress, l, 2 * L, "forward", l);
  }

  Equi G{1.0, 0.0};
  tr.G[L] = G;
  for (int l = L; l >= 1; --l) {
    for (auto it = tape[l].rbegin(); it != tape[l].rend(); ++it) {
      const Tape& h = *it;
      if (h.d_post > 0) G = {h.d_post * G.d * h.d_post, h.d_post * G.o * h.d_post};
      Equi Gb;
      switch (h.branch) {
        case Branch::Attn: {
          const double m = (sw2 * sw2) * equi_mean(G, T);
          Gb = {m, m};
          break;
        }
        case Branch::Mlp:
          Gb = {(sw2 * sw2) * (G.d * h.Kd.d), (sw2 * sw2) * (G.o * h.Kd.o)};
          break;
        case Branch::Dense:
          Gb = {sw2 * (G.d * h.Kd.d), sw2 * (G.o * h.Kd.o)};
          break;
      }
      if (h.d_pre > 0)
        Gb = {h.pre_gain2 * (h.d_pre * Gb.d * h.d_pre), h.pre_gain2 * (h.d_pre * Gb.o * h.d_pre)};
      G = {h.lam2 * G.d + h.a2 * Gb.d, h.lam2 * G.o + h.a2 * Gb.o};
    }
    tr.G[l - 1] = G;
    if (!finite(G)) {
      if (tr.first_nonfinite < 0) tr.first_nonfinite = l - 1;
      return tr;
    }
    layer_progress(progress, 2 * L - l + 1, 2 * L, "backward", l);
  }
  return tr;
}

KernelTrace equi_recursion(const StackSpec& spec, const TheorySettings& st, const ProgressFn& progress) {
  const EquiTrace e = equi_scalars(spec, st, progress);
  const int L = spec.depth, T = spec.tokens;
  KernelTrace tr;
  tr.equicorrelated = true;
  tr.first_nonfinite = e.first_nonfinite;
  tr.K.reserve(L + 1);
  tr.G.reserve(L + 1);
  tr.C.reserve(L + 1);
  for (int l = 0; l <= L; ++l) {
    tr.K.push_back(to_matrix(e.K[l], T));
    tr.G.push_back(to_matrix(e.G[l], T));
    tr.C.push_back(Eigen::VectorXd::Constant(T, e.C[l]));
    tr.res.push_back(equi_res(e.K[l].d, e.gap[l], T));
  }
  return tr;
}

}  // namespace

KernelTrace kernel_recursion(const StackSpec& spec, const TheorySettings& st, const ProgressFn& progress) {
  spec.validate();
  if (spec.weights != WeightDist::Gaussian)
    throw ConfigError("init.weights: the theory engine implements Gaussian weights only, got \"" +
                      to_string(spec.weights) +
                      "\" (orthogonal weights are implemented by `sigprop spectrum` for dense stacks)");
  if (st.equicorrelated_fast_path && keeps_equicorrelation(spec, st.attn)) return equi_recursion(spec, st, progress);
  const int L = spec.depth, T = spec.tokens;
  {
    // Everything below is T x T matrices: K_l and G_l for every layer, two per half-block on
    // the tape (Kz, Kd), and about a dozen of working space (the attention integral's).
    using U = std::uint64_t;
    const U TT = sat_mul({static_cast<U>(T), static_cast<U>(T)});
    const U per_layer = 2 + 2 * static_cast<U>(halves_of(spec).size());
    require_memory(sat_mul({sat_add({sat_mul({static_cast<U>(L) + 1, per_layer}), 12}), TT, 8}),
                   "the theory engine's kernel recursion",
                   fmt::format("stack.tokens = {} (T x T matrices) and stack.depth = {}", T, L));
  }
  const ActKernel ak(spec.activation, st.quad_order);
  TableCache table_cache(ak);
  TableCache* tables = st.kernel_tables ? &table_cache : nullptr;
  std::unique_ptr<AttentionKernel> attn;
  if (spec.has_attn()) attn = std::make_unique<AttentionKernel>(spec, st.attn);
  // The backward pass reuses every layer's softmax draws when they fit in kMaxSoftmaxBytes.
  const int Tp = detail::small_gemm_padded(T);  // the integral's padded matrix size
  const bool keep_softmax = static_cast<double>(L) * st.attn.samples * Tp * Tp * sizeof(double) <= kMaxSoftmaxBytes;
  const double beta = weight_beta(spec);
  const double sw2 = spec.sigma_w2 * beta * beta;  // weight variance after DeepNorm's beta^2

  const std::vector<Branch> halves = halves_of(spec);

  KernelTrace tr;
  tr.K.assign(L + 1, Eigen::MatrixXd::Constant(T, T, std::nan("")));
  tr.C.assign(L + 1, Eigen::VectorXd::Constant(T, std::nan("")));
  tr.G.assign(L + 1, Eigen::MatrixXd::Constant(T, T, std::nan("")));
  std::vector<std::vector<HalfTape>> tape(L + 1);

  Eigen::MatrixXd K = input_kernel(spec);
  tr.K[0] = K;
  tr.res.assign(L + 1, std::nan(""));
  // The collapse gap's form of K (Centred above), exact for the input: Kc = q0 (1 - rho0) (I - 11^T/T).
  Centred cf;
  cf.Kc = (spec.q0 * (1.0 - spec.rho0)) *
          (Eigen::MatrixXd::Identity(T, T) - Eigen::MatrixXd::Constant(T, T, 1.0 / T));
  cf.v = Eigen::VectorXd::Zero(T);
  cf.m = spec.q0 * (spec.rho0 + (1.0 - spec.rho0) / T);
  tr.res[0] = centred_res(cf);
  Eigen::MatrixXd Kphi;
  for (int l = 1; l <= L; ++l) {
    Eigen::VectorXd c = K.diagonal();  // cross kernel with X_{l-1} starts as its own diagonal
    const HalfParams hp = half_params(spec, l);
    for (Branch br : halves) {
      HalfTape h;
      h.branch = br;
      h.lam2 = hp.lam * hp.lam;
      h.a2 = hp.a * hp.a;
      // Carry the form only where it is needed (tokens collapsed); else take it from K.
      const double res_now = centred_res(cf);
      const bool track = res_now * res_now < kGapTrackRes2;
      Centred cz, cF;
      if (track) cz = cf;
      // Branch input Z = pre(X).
      Eigen::MatrixXd Kz;
      if (hp.pre) {
        h.d_pre = norm_scales(K, spec.norm_eps);
        h.pre_gain2 = hp.pre_gain * hp.pre_gain;  // 1/l for LayerNorm Scaling (Sun et al. 2025)
        Kz = h.pre_gain2 * scale2(K, h.d_pre);
        if (track) cz = centred_norm(cf, spec.norm_eps, h.pre_gain2);
      } else {
        Kz = K;
      }
      // Branch output kernel; every branch ends in a fresh zero-mean matrix (W_O, W_2, W),
      // so it is uncorrelated with X: cross terms vanish in both directions.
      Eigen::MatrixXd KF;
      switch (br) {
        case Branch::Attn:
          h.attn.keep_softmax = keep_softmax;
          if (track) {
            // A K A^T = A Kc A^T + (A v) 1^T + 1 (A v)^T + m 1 1^T (softmax rows sum to 1).
            Eigen::MatrixXd AKcA, Amean;
            KF = (sw2 * sw2) * attn->forward(Kz, &h.attn, cz.Kc, AKcA, Amean);
            cF = recentre(AKcA, Amean * cz.v, cz.m);
            scale(cF, sw2 * sw2);
          } else {
            KF = (sw2 * sw2) * attn->forward(Kz, &h.attn);
          }
          // Only sampled attention's backward pass reads Kz; the tape of a deep stack is most
          // of the recursion's memory, so the other branches keep none.
          if (!attn->uniform()) h.Kz = std::move(Kz);
          break;
        case Branch::Mlp:
        case Branch::Dense: {
          // MLP: u = Z W_1 + b_1; dense: u = Z (its W is the one after the activation).
          Centred cu;
          if (br == Branch::Mlp) {
            const Eigen::MatrixXd Ku = (sw2 * Kz).array() + spec.sigma_b2;
            act_kernels(ak, tables, Ku, Kphi, h.Kd);
            if (track) {
              cu = cz;
              scale(cu, sw2);
              cu.m += spec.sigma_b2;
            }
          } else {
            act_kernels(ak, tables, Kz, Kphi, h.Kd);
            if (track) cu = cz;
          }
          KF = (sw2 * Kphi).array() + spec.sigma_b2;
          if (track) {
            // v and m from KF (v's absolute precision, eps m, is what the next norm or attention
            // needs); Kc from the tokens' distances, which K's entries hold only to eps m.
            cF = centred_of(KF);
            cF.Kc = sw2 * act_centred(ak, cu);
          }
          break;
        }
      }
      K = h.lam2 * K + h.a2 * KF;
      if (track) axpby(cf, h.lam2, cF, h.a2);
      c *= std::sqrt(h.lam2);
      if (hp.post) {
        h.d_post = norm_scales(K, spec.norm_eps);
        K = scale2(K, h.d_post);
        if (track) cf = centred_norm(cf, spec.norm_eps, 1.0);
        c = c.cwiseProduct(h.d_post);
      }
      if (!track) cf = centred_of(K);
      tape[l].push_back(std::move(h));
    }
    tr.res[l] = centred_res(cf);
    if (!all_finite(K)) {
      tr.first_nonfinite = l;
      tr.K[l] = K;
      return tr;  // later layers stay NaN; the backward pass needs every layer
    }
    tr.K[l] = K;
    tr.C[l] = c;
    layer_progress(progress, l, 2 * L, "forward", l);
  }

  // Backward: Delta_L iid N(0, 1) gives G_L = I.
  Eigen::MatrixXd G = Eigen::MatrixXd::Identity(T, T);
  tr.G[L] = G;
  for (int l = L; l >= 1; --l) {
    for (auto it = tape[l].rbegin(); it != tape[l].rend(); ++it) {
      const HalfTape& h = *it;
      if (h.d_post.size()) G = scale2(G, h.d_post);
      // Gradient independence (Yang 2019): the branch's fresh weights decorrelate the
      // skip and branch gradients, and norm-projection terms are O(1/sqrt(d)).
      Eigen::MatrixXd Gb;
      switch (h.branch) {
        case Branch::Attn:
          Gb = attn->backward(h.Kz, G, sw2 * sw2, &h.attn);
          break;
        case Branch::Mlp:
          Gb = (sw2 * sw2) * G.cwiseProduct(h.Kd);
          break;
        case Branch::Dense:
          Gb = sw2 * G.cwiseProduct(h.Kd);
          break;
      }
      if (h.d_pre.size()) Gb = h.pre_gain2 * scale2(Gb, h.d_pre);
      G = h.lam2 * G + h.a2 * Gb;
    }
    if (!all_finite(G)) {
      if (tr.first_nonfinite < 0) tr.first_nonfinite = l - 1;
      tr.G[l - 1] = G;
      return tr;
    }
    if (tr.grad_lost < 0 && G.diagonal().minCoeff() < 0) tr.grad_lost = l - 1;
    tr.G[l - 1] = G;
    layer_progress(progress, 2 * L - l + 1, 2 * L, "backward", l);
  }
  return tr;
}

namespace {

// core/metrics.cpp's formulas on an equicorrelated kernel (d, o): the eigenvalues are
// d + (T-1) o once and d - o (T-1 times), so no T x T eigen-decomposition is needed.
// gap: d - o, from the gap's own recursion where there is one (EquiTrace::gap), else d - o.
StateMetrics equi_state_metrics(double d, double o, int T, double gap) {
  StateMetrics m;
  m.q = d;
  m.rho = o / (std::sqrt(d) * std::sqrt(d));
  m.res = equi_res(d, gap, T);
  Eigen::VectorXd sv = Eigen::VectorXd::Constant(T, std::sqrt(std::max(gap, 0.0)));
  sv(0) = std::sqrt(std::max(d + (T - 1) * o, 0.0));
  m.eff_rank = effective_rank(sv);
  return m;
}

void fill_metrics(const StackSpec& spec, const KernelTrace& tr, Profile& p) {
  // Finiteness once per matrix (an equicorrelated one has two distinct entries); none to test
  // when the recursion met no non-finite kernel after a finite input (the common case).
  const bool equi = tr.equicorrelated && spec.tokens > 1;
  const bool all_ok = tr.first_nonfinite < 0 && all_finite(tr.K[0]);
  auto finite = [&](const Eigen::MatrixXd& M) {
    if (all_ok) return true;
    return equi ? std::isfinite(M(0, 0)) && std::isfinite(M(1, 0)) : all_finite(M);
  };
  std::vector<char> kf(spec.depth + 1);
  for (int l = 0; l <= spec.depth; ++l) kf[l] = finite(tr.K[l]);
  // The general kernels' state metrics all at once: their eigenvalues (eff_rank) are most of
  // the metrics' cost, and a batch runs same-sized kernels in SIMD lanes (core/metrics.hpp).
  std::vector<const Eigen::MatrixXd*> general;
  if (!equi)
    for (int l = 0; l <= spec.depth; ++l)
      if (kf[l]) general.push_back(&tr.K[l]);
  const std::vector<StateMetrics> gm = state_metrics_from_kernels(general);
  std::size_t gi = 0;
  for (int l = 0; l <= spec.depth; ++l) {
    if (kf[l]) {
      const StateMetrics m = equi ? equi_state_metrics(tr.K[l](0, 0), tr.K[l](1, 0), spec.tokens, tr.K[l](0, 0) - tr.K[l](1, 0)) : gm[gi++];
      p.at(l, "q") = m.q;
      p.at(l, "rho") = m.rho;
      // From the collapse gap's recursion where it ran (no floor at 1.5e-8), else from K.
      p.at(l, "res") = l < static_cast<int>(tr.res.size()) && std::isfinite(tr.res[l]) ? tr.res[l] : m.res;
      p.at(l, "eff_rank") = m.eff_rank;
    }
    if (l > 0 && kf[l] && kf[l - 1] && all_finite(tr.C[l])) {
      StepMetrics s = step_metrics_from_kernels(tr.K[l - 1], tr.K[l], tr.C[l].asDiagonal());
      p.at(l, "update_ratio") = s.update_ratio;
      p.at(l, "ang_dist") = s.ang_dist;
    }
    if (finite(tr.G[l]) && l > tr.grad_lost) p.at(l, "grad_var") = tr.G[l].trace() / spec.tokens;
  }
}

// fill_metrics on an EquiTrace: the same formulas (core/metrics.cpp) on the two distinct
// entries, without materialising T x T matrices (the engine's O(1)-per-layer path).
void fill_metrics_equi(const StackSpec& spec, const EquiTrace& e, Profile& p) {
  const int T = spec.tokens;
  auto finite = [](Equi x) { return std::isfinite(x.d) && std::isfinite(x.o); };
  for (int l = 0; l <= spec.depth; ++l) {
    if (finite(e.K[l])) {
      StateMetrics m = equi_state_metrics(e.K[l].d, e.K[l].o, T, e.gap[l]);
      p.at(l, "q") = m.q;
      p.at(l, "rho") = m.rho;
      p.at(l, "res") = m.res;
      p.at(l, "eff_rank") = m.eff_rank;
    }
    if (l > 0 && finite(e.K[l]) && finite(e.K[l - 1]) && std::isfinite(e.C[l])) {
      const double dp = e.K[l - 1].d, dc = e.K[l].d, c = e.C[l];
      // (tr K_l - 2 tr C_l + tr K_{l-1}) / tr K_{l-1}, term by term so that it cannot overflow
      p.at(l, "update_ratio") = std::sqrt(std::max(dc / dp - 2 * (c / dp) + 1.0, 0.0));
      p.at(l, "ang_dist") = std::acos(std::clamp(c / (std::sqrt(dp) * std::sqrt(dc)), -1.0, 1.0)) / std::numbers::pi;
    }
    if (finite(e.G[l])) p.at(l, "grad_var") = e.G[l].d;
  }
}

// Fewest logit draws one error batch may hold (8 antithetic pairs).
constexpr int kMinDrawsPerBatch = 16;

// One warning for every null metric value, naming the first layer where it appears: the forward
// recursion's divergence (every later layer, and grad_var everywhere: the backward pass needs
// every layer), the backward recursion's (grad_var at that layer and below), and anything else
// (a metric that overflows from finite kernels, e.g. grad_var = tr(G_l)/T at depth 10^4).
// fwd: first layer whose K_l is not finite (-1: none); bwd: the highest layer whose G_l is not
// finite when the forward pass is finite (-1: none).
// The warning for KernelTrace::grad_lost (highest such layer over the recursions run).
std::string grad_lost_warning(int lost, int L, bool batches) {
  return fmt::format(
      "negative gradient variance (a diagonal entry of G_l) first at layer {} (counting down from {}{}): the "
      "sampled attention backward pass lost all precision (saturated softmax in a growing stream, where its "
      "query and key terms cancel to rounding); grad_var at layers <= {} is null",
      lost, L, batches ? ", in at least one error batch" : "", lost);
}

void explain_nulls(const StackSpec& spec, int fwd, int bwd, Profile& p, int lost = -1) {
  const int L = spec.depth;
  if (lost >= 0) p.warnings.push_back(grad_lost_warning(lost, L, false));
  if (fwd >= 0)
    p.warnings.push_back(fmt::format("non-finite kernel K_l first at layer {}: the forward recursion diverged "
                                     "(overflow); every metric at layers >= {} is null, and grad_var is null at "
                                     "every layer (the backward recursion needs every layer)",
                                     fwd, fwd));
  if (bwd >= 0)
    p.warnings.push_back(fmt::format("non-finite gradient kernel G_l first at layer {} (counting down from {}): the "
                                     "backward recursion diverged (overflow); grad_var at layers <= {} is null",
                                     bwd, L, bwd));
  for (const std::string& m : metric_names()) {
    int first = -1, count = 0;
    for (int l = 0; l <= L; ++l) {
      if (l == 0 && (m == "update_ratio" || m == "ang_dist")) continue;  // undefined at l = 0
      if (std::isfinite(p.at(l, m))) continue;
      const bool grad = m == "grad_var";
      if ((fwd >= 0 && (l >= fwd || grad)) || (grad && std::max(bwd, lost) >= 0 && l <= std::max(bwd, lost)))
        continue;  // explained above
      if (first < 0) first = l;
      ++count;
    }
    if (first >= 0)
      p.warnings.push_back(fmt::format("non-finite {} first at layer {} from finite kernels (overflow of the "
                                       "metric itself): null at {} layer{}",
                                       m, first, count, count == 1 ? "" : "s"));
  }
}

void explain_nulls(const StackSpec& spec, const KernelTrace& tr, Profile& p) {
  int fwd = -1, bwd = -1;
  // kernel_recursion stops at, and records, the first non-finite K or G after K_0.
  if (tr.first_nonfinite < 0 && all_finite(tr.K[0])) return explain_nulls(spec, fwd, bwd, p, tr.grad_lost);
  for (int l = 0; l <= spec.depth && fwd < 0; ++l)
    if (!all_finite(tr.K[l])) fwd = l;
  if (fwd < 0)
    for (int l = spec.depth; l >= 0 && bwd < 0; --l)
      if (!all_finite(tr.G[l])) bwd = l;
  explain_nulls(spec, fwd, bwd, p, fwd < 0 ? tr.grad_lost : -1);
}

void explain_nulls(const StackSpec& spec, const EquiTrace& e, Profile& p) {
  auto finite = [](Equi x) { return std::isfinite(x.d) && std::isfinite(x.o); };
  int fwd = -1, bwd = -1;
  for (int l = 0; l <= spec.depth && fwd < 0; ++l)
    if (!finite(e.K[l])) fwd = l;
  if (fwd < 0)
    for (int l = spec.depth; l >= 0 && bwd < 0; --l)
      if (!finite(e.G[l])) bwd = l;
  explain_nulls(spec, fwd, bwd, p);
}

}  // namespace

Profile TheoryEngine::run(const StackSpec& spec) {
  spec.validate();
  if (st_.error_batches == 1 || st_.error_batches < 0)
    throw ConfigError(fmt::format("theory error batches (error_batches = {}) must be 0 (off) or >= 2",
                                  st_.error_batches));
  const bool sampled = spec.has_attn() && !attention_uniform(spec, st_.attn);
  const int B = sampled ? st_.error_batches : 0;
  const int N = st_.attn.samples + st_.attn.samples % 2;
  if (B > 0 && (N % (2 * B) != 0 || N / B < kMinDrawsPerBatch))
    throw ConfigError(fmt::format(
        "theory attention samples (attn_samples = {}) must be a multiple of 2 x error batches (error_batches = {}) "
        "with at least {} draws per batch: the reported value is the mean of the {} independent batch estimates "
        "and its _se is their spread, so every draw must belong to exactly one batch and each batch needs enough "
        "draws to be a usable estimate",
        st_.attn.samples, B, kMinDrawsPerBatch, B));
  std::vector<std::string> cols = metric_names();
  if (B > 0)
    for (auto& m : metric_names()) cols.push_back(m + "_se");
  Profile p = Profile::make(spec, name(), cols);
  p.settings = {{"engine", "theory"},
                {"limit", spec.has_attn() && spec.qk_scale == QkScale::InvDh && st_.attn.finite_dh
                              ? "infinite width; attention: Gaussian logits at d_h = width / heads (finite_dh), H -> inf"
                              : "infinite width; attention: d_h -> inf then H -> inf"},
                {"quad_order", st_.quad_order},
                {"activation_kernel", ActKernel(spec.activation, 2).exact()
                                          ? "closed form"
                                          : (st_.kernel_tables ? "Chebyshev tables in acos(rho) of split Gauss-Legendre"
                                                               : "split Gauss-Legendre per entry")},
                {"equicorrelated_fast_path", st_.equicorrelated_fast_path && keeps_equicorrelation(spec, st_.attn)},
                {"version", kVersion}};
  if (spec.has_attn()) {
    if (sampled)
      p.settings["attention"] = {
          {"method", st_.attn.method == AttnMethod::Qmc
                         ? "randomised quasi-Monte Carlo (digitally shifted Sobol) over Gaussian logits, antithetic, "
                           "common random numbers"
                         : "Monte Carlo over Gaussian logits, antithetic, common random numbers"},
          {"qmc", st_.attn.method == AttnMethod::Qmc},
          {"samples", N},
          {"seed", st_.attn.seed},
          {"error_batches", B},
          {"samples_per_batch", B > 0 ? N / B : N},
          {"logit_sigma_qk2", logit_sigma_qk2(spec, st_.attn)},
          {"finite_dh", st_.attn.finite_dh && spec.qk_scale == QkScale::InvDh}};
    else
      p.settings["attention"] = {{"method", "uniform (exact)"}};
  }

  if (B == 0 && st_.equicorrelated_fast_path && keeps_equicorrelation(spec, st_.attn) && spec.tokens > 1) {
    spec.validate();
    if (spec.weights != WeightDist::Gaussian) (void)kernel_recursion(spec, st_);  // its error message
    const EquiTrace e = equi_scalars(spec, st_, progress_callback());
    fill_metrics_equi(spec, e, p);
    explain_nulls(spec, e, p);
  } else if (B == 0) {
    KernelTrace tr = kernel_recursion(spec, st_, progress_callback());
    fill_metrics(spec, tr, p);
    explain_nulls(spec, tr, p);
  } else {
    // Independent replicates: B recursions on disjoint draws (MC) or independently shifted
    // point sets (QMC). The value is their mean and _se = sd / sqrt(B), an unbiased estimate of
    // the reported value's sampling error whatever the integrand's smoothness.
    std::vector<Profile> batches;
    int first_bad = -1, lost = -1;
    for (int b = 0; b < B; ++b) {
      TheorySettings sb = st_;
      sb.attn.samples = N / B;
      sb.attn.replicate = st_.attn.replicate * B + b;
      sb.error_batches = 0;
      Profile pb = Profile::make(spec, name(), metric_names());
      ProgressFn batch_progress;  // batch b covers [b/B, (b+1)/B] of the run
      if (progress_callback())
        batch_progress = [&, b](double f, std::string_view m) {
          return progress_callback()((b + f) / B, fmt::format("error batch {}/{}, {}", b + 1, B, m));
        };
      KernelTrace tr = kernel_recursion(spec, sb, batch_progress);
      if (tr.first_nonfinite >= 0 && (first_bad < 0 || tr.first_nonfinite < first_bad)) first_bad = tr.first_nonfinite;
      if (tr.first_nonfinite < 0) lost = std::max(lost, tr.grad_lost);
      fill_metrics(spec, tr, pb);
      batches.push_back(std::move(pb));
    }
    if (first_bad >= 0)
      p.warnings.push_back(
          fmt::format("non-finite kernel first at layer {} (in at least one error batch): the recursion diverged "
                      "(overflow); later layers are null",
                      first_bad));
    if (lost >= 0) p.warnings.push_back(grad_lost_warning(lost, spec.depth, true));
    for (int l = 0; l <= spec.depth; ++l)
      for (auto& m : metric_names()) {
        std::vector<double> v;
        for (auto& pb : batches) v.push_back(pb.at(l, m));
        const MeanSe r = mean_se(v);
        p.at(l, m) = r.mean;
        p.at(l, m + "_se") = r.se;
      }
  }

  if (spec.blocks == Blocks::Dense && !spec.residual && spec.norm == Norm::None) {
    DenseMeanField mf = dense_mean_field(spec.activation, spec.sigma_w2, spec.sigma_b2, st_.quad_order);
    p.extras["mean_field"] = to_json(mf);
  }
  if (st_.depth_returns) p.extras["depth_returns"] = to_json(depth_returns(spec, st_, 0.25, &p));
  progress(1.0, "done");
  return p;
}

}  // namespace sigprop::theory
