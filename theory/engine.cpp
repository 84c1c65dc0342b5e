#include "theory/engine.hpp"

#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/metrics.hpp"
#include "sigprop/version.hpp"
#include "theory/gauss.hpp"
#include "theory/meanfield.hpp"

namespace sigprop::theory {
namespace {

// What the backward pass needs from one half-block  Y = post( lam X + a F(pre(X)) ).
struct HalfTape {
  Branch branch;
  Eigen::VectorXd d_pre;   // pre-norm scales 1/sqrt(K_tt + eps) (empty: no pre-norm)
  double pre_gain2 = 1.0;  // extra variance factor of the pre-transform (1/l for LayerNorm Scaling)
  Eigen::MatrixXd Kz;      // kernel at the branch input
  Eigen::MatrixXd Kd;      // E[phi'(u)phi'(u)^T] (mlp, dense)
  Eigen::VectorXd d_post;  // post-norm scales (empty: no post-norm)
  double lam2 = 1.0;       // skip weight squared (0 without residual)
  double a2 = 1.0;         // branch scale squared
};

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

// E[phi(u)phi(u)^T] and E[phi'(u)phi'(u)^T] for u ~ N(0, Ku), entry by entry.
void act_kernels(const ActKernel& ak, const Eigen::MatrixXd& Ku, Eigen::MatrixXd& Kphi, Eigen::MatrixXd& Kd) {
  const auto T = Ku.rows();
  Kphi.resize(T, T);
  Kd.resize(T, T);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s <= t; ++s) {
      KernelPair kp = ak.eval(Ku(t, t), Ku(s, s), Ku(t, s));
      Kphi(t, s) = Kphi(s, t) = kp.k;
      Kd(t, s) = Kd(s, t) = kp.kd;
    }
}

}  // namespace

Eigen::MatrixXd input_kernel(const StackSpec& spec) {
  const int T = spec.tokens;
  Eigen::MatrixXd K = Eigen::MatrixXd::Constant(T, T, spec.q0 * spec.rho0);
  K.diagonal().setConstant(spec.q0);
  return K;
}

KernelTrace kernel_recursion(const StackSpec& spec, const TheorySettings& st) {
  spec.validate();
  if (spec.weights != WeightDist::Gaussian)
    throw ConfigError("init.weights: the theory engine implements Gaussian weights only, got \"" +
                      to_string(spec.weights) +
                      "\" (orthogonal weights are implemented by `sigprop spectrum` for dense stacks)");
  const int L = spec.depth, T = spec.tokens;
  const ActKernel ak(spec.activation, st.quad_order);
  std::unique_ptr<AttentionKernel> attn;
  if (spec.has_attn()) attn = std::make_unique<AttentionKernel>(spec, st.attn);
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
  Eigen::MatrixXd Kphi;
  for (int l = 1; l <= L; ++l) {
    Eigen::VectorXd c = K.diagonal();  // cross kernel with X_{l-1} starts as its own diagonal
    const HalfParams hp = half_params(spec, l);
    for (Branch br : halves) {
      HalfTape h;
      h.branch = br;
      h.lam2 = hp.lam * hp.lam;
      h.a2 = hp.a * hp.a;
      // Branch input Z = pre(X).
      if (hp.pre) {
        h.d_pre = norm_scales(K, spec.norm_eps);
        h.pre_gain2 = hp.pre_gain * hp.pre_gain;  // 1/l for LayerNorm Scaling (Sun et al. 2025)
        h.Kz = h.pre_gain2 * scale2(K, h.d_pre);
      } else {
        h.Kz = K;
      }
      // Branch output kernel; every branch ends in a fresh zero-mean matrix (W_O, W_2, W),
      // so it is uncorrelated with X: cross terms vanish in both directions.
      Eigen::MatrixXd KF;
      switch (br) {
        case Branch::Attn:
          KF = (sw2 * sw2) * attn->forward(h.Kz);
          break;
        case Branch::Mlp: {
          Eigen::MatrixXd Ku = (sw2 * h.Kz).array() + spec.sigma_b2;
          act_kernels(ak, Ku, Kphi, h.Kd);
          KF = (sw2 * Kphi).array() + spec.sigma_b2;
          break;
        }
        case Branch::Dense: {
          act_kernels(ak, h.Kz, Kphi, h.Kd);
          KF = (sw2 * Kphi).array() + spec.sigma_b2;
          break;
        }
      }
      K = h.lam2 * K + h.a2 * KF;
      c *= std::sqrt(h.lam2);
      if (hp.post) {
        h.d_post = norm_scales(K, spec.norm_eps);
        K = scale2(K, h.d_post);
        c = c.cwiseProduct(h.d_post);
      }
      tape[l].push_back(std::move(h));
    }
    if (!K.allFinite()) {
      tr.first_nonfinite = l;
      tr.K[l] = K;
      return tr;  // later layers stay NaN; the backward pass needs every layer
    }
    tr.K[l] = K;
    tr.C[l] = c;
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
          Gb = attn->backward(h.Kz, G, sw2 * sw2);
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
    if (!G.allFinite()) {
      if (tr.first_nonfinite < 0) tr.first_nonfinite = l - 1;
      tr.G[l - 1] = G;
      return tr;
    }
    tr.G[l - 1] = G;
  }
  return tr;
}

