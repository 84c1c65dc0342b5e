#include "theory/shaped_sde.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/rng.hpp"
#include "core/stats.hpp"
#include "sigprop/version.hpp"

namespace sigprop::theory {

namespace {

constexpr uint64_t kSdePurpose = 0x5DE;
constexpr uint64_t kNetPurpose = 0x5E7;

// Any F with F F^T = K (eigen-decomposition, negative round-off eigenvalues clipped): the
// Euler-Maruyama kernel can leave the PSD cone by O(dt) when tokens are nearly collinear.
Eigen::MatrixXd psd_factor(const Eigen::MatrixXd& K) {
  Eigen::LLT<Eigen::MatrixXd> llt(K);
  if (llt.info() == Eigen::Success) return llt.matrixL();
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K);
  return es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal();
}

double mean_corr(const Eigen::MatrixXd& K) {
  const auto T = K.rows();
  double s = 0;
  for (Eigen::Index a = 0; a < T; ++a)
    for (Eigen::Index b = 0; b < T; ++b)
      if (a != b) s += std::clamp(K(a, b) / std::sqrt(K(a, a) * K(b, b)), -1.0, 1.0);
  return s / static_cast<double>(T * (T - 1));
}

void validate(const StackSpec& spec, const ShapedSettings& st) {
  spec.validate();
  if (spec.width < spec.tokens)
    throw ConfigError(
        fmt::format("stack.width = {}: the shaped networks need width >= tokens ({})", spec.width, spec.tokens));
  if (!std::isfinite(st.shape_c)) throw ConfigError("shape_c: must be finite");
  if (!(st.gamma2 > 0 && st.gamma2 <= 1)) throw ConfigError("gamma2: must be in (0, 1]");
  if (!(st.tau0 > 0) || !std::isfinite(st.tau0)) throw ConfigError("tau0: must be finite and > 0");
  if (st.key_dim < 0) throw ConfigError("key_dim: must be >= 0");
  if (st.paths < 2 || st.paths > 65535) throw ConfigError("paths: must be in 2..65535");
  if (st.samples < 0 || st.samples > 65535) throw ConfigError("samples: must be in 0..65535");
  if (st.substeps < 1) throw ConfigError("substeps: must be >= 1");
  if (spec.depth > 65535) throw ConfigError("stack.depth: at most 65535 layers (Philox stream ids)");
  // Memory: per path or network a row of rho and q per layer, the normals of one layer's
  // Euler-Maruyama steps (3 T^2 per substep), and one network's T x n and n x T matrices.
  using U = std::uint64_t;
  const U T = static_cast<U>(spec.tokens), n = static_cast<U>(spec.width);
  const U nk = st.key_dim > 0 ? static_cast<U>(st.key_dim) : n;
  const U members = static_cast<U>(std::max(st.paths, st.samples));
  require_memory(sat_mul({sat_add({sat_mul({2, members, static_cast<U>(spec.depth) + 1}),
                                   sat_mul({3, T, T, static_cast<U>(st.substeps)}), sat_mul({6, T, std::max(n, nk)}),
                                   sat_mul({8, T, T})}),
                          8}),
                 "the shaped SDE",
                 fmt::format("paths/samples = {}, stack.depth = {}, substeps = {}, stack.tokens = {} and "
                             "stack.width = {}",
                             members, spec.depth, st.substeps, spec.tokens, spec.width));
}

Eigen::MatrixXd input_gram(const StackSpec& spec) {
  Eigen::MatrixXd K = Eigen::MatrixXd::Constant(spec.tokens, spec.tokens, spec.q0 * spec.rho0);
  K.diagonal().setConstant(spec.q0);
  return K;
}

}  // namespace

ShapedModel parse_shaped_model(const std::string& s) {
  if (s == "mlp") return ShapedModel::Mlp;
  if (s == "attn" || s == "attention") return ShapedModel::Attn;
  throw ConfigError(fmt::format("model: expected mlp or attn, got \"{}\"", s));
}
std::string to_string(ShapedModel m) {
  return m == ShapedModel::Mlp ? "mlp" : "attn";
}

