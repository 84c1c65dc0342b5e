#include "sim/jacobian.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <memory>
#include <numbers>
#include <mutex>
#include <thread>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "core/activation.hpp"
#include "core/parallel.hpp"
#include "core/stats.hpp"
#include "core/blocks.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/rng.hpp"
#include "sigprop/version.hpp"
#include "sim/reference.hpp"

namespace sigprop::sim {
namespace {

using Mat = Eigen::MatrixXd;
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The spec with Gaussian weights: the input X_0 does not depend on init.weights, and the
// reference stack (which draws Gaussian weights only) supplies it.
StackSpec gaussian_twin(StackSpec s) {
  s.weights = WeightDist::Gaussian;
  return s;
}

bool explicit_ok(const StackSpec& s) {
  return s.blocks == Blocks::Dense && s.norm == Norm::None;
}

// Dense layer l of sample i: W (d, d) row-major, entry (i, j) = normal i d + j of the Wd
// stream (sim/reference.hpp), and b (d). Orthogonal: Haar Q from the same normals.
void dense_weights(const StackSpec& s, uint64_t seed, int sample, int l, RowMat& W, Eigen::VectorXd& b) {
  const int d = s.width;
  const double beta = weight_beta(s);
  W.resize(d, d);
  NormalStream(seed, stream_id(static_cast<uint64_t>(sample), static_cast<uint64_t>(l),
                               static_cast<uint64_t>(StreamKind::Wd), 0))
      .fill(W.data(), static_cast<size_t>(d) * d);
  if (s.weights == WeightDist::Gaussian) {
    W *= beta * std::sqrt(s.sigma_w2 / d);
  } else {
    // G = Q R with R's diagonal made positive gives a Haar-distributed Q (Mezzadri 2007, §5).
    Mat G = W;
    Eigen::HouseholderQR<Mat> qr(G);
    Mat Q = qr.householderQ();
    const Mat& R = qr.matrixQR();
    for (int j = 0; j < d; ++j)
      if (R(j, j) < 0) Q.col(j) *= -1.0;
    W = beta * std::sqrt(s.sigma_w2) * Q;
  }
  b.resize(d);
  NormalStream(seed, stream_id(static_cast<uint64_t>(sample), static_cast<uint64_t>(l),
                               static_cast<uint64_t>(StreamKind::Bd), 0))
      .fill(b.data(), static_cast<size_t>(d));
  b *= std::sqrt(s.sigma_b2);
}

// tau(P P^T) and tau((P P^T)^2) of an n x n matrix P (n = its rows).
void traces(const Mat& P, double& m1, double& m2) {
  const double n = static_cast<double>(P.rows());
  m1 = P.squaredNorm() / n;
  Mat A = Mat::Zero(P.cols(), P.cols());
  A.selfadjointView<Eigen::Lower>().rankUpdate(P.transpose());  // A = P^T P
  // |A|_F^2 from the lower triangle: diagonal once, off-diagonal twice.
  double s = A.diagonal().squaredNorm();
  for (Eigen::Index j = 0; j < A.cols(); ++j)
    for (Eigen::Index i = j + 1; i < A.rows(); ++i) s += 2.0 * A(i, j) * A(i, j);
  m2 = s / n;
}

std::vector<double> squared_singular_values(const Mat& P) {
  Eigen::BDCSVD<Mat> svd(P);  // singular values only
  const Eigen::VectorXd& sv = svd.singularValues();
  std::vector<double> out(sv.size());
  for (Eigen::Index i = 0; i < sv.size(); ++i) out[i] = sv[i] * sv[i];
  std::sort(out.begin(), out.end());
  return out;
}

int token_of(const StackSpec& s, const JacobianSettings& st) {
  return st.token < 0 ? s.tokens - 1 : st.token;
}

// Explicit method: per token, P_l = P_{l-1} (lam I + a D_l W_l) in the row convention
// x_l = lam x_{l-1} + a (phi(x_{l-1}) W_l + b_l).
JacobianSample explicit_sample(const StackSpec& s, const JacobianSettings& st, int sample) {
  const int L = s.depth, T = s.tokens, d = s.width;
  const std::vector<double> X0 = ReferenceStack(gaussian_twin(s), st.seed).input(sample);
  std::vector<int> toks;
  if (st.map == "full")
    for (int t = 0; t < T; ++t) toks.push_back(t);
  else
    toks.push_back(token_of(s, st));
  const double nt = static_cast<double>(toks.size());
  JacobianSample r;
  r.m1.assign(L + 1, 0.0);
  r.m2.assign(L + 1, 0.0);
  std::vector<Mat> P(toks.size(), Mat::Identity(d, d));
  std::vector<Eigen::RowVectorXd> x(toks.size());
  for (size_t k = 0; k < toks.size(); ++k)
    x[k] = Eigen::Map<const Eigen::RowVectorXd>(X0.data() + static_cast<size_t>(toks[k]) * d, d);
  r.m1[0] = r.m2[0] = 1.0;
  RowMat W;
  Eigen::VectorXd b;
  Eigen::VectorXd D(d);
  Eigen::RowVectorXd act(d);
  const hd::Act h_act = to_hd(s.activation);
  for (int l = 1; l <= L; ++l) {
    const HalfParams hp = half_params(s, l);
    dense_weights(s, st.seed, sample, l, W, b);
    for (size_t k = 0; k < toks.size(); ++k) {
      for (int j = 0; j < d; ++j) hd::act_forward_derivative(h_act, x[k][j], &act[j], &D[j]);
      Mat PD = P[k] * D.asDiagonal();
      if (hp.lam != 0.0)
        P[k] = hp.lam * P[k] + hp.a * (PD * W);
      else
        P[k] = hp.a * (PD * W);
      x[k] = hp.lam * x[k] + hp.a * (act * W + b.transpose());
      double m1, m2;
      traces(P[k], m1, m2);
      r.m1[l] += m1 / nt;
      r.m2[l] += m2 / nt;
    }
  }
  for (auto& p : P) {
    std::vector<double> v = squared_singular_values(p);
    r.sv2.insert(r.sv2.end(), v.begin(), v.end());
  }
  std::sort(r.sv2.begin(), r.sv2.end());
  return r;
}

// Backward method: row i of block l's Jacobian (column convention, flattened (T d) streams)
// is J_l^T e_i from the backend's hand-written backward pass.
JacobianSample backward_sample(const StackSpec& s, const JacobianSettings& st, int sample) {
  const int L = s.depth, T = s.tokens, d = s.width, n = T * d;
  const auto backend = std::make_unique<ReferenceStack>(s, st.seed);
  std::vector<std::vector<double>> X(L + 1);
  X[0] = backend->input(sample);
  for (int l = 1; l <= L; ++l) X[l] = backend->block_forward(sample, l, X[l - 1]);
  const bool full = st.map == "full";
  const int t = token_of(s, st);
  JacobianSample r;
  r.m1.assign(L + 1, 0.0);
  r.m2.assign(L + 1, 0.0);
  r.m1[0] = r.m2[0] = 1.0;
  Mat P = Mat::Identity(n, n), J(n, n);
  std::vector<double> e(n, 0.0);
  for (int l = 1; l <= L; ++l) {
    for (int i = 0; i < n; ++i) {
      e[i] = 1.0;
      const std::vector<double> row = backend->block_backward(sample, l, X[l - 1], e);
      e[i] = 0.0;
      for (int j = 0; j < n; ++j) J(i, j) = row[j];
    }
    P = J * P;
    if (full)
      traces(P, r.m1[l], r.m2[l]);
    else
      traces(P.block(static_cast<Eigen::Index>(t) * d, static_cast<Eigen::Index>(t) * d, d, d), r.m1[l], r.m2[l]);
  }
  r.sv2 = full ? squared_singular_values(P)
               : squared_singular_values(
                     P.block(static_cast<Eigen::Index>(t) * d, static_cast<Eigen::Index>(t) * d, d, d));
  return r;
}

}  // namespace

std::string resolve_jacobian_method(const StackSpec& spec, const JacobianSettings& st) {
  validate_for_simulation(gaussian_twin(spec));  // spec ranges and the 16-bit stream ids
  if (st.samples < 1 || st.samples > kMaxSamples)
    throw ConfigError(fmt::format("samples: must be in [1, {}], got {}", kMaxSamples, st.samples));
  if (st.threads < 0) throw ConfigError(fmt::format("threads: must be >= 0 (0 = all cores), got {}", st.threads));
  if (st.map != "token" && st.map != "full")
    throw ConfigError(fmt::format("map: expected \"token\" or \"full\", got \"{}\"", st.map));
  if (st.token < -1 || st.token >= spec.tokens)
    throw ConfigError(
        fmt::format("token: must be in [0, {}] (stack.tokens = {}) or -1 for the last, got {}", spec.tokens - 1,
                    spec.tokens, st.token));
  {
    // Memory: per sample in flight a few n x n products and their SVD (n = d, or T d for the
    // full map), plus every sample's moments per layer.
    using U = std::uint64_t;
    const U n = st.map == "full" ? sat_mul({static_cast<U>(spec.tokens), static_cast<U>(spec.width)})
                                 : static_cast<U>(spec.width);
    const U workers = static_cast<U>(resolve_threads(st.threads, st.samples));
    require_memory(sat_add({sat_mul({workers, 6, n, n, 8}),
                            sat_mul({static_cast<U>(st.samples), static_cast<U>(spec.depth) + 1, 32})}),
                   "the Jacobian spectrum",
                   fmt::format("stack.width = {}{}, samples = {} and the thread count", spec.width,
                               st.map == "full" ? fmt::format(" x stack.tokens = {} (map = full)", spec.tokens) : "",
                               st.samples));
  }
  std::string m = st.method;
  if (m == "auto") m = explicit_ok(spec) ? "explicit" : "backward";
  if (m == "explicit") {
    if (!explicit_ok(spec))
      throw ConfigError(fmt::format("method = explicit: needs stack.blocks = \"dense\" and stack.norm = \"none\", got "
                                    "\"{}\" and \"{}\"; use method = backward",
                                    to_string(spec.blocks), to_string(spec.norm)));
    return m;
  }
  if (m != "backward")
    throw ConfigError(fmt::format("method: expected \"auto\", \"explicit\" or \"backward\", got \"{}\"", m));
  if (spec.weights != WeightDist::Gaussian)
    throw ConfigError(fmt::format("init.weights: \"{}\" weights are implemented by the explicit method only (dense "
                                  "stacks with norm = \"none\"); the backward method uses the Gaussian backends",
                                  to_string(spec.weights)));
  const long n = static_cast<long>(spec.tokens) * spec.width;
  if (n > 2048)
    throw ConfigError(fmt::format("stack.width: the backward method builds the full (T d) x (T d) Jacobian, T d = {} "
                                  "exceeds 2048; lower stack.tokens or stack.width",
                                  n));
  validate_for_simulation(spec);
  return m;
}

JacobianSample jacobian_sample(const StackSpec& spec, const JacobianSettings& st, int sample) {
  const std::string m = resolve_jacobian_method(spec, st);
  return m == "explicit" ? explicit_sample(spec, st, sample) : backward_sample(spec, st, sample);
}

std::vector<double> histogram_density(const std::vector<double>& values, const std::vector<double>& grid) {
  const size_t n = grid.size();
  if (n < 2) throw ConfigError("grid: need at least 2 points");
  for (size_t i = 1; i < n; ++i)
    if (!(grid[i] > grid[i - 1])) throw ConfigError("grid: points must be increasing");
  std::vector<double> edges(n + 1);
  edges[0] = grid[0] - 0.5 * (grid[1] - grid[0]);
  for (size_t i = 1; i < n; ++i) edges[i] = 0.5 * (grid[i - 1] + grid[i]);
  edges[n] = grid[n - 1] + 0.5 * (grid[n - 1] - grid[n - 2]);
  std::vector<double> h(n, 0.0);
  for (double v : values) {
    if (!(v >= edges[0]) || !(v < edges[n])) continue;
    const size_t k = static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin()) - 1;
    h[k] += 1.0;
  }
  const double tot = static_cast<double>(values.size());
  for (size_t i = 0; i < n; ++i) h[i] /= tot * (edges[i + 1] - edges[i]);
  return h;
}

