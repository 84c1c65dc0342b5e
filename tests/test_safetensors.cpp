// safetensors reader and writer (validate/safetensors.hpp).
//   [analytic]  float16/bfloat16 conversion against closed forms over all 65536 codes, and
//               against the compiler's _Float16 (libgcc's correctly rounded conversion)
//   [golden]    files written by the official Python package (tools/safetensors_golden.py,
//               safetensors 0.8.0, numpy, ml_dtypes); byte-identical output of the writer
//   [config]    malformed, truncated and hostile files: IoError naming file and problem
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "validate/safetensors.hpp"

namespace st = sigprop::safetensors;
namespace fs = std::filesystem;

namespace {

/// Counts failures of a check made many thousand times (one Catch assertion each would
/// dominate the run time) and remembers the first.
struct Tally {
  long bad = 0;
  std::string first;
  void operator()(bool ok, const std::string& what) {
    if (!ok && bad++ == 0) first = what;
  }
};
#define SIGPROP_CHECK_TALLY(t) \
  do {                         \
    INFO((t).first);           \
    CHECK((t).bad == 0);       \
  } while (0)

const fs::path kGolden = fs::path(SIGPROP_SOURCE_DIR) / "tests" / "golden" / "safetensors";
const fs::path kCorpus = fs::path(SIGPROP_SOURCE_DIR) / "fuzz" / "corpus" / "safetensors";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

st::File parse_str(const std::string& s, std::string_view label = "mem") {
  return st::parse(std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()), label);
}

/// A fresh folder under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / ("sigprop-st-" + tag + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Builds an image: 8-byte little-endian length, header text, data.
std::string image(const std::string& header, const std::string& data = {}, std::optional<std::uint64_t> len = {}) {
  const std::uint64_t n = len.value_or(header.size());
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xffu);
  return s + header + data;
}

std::uint64_t raw_element(const st::Tensor& t, std::size_t i) {
  const std::size_t sz = st::dtype_size(t.dtype);
  std::uint64_t v = 0;
  for (std::size_t b = 0; b < sz; ++b)
    v |= static_cast<std::uint64_t>(std::to_integer<unsigned>(t.bytes[i * sz + b])) << (8 * b);
  return v;
}

bool same_double(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

/// Decoded value of a 16-bit code whose neighbours are one code up/down (same sign).
template <class Dec>
void check_rounding_between_neighbours(Dec dec, std::uint16_t (*enc)(double), std::uint16_t exp_mask) {
  // For every pair of adjacent finite codes (a, a+1) of the same sign, the midpoint rounds
  // to the even code, and anything strictly between rounds to the nearer one. Midpoints
  // of 16-bit formats are exact in double.
  int checked = 0;
  Tally t;
  for (std::uint32_t a = 0; a < 0x10000u; ++a) {
    const auto lo = static_cast<std::uint16_t>(a);
    const auto hi = static_cast<std::uint16_t>(a + 1);
    if ((lo & 0x7fffu) >= exp_mask || (hi & 0x7fffu) > exp_mask || (lo ^ hi) & 0x8000u) continue;
    const double x = dec(lo), y = dec(hi);
    if ((hi & 0x7fffu) == exp_mask) {  // lo is the largest finite: beyond it, the midpoint to "next" -> inf
      continue;
    }
    const double mid = 0.5 * (x + y);
    const std::uint16_t even = (lo & 1u) == 0 ? lo : hi;
    const std::string at = "codes " + std::to_string(lo) + ", " + std::to_string(hi);
    t(enc(mid) == even, "midpoint of " + at);
    t(enc(std::nextafter(mid, x)) == lo, "below midpoint of " + at);
    t(enc(std::nextafter(mid, y)) == hi, "above midpoint of " + at);
    ++checked;
  }
  SIGPROP_CHECK_TALLY(t);
  CHECK(checked > 60000);
}

}  // namespace

