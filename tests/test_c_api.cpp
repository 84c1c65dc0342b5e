// [c-api]: the C ABI (include/sigprop/sigprop.h) against the C++ facade it wraps: every entry
// point, every status with a message naming the key, the buffer protocol, NULL arguments,
// cancellation, exceptions that must not escape, and the per-thread last error.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <latch>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <filesystem>
#include <fstream>

#include "sigprop/api.hpp"
#include "sigprop/sigprop.h"
#include "tests/shared/cli_run.hpp"
#include "tests/shared/tiny_fixtures.hpp"
#include "validate/model.hpp"

namespace api = sigprop::api;

namespace {

std::string last_error() {
  return sigprop_last_error();
}

// Owning wrappers so that a failed REQUIRE frees what the test made.
struct Spec {
  sigprop_spec* p = nullptr;
  ~Spec() { sigprop_spec_free(p); }
};
struct Settings {
  sigprop_settings* p = nullptr;
  ~Settings() { sigprop_settings_free(p); }
};
struct Prof {
  sigprop_profile* p = nullptr;
  ~Prof() { sigprop_profile_free(p); }
};
struct Valid {
  sigprop_validation* p = nullptr;
  ~Valid() { sigprop_validation_free(p); }
};
struct Report {
  sigprop_report_result* p = nullptr;
  ~Report() { sigprop_report_result_free(p); }
};

// Reads text through the buffer protocol: a sizing call, then the exact size.
template <class F>
std::string text(F&& get) {
  int64_t needed = -1;
  REQUIRE(get(nullptr, 0, &needed) == SIGPROP_OK);
  REQUIRE(needed >= 1);
  std::string out(static_cast<size_t>(needed), '?');
  int64_t again = -1;
  REQUIRE(get(out.data(), needed, &again) == SIGPROP_OK);
  CHECK(again == needed);
  CHECK(out.back() == '\0');
  out.pop_back();
  return out;
}

std::vector<double> values(const sigprop_profile* p, const char* name) {
  int64_t n = -1;
  REQUIRE(sigprop_profile_values(p, name, nullptr, 0, &n) == SIGPROP_OK);
  std::vector<double> v(static_cast<size_t>(n));
  REQUIRE(sigprop_profile_values(p, name, v.data(), n, &n) == SIGPROP_OK);
  return v;
}

bool same(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

// A small spec whose theory is closed-form (1/dh attention): milliseconds per call.
const char* kSmallSets[] = {"stack.depth=6", "stack.tokens=4", "stack.width=32", "stack.heads=4",
                            "stack.qk_scale=1/dh"};

void make_small(Spec& s) {
  REQUIRE(sigprop_spec_default(&s.p) == SIGPROP_OK);
  for (const char* a : kSmallSets) REQUIRE(sigprop_spec_set(s.p, a) == SIGPROP_OK);
}

sigprop::StackSpec small_cpp() {
  sigprop::StackSpec s = api::default_spec();
  api::apply_overrides(s, {std::begin(kSmallSets), std::end(kSmallSets)});
  return s;
}

void set(sigprop_settings* s, const char* key, const char* value) {
  INFO(key << "=" << value << ": " << last_error());
  REQUIRE(sigprop_settings_set(s, key, value) == SIGPROP_OK);
}

}  // namespace

TEST_CASE("c-api: versions, status names, last error cleared by a successful call", "[c-api]") {
  CHECK(sigprop_abi_version() == SIGPROP_ABI_VERSION);
  CHECK(std::string(sigprop_version()) == api::version());
  CHECK(std::string(sigprop_status_name(SIGPROP_OK)) == "SIGPROP_OK");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_CONFIG)) == "SIGPROP_E_CONFIG");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_IO)) == "SIGPROP_E_IO");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_NUMERICAL)) == "SIGPROP_E_NUMERICAL");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_CANCELLED)) == "SIGPROP_E_CANCELLED");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_CUDA)) == "SIGPROP_E_CUDA");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_MEMORY)) == "SIGPROP_E_MEMORY");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_ARGUMENT)) == "SIGPROP_E_ARGUMENT");
  CHECK(std::string(sigprop_status_name(SIGPROP_E_INTERNAL)) == "SIGPROP_E_INTERNAL");
  CHECK(std::string(sigprop_status_name(99)) == "unknown status");

  Spec s;
  CHECK(sigprop_spec_set(nullptr, "stack.depth=3") == SIGPROP_E_ARGUMENT);
  CHECK_FALSE(last_error().empty());
  REQUIRE(sigprop_spec_default(&s.p) == SIGPROP_OK);
  CHECK(last_error().empty());
}

TEST_CASE("c-api specs: default, TOML text, file, overrides, copies, errors naming the key or file",
          "[c-api][config]") {
  Spec d;
  REQUIRE(sigprop_spec_default(&d.p) == SIGPROP_OK);
  const std::string toml = text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_toml(d.p, b, c, n); });
  CHECK(toml == api::spec_to_toml(api::default_spec()));
  CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_json(d.p, b, c, n); }) ==
        api::spec_to_json(api::default_spec()));

  SECTION("TOML text round-trips; a bad key names it and leaves *out alone") {
    Spec t;
    REQUIRE(sigprop_spec_from_toml(toml.c_str(), nullptr, &t.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_toml(t.p, b, c, n); }) == toml);
    sigprop_spec* untouched = reinterpret_cast<sigprop_spec*>(&t);
    sigprop_spec* out = untouched;
    CHECK(sigprop_spec_from_toml("[stack]\ndepht = 3\n", "mine.toml", &out) == SIGPROP_E_CONFIG);
    CHECK(out == untouched);
    CHECK_THAT(last_error(), Catch::Contains("depht") && Catch::Contains("mine.toml"));
    CHECK(sigprop_spec_from_toml("[stack]\nheads = 7\n", nullptr, &out) == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("stack.heads"));
  }
  SECTION("files: examples/default.toml; a missing file is SIGPROP_E_IO naming the path") {
    Spec f;
    REQUIRE(sigprop_spec_from_file(SIGPROP_SOURCE_DIR "/examples/default.toml", &f.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_toml(f.p, b, c, n); }) ==
          api::spec_to_toml(api::spec_from_file(SIGPROP_SOURCE_DIR "/examples/default.toml")));
    sigprop_spec* out = nullptr;
    CHECK(sigprop_spec_from_file("/nonexistent/spec.toml", &out) == SIGPROP_E_IO);
    CHECK(out == nullptr);
    CHECK_THAT(last_error(), Catch::Contains("/nonexistent/spec.toml"));
  }
  SECTION("overrides apply in order; a bad one names the key and changes nothing") {
    REQUIRE(sigprop_spec_set(d.p, "stack.depth=48") == SIGPROP_OK);
    REQUIRE(sigprop_spec_set(d.p, "stack.qk_scale=1/dh") == SIGPROP_OK);
    sigprop::StackSpec ref = api::default_spec();
    api::apply_overrides(ref, {"stack.depth=48", "stack.qk_scale=1/dh"});
    const std::string before = text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_json(d.p, b, c, n); });
    CHECK(before == api::spec_to_json(ref));
    CHECK(sigprop_spec_set(d.p, "stack.depth=0") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("depth"));
    CHECK(sigprop_spec_set(d.p, "stack.nonsense=1") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("stack.nonsense"));
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_spec_to_json(d.p, b, c, n); }) == before);
  }
  SECTION("a copy is independent of its source") {
    Spec c;
    REQUIRE(sigprop_spec_copy(d.p, &c.p) == SIGPROP_OK);
    REQUIRE(sigprop_spec_set(c.p, "stack.depth=3") == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t n, int64_t* k) { return sigprop_spec_to_toml(d.p, b, n, k); }) == toml);
    CHECK(text([&](char* b, int64_t n, int64_t* k) { return sigprop_spec_to_toml(c.p, b, n, k); }) != toml);
  }
  sigprop_spec_free(nullptr);  // no-op
}

