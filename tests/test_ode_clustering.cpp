// Self-attention dynamics on the sphere (theory/clustering.hpp, docs/ode.md §2):
// the n-particle flow against its equiangular reduction and a closed form, and clustering
// of generic starts where the theorems of Geshkovski et al. (2023) say it happens.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/spec.hpp"
#include "tests/tolerance.hpp"
#include "theory/clustering.hpp"

using namespace sigprop;
using namespace sigprop::theory;
using sigprop::test::Tol;

TEST_CASE("clustering flow from an equiangular start follows the equiangular ODE", "[analytic][ode]") {
  // By symmetry an equiangular configuration stays equiangular; its inner product obeys the
  // scalar ODE of docs/ode.md §2. Both are integrated at tolerance 1e-10 per step, so the
  // particle system's mean inner product, its spread and |x_i| - 1 agree to ~1e-9 (asserted 1e-8).
  for (AttnDynamics v : {AttnDynamics::SA, AttnDynamics::USA})
    for (double beta : {0.5, 4.0})
      for (double rho0 : {-0.15, 0.3}) {
        ClusteringSettings st;
        st.variant = v;
        st.beta = beta;
        st.t_end = 6;
        st.points = 30;
        ClusteringTrace tr = clustering_flow(equiangular_start(6, 9, rho0), st);
        for (size_t i = 0; i < tr.t.size(); ++i) {
          INFO((v == AttnDynamics::SA ? "SA" : "USA") << " beta " << beta << " rho0 " << rho0 << " t " << tr.t[i]);
          SIGPROP_CHECK_CLOSE(tr.rho[i], tr.rho_eq[i], (Tol{1e-8, 0}));
          CHECK(tr.rho_max[i] - tr.rho_min[i] < 1e-8);
          CHECK(tr.norm_dev[i] < 1e-8);
        }
        CHECK(tr.rho.back() > rho0);  // the equiangular ODE increases rho towards 1
      }
}

TEST_CASE("clustering at beta = 0 has a closed form", "[analytic][ode]") {
  // beta = 0 (SA and USA coincide): rho' = (2/n)(1 - rho)(1 + (n-1) rho), so
  // (1 + (n-1) rho)/(1 - rho) = A e^{2t}, rho(t) = (A e^{2t} - 1)/(A e^{2t} + n - 1).
  const int n = 5;
  const double rho0 = 0.05;
  ClusteringSettings st;
  st.beta = 0;
  st.t_end = 3;
  st.points = 12;
  ClusteringTrace tr = clustering_flow(equiangular_start(n, n, rho0), st);
  const double A = (1 + (n - 1) * rho0) / (1 - rho0);
  for (size_t i = 0; i < tr.t.size(); ++i) {
    const double e = A * std::exp(2 * tr.t[i]);
    SIGPROP_CHECK_CLOSE(tr.rho[i], (e - 1) / (e + n - 1), (Tol{1e-8, 0}));
    SIGPROP_CHECK_CLOSE(tr.rho_eq[i], (e - 1) / (e + n - 1), (Tol{1e-8, 0}));
  }
}

TEST_CASE("generic random tokens cluster to one point", "[ode]") {
  // Geshkovski, Letrouit, Polyanskiy, Rigollet (2023): for d >= 3 almost every start converges
  // to a single cluster (USA: every beta >= 0; SA: the moderate beta used here). Tokens drawn
  // as MODEL.md's input (rho0 = 0: uniform on S^2), n = 8, d = 3, seed fixed. Asserted: the
  // smallest pairwise inner product exceeds 0.99 at t = 40 and the mean increased.
  for (AttnDynamics v : {AttnDynamics::SA, AttnDynamics::USA}) {
    ClusteringSettings st;
    st.variant = v;
    st.beta = 1.0;
    st.t_end = 40;
    st.points = 8;
    st.abs_tol = st.rel_tol = 1e-8;
    ClusteringTrace tr = clustering_flow(random_start(8, 3, 0.0, 7), st);
    INFO((v == AttnDynamics::SA ? "SA" : "USA")
         << ": rho(0) = " << tr.rho.front() << ", rho_min(t_end) = " << tr.rho_min.back());
    CHECK(tr.rho_min.back() > 0.99);
    CHECK(tr.rho.back() > tr.rho.front());
    CHECK(tr.norm_dev.back() < 1e-6);
  }
}

TEST_CASE("clustering profile and bad input", "[ode][config]") {
  StackSpec s = resolve_spec("", {"stack.tokens=4", "stack.width=3", "stack.heads=1", "input.rho0=0.2"});
  ClusteringSettings st;
  st.points = 5;
  st.t_end = 1;
  Profile p = clustering_profile(s, st);
  CHECK(p.layers() == 6);
  CHECK(p.at(5, "t") == 1.0);
  st.equiangular = true;
  CHECK_THROWS_WITH(clustering_profile(s, st), Catch::Contains("stack.width"));
  st.equiangular = false;
  st.beta = -1;
  CHECK_THROWS_WITH(clustering_profile(s, st), Catch::Contains("beta:"));
}