TEST_CASE("float16 decoding: closed forms and every code", "[safetensors][analytic]") {
  CHECK(st::half_to_double(0x3c00) == 1.0);
  CHECK(st::half_to_double(0xc000) == -2.0);
  CHECK(st::half_to_double(0x7bff) == 65504.0);
  CHECK(st::half_to_double(0x0400) == std::ldexp(1.0, -14));  // smallest normal
  CHECK(st::half_to_double(0x0001) == std::ldexp(1.0, -24));  // smallest subnormal
  CHECK(st::half_to_double(0x03ff) == std::ldexp(1023.0, -24));
  CHECK(std::signbit(st::half_to_double(0x8000)));
  CHECK(st::half_to_double(0x7c00) == INFINITY);
  CHECK(st::half_to_double(0xfc00) == -INFINITY);
  CHECK(std::isnan(st::half_to_double(0x7e00)));
  CHECK(std::isnan(st::half_to_double(0x7c01)));  // signalling pattern is still NaN
  CHECK(std::signbit(st::half_to_double(0xfe00)));
  // Definition: (-1)^s 2^(e-15) (1 + m/1024) for 0 < e < 31, (-1)^s 2^-14 (m/1024) for e = 0.
  Tally t;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const std::uint32_t s = b >> 15, e = (b >> 10) & 31u, m = b & 1023u;
    if (e == 31) continue;
    const double mag = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
    t(same_double(st::half_to_double(static_cast<std::uint16_t>(b)), s ? -mag : mag), "code " + std::to_string(b));
  }
#ifdef __FLT16_MANT_DIG__
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto h = std::bit_cast<_Float16>(static_cast<std::uint16_t>(b));
    t(same_double(st::half_to_double(static_cast<std::uint16_t>(b)), static_cast<double>(h)),
      "_Float16 code " + std::to_string(b));
  }
#endif
  SIGPROP_CHECK_TALLY(t);
}

TEST_CASE("bfloat16 decoding is the top half of a float32, for every code", "[safetensors][analytic]") {
  Tally t;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = std::bit_cast<float>(b << 16);
    t(same_double(st::bf16_to_double(static_cast<std::uint16_t>(b)), static_cast<double>(f)), "code " + std::to_string(b));
  }
  SIGPROP_CHECK_TALLY(t);
}

TEST_CASE("float16/bfloat16 encoding: exact codes, ties to even, overflow, NaN", "[safetensors][analytic]") {
  // Every code but NaN survives decode -> encode (infinities included).
  Tally t;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto c = static_cast<std::uint16_t>(b);
    if ((c & 0x7c00u) != 0x7c00u || (c & 0x3ffu) == 0)
      t(st::double_to_half(st::half_to_double(c)) == c, "half code " + std::to_string(b));
    if ((c & 0x7f80u) != 0x7f80u || (c & 0x7fu) == 0)
      t(st::double_to_bf16(st::bf16_to_double(c)) == c, "bf16 code " + std::to_string(b));
  }
  SIGPROP_CHECK_TALLY(t);
  CHECK((st::double_to_half(NAN) & 0x7e00u) == 0x7e00u);
  CHECK((st::double_to_bf16(-NAN) & 0xffc0u) == 0xffc0u);
  // Between neighbours: midpoints to even, anything else to the nearer code.
  check_rounding_between_neighbours(st::half_to_double, st::double_to_half, 0x7c00u);
  check_rounding_between_neighbours(st::bf16_to_double, st::double_to_bf16, 0x7f80u);
  // Overflow: 65520 is the midpoint between 65504 and 2^16 (the first unrepresentable
  // step), so it and everything above rounds to inf; just below stays at 65504.
  CHECK(st::double_to_half(65519.99) == 0x7bff);
  CHECK(st::double_to_half(65520.0) == 0x7c00);
  CHECK(st::double_to_half(-1e300) == 0xfc00);
  CHECK(st::double_to_bf16(3.4e38) == 0x7f80);  // > midpoint of bf16 max 0x1.fep127 and 2^128
  CHECK(st::double_to_bf16(0x1.fep127) == 0x7f7f);
  // Underflow: half of the smallest subnormal is a tie -> +0; a hair above -> smallest.
  CHECK(st::double_to_half(std::ldexp(1.0, -25)) == 0x0000);
  CHECK(st::double_to_half(std::ldexp(1.0 + 1e-9, -25)) == 0x0001);
  CHECK(st::double_to_half(-std::ldexp(1.0, -30)) == 0x8000);
  CHECK(st::double_to_half(std::ldexp(1.0, -1074)) == 0x0000);  // double subnormal
  CHECK(st::double_to_bf16(std::ldexp(1.0, -1074)) == 0x0000);
  CHECK(st::double_to_half(std::ldexp(1023.5, -24)) == 0x0400);  // rounds up into the normals
  // One rounding step, not two: through float, 1 + 2^-8 + 2^-30 would become the tie
  // 1 + 2^-8 and then 1.0; correctly rounded it is 1 + 2^-7.
  CHECK(st::double_to_bf16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)) == 0x3f81);
  CHECK(st::double_to_half(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)) == 0x3c01);
