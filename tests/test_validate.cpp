// `sigprop validate` (validate/measure.hpp, cli/validate_cmd.cpp): an untrained model measured on
// real text lies inside the prediction interval of its init ensemble, a mis-initialised one does
// not; the loss gradient Delta_l against finite differences; bad input names the file or option.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/profile.hpp"
#include "tests/shared/cli_run.hpp"
#include "validate/measure.hpp"
#include "validate/model.hpp"

namespace fs = std::filesystem;
using namespace sigprop;
using namespace sigprop::validate;

namespace {

// About 2.6 KB of plain English (written for this test), the real text every test here reads.
const char* const kText =
    "The river had been rising for three days before anyone in the village thought to move the boats. "
    "It was not that the people were careless; they had simply seen the water climb the stones of the old "
    "bridge many times, and it had always stopped a hand's width below the mark that the miller's father had "
    "cut into the pier. This year the mark went under on a Tuesday morning, quietly, while the baker was "
    "still arguing with the schoolteacher about the price of flour.\n"
    "By the afternoon the lower road was a brown stream, and children stood on the churchyard wall to watch "
    "barrels and branches go past. The miller walked along the bank with his hands in his pockets, looking "
    "at the current as if it owed him money. He said that the dam upstream would hold, because it had been "
    "built by careful men, and that in any case there was nothing to be done about it now. His wife packed "
    "the good plates into a chest and carried it up to the attic without a word.\n"
    "Towards evening a young engineer arrived on a bicycle, wet to the knees, with a notebook full of numbers. "
    "He had measured the flow at four places along the valley and drawn a small graph for each. The graphs "
    "all bent the same way. He explained to the council, who met in the back room of the inn, that the "
    "water would rise for another night and then fall, and that the only danger was the weir by the tannery, "
    "where the channel narrowed. If the weir gave way, the square would flood; if the boards were lifted "
    "before midnight, the river would spread over the meadows instead, where it could do little harm.\n"
    "Nobody liked the idea of lifting the boards. The tanner said that his grandfather had set them, and "
    "that they had never been lifted in a flood. The engineer answered that his graphs did not know the "
    "tanner's grandfather, and that the river did not know him either. There was a long silence, and then "
    "the schoolteacher laughed, and the baker laughed with her, and the council voted to lift the boards.\n"
    "They worked by lantern light, six men on the walkway with iron bars, while the water pulled at their "
    "boots. The first board came up with a crack like a shot, and the river leaned through the gap. The "
    "second and third were easier. By two in the morning the meadows were a silver lake under the moon, "
    "and the square was dry. In the morning the engineer was gone, and the miller, looking at the lake, "
    "said that he had always thought the boards should be lifted, and that it was a pity nobody had asked.\n"
    "Years later the children who had stood on the wall would tell the story to their own children, and "
    "each time the water rose a little higher and the engineer grew a little taller.\n";

std::span<const unsigned char> text_bytes() {
  return {reinterpret_cast<const unsigned char*>(kText), std::char_traits<char>::length(kText)};
}

/// The acceptance test's architecture: pre-LN attention+MLP, d = 64, H = 4, L = 4, T = 32.
ModelConfig small_config() {
  ModelConfig c;
  StackSpec& s = c.arch.spec;
  s.depth = 4;
  s.tokens = 32;
  s.width = 64;
  s.heads = 4;
  s.mlp_ratio = 4;
  s.q0 = 1.0;
  s.rho0 = 0.0;
  c.vocab = 256;
  c.learned_pos = true;
  c.final_norm = true;
  c.tied = false;
  return c;
}

/// Ensemble of S = 32 models; 38 compared metric-layers (q, rho, res, eff_rank at layers 0..4:
/// 20; update_ratio, ang_dist at 1..4: 8; grad_var and grad_var_rel at 0..4: 10; grad_var_rel at
/// layer 4 is 1 on both sides). For a Gaussian metric, (x - mean) / (sd sqrt(1 + 1/S)) of a new
/// draw is Student t with S - 1 = 31 degrees of freedom; Bonferroni at a family-wise false-alarm
/// rate of 1e-3 puts each two-sided test at 1e-3 / 38 = 2.6e-5, whose t_31 quantile is 4.93
/// (normal: 4.2). z_pi also adds se_meas^2 to the denominator, which only makes it smaller.
constexpr int kEnsemble = 32;
constexpr double kZBound = 4.93;

ValidateSettings small_settings() {
  ValidateSettings st;
  st.tokens = 48 * 32;  // 48 sequences of T = 32 tokens: 1537 bytes of the 2.6 KB text
  st.ensemble = kEnsemble;
  st.samples = 0;
  st.theory = false;
  st.seed = 0;  // ensemble seeds 1 .. 32
  st.threads = 0;
  return st;
}

double max_abs_z_pi(const Validation& v, const std::string& prediction, std::string* where = nullptr) {
  double worst = 0;
  for (const auto& a : v.agreement) {
    if (a["prediction"] != prediction) continue;
    REQUIRE(a["z_pi"].is_number());
    const double z = std::abs(a["z_pi"].get<double>());
    if (z > worst) {
      worst = z;
      if (where) *where = a["metric"].get<std::string>() + " at layer " + std::to_string(a["layer"].get<int>());
    }
  }
  return worst;
}

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("validate_test");
  return dir;
}