TEST_CASE("c-api buffers: cap 0 sizes, too small fails without writing, exact fits", "[c-api]") {
  Spec s;
  REQUIRE(sigprop_spec_default(&s.p) == SIGPROP_OK);
  const std::string json = api::spec_to_json(api::default_spec());
  const auto size = static_cast<int64_t>(json.size()) + 1;

  std::vector<char> buf(static_cast<size_t>(size) + 16, '#');
  int64_t needed = -1;
  CHECK(sigprop_spec_to_json(s.p, buf.data(), 0, &needed) == SIGPROP_OK);  // sizing, buffer given
  CHECK(needed == size);
  CHECK(std::all_of(buf.begin(), buf.end(), [](char c) { return c == '#'; }));
  needed = -1;
  CHECK(sigprop_spec_to_json(s.p, nullptr, 0, &needed) == SIGPROP_OK);
  CHECK(needed == size);

  needed = -1;
  CHECK(sigprop_spec_to_json(s.p, buf.data(), size - 1, &needed) == SIGPROP_E_ARGUMENT);
  CHECK(needed == size);  // still told the size
  CHECK_THAT(last_error(), Catch::Contains(std::to_string(size)));
  CHECK(std::all_of(buf.begin(), buf.end(), [](char c) { return c == '#'; }));  // nothing written

  CHECK(sigprop_spec_to_json(s.p, buf.data(), size, nullptr) == SIGPROP_OK);  // needed is optional
  CHECK(std::string(buf.data()) == json);
  CHECK(buf[static_cast<size_t>(size)] == '#');  // nothing past the NUL

  CHECK(sigprop_spec_to_json(s.p, buf.data(), -1, &needed) == SIGPROP_E_ARGUMENT);
  CHECK_THAT(last_error(), Catch::Contains("negative"));
  CHECK(sigprop_spec_to_json(s.p, nullptr, 10, &needed) == SIGPROP_E_ARGUMENT);
  CHECK_THAT(last_error(), Catch::Contains("buf"));

  SECTION("doubles: sizing, too small, unknown metric names it and the available ones") {
    Spec sm;
    make_small(sm);
    Prof p;
    REQUIRE(sigprop_theory(sm.p, nullptr, nullptr, nullptr, &p.p) == SIGPROP_OK);
    int64_t n = -1;
    REQUIRE(sigprop_profile_values(p.p, "q", nullptr, 0, &n) == SIGPROP_OK);
    CHECK(n == 7);
    std::vector<double> v(9, -7.0);
    int64_t m = -1;
    CHECK(sigprop_profile_values(p.p, "q", v.data(), 6, &m) == SIGPROP_E_ARGUMENT);
    CHECK(m == 7);
    CHECK_THAT(last_error(), Catch::Contains("\"q\"") && Catch::Contains("7"));
    CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == -7.0; }));
    CHECK(sigprop_profile_values(p.p, "q", v.data(), 8, &m) == SIGPROP_OK);
    CHECK(v[7] == -7.0);
    CHECK(v[0] == 1.0);
    CHECK(sigprop_profile_values(p.p, "grad_varr", v.data(), 8, &m) == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("grad_varr") && Catch::Contains("grad_var"));
  }
}