#ifdef __FLT16_MANT_DIG__
  // Against the compiler's double -> _Float16 conversion on values spread over all scales.
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> mant(-2.0, 2.0);
  std::uniform_int_distribution<int> ex(-30, 18);
  Tally tf;
  for (int i = 0; i < 200000; ++i) {
    const double x = std::ldexp(mant(gen), ex(gen));
    tf(st::double_to_half(x) == std::bit_cast<std::uint16_t>(static_cast<_Float16>(x)), std::to_string(x));
  }
  SIGPROP_CHECK_TALLY(tf);
#endif
}

TEST_CASE("float tensors: make_tensor and to_float/to_double", "[safetensors]") {
  const std::vector<double> v{1.0, -0.1, 1e-3, 3.0e38, 1e39, -1e-46, 0.3333333333333333};
  const auto f64 = st::make_tensor("a", st::Dtype::F64, {7}, v);
  CHECK(f64.to_double() == v);
  const auto f32 = st::make_tensor("b", st::Dtype::F32, {7}, v);
  const auto got = f32.to_float();
  for (std::size_t i = 0; i < v.size(); ++i) {
    // Within float range the compiler's conversion is round-to-nearest-even.
    const float ref = std::abs(v[i]) < 3.4e38 ? static_cast<float>(v[i]) : INFINITY;
    CHECK(std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(ref));
  }
  // F64 -> float narrows with the same rule (overflow -> inf, not UB).
  const auto nar = f64.to_float();
  CHECK(nar[4] == INFINITY);
  CHECK(nar[1] == static_cast<float>(-0.1));
  CHECK_THROWS_AS(st::make_tensor("c", st::Dtype::I32, {1}, std::vector<double>{1.0}), sigprop::ConfigError);
  CHECK_THROWS_AS(st::make_tensor("c", st::Dtype::F32, {2, 2}, std::vector<double>{1.0}), sigprop::ConfigError);
  st::Tensor ints{"ids", st::Dtype::I64, {1}, std::vector<std::byte>(8)};
  try {
    (void)ints.to_double();
    FAIL("I64 converted to double");
  } catch (const sigprop::IoError& e) {
    CHECK_THAT(e.what(), Catch::Contains("'ids'") && Catch::Contains("I64"));
  }
}

TEST_CASE("files written by the Python safetensors package decode as numpy says", "[safetensors][golden]") {
  const auto ref = nlohmann::json::parse(slurp(kGolden / "mixed.json"));
  const st::File f = st::read_file(kGolden / "mixed.safetensors");
  CHECK(f.metadata == st::Metadata{{"k", "v"}});
  const std::map<std::string, st::Dtype> np_names{
      {"float64", st::Dtype::F64}, {"float32", st::Dtype::F32}, {"float16", st::Dtype::F16},
      {"bfloat16", st::Dtype::BF16}, {"int64", st::Dtype::I64}, {"int32", st::Dtype::I32},
      {"int16", st::Dtype::I16},   {"int8", st::Dtype::I8},     {"uint8", st::Dtype::U8},
      {"bool", st::Dtype::BOOL}};
  REQUIRE(f.tensors.size() == ref["tensors"].size());
  for (const auto& [name, r] : ref["tensors"].items()) {
    INFO("tensor " << name);
    const st::Tensor& t = f.at(name);
    CHECK(t.dtype == np_names.at(r["dtype"].get<std::string>()));
    CHECK(t.shape == r["shape"].get<std::vector<std::uint64_t>>());
    const auto bits = r["bits"].get<std::vector<std::string>>();
    REQUIRE(t.numel() == bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) REQUIRE(raw_element(t, i) == std::stoull(bits[i], nullptr, 16));
    if (r.contains("values")) {
      const auto vals = r["values"].get<std::vector<std::string>>();
      const auto d = t.to_double();
      const auto fl = t.to_float();
      for (std::size_t i = 0; i < vals.size(); ++i) {
        const double want = std::strtod(vals[i].c_str(), nullptr);
        REQUIRE(same_double(d[i], want));
        if (t.dtype != st::Dtype::F64) REQUIRE(same_double(fl[i], want));  // exact in float
      }
    } else {
      CHECK_THROWS_AS(t.to_double(), sigprop::IoError);
    }
  }
  CHECK(f.at("scalar").shape.empty());
  CHECK(f.at("scalar").to_double() == std::vector<double>{-3.25});
  CHECK(f.at("empty").numel() == 0);
  try {
    (void)f.at("absent");
    FAIL();
  } catch (const sigprop::IoError& e) {
    CHECK_THAT(e.what(), Catch::Contains("mixed.safetensors") && Catch::Contains("'absent'"));
  }
}

