// Statistics of the depth study (validate/study.hpp).
//   [analytic] power-law fit on exact curves; Spearman against SciPy 1.16.3 (scipy.stats.spearmanr,
//              values below) and exact permutation p-values; the ablation of a block that is
//              the identity by construction is exactly zero
//   [study]    a cancelled study keeps the finished depth's run, writes no tables, and resumes
#include <cmath>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.hpp"
#include "shared/cli_run.hpp"
#include "validate/depth_study.hpp"
#include "validate/model.hpp"
#include "validate/study.hpp"

using namespace sigprop::validate;

TEST_CASE("power-law fit recovers an exact diminishing-returns curve", "[analytic]") {
  const std::vector<double> L{1, 2, 4, 8, 16};
  for (double c : {0.3, 0.7, 1.6}) {
    std::vector<double> y;
    for (double l : L) y.push_back(1.5 + 2.0 * std::pow(l, -c));
    const PowerLawFit f = fit_power_law(L, y);
    INFO("c = " << c << ": fitted a " << f.a << " b " << f.b << " c " << f.c);
    CHECK(std::abs(f.c - c) < 1e-6);
    CHECK(std::abs(f.a - 1.5) < 1e-6);
    CHECK(std::abs(f.b - 2.0) < 1e-6);
    CHECK(f.rss < 1e-12);
  }
  CHECK_THROWS_AS(fit_power_law(std::vector<double>{1, 2}, std::vector<double>{1, 2}), sigprop::ConfigError);
  CHECK_THROWS_AS(fit_power_law(std::vector<double>{1, 2, 0}, std::vector<double>{1, 2, 3}), sigprop::ConfigError);
}

TEST_CASE("Spearman rank correlation against SciPy and exact permutations", "[analytic]") {
  // scipy.stats.spearmanr (t approximation for n = 11): 0.8727272727272729, p 0.00045461505140964044
  const std::vector<double> x{0.3, 0.1, 0.4, 0.15, 0.9, 0.26, 0.53, 0.58, 0.97, 0.93, 0.23};
  const std::vector<double> y{2.0, 1.0, 3.5, 1.5, 9.0, 2.6, 5.0, 5.3, 4.9, 9.7, 0.2};
  RankCorrelation r = spearman(x, y);
  CHECK(std::abs(r.rho - 0.8727272727272729) < 1e-12);
  CHECK(std::abs(r.p - 0.00045461505140964044) < 1e-10);
  // ties (average ranks): SciPy 0.9473684210526317
  r = spearman(std::vector<double>{1, 2, 2, 3, 5}, std::vector<double>{1, 3, 2, 4, 4});
  CHECK(std::abs(r.rho - 0.9473684210526317) < 1e-12);
  // exact: a perfect reversal of 5 is one of 120 orderings, and so is the perfect agreement
  r = spearman(std::vector<double>{1, 2, 3, 4, 5}, std::vector<double>{9, 7, 5, 3, 1});
  CHECK(r.rho == Approx(-1.0).margin(1e-15));
  CHECK(r.p == Approx(2.0 / 120).epsilon(1e-12));
  CHECK_THROWS_AS(spearman(std::vector<double>{1, 2}, std::vector<double>{1, 2}), sigprop::ConfigError);
}

TEST_CASE("drop-one-layer ablation: a block whose branches output zero costs nothing", "[analytic]") {
  ModelConfig c;
  c.arch.spec.depth = 3;
  c.arch.spec.tokens = 8;
  c.arch.spec.width = 16;
  c.arch.spec.heads = 2;
  Model<double> m = Model<double>::initial(c, 3);
  // pre-LN: block 2 is the identity when W_O, W2 and b2 are zero
  m.blocks[1].wo.setZero();
  m.blocks[1].w2.setZero();
  m.blocks[1].b2.setZero();
  Batch seqs;
  for (int i = 0; i < 4; ++i) {
    std::vector<int> x, y;
    for (int t = 0; t < 8; ++t) x.push_back((7 * i + 3 * t) % 256), y.push_back((5 * i + t) % 256);
    seqs.inputs.push_back(x);
    seqs.targets.push_back(y);
  }
  const Ablation a1 = drop_one_layer(m, seqs, 1), a2 = drop_one_layer(m, seqs, 2);
  REQUIRE(a1.increase.size() == 3);
  CHECK(a1.increase[1] == 0.0);
  CHECK(a1.increase_se[1] == 0.0);
  CHECK(a1.increase[0] != 0.0);
  CHECK(a1.increase[2] != 0.0);
  CHECK(a1.increase == a2.increase);  // thread count changes nothing
  // base loss = the model's mean loss on the same sequences
  CHECK(std::abs(a1.base_loss - loss_and_grad<double>(m, seqs, nullptr)) < 1e-12);
}

TEST_CASE("a study cancelled in its second depth keeps the first, writes no tables, and resumes", "[study]") {
  namespace fs = std::filesystem;
  const fs::path out = sigprop::test::cli::scratch_dir("study_cancel") / "out";
  fs::remove_all(out);
  sigprop::StackSpec base;
  base.width = 16;
  base.heads = 2;
  base.tokens = 16;
  StudySettings st;
  st.depths = {1, 2};
  st.eval_tokens = 256;
  st.train.steps = 6;
  st.train.batch = 2;
  st.train.warmup = 1;
  st.train.val_every = 3;
  st.train.val_batches = 1;
  st.train.checkpoint_every = 2;
  st.train.threads = 2;
  const char* corpus = "/usr/share/common-licenses/GPL-3";  // base-files: on every Debian system
  std::vector<double> seen;
  StudyProgress p;
  p.fraction = [&](double f, std::string_view) {
    seen.push_back(f);
    return f < 0.5 + 0.8 * 0.5 * 3.0 / 6.0;  // stop after step 3 of depth 2's 6
  };
  CHECK_THROWS_AS(run_depth_study(base, st, corpus, out, p), sigprop::CancelledError);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] >= seen[i - 1]);
  CHECK(fs::exists(out / "runs/L1/final.safetensors"));
  CHECK(fs::exists(out / "runs/L2/ckpt_step2.safetensors"));
  CHECK_FALSE(fs::exists(out / "runs/L2/final.safetensors"));
  CHECK_FALSE(fs::exists(out / "study.json"));
  CHECK_FALSE(fs::exists(out / "depth.csv"));
  const auto l1_time = fs::last_write_time(out / "runs/L1/final.safetensors");
  // the same call again: depth 1 is reused as it is, depth 2 resumes from its checkpoint
  seen.clear();
  p.fraction = [&](double f, std::string_view) {
    seen.push_back(f);
    return true;
  };
  const DepthStudy s = run_depth_study(base, st, corpus, out, p);
  CHECK(s.results.size() == 2);
  CHECK(fs::exists(out / "study.json"));
  CHECK(fs::last_write_time(out / "runs/L1/final.safetensors") == l1_time);
  CHECK(seen.back() == 1.0);
  fs::remove_all(out.parent_path());
}
