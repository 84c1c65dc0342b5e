#include "theory/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace sigprop::theory {

AttentionKernel::AttentionKernel(const StackSpec& spec, AttnSettings settings)
    : T_(spec.tokens),
      causal_(spec.mask == Mask::Causal),
      uniform_(spec.qk_scale == QkScale::InvDh || spec.sigma_qk2 == 0.0),
      sqk2_(spec.sigma_qk2),
      st_(settings) {
  if (st_.samples < 2) throw ConfigError("theory attention samples must be >= 2");
  if (st_.samples % 2) ++st_.samples;
}

Eigen::MatrixXd AttentionKernel::factor(const Eigen::MatrixXd& K) const {
  // Symmetric square root through the eigen-decomposition: K may be (numerically)
  // singular after rank collapse, where Cholesky fails.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K);
  Eigen::VectorXd ev = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return es.eigenvectors() * ev.asDiagonal();
}

void AttentionKernel::softmax_rows(Eigen::MatrixXd& S) const {
  for (int t = 0; t < T_; ++t) {
    int n = causal_ ? t + 1 : T_;
    double m = -std::numeric_limits<double>::infinity();
    for (int s = 0; s < n; ++s) m = std::max(m, S(t, s));
    double z = 0;
    for (int s = 0; s < n; ++s) {
      S(t, s) = std::exp(S(t, s) - m);
      z += S(t, s);
    }
    for (int s = 0; s < n; ++s) S(t, s) /= z;
    for (int s = n; s < T_; ++s) S(t, s) = 0;
  }
}

void AttentionKernel::draw(int pair, Eigen::MatrixXd& xi) const {
  NormalStream ns(st_.seed, static_cast<uint64_t>(st_.first_sample / 2 + pair));
  xi.resize(T_, T_);
  ns.fill(xi.data(), static_cast<size_t>(T_) * T_);
}

namespace {
// Uniform attention in O(T^2) instead of two T^3 products. Full averaging: A K A^T = mean(K) 11^T.
// Causal (A_ts = 1/(t+1), s <= t): (A K A^T)_ts = P_ts / ((t+1)(s+1)) with P the 2-D prefix sum of K,
// and (A^T G A)_ij = sum_{t>=i, s>=j} G_ts / ((t+1)(s+1)), a 2-D suffix sum.
Eigen::MatrixXd uniform_forward(const Eigen::MatrixXd& K, bool causal) {
  const auto T = K.rows();
  if (!causal) return Eigen::MatrixXd::Constant(T, T, K.mean());
  Eigen::MatrixXd P(T, T);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s < T; ++s)
      P(t, s) = K(t, s) + (t ? P(t - 1, s) : 0.0) + (s ? P(t, s - 1) : 0.0) - (t && s ? P(t - 1, s - 1) : 0.0);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index s = 0; s < T; ++s) P(t, s) /= static_cast<double>((t + 1) * (s + 1));
  return P;
}
Eigen::MatrixXd uniform_backward(const Eigen::MatrixXd& G, bool causal) {
  const auto T = G.rows();
  if (!causal) return Eigen::MatrixXd::Constant(T, T, G.mean());
  Eigen::MatrixXd S(T, T);
  for (Eigen::Index t = T - 1; t >= 0; --t)
    for (Eigen::Index s = T - 1; s >= 0; --s)
      S(t, s) = G(t, s) / static_cast<double>((t + 1) * (s + 1)) + (t + 1 < T ? S(t + 1, s) : 0.0) +
                (s + 1 < T ? S(t, s + 1) : 0.0) - (t + 1 < T && s + 1 < T ? S(t + 1, s + 1) : 0.0);
  return S;
}
}  // namespace

Eigen::MatrixXd AttentionKernel::forward(const Eigen::MatrixXd& K) const {
  if (uniform_) return uniform_forward(K, causal_);
  Eigen::MatrixXd L = std::sqrt(sqk2_) * factor(K);  // S = sigma_qk^2 F xi F^T, F F^T = K
  Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(T_, T_), xi, S;
  const int pairs = st_.samples / 2;
  for (int p = 0; p < pairs; ++p) {
    draw(p, xi);
    Eigen::MatrixXd base = L * xi * L.transpose();
    for (int sign : {1, -1}) {
      S = sign * base;
      softmax_rows(S);
      acc.noalias() += S * K * S.transpose();
    }
  }
  acc /= static_cast<double>(st_.samples);
  return 0.5 * (acc + acc.transpose());
}

Eigen::MatrixXd AttentionKernel::backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var) const {
  if (uniform_) return vo_var * uniform_backward(G, causal_);
  Eigen::MatrixXd L = std::sqrt(sqk2_) * factor(K);  // S = sigma_qk^2 F xi F^T, F F^T = K
  const Eigen::MatrixXd KK = K.cwiseProduct(K);
  const Eigen::MatrixXd W = G.cwiseProduct(K);
  Eigen::MatrixXd accV = Eigen::MatrixXd::Zero(T_, T_), accQ = accV, accK = accV;
  Eigen::MatrixXd xi, A, P, AKA, AtW;
  const int pairs = st_.samples / 2;
  for (int p = 0; p < pairs; ++p) {
    draw(p, xi);
    Eigen::MatrixXd base = L * xi * L.transpose();
    for (int sign : {1, -1}) {
      A = sign * base;
      softmax_rows(A);
      accV.noalias() += A.transpose() * G * A;
      P.noalias() = K * A.transpose();  // P_{s t} = (K a_t)_s
      AKA.noalias() = A * P;
      // Query path: E[tr(J_t K J_t' K)] = A(KoK)A^T - A(PoP) - (A(PoP))^T + AKA o AKA
      Eigen::MatrixXd PP = P.cwiseProduct(P);
      Eigen::MatrixXd t2 = A * PP;
      accQ.noalias() += A * KK * A.transpose();
      accQ -= t2 + t2.transpose();
      accQ += AKA.cwiseProduct(AKA);
      // Key path with W = G o K: Ko(A^T W A) - ((A^T W)oP)A - transpose + A^T (W o AKA) A
      AtW.noalias() = A.transpose() * W;
      Eigen::MatrixXd k2 = AtW.cwiseProduct(P) * A;
      accK += K.cwiseProduct(AtW * A);
      accK -= k2 + k2.transpose();
      accK.noalias() += A.transpose() * W.cwiseProduct(AKA) * A;
    }
  }
  const double n = st_.samples;
  const double q4 = sqk2_ * sqk2_;
  Eigen::MatrixXd out = vo_var * (accV / n + q4 * G.cwiseProduct(accQ / n) + q4 * accK / n);
  return 0.5 * (out + out.transpose());
}

}  // namespace sigprop::theory