TEST_CASE("encoder agrees bit for bit with numpy (float16) and ml_dtypes (bfloat16)", "[safetensors][golden]") {
  const st::File f = st::read_file(kGolden / "encode.safetensors");
  const auto src64 = f.at("src64").to_double();
  const auto src32 = f.at("src32").to_float();
  REQUIRE(src64.size() == src32.size());
  CHECK(st::make_tensor("x", st::Dtype::F16, f.at("f16_from64").shape, src64).bytes == f.at("f16_from64").bytes);
  CHECK(st::make_tensor("x", st::Dtype::BF16, f.at("bf16_from32").shape, src32).bytes == f.at("bf16_from32").bytes);
  CHECK(st::make_tensor("x", st::Dtype::F32, f.at("f32_from64").shape, src64).bytes == f.at("f32_from64").bytes);
}

TEST_CASE("writer output is byte-identical to safetensors.numpy.save", "[safetensors][golden]") {
  const std::string py = slurp(kGolden / "single_meta.safetensors");
  const st::File f = parse_str(py);
  CHECK(f.metadata.size() == 1);
  CHECK(f.find("ä \"q\"\n") != nullptr);
  CHECK(st::serialize(f.tensors, f.metadata) == py);
  // Same through the atomic file writer, and no temporary left beside it.
  TempDir dir("golden");
  const fs::path out = dir.path / "copy.safetensors";
  st::write_file(out, f.tensors, f.metadata);
  CHECK(slurp(out) == py);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("round trip of every dtype through write_file/read_file", "[safetensors]") {
  std::mt19937_64 gen(11);
  std::vector<st::Tensor> ts;
  const st::Dtype all[] = {st::Dtype::BOOL, st::Dtype::U8,  st::Dtype::I8,  st::Dtype::F8_E5M2, st::Dtype::F8_E4M3,
                           st::Dtype::I16,  st::Dtype::U16, st::Dtype::F16, st::Dtype::BF16,    st::Dtype::I32,
                           st::Dtype::U32,  st::Dtype::F32, st::Dtype::F64, st::Dtype::I64,     st::Dtype::U64};
  int k = 0;
  for (st::Dtype d : all) {
    st::Tensor t;
    t.name = fmt::format("t{}.{}", k++, st::dtype_name(d));
    t.dtype = d;
    t.shape = {static_cast<std::uint64_t>(1 + k % 3), 3};
    t.bytes.resize(t.numel() * st::dtype_size(d));
    for (auto& b : t.bytes) b = static_cast<std::byte>(gen() & 0xffu);
    ts.push_back(t);
  }
  ts.push_back(st::Tensor{"zero", st::Dtype::F32, {0}, {}});
  TempDir dir("roundtrip");
  const fs::path p = dir.path / "sub" / "rt.safetensors";  // folder created by the writer
  st::write_file(p, ts, {{"step", "42"}, {"spec", "[stack]\nlayers = 3"}, {"empty", ""}});
  const st::File f = st::read_file(p);
  CHECK(f.metadata.at("step") == "42");
  CHECK(f.metadata.at("empty").empty());
  REQUIRE(f.tensors.size() == ts.size());
  for (const auto& t : ts) {
    const st::Tensor& u = f.at(t.name);
    CHECK(u.dtype == t.dtype);
    CHECK(u.shape == t.shape);
    CHECK(u.bytes == t.bytes);
  }
  // Layout: header padded to 8, tensors by descending dtype alignment so each begins at a
  // multiple of its element size.
  const std::string raw = slurp(p);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(raw[static_cast<std::size_t>(i)])) << (8 * i);
  CHECK(n % 8 == 0);
  CHECK(f.tensors.front().dtype == st::Dtype::U64);
  std::uint64_t off = 0;
  for (const auto& t : f.tensors) {
    CHECK(off % st::dtype_size(t.dtype) == 0);
    off += t.bytes.size();
  }
  CHECK(8 + n + off == raw.size());
  // Overwriting is atomic and leaves only the file.
  st::write_file(p, {ts[0]});
  CHECK(st::read_file(p).tensors.size() == 1);
  CHECK(std::distance(fs::directory_iterator(p.parent_path()), fs::directory_iterator()) == 1);
}

