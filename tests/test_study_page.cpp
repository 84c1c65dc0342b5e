// The depth study's page (reports/depth_study_page.hpp) from hand-made study results: the
// tables, readings and figure data follow the numbers given, the causes are flagged by their
// stated thresholds, a second architecture and a predicted curve get their own lines, and a
// rerun writes the same bytes.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.hpp"
#include "core/knee.hpp"
#include "reports/depth_study_page.hpp"
#include "shared/cli_run.hpp"

namespace fs = std::filesystem;
using sigprop::test::cli::scratch_dir;
using sigprop::test::cli::slurp;
using namespace sigprop;

namespace {

// Three depths whose losses lie exactly on 2 + 1/L, so the fit is a = 2, b = 1, c = 1.
validate::DepthStudy made_up_study(const fs::path& folder) {
  validate::DepthStudy s;
  s.folder = folder;
  s.base.width = 16;
  s.base.heads = 2;
  s.base.tokens = 16;
  s.train.steps = 20;
  s.train.batch = 4;
  s.corpus_path = "text.txt";
  s.corpus_hash = "0123456789abcdef";
  s.corpus_bytes = 1000;
  s.sequences = 8;
  s.tokens_per_sequence = 16;
  const std::vector<std::string> cols = {"ang_dist",        "ang_dist_se", "update_ratio",
                                         "update_ratio_se", "eff_rank",    "grad_var_rel"};
  validate::ArchStudy a;
  a.arch.name = "base";
  a.spec = s.base;
  const std::vector<int> depths = {1, 2, 4};
  for (std::size_t i = 0; i < depths.size(); ++i) {
    const int L = depths[i];
    validate::DepthResult r;
    r.depth = L;
    r.params = 1000 * static_cast<std::size_t>(L);
    r.val = {2.0 + 1.0 / L, 0.1};
    r.val_init = {5.5, 0.01};
    if (i > 0) r.gain = {(2.0 + 1.0 / depths[i - 1]) - (2.0 + 1.0 / L), 0.01 * static_cast<double>(i)};
    r.seconds = 1.5;
    StackSpec spec = s.base;
    spec.depth = L;
    r.trained = Profile::make(spec, "measured", cols);
    r.initial = Profile::make(spec, "measured", cols);
    for (int l = 1; l <= L; ++l) {
      r.trained.at(l, "ang_dist") = 0.1 * l;
      r.initial.at(l, "ang_dist") = 0.2;
    }
    for (int l = 1; l <= L; ++l) r.ablation.increase.push_back(0.5 - 0.1 * l);
    r.ablation.increase_se.assign(static_cast<std::size_t>(L), 0.01);
    // causes: at depth 4 the late blocks cost 0.1 of the early ones' (saturation, 2.5x its
    // threshold 0.25) and validation exceeds training by 0.2 nats (overfitting, 4x its 0.05)
    r.causes.grad_first_trained = 0.5;
    r.causes.drop_late_ratio = L == 4 ? 0.1 : 0.8;
    r.causes.gap = L == 4 ? 0.2 : 0.01;
    r.causes.var_log_q = 0.01 * L;
    r.causes.depth_over_width = L / 16.0;
    a.results.push_back(r);
  }
  a.fit = validate::fit_power_law(std::vector<double>{1, 2, 4}, std::vector<double>{3.0, 2.5, 2.25});
  a.per_depth.push_back({4, "ang_dist (measured)", {-1.0, 1.0 / 12, 4}});
  a.pooled.push_back({0, "ang_dist (measured)", {-0.9, 0.0126, 6}});
  KneeInput ki;
  ki.depth = {1, 2, 4};
  ki.value = {3.0, 2.5, 2.25};
  a.knee = find_knee(ki);
  s.archs.push_back(a);
  s.seeds = {0};
  return s;
}

}  // namespace

