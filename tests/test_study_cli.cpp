// sigprop study (validate/depth_study.hpp): the whole pipeline on a tiny model, its resume,
// the study of several seeds and architectures with every cause measured, and bad input.
#include <cmath>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "shared/cli_run.hpp"

namespace fs = std::filesystem;
using sigprop::test::cli::run_sigprop;
using sigprop::test::cli::scratch_dir;
using sigprop::test::cli::slurp;

namespace {
// The GPL-3 text ships with every Debian system (base-files): 35 KB of English.
const char* kCorpus = "/usr/share/common-licenses/GPL-3";
const std::string kTiny =
    " --set stack.width=16 --set stack.heads=2 --set stack.tokens=16 --steps 20 --batch 4 --lr 1e-2 --warmup 2"
    " --val-every 10 --val-batches 2 --eval-tokens 512 --threads 2 --no-figures -q";
}  // namespace

TEST_CASE("sigprop study trains every depth and writes the tables then resumes to the same numbers", "[cli]") {
  const fs::path dir = scratch_dir("study"), out = dir / "study";
  fs::remove_all(out);
  auto r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + out.string() + " --depths 1,2,3" + kTiny,
                       dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("index.html") != std::string::npos);
  for (const char* f : {"study.json", "depth.csv", "layers.csv", "report.md", "index.html", "figures/loss_vs_depth.gp",
                        "figures/loss_vs_depth.dat", "runs/L3/final.safetensors"})
    CHECK(fs::exists(out / f));
  const std::string first = slurp(out / "study.json");
  const nlohmann::json j0 = nlohmann::json::parse(first);
  REQUIRE(j0["archs"].size() == 1);
  CHECK(j0["layout"] == "runs/L<depth>/");  // one seed, one architecture: the layout of issue 5
  const nlohmann::json& j = j0["archs"][0];
  REQUIRE(j["depths"].size() == 3);
  CHECK(j.contains("fit"));
  for (int i = 0; i < 3; ++i) {
    const auto& d = j["depths"][i];
    CHECK(d["depth"].get<int>() == i + 1);
    CHECK(d["runs"][0]["ablation"]["increase"].size() == static_cast<size_t>(i + 1));
    // 20 steps on English text take the byte model well below its initial ln 256 nats
    CHECK(d["val_loss"].get<double>() < d["init_val_loss"].get<double>() - 1.0);
  }
  // layers.csv: a header and one row per block of every depth (1 + 2 + 3)
  const std::string layers = slurp(out / "layers.csv");
  CHECK(std::count(layers.begin(), layers.end(), '\n') == 1 + 6);
  // A rerun finds every training run finished and gives the same study, byte for byte.
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + out.string() + " --depths 1,2,3" + kTiny, dir);
  REQUIRE(r.code == 0);
  CHECK(slurp(out / "study.json") == first);
}

