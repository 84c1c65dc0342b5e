// The trainer (validate/train.hpp, `sigprop train`):
//  [golden] llm.c-style parity with tools/train_golden.py (PyTorch float64): 10 AdamW steps of
//           two tiny models from the same init on the same batches give the same losses,
//           gradient norms and final weights (1e-9 relative in double; 1e-4 absolute in float,
//           the bar for losses);
//  [repro]  1 and 2 threads agree bit for bit, and a run interrupted and resumed equals an
//           uninterrupted one bit for bit;
//  [config] / [cli] bad input names the option, key or file;
//  an end-to-end `sigprop train` on a few KB of text lowers the validation loss.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/spec.hpp"
#include "tests/shared/cli_run.hpp"
#include "validate/model.hpp"
#include "validate/safetensors.hpp"
#include "validate/train.hpp"

namespace fs = std::filesystem;
using namespace sigprop;
using namespace sigprop::validate;

namespace {

const fs::path kGolden = fs::path(SIGPROP_SOURCE_DIR) / "tests" / "golden" / "train";

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("train_test");
  return dir;
}

test::cli::Run run(const std::string& args) { return test::cli::run_sigprop(args, scratch()); }

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

// The golden's model: MODEL.md pre-norm blocks with the golden's shapes and branch scale.
ModelConfig golden_config(const nlohmann::json& c) {
  StackSpec s;
  s.depth = c["L"];
  s.tokens = c["T"];
  s.width = c["d"];
  s.heads = c["H"];
  s.mlp_ratio = c["mlp_ratio"];
  s.blocks = Blocks::AttnMlp;
  s.norm = Norm::Pre;
  s.norm_type = NormType::LayerNorm;
  s.norm_eps = c["norm_eps"];
  s.activation = Activation::Gelu;
  s.mask = Mask::Causal;
  s.residual = true;
  s.branch_scale.kind = BranchScaleKind::Number;
  s.branch_scale.number = c["a"];
  s.qk_scale = QkScale::InvSqrtDh;
  ModelConfig cfg = train_model_config(s);
  REQUIRE(cfg.vocab == 256);
  REQUIRE(cfg.learned_pos);
  REQUIRE(cfg.final_norm);
  REQUIRE_FALSE(cfg.tied);
  REQUIRE(cfg.mlp_bias);
  return cfg;
}

TrainSettings golden_settings(const nlohmann::json& c) {
  TrainSettings s;
  s.steps = c["steps"];
  s.batch = c["B"];
  s.lr = c["lr"];
  s.min_lr = c["min_lr"];
  s.warmup = c["warmup"];
  s.weight_decay = c["weight_decay"];
  s.beta1 = c["betas"][0];
  s.beta2 = c["betas"][1];
  s.eps = c["eps"];
  s.max_norm = c["max_norm"];
  s.validate();
  return s;
}

