#pragma once
// Fixtures shared by the facade tests ([api], test_api_tools.cpp), the C ABI tests ([c-api],
// test_c_api.cpp), the engine and progress tests: a tiny checkpoint with its corpus, a tiny
// trainable model and text, and a report config of four cheap jobs.
#include <filesystem>
#include <fstream>
#include <string>

#include <vector>

#include "validate/model.hpp"
#include "validate/train.hpp"

namespace sigprop::test {

// A freshly initialised pre-LN model, d = 16, H = 2, L = 2, context 8 (seed 7), and 1.5 KB of
// text, written into `dir` as tiny.safetensors and tiny.txt.
struct TinyFiles {
  std::filesystem::path checkpoint, corpus;
};
inline TinyFiles write_tiny_checkpoint(const std::filesystem::path& dir) {
  validate::ModelConfig c;
  c.arch.spec.depth = 2;
  c.arch.spec.tokens = 8;
  c.arch.spec.width = 16;
  c.arch.spec.heads = 2;
  c.vocab = 256;
  TinyFiles out{dir / "tiny.safetensors", dir / "tiny.txt"};
  validate::save_checkpoint(out.checkpoint, validate::Model<float>::initial(c, 7));
  std::string text;
  for (int i = 0; i < 1500; ++i) text += static_cast<char>('a' + (i * 7 + i / 13) % 26);
  std::ofstream(out.corpus, std::ios::binary) << text;
  return out;
}

// The byte-level model the engine and progress tests measure and train: d = 16, H = 2, L = 2,
// T = 8, MLP ratio 2.
inline validate::ModelConfig tiny_model_config() {
  StackSpec a;
  a.depth = 2;
  a.width = 16;
  a.heads = 2;
  a.tokens = 8;
  a.mlp_ratio = 2;
  return validate::train_model_config(a);
}
// 600 bytes of lower-case text for it.
inline std::vector<unsigned char> tiny_text() {
  std::vector<unsigned char> text(600);
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<unsigned char>('a' + (i * 7 + i / 5) % 26);
  return text;
}

// 2 depths x theory and simulate = 4 jobs, well under a second.
inline std::string tiny_report_toml(const std::string& title) {
  return "[report]\ntitle = \"" + title + R"("
[stack]
tokens = 4
width = 16
heads = 2
qk_scale = "1/dh"
[sweep]
stack.depth = [2, 3]
[engines.theory]
[engines.simulate]
samples = 4
seed = 3
[figures]
metrics = ["q"]
depth_returns = false
)";
}

}  // namespace sigprop::test
