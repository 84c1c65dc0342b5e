#include "theory/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <boost/math/special_functions/erf.hpp>
#include <boost/random/sobol.hpp>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "theory/small_gemm.hpp"

namespace {
constexpr int kW = sigprop::theory::detail::kSimdLanes;
using Vec = sigprop::theory::detail::SimdVec;  // one SIMD vector of doubles (small_gemm.hpp)
using VecMask = sigprop::theory::detail::SimdMask;
}  // namespace

// glibc >= 2.35 on x86-64 has exp for SIMD vectors in libmvec (within a few ulp), under the names of
// the x86-64 vector function ABI: _ZGV<isa>N<lanes>v_exp, isa b = SSE, c = AVX, d = AVX2,
// e = AVX-512, the vector in one register. The softmax calls the one of this build's width.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#if defined(__AVX512F__)
extern "C" Vec _ZGVeN8v_exp(Vec);
#define SIGPROP_VEXP _ZGVeN8v_exp
#elif defined(__AVX2__)
extern "C" Vec _ZGVdN4v_exp(Vec);
#define SIGPROP_VEXP _ZGVdN4v_exp
#elif defined(__AVX__)
extern "C" Vec _ZGVcN4v_exp(Vec);
#define SIGPROP_VEXP _ZGVcN4v_exp
#else
extern "C" Vec _ZGVbN2v_exp(Vec);
#define SIGPROP_VEXP _ZGVbN2v_exp
#endif
#endif

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
// erfc_inv in double arithmetic: Boost's default evaluates it in long double, 4x slower, for
// values within 4e-16 relative of these (the points' construction was 10% of the default spec).
using NoPromotion = boost::math::policies::policy<boost::math::policies::promote_double<false>>;

using detail::small_gemm;
using detail::Tri;

// M (T x T) in the top-left corner of an n x n zero matrix.
Eigen::MatrixXd padded(const Eigen::MatrixXd& M, int n) {
  Eigen::MatrixXd P = Eigen::MatrixXd::Zero(n, n);
  P.topLeftCorner(M.rows(), M.cols()) = M;
  return P;
}
}  // namespace

Eigen::MatrixXd double_centred(const Eigen::MatrixXd& K) {
  const Eigen::VectorXd c = K.colwise().mean().transpose();
  const double g = c.mean();
  Eigen::MatrixXd Kc = K;
  Kc.colwise() -= c;
  Kc.rowwise() -= c.transpose();
  Kc.array() += g;
  return 0.5 * (Kc + Kc.transpose());
}

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
      Tp_(detail::small_gemm_padded(spec.tokens)),
      causal_(spec.mask == Mask::Causal),
      uniform_(attention_uniform(spec, settings)),
      sqk2_(logit_sigma_qk2(spec, settings)),
      st_(settings) {
  if (st_.samples < 2) throw ConfigError("theory attention samples must be >= 2");
  if (st_.samples % 2) ++st_.samples;
  if (uniform_) return;
  const int n = st_.samples / 2, TT = T_ * T_;
  if (static_cast<double>(n) * Tp_ * Tp_ * sizeof(double) > kMaxPointBytes)
    throw ConfigError(fmt::format("theory attention samples: {} draws of {} x {} logits need more than {} MiB; "
                                  "use fewer samples",
                                  st_.samples, T_, T_, kMaxPointBytes >> 20));
  // Stored as xi^T, zero-padded to Tp x Tp: the products then give base^T = L xi^T L^T, whose
  // columns are the logit rows (contiguous for the softmax).
  points_.assign(n, Eigen::MatrixXd::Zero(Tp_, Tp_));
  const auto rep = static_cast<uint64_t>(st_.replicate);
  if (st_.method == AttnMethod::Mc) {
    // Pair p of replicate r: Philox stream r * n + p (the draws of the old first_sample = r n).
    Eigen::MatrixXd xi(T_, T_);
    for (int p = 0; p < n; ++p) {
      NormalStream(st_.seed, rep * n + p).fill(xi.data(), TT);
      points_[p].topLeftCorner(T_, T_) = xi.transpose();
    }
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
    Eigen::MatrixXd& xit = points_[p];  // xit(j, i) = xi(i, j)
    for (int k = 0; k < dq; ++k) {
      const uint64_t x = sob() ^ shift[k];
      // Midpoint of the 2^-53 cell: u in (0, 1), never 0 or 1.
      const double u = (static_cast<double>(x >> 11) + 0.5) * 0x1p-53;
      xit(order[k].second, order[k].first) = -std::sqrt(2.0) * boost::math::erfc_inv(2 * u, NoPromotion{});
    }
    if (!pad.empty()) {
      NormalStream(st_.seed, stream_id(rep, p, 0, 2)).fill(pad.data(), pad.size());
      for (int k = dq; k < TT; ++k) xit(order[k].second, order[k].first) = pad[k - dq];
    }
  }
}

