#pragma once
/// @file Maths shared by the host and the CUDA backend (cuda/), written once behind
/// SIGPROP_HD (core/hd.hpp) and unit-tested on the CPU by tests/test_hd_math.cpp:
///  - Philox4x32-10 and the Box-Muller normal of core/rng.hpp (normal i of stream
///    (seed, stream) is the same number on host and device),
///  - the activations of MODEL.md §1 and their derivatives,
///  - the per-element formulas of LayerNorm/RMSNorm and of the masked row softmax, forward
///    and backward, and serial row versions of them (the CUDA kernels do the same per-element
///    work with parallel row reductions),
///  - the layer metrics of MODEL.md §2 from a token kernel K and its eigenvalues (the same
///    formulas as core/metrics.cpp, which the tests compare against).
/// Nothing here allocates, throws or uses the standard library beyond <cstdint> and the C
/// maths functions that CUDA also provides on the device.
#include <math.h>  // the C functions (erfcf, tanh, sincos, ...) exist under these names on host and device

#include <cstdint>

#include "core/hd.hpp"

namespace sigprop::hd {

// ---------------------------------------------------------------------------------------------
// C maths by overload, so templates on float/double call the right one on host and device.

SIGPROP_HD inline float m_exp(float x) { return ::expf(x); }
SIGPROP_HD inline double m_exp(double x) { return ::exp(x); }
SIGPROP_HD inline float m_erf(float x) { return ::erff(x); }
SIGPROP_HD inline double m_erf(double x) { return ::erf(x); }
SIGPROP_HD inline float m_erfc(float x) { return ::erfcf(x); }
SIGPROP_HD inline double m_erfc(double x) { return ::erfc(x); }
SIGPROP_HD inline float m_tanh(float x) { return ::tanhf(x); }
SIGPROP_HD inline double m_tanh(double x) { return ::tanh(x); }
SIGPROP_HD inline float m_sqrt(float x) { return ::sqrtf(x); }
SIGPROP_HD inline double m_sqrt(double x) { return ::sqrt(x); }

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11, "Parallel random numbers: as easy as
// 1, 2, 3", Random123's philox4x32 with 10 rounds), written out so that host and device code
// share one definition; tests/test_hd_math.cpp checks it bit for bit against Random123.

struct U32x4 {
  uint32_t v[4];
};

SIGPROP_HD inline U32x4 philox4x32_10(U32x4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;  // Weyl key increments
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += W0;
      k1 += W1;
    }
    const uint64_t p0 = static_cast<uint64_t>(M0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * ctr.v[2];
    const auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = U32x4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
  }
  return ctr;
}

/// The stream id of core/rng.hpp: four 16-bit fields (sample, layer, matrix, head).
SIGPROP_HD inline uint64_t stream_id(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return (a & 0xffff) | ((b & 0xffff) << 16) | ((c & 0xffff) << 32) | ((d & 0xffff) << 48);
}

/// Normals 2 block and 2 block + 1 of stream (seed, stream), as sigprop::NormalStream defines
/// them: key = seed split in two 32-bit halves, counter = {block lo, block hi, stream lo,
/// stream hi}, u0 = r1:r0, u1 = r3:r2, and r123::boxmuller(u0, u1) = (sin, cos)(pi uneg11(u0))
/// * sqrt(-2 log u01(u1)) with uneg11(u) = int64(u) 2^-63 + 2^-64, u01(u) = u 2^-64 + 2^-65.
/// Host (glibc) and device (CUDA libm) sin/cos/log may differ in the last bit of a double.
SIGPROP_HD inline void normal_pair(uint64_t seed, uint64_t stream, uint64_t block, double* z0, double* z1) {
  const U32x4 r = philox4x32_10(U32x4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                       static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}},
                                static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t u0 = (static_cast<uint64_t>(r.v[1]) << 32) | r.v[0];
  const uint64_t u1 = (static_cast<uint64_t>(r.v[3]) << 32) | r.v[2];
  const double x = static_cast<double>(static_cast<int64_t>(u0)) * 0x1p-63 + 0x1p-64;  // (-1, 1), never 0
  const double u = static_cast<double>(u1) * 0x1p-64 + 0x1p-65;                        // (0, 1]
  const double rad = ::sqrt(-2.0 * ::log(u));
  double s = 0, c = 0;
  ::sincos(3.1415926535897932 * x, &s, &c);
  *z0 = s * rad;
  *z1 = c * rad;
}

