// The language model around the MODEL.md block (validate/model.hpp).
//   [gradcheck] every parameter gradient and dloss/dX_l against central differences, for
//               MODEL.md stacks and for every extension real checkpoints need
//   [repro]     loss and gradients bit-identical on 1 and 3 threads
//   [config]    checkpoints that are wrong in every way a file can be: IoError naming it
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "core/error.hpp"
#include "sim/block.hpp"
#include "validate/model.hpp"
#include "validate/safetensors.hpp"

namespace fs = std::filesystem;
using sigprop::ConfigError;
using sigprop::IoError;
using sigprop::StackSpec;
using namespace sigprop::validate;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  StackSpec& s = c.arch.spec;
  s.depth = 2;
  s.tokens = 6;
  s.width = 8;
  s.heads = 2;
  s.mlp_ratio = 1.5;
  s.sigma_b2 = 0.1;
  c.vocab = 11;
  return c;
}

// Every parameter random (gains near 1), so no gradient can vanish by symmetry.
template <class Real>
void randomise(Model<Real>& m, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  m.for_each([&](const std::string& name, auto& t) {
    const bool gain = name.ends_with(".g");
    const double sd = gain ? 0.1 : (t.rows() == 1 ? 0.2 : 0.7 / std::sqrt(static_cast<double>(t.rows())));
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<Real>((gain ? 1.0 : 0.0) + sd * n(rng));
  });
}

Batch tiny_batch(const ModelConfig& c, int B, int T, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> tok(0, c.vocab - 1);
  Batch b;
  for (int i = 0; i < B; ++i) {
    std::vector<int> x(static_cast<size_t>(T)), y(static_cast<size_t>(T));
    for (auto& v : x) v = tok(rng);
    for (auto& v : y) v = tok(rng);
    b.inputs.push_back(x);
    b.targets.push_back(y);
  }
  return b;
}

// Central differences of the batch loss for a few entries of every tensor, h = 1e-5:
// truncation h^2 |L'''| / 6 ~ 1e-11 and round-off 1e-16 |L| / h ~ 1e-11 for O(1) losses,
// so 1e-7 relative (+ 1e-9 absolute) is a loose but bug-revealing bound.
void gradcheck(Model<double> m, const Batch& batch, int skip_block = 0) {
  Model<double> g = m.zeros_like();
  loss_and_grad(m, batch, &g, 1, skip_block);
  std::map<std::string, Eigen::Index> n_checked;
  m.for_each([&](const std::string& name, auto& t) {
    const auto& gt = [&]() -> const auto& {
      const void* p = nullptr;
      g.for_each([&](const std::string& gn, const auto& gtt) {
        if (gn == name) p = &gtt;
      });
      REQUIRE(p != nullptr);
      return *static_cast<const std::remove_cvref_t<decltype(t)>*>(p);
    }();
    const Eigen::Index n = t.size();
    for (Eigen::Index k = 0; k < std::min<Eigen::Index>(n, 6); ++k) {
      const Eigen::Index i = (k * 7919) % n;
      const double keep = t.data()[i], h = 1e-5;
      t.data()[i] = keep + h;
      const double lp = loss_and_grad<double>(m, batch, nullptr, 1, skip_block);
      t.data()[i] = keep - h;
      const double lm = loss_and_grad<double>(m, batch, nullptr, 1, skip_block);
      t.data()[i] = keep;
      const double fd = (lp - lm) / (2 * h);
      INFO(name << "[" << i << "]: analytic " << gt.data()[i] << ", central difference " << fd);
      CHECK(std::abs(gt.data()[i] - fd) <= 1e-9 + 1e-7 * std::abs(fd));
    }
    n_checked[name] = n;
  });
  CHECK(n_checked.size() == static_cast<size_t>(std::distance(n_checked.begin(), n_checked.end())));
}

}  // namespace