TEST_CASE("c-api NULL arguments: SIGPROP_E_ARGUMENT naming the argument, never a crash", "[c-api]") {
  Spec s;
  make_small(s);
  Prof p;
  REQUIRE(sigprop_theory(s.p, nullptr, nullptr, nullptr, &p.p) == SIGPROP_OK);
  Settings st;
  REQUIRE(sigprop_settings_new("theory", &st.p) == SIGPROP_OK);
  char buf[8];
  int64_t n = 0;
  int32_t yes = 0;
  sigprop_spec* so = nullptr;
  sigprop_settings* seto = nullptr;
  sigprop_profile* po = nullptr;
  struct Case {
    sigprop_status status;
    const char* names;
  };
  const std::vector<Case> cases = {
      {sigprop_spec_default(nullptr), "out"},
      {sigprop_spec_from_toml(nullptr, nullptr, &so), "text"},
      {sigprop_spec_from_toml("", nullptr, nullptr), "out"},
      {sigprop_spec_from_file(nullptr, &so), "path"},
      {sigprop_spec_from_file("x.toml", nullptr), "out"},
      {sigprop_spec_set(nullptr, "stack.depth=2"), "spec"},
      {sigprop_spec_set(s.p, nullptr), "assignment"},
      {sigprop_spec_to_toml(nullptr, buf, 8, &n), "spec"},
      {sigprop_spec_to_json(nullptr, buf, 8, &n), "spec"},
      {sigprop_spec_copy(nullptr, &so), "spec"},
      {sigprop_spec_copy(s.p, nullptr), "out"},
      {sigprop_settings_new(nullptr, &seto), "engine"},
      {sigprop_settings_new("theory", nullptr), "out"},
      {sigprop_settings_set(nullptr, "seed", "1"), "settings"},
      {sigprop_settings_set(st.p, nullptr, "1"), "key"},
      {sigprop_settings_set(st.p, "seed", nullptr), "value"},
      {sigprop_settings_engine(nullptr, buf, 8, &n), "settings"},
      {sigprop_settings_copy(nullptr, &seto), "settings"},
      {sigprop_settings_copy(st.p, nullptr), "out"},
      {sigprop_theory(nullptr, nullptr, nullptr, nullptr, &po), "spec"},
      {sigprop_theory(s.p, nullptr, nullptr, nullptr, nullptr), "out"},
      {sigprop_simulate(nullptr, nullptr, nullptr, nullptr, &po), "spec"},
      {sigprop_ode(nullptr, nullptr, nullptr, nullptr, &po), "spec"},
      {sigprop_spectrum(s.p, nullptr, nullptr, nullptr, nullptr), "out"},
      {sigprop_profile_rows(nullptr, &n), "profile"},
      {sigprop_profile_rows(p.p, nullptr), "n"},
      {sigprop_profile_metric_count(nullptr, &n), "profile"},
      {sigprop_profile_metric_count(p.p, nullptr), "n"},
      {sigprop_profile_metric_name(nullptr, 0, buf, 8, &n), "profile"},
      {sigprop_profile_has_metric(nullptr, "q", &yes), "profile"},
      {sigprop_profile_has_metric(p.p, nullptr, &yes), "name"},
      {sigprop_profile_has_metric(p.p, "q", nullptr), "yes"},
      {sigprop_profile_values(nullptr, "q", nullptr, 0, &n), "profile"},
      {sigprop_profile_values(p.p, nullptr, nullptr, 0, &n), "name"},
      {sigprop_profile_values(p.p, "q", nullptr, 7, &n), "buf"},
      {sigprop_profile_engine(nullptr, buf, 8, &n), "profile"},
      {sigprop_profile_to_json(nullptr, 2, buf, 8, &n), "profile"},
      {sigprop_profile_to_csv(nullptr, buf, 8, &n), "profile"},
      {sigprop_profile_settings_json(nullptr, buf, 8, &n), "profile"},
      {sigprop_profile_extras_json(nullptr, buf, 8, &n), "profile"},
      {sigprop_profile_spec_toml(nullptr, buf, 8, &n), "profile"},
      {sigprop_profile_spec(nullptr, &so), "profile"},
      {sigprop_profile_spec(p.p, nullptr), "out"},
      {sigprop_profile_warning_count(nullptr, &n), "profile"},
      {sigprop_profile_warning_count(p.p, nullptr), "n"},
      {sigprop_profile_warning(nullptr, 0, buf, 8, &n), "profile"},
  };
  // The statuses were taken in order; only the last message survives, so check it separately.
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i << " (" << cases[i].names << ")");
    CHECK(cases[i].status == SIGPROP_E_ARGUMENT);
  }
  CHECK_THAT(last_error(), Catch::Contains("sigprop_profile_warning") && Catch::Contains("profile is NULL"));
  CHECK(sigprop_spec_set(s.p, nullptr) == SIGPROP_E_ARGUMENT);
  CHECK_THAT(last_error(), Catch::Contains("sigprop_spec_set: assignment is NULL"));
  CHECK(so == nullptr);
  CHECK(seto == nullptr);
  CHECK(po == nullptr);
  sigprop_settings_free(nullptr);
  sigprop_profile_free(nullptr);
}

TEST_CASE("c-api settings: string keys per engine, errors name the key, unchanged on failure", "[c-api][config]") {
  sigprop_settings* out = nullptr;
  CHECK(sigprop_settings_new("theroy", &out) == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("theroy") && Catch::Contains("spectrum"));
  CHECK(out == nullptr);

  for (const char* engine : {"theory", "simulate", "ode", "spectrum"}) {
    Settings s;
    REQUIRE(sigprop_settings_new(engine, &s.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_settings_engine(s.p, b, c, n); }) == engine);
    CHECK(sigprop_settings_set(s.p, "sampels", "3") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("\"sampels\"") && Catch::Contains(engine));
  }

  {  // theory's finite_dh: a bool; on a 1/dh spec it samples the logits (so _se columns appear)
    Settings th;
    REQUIRE(sigprop_settings_new("theory", &th.p) == SIGPROP_OK);
    CHECK(sigprop_settings_set(th.p, "finite_dh", "maybe") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("finite_dh") && Catch::Contains("maybe"));
    Spec sp;
    make_small(sp);  // qk_scale = 1/dh, d_h = 8
    std::vector<double> v(8);
    int64_t m = 0;
    Prof lim, fin;
    REQUIRE(sigprop_theory(sp.p, th.p, nullptr, nullptr, &lim.p) == SIGPROP_OK);
    CHECK(sigprop_profile_values(lim.p, "grad_var_se", v.data(), 8, &m) == SIGPROP_E_CONFIG);
    set(th.p, "finite_dh", "true");
    set(th.p, "attn_samples", "128");  // 8 error batches of 16 draws
    REQUIRE(sigprop_theory(sp.p, th.p, nullptr, nullptr, &fin.p) == SIGPROP_OK);
    CHECK(sigprop_profile_values(fin.p, "grad_var_se", v.data(), 8, &m) == SIGPROP_OK);
  }

  {  // simulate's input_kernel: "exact" gives every sample the input kernel K0 (layer-0 rho_se 0)
    Settings ik;
    REQUIRE(sigprop_settings_new("simulate", &ik.p) == SIGPROP_OK);
    set(ik.p, "samples", "3");
    CHECK(sigprop_settings_set(ik.p, "input_kernal", "exact") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("\"input_kernal\"") && Catch::Contains("input_kernel"));
    set(ik.p, "input_kernel", "exact");
    Spec sp;
    make_small(sp);  // T = 4, d = 32
    Prof p;
    REQUIRE(sigprop_simulate(sp.p, ik.p, nullptr, nullptr, &p.p) == SIGPROP_OK);
    CHECK_THAT(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_settings_json(p.p, b, c, n); }),
               Catch::Contains("\"input_kernel\":\"exact\""));
    CHECK(values(p.p, "rho_se")[0] <= 1e-12);
    set(ik.p, "input_kernel", "exakt");
    sigprop_profile* po = nullptr;
    CHECK(sigprop_simulate(sp.p, ik.p, nullptr, nullptr, &po) == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("input_kernel") && Catch::Contains("did you mean \"exact\""));
    CHECK(po == nullptr);
  }

  Settings sim;
  REQUIRE(sigprop_settings_new("simulate", &sim.p) == SIGPROP_OK);
  set(sim.p, "samples", "3");
  CHECK(sigprop_settings_set(sim.p, "samples", "3x") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"samples\"") && Catch::Contains("3x"));
  CHECK(sigprop_settings_set(sim.p, "seed", "-1") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"seed\"") && Catch::Contains("non-negative"));
  CHECK(sigprop_settings_set(sim.p, "threads", "99999999999") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"threads\"") && Catch::Contains("range"));
  CHECK(sigprop_settings_set(sim.p, "samples", "") == SIGPROP_E_CONFIG);
  Settings ode;
  REQUIRE(sigprop_settings_new("ode", &ode.p) == SIGPROP_OK);
  CHECK(sigprop_settings_set(ode.p, "kind", "clusters") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"kind\"") && Catch::Contains("shaped-sde"));
  CHECK(sigprop_settings_set(ode.p, "beta", "1.5.2") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"beta\"") && Catch::Contains("number"));
  CHECK(sigprop_settings_set(ode.p, "equiangular", "yes") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"equiangular\""));

  // A failed set leaves the earlier value: the run uses 3 samples.
  Spec s;
  make_small(s);
  Prof p;
  REQUIRE(sigprop_simulate(s.p, sim.p, nullptr, nullptr, &p.p) == SIGPROP_OK);
  CHECK_THAT(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_settings_json(p.p, b, c, n); }),
             Catch::Contains("\"samples\":3"));

  SECTION("settings made for another engine are refused; copies are independent") {
    sigprop_profile* po = nullptr;
    CHECK(sigprop_theory(s.p, sim.p, nullptr, nullptr, &po) == SIGPROP_E_ARGUMENT);
    CHECK_THAT(last_error(), Catch::Contains("\"simulate\"") && Catch::Contains("\"theory\""));
    CHECK(po == nullptr);
    Settings c;
    REQUIRE(sigprop_settings_copy(sim.p, &c.p) == SIGPROP_OK);
    set(c.p, "samples", "0");
    CHECK(sigprop_simulate(s.p, c.p, nullptr, nullptr, &po) == SIGPROP_E_CONFIG);  // range check at the start
    CHECK_THAT(last_error(), Catch::Contains("samples"));
    Prof again;
    REQUIRE(sigprop_simulate(s.p, sim.p, nullptr, nullptr, &again.p) == SIGPROP_OK);
  }
}

