// libFuzzer harness for the spec parser (core/spec.hpp): TOML text -> StackSpec or ConfigError.
//
// Every input is a candidate spec file. parse_spec_toml must return a spec or throw
// sigprop::ConfigError; anything else (a crash, a stack overflow in the TOML parser, ASan/UBSan
// reports, another exception type, a hang) is a finding. An accepted spec must also:
//   - pass validate() again and give an MLP width in [1, kMaxMlpWidth];
//   - round-trip: parse_spec_toml(to_toml(s)) has the same spec_to_json(), and spec_from_json
//     of that JSON too.
// The input's first line is also tried as a `--set` override on the default spec (the same
// ConfigError-or-valid contract). Run with scripts/fuzz.sh (seed corpus: fuzz/corpus/spec).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/spec.hpp"

namespace {
[[noreturn]] void finding() { std::abort(); }

void check_accepted(const sigprop::StackSpec& s) {
  s.validate();  // must not throw for an accepted spec
  const int r = s.mlp_width();
  if (r < 1 || r > sigprop::kMaxMlpWidth) finding();
  const sigprop::StackSpec back = sigprop::parse_spec_toml(sigprop::to_toml(s), "<round trip>");
  if (sigprop::spec_to_json(back) != sigprop::spec_to_json(s)) finding();
  if (sigprop::spec_to_json(sigprop::spec_from_json(sigprop::spec_to_json(s))) != sigprop::spec_to_json(s)) finding();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    check_accepted(sigprop::parse_spec_toml(text, "fuzz-input"));
  } catch (const sigprop::ConfigError&) {
    // rejected with the documented error: fine
  }
  const std::string first(text.substr(0, std::min<std::size_t>(text.find('\n'), 4096)));
  try {
    sigprop::StackSpec s;
    sigprop::apply_override(s, first);
    check_accepted(s);
  } catch (const sigprop::ConfigError&) {
  }
  return 0;
}
