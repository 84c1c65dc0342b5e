#include "validate/safetensors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/profile.hpp"  // write_file_atomic

namespace sigprop::safetensors {

namespace {

struct DtypeInfo {
  Dtype dtype;
  std::string_view name;
  std::size_t size;
};
constexpr std::array<DtypeInfo, 15> kDtypes{{{Dtype::BOOL, "BOOL", 1},
                                             {Dtype::U8, "U8", 1},
                                             {Dtype::I8, "I8", 1},
                                             {Dtype::F8_E5M2, "F8_E5M2", 1},
                                             {Dtype::F8_E4M3, "F8_E4M3", 1},
                                             {Dtype::I16, "I16", 2},
                                             {Dtype::U16, "U16", 2},
                                             {Dtype::F16, "F16", 2},
                                             {Dtype::BF16, "BF16", 2},
                                             {Dtype::I32, "I32", 4},
                                             {Dtype::U32, "U32", 4},
                                             {Dtype::F32, "F32", 4},
                                             {Dtype::F64, "F64", 8},
                                             {Dtype::I64, "I64", 8},
                                             {Dtype::U64, "U64", 8}}};

const DtypeInfo& info(Dtype d) {
  const auto i = static_cast<std::size_t>(d);
  if (i >= kDtypes.size()) throw Error(fmt::format("safetensors: invalid dtype value {}", i));
  return kDtypes[i];
}

/// a * b, or nullopt on overflow of 64 bits.
std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<std::uint64_t> checked_numel(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) {
    auto m = checked_mul(n, d);
    if (!m) return std::nullopt;
    n = *m;
  }
  return n;
}

std::string shape_str(const std::vector<std::uint64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// ---- small binary floating-point formats -----------------------------------------------
// A format with `mbits` stored mantissa bits and `ebits` exponent bits (binary16: 10, 5;
// bfloat16: 7, 8; binary32: 23, 8), IEEE-style: bias 2^(ebits-1)-1, exponent field 0 for
// zero and subnormals, all ones for infinity and NaN.

double decode_bits(std::uint32_t bits, int mbits, int ebits) {
  const std::uint32_t exp_all = (1u << ebits) - 1;
  const int bias = (1 << (ebits - 1)) - 1;
  const bool neg = ((bits >> (mbits + ebits)) & 1u) != 0;
  const std::uint32_t e = (bits >> mbits) & exp_all;
  const std::uint32_t man = bits & ((1u << mbits) - 1);
  double v = 0;
  if (e == exp_all)
    v = man != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0)
    v = std::ldexp(static_cast<double>(man), 1 - bias - mbits);  // subnormal: man * 2^(emin - mbits)
  else
    v = std::ldexp(static_cast<double>(man | (1u << mbits)), static_cast<int>(e) - bias - mbits);
  return std::copysign(v, neg ? -1.0 : 1.0);
}

// Rounds a double to the format in one step: nearest, ties to even. Going through float
// first would round twice (e.g. 1 + 2^-8 + 2^-30 would become bfloat16 1.0, not 1 + 2^-7).
std::uint32_t encode_bits(double x, int mbits, int ebits) {
  const auto u = std::bit_cast<std::uint64_t>(x);
  const std::uint32_t sign = static_cast<std::uint32_t>(u >> 63) << (mbits + ebits);
  const std::uint32_t exp_all = (1u << ebits) - 1;
  const int dexp = static_cast<int>((u >> 52) & 0x7ffu);
  const std::uint64_t dman = u & ((std::uint64_t{1} << 52) - 1);
  if (dexp == 0x7ff) {  // inf or NaN (NaN becomes the quiet NaN with the top mantissa bit)
    return sign | (exp_all << mbits) | (dman != 0 ? (1u << (mbits - 1)) : 0u);
  }
  if (dexp == 0 && dman == 0) return sign;
  // |x| = m * 2^e2 with m an integer; E = exponent of its leading bit.
  const std::uint64_t m = dexp == 0 ? dman : (dman | (std::uint64_t{1} << 52));
  const int e2 = dexp == 0 ? -1074 : dexp - 1075;
  const int E = e2 + (63 - std::countl_zero(m));
  const int bias = (1 << (ebits - 1)) - 1;
  const int emin = 1 - bias;
  const int q = std::max(E, emin) - mbits;  // exponent of the target's last mantissa bit here
  const int s = q - e2;                     // bits of m to drop
  std::uint64_t r = 0;
  if (s <= 0) {
    r = m << (-s);  // exact (not reached for formats narrower than double)
  } else if (s < 64) {
    const std::uint64_t kept = m >> s;
    const std::uint64_t rem = m & ((std::uint64_t{1} << s) - 1);
    const std::uint64_t half = std::uint64_t{1} << (s - 1);
    r = kept + ((rem > half || (rem == half && (kept & 1u))) ? 1u : 0u);
  }  // s >= 64: m < 2^53 is below half of the quantum 2^s, so r = 0
  if (E < emin) {
    // Subnormal range: r <= 2^mbits, and r == 2^mbits is exactly the smallest normal's code.
    return sign | static_cast<std::uint32_t>(r);
  }
  int e = E;
  if (r == (std::uint64_t{1} << (mbits + 1))) {  // rounding carried into the next binade
    r >>= 1;
    ++e;
  }
  const int biased = e + bias;
  if (biased >= static_cast<int>(exp_all)) return sign | (exp_all << mbits);  // overflow: inf
  return sign | (static_cast<std::uint32_t>(biased) << mbits) |
         static_cast<std::uint32_t>(r - (std::uint64_t{1} << mbits));
}

std::uint64_t load_le(const std::byte* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(std::to_integer<unsigned>(p[i])) << (8 * i);
  return v;
}
void store_le(std::byte* p, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xffu);
}