/// Normal number i of stream (seed, stream).
SIGPROP_HD inline double normal(uint64_t seed, uint64_t stream, uint64_t i) {
  double z0 = 0, z1 = 0;
  normal_pair(seed, stream, i / 2, &z0, &z1);
  return (i % 2) ? z1 : z0;
}

// ---------------------------------------------------------------------------------------------
// activations phi and phi' (MODEL.md §1; gelu in its exact erf form): the one definition that
// the theory engine (theory/gauss.cpp, theory/spectrum.cpp), the cpu backend (sim/block.hpp) and
// the CUDA kernels (cuda/kernels.cu) evaluate; core/activation.hpp maps sigprop::Activation onto
// Act. sim/reference.cpp writes its own on purpose: it is the independent oracle they are tested
// against. The closed-form dual kernels E[phi phi] of theory/gauss.cpp are not definitions of
// phi and stay there.

/// Same order as sigprop::Activation (checked by a static_assert where both are visible).
enum class Act : int { Relu, Gelu, Tanh, Erf, Silu, Linear, GeluTanh };

template <class Real>
SIGPROP_HD inline Real act_forward(Act a, Real x) {
  const Real inv_sqrt2 = static_cast<Real>(0.70710678118654752440);
  switch (a) {
    case Act::Relu: return x > Real(0) ? x : Real(0);
    case Act::Gelu: return Real(0.5) * x * m_erfc(-x * inv_sqrt2);
    case Act::Tanh: return m_tanh(x);
    case Act::Erf: return m_erf(x);
    case Act::Silu: return x / (Real(1) + m_exp(-x));
    case Act::Linear: return x;
    case Act::GeluTanh: {
      const Real k0 = static_cast<Real>(0.79788456080286535588);  // sqrt(2/pi)
      return Real(0.5) * x * (Real(1) + m_tanh(k0 * (x + Real(0.044715) * x * x * x)));
    }
  }
  return x;  // unreachable: every Act is handled (the host maps Activation onto Act, erroring on others)
}

template <class Real>
SIGPROP_HD inline Real act_derivative(Act a, Real x) {
  const Real inv_sqrt2 = static_cast<Real>(0.70710678118654752440);
  const Real inv_sqrt2pi = static_cast<Real>(0.39894228040143267794);     // 1/sqrt(2 pi)
  const Real two_inv_sqrtpi = static_cast<Real>(1.12837916709551257390);  // 2/sqrt(pi)
  switch (a) {
    case Act::Relu: return x > Real(0) ? Real(1) : Real(0);
    case Act::Gelu: return Real(0.5) * m_erfc(-x * inv_sqrt2) + x * m_exp(Real(-0.5) * x * x) * inv_sqrt2pi;
    case Act::Tanh: {
      const Real t = m_tanh(x);
      return Real(1) - t * t;
    }
    case Act::Erf: return two_inv_sqrtpi * m_exp(-x * x);
    case Act::Silu: {
      const Real s = Real(1) / (Real(1) + m_exp(-x));
      return s * (Real(1) + x * (Real(1) - s));
    }
    case Act::Linear: return Real(1);
    case Act::GeluTanh: {
      const Real k0 = static_cast<Real>(0.79788456080286535588);
      const Real t = m_tanh(k0 * (x + Real(0.044715) * x * x * x));
      return Real(0.5) * (Real(1) + t) + Real(0.5) * x * (Real(1) - t * t) * k0 * (Real(1) + Real(3 * 0.044715) * x * x);
    }
  }
  return Real(1);  // unreachable, see act_forward
}

/// phi(x) and phi'(x) together (the quadratures of the theory engine): tanh and silu share their
/// tanh / exp; the results are bitwise those of act_forward and act_derivative.
template <class Real>
SIGPROP_HD inline void act_forward_derivative(Act a, Real x, Real* f, Real* df) {
  switch (a) {
    case Act::Tanh: {
      const Real t = m_tanh(x);
      *f = t;
      *df = Real(1) - t * t;
      return;
    }
    case Act::Silu: {
      const Real e1 = Real(1) + m_exp(-x);
      const Real s = Real(1) / e1;
      *f = x / e1;
      *df = s * (Real(1) + x * (Real(1) - s));
      return;
    }
    default:
      *f = act_forward(a, x);
      *df = act_derivative(a, x);
  }
}

