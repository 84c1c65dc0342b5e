// [hd] The host/device maths of core/hd_math.hpp, compiled here by the host compiler: the same
// functions run inside the CUDA kernels (cuda/kernels.cu), so these CPU tests guard the GPU
// backend's random numbers, activations, row operations and metric formulas without a GPU.
// Oracles: Random123 itself, NormalStream, core/metrics.cpp, closed forms and central differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <cstdint>
#include <limits>
#include <vector>

#include <Eigen/Dense>
#include <Random123/boxmuller.hpp>
#include <Random123/philox.h>

#include "core/hd_math.hpp"
#include "core/metrics.hpp"
#include "core/rng.hpp"
#include "core/spec.hpp"

namespace hd = sigprop::hd;

namespace {

std::vector<double> normals(uint64_t seed, uint64_t stream, size_t n) {
  std::vector<double> v(n);
  sigprop::NormalStream(seed, stream).fill(v.data(), n);
  return v;
}

}  // namespace

TEST_CASE("hd::philox4x32_10 is Random123's Philox4x32-10 bit for bit", "[hd][analytic]") {
  r123::Philox4x32 gen;
  uint64_t state = 0x9e3779b97f4a7c15ULL;  // splitmix-style walk over counters and keys
  auto next = [&] {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  int bad = 0;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t a = next(), b = next(), k = next();
    r123::Philox4x32::ctr_type c = {{static_cast<uint32_t>(a), static_cast<uint32_t>(a >> 32),
                                     static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32)}};
    r123::Philox4x32::key_type key = {{static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32)}};
    const auto r = gen(c, key);
    const hd::U32x4 h = hd::philox4x32_10(hd::U32x4{{c[0], c[1], c[2], c[3]}}, key[0], key[1]);
    for (int j = 0; j < 4; ++j) bad += r[j] != h.v[j];
  }
  CHECK(bad == 0);
}

TEST_CASE("hd::stream_id is sigprop::stream_id", "[hd][analytic]") {
  for (uint64_t a : {0ULL, 1ULL, 65535ULL, 70000ULL})
    for (uint64_t b : {0ULL, 3ULL, 65535ULL})
      for (uint64_t c : {0ULL, 13ULL})
        for (uint64_t d : {0ULL, 7ULL, 65536ULL}) CHECK(hd::stream_id(a, b, c, d) == sigprop::stream_id(a, b, c, d));
}