// ---- header ---------------------------------------------------------------------------

struct Entry {
  std::string name;
  Dtype dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};
struct Header {
  Metadata metadata;
  std::vector<Entry> entries;  // sorted by (begin, end): the buffer order
};

[[noreturn]] void fail(std::string_view source, const std::string& what) {
  throw IoError(fmt::format("{}: {}", source, what));
}

// The header nests three deep (root, tensor entry, shape); anything far deeper is not a
// safetensors header, and refusing it early bounds the parser's work.
constexpr int kMaxJsonDepth = 16;

// First pass over the header (SAX, linear time): duplicate keys (nlohmann's DOM keeps the
// last one silently; two tensors of one name are ambiguous), absurd nesting, and syntax.
// nlohmann's callback parser is not used: its end_object rescans the parent object for
// discarded values, quadratic in the number of tensors (minutes for a 27 MB header).
class HeaderCheck : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::string error;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return push(); }
  bool start_array(std::size_t) override { return push(); }
  bool end_object() override { return pop(); }
  bool end_array() override { return pop(); }
  bool key(string_t& k) override {
    if (keys_.empty() || keys_.back().insert(k).second) return true;
    error = keys_.size() == 1 ? fmt::format("duplicate tensor name '{}' in header", k)
                              : fmt::format("duplicate key '{}' in header", k);
    return false;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = fmt::format("header is not valid JSON: {}", e.what());
    return false;
  }

 private:
  std::vector<std::set<std::string>> keys_;  // one per open object or array
  bool push() {
    keys_.emplace_back();
    if (keys_.size() <= static_cast<std::size_t>(kMaxJsonDepth)) return true;
    error = fmt::format("header JSON nests deeper than {} levels", kMaxJsonDepth);
    return false;
  }
  bool pop() {
    if (!keys_.empty()) keys_.pop_back();
    return true;
  }
};

std::uint64_t unsigned_field(const nlohmann::json& v, std::string_view source, const std::string& what) {
  if (!v.is_number_unsigned()) fail(source, fmt::format("{} is not a non-negative integer: {}", what, v.dump()));
  return v.get<std::uint64_t>();
}