TEST_CASE("model gradients: MODEL.md stacks against central differences", "[gradcheck]") {
  using sigprop::Norm;
  using sigprop::NormType;
  using sigprop::Activation;
  struct Case {
    const char* name;
    void (*edit)(ModelConfig&);
  };
  const Case cases[] = {
      {"pre-LN gelu causal", [](ModelConfig&) {}},
      {"post RMSNorm relu tied no final norm",
       [](ModelConfig& c) {
         c.arch.spec.norm = Norm::Post;
         c.arch.spec.norm_type = NormType::RmsNorm;
         c.arch.spec.activation = Activation::Tanh;
         c.tied = true;
         c.final_norm = false;
       }},
      {"LayerNorm scaling silu no mask",
       [](ModelConfig& c) {
         c.arch.spec.norm = Norm::Lns;
         c.arch.spec.activation = Activation::Silu;
         c.arch.spec.mask = sigprop::Mask::None;
         c.arch.spec.depth = 3;
       }},
      {"deepnorm mlp only gelu_tanh",
       [](ModelConfig& c) {
         c.arch.spec.norm = Norm::DeepNorm;
         c.arch.spec.blocks = sigprop::Blocks::Mlp;
         c.arch.spec.activation = Activation::GeluTanh;
         c.final_norm = false;
       }},
      {"no norm dense erf without positions",
       [](ModelConfig& c) {
         c.arch.spec.norm = Norm::None;
         c.arch.spec.blocks = sigprop::Blocks::Dense;
         c.arch.spec.activation = Activation::Erf;
         c.learned_pos = false;
       }},
      {"attention only no residual 1/dh",
       [](ModelConfig& c) {
         c.arch.spec.blocks = sigprop::Blocks::Attn;
         c.arch.spec.residual = false;
         c.arch.spec.qk_scale = sigprop::QkScale::InvDh;
         c.arch.spec.branch_scale = {sigprop::BranchScaleKind::Number, 0.7};
       }},
  };
  for (const Case& cs : cases) {
    SECTION(cs.name) {
      ModelConfig c = tiny_config();
      cs.edit(c);
      Model<double> m = Model<double>::zeros(c);
      randomise(m, 7);
      gradcheck(m, tiny_batch(c, 3, 5, 11));
    }
  }
}

TEST_CASE("model gradients: real-checkpoint extensions against central differences", "[gradcheck]") {
  ModelConfig c = tiny_config();
  c.arch.spec.heads = 4;  // dh = 2... too small for rotary on 2 dims? rotary_dims = 2 is fine
  c.arch.spec.width = 16;
  c.arch.spec.activation = sigprop::Activation::Silu;
  SECTION("llama-like: RMSNorm gated MLP grouped KV rotary no biases") {
    c.arch.spec.norm_type = sigprop::NormType::RmsNorm;
    c.arch.ext.gated_mlp = true;
    c.arch.ext.kv_heads = 2;
    c.arch.ext.rotary_dims = 4;
    c.arch.ext.rope_theta = 100;
    c.mlp_bias = false;
    c.learned_pos = false;
  }
  SECTION("neox-like: parallel partial rotary attention biases") {
    c.arch.ext.parallel = true;
    c.arch.ext.rotary_dims = 2;
    c.arch.ext.attn_bias = true;
    c.arch.spec.activation = sigprop::Activation::Gelu;
  }
  SECTION("gpt2-like: tied gelu_tanh attention biases") {
    c.arch.ext.attn_bias = true;
    c.tied = true;
    c.arch.spec.activation = sigprop::Activation::GeluTanh;
  }
  Model<double> m = Model<double>::zeros(c);
  randomise(m, 3);
  gradcheck(m, tiny_batch(c, 2, 6, 5));
}

