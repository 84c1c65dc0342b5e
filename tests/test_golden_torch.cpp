// [golden]: the Monte Carlo backends against PyTorch, an independent implementation of
// MODEL.md §1. tests/golden/torch/*.json are written by tools/torch_stack.py golden: for a
// tiny spec and one sample it draws the weights from sigprop's random streams with its own
// NumPy Philox4x32-10 + Box-Muller, runs the stack in float64 torch, backpropagates Delta_L
// with autograd and computes every metric of MODEL.md §2 with torch. Here each backend, on
// the same streams, must reproduce the weights, every X_l, every Delta_l and the metrics.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/blocks.hpp"
#include "core/profile.hpp"
#include "core/rng.hpp"
#include "core/spec.hpp"
#include "mc/backends.hpp"

namespace fs = std::filesystem;
using Vec = std::vector<double>;

namespace {

const fs::path kDir = fs::path(SIGPROP_SOURCE_DIR) / "tests" / "golden" / "torch";

std::vector<fs::path> golden_files() {
  std::vector<fs::path> files;
  if (fs::is_directory(kDir))
    for (const auto& e : fs::directory_iterator(kDir))
      if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Largest |a - b| over the array, relative to the array's largest |b| (at least 1).
double scaled_max_diff(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / scale;
}

struct Case {
  std::string name;
  nlohmann::json j;
  sigprop::StackSpec spec;
  uint64_t seed;
  int sample;
};

Case load(const fs::path& p) {
  std::ifstream in(p);
  Case c{p.stem().string(), nlohmann::json::parse(in), {}, 0, 0};
  c.spec = sigprop::spec_from_json(c.j.at("spec"));
  c.seed = c.j.at("seed").get<uint64_t>();
  c.sample = c.j.at("sample").get<int>();
  return c;
}

}  // namespace

TEST_CASE("golden torch: the files exist", "[golden][sim]") { REQUIRE(golden_files().size() >= 10); }

TEST_CASE("golden torch: NumPy's re-implementation of the streams gives sigprop's weights", "[golden][sim][rng]") {
  using sigprop::sim::StreamKind;
  for (const auto& path : golden_files()) {
    Case c = load(path);
    INFO(c.name);
    const auto& w = c.j.at("weights_layer1_first16");
    const int d = c.spec.width, R = c.spec.mlp_width();
    const double beta = sigprop::weight_beta(c.spec);
    struct Item {
      const char* key;
      StreamKind kind;
      double sd;
    };
    const std::vector<Item> items = {
        {"wq", StreamKind::Wq, std::sqrt(c.spec.sigma_qk2 / d)},   {"wk", StreamKind::Wk, std::sqrt(c.spec.sigma_qk2 / d)},
        {"wv", StreamKind::Wv, beta * std::sqrt(c.spec.sigma_w2 / d)}, {"wo", StreamKind::Wo, beta * std::sqrt(c.spec.sigma_w2 / d)},
        {"w1", StreamKind::W1, beta * std::sqrt(c.spec.sigma_w2 / d)}, {"w2", StreamKind::W2, beta * std::sqrt(c.spec.sigma_w2 / R)},
        {"b1", StreamKind::B1, std::sqrt(c.spec.sigma_b2)},           {"b2", StreamKind::B2, std::sqrt(c.spec.sigma_b2)},
        {"wd", StreamKind::Wd, beta * std::sqrt(c.spec.sigma_w2 / d)}, {"bd", StreamKind::Bd, std::sqrt(c.spec.sigma_b2)}};
    int checked = 0;
    for (const auto& it : items) {
      if (!w.contains(it.key)) continue;
      const Vec ref = w.at(it.key).get<Vec>();
      Vec mine(ref.size());
      sigprop::NormalStream(c.seed, sigprop::stream_id(c.sample, 1, static_cast<uint64_t>(it.kind), 0))
          .fill(mine.data(), mine.size());
      for (std::size_t i = 0; i < ref.size(); ++i) {
        INFO(it.key << "[" << i << "]");
        CHECK(std::abs(mine[i] * it.sd - ref[i]) <= 1e-14 * std::max(1.0, std::abs(ref[i])));
      }
      ++checked;
    }
    CHECK(checked >= 2);
  }
}

TEST_CASE("golden torch: every backend reproduces X_l, Delta_l and the metrics of PyTorch", "[golden][sim]") {
  struct B {
    const char* backend;
    const char* precision;
  };
  for (B b : {B{"reference", "double"}, B{"cpu", "double"}, B{"cpu", "float"}}) {
    const bool fp32 = std::string(b.precision) == "float";
    const double eps = fp32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
    for (const auto& path : golden_files()) {
      Case c = load(path);
      INFO(c.name << " on " << b.backend << "/" << b.precision);
      auto be = sigprop::sim::make_stack_backend(c.spec, c.seed, b.backend, b.precision);
      const int L = c.spec.depth;
      const auto X = c.j.at("X").get<std::vector<Vec>>();
      const auto D = c.j.at("Delta").get<std::vector<Vec>>();
      REQUIRE(static_cast<int>(X.size()) == L + 1);
      // One block from the golden input: rounding of the inputs (float) plus a few hundred
      // operations per output, each within eps; a wrong formula is off by O(1).
      const double tol = 256 * eps;
      CHECK(scaled_max_diff(be->input(c.sample), X[0]) <= tol);
      CHECK(scaled_max_diff(be->output_grad(c.sample), D[L]) <= tol);
      for (int l = 1; l <= L; ++l) {
        INFO("layer " << l);
        CHECK(scaled_max_diff(be->block_forward(c.sample, l, X[l - 1]), X[l]) <= tol);
        CHECK(scaled_max_diff(be->block_backward(c.sample, l, X[l - 1], D[l]), D[l - 1]) <= tol);
      }
      // Metrics of the whole run (errors compound over L blocks; ang_dist = arccos(c)/pi
      // turns an error e in c near 1 into sqrt(2e)/pi, hence its own absolute bound).
      const auto names = c.j.at("metric_names").get<std::vector<std::string>>();
      REQUIRE(names == sigprop::metric_names());
      const auto ref = c.j.at("metrics");
      auto m = be->run_sample(c.sample);
      for (int l = 0; l <= L; ++l)
        for (std::size_t k = 0; k < names.size(); ++k) {
          INFO("layer " << l << " metric " << names[k]);
          if (ref[l][k].is_null()) {
            CHECK(std::isnan(m.values[l][k]));
            continue;
          }
          const double want = ref[l][k].get<double>(), got = m.values[l][k];
          const double t = names[k] == "ang_dist" ? std::sqrt(2 * 1024 * eps) / 3.14159 + 1024 * eps
                                                  : 1024 * eps * std::max(1.0, std::abs(want));
          CHECK(std::abs(got - want) <= t);
        }
    }
  }
}