/// phi'(x) from x and y = phi(x) (the backward pass after a forward that kept y): gelu, silu
/// and tanh reuse y instead of recomputing their expensive part (erfc, exp, tanh): Phi(x) = y / x
/// for gelu, sigmoid(x) = y / x for silu (the limits 1/2 at x = 0), 1 - y^2 for tanh. y / x is
/// exact to two roundings wherever y is a normal number; where it underflows, phi' is below
/// 1e-30. The other activations ignore y.
template <class Real>
SIGPROP_HD inline Real act_derivative_from_value(Act a, Real x, Real y) {
  const Real inv_sqrt2pi = static_cast<Real>(0.39894228040143267794);  // 1/sqrt(2 pi)
  switch (a) {
    case Act::Gelu: {  // phi' = Phi(x) + x N(x)
      const Real cdf = x != Real(0) ? y / x : Real(0.5);
      return cdf + x * m_exp(Real(-0.5) * x * x) * inv_sqrt2pi;
    }
    case Act::Silu: {  // phi' = s (1 + x (1 - s))
      const Real sg = x != Real(0) ? y / x : Real(0.5);
      return sg * (Real(1) + x * (Real(1) - sg));
    }
    case Act::Tanh:
      return Real(1) - y * y;
    default:
      return act_derivative(a, x);
  }
}

// ---------------------------------------------------------------------------------------------
// norms (gain 1, bias 0): per-element formulas and serial rows.
//   forward:  y = (x - mean) rstd,  rstd = 1/sqrt(mean((x - mean)^2) + eps), mean = 0 for RMSNorm
//   backward: dx = rstd (dy - mean(dy) - y mean(dy y)), mean(dy) dropped for RMSNorm

template <class Real>
SIGPROP_HD inline Real norm_rstd(Real mean_sq_dev, double eps) {
  return Real(1) / m_sqrt(mean_sq_dev + static_cast<Real>(eps));
}

template <class Real>
SIGPROP_HD inline Real norm_backward_elem(Real dy, Real y, Real rstd, Real mean_dy, Real mean_dyy) {
  return rstd * (dy - mean_dy - y * mean_dyy);
}

/// y (d) = N(x (d)); returns rstd. Two passes (mean, then squared deviations).
template <class Real>
SIGPROP_HD inline Real norm_row_forward(const Real* x, Real* y, int d, bool layernorm, double eps) {
  Real mean = 0;
  if (layernorm) {
    for (int i = 0; i < d; ++i) mean += x[i];
    mean /= static_cast<Real>(d);
  }
  Real ss = 0;
  for (int i = 0; i < d; ++i) ss += (x[i] - mean) * (x[i] - mean);
  const Real rstd = norm_rstd(ss / static_cast<Real>(d), eps);
  for (int i = 0; i < d; ++i) y[i] = (x[i] - mean) * rstd;
  return rstd;
}

/// dx (d) = J^T dy (d) from the forward's y (d) and rstd.
template <class Real>
SIGPROP_HD inline void norm_row_backward(const Real* dy, const Real* y, Real rstd, Real* dx, int d, bool layernorm) {
  Real sdy = 0, sdyy = 0;
  for (int i = 0; i < d; ++i) {
    sdy += dy[i];
    sdyy += dy[i] * y[i];
  }
  const Real mean_dy = layernorm ? sdy / static_cast<Real>(d) : Real(0);
  const Real mean_dyy = sdyy / static_cast<Real>(d);
  for (int i = 0; i < d; ++i) dx[i] = norm_backward_elem(dy[i], y[i], rstd, mean_dy, mean_dyy);
}

// ---------------------------------------------------------------------------------------------
// masked row softmax: a_s = exp(z_s - max) / sum over the n unmasked keys s < n; a_s = 0 for
// s >= n (exp(-inf)). Backward through logits S = sc Q K^T: sc dS_s = sc a_s (da_s - sum a da).

template <class Real>
SIGPROP_HD inline Real softmax_backward_elem(Real a, Real da, Real dot, Real sc) {
  return sc * (a * (da - dot));
}