TEST_CASE("model gradients with a skipped block and dloss/dX_l", "[gradcheck]") {
  ModelConfig c = tiny_config();
  c.arch.spec.depth = 3;
  Model<double> m = Model<double>::zeros(c);
  randomise(m, 9);
  const Batch b = tiny_batch(c, 2, 5, 1);
  gradcheck(m, b, 2);
  // the skipped block is the identity
  const Trace<double> tr = forward(m, b.inputs[0], 2);
  CHECK(tr.X[2] == tr.X[1]);
  // deltas: dloss/dX_0 is the gradient of the position embedding rows (learned_pos), and
  // dloss/dX_L = J_f^T dlogits; X_l -> X_{l+1} shifts are checked through the blocks' gradients
  Model<double> g = m.zeros_like();
  std::vector<sigprop::validate::Mat<double>> deltas;
  const Trace<double> full = forward(m, b.inputs[0]);
  backward(m, full, b.inputs[0], b.targets[0], 1.0, &g, &deltas);
  REQUIRE(deltas.size() == 4);
  for (int t = 0; t < 5; ++t) CHECK((g.wpe.row(t) - deltas[0].row(t)).norm() <= 1e-14 * (1 + deltas[0].row(t).norm()));
  // dloss/dX_L by central differences on X_L's first entry: perturb the last block's output
  // through the final norm and unembedding only
  const double h = 1e-6;
  auto head_loss = [&](const sigprop::validate::Mat<double>& XL) {
    Trace<double> t2 = full;
    sigprop::sim::norm_forward(t2.xf_hat, t2.rstd_f, XL, c.arch.spec.norm_type, c.arch.spec.norm_eps);
    t2.xf = t2.xf_hat * m.lnf_g.asDiagonal();
    t2.xf.rowwise() += m.lnf_b;
    t2.logits = t2.xf * m.lm_head;
    return sequence_loss(t2, b.targets[0]);
  };
  for (int i = 0; i < 8; ++i) {
    auto Xp = full.X.back(), Xm = full.X.back();
    Xp(i % 5, i) += h;
    Xm(i % 5, i) -= h;
    const double fd = (head_loss(Xp) - head_loss(Xm)) / (2 * h);
    CHECK(std::abs(deltas[3](i % 5, i) - fd) <= 1e-8 + 1e-6 * std::abs(fd));
  }
}

TEST_CASE("model loss and gradients do not depend on the thread count", "[repro]") {
  ModelConfig c = tiny_config();
  Model<float> m = Model<float>::initial(c, 42);
  const Batch b = tiny_batch(c, 9, 6, 2);
  Model<float> g1 = m.zeros_like(), g3 = m.zeros_like();
  const double l1 = loss_and_grad(m, b, &g1, 1), l3 = loss_and_grad(m, b, &g3, 3);
  CHECK(l1 == l3);
  g1.for_each_pair(g3, [](const std::string& name, auto& x, const auto& y) {
    INFO(name);
    CHECK(x == y);
  });
}

TEST_CASE("an initial model is Monte Carlo sample 0 of the same streams", "[sim]") {
  ModelConfig c = tiny_config();
  c.arch.spec.width = 64;
  c.arch.spec.heads = 4;
  c.vocab = 256;
  Model<double> m = Model<double>::initial(c, 5);
  for (int l = 1; l <= c.arch.spec.depth; ++l) {
    const auto w = sigprop::sim::draw_layer_weights<double>(c.arch.spec, 5, 0, l);
    CHECK(m.blocks[l - 1].wqkv == w.wqkv);
    CHECK(m.blocks[l - 1].w2 == w.w2);
    CHECK(m.blocks[l - 1].b1 == w.b1);
    CHECK((m.blocks[l - 1].n1g.array() == 1.0).all());
    CHECK((m.blocks[l - 1].n2b.array() == 0.0).all());
  }
  // E|x_t|^2 / d = q0 for X_0 = wte[tok] + wpe[t]: 256 x 64 + 6 x 64 entries of variance 1/2
  const double q_wte = m.wte.squaredNorm() / m.wte.size(), q_wpe = m.wpe.squaredNorm() / m.wpe.size();
  CHECK(std::abs(q_wte - 0.5) < 5 * 0.5 * std::sqrt(2.0 / m.wte.size()));
  CHECK(std::abs(q_wpe - 0.5) < 5 * 0.5 * std::sqrt(2.0 / m.wpe.size()));
  // extensions cannot be drawn
  c.arch.ext.gated_mlp = true;
  CHECK_THROWS_AS(Model<double>::initial(c, 5), ConfigError);
}