TEST_CASE("c-api engines: the facade's profiles, every profile accessor", "[c-api]") {
  Spec s;
  make_small(s);
  const sigprop::StackSpec cpp = small_cpp();

  SECTION("theory with settings and without") {
    Settings st;
    REQUIRE(sigprop_settings_new("theory", &st.p) == SIGPROP_OK);
    set(st.p, "seed", "5");
    set(st.p, "attn_samples", "64");
    set(st.p, "error_batches", "2");
    set(st.p, "attn_method", "mc");
    set(st.p, "quad_order", "16");
    Prof p;
    REQUIRE(sigprop_theory(s.p, st.p, nullptr, nullptr, &p.p) == SIGPROP_OK);
    api::TheorySettings ts;
    ts.seed = 5;
    ts.attn_samples = 64;
    ts.error_batches = 2;
    ts.attn_method = "mc";
    ts.quad_order = 16;
    const api::Profile ref = api::theory(cpp, ts);
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_to_json(p.p, 2, b, c, n); }) ==
          ref.to_json(2));
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_to_json(p.p, -1, b, c, n); }) ==
          ref.to_json(-1));
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_to_csv(p.p, b, c, n); }) == ref.to_csv());
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_settings_json(p.p, b, c, n); }) ==
          ref.settings_json());
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_extras_json(p.p, b, c, n); }) ==
          ref.extras_json());
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_spec_toml(p.p, b, c, n); }) ==
          ref.spec_toml());
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_engine(p.p, b, c, n); }) == "theory");
    int64_t rows = 0, count = 0;
    REQUIRE(sigprop_profile_rows(p.p, &rows) == SIGPROP_OK);
    CHECK(rows == ref.layers());
    REQUIRE(sigprop_profile_metric_count(p.p, &count) == SIGPROP_OK);
    REQUIRE(count == static_cast<int64_t>(ref.metrics().size()));
    for (int64_t i = 0; i < count; ++i) {
      const std::string name =
          text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_metric_name(p.p, i, b, c, n); });
      CHECK(name == ref.metrics()[static_cast<size_t>(i)]);
      int32_t yes = 0;
      REQUIRE(sigprop_profile_has_metric(p.p, name.c_str(), &yes) == SIGPROP_OK);
      CHECK(yes == 1);
      const auto v = values(p.p, name.c_str());
      const auto r = ref.values(name);
      REQUIRE(v.size() == r.size());
      for (size_t l = 0; l < v.size(); ++l) CHECK(same(v[l], r[l]));
    }
    int64_t n = 0;
    char buf[4];
    CHECK(sigprop_profile_metric_name(p.p, count, buf, 4, &n) == SIGPROP_E_ARGUMENT);
    CHECK_THAT(last_error(), Catch::Contains("out of range"));
    CHECK(sigprop_profile_metric_name(p.p, -1, buf, 4, &n) == SIGPROP_E_ARGUMENT);
    int32_t yes = 1;
    REQUIRE(sigprop_profile_has_metric(p.p, "nope", &yes) == SIGPROP_OK);
    CHECK(yes == 0);
    Spec back;
    REQUIRE(sigprop_profile_spec(p.p, &back.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t c, int64_t* k) { return sigprop_spec_to_json(back.p, b, c, k); }) ==
          api::spec_to_json(cpp));
    int64_t w = -1;
    REQUIRE(sigprop_profile_warning_count(p.p, &w) == SIGPROP_OK);
    CHECK(w == 0);
    CHECK(sigprop_profile_warning(p.p, 0, buf, 4, &n) == SIGPROP_E_ARGUMENT);

    Prof d;
    REQUIRE(sigprop_theory(s.p, nullptr, nullptr, nullptr, &d.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t c, int64_t* k) { return sigprop_profile_to_json(d.p, 2, b, c, k); }) ==
          api::theory(cpp).to_json(2));
  }
  SECTION("a diverging stack: NaN values and a warning") {
    Spec dv;
    make_small(dv);
    for (const char* a : {"stack.blocks=dense", "stack.norm=none", "stack.residual=false", "stack.activation=relu",
                          "init.sigma_w2=1e200", "stack.depth=5"})
      REQUIRE(sigprop_spec_set(dv.p, a) == SIGPROP_OK);
    Prof p;
    REQUIRE(sigprop_theory(dv.p, nullptr, nullptr, nullptr, &p.p) == SIGPROP_OK);
    int64_t w = 0;
    REQUIRE(sigprop_profile_warning_count(p.p, &w) == SIGPROP_OK);
    REQUIRE(w >= 1);
    CHECK_THAT(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_warning(p.p, 0, b, c, n); }),
               Catch::Contains("non-finite"));
    CHECK(std::isnan(values(p.p, "q").back()));
  }
  SECTION("simulate equals the facade bitwise") {
    Settings st;
    REQUIRE(sigprop_settings_new("simulate", &st.p) == SIGPROP_OK);
    set(st.p, "samples", "3");
    set(st.p, "seed", "11");
    set(st.p, "backend", "cpu");
    set(st.p, "precision", "double");
    set(st.p, "threads", "2");
    set(st.p, "weights_sampling", "explicit");
    Prof p;
    REQUIRE(sigprop_simulate(s.p, st.p, nullptr, nullptr, &p.p) == SIGPROP_OK);
    api::SimulateSettings ss;
    ss.samples = 3;
    ss.seed = 11;
    ss.precision = "double";
    ss.threads = 1;
    ss.weights_sampling = "explicit";
    const api::Profile ref = api::simulate(cpp, ss);
    for (const auto& m : ref.metrics()) {
      const auto v = values(p.p, m.c_str());
      const auto r = ref.values(m);
      for (size_t l = 0; l < v.size(); ++l) CHECK(same(v[l], r[l]));
    }
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_engine(p.p, b, c, n); }) == "simulate");
  }
  SECTION("ode: continuum, clustering, shaped-sde") {
    Spec o;
    make_small(o);
    REQUIRE(sigprop_spec_set(o.p, "stack.branch_scale=1/sqrt(L)") == SIGPROP_OK);
    sigprop::StackSpec ocpp = cpp;
    api::apply_overrides(ocpp, {"stack.branch_scale=1/sqrt(L)"});
    Prof c;
    REQUIRE(sigprop_ode(o.p, nullptr, nullptr, nullptr, &c.p) == SIGPROP_OK);
    CHECK(text([&](char* b, int64_t k, int64_t* n) { return sigprop_profile_to_json(c.p, 2, b, k, n); }) ==
          api::ode(ocpp).to_json(2));

    Settings cl;
    REQUIRE(sigprop_settings_new("ode", &cl.p) == SIGPROP_OK);
    set(cl.p, "kind", "clustering");
    set(cl.p, "points", "10");
    set(cl.p, "t_end", "2.0");
    set(cl.p, "beta", "1");
    set(cl.p, "variant", "sa");
    set(cl.p, "seed", "3");
    set(cl.p, "equiangular", "false");
    set(cl.p, "abs_tol", "1e-9");
    set(cl.p, "rel_tol", "1e-7");
    set(cl.p, "max_evals", "1000000");
    Prof k;
    REQUIRE(sigprop_ode(o.p, cl.p, nullptr, nullptr, &k.p) == SIGPROP_OK);
    api::OdeSettings ref;
    ref.kind = api::OdeKind::Clustering;
    ref.points = 10;
    ref.t_end = 2.0;
    ref.beta = 1.0;
    ref.variant = "sa";
    ref.seed = 3;
    ref.equiangular = false;
    ref.abs_tol = 1e-9;
    ref.rel_tol = 1e-7;
    ref.max_evals = 1000000;
    CHECK(text([&](char* b, int64_t c2, int64_t* n) { return sigprop_profile_to_json(k.p, 2, b, c2, n); }) ==
          api::ode(ocpp, ref).to_json(2));
    set(cl.p, "variant", "softmax");  // checked when the engine starts, named as the facade names it
    sigprop_profile* po = nullptr;
    CHECK(sigprop_ode(o.p, cl.p, nullptr, nullptr, &po) == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("variant"));

    Settings sh;
    REQUIRE(sigprop_settings_new("ode", &sh.p) == SIGPROP_OK);
    set(sh.p, "kind", "shaped-sde");
    set(sh.p, "paths", "50");
    set(sh.p, "samples", "0");
    set(sh.p, "model", "mlp");
    set(sh.p, "shape_c", "0.5");
    set(sh.p, "substeps", "2");
    for (const char* key : {"gamma2", "tau0", "key_dim", "steps", "attn_samples", "quad_order"})
      CHECK(sigprop_settings_set(sh.p, key, "x") == SIGPROP_E_CONFIG);  // known keys, bad value
    Prof q;
    REQUIRE(sigprop_ode(o.p, sh.p, nullptr, nullptr, &q.p) == SIGPROP_OK);
    api::OdeSettings sref;
    sref.kind = api::OdeKind::ShapedSde;
    sref.paths = 50;
    sref.samples = 0;
    sref.model = "mlp";
    sref.shape_c = 0.5;
    sref.substeps = 2;
    CHECK(text([&](char* b, int64_t c2, int64_t* n) { return sigprop_profile_to_json(q.p, 2, b, c2, n); }) ==
          api::ode(ocpp, sref).to_json(2));
  }
  SECTION("spectrum: theory on a dense stack, simulate") {
    Spec dense;
    REQUIRE(sigprop_spec_default(&dense.p) == SIGPROP_OK);
    const std::vector<std::string> sets = {"stack.blocks=dense",    "stack.norm=none",   "stack.residual=false",
                                           "stack.activation=tanh", "init.sigma_w2=1.5", "stack.depth=5",
                                           "stack.tokens=2",        "stack.heads=1",     "stack.width=16"};
    for (const auto& a : sets) REQUIRE(sigprop_spec_set(dense.p, a.c_str()) == SIGPROP_OK);
    sigprop::StackSpec dcpp = api::default_spec();
    api::apply_overrides(dcpp, sets);
    Settings st;
    REQUIRE(sigprop_settings_new("spectrum", &st.p) == SIGPROP_OK);
    set(st.p, "grid_lo", "0.05");
    set(st.p, "grid_hi", "10");
    set(st.p, "grid_points", "20");
    set(st.p, "panels", "16");
    Prof p;
    REQUIRE(sigprop_spectrum(dense.p, st.p, nullptr, nullptr, &p.p) == SIGPROP_OK);
    api::SpectrumSettings ref;
    ref.grid_lo = 0.05;
    ref.grid_hi = 10;
    ref.grid_points = 20;
    ref.panels = 16;
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_to_json(p.p, 2, b, c, n); }) ==
          api::spectrum(dcpp, ref).to_json(2));

    Settings sm;
    REQUIRE(sigprop_settings_new("spectrum", &sm.p) == SIGPROP_OK);
    set(sm.p, "engine", "simulate");
    set(sm.p, "samples", "2");
    set(sm.p, "seed", "4");
    set(sm.p, "map", "token");
    set(sm.p, "token", "1");
    set(sm.p, "jacobian_method", "explicit");
    set(sm.p, "threads", "1");
    set(sm.p, "grid_points", "10");
    Prof q;
    REQUIRE(sigprop_spectrum(dense.p, sm.p, nullptr, nullptr, &q.p) == SIGPROP_OK);
    api::SpectrumSettings sref;
    sref.engine = "simulate";
    sref.samples = 2;
    sref.seed = 4;
    sref.map = "token";
    sref.token = 1;
    sref.jacobian_method = "explicit";
    sref.grid_points = 10;
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_to_json(q.p, 2, b, c, n); }) ==
          api::spectrum(dcpp, sref).to_json(2));
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_profile_engine(q.p, b, c, n); }) ==
          "spectrum-simulate");
  }
}