sigprop::test::cli::Run run(const std::string& args) { return sigprop::test::cli::run_sigprop(args, scratch()); }

fs::path write_corpus(const std::string& name, const std::string& text) {
  const fs::path p = scratch() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

}  // namespace

TEST_CASE("validate: an untrained model agrees with its init ensemble on real text", "[stochastic][validate]") {
  const ModelConfig cfg = small_config();
  const Model<float> m = Model<float>::initial(cfg, 1000);  // not among the ensemble's seeds 1..32
  const Validation v = validate_model(m, text_bytes(), small_settings());
  REQUIRE(v.init_ensemble);
  CHECK(v.agreement.size() == 38);
  std::string where;
  const double worst = max_abs_z_pi(v, "init_ensemble", &where);
  INFO("largest |z_pi| = " << worst << " (" << where << ")");
  CHECK(worst <= kZBound);
  // the model is not an ensemble member (that would be a note)
  for (const auto& n : v.notes) CHECK(n.find("ensemble member") == std::string::npos);
  // the measured rows: q of X_0 near q0 = 1 (wte + wpe, each q0 / 2), grad_var_rel = 1 at the top
  CHECK(v.measured.at(0, "q") == Approx(1.0).margin(0.15));
  CHECK(v.measured.at(4, "grad_var_rel") == 1.0);
  CHECK(v.measured.settings["sequences"] == 48);
}

TEST_CASE("validate: a model with doubled sigma_w2 fails the init-ensemble test", "[stochastic][validate]") {
  // The power the test above claims: the same architecture with sigma_w2 = 2 at initialisation
  // (branch variances x4 for attention's V O and the MLP's W1 W2) lies outside the
  // prediction interval of the sigma_w2 = 1 ensemble for some metric.
  ModelConfig wrong = small_config();
  wrong.arch.spec.sigma_w2 = 2.0;
  Model<float> m = Model<float>::initial(wrong, 1000);
  m.cfg = small_config();  // claims the standard initialisation: its ensemble is sigma_w2 = 1
  const Validation v = validate_model(m, text_bytes(), small_settings());
  std::string where;
  const double worst = max_abs_z_pi(v, "init_ensemble", &where);
  INFO("largest |z_pi| = " << worst << " (" << where << ")");
  CHECK(worst > kZBound);
}

TEST_CASE("validate: theory and simulate predictions on the fitted spec", "[stochastic][validate]") {
  ValidateSettings st = small_settings();
  st.ensemble = 0;
  st.samples = 32;
  st.theory = true;
  const Model<float> m = Model<float>::initial(small_config(), 1000);
  const Validation v = validate_model(m, text_bytes(), st);
  REQUIRE(v.simulate);
  REQUIRE(v.theory);
  CHECK(!v.init_ensemble);
  // the predictions run the architecture at T tokens with the input fitted to X_0
  CHECK(v.simulate->spec.tokens == 32);
  CHECK(v.simulate->spec.q0 == v.measured.at(0, "q"));
  CHECK(v.theory->spec.rho0 == std::clamp(v.measured.at(0, "rho"), 0.0, 1.0));
  CHECK(v.simulate->spec.width == 64);
  CHECK(v.theory->at(4, "grad_var_rel") == 1.0);
  // grad_var itself is compared with the ensemble only
  for (const auto& a : v.agreement) CHECK(a["metric"] != "grad_var");
  // the theory's z_pi borrows the Monte Carlo's spread
  bool theory_pi = false;
  for (const auto& a : v.agreement)
    if (a["prediction"] == "theory" && a["z_pi"].is_number()) theory_pi = true;
  CHECK(theory_pi);
  // the residual stream norm grows the same way in all three at this width
  CHECK(v.measured.at(4, "q") == Approx(v.simulate->at(4, "q")).epsilon(0.25));
  CHECK(v.simulate->at(4, "q") == Approx(v.theory->at(4, "q")).epsilon(0.25));
}