std::vector<Eigen::MatrixXd> AttentionKernel::base_points() const {
  std::vector<Eigen::MatrixXd> out;
  out.reserve(points_.size());
  for (const Eigen::MatrixXd& xit : points_) out.emplace_back(xit.topLeftCorner(T_, T_).transpose());
  return out;
}

void AttentionKernel::logits_t(const Eigen::MatrixXd& L, int p, Eigen::MatrixXd& tmp, Eigen::MatrixXd& Bt) const {
  small_gemm(tmp.data(), L.data(), Tri::Full, points_[p].data(), false, Tri::Full, Tp_, false);  // L xi^T
  small_gemm(Bt.data(), tmp.data(), Tri::Full, L.data(), true, Tri::Full, Tp_, false);           // base^T
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

namespace {
using detail::simd_load;
using detail::simd_store;
inline Vec vexp(Vec x) {
#ifdef SIGPROP_VEXP
  return SIGPROP_VEXP(x);
#else
  for (int j = 0; j < kW; ++j) x[j] = std::exp(x[j]);
  return x;
#endif
}
}  // namespace

void AttentionKernel::softmax_cols(const double* Bt, double sign, double* At, double* scratch) const {
  // Column t of Bt is row t of the logits base = L xi L^T; column t of At receives row t of
  // softmax(sign * base) (causal: entries s <= t), zeros elsewhere and in the padding. One SIMD
  // vector per step over the padded column; the masked entries' arguments are 0 (a vector exp
  // takes a slow path for arguments like -inf), their results selected away. The rows' sums
  // (scratch: T vectors) are reduced after all exponentials: T independent chains, not one
  // add-divide latency per row between the calls.
  const int n = Tp_;
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  Vec iota;
  for (int j = 0; j < kW; ++j) iota[j] = j;
  for (int t = 0; t < T_; ++t) {
    const double* b = Bt + static_cast<std::ptrdiff_t>(t) * n;
    double* a = At + static_cast<std::ptrdiff_t>(t) * n;
    const int m = causal_ ? t + 1 : T_;
    Vec vm = Vec{} + kNegInf;  // row maximum over the unmasked entries
    for (int s0 = 0; s0 < m; s0 += kW) {
      const Vec x = simd_load(b + s0) * sign;
      vm = (((iota + s0) < m) & (x > vm)) ? x : vm;
    }
    double mx = vm[0];
    for (int j = 1; j < kW; ++j) mx = std::max(mx, vm[j]);
    Vec zs = {};
    for (int s0 = 0; s0 < n; s0 += kW) {
      if (s0 >= m) {  // all masked
        simd_store(a + s0, Vec{});
        continue;
      }
      const VecMask in = (iota + s0) < m;
      const Vec x = in ? simd_load(b + s0) * sign - mx : Vec{};
      const Vec e = in ? vexp(x) : Vec{};
      simd_store(a + s0, e);
      zs += e;
    }
    simd_store(scratch + static_cast<std::ptrdiff_t>(t) * kW, zs);
  }
  for (int t = 0; t < T_; ++t) {
    const double* zs = scratch + static_cast<std::ptrdiff_t>(t) * kW;
    double z = 0;
    for (int j = 0; j < kW; ++j) z += zs[j];
    const double inv = 1.0 / z;
    double* a = At + static_cast<std::ptrdiff_t>(t) * n;
    for (int s0 = 0; s0 < n; s0 += kW) simd_store(a + s0, simd_load(a + s0) * inv);
  }
  std::fill(At + static_cast<std::ptrdiff_t>(T_) * n, At + static_cast<std::ptrdiff_t>(n) * n, 0.0);
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
  return forward_impl(K, tape, nullptr, nullptr, nullptr);
}

Eigen::MatrixXd AttentionKernel::forward(const Eigen::MatrixXd& K, AttnTape* tape, const Eigen::MatrixXd& Kc,
                                         Eigen::MatrixXd& AKcA, Eigen::MatrixXd& Amean) const {
  return forward_impl(K, tape, &Kc, &AKcA, &Amean);
}

Eigen::MatrixXd AttentionKernel::forward_impl(const Eigen::MatrixXd& K, AttnTape* tape, const Eigen::MatrixXd* Kc,
                                              Eigen::MatrixXd* AKcA, Eigen::MatrixXd* Amean) const {
  if (uniform_) {
    if (Kc) {
      // The uniform softmax itself: rows 1/T, or 1/(t+1) over s <= t with the causal mask.
      Eigen::MatrixXd A = Eigen::MatrixXd::Constant(T_, T_, 1.0 / T_);
      if (causal_) {
        const Eigen::VectorXd w = causal_weights(T_);
        A.setZero();
        for (int t = 0; t < T_; ++t) A.row(t).head(t + 1).setConstant(w(t));
      }
      *AKcA = A * *Kc * A.transpose();
      *Amean = A;
    }
    return uniform_forward(K, causal_);
  }
  // Every matrix below is Tp x Tp, the T x T one zero-padded (the padding stays zero through
  // every product); A is lower triangular with the causal mask, A^T upper.
  const int n = Tp_;
  const Tri lo = causal_ ? Tri::Lower : Tri::Full, up = causal_ ? Tri::Upper : Tri::Full;
  const Eigen::MatrixXd L = padded(std::sqrt(sqk2_) * factor(K), n);  // S = sigma_qk^2 F xi F^T, F F^T = K
  const Eigen::MatrixXd Kp = padded(K, n);
  Eigen::MatrixXd acc = Eigen::MatrixXd::Zero(n, n), tmp(n, n), Bt(n, n), At(n, n), A(n, n), AK(n, n);
  Eigen::MatrixXd Kcp, accC, accA;
  if (Kc) {
    Kcp = padded(*Kc, n);
    accC = accA = Eigen::MatrixXd::Zero(n, n);
  }
  std::vector<double> scratch(static_cast<size_t>(T_) * kW);
  const int pairs = st_.samples / 2;
  if (tape) {
    tape->L = L;
    tape->A.clear();
    if (tape->keep_softmax) tape->A.reserve(2 * static_cast<size_t>(pairs));
  }
  for (int p = 0; p < pairs; ++p) {
    logits_t(L, p, tmp, Bt);
    for (const double sign : {1.0, -1.0}) {
      softmax_cols(Bt.data(), sign, At.data(), scratch.data());
      A = At.transpose();
      small_gemm(AK.data(), A.data(), lo, Kp.data(), false, Tri::Full, n, false);  // A K
      small_gemm(acc.data(), AK.data(), Tri::Full, At.data(), false, up, n, true);  // += A K A^T
      if (Kc) {
        small_gemm(AK.data(), A.data(), lo, Kcp.data(), false, Tri::Full, n, false);    // A Kc
        small_gemm(accC.data(), AK.data(), Tri::Full, At.data(), false, up, n, true);  // += A Kc A^T
        accA += A;
      }
      if (tape && tape->keep_softmax) tape->A.push_back(At);
    }
  }
  const double N = static_cast<double>(st_.samples);
  if (Kc) {
    const Eigen::MatrixXd oc = accC.topLeftCorner(T_, T_) / N;
    *AKcA = 0.5 * (oc + oc.transpose());
    *Amean = accA.topLeftCorner(T_, T_) / N;
  }
  const Eigen::MatrixXd out = acc.topLeftCorner(T_, T_) / N;
  return 0.5 * (out + out.transpose());
}

template <class Fn>
void AttentionKernel::for_each_softmax(const Eigen::MatrixXd& L, const AttnTape* tape, Fn&& f) const {
  const int n = Tp_;
  const bool stored = tape && tape->A.size() == static_cast<size_t>(st_.samples);
  Eigen::MatrixXd Bt(n, n), Atbuf(n, n), tmp(n, n);
  std::vector<double> scratch(static_cast<size_t>(T_) * kW);
  const int pairs = st_.samples / 2;
  for (int p = 0; p < pairs; ++p) {
    if (!stored) logits_t(L, p, tmp, Bt);
    for (int k = 0; k < 2; ++k) {
      if (stored) {
        f(tape->A[2 * static_cast<size_t>(p) + k]);
      } else {
        softmax_cols(Bt.data(), k == 0 ? 1.0 : -1.0, Atbuf.data(), scratch.data());
        f(static_cast<const Eigen::MatrixXd&>(Atbuf));
      }
    }
  }
}

Eigen::MatrixXd AttentionKernel::backward(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var,
                                          const AttnTape* tape) const {
  if (uniform_) return vo_var * uniform_backward(G, causal_);
  const int n = Tp_;  // Tp x Tp, zero-padded, as in forward()
  const Tri lo = causal_ ? Tri::Lower : Tri::Full, up = causal_ ? Tri::Upper : Tri::Full;
  // S = sigma_qk^2 F xi F^T, F F^T = K: the forward pass's factor when it left one.
  const Eigen::MatrixXd L =
      tape && tape->L.size() ? tape->L : padded(std::sqrt(sqk2_) * factor(K), n);
  const double q4 = sqk2_ * sqk2_;
  // The query and key paths see the key-side K only through J_t K J_t' (J_t symmetric, J_t 1 = 0),
  // which K -> K + v 1^T + 1 v^T leaves unchanged: they use the doubly centred Kc = H K H (H = I -
  // 11^T / T), K less its common mode. Where the tokens have aligned in a growing stream (K ~ q 11^T
  // with q up to 1e14 without a norm) the expanded terms below, sums of products of K's entries that
  // cancel down to the small non-common part, then round at the size of that part instead of q^2.
  // The query-side factor of the key path, W = G o K, is not sandwiched and keeps K.
  const Eigen::MatrixXd Kc = double_centred(K);
  const Eigen::MatrixXd Kp = padded(Kc, n), Gp = padded(G, n);
  const Eigen::MatrixXd KK = Kp.cwiseProduct(Kp);
  const Eigen::MatrixXd W = Gp.cwiseProduct(padded(K, n));
  // Accumulated (linear in the draws, so Hadamard factors and transposes are applied once at the end):
  //   accV = sum A^T (G + q4 W o AKA) A   (value path + the last key-path term)
  //   accQ = sum A(KoK)A^T + AKA o AKA,  accP = sum A(PoP)   (query path: accQ - accP - accP^T, G o . at the end)
  //   accW = sum A^T W A  (K o . at the end),  accC = sum ((A^T W) o P) A  (- it and its transpose)
  Eigen::MatrixXd accV = Eigen::MatrixXd::Zero(n, n), accQ = accV, accP = accV, accW = accV, accC = accV;
  Eigen::MatrixXd A(n, n), P(n, n), AKA(n, n), AtW(n, n), X(n, n), tmp(n, n);
  for_each_softmax(L, tape, [&](const Eigen::MatrixXd& At) {
    A = At.transpose();
    small_gemm(P.data(), Kp.data(), Tri::Full, At.data(), false, up, n, false);  // P_{s t} = (K a_t)_s
    small_gemm(AKA.data(), A.data(), lo, P.data(), false, Tri::Full, n, false);
    // Query path: E[tr(J_t K J_t' K)] = A(KoK)A^T - A(PoP) - (A(PoP))^T + AKA o AKA
    small_gemm(tmp.data(), A.data(), lo, KK.data(), false, Tri::Full, n, false);
    small_gemm(accQ.data(), tmp.data(), Tri::Full, At.data(), false, up, n, true);
    accQ += AKA.cwiseProduct(AKA);
    X = P.cwiseProduct(P);
    small_gemm(accP.data(), A.data(), lo, X.data(), false, Tri::Full, n, true);
    // Key path with W = G o K: Ko(A^T W A) - ((A^T W)oP)A - transpose + A^T (W o AKA) A
    small_gemm(AtW.data(), At.data(), up, W.data(), false, Tri::Full, n, false);
    small_gemm(accW.data(), AtW.data(), Tri::Full, A.data(), false, lo, n, true);
    X = AtW.cwiseProduct(P);
    small_gemm(accC.data(), X.data(), Tri::Full, A.data(), false, lo, n, true);
    X = Gp + q4 * W.cwiseProduct(AKA);
    small_gemm(tmp.data(), At.data(), up, X.data(), false, Tri::Full, n, false);
    small_gemm(accV.data(), tmp.data(), Tri::Full, A.data(), false, lo, n, true);
  });
  const double ns = st_.samples;
  const auto blk = [&](const Eigen::MatrixXd& M) { return M.topLeftCorner(T_, T_); };
  const Eigen::MatrixXd Q = blk(accQ) - blk(accP) - blk(accP).transpose();
  const Eigen::MatrixXd accK = Kc.cwiseProduct(blk(accW)) - blk(accC) - blk(accC).transpose();
  Eigen::MatrixXd out = vo_var * (blk(accV) / ns + q4 * G.cwiseProduct(Q / ns) + q4 * accK / ns);
  out = 0.5 * (out + out.transpose());
  // The expanded query and key terms cancel: their rounding is about eps times the largest term
  // (times the number of terms summed). Where that is not small against every diagonal entry of
  // the result (a softmax saturated onto single tokens, J_t ~ 0, in a stream grown to q ~ 1e14 and
  // more), the direct O(T^4) evaluation replaces them. Healthy stacks are ~1e-13 away from the
  // switch; the result is deterministic in K, G and the draws either way.
  const double terms = std::max({blk(accQ).cwiseAbs().maxCoeff() * G.cwiseAbs().maxCoeff(),
                                 Kc.cwiseAbs().maxCoeff() * blk(accW).cwiseAbs().maxCoeff(),
                                 blk(accC).cwiseAbs().maxCoeff()});
  const double rounding = 64 * std::numeric_limits<double>::epsilon() * T_ * vo_var * q4 * terms / ns;
  if (!(rounding <= 1e-6 * out.diagonal().minCoeff())) return backward_direct(K, G, vo_var, tape);
  return out;
}

Eigen::MatrixXd AttentionKernel::backward_direct(const Eigen::MatrixXd& K, const Eigen::MatrixXd& G, double vo_var,
                                                 const AttnTape* tape) const {
  if (uniform_) return backward(K, G, vo_var, tape);
  const int n = Tp_, T = T_;
  const Eigen::MatrixXd L = tape && tape->L.size() ? tape->L : padded(std::sqrt(sqk2_) * factor(K), n);
  const double q4 = sqk2_ * sqk2_;
  const Eigen::MatrixXd Kc = double_centred(K);
  const Eigen::MatrixXd F = factor(Kc);  // F F^T = Kc (Kc is positive semi-definite)
  const Eigen::MatrixXd W = G.cwiseProduct(K);
  Eigen::MatrixXd accV = Eigen::MatrixXd::Zero(T, T), accQ = accV, accK = accV;
  Eigen::MatrixXd A(T, T);
  Eigen::MatrixXd Y(T, static_cast<Eigen::Index>(T) * T), N(static_cast<Eigen::Index>(T) * T, T), Z(T, T);
  std::vector<int> active, support;
  for_each_softmax(L, tape, [&](const Eigen::MatrixXd& At) {
    A = At.topLeftCorner(T, T).transpose();
    accV.noalias() += A.transpose() * G * A;
    // Only the rows whose softmax has more than one non-zero entry: a row saturated onto one
    // token (the others underflow to 0, as in most rows where this form is needed) has J_t = 0.
    active.clear();
    for (int t = 0; t < T; ++t) {
      // J_t = diag(a) - a a^T on the support of a; 1 - a_s of the largest entry as the sum of the others.
      support.clear();
      Eigen::Index top = 0;
      for (int s = 0; s < T; ++s)
        if (A(t, s) != 0) {
          if (support.empty() || A(t, s) > A(t, top)) top = s;
          support.push_back(s);
        }
      if (support.size() < 2) continue;
      active.push_back(t);
      const auto k = static_cast<Eigen::Index>(support.size());
      Eigen::VectorXd a(k);
      double rest = 0;  // 1 - a_top, from the small entries
      for (Eigen::Index i = 0; i < k; ++i) {
        a(i) = A(t, support[i]);
        if (support[i] != top) rest += a(i);
      }
      Eigen::MatrixXd Jk = -a * a.transpose();
      Eigen::MatrixXd Fk(k, T);
      for (Eigen::Index i = 0; i < k; ++i) {
        Jk(i, i) = a(i) * (support[i] == top ? rest : 1.0 - a(i));
        Fk.row(i) = F.row(support[i]);
      }
      auto Yt = Y.middleCols(static_cast<Eigen::Index>(t) * T, T);
      Yt.setZero();
      const Eigen::MatrixXd JF = Jk * Fk;  // the non-zero rows of J_t F
      for (Eigen::Index i = 0; i < k; ++i) Yt.row(support[i]) = JF.row(i);
      N.middleRows(static_cast<Eigen::Index>(t) * T, T).noalias() = Fk.transpose() * JF;  // F^T J_t F
    }
    // Query path: <F^T J_t F, F^T J_t' F> for every pair (t, t') of active rows.
    for (size_t i = 0; i < active.size(); ++i)
      for (size_t j = 0; j <= i; ++j) {
        const int t = active[i], u = active[j];
        const double v = N.middleRows(static_cast<Eigen::Index>(t) * T, T)
                             .cwiseProduct(N.middleRows(static_cast<Eigen::Index>(u) * T, T))
                             .sum();
        accQ(t, u) += v;
        if (u != t) accQ(u, t) += v;
      }
    // Key path: sum_t (J_t F) (sum_t' W_tt' J_t' F)^T over active rows.
    for (const int t : active) {
      Z.setZero();
      for (const int u : active)
        if (W(t, u) != 0) Z += W(t, u) * Y.middleCols(static_cast<Eigen::Index>(u) * T, T);
      accK.noalias() += Y.middleCols(static_cast<Eigen::Index>(t) * T, T) * Z.transpose();
    }
  });
  const double ns = st_.samples;
  Eigen::MatrixXd out = vo_var * (accV / ns + q4 * G.cwiseProduct(accQ / ns) + q4 * accK / ns);
  return 0.5 * (out + out.transpose());
}

}  // namespace sigprop::theory