namespace {
struct Progress {
  int calls = 0;
  int stop_after = -1;  // < 0: never
  double last = -1;
  bool monotone = true, staged = true;
};

int32_t on_progress(void* user, double fraction, const char* stage) {
  auto& p = *static_cast<Progress*>(user);
  ++p.calls;
  if (fraction < p.last || fraction < 0 || fraction > 1) p.monotone = false;
  if (stage == nullptr || std::strlen(stage) == 0) p.staged = false;
  p.last = fraction;
  return (p.stop_after >= 0 && p.calls > p.stop_after) ? 0 : 1;
}
}  // namespace

TEST_CASE("c-api progress and cancellation through the callback", "[c-api]") {
  Spec s;
  make_small(s);
  REQUIRE(sigprop_spec_set(s.p, "stack.branch_scale=1/sqrt(L)") == SIGPROP_OK);  // for the continuum ODE
  Progress go;
  Prof p;
  REQUIRE(sigprop_theory(s.p, nullptr, on_progress, &go, &p.p) == SIGPROP_OK);
  CHECK(go.calls > 0);
  CHECK(go.monotone);
  CHECK(go.staged);
  CHECK(go.last == 1.0);

  auto* const sentinel = reinterpret_cast<sigprop_profile*>(&go);
  for (const char* engine : {"theory", "simulate", "ode"}) {
    INFO(engine);
    Progress stop;
    stop.stop_after = 1;
    sigprop_profile* out = sentinel;
    const std::string e = engine;
    const sigprop_status st = e == "theory"     ? sigprop_theory(s.p, nullptr, on_progress, &stop, &out)
                              : e == "simulate" ? sigprop_simulate(s.p, nullptr, on_progress, &stop, &out)
                                                : sigprop_ode(s.p, nullptr, on_progress, &stop, &out);
    CHECK(st == SIGPROP_E_CANCELLED);
    CHECK(out == sentinel);  // no profile
    CHECK(stop.calls == 2);  // stopped at the check after the callback said 0
    CHECK_THAT(last_error(), Catch::Contains("cancelled"));
  }
}