TEST_CASE("validate: the loss gradient Delta_l matches finite differences", "[gradcheck][validate]") {
  ModelConfig cfg = small_config();
  cfg.arch.spec.width = 8;
  cfg.arch.spec.heads = 2;
  cfg.arch.spec.depth = 2;
  cfg.arch.spec.tokens = 6;
  Model<double> m = Model<double>::initial(cfg, 7);
  // perturb gains and biases off 1 and 0 so that every affine part is exercised
  m.lnf_g.array() += 0.3;
  m.lnf_b.array() += 0.1;
  const std::vector<int> in = {84, 104, 101, 32, 114, 105}, tg = {104, 101, 32, 114, 105, 118};
  const int T = 6, d = 8, L = 2;
  const Trace<double> tr = forward(m, in);
  std::vector<Mat<double>> deltas;
  backward(m, tr, in, tg, 1.0 / T, static_cast<Model<double>*>(nullptr), &deltas);
  REQUIRE(deltas.size() == 3);
  const double h = 1e-5;

  // Delta_L = dloss/dX_L: the head (final norm, unembedding, mean cross-entropy) as a function of X_L
  auto head_loss = [&](const Mat<double>& XL) {
    Mat<double> xhat, xf;
    ColVec<double> rstd;
    sim::norm_forward(xhat, rstd, XL, cfg.arch.spec.norm_type, cfg.arch.spec.norm_eps);
    xf = xhat * m.lnf_g.asDiagonal();
    xf.rowwise() += m.lnf_b;
    const Mat<double> logits = xf * m.lm_head;
    double total = 0;
    for (int t = 0; t < T; ++t) {
      const double mx = logits.row(t).maxCoeff();
      double z = 0;  // a plain loop: Eigen's vectorised exp trips GCC 12's AVX-512 -Wuninitialized
      for (Eigen::Index k = 0; k < logits.cols(); ++k) z += std::exp(logits(t, k) - mx);
      total += mx + std::log(z) - logits(t, tg[t]);
    }
    return total / T;
  };
  CHECK(head_loss(tr.X[L]) == Approx(sequence_loss(tr, tg) / T).epsilon(1e-12));
  double max_err = 0;
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < d; ++j) {
      Mat<double> xp = tr.X[L], xm = tr.X[L];
      xp(t, j) += h;
      xm(t, j) -= h;
      const double fd = (head_loss(xp) - head_loss(xm)) / (2 * h);
      max_err = std::max(max_err, std::abs(fd - deltas[L](t, j)));
    }
  CHECK(max_err < 1e-8 * std::max(1.0, deltas[L].cwiseAbs().maxCoeff()));

  // Delta_0 = dloss/dX_0 through every block: X_0[t] = wte[token_t] + wpe[t], and wpe row t
  // enters X_0 at position t only, so dloss/dwpe[t, j] = Delta_0[t, j]
  max_err = 0;
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < d; ++j) {
      Model<double> mp = m, mm = m;
      mp.wpe(t, j) += h;
      mm.wpe(t, j) -= h;
      const double fd = (sequence_loss(forward(mp, in), tg) - sequence_loss(forward(mm, in), tg)) / (2 * h * T);
      max_err = std::max(max_err, std::abs(fd - deltas[0](t, j)));
    }
  CHECK(max_err < 1e-8 * std::max(1.0, deltas[0].cwiseAbs().maxCoeff()));

  // measure_sequences reports exactly these: grad_var_l = ||Delta_l||^2 / (T d)
  Sequences seqs;
  seqs.T = T;
  seqs.offsets = {0};
  seqs.inputs = {in};
  seqs.targets = {tg};
  const PerSequence per = measure_sequences(m, seqs, 1);
  for (int l = 0; l <= L; ++l) {
    CHECK(per.values[0][l][sim::kGrad] == Approx(deltas[l].squaredNorm() / (T * d)).epsilon(1e-12));
    CHECK(per.values[0][l][kGradRel] == Approx(deltas[l].squaredNorm() / deltas[L].squaredNorm()).epsilon(1e-12));
  }
  CHECK(per.loss[0] == Approx(sequence_loss(tr, tg) / T).epsilon(1e-12));
}