TEST_CASE("hd::normal is r123::boxmuller on NormalStream's counters, and NormalStream's numbers", "[hd][analytic]") {
  // Against Random123's own boxmuller on the host: the same formula and the same libm calls,
  // so bit for bit. Against NormalStream::fill (vectorised with libmvec, a few ulp from the
  // scalar libm): 1e-14 absolute on numbers |z| < 7, and equal after rounding to float except
  // where a double sits within those ulps of a float rounding boundary (~1e-7 per number).
  r123::Philox4x32 gen;
  size_t bitwise_bad = 0, float_bad = 0, total = 0;
  double worst = 0;
  for (uint64_t seed : {uint64_t{0}, uint64_t{77}, uint64_t{0xdeadbeefcafef00dULL}})
    for (uint64_t stream : {sigprop::stream_id(0, 1, 4, 0), sigprop::stream_id(65535, 12, 8, 3), ~uint64_t{0}}) {
      const size_t n = 2001;
      const std::vector<double> ref = normals(seed, stream, n);
      for (size_t i = 0; i < n; ++i) {
        const uint64_t block = i / 2;
        r123::Philox4x32::ctr_type c = {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                         static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
        r123::Philox4x32::key_type key = {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
        const auto r = gen(c, key);
        const r123::double2 z = r123::boxmuller((static_cast<uint64_t>(r[1]) << 32) | r[0],
                                                (static_cast<uint64_t>(r[3]) << 32) | r[2]);
        const double h = hd::normal(seed, stream, i);
        bitwise_bad += h != (i % 2 ? z.y : z.x);
        worst = std::max(worst, std::abs(h - ref[i]));
        float_bad += static_cast<float>(h) != static_cast<float>(ref[i]);
        ++total;
      }
    }
  INFO("worst |hd - NormalStream| = " << worst << ", float mismatches " << float_bad << " of " << total);
  CHECK(bitwise_bad == 0);
  CHECK(worst <= 1e-14);
  CHECK(float_bad <= 1);
}

TEST_CASE("hd::normal_pair at large block numbers and sample ids", "[hd][analytic]") {
  // The device draws block i/2 directly: counters above 2^32 must carry into the second word.
  const uint64_t stream = sigprop::stream_id(65535, 65535, 13, 65535);
  std::vector<double> v(4);
  sigprop::NormalStream(5, stream).fill(v.data(), 4, (uint64_t{1} << 33) - 2);
  for (int i = 0; i < 4; ++i) CHECK(std::abs(hd::normal(5, stream, (uint64_t{1} << 33) - 2 + i) - v[i]) <= 1e-14);
}

TEST_CASE("hd activations: closed forms and derivatives by central differences", "[hd][analytic]") {
  using A = hd::Act;
  const double inv_sqrt2 = 1 / std::sqrt(2.0);
  auto ref = [&](A a, double x) {  // MODEL.md §1, written independently with <cmath>
    switch (a) {
      case A::Relu: return std::max(x, 0.0);
      case A::Gelu: return x * 0.5 * (1 + std::erf(x * inv_sqrt2));
      case A::Tanh: return std::tanh(x);
      case A::Erf: return std::erf(x);
      case A::Silu: return x / (1 + std::exp(-x));
      case A::Linear: return x;
      case A::GeluTanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    }
    return std::nan("");
  };
  for (A a : {A::Relu, A::Gelu, A::Tanh, A::Erf, A::Silu, A::Linear, A::GeluTanh}) {
    for (double x = -6.0; x <= 6.0; x += 0.173) {
      INFO("activation " << static_cast<int>(a) << " at x = " << x);
      // gelu via erfc(-x/sqrt2) vs 1 + erf(x/sqrt2): they differ by the rounding of 1 + erf
      CHECK(std::abs(hd::act_forward(a, x) - ref(a, x)) <= 1e-15 * (1 + std::abs(x)));
      // h = 1e-5: truncation h^2 |phi'''| / 6 < 1e-10, round-off eps |phi| / h < 1e-10
      const double h = 1e-5;
      if (a == A::Relu && std::abs(x) < 2 * h) continue;
      const double fd = (hd::act_forward(a, x + h) - hd::act_forward(a, x - h)) / (2 * h);
      CHECK(std::abs(hd::act_derivative(a, x) - fd) <= 1e-8);
      // the float instantiation (what the kernels run) within a few float ulps of double
      const float xf = static_cast<float>(x);
      CHECK(std::abs(hd::act_forward(a, xf) - hd::act_forward(a, static_cast<double>(xf))) <=
            4e-7 * (1 + std::abs(x)));
      CHECK(std::abs(hd::act_derivative(a, xf) - hd::act_derivative(a, static_cast<double>(xf))) <= 1e-6);
    }
  }
}

TEST_CASE("hd activations: the combined and value-reusing forms agree with act_forward/act_derivative",
          "[hd][analytic]") {
  using A = hd::Act;
  auto check = [](auto x) {
    using Real = decltype(x);
    for (A a : {A::Relu, A::Gelu, A::Tanh, A::Erf, A::Silu, A::Linear, A::GeluTanh}) {
      INFO("activation " << static_cast<int>(a) << " at x = " << x << (sizeof(Real) == 4 ? " (float)" : ""));
      Real f = 0, df = 0;
      hd::act_forward_derivative(a, x, &f, &df);
      CHECK(f == hd::act_forward(a, x));  // bitwise: the theory quadratures see the same numbers
      CHECK(df == hd::act_derivative(a, x));
      // phi' from y = phi(x): y / x and 1 - y^2 add a few roundings (relative to max(1, |phi'|))
      const Real d_ref = hd::act_derivative(a, x);
      const double tol = sizeof(Real) == 4 ? 4e-6 : 1e-14;
      CHECK(std::abs(static_cast<double>(hd::act_derivative_from_value(a, x, f) - d_ref)) <=
            tol * (1 + std::abs(static_cast<double>(d_ref))));
    }
  };
  for (double x = -9.0; x <= 9.0; x += 0.0731) {
    check(x);
    check(static_cast<float>(x));
  }
  check(0.0);
  check(0.0f);
}

TEST_CASE("hd norm rows: moments of the output and J^T by central differences", "[hd][analytic]") {
  const int d = 37;
  std::vector<double> x(d), y(d), dy(d), dx(d);
  sigprop::NormalStream(3, 1).fill(x.data(), d);
  sigprop::NormalStream(3, 2).fill(dy.data(), d);
  for (int i = 0; i < d; ++i) x[i] = 1.7 * x[i] + 0.4;
  for (bool ln : {true, false}) {
    for (double eps : {0.0, 1e-5, 0.3}) {
      const double rstd = hd::norm_row_forward(x.data(), y.data(), d, ln, eps);
      double mean = 0, ms = 0, mx = 0, mx2 = 0;
      for (int i = 0; i < d; ++i) {
        mean += y[i] / d;
        ms += y[i] * y[i] / d;
        mx += x[i] / d;
        mx2 += x[i] * x[i] / d;
      }
      const double var = ln ? mx2 - mx * mx : mx2;  // the second moment N divides by
      INFO("layernorm " << ln << " eps " << eps);
      if (ln) CHECK(std::abs(mean) <= 1e-14);
      CHECK(std::abs(ms - var / (var + eps)) <= 1e-13);  // mean(y^2) = var / (var + eps)
      CHECK(std::abs(rstd - 1 / std::sqrt(var + eps)) <= 1e-13);
      hd::norm_row_backward(dy.data(), y.data(), rstd, dx.data(), d, ln);
      const double h = 1e-6;
      for (int i = 0; i < d; ++i) {
        std::vector<double> xp = x, xm = x, yp(d), ym(d);
        xp[i] += h;
        xm[i] -= h;
        hd::norm_row_forward(xp.data(), yp.data(), d, ln, eps);
        hd::norm_row_forward(xm.data(), ym.data(), d, ln, eps);
        double fd = 0;
        for (int j = 0; j < d; ++j) fd += dy[j] * (yp[j] - ym[j]) / (2 * h);
        CHECK(std::abs(dx[i] - fd) <= 1e-7);  // truncation ~h^2, round-off ~1e-16 sqrt(d) / h
      }
    }
  }
}

TEST_CASE("hd softmax rows: masked normalisation and the logit gradient by central differences",
          "[hd][analytic]") {
  const int T = 9;
  std::vector<double> z(T), a(T), da(T), g(T);
  sigprop::NormalStream(4, 1).fill(z.data(), T);
  sigprop::NormalStream(4, 2).fill(da.data(), T);
  for (auto& v : z) v *= 3;
  const double sc = 0.37;
  for (int n : {1, 4, T}) {
    hd::softmax_row_forward(z.data(), a.data(), T, n);
    double sum = 0;
    for (int s = 0; s < n; ++s) {
      sum += a[s];
      CHECK(std::abs(a[s] / a[0] - std::exp(z[s] - z[0])) <= 1e-13 * std::exp(z[s] - z[0]));
    }
    CHECK(std::abs(sum - 1) <= 1e-15 * T);
    for (int s = n; s < T; ++s) CHECK(a[s] == 0.0);
    // g = sc * dsoftmax^T da is the gradient of <da, softmax(sc w)> w.r.t. w at w = z / sc
    hd::softmax_row_backward(a.data(), da.data(), g.data(), T, sc);
    const double h = 1e-6;
    for (int s = 0; s < T; ++s) {
      std::vector<double> zp = z, zm = z, ap(T), am(T);
      zp[s] += sc * h;
      zm[s] -= sc * h;
      hd::softmax_row_forward(zp.data(), ap.data(), T, n);
      hd::softmax_row_forward(zm.data(), am.data(), T, n);
      double fd = 0;
      for (int t = 0; t < T; ++t) fd += da[t] * (ap[t] - am[t]) / (2 * h);
      INFO("n " << n << " s " << s);
      CHECK(std::abs(g[s] - fd) <= 1e-8);
    }
  }
}

TEST_CASE("hd layer metrics equal core/metrics.cpp on the same kernels", "[hd][analytic]") {
  // Same formulas in a different summation order: 1e-12 relative (T^2 = 144 terms in double).
  const int T = 12, d = 20;
  for (int trial = 0; trial < 3; ++trial) {
    Eigen::MatrixXd X0(T, d), X1(T, d);
    std::vector<double> v = normals(9, trial, 2 * static_cast<size_t>(T) * d);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < d; ++i) {
        X0(t, i) = v[static_cast<size_t>(t) * d + i] + (trial == 2 ? 3.0 : 0.3);  // trial 2: near rank 1
        X1(t, i) = 0.8 * X0(t, i) + 0.6 * v[static_cast<size_t>(T) * d + t * d + i];
      }
    const Eigen::MatrixXd K0 = X0 * X0.transpose() / d, K1 = X1 * X1.transpose() / d, C = X0 * X1.transpose() / d;
    const sigprop::StateMetrics ref = sigprop::state_metrics_from_kernel(K1);
    const sigprop::StepMetrics step = sigprop::step_metrics_from_kernels(K0, K1, C);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> K1r = K1, K0r = K0, Cr = C;
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(K1, Eigen::EigenvaluesOnly);
    std::vector<double> eig(es.eigenvalues().data(), es.eigenvalues().data() + T);
    double out[4], st[2];
    hd::state_metrics(K1r.data(), eig.data(), T, out);
    hd::step_metrics(K0r.data(), T + 1, K1r.data(), T + 1, Cr.data(), T + 1, T, st);
    INFO("trial " << trial);
    CHECK(std::abs(out[0] - ref.q) <= 1e-12 * ref.q);
    CHECK(std::abs(out[1] - ref.rho) <= 1e-12);
    CHECK(std::abs(out[2] - ref.res) <= 1e-12);
    CHECK(std::abs(out[3] - ref.eff_rank) <= 1e-12 * T);
    CHECK(std::abs(st[0] - step.update_ratio) <= 1e-12);
    CHECK(std::abs(st[1] - step.ang_dist) <= 1e-12);
  }
  // The all-zero stream: eff_rank is NaN in both.
  std::vector<double> zero(4, 0.0);
  CHECK(std::isnan(hd::effective_rank_from_eigenvalues(zero.data(), 4)));
}

TEST_CASE("hd::Act lists sigprop::Activation in the same order", "[hd][analytic]") {
  CHECK(static_cast<int>(hd::Act::Relu) == static_cast<int>(sigprop::Activation::Relu));
  CHECK(static_cast<int>(hd::Act::Gelu) == static_cast<int>(sigprop::Activation::Gelu));
  CHECK(static_cast<int>(hd::Act::Tanh) == static_cast<int>(sigprop::Activation::Tanh));
  CHECK(static_cast<int>(hd::Act::Erf) == static_cast<int>(sigprop::Activation::Erf));
  CHECK(static_cast<int>(hd::Act::Silu) == static_cast<int>(sigprop::Activation::Silu));
  CHECK(static_cast<int>(hd::Act::Linear) == static_cast<int>(sigprop::Activation::Linear));
}
