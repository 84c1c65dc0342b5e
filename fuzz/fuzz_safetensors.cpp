// libFuzzer harness for the safetensors parser (validate/safetensors.hpp).
//
// Every input is a candidate file image. The parser must either accept it or throw
// sigprop::IoError; anything else (a crash, an out-of-bounds access seen by ASan, UB seen
// by UBSan, another exception type, a hang) is a finding. An accepted file must also
// survive the checks below, which tie the parse to the writer:
//   - each tensor's bytes match numel * dtype size;
//   - float tensors convert without error; other dtypes refuse with IoError;
//   - serialize(parse(x)) parses again to the same tensors and metadata, and serialising
//     that gives the same bytes (the writer's output is a fixed point).
// Run with scripts/fuzz.sh (seed corpus: fuzz/corpus/safetensors).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "core/error.hpp"
#include "validate/safetensors.hpp"

namespace st = sigprop::safetensors;

namespace {
[[noreturn]] void finding() { std::abort(); }

bool same(const st::File& a, const st::File& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const st::Tensor& t : a.tensors) {
    const st::Tensor* u = b.find(t.name);
    if (u == nullptr || u->dtype != t.dtype || u->shape != t.shape || u->bytes != t.bytes) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> image(reinterpret_cast<const std::byte*>(data), size);
  st::File f;
  try {
    f = st::parse(image, "fuzz-input");
  } catch (const sigprop::IoError&) {
    return 0;  // rejected with the documented error: fine
  }
  for (const st::Tensor& t : f.tensors) {
    if (t.bytes.size() != t.numel() * st::dtype_size(t.dtype)) finding();
    if (st::is_float_dtype(t.dtype)) {
      if (t.to_double().size() != t.numel() || t.to_float().size() != t.numel()) finding();
    } else {
      try {
        (void)t.to_double();
        finding();  // a non-float dtype must refuse conversion
      } catch (const sigprop::IoError&) {
      }
    }
  }
  const std::string once = st::serialize(f.tensors, f.metadata);
  const st::File g = st::parse(std::span(reinterpret_cast<const std::byte*>(once.data()), once.size()), "reserialized");
  if (!same(f, g)) finding();
  if (st::serialize(g.tensors, g.metadata) != once) finding();
  return 0;
}
