// [sim] The progress callback sees every sample once, in increasing counts, and cannot
// change a number.
#include <catch2/catch.hpp>

#include <string_view>
#include <vector>

#include "core/spec.hpp"
#include "mc/engine.hpp"

TEST_CASE("progress reports every sample and leaves results unchanged", "[sim]") {
  sigprop::StackSpec s = sigprop::resolve_spec(
      "", {"stack.depth=2", "stack.width=16", "stack.heads=2", "stack.tokens=4", "stack.mlp_ratio=2"});
  sigprop::sim::SimSettings plain;
  plain.samples = 5;
  plain.seed = 3;
  plain.backend = "reference";
  plain.threads = 2;
  std::vector<double> seen;
  sigprop::sim::MonteCarloEngine watched(plain);
  watched.set_progress([&](double f, std::string_view) {
    seen.push_back(f);
    return true;
  });
  auto a = sigprop::sim::MonteCarloEngine(plain).run(s);
  auto b = watched.run(s);
  CHECK(seen == std::vector<double>{0.2, 0.4, 0.6, 0.8, 1.0});
  CHECK(a.to_json() == b.to_json());
}