namespace {

void fill_metrics(const StackSpec& spec, const KernelTrace& tr, Profile& p) {
  for (int l = 0; l <= spec.depth; ++l) {
    if (tr.K[l].allFinite()) {
      StateMetrics m = state_metrics_from_kernel(tr.K[l]);
      p.at(l, "q") = m.q;
      p.at(l, "rho") = m.rho;
      p.at(l, "res") = m.res;
      p.at(l, "eff_rank") = m.eff_rank;
    }
    if (l > 0 && tr.K[l].allFinite() && tr.K[l - 1].allFinite() && tr.C[l].allFinite()) {
      StepMetrics s = step_metrics_from_kernels(tr.K[l - 1], tr.K[l], tr.C[l].asDiagonal());
      p.at(l, "update_ratio") = s.update_ratio;
      p.at(l, "ang_dist") = s.ang_dist;
    }
    if (tr.G[l].allFinite()) p.at(l, "grad_var") = tr.G[l].trace() / spec.tokens;
  }
}

}  // namespace

Profile TheoryEngine::run(const StackSpec& spec) {
  spec.validate();
  if (st_.error_batches == 1 || st_.error_batches < 0)
    throw ConfigError("theory error batches must be 0 (off) or >= 2");
  const bool sampled = spec.has_attn() && spec.qk_scale == QkScale::InvSqrtDh && spec.sigma_qk2 > 0;
  std::vector<std::string> cols = metric_names();
  if (sampled && st_.error_batches > 0)
    for (auto& m : metric_names()) cols.push_back(m + "_se");
  Profile p = Profile::make(spec, name(), cols);
  p.settings = {{"engine", "theory"},
                {"limit", "infinite width; attention: d_h -> inf then H -> inf"},
                {"quad_order", st_.quad_order},
                {"activation_kernel", ActKernel(spec.activation, 2).exact() ? "closed form" : "Gauss-Hermite"},
                {"version", kVersion}};
  if (spec.has_attn()) {
    if (sampled)
      p.settings["attention"] = {{"method", "Monte Carlo over Gaussian logits, antithetic, common random numbers"},
                                 {"samples", st_.attn.samples + st_.attn.samples % 2},
                                 {"seed", st_.attn.seed},
                                 {"error_batches", st_.error_batches}};
    else
      p.settings["attention"] = {{"method", "uniform (exact)"}};
  }

  KernelTrace tr = kernel_recursion(spec, st_);
  fill_metrics(spec, tr, p);
  if (tr.first_nonfinite >= 0)
    p.warnings.push_back(
        fmt::format("non-finite kernel first at layer {}: the recursion diverged (overflow); "
                    "later layers are null",
                    tr.first_nonfinite));

  if (sampled && st_.error_batches > 0) {
    // Batch means: B independent recursions on disjoint slices of the same draws.
    const int B = st_.error_batches;
    const int per = std::max(2, (st_.attn.samples / B) & ~1);
    std::vector<Profile> batches;
    for (int b = 0; b < B; ++b) {
      TheorySettings sb = st_;
      sb.attn.samples = per;
      sb.attn.first_sample = st_.attn.first_sample + b * per;
      sb.error_batches = 0;
      Profile pb = Profile::make(spec, name(), metric_names());
      fill_metrics(spec, kernel_recursion(spec, sb), pb);
      batches.push_back(std::move(pb));
    }
    for (int l = 0; l <= spec.depth; ++l)
      for (auto& m : metric_names()) {
        double mean = 0, m2 = 0;
        for (auto& pb : batches) mean += pb.at(l, m);
        mean /= B;
        for (auto& pb : batches) m2 += (pb.at(l, m) - mean) * (pb.at(l, m) - mean);
        // Each batch has B times fewer draws, so the full estimate's SE is sd / sqrt(B).
        p.at(l, m + "_se") = std::sqrt(m2 / (B - 1)) / std::sqrt(static_cast<double>(B));
      }
  }

  if (spec.blocks == Blocks::Dense && !spec.residual && spec.norm == Norm::None) {
    DenseMeanField mf = dense_mean_field(spec.activation, spec.sigma_w2, spec.sigma_b2, st_.quad_order);
    p.extras["mean_field"] = to_json(mf);
  }
  return p;
}

}  // namespace sigprop::theory
