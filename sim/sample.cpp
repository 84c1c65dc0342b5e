// What every Monte Carlo backend shares (sim/sample.hpp).
#include "sim/sample.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/profile.hpp"  // metric_names

namespace sigprop::sim {

void validate_for_simulation(const StackSpec& spec) {
  spec.validate();
  if (spec.weights != WeightDist::Gaussian)
    throw ConfigError(fmt::format("init.weights: the simulate engine draws Gaussian weights only, got \"{}\" "
                                  "(orthogonal weights are implemented by `sigprop spectrum` for dense stacks)",
                                  to_string(spec.weights)));
  if (spec.depth > kMaxDepth)
    throw ConfigError(fmt::format("stack.depth: the simulate engine keys its random streams by a 16-bit layer "
                                  "id, so depth must be <= {}, got {}",
                                  kMaxDepth, spec.depth));
  static const bool names_match = [] {
    const auto& n = metric_names();
    return n.size() == kNumCols && n[kQ] == "q" && n[kRho] == "rho" && n[kRes] == "res" &&
           n[kEffRank] == "eff_rank" && n[kUpdate] == "update_ratio" && n[kAng] == "ang_dist" &&
           n[kGrad] == "grad_var";
  }();
  if (!names_match) throw Error("internal: sim::Col differs from metric_names()");
}

const char* to_string(WeightSampling w) { return w == WeightSampling::Conditional ? "conditional" : "explicit"; }

const char* to_string(InputKernel k) { return k == InputKernel::Exact ? "exact" : "sampled"; }

}  // namespace sigprop::sim
