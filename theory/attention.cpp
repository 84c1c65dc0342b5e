#include "theory/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <boost/math/special_functions/erf.hpp>
#include <boost/random/sobol.hpp>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace sigprop::theory {

AttnMethod parse_attn_method(const std::string& s) {
  if (s == "qmc") return AttnMethod::Qmc;
  if (s == "mc") return AttnMethod::Mc;
  throw ConfigError("theory attention method must be \"qmc\" or \"mc\", got \"" + s + "\"");
}
std::string to_string(AttnMethod m) {
  return m == AttnMethod::Qmc ? "qmc" : "mc";
}

namespace {
// Entry order of xi for the Sobol dimensions: by max(i, j), i.e. growing leading blocks of
// F's columns (decreasing eigenvalues), where the integrand depends most on the first ones.
std::vector<std::pair<int, int>> importance_order(int T) {
  std::vector<std::pair<int, int>> o;
  for (int m = 0; m < T; ++m) {
    for (int j = 0; j <= m; ++j) o.emplace_back(m, j);
    for (int i = 0; i < m; ++i) o.emplace_back(i, m);
  }
  return o;
}
constexpr size_t kMaxPointBytes = size_t{512} << 20;
}  // namespace

bool attention_uniform(const StackSpec& spec, const AttnSettings& settings) {
  return spec.sigma_qk2 == 0.0 || (spec.qk_scale == QkScale::InvDh && !settings.finite_dh);
}

double logit_sigma_qk2(const StackSpec& spec, const AttnSettings& settings) {
  if (spec.qk_scale == QkScale::InvDh && settings.finite_dh)
    return spec.sigma_qk2 / std::sqrt(static_cast<double>(spec.width / spec.heads));
  return spec.sigma_qk2;
}

AttentionKernel::AttentionKernel(const StackSpec& spec, AttnSettings settings)
    : T_(spec.tokens),
      causal_(spec.mask == Mask::Causal),
      uniform_(attention_uniform(spec, settings)),
      sqk2_(logit_sigma_qk2(spec, settings)),
      st_(settings) {
  if (st_.samples < 2) throw ConfigError("theory attention samples must be >= 2");
  if (st_.samples % 2) ++st_.samples;
  if (uniform_) return;
  const int n = st_.samples / 2, TT = T_ * T_;
  if (static_cast<double>(n) * TT * sizeof(double) > kMaxPointBytes)
    throw ConfigError(fmt::format("theory attention samples: {} draws of {} x {} logits need more than {} MiB; "
                                  "use fewer samples",
                                  st_.samples, T_, T_, kMaxPointBytes >> 20));
  points_.assign(n, Eigen::MatrixXd(T_, T_));
  const auto rep = static_cast<uint64_t>(st_.replicate);
  if (st_.method == AttnMethod::Mc) {
    // Pair p of replicate r: Philox stream r * n + p (the draws of the old first_sample = r n).
    for (int p = 0; p < n; ++p) NormalStream(st_.seed, rep * n + p).fill(points_[p].data(), TT);
    return;
  }
  const int dq = std::min(TT, 3667);  // Boost's Joe-Kuo tables stop at 3667 dimensions
  const auto order = importance_order(T_);
  // Digital shift of replicate r: one uniform 64-bit word per dimension, Philox4x32-10 with
  // key = seed and counter = (dimension, replicate, purpose 1).
  std::vector<uint64_t> shift(dq);
  {
    using G = r123::Philox4x32;
    G gen;
    const G::key_type key = {{static_cast<uint32_t>(st_.seed), static_cast<uint32_t>(st_.seed >> 32)}};
    for (int k = 0; k < dq; ++k) {
      const G::ctr_type ctr = {{static_cast<uint32_t>(k), static_cast<uint32_t>(rep), static_cast<uint32_t>(rep >> 32), 1u}};
      const G::ctr_type r = gen(ctr, key);
      shift[k] = (static_cast<uint64_t>(r[1]) << 32) | r[0];
    }
  }
  boost::random::sobol_engine<uint64_t, 64> sob(static_cast<size_t>(dq));
  std::vector<double> pad(TT > dq ? static_cast<size_t>(TT - dq) : 0);
  for (int p = 0; p < n; ++p) {
    Eigen::MatrixXd& xi = points_[p];
    for (int k = 0; k < dq; ++k) {
      const uint64_t x = sob() ^ shift[k];
      // Midpoint of the 2^-53 cell: u in (0, 1), never 0 or 1.
      const double u = (static_cast<double>(x >> 11) + 0.5) * 0x1p-53;
      xi(order[k].first, order[k].second) = -std::sqrt(2.0) * boost::math::erfc_inv(2 * u);
    }
    if (!pad.empty()) {
      NormalStream(st_.seed, stream_id(rep, p, 0, 2)).fill(pad.data(), pad.size());
      for (int k = dq; k < TT; ++k) xi(order[k].first, order[k].second) = pad[k - dq];
    }
  }
}