Header parse_header(std::string_view text, std::uint64_t data_len, std::string_view source) {
  HeaderCheck check;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text.begin(), text.end(), &check);
  } catch (const nlohmann::json::exception& e) {
    fail(source, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!ok) fail(source, check.error.empty() ? std::string("header is not valid JSON") : check.error);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {  // not reached after the check; kept for safety
    fail(source, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) fail(source, fmt::format("header is a JSON {}, not an object", j.type_name()));

  Header h;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) fail(source, fmt::format("__metadata__ is a JSON {}, not an object of strings", v.type_name()));
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(source, fmt::format("__metadata__ key '{}' is a JSON {}, not a string", k, s.type_name()));
        h.metadata.emplace(k, s.get<std::string>());
      }
      continue;
    }
    const std::string where = fmt::format("tensor '{}'", name);
    if (!v.is_object()) fail(source, fmt::format("{}: entry is a JSON {}, not an object", where, v.type_name()));
    Entry e;
    e.name = name;
    // dtype
    auto it = v.find("dtype");
    if (it == v.end() || !it->is_string()) fail(source, fmt::format("{}: missing or non-string \"dtype\"", where));
    auto dt = dtype_from_name(it->get_ref<const std::string&>());
    if (!dt) fail(source, fmt::format("{}: unsupported dtype '{}'", where, it->get_ref<const std::string&>()));
    e.dtype = *dt;
    // shape
    it = v.find("shape");
    if (it == v.end() || !it->is_array()) fail(source, fmt::format("{}: missing or non-array \"shape\"", where));
    for (std::size_t i = 0; i < it->size(); ++i)
      e.shape.push_back(unsigned_field((*it)[i], source, fmt::format("{}: shape entry {}", where, i)));
    // data_offsets
    it = v.find("data_offsets");
    if (it == v.end() || !it->is_array() || it->size() != 2)
      fail(source, fmt::format("{}: \"data_offsets\" must be an array [begin, end]", where));
    e.begin = unsigned_field((*it)[0], source, where + ": data_offsets begin");
    e.end = unsigned_field((*it)[1], source, where + ": data_offsets end");
    // Sizes, in the order that gives the most useful message for a damaged file.
    const auto numel = checked_numel(e.shape);
    const auto nbytes = numel ? checked_mul(*numel, dtype_size(e.dtype)) : std::nullopt;
    if (!nbytes)
      fail(source, fmt::format("{}: shape {} of {} overflows 64-bit byte count", where, shape_str(e.shape),
                               dtype_name(e.dtype)));
    if (e.end < e.begin) fail(source, fmt::format("{}: data_offsets [{}, {}] end before begin", where, e.begin, e.end));
    if (e.end > data_len)
      fail(source, fmt::format("{}: data_offsets [{}, {}] run past the {}-byte data buffer (file truncated?)", where,
                               e.begin, e.end, data_len));
    if (e.end - e.begin != *nbytes)
      fail(source, fmt::format("{}: data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}", where, e.begin,
                               e.end, e.end - e.begin, shape_str(e.shape), dtype_name(e.dtype), *nbytes));
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // The tensors must tile [0, data_len): each begins where the previous one ended.
  std::uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < pos)
      fail(source, fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", prev->name, prev->begin, prev->end,
                               e.name, e.begin, e.end));
    if (e.begin > pos)
      fail(source, fmt::format("hole in the data buffer: bytes [{}, {}) before tensor '{}' belong to no tensor", pos,
                               e.begin, e.name));
    pos = e.end;
    prev = &e;
  }
  if (pos != data_len)
    fail(source, fmt::format("data buffer has {} bytes but the tensors cover only {}: {} trailing bytes belong to no "
                             "tensor",
                             data_len, pos, data_len - pos));
  return h;
}

// Reads the 8-byte length prefix and checks it against the cap and the total size.
std::uint64_t header_length(const std::byte* first8, std::uint64_t total, std::string_view source) {
  if (total < 8) fail(source, fmt::format("file is {} bytes, shorter than the 8-byte header length", total));
  const std::uint64_t n = load_le(first8, 8);
  if (n > kMaxHeaderSize)
    fail(source, fmt::format("header length {} exceeds the {}-byte limit (corrupt or not a safetensors file)", n,
                             kMaxHeaderSize));
  if (n > total - 8)
    fail(source, fmt::format("header length {} runs past the end of the file ({} bytes after the length; truncated?)",
                             n, total - 8));
  return n;
}