Profile jacobian_profile(const StackSpec& spec, const JacobianSettings& st, const std::vector<double>& grid,
                         std::vector<std::vector<double>>* sv2_out, const ProgressFn& progress) {
  const std::string method = resolve_jacobian_method(spec, st);
  const int N = st.samples, L = spec.depth;
  std::vector<JacobianSample> res(N);
  std::mutex progress_mutex;
  int done = 0;
  parallel_for(N, st.threads, [&](int i) {
    res[i] = method == "explicit" ? explicit_sample(spec, st, i) : backward_sample(spec, st, i);
    if (progress) {  // serialized, and never called again once it said stop (done < 0)
      std::lock_guard<std::mutex> lock(progress_mutex);
      if (done < 0) return;
      const int k = ++done;
      done = -1;  // until the callback returns
      report_progress(progress, static_cast<double>(k) / N, fmt::format("sample {}/{}", k, N), "spectrum");
      done = k;
    }
  });

  // Mean and standard error over samples, reduced in sample order (thread count cannot matter).
  auto mean_se = [](const std::vector<double>& v, double& mean, double& se) {
    const MeanSe r = sigprop::mean_se(v);
    mean = r.mean;
    se = r.se;
  };
  Profile p = Profile::make(spec, "spectrum-simulate", {"sv2_mean", "sv2_mean_se", "sv2_var", "sv2_var_se"});
  p.version = kVersion;
  bool warned = false;
  for (int l = 0; l <= L; ++l) {
    std::vector<double> m1(N), var(N);
    for (int i = 0; i < N; ++i) {
      m1[i] = res[i].m1[l];
      var[i] = res[i].m2[l] - res[i].m1[l] * res[i].m1[l];
    }
    double a, b, c, dd;
    mean_se(m1, a, b);
    mean_se(var, c, dd);
    p.at(l, "sv2_mean") = a;
    p.at(l, "sv2_mean_se") = b;
    p.at(l, "sv2_var") = c;
    p.at(l, "sv2_var_se") = dd;
    if (!warned && !(std::isfinite(a) && std::isfinite(c))) {
      p.warnings.push_back(fmt::format("non-finite Jacobian moment first at layer {}", l));
      warned = true;
    }
  }
  const int n_sv = st.map == "full" ? spec.tokens * spec.width : spec.width;
  p.settings = {{"engine", "spectrum-simulate"},
                {"width", spec.width},
                {"samples", N},
                {"seed", st.seed},
                {"map", st.map},
                {"token", st.map == "full" ? nlohmann::json(nullptr) : nlohmann::json(token_of(spec, st))},
                {"method", method},
                {"matrix_size", n_sv},
                {"weights", to_string(spec.weights)},
                {"svd", "Eigen BDCSVD"},
                {"rng", "Philox4x32-10 + Box-Muller; streams keyed by (sample, layer, matrix, head) as simulate"},
                {"version", kVersion}};
  if (!grid.empty()) {
    const size_t G = grid.size();
    std::vector<std::vector<double>> h(N);
    std::vector<double> atom(N);
    for (int i = 0; i < N; ++i) {
      h[i] = histogram_density(res[i].sv2, grid);
      // Numerically zero: a singular value below 1e-13 of the largest (BDCSVD's accuracy is ~eps sigma_max).
      const double zero = res[i].sv2.empty() ? 0.0 : 1e-26 * res[i].sv2.back();
      double z = 0;
      for (double v : res[i].sv2) z += v <= zero ? 1.0 : 0.0;
      atom[i] = z / static_cast<double>(res[i].sv2.size());
    }
    std::vector<double> dens(G), dens_se(G), col(N);
    for (size_t g = 0; g < G; ++g) {
      for (int i = 0; i < N; ++i) col[i] = h[i][g];
      mean_se(col, dens[g], dens_se[g]);
    }
    double am, ase;
    mean_se(atom, am, ase);
    p.extras["density"] = {{"layer", L},           {"x", grid},        {"density", dens}, {"density_se", dens_se},
                           {"atom0", am},          {"atom0_se", ase},  {"of", "squared singular values of J_L"},
                           {"binning", "bins centred on x, edges halfway between points"}};
  }
  if (sv2_out) {
    sv2_out->resize(N);
    for (int i = 0; i < N; ++i) (*sv2_out)[i] = std::move(res[i].sv2);
  }
  return p;
}

}  // namespace sigprop::sim