TEST_CASE("writer refuses what it cannot write", "[safetensors][config]") {
  const st::Tensor a{"a", st::Dtype::F32, {2}, std::vector<std::byte>(8)};
  CHECK_THROWS_AS(st::serialize({a, a}), sigprop::ConfigError);
  CHECK_THROWS_AS(st::serialize({st::Tensor{"__metadata__", st::Dtype::F32, {2}, std::vector<std::byte>(8)}}),
                  sigprop::ConfigError);
  CHECK_THROWS_AS(st::serialize({st::Tensor{"b", st::Dtype::F32, {3}, std::vector<std::byte>(8)}}),
                  sigprop::ConfigError);
  CHECK_THROWS_AS(st::serialize({st::Tensor{"c", st::Dtype::F64, {1ull << 62}, {}}}), sigprop::ConfigError);
  CHECK_THROWS_AS(st::serialize({st::Tensor{"\xff", st::Dtype::F32, {2}, std::vector<std::byte>(8)}}),
                  sigprop::ConfigError);
  TempDir dir("refuse");
  CHECK_THROWS_AS(st::write_file(dir.path / "x.safetensors", {a, a}), sigprop::ConfigError);
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("seed corpus: upstream's verdict on every file is ours", "[safetensors][config]") {
  // tools/safetensors_golden.py checked each valid_ file is accepted and each invalid_ one
  // rejected by the Python package; the same files must get the same verdict here, and a
  // rejection must be an IoError naming the file.
  int valid = 0, invalid = 0;
  for (const auto& entry : fs::directory_iterator(kCorpus)) {
    const std::string name = entry.path().filename().string();
    INFO(name);
    if (name.rfind("valid_", 0) == 0) {
      CHECK_NOTHROW(st::read_file(entry.path()));
      ++valid;
    } else {
      REQUIRE(name.rfind("invalid_", 0) == 0);
      try {
        (void)st::read_file(entry.path());
        FAIL("accepted");
      } catch (const sigprop::IoError& e) {
        CHECK_THAT(e.what(), Catch::StartsWith(entry.path().string() + ": "));
      }
      ++invalid;
    }
  }
  CHECK(valid >= 9);
  CHECK(invalid >= 20);
}

TEST_CASE("hostile files: each problem is named", "[safetensors][config]") {
  const std::string f32(24, '\0');
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  const std::string two_a = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)";
  struct Case {
    const char* what;
    std::string bytes;
    const char* message;
  };
  const std::vector<Case> cases{
      {"short", std::string("\x08\0\0", 3), "shorter than the 8-byte header length"},
      {"cap", image(ok, f32, 100'000'001), "exceeds the 100000000-byte limit"},
      {"huge", image(ok, f32, ~std::uint64_t{0}), "exceeds the 100000000-byte limit"},
      {"past end", image(ok, f32, 1000), "runs past the end of the file"},
      {"truncated data", image(ok, f32.substr(0, 20)), "run past the 20-byte data buffer"},
      {"not object", image("[1,2]"), "header is a JSON array, not an object"},
      {"not json", image("{\"a\":"), "header is not valid JSON"},
      {"empty header", image(""), "header is not valid JSON"},
      {"duplicate", image(two_a + R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", f32.substr(0, 16)),
       "duplicate tensor name 'a'"},
      {"duplicate field", image(R"({"a":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})",
                                f32.substr(0, 8)),
       "duplicate key 'dtype'"},
      {"overlap", image(two_a + R"("b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}})", f32.substr(0, 10)),
       "tensors 'a' [0, 8] and 'b' [6, 10] overlap"},
      {"hole", image(two_a + R"("b":{"dtype":"F16","shape":[2],"data_offsets":[10,14]}})", f32.substr(0, 14)),
       "hole in the data buffer: bytes [8, 10) before tensor 'b'"},
      {"trailing", image(ok, f32 + "xyzw"), "4 trailing bytes belong to no tensor"},
      {"wrong count", image(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", f32),
       "tensor 'a': data_offsets [0, 24] hold 24 bytes but shape [2, 2] of F32 needs 16"},
      {"negative", image(R"({"a":{"dtype":"F32","shape":[-2,-3],"data_offsets":[0,24]}})", f32),
       "tensor 'a': shape entry 0 is not a non-negative integer: -2"},
      {"fraction", image(R"({"a":{"dtype":"F32","shape":[6.0],"data_offsets":[0,24]}})", f32),
       "shape entry 0 is not a non-negative integer"},
      {"beyond u64", image(R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,24]}})", f32),
       "shape entry 0 is not a non-negative integer"},
      {"numel overflow", image(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,24]}})", f32),
       "overflows 64-bit byte count"},
      {"bytes overflow", image(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,24]}})", f32),
       "overflows 64-bit byte count"},
      {"unknown dtype", image(R"({"a":{"dtype":"F4","shape":[6],"data_offsets":[0,24]}})", f32),
       "tensor 'a': unsupported dtype 'F4'"},
      {"end before begin", image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[24,0]}})", f32),
       "end before begin"},
      {"offsets beyond", image(R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[18446744073709551600,24]}})", f32),
       "end before begin"},
      {"offsets 3", image(R"({"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24,48]}})", f32),
       "\"data_offsets\" must be an array [begin, end]"},
      {"meta number", image(R"({"__metadata__":{"step":3}})"), "__metadata__ key 'step' is a JSON number"},
      {"meta array", image(R"({"__metadata__":["x"]})"), "__metadata__ is a JSON array"},
      {"entry string", image(R"({"a":"F32"})"), "tensor 'a': entry is a JSON string"},
      {"no dtype", image(R"({"a":{"shape":[6],"data_offsets":[0,24]}})", f32), "missing or non-string \"dtype\""},
      {"bad utf8", image("{\"\xff\":{}}"), "header is not valid JSON"},
      {"deep", image("{\"x\":" + std::string(100, '[') + std::string(100, ']') + "}"), "nests deeper than 16"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    try {
      (void)parse_str(c.bytes, "hostile.safetensors");
      FAIL("accepted");
    } catch (const sigprop::IoError& e) {
      CHECK_THAT(e.what(), Catch::StartsWith("hostile.safetensors: ") && Catch::Contains(c.message));
    }
  }
  // Padding spaces, keys in any order, unknown extra fields (ignored, as upstream).
  const auto f = parse_str(image(R"(  {"a":{"data_offsets":[0,24],"shape":[2,3],"x":1,"dtype":"F32"}}      )", f32));
  CHECK(f.at("a").numel() == 6);
}