template <class T>
std::vector<T> convert(const Tensor& t) {
  if (!is_float_dtype(t.dtype))
    throw IoError(fmt::format("tensor '{}': dtype {} does not convert to floating point (read its raw bytes instead)",
                              t.name, dtype_name(t.dtype)));
  const std::uint64_t n = t.numel();
  const std::size_t sz = dtype_size(t.dtype);
  if (t.bytes.size() / sz != n || t.bytes.size() % sz != 0)
    throw IoError(fmt::format("tensor '{}': {} bytes for shape {} of {}", t.name, t.bytes.size(), shape_str(t.shape),
                              dtype_name(t.dtype)));
  std::vector<T> out(static_cast<std::size_t>(n));
  const std::byte* p = t.bytes.data();
  for (std::size_t i = 0; i < out.size(); ++i, p += sz) {
    const std::uint64_t bits = load_le(p, sz);
    switch (t.dtype) {
      case Dtype::F64:
        if constexpr (std::is_same_v<T, double>)
          out[i] = std::bit_cast<double>(bits);
        else  // one correctly rounded step, overflow to inf (a plain cast would be UB there)
          out[i] = std::bit_cast<float>(encode_bits(std::bit_cast<double>(bits), 23, 8));
        break;
      case Dtype::F32: out[i] = static_cast<T>(std::bit_cast<float>(static_cast<std::uint32_t>(bits))); break;
      case Dtype::F16: out[i] = static_cast<T>(half_to_double(static_cast<std::uint16_t>(bits))); break;
      case Dtype::BF16: out[i] = static_cast<T>(bf16_to_double(static_cast<std::uint16_t>(bits))); break;
      default: break;  // excluded above
    }
  }
  return out;
}

template <class T>
Tensor make_tensor_impl(std::string name, Dtype dtype, std::vector<std::uint64_t> shape, std::span<const T> values) {
  if (!is_float_dtype(dtype))
    throw ConfigError(fmt::format("safetensors: tensor '{}': make_tensor needs a float dtype, not {}", name,
                                  dtype_name(dtype)));
  const auto numel = checked_numel(shape);
  if (!numel || *numel != values.size())
    throw ConfigError(fmt::format("safetensors: tensor '{}': {} values for shape {}", name, values.size(),
                                  shape_str(shape)));
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  const std::size_t sz = dtype_size(dtype);
  t.bytes.resize(values.size() * sz);
  std::byte* p = t.bytes.data();
  for (const T v : values) {
    const double x = static_cast<double>(v);
    std::uint64_t bits = 0;
    switch (dtype) {
      case Dtype::F64: bits = std::bit_cast<std::uint64_t>(x); break;
      case Dtype::F32: bits = encode_bits(x, 23, 8); break;
      case Dtype::F16: bits = double_to_half(x); break;
      case Dtype::BF16: bits = double_to_bf16(x); break;
      default: break;
    }
    store_le(p, bits, sz);
    p += sz;
  }
  return t;
}

}  // namespace

// ---- public -------------------------------------------------------------------------

std::string_view dtype_name(Dtype d) { return info(d).name; }
std::size_t dtype_size(Dtype d) { return info(d).size; }
bool is_float_dtype(Dtype d) { return d == Dtype::F64 || d == Dtype::F32 || d == Dtype::F16 || d == Dtype::BF16; }
std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (const auto& i : kDtypes)
    if (i.name == name) return i.dtype;
  return std::nullopt;
}

double half_to_double(std::uint16_t bits) { return decode_bits(bits, 10, 5); }
double bf16_to_double(std::uint16_t bits) { return decode_bits(bits, 7, 8); }
std::uint16_t double_to_half(double x) { return static_cast<std::uint16_t>(encode_bits(x, 10, 5)); }
std::uint16_t double_to_bf16(double x) { return static_cast<std::uint16_t>(encode_bits(x, 7, 8)); }

std::uint64_t Tensor::numel() const {
  auto n = checked_numel(shape);
  if (!n) throw IoError(fmt::format("tensor '{}': shape {} overflows 64 bits", name, shape_str(shape)));
  return *n;
}
std::vector<double> Tensor::to_double() const { return convert<double>(*this); }
std::vector<float> Tensor::to_float() const { return convert<float>(*this); }

const Tensor* File::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}
const Tensor& File::at(std::string_view name) const {
  if (const Tensor* t = find(name)) return *t;
  throw IoError(fmt::format("{}: no tensor '{}'", source, name));
}

