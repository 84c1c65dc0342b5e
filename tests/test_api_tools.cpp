// [api]: validate_checkpoint and report (include/sigprop/api.hpp) against `sigprop validate` and
// `sigprop report`; cancellation and errors that name the settings field.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sigprop/api.hpp"
#include "tests/shared/cli_run.hpp"
#include "tests/shared/tiny_fixtures.hpp"
#include "validate/model.hpp"

namespace api = sigprop::api;
namespace fs = std::filesystem;
using sigprop::CancelledError;
using sigprop::ConfigError;

namespace {

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("api_tools");
  return dir;
}

template <class F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

const sigprop::test::TinyFiles& files() {
  static const sigprop::test::TinyFiles f = sigprop::test::write_tiny_checkpoint(scratch());
  return f;
}

api::ValidateSettings tiny_validate() {
  api::ValidateSettings s;
  s.checkpoint = files().checkpoint.string();
  s.corpus = files().corpus.string();
  s.tokens = 256;
  s.seq_len = 8;
  s.ensemble = 2;
  s.samples = 2;
  s.seed = 3;
  return s;
}

const std::string kTinyReportText = sigprop::test::tiny_report_toml("api sweep");
const char* const kTinyReport = kTinyReportText.c_str();

}  // namespace

TEST_CASE("api validate_checkpoint: equal to `sigprop validate --json`", "[api][validate][cli]") {
  const api::ValidateSettings s = tiny_validate();
  std::vector<double> seen;
  const api::Validation v = api::validate_checkpoint(s, [&](double f, std::string_view) {
    seen.push_back(f);
    return true;
  });
  CHECK(v.measured().engine() == "measured");
  REQUIRE(v.theory() != nullptr);
  REQUIRE(v.simulate() != nullptr);
  REQUIRE(v.init_ensemble() != nullptr);
  CHECK(v.measured().layers() == 3);
  CHECK(v.sequence_loss().size() == 32);  // 256 tokens / 8
  CHECK(nlohmann::json::parse(v.agreement_json()).size() > 0);
  CHECK(nlohmann::json::parse(v.model_json())["model"]["vocab"] == 256);
  REQUIRE(!seen.empty());
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(seen.back() == Approx(1.0));

  const fs::path js = scratch() / "v.json";
  const auto r = sigprop::test::cli::run_sigprop(
      "validate --checkpoint " + s.checkpoint + " --corpus " + s.corpus +
          " --tokens 256 --seq-len 8 --ensemble 2 --samples 2 --seed 3 --threads 1 -q --json " + js.string(),
      scratch());
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(v.to_json(2) + "\n" == sigprop::test::cli::slurp(js));
  // the numbers do not depend on threads; a copy is the same result
  api::ValidateSettings s2 = s;
  s2.threads = 2;
  s2.theory = false;
  const api::Validation v2 = api::validate_checkpoint(s2);
  CHECK(v2.theory() == nullptr);
  CHECK(v2.measured().to_json() == v.measured().to_json());
  const api::Validation copy = v;
  CHECK(copy.to_json(-1) == v.to_json(-1));
}

TEST_CASE("api validate_checkpoint: errors name the settings field; cancellation", "[api][validate][config]") {
  const api::ValidateSettings ok = tiny_validate();
  auto err = [&](auto change) {
    api::ValidateSettings s = ok;
    change(s);
    return config_error([&] { (void)api::validate_checkpoint(s); });
  };
  CHECK_THAT(err([](auto& s) { s.checkpoint.clear(); }), Catch::StartsWith("ValidateSettings.checkpoint: required"));
  CHECK_THAT(err([](auto& s) { s.corpus.clear(); }), Catch::StartsWith("ValidateSettings.corpus: required"));
  CHECK_THAT(err([](auto& s) { s.checkpoint = (scratch() / "none.safetensors").string(); }),
             Catch::StartsWith("ValidateSettings.checkpoint") && Catch::Contains("none.safetensors"));
  CHECK_THAT(err([](auto& s) { s.checkpoint = files().corpus.string(); }),
             Catch::StartsWith("ValidateSettings.checkpoint") && Catch::Contains("tiny.txt"));
  CHECK_THAT(err([](auto& s) { s.corpus = (scratch() / "none.txt").string(); }),
             Catch::StartsWith("ValidateSettings.corpus") && Catch::Contains("none.txt"));
  CHECK_THAT(err([](auto& s) { s.tokens = 0; }), Catch::StartsWith("ValidateSettings.tokens"));
  CHECK_THAT(err([](auto& s) { s.seq_len = -1; }), Catch::StartsWith("ValidateSettings.seq_len"));
  CHECK_THAT(err([](auto& s) { s.ensemble = -1; }), Catch::StartsWith("ValidateSettings.ensemble"));
  CHECK_THAT(err([](auto& s) { s.samples = 70000; }), Catch::StartsWith("ValidateSettings.samples"));
  CHECK_THAT(err([](auto& s) { s.threads = -1; }), Catch::StartsWith("ValidateSettings.threads"));
  CHECK_THAT(err([](auto& s) { s.precision = "half"; }), Catch::StartsWith("ValidateSettings.precision"));
  // settings are checked before any file is read
  CHECK_THAT(err([](auto& s) {
               s.tokens = 0;
               s.corpus = "/nonexistent/none.txt";
             }),
             Catch::StartsWith("ValidateSettings.tokens"));

  int calls = 0;
  CHECK_THROWS_AS(api::validate_checkpoint(ok, [&](double, std::string_view) { return ++calls < 2; }), CancelledError);
  CHECK(calls == 2);
}

