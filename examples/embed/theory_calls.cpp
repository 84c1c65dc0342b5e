// The cost of one in-process theory call, as a simulator's inner loop sees it: N calls of the
// infinite-width theory on one spec, wall time per call.
//
//   theory_calls [N] [table.key=value ...]   (default N = 1000, the default spec at depth 24
//                                             with 1/dh attention)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sigprop/sigprop.hpp"

int main(int argc, char** argv) {
  try {
    const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    std::vector<std::string> sets{"stack.depth=24", "stack.qk_scale=1/dh"};
    for (int i = 2; i < argc; ++i) sets.emplace_back(argv[i]);
    sigprop::StackSpec spec = sigprop::api::default_spec();
    sigprop::api::apply_overrides(spec, sets);
    double checksum = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) checksum += sigprop::api::theory(spec).values("q").back();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d theory calls: %.3f s, %.3f ms per call (q_L = %.6g)\n", n, s, 1e3 * s / n, checksum / n);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "theory_calls: %s\n", e.what());
    return 1;
  }
}