Eigen::MatrixXd shaped_drift(const Eigen::MatrixXd& K, const ShapedSettings& st) {
  const auto T = K.rows();
  Eigen::MatrixXd b(T, T);
  if (st.model == ShapedModel::Mlp) {
    // c^2 (E|u_a||u_b| - K_ab); E|u||v| = sqrt(K_aa K_bb) (2/pi)(sqrt(1-r^2) + r asin r).
    const double c2 = st.shape_c * st.shape_c;
    for (Eigen::Index a = 0; a < T; ++a)
      for (Eigen::Index s = 0; s < T; ++s) {
        const double sab = std::sqrt(std::max(K(a, a) * K(s, s), 0.0));
        const double r = sab > 0 ? std::clamp(K(a, s) / sab, -1.0, 1.0) : 0.0;
        const double eabs = sab * (2.0 / std::numbers::pi) * (std::sqrt(1.0 - r * r) + r * std::asin(r));
        b(a, s) = c2 * (eabs - K(a, s));
      }
    return b;
  }
  // Attention: (gamma^2 / tau0^2) [ tr(K Pc K Pc) K / T^2 + E[B2] K + K E[B2]^T ],
  // E[B2]_ts = K_tt ((Pc K Pc)_ss - mean_u (Pc K Pc)_uu) / (2T)   (docs/ode.md §3.2).
  const double Td = static_cast<double>(T);
  Eigen::MatrixXd Pc = Eigen::MatrixXd::Identity(T, T) - Eigen::MatrixXd::Constant(T, T, 1.0 / Td);
  Eigen::MatrixXd C = Pc * K * Pc;
  const double trKC = (K * C).trace();
  const double mc = C.diagonal().mean();
  Eigen::MatrixXd B2(T, T);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s < T; ++s) B2(t, s) = K(t, t) * (C(s, s) - mc) / (2.0 * Td);
  b = trKC / (Td * Td) * K + B2 * K + K * B2.transpose();
  return (st.gamma2 / (st.tau0 * st.tau0)) * b;
}

Eigen::MatrixXd shaped_noise(const Eigen::MatrixXd& K, const ShapedSettings& st, const double* xi, double sqrt_dt) {
  const auto T = K.rows();
  const Eigen::MatrixXd F = psd_factor(K);
  auto sym = [](const Eigen::MatrixXd& M) { return Eigen::MatrixXd(M + M.transpose()); };
  Eigen::Map<const Eigen::MatrixXd> X1(xi, T, T), X2(xi + T * T, T, T), X3(xi + 2 * T * T, T, T);
  if (st.model == ShapedModel::Mlp) {
    // Wishart fluctuation of h h^T / n: Cov(dK_ab, dK_cd) = (K_ac K_bd + K_ad K_bc) dt.
    return (sqrt_dt / std::sqrt(2.0)) * sym(F * X1 * F.transpose());
  }
  const double g2 = st.gamma2, lam = std::sqrt(1.0 - g2), gam = std::sqrt(g2);
  const double Td = static_cast<double>(T);
  Eigen::MatrixXd Pc = Eigen::MatrixXd::Identity(T, T) - Eigen::MatrixXd::Constant(T, T, 1.0 / Td);
  Eigen::MatrixXd out = (lam * gam) * sym(F * X1 * F.transpose())                        // skip x branch cross term
                        + (g2 / std::sqrt(2.0)) * sym(F * X2 * F.transpose())            // Wishart of the value path
                        + (g2 / (st.tau0 * Td)) * sym(F * X3 * F.transpose() * Pc * K);  // first-order softmax
  return sqrt_dt * out;
}