TEST_CASE("sigprop study of 2 architectures and 2 seeds: runs per arch and seed, gains paired by seed, every cause",
          "[cli]") {
  const fs::path dir = scratch_dir("study_multi"), out = dir / "study";
  fs::remove_all(out);
  const std::string cmd = std::string("study --corpus ") + kCorpus + " --out " + out.string() +
                          " --depths 1,2 --seeds 0,7 --arch pre --arch 'sqrtL:stack.branch_scale=1/sqrt(L)'"
                          " --noise-samples 4" +
                          " --set stack.width=16 --set stack.heads=2 --set stack.tokens=16 --steps 8 --batch 2"
                          " --lr 1e-2 --warmup 2 --val-every 4 --val-batches 1 --eval-tokens 128 --threads 2"
                          " --no-figures -q";
  auto r = run_sigprop(cmd, dir);
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"runs/pre/L1/s0/final.safetensors", "runs/pre/L2/s7/final.safetensors",
                        "runs/sqrtL/L2/s0/final.safetensors", "runs/sqrtL/L1/s7/loss.csv", "figures/cause_gradient.dat",
                        "figures/cause_saturation.gp", "figures/cause_optimisation.gp", "figures/cause_overfitting.gp",
                        "figures/cause_cost.gp", "figures/cause_noise.gp", "figures/drop_one_layer_sqrtL.dat"})
    CHECK(fs::exists(out / f));
  CHECK_FALSE(fs::exists(out / "runs/L1"));
  const std::string text = slurp(out / "study.json");
  const nlohmann::json j = nlohmann::json::parse(text);
  CHECK(j["layout"] == "runs/<arch>/L<depth>/s<seed>/");
  REQUIRE(j["archs"].size() == 2);
  CHECK(j["archs"][1]["name"] == "sqrtL");
  CHECK(j["archs"][1]["spec"]["stack"]["branch_scale"] == "1/sqrt(L)");
  for (const auto& a : j["archs"]) {
    REQUIRE(a["depths"].size() == 2);
    const auto &d1 = a["depths"][0], &d2 = a["depths"][1];
    REQUIRE(d2["runs"].size() == 2);
    CHECK(d2["runs"][1]["seed"] == 7);
    // the gain is the mean of the per-seed differences, its s.e. that of 2 differences
    const double g0 = d1["runs"][0]["val_loss"].get<double>() - d2["runs"][0]["val_loss"].get<double>();
    const double g1 = d1["runs"][1]["val_loss"].get<double>() - d2["runs"][1]["val_loss"].get<double>();
    CHECK(d2["gain_vs_previous"].get<double>() == Approx((g0 + g1) / 2));
    CHECK(d2["gain_vs_previous_se"].get<double>() == Approx(std::abs(g0 - g1) / 2));
    CHECK(d2["gain_paired_by"] == "seed");
    CHECK(d2["val_loss"].get<double>() ==
          Approx((d2["runs"][0]["val_loss"].get<double>() + d2["runs"][1]["val_loss"].get<double>()) / 2));
    const auto& c = d2["causes"];
    for (const char* k : {"gradient_attenuation", "saturation", "optimisation", "overfitting", "cost", "noise"})
      CHECK(c.contains(k));
    CHECK(c["gradient_attenuation"]["grad_var_rel_first_trained"].get<double>() > 0);
    CHECK(std::abs(c["saturation"]["update_cosine_mean"].get<double>()) <= 1.0);
    CHECK(c["optimisation"]["loss_instability"].get<double>() > 0);
    CHECK(c["overfitting"]["train_loss"].get<double>() > 0);
    CHECK(c["cost"]["train_flops"].get<double>() > d1["causes"]["cost"]["train_flops"].get<double>());
    CHECK(c["noise"]["samples"] == 4);
    CHECK(c["noise"]["var_log_q_L"].get<double>() > 0);
    CHECK(a.contains("knee"));
    // the theory's depth-returns predictor at the largest depth (2): effective depth at 1 and 2,
    // in [0, L], non-decreasing; and the measured knee per added layer beside it
    REQUIRE(a["predicted"].is_object());
    CHECK(a["predicted"]["depth"] == nlohmann::json::array({1, 2}));
    const auto& eff = a["predicted"]["effective_depth"];
    REQUIRE(eff.size() == 2);
    CHECK(eff[0].get<double>() >= 0.0);
    CHECK(eff[0].get<double>() <= 1.0);
    CHECK(eff[1].get<double>() >= eff[0].get<double>());
    CHECK(eff[1].get<double>() <= 2.0);
    CHECK(a.contains("knee_per_layer"));
  }
  // depth.csv: a header and one row per (architecture, depth); layers.csv one per block per seed
  const std::string depth = slurp(out / "depth.csv");
  CHECK(std::count(depth.begin(), depth.end(), '\n') == 1 + 4);
  const std::string layers = slurp(out / "layers.csv");
  CHECK(std::count(layers.begin(), layers.end(), '\n') == 1 + 2 * 2 * (1 + 2));
  CHECK(slurp(out / "report.md").find("## The causes, per depth") != std::string::npos);
  // resumable: a rerun trains nothing and gives the same study
  r = run_sigprop(cmd, dir);
  REQUIRE(r.code == 0);
  CHECK(slurp(out / "study.json") == text);
  // bad --arch and --seeds are named
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + (dir / "bad").string() +
                      " --arch pre --arch pre" + kTiny,
                  dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--arch") != std::string::npos);
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + (dir / "bad").string() +
                      " --arch x:stack.nonsense=1" + kTiny,
                  dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--arch: x:") != std::string::npos);
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + (dir / "bad").string() + " --seeds 1,1" + kTiny,
                  dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--seeds") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "bad" / "study.json"));
}

TEST_CASE("sigprop study rejects bad depths and settings with exit code 2 naming the option", "[cli][config]") {
  const fs::path dir = scratch_dir("study_bad"), out = dir / "o";
  auto r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + out.string() + " --depths 4,2" + kTiny, dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--depths") != std::string::npos);
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + out.string() + " --depths 1,x" + kTiny, dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("\"x\"") != std::string::npos);
  std::string one = kTiny;
  one.replace(one.find("--eval-tokens 512"), 17, "--eval-tokens 1");
  r = run_sigprop(std::string("study --corpus ") + kCorpus + " --out " + out.string() + " --depths 1,2" + one, dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("--eval-tokens") != std::string::npos);
  r = run_sigprop(std::string("study --corpus ") + (dir / "none.txt").string() + " --out " + out.string() + kTiny, dir);
  CHECK(r.code == 2);
  CHECK(r.err.find("none.txt") != std::string::npos);
  CHECK_FALSE(fs::exists(out / "study.json"));
}
