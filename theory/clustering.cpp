#include "theory/clustering.hpp"
#include "theory/ode_limits.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <boost/numeric/odeint.hpp>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/rng.hpp"
#include "sigprop/version.hpp"

namespace sigprop::theory {

namespace odeint = boost::numeric::odeint;
using State = std::vector<double>;

AttnDynamics parse_attn_dynamics(const std::string& s) {
  if (s == "sa" || s == "SA") return AttnDynamics::SA;
  if (s == "usa" || s == "USA") return AttnDynamics::USA;
  throw ConfigError(fmt::format("variant: expected sa or usa, got \"{}\"", s));
}

Eigen::MatrixXd clustering_rhs(const Eigen::MatrixXd& X, double beta, AttnDynamics variant) {
  const Eigen::Index n = X.rows();
  const Eigen::MatrixXd P = X * X.transpose();  // <x_i, x_j>
  // Shifting the exponent by beta (the largest possible <x_i, x_j> on the sphere) keeps
  // e^{beta <.,.>} <= 1 for large beta; SA is invariant to it, USA gets the factor back.
  Eigen::MatrixXd W = (beta * (P.array() - 1.0)).exp().matrix();
  if (variant == AttnDynamics::SA) {
    for (Eigen::Index i = 0; i < n; ++i) W.row(i) /= W.row(i).sum();
  } else {
    W *= std::exp(beta) / static_cast<double>(n);
  }
  Eigen::MatrixXd V = W * X;  // row i: the attention output at x_i
  // Tangent projection P_{x_i} v = v - <x_i, v> x_i (|x_i| = 1 on the flow).
  Eigen::VectorXd c = (V.cwiseProduct(X)).rowwise().sum();
  return V - c.asDiagonal() * X;
}

double equiangular_rhs(double rho, int n, double beta, AttnDynamics variant) {
  // <dx_i/dt, x_k> = e^{beta rho} (1 - rho)(1 + (n - 1) rho) / Z for k != i (docs/ode.md §2), twice.
  const double num = 2.0 * (1.0 - rho) * (1.0 + (n - 1) * rho);
  if (variant == AttnDynamics::SA) {
    // e^{beta rho} / (e^beta + (n-1) e^{beta rho}) = 1 / (e^{beta (1 - rho)} + n - 1)
    return num / (std::exp(beta * (1.0 - rho)) + (n - 1));
  }
  return num * std::exp(beta * rho) / n;
}

Eigen::MatrixXd equiangular_start(int n, int d, double rho0) {
  if (n < 2) throw ConfigError("stack.tokens: the clustering flow needs at least 2 tokens");
  if (d < n)
    throw ConfigError(fmt::format("stack.width = {}: an equiangular start of {} tokens needs width >= tokens", d, n));
  if (!(rho0 > -1.0 / (n - 1)) || !(rho0 < 1.0))
    throw ConfigError(fmt::format("input.rho0 = {}: an equiangular start needs -1/(n-1) < rho0 < 1", rho0));
  Eigen::MatrixXd G = Eigen::MatrixXd::Constant(n, n, rho0);
  G.diagonal().setOnes();
  Eigen::MatrixXd Lc = G.llt().matrixL();
  Eigen::MatrixXd X = Eigen::MatrixXd::Zero(n, d);
  X.leftCols(n) = Lc;
  return X;
}

Eigen::MatrixXd random_start(int n, int d, double rho0, uint64_t seed) {
  if (n < 2) throw ConfigError("stack.tokens: the clustering flow needs at least 2 tokens");
  if (d < 2) throw ConfigError("stack.width: the clustering flow needs width >= 2");
  Eigen::MatrixXd G(d, n);  // column-major: column t is token t
  NormalStream(seed, stream_id(0xC1, 1)).fill(G.data(), static_cast<std::size_t>(G.size()));
  Eigen::VectorXd g(d);
  NormalStream(seed, stream_id(0xC1, 2)).fill(g.data(), static_cast<std::size_t>(d));
  Eigen::MatrixXd X = std::sqrt(1.0 - rho0) * G.transpose();
  X.rowwise() += std::sqrt(rho0) * g.transpose();
  for (Eigen::Index i = 0; i < n; ++i) X.row(i).normalize();
  return X;
}

ClusteringTrace clustering_flow(const Eigen::MatrixXd& X0, const ClusteringSettings& st, const ProgressFn& progress) {
  if (!(st.beta >= 0) || !std::isfinite(st.beta)) throw ConfigError("beta: must be finite and >= 0");
  if (!(st.t_end > 0) || !std::isfinite(st.t_end)) throw ConfigError("t_end: must be finite and > 0");
  if (st.points < 1) throw ConfigError("points: must be >= 1");
  check_tolerances(st.abs_tol, st.rel_tol, "clustering");
  if (st.max_evals < 1) throw ConfigError("clustering: max_evals must be >= 1");
  const std::string hint = fmt::format("shorten t_end = {}, loosen abs_tol/rel_tol or raise max_evals", st.t_end);
  const Eigen::Index n = X0.rows(), d = X0.cols();
  ClusteringTrace tr;
  for (int i = 0; i <= st.points; ++i) tr.t.push_back(st.t_end * i / st.points);
  tr.t.back() = st.t_end;

  // State: X stored row-major (token after token).
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  State x(static_cast<size_t>(n * d));
  Eigen::Map<RowMat>(x.data(), n, d) = X0;
  auto rhs = [&](const State& s, State& ds, double) {
    count_eval(tr.rhs_calls, st.max_evals, "clustering", hint);
    Eigen::Map<RowMat>(ds.data(), n, d) = clustering_rhs(Eigen::Map<const RowMat>(s.data(), n, d), st.beta, st.variant);
  };
  auto obs = [&](const State& s, double t) {
    if (progress) report_progress(progress, t / st.t_end, fmt::format("t = {:.4g}", t), "clustering");
    Eigen::MatrixXd X = Eigen::Map<const RowMat>(s.data(), n, d);
    Eigen::MatrixXd P = X * X.transpose();
    if (!P.allFinite()) {  // the flow overflowed: no value at this time (clustering_profile warns)
      for (auto* v : {&tr.rho, &tr.rho_min, &tr.rho_max, &tr.norm_dev}) v->push_back(std::nan(""));
      return;
    }
    double sum = 0, mn = std::numeric_limits<double>::infinity(), mx = -mn, dev = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      dev = std::max(dev, std::abs(std::sqrt(P(i, i)) - 1.0));
      for (Eigen::Index j = 0; j < n; ++j)
        if (i != j) {
          sum += P(i, j);
          mn = std::min(mn, P(i, j));
          mx = std::max(mx, P(i, j));
        }
    }
    tr.rho.push_back(sum / static_cast<double>(n * (n - 1)));
    tr.rho_min.push_back(mn);
    tr.rho_max.push_back(mx);
    tr.norm_dev.push_back(dev);
  };
  const double dt0 = std::min(1e-3, st.t_end / st.points);
  odeint::integrate_times(odeint::make_dense_output(st.abs_tol, st.rel_tol, odeint::runge_kutta_dopri5<State>()), rhs,
                          x, tr.t.begin(), tr.t.end(), dt0, obs);