ShapedEnsemble shaped_sde_paths(const StackSpec& spec, const ShapedSettings& st, const ProgressFn& progress) {
  validate(spec, st);
  const int L = spec.depth, n = spec.width, T = spec.tokens, m = st.substeps;
  ShapedEnsemble e;
  for (int l = 0; l <= L; ++l) e.t.push_back(static_cast<double>(l) / n);
  e.rho.resize(st.paths, L + 1);
  e.q.resize(st.paths, L + 1);
  const Eigen::MatrixXd K0 = input_gram(spec);
  const double dt = 1.0 / (static_cast<double>(n) * m), sdt = std::sqrt(dt);
  const auto per_step = static_cast<size_t>(3 * T * T);
  std::vector<double> xi(per_step * m);
  for (int p = 0; p < st.paths; ++p) {
    if (progress)
      report_progress(progress, static_cast<double>(p) / st.paths, fmt::format("SDE path {}/{}", p + 1, st.paths),
                      "shaped-sde");
    NormalStream ns(st.seed, stream_id(static_cast<uint64_t>(p), 0, 0, kSdePurpose));
    Eigen::MatrixXd K = K0;
    e.rho(p, 0) = mean_corr(K);
    e.q(p, 0) = K.diagonal().mean();
    for (int l = 1; l <= L; ++l) {
      ns.fill(xi.data(), xi.size(), static_cast<uint64_t>(l - 1) * xi.size());
      for (int k = 0; k < m; ++k) {
        Eigen::MatrixXd dK = shaped_drift(K, st) * dt + shaped_noise(K, st, xi.data() + k * per_step, sdt);
        K += dK;
        K = 0.5 * (K + K.transpose()).eval();
        // The diagonal is a second moment: keep it positive (the exact solution never leaves).
        for (int a = 0; a < T; ++a) K(a, a) = std::max(K(a, a), 1e-300);
      }
      if (!K.allFinite()) {  // an exploding path (the attention drift grows like q^3): NaN from here on
        e.rho.row(p).tail(L + 1 - l).setConstant(std::nan(""));
        e.q.row(p).tail(L + 1 - l).setConstant(std::nan(""));
        break;
      }
      e.rho(p, l) = mean_corr(K);
      e.q(p, l) = K.diagonal().mean();
    }
  }
  return e;
}

ShapedEnsemble shaped_network_samples(const StackSpec& spec, const ShapedSettings& st, const ProgressFn& progress) {
  validate(spec, st);
  const int L = spec.depth, n = spec.width, T = spec.tokens;
  const int nk = st.key_dim > 0 ? st.key_dim : n;
  const double sn = std::sqrt(static_cast<double>(n));
  ShapedEnsemble e;
  for (int l = 0; l <= L; ++l) e.t.push_back(static_cast<double>(l) / n);
  e.rho.resize(st.samples, L + 1);
  e.q.resize(st.samples, L + 1);
  const Eigen::MatrixXd K0 = input_gram(spec);
  const Eigen::MatrixXd F0 = psd_factor(K0);
  auto draw = [&](int s, int l, int matrix, Eigen::MatrixXd& M) {
    NormalStream(st.seed, stream_id(static_cast<uint64_t>(s), static_cast<uint64_t>(l), static_cast<uint64_t>(matrix),
                                    kNetPurpose))
        .fill(M.data(), static_cast<std::size_t>(M.size()));
  };
  Eigen::MatrixXd Z(T, n), Wq(T, nk), Wk(T, nk);
  for (int s = 0; s < st.samples; ++s) {
    if (progress)
      report_progress(progress, static_cast<double>(s) / st.samples,
                      fmt::format("network {}/{}", s + 1, st.samples), "shaped-sde");
    if (st.model == ShapedModel::Mlp) {
      // h^0 (T x n): Gaussian-looking coordinates with Gram exactly n K0 (rows orthonormalised).
      draw(s, 0, 0, Z);
      Eigen::HouseholderQR<Eigen::MatrixXd> qr(Z.transpose());
      Eigen::MatrixXd Q = qr.householderQ() * Eigen::MatrixXd::Identity(n, T);  // n x T, orthonormal columns
      Eigen::MatrixXd h = sn * F0 * Q.transpose();
      Eigen::MatrixXd K = h * h.transpose() / n;
      e.rho(s, 0) = mean_corr(K);
      e.q(s, 0) = K.diagonal().mean();
      const double cs = st.shape_c / sn;
      for (int l = 1; l <= L; ++l) {
        // h' = W phi_s(h) / sqrt(n + c^2): given h, the columns of h' are iid N(0, V),
        // V = phi phi^T / (n + c^2), so h' = chol(V) Z exactly in distribution.
        Eigen::MatrixXd phi = h + cs * h.cwiseAbs();
        Eigen::MatrixXd V = phi * phi.transpose() / (n + st.shape_c * st.shape_c);
        draw(s, l, 1, Z);
        h = psd_factor(V) * Z;
        K = h * h.transpose() / n;
        e.rho(s, l) = mean_corr(K);
        e.q(s, l) = K.diagonal().mean();
      }
    } else {
      // X = [R | 0] Q for some orthogonal Q; by rotation invariance of W, W_Q, W_K the law of the
      // next kernel depends on X only through R R^T = n K, and only the first T rows of each
      // weight matrix meet X: X W = R W[0:T, :].
      Eigen::MatrixXd K = K0;
      e.rho(s, 0) = mean_corr(K);
      e.q(s, 0) = K.diagonal().mean();
      const double lam = std::sqrt(1.0 - st.gamma2), gam = std::sqrt(st.gamma2);
      const double eps = 1.0 / (st.tau0 * sn);
      for (int l = 1; l <= L; ++l) {
        Eigen::MatrixXd R = sn * psd_factor(K);
        draw(s, l, 1, Z);
        draw(s, l, 2, Wq);
        draw(s, l, 3, Wk);
        Eigen::MatrixXd G = R * Z / sn;                     // X W / sqrt(n), T x n
        Eigen::MatrixXd U = R * Wq / sn, Vk = R * Wk / sn;  // X W_Q / sqrt(n), X W_K / sqrt(n)
        Eigen::MatrixXd S = eps * (U * Vk.transpose()) / std::sqrt(static_cast<double>(nk));
        Eigen::MatrixXd A(T, T);
        for (int t = 0; t < T; ++t) {
          const double mx = S.row(t).maxCoeff();
          Eigen::RowVectorXd w = (S.row(t).array() - mx).exp().matrix();
          A.row(t) = w / w.sum();
        }
        A.array() -= 1.0 / T;
        A.diagonal().array() += 1.0;
        Eigen::MatrixXd Xn = gam * A * G;  // T x n
        Xn.leftCols(T) += lam * R;
        K = Xn * Xn.transpose() / n;
        K = 0.5 * (K + K.transpose()).eval();
        e.rho(s, l) = mean_corr(K);
        e.q(s, l) = K.diagonal().mean();
      }
    }
  }
  return e;
}