TEST_CASE("validate: sequences are non-overlapping windows at fixed offsets", "[config][validate]") {
  const auto bytes = text_bytes();
  const Sequences s = cut_sequences(bytes, 32, 10 * 32 + 7, "text");
  REQUIRE(s.count() == 10);
  const std::size_t stride = (bytes.size() - 1) / 10;
  for (int i = 0; i < 10; ++i) {
    CHECK(s.offsets[i] == i * stride);
    CHECK(s.inputs[i][0] == bytes[i * stride]);
    CHECK(s.targets[i][31] == bytes[i * stride + 32]);
    if (i > 0) CHECK(s.offsets[i] >= s.offsets[i - 1] + 32);
  }
  auto message = [&](long long tokens, std::size_t size) {
    try {
      (void)cut_sequences(bytes.first(size), 32, tokens, "corpus.txt");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(message(0, bytes.size()), Catch::Contains("tokens:"));
  CHECK_THAT(message(40, bytes.size()), Catch::Contains("tokens = 40") && Catch::Contains("fewer than 2"));
  CHECK_THAT(message(64, 20), Catch::Contains("corpus.txt") && Catch::Contains("shorter than one sequence"));
  CHECK_THAT(message(32 * 200, bytes.size()), Catch::Contains("corpus.txt") && Catch::Contains("asks for 200"));
}

TEST_CASE("sigprop validate writes the agreement JSON and the measured CSV", "[cli][validate]") {
  const fs::path ckpt = scratch() / "init.safetensors", corpus = write_corpus("text.txt", kText);
  save_checkpoint(ckpt, Model<float>::initial(small_config(), 1000));
  const fs::path js = scratch() / "v.json", cs = scratch() / "v.csv";
  auto r = run("validate --checkpoint " + ckpt.string() + " --corpus " + corpus.string() +
               " --tokens 512 --seq-len 16 --ensemble 4 --samples 4 --threads 2 --table --json " + js.string() +
               " --csv " + cs.string());
  INFO(r.err);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(sigprop::test::cli::slurp(js));
  CHECK(j["checkpoint"] == ckpt.string());
  CHECK(j["model"]["model"]["vocab"] == 256);
  const Profile meas = Profile::from_json(j["measured"]);
  CHECK(meas.engine == "measured");
  CHECK(meas.spec.tokens == 16);
  CHECK(meas.settings["sequences"] == 32);
  CHECK(meas.settings["checkpoint"] == ckpt.string());
  CHECK(meas.has("grad_var_rel_se"));
  for (const char* p : {"theory", "simulate", "init_ensemble"}) {
    INFO(p);
    REQUIRE(j["predicted"][p].is_object());
    CHECK(Profile::from_json(j["predicted"][p]).has("grad_var_rel"));
  }
  CHECK(j["agreement"].size() > 0);
  CHECK(j["summary"].size() > 0);
  CHECK(j["notes"].size() > 0);
  CHECK(sigprop::test::cli::slurp(cs).find("layer,q,rho,res,eff_rank,update_ratio,ang_dist,grad_var,grad_var_rel,") !=
        std::string::npos);
  CHECK_THAT(r.out, Catch::Contains("measured ± se") && Catch::Contains("init_ensemble: max |z_pi|"));
  // the same numbers with one thread
  const fs::path js1 = scratch() / "v1.json";
  auto r1 = run("validate --checkpoint " + ckpt.string() + " --corpus " + corpus.string() +
                " --tokens 512 --seq-len 16 --ensemble 4 --samples 4 --threads 1 --json " + js1.string());
  REQUIRE(r1.code == 0);
  const nlohmann::json j1 = nlohmann::json::parse(sigprop::test::cli::slurp(js1));
  CHECK(j1["agreement"] == j["agreement"]);
}

TEST_CASE("sigprop validate: bad input exits 2 naming the file or option", "[cli][config][validate]") {
  const fs::path ckpt = scratch() / "ok.safetensors", corpus = write_corpus("ok.txt", kText);
  save_checkpoint(ckpt, Model<float>::initial(small_config(), 5));
  // a truncated copy of the checkpoint
  const fs::path cut = scratch() / "truncated.safetensors";
  {
    const std::string all = sigprop::test::cli::slurp(ckpt);
    std::ofstream(cut, std::ios::binary) << all.substr(0, all.size() / 2);
  }
  const fs::path tiny = write_corpus("tiny.txt", "Too short.");
  const fs::path out = scratch() / "never.json";
  struct Case {
    std::string args, expect;
  };
  const std::string ok_corpus = " --corpus " + corpus.string();
  const std::vector<Case> cases{
      {"--checkpoint " + (scratch() / "missing.safetensors").string() + ok_corpus, "missing.safetensors"},
      {"--checkpoint " + cut.string() + ok_corpus, "truncated.safetensors"},
      {"--checkpoint " + ckpt.string() + " --corpus " + tiny.string(), "tiny.txt"},
      {"--checkpoint " + ckpt.string() + " --corpus " + (scratch() / "nocorpus.txt").string(), "nocorpus.txt"},
      {"--checkpoint " + ckpt.string() + ok_corpus + " --tokens 0", "--tokens"},
      {"--checkpoint " + ckpt.string() + ok_corpus + " --seq-len -3", "--seq-len"},
      {"--checkpoint " + corpus.string() + ok_corpus, "ok.txt"},  // not a safetensors file
  };
  for (const auto& c : cases) {
    INFO(c.args);
    auto r = run("validate " + c.args + " --ensemble 2 --samples 2 --no-theory --json " + out.string());
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("error") && Catch::Contains(c.expect));
    CHECK_FALSE(fs::exists(out));
  }
  CHECK_THAT(run("validate --checkpoint " + cut.string() + ok_corpus).err, Catch::Contains("--checkpoint"));
  CHECK_THAT(run("validate --checkpoint " + ckpt.string() + " --corpus " + tiny.string()).err,
             Catch::Contains("shorter than one sequence"));
}

TEST_CASE("sigprop validate: an imported model with extensions gets the measured profile and notes", "[cli][validate]") {
  // The tiny GPT-2 of tests/golden/hf (vocabulary 64, attention biases): no prediction can model
  // it, so the run succeeds with the measured profile alone and notes that say why.
  std::string text;
  for (int i = 0; i < 600; ++i) text += static_cast<char>((i * 37 + i / 7) % 64);
  const fs::path corpus = write_corpus("bytes64.bin", text);
  const fs::path js = scratch() / "hf.json";
  auto r = run(std::string("validate --checkpoint ") + SIGPROP_SOURCE_DIR + "/tests/golden/hf/gpt2 --corpus " +
               corpus.string() + " --tokens 256 --seq-len 8 --json " + js.string());
  INFO(r.err);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(sigprop::test::cli::slurp(js));
  CHECK(j["model"]["model"]["attn_bias"] == true);
  CHECK(Profile::from_json(j["measured"]).settings["sequences"] == 32);
  for (const char* p : {"theory", "simulate", "init_ensemble"}) CHECK(j["predicted"][p].is_null());
  CHECK(j["agreement"].empty());
  CHECK_THAT(j["notes"].dump(), Catch::Contains("architecture extensions") && Catch::Contains("vocabulary has 64"));
  // bytes outside its vocabulary are bad input naming the corpus
  auto bad = run(std::string("validate --checkpoint ") + SIGPROP_SOURCE_DIR + "/tests/golden/hf/gpt2 --corpus " +
                 write_corpus("abc.txt", std::string(100, 'z')).string() + " --tokens 32 --seq-len 8");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Catch::Contains("abc.txt") && Catch::Contains("vocabulary"));
}