TEST_CASE("api report_from_toml: the pages, a resumed second call, cancellation keeps finished jobs", "[api][report]") {
  const fs::path out = scratch() / "report";
  fs::remove_all(out);
  api::ReportSettings s;
  s.out = out.string();
  s.figures = false;  // gnuplot need not be installed; the pages say the figures were not drawn
  const api::ReportResult r = api::report_from_toml(kTinyReport, s);
  CHECK(r.cells == 2);
  CHECK(r.jobs == 4);
  CHECK(r.jobs_reused == 0);
  CHECK(fs::is_regular_file(r.index_html));
  CHECK(fs::is_regular_file(r.report_md));
  CHECK(fs::path(r.index_html).parent_path() == out);
  CHECK(r.figures_drawn.empty());
  CHECK(!r.figures_missing.empty());
  const std::string md = sigprop::test::cli::slurp(r.report_md);
  CHECK_THAT(md, Catch::Contains("api sweep"));

  const api::ReportResult again = api::report_from_toml(kTinyReport, s);
  CHECK(again.jobs_reused == 4);
  CHECK(sigprop::test::cli::slurp(again.report_md) == md);

  // cancelled after the first job is written: that one is kept, the next call runs the rest
  const fs::path out2 = scratch() / "report_cancel";
  fs::remove_all(out2);
  s.out = out2.string();
  CHECK_THROWS_AS(
      api::report_from_toml(kTinyReport, s, [](double, std::string_view m) { return m.find("cells of") == m.npos; }),
      CancelledError);
  CHECK(!fs::exists(out2 / "index.html"));
  const api::ReportResult resumed = api::report_from_toml(kTinyReport, s);
  CHECK(resumed.jobs_reused == 1);
  CHECK(sigprop::test::cli::slurp(resumed.report_md) == md);
}

TEST_CASE("api report: errors name the settings field, the key and the file", "[api][report][config]") {
  api::ReportSettings s;
  CHECK_THAT(config_error([&] { (void)api::report_from_toml(kTinyReport, s); }),
             Catch::StartsWith("ReportSettings.out"));
  s.out = (scratch() / "report_bad").string();
  s.jobs = -1;
  CHECK_THAT(config_error([&] { (void)api::report_from_toml(kTinyReport, s); }),
             Catch::StartsWith("ReportSettings.jobs"));
  s.jobs = 1;
  s.threads = -1;
  CHECK_THAT(config_error([&] { (void)api::report_from_toml(kTinyReport, s); }),
             Catch::StartsWith("ReportSettings.threads"));
  s.threads = 1;
  CHECK_THAT(
      config_error([&] { (void)api::report_from_toml("[sweep]\nstack.dept = [1, 2]\n", s, nullptr, "mine.toml"); }),
      Catch::Contains("stack.dept") && Catch::Contains("mine.toml"));
  CHECK_THROWS_AS(api::report((scratch() / "none.toml").string(), s), sigprop::Error);
  CHECK(!fs::exists(scratch() / "report_bad"));
  // the built-in default parses (its sweep is minutes of work: not run here)
  const std::string def = api::default_report_config();
  CHECK_THAT(def, Catch::Contains("[sweep]"));
  const fs::path file = scratch() / "default.toml";
  std::ofstream(file) << def;
  s.jobs = -1;  // stops the call after parsing: the config was fine
  CHECK_THAT(config_error([&] { (void)api::report(file.string(), s); }), Catch::StartsWith("ReportSettings.jobs"));
}