double kolmogorov_q(double lambda) {
  if (lambda < 1e-3) return 1.0;
  double s = 0, sign = 1;
  for (int k = 1; k <= 200; ++k) {
    const double term = std::exp(-2.0 * k * k * lambda * lambda);
    s += sign * term;
    sign = -sign;
    if (term < 1e-17) break;
  }
  return std::clamp(2.0 * s, 0.0, 1.0);
}

KsResult ks_two_sample(std::vector<double> a, std::vector<double> b) {
  if (a.empty() || b.empty()) throw Error("ks_two_sample: empty sample");
  auto finite = [](const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  };
  if (!finite(a) || !finite(b)) throw NumericalError("ks_two_sample: non-finite value in a sample");
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  size_t i = 0, j = 0;
  double D = 0;
  while (i < a.size() && j < b.size()) {
    const double x = std::min(a[i], b[j]);
    while (i < a.size() && a[i] <= x) ++i;
    while (j < b.size() && b[j] <= x) ++j;
    D = std::max(D, std::abs(i / na - j / nb));
  }
  const double ne = std::sqrt(na * nb / (na + nb));
  return {D, kolmogorov_q((ne + 0.12 + 0.11 / ne) * D)};  // Stephens (1970)
}

double quantile(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double h = (static_cast<double>(v.size()) - 1) * p;
  const auto lo = static_cast<size_t>(std::floor(h));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (h - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

Profile shaped_profile(const StackSpec& spec, const ShapedSettings& st, const ProgressFn& progress) {
  validate(spec, st);
  // Paths and networks share [0, 1] in proportion to their counts.
  const double split = static_cast<double>(st.paths) / (st.paths + st.samples);
  ProgressFn sde_progress, mc_progress;
  if (progress) {
    sde_progress = [&](double f, std::string_view m) { return progress(split * f, m); };
    mc_progress = [&](double f, std::string_view m) { return progress(split + (1.0 - split) * f, m); };
  }
  ShapedEnsemble sde = shaped_sde_paths(spec, st, sde_progress);
  ShapedEnsemble mc;
  if (st.samples > 0) mc = shaped_network_samples(spec, st, mc_progress);
  std::vector<std::string> cols = {"t", "rho", "rho_se", "rho_q05", "rho_q50", "rho_q95", "q", "q_se"};
  if (st.samples > 0)
    for (const char* c : {"rho", "rho_se", "rho_q05", "rho_q50", "rho_q95", "q", "q_se"})
      cols.push_back(std::string("mc_") + c);
  Profile p = Profile::make(spec, "shaped-sde", cols);
  const int L = spec.depth;
  // Finite members only: a diverged SDE path is NaN from its first non-finite layer on.
  auto col = [](const Eigen::MatrixXd& M, int l) {
    std::vector<double> v;
    for (Eigen::Index i = 0; i < M.rows(); ++i)
      if (std::isfinite(M(i, l))) v.push_back(M(i, l));
    return v;
  };
  auto put = [&](const std::string& pre, const ShapedEnsemble& e, int l) {
    std::vector<double> r = col(e.rho, l), q = col(e.q, l);
    const MeanSe mr = mean_se(r), mq = mean_se(q);
    p.at(l, pre + "rho") = mr.mean;
    p.at(l, pre + "rho_se") = mr.se;
    p.at(l, pre + "rho_q05") = quantile(r, 0.05);
    p.at(l, pre + "rho_q50") = quantile(r, 0.5);
    p.at(l, pre + "rho_q95") = quantile(r, 0.95);
    p.at(l, pre + "q") = mq.mean;
    p.at(l, pre + "q_se") = mq.se;
  };
  for (int l = 0; l <= L; ++l) {
    p.at(l, "t") = sde.t[l];
    put("", sde, l);
    if (st.samples > 0) put("mc_", mc, l);
  }
  p.settings = {
      {"engine", "shaped-sde"},
      {"model", to_string(st.model)},
      {"network",
       st.model == ShapedModel::Mlp
           ? "h' = W phi_s(h)/sqrt(n + c^2), phi_s(x) = x + (c/sqrt n)|x| (docs/ode.md §3.1)"
           : "X' = lambda X + gamma A X W/sqrt(n), A = I + softmax(S/(tau0 sqrt n)) - 11^T/T (docs/ode.md §3.2)"},
      {"limit", "depth and width to infinity with t = l/n fixed (n = stack.width)"},
      {"t_final", sde.t.back()},
      {"shape_c", st.shape_c},
      {"gamma2", st.gamma2},
      {"tau0", st.tau0},
      {"key_dim", st.key_dim > 0 ? st.key_dim : spec.width},
      {"paths", st.paths},
      {"samples", st.samples},
      {"substeps", st.substeps},
      {"integrator", "Euler-Maruyama, Philox normals"},
      {"seed", st.seed},
      {"version", kVersion}};
  const std::vector<double> probs = {0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99};
  nlohmann::json last;
  last["probabilities"] = probs;
  std::vector<double> rs = col(sde.rho, L), qs;
  for (double pr : probs) qs.push_back(quantile(rs, pr));
  last["sde_rho_quantiles"] = qs;
  if (st.samples > 0) {
    std::vector<double> rm = col(mc.rho, L), qm;
    for (double pr : probs) qm.push_back(quantile(rm, pr));
    last["mc_rho_quantiles"] = qm;
    KsResult ks = ks_two_sample(rs, rm);
    last["ks_D"] = ks.D;
    last["ks_p"] = ks.p;
  }
  const auto diverged = static_cast<long>(sde.rho.rows()) - static_cast<long>(rs.size());
  if (diverged > 0)
    p.warnings.push_back(fmt::format("{} of {} SDE paths diverged before the last layer (left out of the statistics)",
                                     diverged, st.paths));
  last["sde_paths_finite"] = rs.size();
  p.extras["last_layer"] = last;
  if (progress) report_progress(progress, 1.0, "done", "shaped-sde");
  return p;
}

}  // namespace sigprop::theory
