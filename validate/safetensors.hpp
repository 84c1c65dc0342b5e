#pragma once
/// @file Reading and writing safetensors files (the Hugging Face checkpoint format).
///
/// Format (huggingface/safetensors README, "Format"; rules as enforced by the upstream
/// Rust crate, `Metadata::validate` and `SafeTensors::read_metadata`):
///   - 8 bytes: N, a little-endian u64, the size of the header; N <= 100,000,000;
///   - N bytes: a UTF-8 JSON object; the optional key `__metadata__` maps to an object of
///     strings; every other key is a tensor name mapping to
///     {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]};
///     the header may end with spaces (writers pad it to a multiple of 8 bytes);
///   - the rest of the file: the byte buffer. Offsets are relative to its start, every
///     tensor is C-ordered little-endian, end - begin == numel * dtype size, and the
///     tensors sorted by offset tile the buffer exactly: no hole, no overlap, nothing after.
///
/// Everything a file can get wrong is an IoError whose message starts with the file name
/// and names the tensor or key at fault. The reader never reads outside what it was given:
/// sizes are checked against the file size (or buffer length) before any allocation, and
/// all products of shape entries are overflow-checked.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigprop::safetensors {

/// Element types known to upstream safetensors (byte-sized ones). The declaration order is
/// upstream's: ascending alignment, which is what the writer sorts by (descending).
enum class Dtype : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

/// The dtype's name in the header ("F32", "BF16", ...).
[[nodiscard]] std::string_view dtype_name(Dtype d);
/// Parses a header dtype name; nullopt if unknown (including upstream's sub-byte types).
[[nodiscard]] std::optional<Dtype> dtype_from_name(std::string_view name);
/// Bytes per element.
[[nodiscard]] std::size_t dtype_size(Dtype d);
/// True for F64, F32, F16 and BF16, the types that convert to float/double.
[[nodiscard]] bool is_float_dtype(Dtype d);

/// Header size cap, as upstream (`MAX_HEADER_SIZE`).
inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

/// One tensor: its dtype, shape and raw little-endian bytes (numel * dtype_size of them).
struct Tensor {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<std::uint64_t> shape;  ///< empty for a scalar (numel 1)
  std::vector<std::byte> bytes;      ///< C order, little-endian, exactly as in the file

  /// Number of elements (product of shape; 1 for a scalar). Shapes are checked on read
  /// and on construction, so this cannot overflow for a tensor that exists.
  [[nodiscard]] std::uint64_t numel() const;
  /// The values converted to double (exact for all four float types; NaN payloads are not
  /// kept, signs are). Throws IoError naming the tensor for a non-float dtype.
  [[nodiscard]] std::vector<double> to_double() const;
  /// The values converted to float (F64 rounds to nearest even; the others are exact).
  /// Throws IoError naming the tensor for a non-float dtype.
  [[nodiscard]] std::vector<float> to_float() const;
};

/// Metadata: the `__metadata__` string map.
using Metadata = std::map<std::string, std::string>;

/// A whole file: tensors in buffer (offset) order, plus metadata.
struct File {
  std::string source;  ///< file name (or the label given to parse()), used in error messages
  Metadata metadata;
  std::vector<Tensor> tensors;

  /// The tensor called `name`, or nullptr.
  [[nodiscard]] const Tensor* find(std::string_view name) const;
  /// The tensor called `name`; IoError "<source>: no tensor '<name>'" if absent.
  [[nodiscard]] const Tensor& at(std::string_view name) const;
};

/// Reads and validates a safetensors file. Memory: the header (capped) plus the tensors'
/// bytes, whose total is checked to equal the file's size before anything is allocated.
/// @throws IoError naming the file and the problem.
[[nodiscard]] File read_file(const std::filesystem::path& path);

/// Parses a complete safetensors image held in memory (what read_file does after reading;
/// the fuzz harness calls this). `source` labels error messages.
/// @throws IoError "<source>: <problem>".
[[nodiscard]] File parse(std::span<const std::byte> image, std::string_view source);

/// Serialises tensors and metadata to a safetensors image, laid out as upstream does
/// (sorted by descending dtype alignment, then name; header padded with spaces to a
/// multiple of 8 bytes, so every tensor is aligned to its element size), so that the same
/// inputs give byte-identical output to `safetensors.numpy.save` when metadata has at
/// most one key (upstream's metadata order is a hash-map order).
/// @throws ConfigError naming the tensor for a duplicate or reserved name, a shape whose
///         element count overflows, or a byte count that does not match the shape.
[[nodiscard]] std::string serialize(const std::vector<Tensor>& tensors, const Metadata& metadata = {});

/// serialize() written atomically (temporary file in the same folder, then rename).
/// @throws ConfigError as serialize(); IoError if the file cannot be written.
void write_file(const std::filesystem::path& path, const std::vector<Tensor>& tensors, const Metadata& metadata = {});

/// Makes a tensor of a float dtype (F64, F32, F16, BF16) from values, rounding each to
/// nearest, ties to even, in one step (no double rounding through float); overflow gives
/// infinity, NaN gives a quiet NaN of the same sign.
/// @throws ConfigError if dtype is not a float type or values.size() != numel(shape).
[[nodiscard]] Tensor make_tensor(std::string name, Dtype dtype, std::vector<std::uint64_t> shape,
                                 std::span<const double> values);
/// As above, from float values.
[[nodiscard]] Tensor make_tensor(std::string name, Dtype dtype, std::vector<std::uint64_t> shape,
                                 std::span<const float> values);

/// IEEE binary16 bits -> double (exact; subnormals, infinities, NaN).
[[nodiscard]] double half_to_double(std::uint16_t bits);
/// bfloat16 bits -> double (exact).
[[nodiscard]] double bf16_to_double(std::uint16_t bits);
/// double -> IEEE binary16 bits, round to nearest even in one step.
[[nodiscard]] std::uint16_t double_to_half(double x);
/// double -> bfloat16 bits, round to nearest even in one step.
[[nodiscard]] std::uint16_t double_to_bf16(double x);

}  // namespace sigprop::safetensors
