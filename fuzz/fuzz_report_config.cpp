// libFuzzer harness for the report config parser (reports/config.hpp): TOML text ->
// ReportConfig or ConfigError.
//
// parse_report_config must return a config or throw sigprop::ConfigError (it also expands the
// sweep into cells, so a bad sweep value fails here); anything else is a finding. An accepted
// config must round-trip: to_toml(cfg) parses again, and printing that gives the same text.
// Run with scripts/fuzz.sh (seed corpus: fuzz/corpus/report_config).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "reports/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  sigprop::reports::ReportConfig cfg;
  try {
    cfg = sigprop::reports::parse_report_config(text, "fuzz-input");
  } catch (const sigprop::ConfigError&) {
    return 0;  // rejected with the documented error: fine
  }
  const std::string once = sigprop::reports::to_toml(cfg);
  const std::string twice = sigprop::reports::to_toml(sigprop::reports::parse_report_config(once, "<round trip>"));
  if (once != twice) std::abort();
  return 0;
}