TEST_CASE("c-api: no exception escapes, each kind maps to its status", "[c-api]") {
  Spec s;
  make_small(s);
  sigprop_profile* out = nullptr;
  // A callback that throws (C++ code behind the C pointer) unwinds through the engine and stops
  // at the interface.
  auto throws_runtime = [](void*, double, const char*) -> int32_t { throw std::runtime_error("boom in the callback"); };
  CHECK(sigprop_theory(s.p, nullptr, throws_runtime, nullptr, &out) == SIGPROP_E_INTERNAL);
  CHECK(last_error() == "boom in the callback");
  auto throws_oom = [](void*, double, const char*) -> int32_t { throw std::bad_alloc(); };
  CHECK(sigprop_theory(s.p, nullptr, throws_oom, nullptr, &out) == SIGPROP_E_MEMORY);
  CHECK_THAT(last_error(), Catch::Contains("bad_alloc"));
  auto throws_int = [](void*, double, const char*) -> int32_t { throw 42; };
  CHECK(sigprop_theory(s.p, nullptr, throws_int, nullptr, &out) == SIGPROP_E_INTERNAL);
  CHECK(last_error() == "unknown exception");
  auto throws_numerical = [](void*, double, const char*) -> int32_t { throw sigprop::NumericalError("singular"); };
  CHECK(sigprop_theory(s.p, nullptr, throws_numerical, nullptr, &out) == SIGPROP_E_NUMERICAL);
  CHECK(last_error() == "singular");
  CHECK(out == nullptr);

  SECTION("the library's memory limit: SIGPROP_E_MEMORY") {
    int64_t before = -1, now = -1;
    REQUIRE(sigprop_memory_limit(&before) == SIGPROP_OK);
    CHECK(before == static_cast<int64_t>(api::memory_limit()));
    REQUIRE(sigprop_set_memory_limit(1) == SIGPROP_OK);
    REQUIRE(sigprop_memory_limit(&now) == SIGPROP_OK);
    CHECK(now == 1);
    const sigprop_status st = sigprop_simulate(s.p, nullptr, nullptr, nullptr, &out);
    const std::string message = last_error();
    REQUIRE(sigprop_set_memory_limit(before) == SIGPROP_OK);
    CHECK(st == SIGPROP_E_MEMORY);
    CHECK_THAT(message, Catch::Contains("memory limit"));
    CHECK(sigprop_set_memory_limit(-1) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_memory_limit(nullptr) == SIGPROP_E_ARGUMENT);
    REQUIRE(sigprop_memory_limit(&now) == SIGPROP_OK);
    CHECK(now == before);
  }
  SECTION("backend cuda without the plug-in or a device: SIGPROP_E_CUDA") {
    Settings st;
    REQUIRE(sigprop_settings_new("simulate", &st.p) == SIGPROP_OK);
    set(st.p, "backend", "cuda");
    set(st.p, "samples", "1");
    Prof p;
    const sigprop_status status = sigprop_simulate(s.p, st.p, nullptr, nullptr, &p.p);
#ifdef SIGPROP_HAVE_CUDA
    if (status == SIGPROP_OK)
      SUCCEED("a device ran it");
    else
      CHECK(status == SIGPROP_E_CUDA);
#else
    CHECK(status == SIGPROP_E_CUDA);
    CHECK_THAT(last_error(), Catch::Contains("libsigprop_cuda.so"));
#endif
  }
}