File parse(std::span<const std::byte> image, std::string_view source) {
  const std::uint64_t total = image.size();
  const std::uint64_t n = header_length(image.data(), total, source);
  const std::string_view text(reinterpret_cast<const char*>(image.data() + 8), static_cast<std::size_t>(n));
  Header h = parse_header(text, total - 8 - n, source);
  File f;
  f.source = std::string(source);
  f.metadata = std::move(h.metadata);
  const std::byte* data = image.data() + 8 + n;
  for (Entry& e : h.entries) {
    Tensor t;
    t.name = std::move(e.name);
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.bytes.assign(data + e.begin, data + e.end);  // inside the image: checked by parse_header
    f.tensors.push_back(std::move(t));
  }
  return f;
}

File read_file(const std::filesystem::path& path) {
  const std::string source = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(source, "is a folder, not a safetensors file");
  const std::uint64_t total = std::filesystem::file_size(path, ec);
  if (ec) fail(source, fmt::format("cannot read: {}", ec.message()));
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(source, "cannot open for reading");
  std::array<std::byte, 8> first{};
  if (total >= 8 && !in.read(reinterpret_cast<char*>(first.data()), 8)) fail(source, "read failed in the header length");
  const std::uint64_t n = header_length(first.data(), total, source);
  std::string text(static_cast<std::size_t>(n), '\0');  // n <= kMaxHeaderSize and n <= file size
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) fail(source, "file shrank while reading the header");
  Header h = parse_header(text, total - 8 - n, source);
  File f;
  f.source = source;
  f.metadata = std::move(h.metadata);
  // The entries tile the buffer in this order, so the data is read front to back; the
  // total allocated is the file size, which was checked above.
  for (Entry& e : h.entries) {
    Tensor t;
    t.name = std::move(e.name);
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.bytes.resize(static_cast<std::size_t>(e.end - e.begin));
    if (!t.bytes.empty() && !in.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size())))
      fail(source, fmt::format("file shrank while reading tensor '{}'", t.name));
    f.tensors.push_back(std::move(t));
  }
  return f;
}

std::string serialize(const std::vector<Tensor>& tensors, const Metadata& metadata) {
  std::set<std::string_view> names;
  for (const Tensor& t : tensors) {
    if (t.name == "__metadata__")
      throw ConfigError("safetensors: '__metadata__' is reserved and cannot name a tensor");
    if (!names.insert(t.name).second) throw ConfigError(fmt::format("safetensors: duplicate tensor name '{}'", t.name));
    const auto numel = checked_numel(t.shape);
    const auto nbytes = numel ? checked_mul(*numel, dtype_size(t.dtype)) : std::nullopt;
    if (!nbytes || *nbytes != t.bytes.size())
      throw ConfigError(fmt::format("safetensors: tensor '{}': {} bytes for shape {} of {}", t.name, t.bytes.size(),
                                    shape_str(t.shape), dtype_name(t.dtype)));
  }
  // Upstream's order: descending dtype (alignment), then name (bytewise).
  std::vector<const Tensor*> order;
  order.reserve(tensors.size());
  for (const Tensor& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const Tensor* a, const Tensor* b) {
    return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::uint64_t offset = 0;
  for (const Tensor* t : order) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(t->dtype));
    e["shape"] = t->shape;
    e["data_offsets"] = nlohmann::ordered_json::array({offset, offset + t->bytes.size()});
    offset += t->bytes.size();
    h[t->name] = std::move(e);
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("safetensors: a tensor name or metadata string is not valid UTF-8: {}", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // tensors then start 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  std::array<std::byte, 8> len{};
  store_le(len.data(), text.size(), 8);
  out.append(reinterpret_cast<const char*>(len.data()), 8);
  out += text;
  for (const Tensor* t : order) out.append(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
  return out;
}

void write_file(const std::filesystem::path& path, const std::vector<Tensor>& tensors, const Metadata& metadata) {
  // write_file_atomic writes the string's bytes verbatim (binary stream, embedded NULs kept).
  write_file_atomic(path, serialize(tensors, metadata));
}

Tensor make_tensor(std::string name, Dtype dtype, std::vector<std::uint64_t> shape, std::span<const double> values) {
  return make_tensor_impl<double>(std::move(name), dtype, std::move(shape), values);
}
Tensor make_tensor(std::string name, Dtype dtype, std::vector<std::uint64_t> shape, std::span<const float> values) {
  return make_tensor_impl<float>(std::move(name), dtype, std::move(shape), values);
}

}  // namespace sigprop::safetensors
