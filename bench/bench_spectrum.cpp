// Timings of the Jacobian-spectrum engines (theory/spectrum.hpp, sim/jacobian.hpp).
//
//   build/bench/bench_spectrum
//   taskset -c 0 build/bench/bench_spectrum --benchmark_filter=density
//
// density/*: the free-probability density of J_L J_L^T for L = 100 on a 1000-point grid (goal:
//   under a second). relu: two-point law of phi'^2, chi in closed form. tanh_fixed: the stack
//   starts at its fixed point q* (one law of phi'^2 shared by all layers, 256 quadrature atoms).
//   tanh_transient: q0 = 1 != q*, so every layer until q has converged (to 1e-10) has its own law.
// svd/1024: Eigen BDCSVD (singular values only) of one 1024 x 1024 Gaussian matrix, the exact SVD
//   each Monte Carlo sample ends with.
// mc_sample/1024: one Monte Carlo sample of a dense relu stack, d = 1024, L = 4 (per layer one
//   d^3 GEMM for P D W and one for P^T P, then the SVD).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <Eigen/Dense>

#include "core/rng.hpp"
#include "core/spec.hpp"
#include "sim/jacobian.hpp"
#include "theory/meanfield.hpp"
#include "theory/spectrum.hpp"

namespace {

sigprop::StackSpec dense_spec(const std::string& act, int depth, double sw2, double sb2, const std::string& w) {
  sigprop::StackSpec s;
  for (const std::string& o : {std::string("stack.blocks=dense"), std::string("stack.norm=none"),
                               std::string("stack.residual=false"), std::string("stack.tokens=2"),
                               std::string("stack.heads=1"), "stack.activation=" + act,
                               "stack.depth=" + std::to_string(depth), "init.weights=" + w})
    sigprop::apply_override(s, o);
  s.sigma_w2 = sw2;
  s.sigma_b2 = sb2;
  return s;
}

void run_density(benchmark::State& state, const sigprop::StackSpec& s) {
  const auto mom = sigprop::theory::spectrum_moments(s);
  const std::vector<double> x = sigprop::theory::default_spectrum_grid(mom, 1000);
  int failed = 0;
  for (auto _ : state) {
    auto d = sigprop::theory::spectrum_density(s, x);
    failed = d.failed;
    benchmark::DoNotOptimize(d.density.data());
  }
  state.counters["failed_points"] = failed;
}

void BM_density_relu(benchmark::State& state) {
  run_density(state, dense_spec("relu", 100, 2.0, 0.0, "gaussian"));
}
void BM_density_tanh_fixed(benchmark::State& state) {
  auto s = dense_spec("tanh", 100, 1.76, 0.05, "orthogonal");
  s.q0 = sigprop::theory::dense_mean_field(sigprop::Activation::Tanh, 1.76, 0.05).q_star;
  run_density(state, s);
}
void BM_density_tanh_transient(benchmark::State& state) {
  run_density(state, dense_spec("tanh", 100, 1.76, 0.05, "orthogonal"));
}

void BM_svd(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  Eigen::MatrixXd G(d, d);
  sigprop::NormalStream(1, 2).fill(G.data(), static_cast<size_t>(d) * d);
  for (auto _ : state) {
    Eigen::BDCSVD<Eigen::MatrixXd> svd(G);
    benchmark::DoNotOptimize(svd.singularValues().data());
  }
}

void BM_mc_sample(benchmark::State& state) {
  auto s = dense_spec("relu", 4, 2.0, 0.0, "gaussian");
  s.width = static_cast<int>(state.range(0));
  sigprop::sim::JacobianSettings st;
  st.samples = 1;
  for (auto _ : state) {
    auto r = sigprop::sim::jacobian_sample(s, st, 0);
    benchmark::DoNotOptimize(r.sv2.data());
  }
}

}  // namespace

BENCHMARK(BM_density_relu)->Name("density/relu/L100/grid1000")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_density_tanh_fixed)->Name("density/tanh_fixed/L100/grid1000")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_density_tanh_transient)
    ->Name("density/tanh_transient/L100/grid1000")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(BM_svd)->Name("svd")->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mc_sample)->Name("mc_sample/relu/L4")->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
