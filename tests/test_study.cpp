// Statistics of the depth study (validate/study.hpp).
//   [analytic] power-law fit on exact curves; Spearman against SciPy 1.16.3 (scipy.stats.spearmanr,
//              values below) and exact permutation p-values; the ablation of a block that is
//              the identity by construction is exactly zero
//              the per-cause statistics of issue 17 on synthetic data: seed-paired gains, loss
//              instability and gradient-norm spikes, training FLOPs, the cosine of consecutive
//              blocks' updates, the L/d fit through the origin
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
    return f < 0.95 * (0.5 + 0.8 * 0.5 * 3.0 / 6.0);  // stop after step 3 of depth 2's 6 (runs take 95 %)
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
  REQUIRE(s.archs.size() == 1);
  CHECK(s.archs[0].results.size() == 2);
  CHECK(fs::exists(out / "study.json"));
  CHECK(fs::last_write_time(out / "runs/L1/final.safetensors") == l1_time);
  CHECK(seen.back() == 1.0);
  fs::remove_all(out.parent_path());
}

TEST_CASE("seed-paired gains: mean and standard error of the per-seed differences", "[analytic]") {
  // seeds 0, 1, 2: losses at depth 4 and 8; differences 0.1, 0.2, 0.3
  const std::vector<double> d4{2.0, 2.1, 2.3}, d8{1.9, 1.9, 2.0};
  const sigprop::MeanSe g = paired_gain(d4, d8);
  CHECK(g.mean == Approx(0.2).epsilon(1e-12));
  CHECK(g.se == Approx(0.1 / std::sqrt(3.0)).epsilon(1e-12));  // sd 0.1 over 3 seeds
  // one seed: a gain without a standard error
  const sigprop::MeanSe one = paired_gain(std::vector<double>{2.0}, std::vector<double>{1.5});
  CHECK(one.mean == Approx(0.5));
  CHECK(std::isnan(one.se));
  CHECK_THROWS_AS(paired_gain(d4, std::vector<double>{1.0, 2.0}), sigprop::ConfigError);
  CHECK_THROWS_AS(paired_gain(std::vector<double>{}, std::vector<double>{}), sigprop::ConfigError);
}

TEST_CASE("loss instability and gradient-norm spikes of a synthetic training history", "[analytic]") {
  // loss_s = 2 - 0.001 s + 0.01 (-1)^s: the step-to-step change alternates -0.021, +0.019, whose
  // sample standard deviation over m changes (m / 2 of each) is 0.02 sqrt(m / (m - 1))
  const int n = 200;
  std::vector<double> loss(n), gnorm(n, 1.0);
  for (int s = 0; s < n; ++s) loss[s] = 2 - 0.001 * s + 0.01 * (s % 2 == 0 ? 1 : -1);
  // gradient norms: 1 everywhere but three spikes of 5 (above 3x the running median 1) and one
  // bump of 2 (below it), and a spike at step 10 before enough history to judge it
  for (int s : {60, 120, 180}) gnorm[s] = 5.0;
  gnorm[150] = 2.0;
  gnorm[10] = 9.0;
  const CurveStats c = curve_stats(loss, gnorm, 0.5, 3.0, 50);
  const double m = 100;  // the changes into steps 100..199 (the last half)
  CHECK(c.instability == Approx(0.02 * std::sqrt(m / (m - 1))).epsilon(1e-9));
  CHECK(c.spikes == 3);
  CHECK(c.judged == n - 25);  // steps 25.. have >= window / 2 predecessors
  CHECK(c.spike_rate == Approx(3.0 / (n - 25)));
  // the whole curve: 99 changes of +0.019 and 100 of -0.021, whose sample standard deviation is
  // 0.04 sqrt(99 100 / (199 198))
  CHECK(curve_stats(loss, gnorm, 1.0).instability == Approx(0.04 * std::sqrt(99.0 * 100 / (199.0 * 198))).epsilon(1e-9));
  // a bigger spike factor lets the spikes of 5 pass
  CHECK(curve_stats(loss, gnorm, 0.5, 6.0).spikes == 0);
  // non-finite entries (rows without a grad norm) are skipped, not counted
  gnorm[60] = NAN;
  CHECK(curve_stats(loss, gnorm).spikes == 2);
  CHECK_THROWS_AS(curve_stats(loss, gnorm, 0.0), sigprop::ConfigError);
  CHECK_THROWS_AS(curve_stats(loss, gnorm, 0.5, 1.0), sigprop::ConfigError);
  CHECK_THROWS_AS(curve_stats(loss, gnorm, 0.5, 3.0, 1), sigprop::ConfigError);
}

TEST_CASE("training FLOPs and the L/d fit through the origin", "[analytic]") {
  // 6 N D + 6 L T d D: N = 1000, L = 2, T = 16, d = 8, D = 100 tokens
  CHECK(training_flops(1000, 2, 16, 8, 100) == Approx(6.0 * 1000 * 100 + 6.0 * 2 * 16 * 8 * 100));
  const std::vector<double> x{0.25, 0.5, 1.0, NAN}, y{0.75, 1.5, 3.0, 7.0};
  CHECK(fit_through_origin(x, y) == Approx(3.0));
  CHECK(std::isnan(fit_through_origin(std::vector<double>{NAN}, std::vector<double>{1.0})));
}

TEST_CASE("cosine of consecutive blocks' updates: an identity block has no update to compare", "[analytic]") {
  ModelConfig c;
  c.arch.spec.depth = 4;
  c.arch.spec.tokens = 8;
  c.arch.spec.width = 16;
  c.arch.spec.heads = 2;
  Model<double> m = Model<double>::initial(c, 5);
  m.blocks[1].wo.setZero();  // block 2 is the identity: U_2 = 0
  m.blocks[1].w2.setZero();
  m.blocks[1].b2.setZero();
  Batch seqs;
  for (int i = 0; i < 3; ++i) {
    std::vector<int> x, y;
    for (int t = 0; t < 8; ++t) x.push_back((11 * i + 5 * t) % 256), y.push_back((3 * i + t) % 256);
    seqs.inputs.push_back(x);
    seqs.targets.push_back(y);
  }
  const std::vector<double> c1 = update_cosines(m, seqs, 1), c2 = update_cosines(m, seqs, 2);
  REQUIRE(c1.size() == 3);
  CHECK(std::isnan(c1[0]));  // (U_1, U_2): U_2 = 0 everywhere
  CHECK(std::isnan(c1[1]));  // (U_2, U_3)
  CHECK(std::isfinite(c1[2]));
  CHECK(std::abs(c1[2]) <= 1.0);
  CHECK(c1[2] == c2[2]);  // thread count changes nothing
  // a depth-1 model has no pair
  c.arch.spec.depth = 1;
  CHECK(update_cosines(Model<double>::initial(c, 5), seqs, 1).empty());
}
