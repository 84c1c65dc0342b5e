// [depth_returns] theory/depth_returns.hpp: the predicted return of each layer, the effective
// depth over depths 1, 2, 4, ..., L and the predicted knee (docs/theory.md "Depth returns").
// Oracles: closed forms. A Pre-LN ReLU MLP stack with sigma_w2 = sqrt(2), no bias, eps = 0 and
// q0 = 1 adds exactly 1 to q per layer (the branch sees a normalised stream: K_F = sigma_w2^2/2),
// and the branch is uncorrelated with the stream, so cos(x_{l-1}, x_l) = sqrt(q_{l-1}/q_l) =
// sqrt(l/(l+1)): ang_dist_l = atan(1/sqrt(l))/pi. With branch scale 1/sqrt(L), q_l = 1 + l/L and
// ang_dist_l = atan(1/sqrt(L + l - 1))/pi. A branch scale of 0 makes every block the identity.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sigprop/api.hpp"
#include "theory/depth_returns.hpp"
#include "theory/engine.hpp"

namespace th = sigprop::theory;

namespace {

sigprop::StackSpec linear_q_spec(int depth) {
  sigprop::StackSpec s;
  s.depth = depth;
  s.tokens = 4;
  s.blocks = sigprop::Blocks::Mlp;
  s.norm = sigprop::Norm::Pre;
  s.norm_eps = 0;
  s.activation = sigprop::Activation::Relu;
  s.sigma_w2 = std::sqrt(2.0);
  s.sigma_b2 = 0;
  s.q0 = 1;
  s.rho0 = 0.3;
  return s;
}

// Closed-form effective depth of a depth-d stack: sum of atan(1/sqrt(l + off(d)))/max.
double closed_deff(int d, bool inv_sqrt_L) {
  std::vector<double> a;
  for (int l = 1; l <= d; ++l) a.push_back(std::atan(1 / std::sqrt(inv_sqrt_L ? d + l - 1.0 : double(l))));
  double s = 0;
  for (double x : a) s += x / a.front();  // the first layer moves most in both cases
  return s;
}

}  // namespace

TEST_CASE("depth returns: Pre-LN with q growing by 1 per layer matches the closed form", "[depth_returns][analytic]") {
  const sigprop::StackSpec spec = linear_q_spec(64);
  const sigprop::Profile p = th::TheoryEngine().run(spec);
  REQUIRE(p.extras.contains("depth_returns"));
  const th::DepthReturns r = th::depth_returns(p);
  CHECK(r.curve == "prefix");
  REQUIRE(r.layer_return.size() == 64);
  for (int l = 1; l <= 64; ++l) {
    INFO("layer " << l);
    const double want = std::atan(1 / std::sqrt(double(l))) / (std::numbers::pi / 4);
    CHECK(std::abs(r.layer_return[l - 1] - want) < 1e-12);
  }
  REQUIRE(r.depth == std::vector<int>{1, 2, 4, 8, 16, 32, 64});
  for (std::size_t i = 0; i < r.depth.size(); ++i) {
    INFO("depth " << r.depth[i]);
    CHECK(std::abs(r.effective_depth[i] - closed_deff(r.depth[i], false)) < 1e-10);
  }
  // The return per added layer of each doubling relative to the first: 1, 0.80, 0.61, 0.45,
  // 0.33, 0.23 (closed form); the first below 0.25 is the doubling from 32.
  REQUIRE(r.knee.found);
  CHECK(r.knee.knee_depth == 32);
  CHECK(std::abs(r.knee.gain[5] / r.knee.gain[0] - 0.2349) < 1e-3);
  // The extra written by the engine is the same curve.
  const auto& j = p.extras["depth_returns"];
  CHECK(j["knee_depth"].get<double>() == 32);
  CHECK(j["depth"].get<std::vector<int>>() == r.depth);
  CHECK(std::abs(j["effective_depth"][6].get<double>() - closed_deff(64, false)) < 1e-10);
  CHECK(j["curve"] == "prefix");
}