template <class Real>
void check_golden(const std::string& variant, double loss_abs, double rel) {
  const fs::path dir = kGolden / variant;
  const nlohmann::json g = read_json(dir / "golden.json");
  const ModelConfig cfg = golden_config(g["config"]);
  const TrainSettings s = golden_settings(g["config"]);
  Model<Real> m = Model<Real>::zeros(cfg);  // init.safetensors has torch's metadata, not sigprop's
  fill_from_safetensors(m, safetensors::read_file(dir / "init.safetensors"));
  AdamState<Real> st = AdamState<Real>::zeros(m);
  for (int step = 0; step < s.steps; ++step) {
    Batch b;
    b.inputs = g["batches"]["inputs"][step].get<std::vector<std::vector<int>>>();
    b.targets = g["batches"]["targets"][step].get<std::vector<std::vector<int>>>();
    const StepResult r = train_step(m, st, b, s, step, 2);
    const double loss = g["losses"][step], norm = g["grad_norms"][step], lr = g["lrs"][step];
    INFO(variant << " step " << step << ": loss " << r.loss << " vs " << loss << ", grad norm " << r.grad_norm
                 << " vs " << norm);
    CHECK(std::abs(r.lr - lr) <= 1e-15 * lr);
    CHECK(std::abs(r.loss - loss) <= loss_abs);
    CHECK(std::abs(r.loss - loss) <= rel * loss);
    CHECK(std::abs(r.grad_norm - norm) <= rel * norm);
    const bool clipped = g["clipped"][step];
    CHECK(r.clipped == clipped);
  }
  // final tensors: two of them entry by entry, every one by its sum of squares
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, double> sumsq;
  m.for_each([&](const std::string& name, const auto& t) {
    std::vector<double> v(t.data(), t.data() + t.size());
    double ss = 0;
    for (double x : v) ss += x * x;
    sumsq[name] = ss;
    values[name] = std::move(v);
  });
  REQUIRE(sumsq.size() == g["final_sumsq"].size());
  for (auto& [name, ref_json] : g["final_sumsq"].items()) {
    const double ref = ref_json;
    INFO(variant << " final sum of squares of " << name << ": " << sumsq.at(name) << " vs " << ref);
    CHECK(std::abs(sumsq.at(name) - ref) <= rel * ref);
  }
  for (auto& [name, ref_json] : g["final"].items()) {
    const std::vector<double> want = ref_json;
    REQUIRE(values.at(name).size() == want.size());
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      diff = std::max(diff, std::abs(values.at(name)[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    INFO(variant << " final " << name << ": max diff " << diff << " (scale " << scale << ")");
    CHECK(diff <= rel * scale);
  }
}

// A few KB of English-like text, the same on every run.
fs::path small_corpus(std::size_t bytes = 12000) {
  const fs::path p = scratch() / fmt::format("corpus_{}.txt", bytes);
  if (fs::exists(p)) return p;
  const char* words[] = {"the", "and", "of", "in", "that", "he", "shall", "unto", "for", "his", "lord", "they",
                         "be", "is", "him", "not", "them", "it", "with", "all", "thou", "thy", "was", "god"};
  std::string text;
  std::uint64_t x = 12345;
  int in_line = 0;
  while (text.size() < bytes) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    text += words[(x >> 33) % 24];
    if (++in_line == 12) {
      text += ".\n";
      in_line = 0;
    } else {
      text += ' ';
    }
  }
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

ModelConfig small_config() {
  StackSpec s;
  s.depth = 2;
  s.width = 16;
  s.heads = 2;
  s.tokens = 8;
  s.mlp_ratio = 2;
  return train_model_config(s);
}

TrainSettings small_settings() {
  TrainSettings s;
  s.steps = 9;
  s.batch = 8;  // two chunks of loss_and_grad, so threads matter
  s.lr = 1e-2;
  s.warmup = 2;
  s.val_every = 4;
  s.val_batches = 2;
  s.checkpoint_every = 3;
  s.seed = 7;
  return s;
}

struct Stop {};

std::vector<std::string> csv_column(const fs::path& csv, int col) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> out;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    while (f.size() < 7) f.push_back("");
    out.push_back(f[static_cast<std::size_t>(col)]);
  }
  return out;
}

std::string tensor_bytes(const fs::path& p) {
  const safetensors::File f = safetensors::read_file(p);
  std::string out;
  for (const auto& t : f.tensors)
    out += t.name + ":" + std::string(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

}  // namespace

TEST_CASE("trainer matches the PyTorch float64 oracle in double to 1e-9 relative", "[golden]") {
  // Double vs float64 torch: only summation order differs, so 1e-9 relative is ~1e6 ulps of
  // headroom over 10 steps; an error in the model, clipping or AdamW is orders of magnitude larger.
  for (const char* v : {"tiny", "tiny_scaled"}) check_golden<double>(v, 1e-9, 1e-9);
}

TEST_CASE("trainer matches the PyTorch float64 oracle in float within 1e-4 nats", "[golden]") {
  // The bar: losses within 1e-4 absolute; grad norms and weights within 1e-4 relative
  // (float's roundings over 10 steps are ~1e-6).
  for (const char* v : {"tiny", "tiny_scaled"}) check_golden<float>(v, 1e-4, 1e-4);
}

TEST_CASE("learning-rate schedule warms up linearly then decays by a cosine to min_lr", "[analytic]") {
  TrainSettings s;
  s.steps = 110;
  s.warmup = 10;
  s.lr = 1e-3;
  s.min_lr = 1e-4;
  CHECK(lr_at(s, 0) == Approx(1e-4));
  CHECK(lr_at(s, 9) == Approx(1e-3));
  CHECK(lr_at(s, 10) == Approx(1e-3));
  CHECK(lr_at(s, 60) == Approx(5.5e-4));
  CHECK(lr_at(s, 110) == Approx(1e-4));
  TrainSettings d;
  d.steps = 50;
  CHECK(d.resolved().warmup == 5);
}

TEST_CASE("batches depend on seed and step only and stay inside their split", "[repro]") {
  const Corpus c = Corpus::load(small_corpus(), 0.1, 8);
  CHECK(c.train_end == 12000 - 1200);
  const Batch a = train_batch(c, 4, 8, 3, 5), b = train_batch(c, 4, 8, 3, 5), o = train_batch(c, 4, 8, 3, 6);
  CHECK(a.inputs == b.inputs);
  CHECK(a.inputs != o.inputs);
  for (int step = 0; step < 200; ++step) {
    const Batch t = train_batch(c, 2, 8, 1, step);
    for (std::size_t i = 0; i < 2; ++i) CHECK(t.targets[i][6] == t.inputs[i][7]);
  }
  // offsets are in range: window ends inside the split
  for (std::uint64_t i = 0; i < 1000; ++i) CHECK(uniform_index(9, 1, i, 3) < 3);
  const Batch v = val_batch(c, 2, 8, 1, 0);
  const std::string val_text(c.bytes.begin() + static_cast<long>(c.train_end), c.bytes.end());
  for (const auto& seq : v.inputs) {
    std::string s(seq.begin(), seq.end());
    CHECK(val_text.find(s) != std::string::npos);
  }
}

TEST_CASE("training gives the same numbers with 1 and 2 threads", "[repro]") {
  const ModelConfig cfg = small_config();
  TrainSettings s = small_settings();
  s.threads = 1;
  const TrainOutcome a = train(cfg, s, small_corpus(), scratch() / "threads1");
  s.threads = 2;
  const TrainOutcome b = train(cfg, s, small_corpus(), scratch() / "threads2");
  REQUIRE(a.train_losses.size() == 9);
  CHECK(a.train_losses == b.train_losses);
  CHECK(a.last_val == b.last_val);
  CHECK(tensor_bytes(scratch() / "threads1" / "final.safetensors") ==
        tensor_bytes(scratch() / "threads2" / "final.safetensors"));
}

TEST_CASE("a resumed run equals an uninterrupted one bit for bit", "[repro]") {
  for (const char* precision : {"float", "double"}) {
    const ModelConfig cfg = small_config();
    TrainSettings s = small_settings();
    s.precision = precision;
    const fs::path whole = scratch() / fmt::format("whole_{}", precision);
    const fs::path parts = scratch() / fmt::format("parts_{}", precision);
    fs::remove_all(whole);
    fs::remove_all(parts);
    const TrainOutcome a = train(cfg, s, small_corpus(), whole);
    // interrupted after step 7: the last checkpoint is at step 6
    CHECK_THROWS_AS(train(cfg, s, small_corpus(), parts,
                          [](const TrainProgress& p) {
                            if (p.step == 7) throw Stop{};
                          }),
                    Stop);
    CHECK(fs::exists(parts / "ckpt_step6.safetensors"));
    CHECK_FALSE(fs::exists(parts / "final.safetensors"));
    s.threads = 2;  // may change on resume
    const TrainOutcome b = train(cfg, s, small_corpus(), parts);
    CHECK(b.start_step == 6);
    REQUIRE(b.train_losses.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(b.train_losses[i] == a.train_losses[6 + i]);
    CHECK(b.last_val == a.last_val);
    CHECK(tensor_bytes(whole / "final.safetensors") == tensor_bytes(parts / "final.safetensors"));
    CHECK(tensor_bytes(whole / "optim.safetensors") == tensor_bytes(parts / "optim.safetensors"));
    // loss.csv: the same steps, train losses and validation losses
    for (int col : {0, 1, 2, 3, 4, 5}) CHECK(csv_column(whole / "loss.csv", col) == csv_column(parts / "loss.csv", col));
    // a finished run is not trained again
    const TrainOutcome c = train(cfg, s, small_corpus(), parts);
    CHECK(c.start_step == s.steps);
    CHECK(c.train_losses.empty());
    // checkpoints carry the trainer's metadata
    const safetensors::File f = safetensors::read_file(parts / "final.safetensors");
    CHECK(f.metadata.at("sigprop.step") == "9");
    CHECK(nlohmann::json::parse(f.metadata.at("sigprop.train"))["precision"] == precision);
    CHECK(nlohmann::json::parse(f.metadata.at("sigprop.corpus"))["bytes"] == 12000);
    CHECK_FALSE(f.metadata.at("sigprop.val_loss").empty());
    CHECK_FALSE(f.metadata.at("sigprop.train_loss").empty());
    CHECK(load_checkpoint<double>(whole / "init.safetensors").num_params() ==
          load_checkpoint<double>(whole / "final.safetensors").num_params());
  }
}

TEST_CASE("resuming with other settings or another corpus is refused naming what differs", "[config]") {
  const ModelConfig cfg = small_config();
  TrainSettings s = small_settings();
  s.steps = 2;
  const fs::path dir = scratch() / "refuse";
  fs::remove_all(dir);
  train(cfg, s, small_corpus(), dir);
  s.lr = 2e-2;
  CHECK_THROWS_WITH(train(cfg, s, small_corpus(), dir), Catch::Contains("lr = 0.01, this one 0.02"));
  s.lr = 1e-2;
  CHECK_THROWS_WITH(train(cfg, s, small_corpus(13000), dir), Catch::Contains("another corpus"));
}

TEST_CASE("bad trainer settings and corpora name the setting or the file", "[config]") {
  auto msg = [](TrainSettings s) {
    try {
      s.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TrainSettings s;
  s.steps = 0;
  CHECK_THAT(msg(s), Catch::Contains("steps = 0"));
  s = {};
  s.lr = -1;
  CHECK_THAT(msg(s), Catch::Contains("lr = -1"));
  s = {};
  s.min_lr = 1;
  CHECK_THAT(msg(s), Catch::Contains("min_lr"));
  s = {};
  s.beta2 = 1;
  CHECK_THAT(msg(s), Catch::Contains("beta2"));
  s = {};
  s.precision = "half";
  CHECK_THAT(msg(s), Catch::Contains("precision"));
  s = {};
  s.val_fraction = 0;
  CHECK_THAT(msg(s), Catch::Contains("val_fraction"));
  CHECK_THROWS_AS(Corpus::load(scratch() / "no_such_corpus.txt", 0.1, 8), IoError);
  CHECK_THROWS_WITH(Corpus::load(scratch() / "no_such_corpus.txt", 0.1, 8), Catch::Contains("no_such_corpus.txt"));
  const fs::path tiny = scratch() / "tiny_corpus.txt";
  std::ofstream(tiny) << "In the beginning God created the heaven and the earth.";
  CHECK_THROWS_AS(Corpus::load(tiny, 0.1, 8), ConfigError);
  CHECK_THROWS_WITH(Corpus::load(tiny, 0.1, 8), Catch::Contains("tiny_corpus.txt") && Catch::Contains("too short"));
  CHECK_NOTHROW(Corpus::load(tiny, 0.5, 8));
}

TEST_CASE("sigprop train rejects bad input with exit code 2 naming the option key or file", "[cli][config]") {
  const std::string corpus = small_corpus().string(), out = (scratch() / "cli_bad").string();
  auto r = run("train --corpus " + (scratch() / "missing.txt").string() + " --out " + out + " -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--corpus") && Catch::Contains("missing.txt"));
  const fs::path tiny = scratch() / "tiny_cli.txt";
  std::ofstream(tiny) << "In the beginning";
  r = run("train --corpus " + tiny.string() + " --out " + out + " -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("tiny_cli.txt") && Catch::Contains("too short"));
  r = run("train --corpus " + corpus + " --out " + out + " --steps 0 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--steps"));
  r = run("train --corpus " + corpus + " --out " + out + " --lr=-0.1 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--lr"));
  r = run("train --corpus " + corpus + " --out " + out + " --set stack.widht=8 -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("stack.widht"));
  r = run("train --corpus " + corpus + " --out " + out + " --precision half -q");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--precision"));
}

TEST_CASE("sigprop train on a few KB of text lowers the validation loss by at least 0.5 nats", "[cli]") {
  // 30 steps of a d = 32, L = 2 model on 12 KB of 24-word text. The initial loss is about
  // ln 256 = 5.5 nats; the unigram entropy of this text is under 3 nats, which a byte model
  // reaches in a few dozen steps, so a 0.5 nat margin is far from flaky (observed: 6.1 -> 1.8).
  const fs::path out = scratch() / "e2e";
  fs::remove_all(out);
  const auto r = run("train --corpus " + small_corpus().string() + " --out " + out.string() +
                     " --steps 30 --set stack.depth=2 --set stack.width=32 --set stack.heads=4 --set stack.tokens=32"
                     " --batch 8 --lr 1e-2 --warmup 3 --val-every 10 --val-batches 4 --threads 2");
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* f : {"init.safetensors", "final.safetensors", "optim.safetensors", "loss.csv"})
    CHECK(fs::exists(out / f));
  const auto steps = csv_column(out / "loss.csv", 0), val = csv_column(out / "loss.csv", 4);
  REQUIRE(steps.size() == 31);
  CHECK(steps.front() == "0");
  CHECK(steps.back() == "30");
  REQUIRE_FALSE(val.front().empty());
  REQUIRE_FALSE(val.back().empty());
  CHECK(val[5].empty());
  CHECK_FALSE(val[10].empty());
  const double first = std::stod(val.front()), last = std::stod(val.back());
  INFO("validation loss " << first << " -> " << last);
  CHECK(first - last >= 0.5);
  CHECK_THAT(r.err, Catch::Contains("step 30/30"));
}
