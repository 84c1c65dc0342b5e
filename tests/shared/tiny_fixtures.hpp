#pragma once
// Fixtures shared by the facade tests ([api], test_api_tools.cpp) and the C ABI tests ([c-api],
// test_c_api.cpp): a tiny checkpoint with its corpus, and a report config of four cheap jobs.
#include <filesystem>
#include <fstream>
#include <string>

#include "validate/model.hpp"

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