  // The equiangular reduction, started from the mean pairwise inner product at t = 0.
  State r{tr.rho.front()};
  std::int64_t eq_calls = 0;
  auto rhs_eq = [&](const State& s, State& ds, double) {
    count_eval(eq_calls, st.max_evals, "clustering (equiangular reduction)", hint);
    ds[0] = equiangular_rhs(s[0], static_cast<int>(n), st.beta, st.variant);
  };
  auto obs_eq = [&](const State& s, double) { tr.rho_eq.push_back(s[0]); };
  odeint::integrate_times(odeint::make_dense_output(st.abs_tol, st.rel_tol, odeint::runge_kutta_dopri5<State>()),
                          rhs_eq, r, tr.t.begin(), tr.t.end(), dt0, obs_eq);
  return tr;
}

Profile clustering_profile(const StackSpec& spec, const ClusteringSettings& st, const ProgressFn& progress) {
  spec.validate();
  if (st.points < 1) throw ConfigError("points: must be >= 1");
  {
    // The particle state and its Dormand-Prince stages (~10 n x d), and per output time the
    // trace, the profile row and its JSON/CSV text (~512 bytes).
    using U = std::uint64_t;
    require_memory(sat_add({sat_mul({16, static_cast<U>(spec.tokens), static_cast<U>(spec.width), 8}),
                            sat_mul({static_cast<U>(st.points) + 1, 512})}),
                   "the clustering flow", fmt::format("points = {}, stack.tokens = {} and stack.width = {}", st.points,
                                                       spec.tokens, spec.width));
  }
  StackSpec s = spec;
  s.depth = st.points;
  const Eigen::MatrixXd X0 =
      st.equiangular ? equiangular_start(s.tokens, s.width, s.rho0) : random_start(s.tokens, s.width, s.rho0, st.seed);
  ClusteringTrace tr = clustering_flow(X0, st, progress);
  Profile p = Profile::make(s, "clustering", {"t", "rho", "rho_min", "rho_max", "rho_eq", "norm_dev"});
  p.settings = {{"engine", "clustering"},
                {"model",
                 "tokens on the unit sphere under self-attention dynamics with Q = K = V = I "
                 "(Geshkovski, Letrouit, Polyanskiy, Rigollet 2023)"},
                {"variant", st.variant == AttnDynamics::SA ? "SA" : "USA"},
                {"beta", st.beta},
                {"tokens", s.tokens},
                {"dimension", s.width},
                {"t_end", st.t_end},
                {"start", st.equiangular ? "equiangular (rho0)" : "random (MODEL.md input, projected on the sphere)"},
                {"seed", st.seed},
                {"integrator", "Boost.Odeint runge_kutta_dopri5, dense output"},
                {"abs_tol", st.abs_tol},
                {"rel_tol", st.rel_tol},
                {"rhs_calls", tr.rhs_calls},
                {"layer_column", "index of the output time t"},
                {"version", kVersion}};
  // Once a column is non-finite the flow has left double range: that time and every later one
  // is null (never a placeholder), and a warning names the first time.
  const std::vector<std::pair<const char*, std::vector<double>*>> cols{{"rho", &tr.rho},
                                                                      {"rho_min", &tr.rho_min},
                                                                      {"rho_max", &tr.rho_max},
                                                                      {"rho_eq", &tr.rho_eq},
                                                                      {"norm_dev", &tr.norm_dev}};
  for (auto& [name, v] : cols) {
    v->resize(static_cast<size_t>(st.points) + 1, std::nan(""));  // integrate_times may stop early
    for (size_t i = 0; i < v->size(); ++i)
      if (!std::isfinite((*v)[i])) {
        p.warnings.push_back(fmt::format("non-finite {} first at t = {} (output {} of {}): the {} integration overflowed "
                                         "(beta = {}); {} is null from there on",
                                         name, tr.t[i], i, st.points, st.variant == AttnDynamics::SA ? "SA" : "USA",
                                         st.beta, name));
        std::fill(v->begin() + static_cast<std::ptrdiff_t>(i), v->end(), std::nan(""));
        break;
      }
  }
  for (int i = 0; i <= st.points; ++i) {
    p.at(i, "t") = tr.t[i];
    p.at(i, "rho") = tr.rho[i];
    p.at(i, "rho_min") = tr.rho_min[i];
    p.at(i, "rho_max") = tr.rho_max[i];
    p.at(i, "rho_eq") = tr.rho_eq[i];
    p.at(i, "norm_dev") = tr.norm_dev[i];
  }
  return p;
}

}  // namespace sigprop::theory