TEST_CASE("depth returns: branch scale 1/sqrt(L) reruns the theory per depth and finds no knee",
          "[depth_returns][analytic]") {
  sigprop::StackSpec spec = linear_q_spec(64);
  spec.branch_scale.kind = sigprop::BranchScaleKind::InvSqrtL;
  CHECK_FALSE(th::depth_independent(spec));
  const sigprop::Profile p = th::TheoryEngine().run(spec);
  // The profile alone knows only its own depth.
  const th::DepthReturns one = th::depth_returns(p);
  CHECK(one.depth == std::vector<int>{64});
  CHECK_FALSE(one.knee.found);
  CHECK(std::abs(one.effective_depth[0] - closed_deff(64, true)) < 1e-9);
  // The engine's extra holds the curve from one run per depth.
  const auto& j = p.extras["depth_returns"];
  CHECK(j["curve"] == "rerun");
  const std::vector<int> depths = j["depth"].get<std::vector<int>>();
  REQUIRE(depths == std::vector<int>{1, 2, 4, 8, 16, 32, 64});
  for (std::size_t i = 0; i < depths.size(); ++i) {
    INFO("depth " << depths[i]);
    CHECK(std::abs(j["effective_depth"][i].get<double>() - closed_deff(depths[i], true)) < 1e-9);
  }
  // Every added layer keeps returning about 0.97 of the first doubling's: no knee, and more
  // effective depth at L = 64 than branch scale 1 (53.2 against 17.8).
  CHECK(j["knee_depth"].is_null());
  const th::DepthReturns one_scale = th::depth_returns(th::TheoryEngine().run(linear_q_spec(64)));
  CHECK(j["effective_depth"][6].get<double>() > 2.5 * one_scale.effective_depth.back());
  // The spec overload gives the same numbers.
  const th::DepthReturns viaspec = th::depth_returns(spec, th::TheorySettings{});
  CHECK(viaspec.curve == "rerun");
  CHECK(viaspec.effective_depth.back() == j["effective_depth"][6].get<double>());
}

TEST_CASE("depth returns: a stack of identity blocks returns nothing", "[depth_returns][analytic]") {
  for (auto blocks : {sigprop::Blocks::Mlp, sigprop::Blocks::AttnMlp}) {
    sigprop::StackSpec spec = linear_q_spec(16);
    spec.blocks = blocks;
    spec.branch_scale.kind = sigprop::BranchScaleKind::Number;
    spec.branch_scale.number = 0;
    spec.norm_eps = 1e-5;
    const th::DepthReturns r = th::depth_returns(th::TheoryEngine().run(spec));
    for (double v : r.layer_return) CHECK(v == 0);
    for (double v : r.effective_depth) CHECK(v == 0);
    // No step gains anything: the knee is the first depth.
    REQUIRE(r.knee.found);
    CHECK(r.knee.knee_depth == 1);
  }
}

TEST_CASE("depth returns: monotone where theory says so", "[depth_returns]") {
  // Pre-LN GELU MLP, default init: q grows, each later layer moves the stream less, so the
  // layer return falls and the effective depth rises with depth but by less than the depth.
  sigprop::StackSpec pre = linear_q_spec(48);
  pre.activation = sigprop::Activation::Gelu;
  pre.sigma_w2 = 1;
  pre.norm_eps = 1e-5;
  const th::DepthReturns r = th::depth_returns(th::TheoryEngine().run(pre));
  CHECK(r.layer_return.front() == 1);
  for (std::size_t l = 1; l < r.layer_return.size(); ++l) CHECK(r.layer_return[l] < r.layer_return[l - 1]);
  for (std::size_t i = 1; i < r.effective_depth.size(); ++i) {
    CHECK(r.effective_depth[i] > r.effective_depth[i - 1]);
    CHECK(r.effective_depth[i] < r.depth[i]);
  }
  for (std::size_t i = 1; i < r.knee.gain.size(); ++i) CHECK(r.knee.gain[i] < r.knee.gain[i - 1]);
  // Post-LN renormalises the stream every block: every layer moves it alike, D = L, no knee.
  sigprop::StackSpec post = pre;
  post.norm = sigprop::Norm::Post;
  const th::DepthReturns rp = th::depth_returns(th::TheoryEngine().run(post));
  for (std::size_t i = 0; i < rp.depth.size(); ++i) CHECK(std::abs(rp.effective_depth[i] - rp.depth[i]) < 1e-6 * rp.depth[i]);
  CHECK_FALSE(rp.knee.found);
}