TEST_CASE("files that cannot be read are named", "[safetensors][config]") {
  TempDir dir("unreadable");
  for (const fs::path& p : {dir.path / "missing.safetensors", dir.path}) {
    try {
      (void)st::read_file(p);
      FAIL("read " << p);
    } catch (const sigprop::IoError& e) {
      CHECK_THAT(e.what(), Catch::StartsWith(p.string() + ": "));
    }
  }
  const fs::path empty = dir.path / "empty.safetensors";
  std::ofstream(empty).close();
  CHECK_THROWS_WITH(st::read_file(empty), Catch::Contains("file is 0 bytes, shorter than the 8-byte header length"));
}

TEST_CASE("every prefix and every single-byte change of a real file parses or throws IoError",
          "[safetensors][config]") {
  // A small in-process fuzz that also runs under ASan/UBSan in CI: no crash, no read past
  // the buffer (each prefix is copied to an exact-size allocation), no other exception.
  const std::string good = slurp(kGolden / "single_meta.safetensors");
  int accepted = 0;
  for (std::size_t len = 0; len < good.size(); ++len) {
    const std::string cut = good.substr(0, len);
    std::vector<std::byte> exact(cut.size());
    if (!cut.empty()) std::memcpy(exact.data(), cut.data(), cut.size());  // data() may be null when empty
    CHECK_THROWS_AS(st::parse(exact, "prefix"), sigprop::IoError);  // any prefix breaks the tiling
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (unsigned char v : {0x00, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x5b, 0x7b, 0x7d, 0xff}) {
      std::string m = good;
      m[i] = static_cast<char>(v);
      try {
        (void)parse_str(m);
        ++accepted;
      } catch (const sigprop::IoError&) {
      }
    }
  }
  CHECK(accepted > 0);  // changes inside tensor data are legal files
}