TEST_CASE("c-api: the last error is per thread", "[c-api][concurrency]") {
  std::latch a_failed(1), b_failed(1);
  std::string a_msg, b_msg, b_after_ok = "(unset)";
  std::thread a([&] {
    sigprop_spec* out = nullptr;
    (void)sigprop_spec_from_toml("[stack]\nfirst_thread_key = 1\n", nullptr, &out);
    a_failed.count_down();
    b_failed.wait();  // thread b has failed differently and succeeded since
    a_msg = last_error();
  });
  std::thread b([&] {
    a_failed.wait();
    sigprop_settings* out = nullptr;
    (void)sigprop_settings_new("second_thread_engine", &out);
    b_msg = last_error();
    sigprop_spec* spec = nullptr;
    if (sigprop_spec_default(&spec) == SIGPROP_OK) b_after_ok = last_error();
    sigprop_spec_free(spec);
    b_failed.count_down();
  });
  a.join();
  b.join();
  CHECK_THAT(a_msg, Catch::Contains("first_thread_key") && !Catch::Contains("second_thread_engine"));
  CHECK_THAT(b_msg, Catch::Contains("second_thread_engine") && !Catch::Contains("first_thread_key"));
  CHECK(b_after_ok.empty());
}

namespace {
namespace fs = std::filesystem;

fs::path scratch() {
  static const fs::path dir = sigprop::test::cli::scratch_dir("c_api");
  return dir;
}

const sigprop::test::TinyFiles& files() {
  static const sigprop::test::TinyFiles f = sigprop::test::write_tiny_checkpoint(scratch());
  return f;
}

const std::string kTinyReportText = sigprop::test::tiny_report_toml("c sweep");
const char* const kTinyReport = kTinyReportText.c_str();
}  // namespace

TEST_CASE("c-api validate: the facade's result, its profiles and lists, errors naming the setting",
          "[c-api][validate]") {
  Settings st;
  REQUIRE(sigprop_settings_new("validate", &st.p) == SIGPROP_OK);
  set(st.p, "checkpoint", files().checkpoint.c_str());
  set(st.p, "corpus", files().corpus.c_str());
  set(st.p, "tokens", "256");
  set(st.p, "seq_len", "8");
  set(st.p, "ensemble", "2");
  set(st.p, "samples", "2");
  set(st.p, "seed", "3");
  set(st.p, "threads", "1");
  set(st.p, "precision", "float");
  set(st.p, "theory", "true");
  Progress progress;
  Valid v;
  REQUIRE(sigprop_validate(st.p, on_progress, &progress, &v.p) == SIGPROP_OK);
  CHECK(progress.calls > 0);
  CHECK(progress.monotone);

  api::ValidateSettings ref;
  ref.checkpoint = files().checkpoint.string();
  ref.corpus = files().corpus.string();
  ref.tokens = 256;
  ref.seq_len = 8;
  ref.ensemble = 2;
  ref.samples = 2;
  ref.seed = 3;
  ref.precision = "float";
  const api::Validation r = api::validate_checkpoint(ref);
  CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_validation_to_json(v.p, 2, b, c, n); }) ==
        r.to_json(2));
  CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_validation_model_json(v.p, b, c, n); }) ==
        r.model_json());
  CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_validation_agreement_json(v.p, b, c, n); }) ==
        r.agreement_json());
  CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_validation_summary_json(v.p, b, c, n); }) ==
        r.summary_json());
  int64_t notes = -1;
  REQUIRE(sigprop_validation_note_count(v.p, &notes) == SIGPROP_OK);
  REQUIRE(notes == static_cast<int64_t>(r.notes().size()));
  for (int64_t i = 0; i < notes; ++i)
    CHECK(text([&](char* b, int64_t c, int64_t* n) { return sigprop_validation_note(v.p, i, b, c, n); }) ==
          r.notes()[static_cast<size_t>(i)]);
  char small[4];
  int64_t n = 0;
  CHECK(sigprop_validation_note(v.p, notes, small, 4, &n) == SIGPROP_E_ARGUMENT);
  CHECK_THAT(last_error(), Catch::Contains("out of range"));
  int64_t seqs = -1;
  REQUIRE(sigprop_validation_sequence_loss(v.p, nullptr, 0, &seqs) == SIGPROP_OK);
  CHECK(seqs == 32);  // 256 tokens / 8
  std::vector<double> loss(static_cast<size_t>(seqs));
  CHECK(sigprop_validation_sequence_loss(v.p, loss.data(), seqs - 1, &n) == SIGPROP_E_ARGUMENT);
  REQUIRE(sigprop_validation_sequence_loss(v.p, loss.data(), seqs, &n) == SIGPROP_OK);
  CHECK(std::equal(loss.begin(), loss.end(), r.sequence_loss().begin()));
  for (const char* which : {"measured", "theory", "simulate", "init_ensemble"}) {
    INFO(which);
    Prof p;
    REQUIRE(sigprop_validation_profile(v.p, which, &p.p) == SIGPROP_OK);
    REQUIRE(p.p != nullptr);
    const std::string w = which;
    const api::Profile& rp = w == "measured"   ? r.measured()
                             : w == "theory"   ? *r.theory()
                             : w == "simulate" ? *r.simulate()
                                               : *r.init_ensemble();
    CHECK(text([&](char* b, int64_t c, int64_t* k) { return sigprop_profile_to_json(p.p, 2, b, c, k); }) ==
          rp.to_json(2));
  }
  sigprop_profile* none = nullptr;
  CHECK(sigprop_validation_profile(v.p, "measure", &none) == SIGPROP_E_ARGUMENT);
  CHECK_THAT(last_error(), Catch::Contains("\"measure\""));

  SECTION("a prediction that did not run: a NULL profile") {
    Settings no;
    REQUIRE(sigprop_settings_copy(st.p, &no.p) == SIGPROP_OK);
    set(no.p, "theory", "false");
    set(no.p, "ensemble", "0");
    set(no.p, "samples", "0");
    Valid v2;
    REQUIRE(sigprop_validate(no.p, nullptr, nullptr, &v2.p) == SIGPROP_OK);
    sigprop_profile* p = reinterpret_cast<sigprop_profile*>(&no);
    REQUIRE(sigprop_validation_profile(v2.p, "theory", &p) == SIGPROP_OK);
    CHECK(p == nullptr);
  }
  SECTION("errors name the setting; cancellation") {
    Settings bad;
    REQUIRE(sigprop_settings_copy(st.p, &bad.p) == SIGPROP_OK);
    set(bad.p, "corpus", (scratch() / "none.txt").c_str());
    sigprop_validation* out = nullptr;
    CHECK(sigprop_validate(bad.p, nullptr, nullptr, &out) == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("corpus") && Catch::Contains("none.txt"));
    CHECK(sigprop_validate(nullptr, nullptr, nullptr, &out) == SIGPROP_E_CONFIG);  // defaults: no checkpoint
    CHECK_THAT(last_error(), Catch::Contains("checkpoint"));
    CHECK(sigprop_settings_set(bad.p, "tokenz", "1") == SIGPROP_E_CONFIG);
    CHECK_THAT(last_error(), Catch::Contains("\"tokenz\"") && Catch::Contains("validate"));
    Progress stop;
    stop.stop_after = 1;
    CHECK(sigprop_validate(st.p, on_progress, &stop, &out) == SIGPROP_E_CANCELLED);
    CHECK(out == nullptr);
    Settings th;
    REQUIRE(sigprop_settings_new("theory", &th.p) == SIGPROP_OK);
    CHECK(sigprop_validate(th.p, nullptr, nullptr, &out) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validate(st.p, nullptr, nullptr, nullptr) == SIGPROP_E_ARGUMENT);
    for (auto f : {sigprop_validation_model_json, sigprop_validation_agreement_json, sigprop_validation_summary_json})
      CHECK(f(nullptr, small, 4, &n) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validation_to_json(nullptr, 2, small, 4, &n) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validation_note_count(nullptr, &n) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validation_note(nullptr, 0, small, 4, &n) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validation_sequence_loss(nullptr, nullptr, 0, &n) == SIGPROP_E_ARGUMENT);
    CHECK(sigprop_validation_profile(nullptr, "measured", &none) == SIGPROP_E_ARGUMENT);
    sigprop_validation_free(nullptr);
  }
}