TEST_CASE("depth returns: helpers and bad input", "[depth_returns][config]") {
  CHECK(th::doubling_grid(1) == std::vector<int>{1});
  CHECK(th::doubling_grid(2) == std::vector<int>{1, 2});
  CHECK(th::doubling_grid(24) == std::vector<int>{1, 2, 4, 8, 16, 24});
  CHECK_THROWS_AS(th::doubling_grid(0), sigprop::ConfigError);
  const double nan = std::nan("");
  // A diverged layer: NaN from there on, the maximum over the finite prefix.
  const std::vector<double> lr = th::layer_returns({nan, 0.2, 0.4, nan, 0.1});
  CHECK(lr[0] == 0.5);
  CHECK(lr[1] == 1);
  CHECK(std::isnan(lr[2]));
  CHECK(std::isnan(lr[3]));
  CHECK(std::isnan(th::effective_depth({nan, 0.2, nan})));
  CHECK(th::effective_depth({nan, 0.1, 0.1, 0.05}) == 2.5);
  sigprop::Profile p = th::TheoryEngine().run(linear_q_spec(4));
  CHECK_THROWS_WITH(th::depth_returns(p, 1.5), Catch::Matchers::Contains("fraction = 1.5"));
  sigprop::Profile bare = sigprop::Profile::make(p.spec, "measured", {"q"});
  CHECK_THROWS_WITH(th::depth_returns(bare), Catch::Matchers::Contains("ang_dist column"));
}

TEST_CASE("depth returns: the facade gives the engine's curve", "[depth_returns][api]") {
  namespace api = sigprop::api;
  sigprop::StackSpec spec = linear_q_spec(16);
  spec.branch_scale.kind = sigprop::BranchScaleKind::InvSqrtL;
  const api::DepthReturns a = api::depth_returns(api::theory(spec));
  const api::DepthReturns b = api::depth_returns(spec);
  CHECK(a.curve == "rerun");
  CHECK(a.depth == std::vector<int>{1, 2, 4, 8, 16});
  CHECK(a.depth == b.depth);
  CHECK(a.effective_depth == b.effective_depth);
  CHECK(a.layer_return == b.layer_return);
  CHECK(a.return_per_added_layer == b.return_per_added_layer);
  CHECK(a.knee_found == b.knee_found);
  CHECK(std::abs(a.effective_depth.back() - closed_deff(16, true)) < 1e-9);
  // A profile without the extra (here a simulated one) is read from its ang_dist column.
  api::SimulateSettings two;
  two.samples = 2;
  const api::DepthReturns s = api::depth_returns(api::simulate(linear_q_spec(8), two));
  CHECK(s.curve == "prefix");
  CHECK(s.depth == std::vector<int>{1, 2, 4, 8});
  CHECK(s.layer_return.size() == 8);
  CHECK_THROWS_WITH(api::depth_returns(spec, {}, 0), Catch::Matchers::Contains("fraction = 0"));
  const api::DepthReturns k = api::depth_returns(linear_q_spec(64), {}, 0.25);
  CHECK(k.knee_found);
  CHECK(k.knee_depth == 32);
}
