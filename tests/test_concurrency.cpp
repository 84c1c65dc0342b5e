// [concurrency] Engines called from several threads at once, each with its own spec, give the
// numbers of serial calls (issue 12: "safe concurrent calls from several threads"). Built twice:
// into sigprop_tests, and alone as sigprop_concurrency_tests, which `scripts/test.sh --tsan`
// builds and runs under ThreadSanitizer (a data race there fails the run, halt_on_error=1).
#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/spec.hpp"
#include "mc/engine.hpp"
#include "sigprop/api.hpp"
#include "theory/continuum.hpp"
#include "theory/engine.hpp"

using namespace sigprop;

namespace {

StackSpec small(std::vector<std::string> sets) {
  sets.insert(sets.begin(),
              {"stack.depth=4", "stack.width=16", "stack.heads=2", "stack.tokens=4", "stack.mlp_ratio=2"});
  return resolve_spec("", sets);
}

// Runs every job serially, then all at once on their own threads, and compares the outputs.
void check_parallel_equals_serial(const std::vector<std::function<std::string()>>& jobs) {
  std::vector<std::string> serial;
  for (const auto& j : jobs) serial.push_back(j());
  std::vector<std::string> parallel(jobs.size());
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < jobs.size(); ++i) pool.emplace_back([&, i] { parallel[i] = jobs[i](); });
  for (auto& t : pool) t.join();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    INFO("job " << i);
    CHECK(!serial[i].empty());
    CHECK(parallel[i] == serial[i]);
  }
}

}  // namespace

TEST_CASE("engines run from several threads at once give the numbers of serial runs", "[concurrency]") {
  const std::vector<StackSpec> specs{small({}), small({"stack.norm=post", "stack.activation=tanh"}),
                                     small({"init.sigma_qk2=1", "stack.mask=causal"}),
                                     small({"stack.blocks=mlp", "stack.activation=silu"})};
  theory::TheorySettings ts;
  ts.attn.samples = 64;
  ts.error_batches = 2;
  // Two workers inside each Monte Carlo run (its own pool) on top of the callers' threads, and a
  // progress callback, which the engine calls from its workers one at a time.
  const sim::SimSettings ss = [] {
    sim::SimSettings st;
    st.samples = 4;
    st.seed = 11;
    st.backend = "cpu";
    st.threads = 2;
    return st;
  }();
  std::vector<std::function<std::string()>> jobs;
  for (const StackSpec& s : specs) {
    jobs.emplace_back([&ts, s] { return theory::TheoryEngine(ts).run(s).to_json().dump(); });
    jobs.emplace_back([&ss, s] {
      sim::MonteCarloEngine e(ss);
      int calls = 0;
      e.set_progress([&calls](double, std::string_view) { return ++calls > 0; });
      return e.run(s).to_json().dump();
    });
  }
  check_parallel_equals_serial(jobs);
}

TEST_CASE("the public API from several threads at once gives the numbers of serial calls", "[concurrency][api]") {
  std::vector<std::function<std::string()>> jobs;
  for (const char* norm : {"pre", "none"}) {
    StackSpec s = api::default_spec();
    api::apply_overrides(s, {"stack.depth=4", "stack.width=16", "stack.heads=2", "stack.tokens=4",
                             std::string("stack.norm=") + norm, "stack.qk_scale=1/dh",
                             "stack.branch_scale=1/sqrt(L)"});  // the continuum needs a0/sqrt(L)
    jobs.emplace_back([s] { return api::theory(s).to_json(); });
    jobs.emplace_back([s] {
      api::SimulateSettings st;
      st.samples = 3;
      st.seed = 5;
      return api::simulate(s, st).to_json();
    });
    jobs.emplace_back([s] {
      api::OdeSettings o;
      o.kind = api::OdeKind::Continuum;
      return api::ode(s, o).to_json();
    });
  }
  check_parallel_equals_serial(jobs);
}
