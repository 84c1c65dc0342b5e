#include "theory/continuum.hpp"
#include "theory/ode_limits.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <boost/numeric/odeint.hpp>

#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/metrics.hpp"
#include "sigprop/version.hpp"
#include "theory/gauss.hpp"

namespace sigprop::theory {

namespace odeint = boost::numeric::odeint;
using State = std::vector<double>;

double continuum_a02(const StackSpec& spec) {
  spec.validate();
  if (spec.branch_scale.kind != BranchScaleKind::InvSqrtL && spec.branch_scale.kind != BranchScaleKind::InvSqrt2L)
    throw ConfigError(fmt::format(
        "stack.branch_scale = \"{}\": the depth continuum needs a = a0/sqrt(L), i.e. \"1/sqrt(L)\" or \"1/sqrt(2L)\"",
        spec.branch_scale.str()));
  if (spec.norm != Norm::Pre && spec.norm != Norm::None)
    throw ConfigError(
        fmt::format("stack.norm = \"{}\": the depth continuum is implemented for norm = \"pre\" or \"none\" "
                    "(post-norms renormalise every block; lns multiplies the branch by 1/sqrt(l) = 1/sqrt(tau L), "
                    "which vanishes as L grows)",
                    to_string(spec.norm)));
  if (!spec.residual) throw ConfigError("stack.residual = false: a stack without skips has no depth continuum");
  return spec.branch_scale.kind == BranchScaleKind::InvSqrtL ? 1.0 : 0.5;  // L a^2
}

struct ContinuumField::Impl {
  StackSpec spec;
  double a02 = 1;
  bool pre = false;
  std::vector<Branch> halves;
  ActKernel ak;
  std::unique_ptr<AttentionKernel> attn;

  Impl(const StackSpec& s, const ContinuumSettings& st) : spec(s), ak(s.activation, st.quad_order) {
    a02 = continuum_a02(s);
    pre = half_params(s, 1).pre;
    halves = halves_of(s);
    if (s.has_attn()) attn = std::make_unique<AttentionKernel>(s, st.attn);
  }

  // The pre-transform's per-token scales (empty without a pre-norm): LayerNorm and RMSNorm
  // both divide token t by sqrt(K_tt + eps) at infinite width (docs/theory.md, Norms).
  Eigen::VectorXd pre_scales(const Eigen::MatrixXd& K) const {
    if (!pre) return {};
    Eigen::VectorXd d(K.rows());
    for (Eigen::Index t = 0; t < K.rows(); ++t) d(t) = 1.0 / std::sqrt(K(t, t) + spec.norm_eps);
    return d;
  }

  void act(const Eigen::MatrixXd& Ku, Eigen::MatrixXd* Kphi, Eigen::MatrixXd* Kd) const {
    const auto T = Ku.rows();
    if (Kphi) Kphi->resize(T, T);
    if (Kd) Kd->resize(T, T);
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index s = 0; s <= t; ++s) {
        KernelPair kp = ak.eval(Ku(t, t), Ku(s, s), Ku(t, s));
        if (Kphi) (*Kphi)(t, s) = (*Kphi)(s, t) = kp.k;
        if (Kd) (*Kd)(t, s) = (*Kd)(s, t) = kp.kd;
      }
  }

