// sigprop study (validate/depth_study.hpp): the whole pipeline on a tiny model, its resume,
// and bad input.
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
  const nlohmann::json j = nlohmann::json::parse(first);
  REQUIRE(j["depths"].size() == 3);
  CHECK(j.contains("fit"));
  for (int i = 0; i < 3; ++i) {
    const auto& d = j["depths"][i];
    CHECK(d["depth"].get<int>() == i + 1);
    CHECK(d["ablation"]["increase"].size() == static_cast<size_t>(i + 1));
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