TEST_CASE("model checkpoints: round trip and every way a file can be wrong", "[config]") {
  namespace st = sigprop::safetensors;
  const fs::path dir = fs::temp_directory_path() / fmt::format("sigprop_model_{}", ::getpid());
  fs::create_directories(dir);
  ModelConfig c = tiny_config();
  c.arch.ext.attn_bias = false;
  const Model<double> m = Model<double>::initial(c, 1);
  const fs::path good = dir / "good.safetensors";
  save_checkpoint(good, m, {{"sigprop.step", "7"}}, st::Dtype::F64);
  const Model<double> back = load_checkpoint<double>(good);
  back.for_each([&](const std::string& name, const auto& t) {
    bool same = false;
    m.for_each([&](const std::string& n2, const auto& t2) {
      if (n2 == name) same = t.size() == t2.size() && std::equal(t.data(), t.data() + t.size(), t2.data());
    });
    INFO(name);
    CHECK(same);
  });
  CHECK(back.cfg.to_json() == m.cfg.to_json());
  const st::File f = st::read_file(good);
  CHECK(f.metadata.at("sigprop.step") == "7");

  auto expect = [&](std::vector<st::Tensor> tensors, st::Metadata meta, const std::string& needle) {
    const fs::path p = dir / "bad.safetensors";
    st::write_file(p, tensors, meta);
    try {
      (void)load_checkpoint<float>(p);
      FAIL("no error for " << needle);
    } catch (const IoError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find("bad.safetensors") != std::string::npos);
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  std::vector<st::Tensor> ts = f.tensors;
  SECTION("no sigprop metadata") { expect(ts, {}, "not a sigprop checkpoint"); }
  SECTION("a missing tensor") {
    ts.erase(std::find_if(ts.begin(), ts.end(), [](const st::Tensor& t) { return t.name == "h.2.mlp.w1"; }));
    expect(ts, f.metadata, "h.2.mlp.w1");
  }
  SECTION("an unexpected tensor") {
    const std::vector<double> v(3, 1.0);
    ts.push_back(st::make_tensor("h.9.mlp.w1", st::Dtype::F32, {3}, v));
    expect(ts, f.metadata, "h.9.mlp.w1");
  }
  SECTION("a tensor of the wrong shape") {
    for (auto& t : ts)
      if (t.name == "lnf.g") t = st::make_tensor("lnf.g", st::Dtype::F64, {4, 2}, std::vector<double>(8, 1.0));
    expect(ts, f.metadata, "lnf.g");
  }
  SECTION("an integer tensor") {
    for (auto& t : ts)
      if (t.name == "lnf.b") {
        t.dtype = st::Dtype::I64;
      }
    expect(ts, f.metadata, "lnf.b");
  }
  SECTION("a NaN weight") {
    for (auto& t : ts)
      if (t.name == "wpe") {
        std::vector<double> v = t.to_double();
        v[5] = std::nan("");
        t = st::make_tensor("wpe", st::Dtype::F64, t.shape, v);
      }
    expect(ts, f.metadata, "non-finite");
  }
  SECTION("a config that is not valid") {
    st::Metadata meta = f.metadata;
    meta["sigprop.model"] = meta["sigprop.model"].replace(meta["sigprop.model"].find("\"vocab\""), 7, "\"vocub\"");
    expect(ts, meta, "model.vocub");
  }
  fs::remove_all(dir);
}