  // sum_h F_h(pre(K)): the same branch maps as theory/engine.cpp's kernel_recursion (no DeepNorm
  // beta here: deepnorm is a post-norm and has no continuum limit).
  Eigen::MatrixXd forward(const Eigen::MatrixXd& K) const {
    const double sw2 = spec.sigma_w2;
    const Eigen::VectorXd d = pre_scales(K);
    const Eigen::MatrixXd Kz = d.size() ? Eigen::MatrixXd(d.asDiagonal() * K * d.asDiagonal()) : K;
    Eigen::MatrixXd out = Eigen::MatrixXd::Zero(K.rows(), K.cols());
    Eigen::MatrixXd Kphi;
    for (Branch br : halves) {
      switch (br) {
        case Branch::Attn:
          out += (sw2 * sw2) * attn->forward(Kz);
          break;
        case Branch::Mlp: {
          Eigen::MatrixXd Ku = (sw2 * Kz).array() + spec.sigma_b2;
          act(Ku, &Kphi, nullptr);
          out += Eigen::MatrixXd((sw2 * Kphi).array() + spec.sigma_b2);
          break;
        }
        case Branch::Dense:
          act(Kz, &Kphi, nullptr);
          out += Eigen::MatrixXd((sw2 * Kphi).array() + spec.sigma_b2);
          break;
      }
    }
    return a02 * out;
  }

  // -sum_h pre_backward(B_h(G)) at kernel K (gradient independence, Yang 2019; the
  // O(d^-1/2) norm-projection terms vanish as in the theory engine).
  Eigen::MatrixXd backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G) const {
    const double sw2 = spec.sigma_w2;
    const Eigen::VectorXd d = pre_scales(K);
    const Eigen::MatrixXd Kz = d.size() ? Eigen::MatrixXd(d.asDiagonal() * K * d.asDiagonal()) : K;
    Eigen::MatrixXd out = Eigen::MatrixXd::Zero(K.rows(), K.cols());
    Eigen::MatrixXd Kd;
    for (Branch br : halves) {
      Eigen::MatrixXd Gb;
      switch (br) {
        case Branch::Attn:
          Gb = attn->backward(Kz, G, sw2 * sw2);
          break;
        case Branch::Mlp: {
          Eigen::MatrixXd Ku = (sw2 * Kz).array() + spec.sigma_b2;
          act(Ku, nullptr, &Kd);
          Gb = (sw2 * sw2) * G.cwiseProduct(Kd);
          break;
        }
        case Branch::Dense:
          act(Kz, nullptr, &Kd);
          Gb = sw2 * G.cwiseProduct(Kd);
          break;
      }
      if (d.size()) Gb = d.asDiagonal() * Gb * d.asDiagonal();
      out += Gb;
    }
    return -a02 * out;
  }
};

ContinuumField::ContinuumField(const StackSpec& spec, const ContinuumSettings& st)
    : impl_(std::make_shared<Impl>(spec, st)) {}
Eigen::MatrixXd ContinuumField::forward(const Eigen::MatrixXd& K) const {
  return impl_->forward(K);
}
Eigen::MatrixXd ContinuumField::backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G) const {
  return impl_->backward(K, G);
}

namespace {

using CMap = Eigen::Map<const Eigen::MatrixXd>;
using Map = Eigen::Map<Eigen::MatrixXd>;

void check_grid(const std::vector<double>& tau) {
  if (tau.size() < 2 || tau.front() != 0.0 || tau.back() != 1.0)
    throw ConfigError("continuum: the tau grid must start at 0, end at 1 and have at least 2 points");
  for (size_t i = 1; i < tau.size(); ++i)
    if (!(tau[i] > tau[i - 1])) throw ConfigError("continuum: the tau grid must be strictly increasing");
}

}  // namespace