TEST_CASE("the depth study's page tabulates and reads the study's numbers, the same bytes on a rerun", "[report]") {
  const fs::path out = scratch_dir("study_page") / "study";
  fs::remove_all(out);
  const validate::DepthStudy study = made_up_study(out);
  reports::StudyPageOptions opt;
  opt.gnuplot.clear();  // data and scripts only: the test does not depend on gnuplot
  const reports::StudyPage page = reports::render_depth_study_page(study, opt);
  CHECK(page.report_md == out / "report.md");
  CHECK(page.index_html == out / "index.html");
  CHECK(page.figures_drawn.empty());
  CHECK(page.figures_missing == std::vector<std::string>{"loss_vs_depth", "drop_one_layer", "trained_vs_initial",
                                                         "cause_gradient", "cause_saturation", "cause_optimisation",
                                                         "cause_overfitting", "cause_cost", "cause_noise"});
  CHECK(page.gnuplot_problem.find("switched off") != std::string::npos);

  const std::string md = slurp(out / "report.md");
  INFO(md);
  CHECK(md.find("Corpus `text.txt` (1000 bytes, fnv1a64 0123456789abcdef); validation split measured on 8 sequences "
                "of 16 tokens.") != std::string::npos);
  CHECK(md.find("| 1 | 1000 | 3 | 0.1 | 5.5 | — | — | 3 | 1.5 |") != std::string::npos);
  CHECK(md.find("| 4 | 4000 | 2.25 | 0.1 | 5.5 | 0.25 | 0.02 | 2.25 | 1.5 |") != std::string::npos);
  CHECK(md.find("1→2: 0.5 ± 0.01, 2→4: 0.25 ± 0.02") != std::string::npos);
  CHECK(md.find("gives a = 2, b = 1, c = 1 ") != std::string::npos);
  CHECK(md.find("| 4 | ang_dist (measured) | -1 | 0.083 | 4 |") != std::string::npos);
  CHECK(md.find("| pooled | ang_dist (measured) | -0.9 | 0.013 | 6 |") != std::string::npos);
  CHECK(md.find("vs ang_dist (measured) over every layer of the models of depth >= 2: Spearman rho = -0.9 (p = "
                "0.013, n = 6).") != std::string::npos);
  // depth 4: the first block's ablation costs 0.4, the last one's 0.1; no theory given: n/a
  CHECK(md.find("removing one of the first 1 blocks costs 0.4 nats on average, one of the last 1 costs 0.1.") !=
        std::string::npos);
  CHECK(md.find("| 3 | 0.2 | 0.01 | 0.3 | 0.2 | n/a |") != std::string::npos);
  CHECK(md.find("**Figures not drawn:**") != std::string::npos);
  // the knee: gains 0.5 then 0.25, which is not below 0.25 x 0.5: no knee within depths 1..4
  CHECK(md.find("No knee within the depths studied") != std::string::npos);
  // the causes: flagged at depth 4 only, overfitting first (4x its threshold) then saturation (2.5x)
  CHECK(md.find("Causes flagged: depth 4: overfitting, saturation (dominant: overfitting, val - train = 0.2).") !=
        std::string::npos);
  CHECK(md.find("| base | 4 | 0.25 ± 0.02 | n/a / 0.5 | n/a | 0.1 |") != std::string::npos);
  CHECK(md.find("![") == std::string::npos);

  const std::string loss_dat = slurp(out / "figures" / "loss_vs_depth.dat");
  CHECK(loss_dat == "# depth val_loss val_loss_se init_val_loss\n1 3 0.1 5.5\n2 2.5 0.1 5.5\n4 2.25 0.1 5.5\n");
  CHECK(slurp(out / "figures" / "loss_vs_depth.gp").find("set xrange [0.8:5]") != std::string::npos);
  // the depth-1 model has no block to compare with another: two data blocks, 2 + 4 rows
  const std::string drop_dat = slurp(out / "figures" / "drop_one_layer.dat");
  CHECK(drop_dat.find("# depth 2:") != std::string::npos);
  CHECK(drop_dat.find("# depth 1:") == std::string::npos);
  CHECK(drop_dat.find("0.25 0.4 0.01 0.1 NaN\n") != std::string::npos);

  const std::string html = slurp(out / "index.html");
  CHECK(html.find("<li>Validation loss falls from 3 (depth 1) to 2.25 (depth 4);") != std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<h2>The causes, per depth</h2>") != std::string::npos);
  CHECK(html.find("<td>base</td><td>4</td><td>0.25 ± 0.02</td>") != std::string::npos);
  CHECK(html.find("<td>overfitting, saturation</td></tr>") != std::string::npos);

  CHECK(slurp(out / "figures" / "cause_noise.dat").find("# base: depth ") == 0);
  const reports::StudyPage again = reports::render_depth_study_page(study, opt);
  CHECK(slurp(out / "report.md") == md);
  CHECK(slurp(out / "index.html") == html);
  CHECK(again.figures_missing == page.figures_missing);
}

TEST_CASE("the depth study's page: two architectures, a predicted curve and the ordering at the largest depth",
          "[report]") {
  const fs::path out = scratch_dir("study_page_two") / "study";
  fs::remove_all(out);
  validate::DepthStudy study = made_up_study(out);
  validate::ArchStudy b = study.archs[0];
  b.arch = {"sqrtL", {"stack.branch_scale=1/sqrt(L)"}};
  for (auto& r : b.results) r.val.mean -= 0.1;  // better at every depth
  b.predicted = validate::PredictedCurve{"theory: effective depth", {1, 2, 4}, {1.0, 1.8, 3.0}, 2.0};
  KneeResult measured;
  measured.found = true;
  measured.knee_depth = 4;
  measured.rule = "made up";
  b.knee_per_layer = measured;
  study.archs[0].predicted = validate::PredictedCurve{"theory: effective depth", {1, 2, 4}, {1.0, 1.5, 2.0}, {}};
  study.archs.push_back(b);
  reports::StudyPageOptions opt;
  opt.gnuplot.clear();
  const reports::StudyPage page = reports::render_depth_study_page(study, opt);
  CHECK(std::find(page.figures_missing.begin(), page.figures_missing.end(), "drop_one_layer_sqrtL") !=
        page.figures_missing.end());
  CHECK(std::find(page.figures_missing.begin(), page.figures_missing.end(), "drop_one_layer") ==
        page.figures_missing.end());
  const std::string md = slurp(out / "report.md");
  CHECK(md.find("architectures: base; sqrtL (stack.branch_scale=1/sqrt(L))") != std::string::npos);
  CHECK(md.find("## Loss against depth (sqrtL)") != std::string::npos);
  CHECK(md.find("sqrtL: Predicted effective depth (theory: effective depth; init-time theory of this architecture): "
                "1: 1, 2: 1.8, 4: 3; predicted knee: depth 2.") != std::string::npos);
  CHECK(md.find("base: Predicted effective depth (theory: effective depth; init-time theory of this architecture): "
                "1: 1, 2: 1.5, 4: 2; predicted knee: none within the depths predicted.") != std::string::npos);
  CHECK(md.find("sqrtL: Knee per added layer, as the prediction defines it (rule: made up): measured 4 vs predicted 2: "
                "1 doubling apart, within the goal of one doubling.") != std::string::npos);
  CHECK(md.find("By predicted effective depth at the largest depth, from most to least: sqrtL (3), base (2); this "
                "ordering equals the measured one.") != std::string::npos);
  CHECK(md.find("At the largest depth, from best to worst validation loss: sqrtL (2.15), base (2.25).") !=
        std::string::npos);
  const std::string dat = slurp(out / "figures" / "loss_vs_depth.dat");
  CHECK(dat.find("# predicted sqrtL (theory: effective depth): depth value\n1 1\n2 1.8\n4 3\n") != std::string::npos);
  CHECK(slurp(out / "figures" / "loss_vs_depth.gp").find("axes x1y2") != std::string::npos);
}

TEST_CASE("the depth study's page needs at least one depth", "[report][config]") {
  validate::DepthStudy empty;
  empty.folder = scratch_dir("study_page_empty");
  CHECK_THROWS_AS(reports::render_depth_study_page(empty), ConfigError);
  CHECK_FALSE(fs::exists(empty.folder / "report.md"));
}