Eigen::MatrixXd AttentionKernel::factor(const Eigen::MatrixXd& K) const {
  // Square root through the eigen-decomposition: K may be (numerically) singular after rank
  // collapse, where Cholesky fails. Columns by decreasing eigenvalue, so the first entries of
  // xi (the best-distributed Sobol dimensions) carry the largest logit variance.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K);
  Eigen::VectorXd ev = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  Eigen::MatrixXd F = es.eigenvectors() * ev.asDiagonal();
  return F.rowwise().reverse();
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

namespace {
// Uniform attention in O(T^2) instead of two T^3 products. Full averaging: A K A^T = mean(K) 11^T.
// Causal (A_ts = 1/(t+1), s <= t): (A K A^T)_ts = P_ts / ((t+1)(s+1)) with P the 2-D prefix sum of K,
// and (A^T G A)_ij = sum_{t>=i, s>=j} G_ts / ((t+1)(s+1)), a 2-D suffix sum.
// 1/(t+1), t < T: the causal rows' weights.
Eigen::VectorXd causal_weights(Eigen::Index T) {
  return Eigen::VectorXd::LinSpaced(T, 1.0, static_cast<double>(T)).cwiseInverse();
}
Eigen::MatrixXd uniform_forward(const Eigen::MatrixXd& K, bool causal) {
  const auto T = K.rows();
  if (!causal) return Eigen::MatrixXd::Constant(T, T, K.mean());
  // Prefix sums along t (row by row), then along s (column by column, contiguous): each pass
  // is one vector operation per row or column.
  Eigen::MatrixXd P = K;
  for (Eigen::Index t = 1; t < T; ++t) P.row(t) += P.row(t - 1);
  for (Eigen::Index s = 1; s < T; ++s) P.col(s) += P.col(s - 1);
  const Eigen::VectorXd w = causal_weights(T);
  return w.asDiagonal() * P * w.asDiagonal();
}
Eigen::MatrixXd uniform_backward(const Eigen::MatrixXd& G, bool causal) {
  const auto T = G.rows();
  if (!causal) return Eigen::MatrixXd::Constant(T, T, G.mean());
  // Suffix sums of G_ts / ((t+1)(s+1)), as uniform_forward's prefix sums.
  const Eigen::VectorXd w = causal_weights(T);
  Eigen::MatrixXd S = w.asDiagonal() * G * w.asDiagonal();
  for (Eigen::Index t = T - 2; t >= 0; --t) S.row(t) += S.row(t + 1);
  for (Eigen::Index s = T - 2; s >= 0; --s) S.col(s) += S.col(s + 1);
  return S;
}
}  // namespace

Eigen::MatrixXd AttentionKernel::forward(const Eigen::MatrixXd& K, AttnTape* tape) const {
  if (uniform_) return uniform_forward(K, causal_);
  Eigen::MatrixXd L = std::sqrt(sqk2_) * factor(K);  // S = sigma_qk^2 F xi F^T, F F^T = K
  Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(T_, T_), S, base, SK;
  const int pairs = st_.samples / 2;
  if (tape) {
    tape->L = L;
    tape->A.clear();
    if (tape->keep_softmax) tape->A.reserve(2 * static_cast<size_t>(pairs));
  }
  for (int p = 0; p < pairs; ++p) {
    const Eigen::MatrixXd& xi = points_[p];
    SK.noalias() = L.lazyProduct(xi);
    base.noalias() = SK.lazyProduct(L.transpose());
    for (int sign : {1, -1}) {
      S = sign * base;
      softmax_rows(S);
      SK.noalias() = S.lazyProduct(K);
      acc.noalias() += SK.lazyProduct(S.transpose());
      if (tape && tape->keep_softmax) tape->A.push_back(S);
    }
  }
  acc /= static_cast<double>(st_.samples);
  return 0.5 * (acc + acc.transpose());
}

Eigen::MatrixXd AttentionKernel::backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var,
                                          const AttnTape* tape) const {
  if (uniform_) return vo_var * uniform_backward(G, causal_);
  // S = sigma_qk^2 F xi F^T, F F^T = K: the forward pass's factor when it left one.
  const Eigen::MatrixXd L = tape && tape->L.size() ? tape->L : Eigen::MatrixXd(std::sqrt(sqk2_) * factor(K));
  const bool stored = tape && tape->A.size() == static_cast<size_t>(st_.samples);
  const double q4 = sqk2_ * sqk2_;
  const Eigen::MatrixXd KK = K.cwiseProduct(K);
  const Eigen::MatrixXd W = G.cwiseProduct(K);
  // Accumulated (linear in the draws, so Hadamard factors are applied once at the end):
  //   accV = sum A^T (G + q4 W o AKA) A   (value path + the last key-path term)
  //   accQ = sum A(KoK)A^T - A(PoP) - (A(PoP))^T + AKA o AKA      (query path, G o . at the end)
  //   accW = sum A^T W A  (K o . at the end),  accC = sum ((A^T W) o P) A  (- it and its transpose)
  Eigen::MatrixXd accV = Eigen::MatrixXd::Zero(T_, T_), accQ = accV, accW = accV, accC = accV;
  Eigen::MatrixXd Abuf, base, P, AKA, AtW, X, tmp;
  const int pairs = st_.samples / 2;
  for (int p = 0; p < pairs; ++p) {
    if (!stored) {
      tmp.noalias() = L.lazyProduct(points_[p]);
      base.noalias() = tmp.lazyProduct(L.transpose());
    }
    for (int k = 0; k < 2; ++k) {
      const Eigen::MatrixXd* Ap;
      if (stored) {
        Ap = &tape->A[2 * static_cast<size_t>(p) + k];
      } else {
        Abuf = (k == 0 ? 1.0 : -1.0) * base;
        softmax_rows(Abuf);
        Ap = &Abuf;
      }
      const Eigen::MatrixXd& A = *Ap;
      P.noalias() = K.lazyProduct(A.transpose());  // P_{s t} = (K a_t)_s
      AKA.noalias() = A.lazyProduct(P);
      // Query path: E[tr(J_t K J_t' K)] = A(KoK)A^T - A(PoP) - (A(PoP))^T + AKA o AKA
      tmp.noalias() = A.lazyProduct(KK);
      accQ.noalias() += tmp.lazyProduct(A.transpose());
      tmp.noalias() = A.lazyProduct(P.cwiseProduct(P));
      accQ -= tmp + tmp.transpose();
      accQ += AKA.cwiseProduct(AKA);
      // Key path with W = G o K: Ko(A^T W A) - ((A^T W)oP)A - transpose + A^T (W o AKA) A
      AtW.noalias() = A.transpose().lazyProduct(W);
      accW.noalias() += AtW.lazyProduct(A);
      accC.noalias() += AtW.cwiseProduct(P).lazyProduct(A);
      X = G + q4 * W.cwiseProduct(AKA);
      tmp.noalias() = A.transpose().lazyProduct(X);
      accV.noalias() += tmp.lazyProduct(A);
    }
  }
  const double n = st_.samples;
  Eigen::MatrixXd accK = K.cwiseProduct(accW) - accC - accC.transpose();
  Eigen::MatrixXd out = vo_var * (accV / n + q4 * G.cwiseProduct(accQ / n) + q4 * accK / n);
  return 0.5 * (out + out.transpose());
}

}  // namespace sigprop::theory