ContinuumTrace continuum_kernels(const StackSpec& spec, const ContinuumSettings& st, const std::vector<double>& tau,
                                 const ProgressFn& progress) {
  check_grid(tau);
  check_tolerances(st.abs_tol, st.rel_tol, "continuum");
  if (st.max_evals < 1) throw ConfigError("continuum: max_evals must be >= 1");
  const std::string hint = "loosen abs_tol/rel_tol or raise max_evals";
  // Memory: K, G and dK at every requested depth, and the integrators' stages (~20 T x T).
  require_memory(sat_mul({sat_add({sat_mul({3, static_cast<std::uint64_t>(tau.size())}), 20}),
                          static_cast<std::uint64_t>(spec.tokens), static_cast<std::uint64_t>(spec.tokens), 8}),
                 "the continuum ODE", fmt::format("stack.tokens = {} (T x T kernels) and {} output depths",
                                                  spec.tokens, tau.size()));
  const ContinuumField field(spec, st);
  const int T = spec.tokens;
  const auto TT = static_cast<Eigen::Index>(T) * T;
  ContinuumTrace tr;
  tr.tau = tau;
  tr.K.resize(tau.size());
  tr.G.resize(tau.size());
  tr.dK.resize(tau.size());

  Eigen::MatrixXd K0 = Eigen::MatrixXd::Constant(T, T, spec.q0 * spec.rho0);
  K0.diagonal().setConstant(spec.q0);

  // Forward: dK/dtau = F(K). The kernel map is symmetric, so the full T x T state stays symmetric.
  State x(K0.data(), K0.data() + TT);
  auto fwd = [&](const State& s, State& ds, double) {
    count_eval(tr.forward_rhs_calls, st.max_evals, "continuum (forward)", hint);
    Map(ds.data(), T, T) = field.forward(CMap(s.data(), T, T));
  };
  auto obs_f = [&](const State& s, double t) {
    auto i = static_cast<size_t>(std::lower_bound(tau.begin(), tau.end(), t) - tau.begin());
    tr.K.at(i) = CMap(s.data(), T, T);
    if (progress) report_progress(progress, 0.5 * t, fmt::format("forward tau = {:.3f}", t), "continuum");
  };
  const bool sampled = spec.has_attn() && !attention_uniform(spec, st.attn);  // as the AttentionKernel
  if (sampled && st.fixed_steps < 1) throw ConfigError("continuum: fixed_steps must be >= 1");
  // Adaptive Dormand-Prince for smooth fields; fixed-step RK4 (step 1/fixed_steps, shortened to
  // land on every output point) for the sampled attention field, whose Monte Carlo estimate
  // jumps at its noise level where the eigenbasis of K changes.
  auto integrate = [&](auto& system, State& s, const std::vector<double>& times, double dt, auto& observer) {
    if (sampled)
      odeint::integrate_times(odeint::runge_kutta4<State>(), system, s, times.begin(), times.end(), dt, observer);
    else
      odeint::integrate_times(odeint::make_dense_output(st.abs_tol, st.rel_tol, odeint::runge_kutta_dopri5<State>()),
                              system, s, times.begin(), times.end(), dt, observer);
  };
  const double dt0 = sampled ? 1.0 / st.fixed_steps : std::min(1e-3, tau[1] - tau[0]);
  integrate(fwd, x, tau, dt0, obs_f);

  // Backward: integrate (K, G) together from tau = 1 down to 0; K retraces the forward solution
  // (the roundtrip error below measures how well), so G sees K(tau) without interpolation.
  State y(2 * TT);
  std::copy(x.begin(), x.end(), y.begin());
  Map(y.data() + TT, T, T) = Eigen::MatrixXd::Identity(T, T);
  auto bwd = [&](const State& s, State& ds, double) {
    count_eval(tr.backward_rhs_calls, st.max_evals, "continuum (backward)", hint);
    CMap K(s.data(), T, T), G(s.data() + TT, T, T);
    Map(ds.data(), T, T) = field.forward(K);
    Map(ds.data() + TT, T, T) = field.backward(K, G);
  };
  Eigen::MatrixXd Kback0;
  auto obs_b = [&](const State& s, double t) {
    auto i = static_cast<size_t>(std::lower_bound(tau.begin(), tau.end(), t) - tau.begin());
    tr.G.at(i) = CMap(s.data() + TT, T, T);
    if (i == 0) Kback0 = CMap(s.data(), T, T);
    if (progress) report_progress(progress, 1.0 - 0.5 * t, fmt::format("backward tau = {:.3f}", t), "continuum");
  };
  std::vector<double> rtau(tau.rbegin(), tau.rend());
  integrate(bwd, y, rtau, -dt0, obs_b);
  tr.roundtrip_error = (Kback0 - K0).cwiseAbs().maxCoeff() / K0.cwiseAbs().maxCoeff();
  for (size_t i = 0; i < tau.size(); ++i) tr.dK[i] = field.forward(tr.K[i]);
  return tr;
}