TEST_CASE("c-api report: the facade's result as JSON, the default config, errors naming the key", "[c-api][report]") {
  const fs::path out = scratch() / "report";
  fs::remove_all(out);
  Settings st;
  REQUIRE(sigprop_settings_new("report", &st.p) == SIGPROP_OK);
  set(st.p, "out", out.c_str());
  set(st.p, "figures", "false");  // gnuplot need not be installed
  set(st.p, "jobs", "1");
  set(st.p, "threads", "1");
  set(st.p, "gnuplot", "gnuplot");
  Progress progress;
  Report r;
  REQUIRE(sigprop_report_from_toml(kTinyReport, "tiny.toml", st.p, on_progress, &progress, &r.p) == SIGPROP_OK);
  CHECK(progress.calls > 0);
  const std::string json =
      text([&](char* b, int64_t c, int64_t* n) { return sigprop_report_result_json(r.p, b, c, n); });
  CHECK_THAT(json, Catch::Contains("\"cells\":2") && Catch::Contains("\"jobs\":4") &&
                       Catch::Contains("\"jobs_reused\":0") && Catch::Contains("\"figures_drawn\":[]"));
  CHECK_THAT(json, Catch::Contains((out / "index.html").string()));
  CHECK(fs::is_regular_file(out / "index.html"));

  // the same config from a file resumes every job
  const fs::path cfg = scratch() / "tiny_report.toml";
  std::ofstream(cfg) << kTinyReport;
  Report again;
  REQUIRE(sigprop_report(cfg.c_str(), st.p, nullptr, nullptr, &again.p) == SIGPROP_OK);
  CHECK_THAT(text([&](char* b, int64_t c, int64_t* n) { return sigprop_report_result_json(again.p, b, c, n); }),
             Catch::Contains("\"jobs_reused\":4"));
  // snapshot = true: runs nothing, renders what is done into out/snapshot/
  set(st.p, "snapshot", "true");
  Report snap;
  REQUIRE(sigprop_report(cfg.c_str(), st.p, nullptr, nullptr, &snap.p) == SIGPROP_OK);
  CHECK_THAT(text([&](char* b, int64_t c, int64_t* n) { return sigprop_report_result_json(snap.p, b, c, n); }),
             Catch::Contains("\"jobs_reused\":4") && Catch::Contains((out / "snapshot" / "index.html").string()));
  CHECK(fs::is_regular_file(out / "snapshot" / "snapshot.json"));
  set(st.p, "snapshot", "false");

  const std::string def = text([&](char* b, int64_t c, int64_t* n) { return sigprop_default_report_config(b, c, n); });
  CHECK(def == api::default_report_config());

  sigprop_report_result* none = nullptr;
  CHECK(sigprop_report_from_toml("[sweep]\nstack.dept = [1, 2]\n", "mine.toml", st.p, nullptr, nullptr, &none) ==
        SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("stack.dept") && Catch::Contains("mine.toml"));
  CHECK(none == nullptr);
  CHECK(sigprop_report((scratch() / "none.toml").c_str(), st.p, nullptr, nullptr, &none) != SIGPROP_OK);
  CHECK_THAT(last_error(), Catch::Contains("none.toml"));
  CHECK(sigprop_report_from_toml(kTinyReport, nullptr, nullptr, nullptr, nullptr, &none) == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("out"));  // ReportSettings.out is required
  CHECK(sigprop_settings_set(st.p, "figure", "false") == SIGPROP_E_CONFIG);
  CHECK_THAT(last_error(), Catch::Contains("\"figure\"") && Catch::Contains("report"));
  CHECK(sigprop_report(nullptr, st.p, nullptr, nullptr, &none) == SIGPROP_E_ARGUMENT);
  CHECK(sigprop_report_from_toml(nullptr, nullptr, st.p, nullptr, nullptr, &none) == SIGPROP_E_ARGUMENT);
  CHECK(sigprop_report_from_toml(kTinyReport, nullptr, st.p, nullptr, nullptr, nullptr) == SIGPROP_E_ARGUMENT);
  int64_t n = 0;
  CHECK(sigprop_report_result_json(nullptr, nullptr, 0, &n) == SIGPROP_E_ARGUMENT);
  sigprop_report_result_free(nullptr);
}
