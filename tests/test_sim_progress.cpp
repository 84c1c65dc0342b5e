// [sim] The progress callback sees every sample once, in increasing counts, and cannot
// change a number.
#include <catch2/catch.hpp>

#include <vector>

#include "core/spec.hpp"
#include "mc/engine.hpp"

TEST_CASE("progress reports every sample and leaves results unchanged", "[sim]") {
  sigprop::StackSpec s = sigprop::resolve_spec(
      "", {"stack.depth=2", "stack.width=16", "stack.heads=2", "stack.tokens=4", "stack.mlp_ratio=2"});
  sigprop::sim::SimSettings plain{.samples = 5, .seed = 3, .backend = "reference", .threads = 2};
  sigprop::sim::SimSettings watched = plain;
  std::vector<int> seen;
  watched.progress = [&](int done, int total) {
    CHECK(total == 5);
    seen.push_back(done);
  };
  auto a = sigprop::sim::MonteCarloEngine(plain).run(s);
  auto b = sigprop::sim::MonteCarloEngine(watched).run(s);
  CHECK(seen == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(a.to_json() == b.to_json());
}