/// a (T) = softmax of z (T) over its first n entries, zeros after.
template <class Real>
SIGPROP_HD inline void softmax_row_forward(const Real* z, Real* a, int T, int n) {
  Real mx = z[0];
  for (int s = 1; s < n; ++s) mx = z[s] > mx ? z[s] : mx;
  Real sum = 0;
  for (int s = 0; s < n; ++s) {
    a[s] = m_exp(z[s] - mx);
    sum += a[s];
  }
  for (int s = 0; s < n; ++s) a[s] /= sum;
  for (int s = n; s < T; ++s) a[s] = Real(0);
}

/// g (T) = sc * d(softmax)^T da (T), from the forward's a (T).
template <class Real>
SIGPROP_HD inline void softmax_row_backward(const Real* a, const Real* da, Real* g, int T, Real sc) {
  Real dot = 0;
  for (int s = 0; s < T; ++s) dot += a[s] * da[s];
  for (int s = 0; s < T; ++s) g[s] = softmax_backward_elem(a[s], da[s], dot, sc);
}

// ---------------------------------------------------------------------------------------------
// layer metrics (MODEL.md §2) from the token kernel K (T, T) = X X^T / d, row-major, in double;
// the formulas of core/metrics.cpp.

/// exp(entropy of p_i = s_i / sum s), s_i = sqrt(max(eig_i, 0)): the singular values of X are
/// sqrt(d eig(K)) and the factor sqrt(d) cancels in p. NaN when every s_i is 0.
SIGPROP_HD inline double effective_rank_from_eigenvalues(const double* eig, int T) {
  double total = 0;
  for (int i = 0; i < T; ++i) total += eig[i] > 0 ? ::sqrt(eig[i]) : 0.0;
  if (!(total > 0)) return ::nan("");
  double h = 0;
  for (int i = 0; i < T; ++i) {
    const double p = (eig[i] > 0 ? ::sqrt(eig[i]) : 0.0) / total;
    if (p > 0) h -= p * ::log(p);
  }
  return ::exp(h);
}

/// out[0..3] = q, rho, res, eff_rank of a stream with kernel K (T, T) and eigenvalues eig (T) of K.
SIGPROP_HD inline void state_metrics(const double* K, const double* eig, int T, double* out) {
  double tr = 0, total = 0, cos_sum = 0;
  for (int t = 0; t < T; ++t) {
    tr += K[t * T + t];
    for (int s = 0; s < T; ++s) {
      total += K[t * T + s];
      if (s != t) cos_sum += K[t * T + s] / (::sqrt(K[t * T + t]) * ::sqrt(K[s * T + s]));
    }
  }
  out[0] = tr / T;
  out[1] = cos_sum / (static_cast<double>(T) * (T - 1));
  const double centred = tr - total / T;  // ||X - 1 xbar^T||^2 / d
  out[2] = ::sqrt((centred > 0 ? centred : 0.0) / tr);
  out[3] = effective_rank_from_eigenvalues(eig, T);
}

/// out[0..1] = update_ratio, ang_dist between X_{l-1} and X_l from the diagonals of K_{l-1},
/// K_l and C (C_tt = x_{l-1,t} . x_{l,t} / d), each read with a stride: entry t of a diagonal
/// is kprev[t kprev_stride] (stride T + 1 on a (T, T) matrix, 1 on a vector).
SIGPROP_HD inline void step_metrics(const double* kprev, int kprev_stride, const double* k, int k_stride,
                                    const double* c, int c_stride, int T, double* out) {
  double trp = 0, trk = 0, trc = 0, ang = 0;
  for (int t = 0; t < T; ++t) {
    const double p = kprev[static_cast<long>(t) * kprev_stride], q = k[static_cast<long>(t) * k_stride];
    const double x = c[static_cast<long>(t) * c_stride];
    trp += p;
    trk += q;
    trc += x;
    double cs = x / (::sqrt(p) * ::sqrt(q));
    cs = cs < -1.0 ? -1.0 : (cs > 1.0 ? 1.0 : cs);
    ang += ::acos(cs);
  }
  const double diff = trk - 2 * trc + trp;
  out[0] = ::sqrt((diff > 0 ? diff : 0.0) / trp);
  out[1] = ang / (static_cast<double>(T) * 3.14159265358979323846);
}

}  // namespace sigprop::hd