Profile ContinuumEngine::run(const StackSpec& spec) {
  const double a02 = continuum_a02(spec);
  const int L = spec.depth;
  std::vector<double> tau(L + 1);
  for (int l = 0; l <= L; ++l) tau[l] = static_cast<double>(l) / L;
  tau[L] = 1.0;
  std::vector<std::string> cols = metric_names();
  cols.push_back("tau");
  Profile p = Profile::make(spec, name(), cols);
  ContinuumTrace tr = continuum_kernels(spec, st_, tau, progress_callback());
  const bool sampled = spec.has_attn() && !attention_uniform(spec, st_.attn);
  p.settings = {{"engine", "continuum"},
                {"limit", "infinite width, then depth L -> infinity with branch scale a0/sqrt(L) (tau = l/L)"},
                {"a0_squared", a02},
                {"integrator", sampled ? "Boost.Odeint runge_kutta4, fixed step (sampled attention field)"
                                       : "Boost.Odeint runge_kutta_dopri5, dense output"},
                {"abs_tol", st_.abs_tol},
                {"rel_tol", st_.rel_tol},
                {"fixed_steps", sampled ? nlohmann::json(st_.fixed_steps) : nlohmann::json(nullptr)},
                {"rhs_calls_forward", tr.forward_rhs_calls},
                {"rhs_calls_backward", tr.backward_rhs_calls},
                {"kernel_roundtrip_error", tr.roundtrip_error},
                {"quad_order", st_.quad_order},
                {"step_metrics", "update_ratio, ang_dist: leading order in 1/L for the spec's depth"},
                {"version", kVersion}};
  if (spec.has_attn())
    p.settings["attention"] =
        sampled ? nlohmann::json{{"method", "Monte Carlo over Gaussian logits, common random numbers (as theory)"},
                                 {"samples", st_.attn.samples + st_.attn.samples % 2},
                                 {"seed", st_.attn.seed}}
                : nlohmann::json{{"method", "uniform (exact)"}};
  for (int l = 0; l <= L; ++l) {
    p.at(l, "tau") = tau[l];
    if (tr.K[l].allFinite()) {
      StateMetrics m = state_metrics_from_kernel(tr.K[l]);
      p.at(l, "q") = m.q;
      p.at(l, "rho") = m.rho;
      p.at(l, "res") = m.res;
      p.at(l, "eff_rank") = m.eff_rank;
    }
    if (l > 0 && tr.K[l - 1].allFinite() && tr.dK[l - 1].allFinite()) {
      // One block adds dK/L; the branch is uncorrelated with the stream, so C = diag(K_{l-1}).
      const Eigen::MatrixXd& Kp = tr.K[l - 1];
      Eigen::MatrixXd Kc = Kp + tr.dK[l - 1] / L;
      Eigen::MatrixXd C = Kp.diagonal().asDiagonal();
      StepMetrics s = step_metrics_from_kernels(Kp, Kc, C);
      p.at(l, "update_ratio") = s.update_ratio;
      p.at(l, "ang_dist") = s.ang_dist;
    }
    if (tr.G[l].allFinite()) p.at(l, "grad_var") = tr.G[l].trace() / spec.tokens;
  }
  for (int l = 0; l <= L; ++l)
    if (!tr.K[l].allFinite() || !tr.G[l].allFinite()) {
      p.warnings.push_back(fmt::format("non-finite kernel first at layer {} (tau = {})", l, tau[l]));
      break;
    }
  return p;
}

}  // namespace sigprop::theory
