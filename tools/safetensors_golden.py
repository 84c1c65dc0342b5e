#!/usr/bin/env python3
"""Golden safetensors files from the official `safetensors` package, and the fuzz seeds.

Writes (nothing random; a rerun is byte-identical):
  tests/golden/safetensors/mixed.safetensors   every dtype sigprop reads, shapes incl. a
      scalar and a zero-size tensor, unicode names, metadata; written by
      safetensors.numpy.save_file.
  tests/golden/safetensors/mixed.json          what each tensor must decode to: dtype,
      shape, the raw element bit patterns (hex, as numpy stores them) and, for float
      types, the values as float.hex() strings decoded by numpy (the independent
      reference for sigprop's float16/bfloat16 decoding).
  tests/golden/safetensors/encode.safetensors  the same float64/float32 source values
      rounded by numpy (F16, from float64 in one step) and ml_dtypes (BF16, from float32:
      ml_dtypes goes through float32, so float32 sources are the fair comparison), next
      to the sources; sigprop's encoder must give the same bits.
  tests/golden/safetensors/single_meta.safetensors  tensors + ONE metadata key (upstream
      orders several keys by hash), which sigprop's writer must reproduce byte for byte.
  fuzz/corpus/safetensors/{valid,invalid}_*.safetensors  small seeds for the libFuzzer
      harness. Each file is also checked against upstream here: safetensors.deserialize
      must accept every valid_ file and reject every invalid_ one.

    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install -r tools/requirements-safetensors.txt
    /tmp/stvenv/bin/python tools/safetensors_golden.py           # (re)write the files
    /tmp/stvenv/bin/python tools/safetensors_golden.py --check   # fail if any would change
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import safetensors
from safetensors.numpy import save, save_file

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "safetensors"
CORPUS = ROOT / "fuzz" / "corpus" / "safetensors"

F64 = np.float64
# Values that exercise rounding and the edges of binary16 / bfloat16.
SPECIAL = [0.0, -0.0, 1.0, -2.5, 0.1, 1.0 / 3.0, 65504.0, 65519.99, 65520.0, 1e5, -1e5,
           6.103515625e-05,  # smallest normal half
           5.960464477539063e-08,  # smallest subnormal half
           2.9802322387695312e-08,  # half of it: ties to even -> 0
           2.98023223876953125e-08 * 1.0000001,  # just above: -> smallest subnormal
           3.0e-06, -7.5e-07, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,  # half ties
           1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,  # bfloat16 ties
           1.1754943508222875e-38, 9.183549615799121e-41, 1e-45, 3.3895313892515355e+38,
           3.4e38, float("inf"), float("-inf"), float("nan"), 1e300, -1e-300]


def hexs(values) -> list[str]:
    return [float(v).hex() for v in np.asarray(values, dtype=F64).ravel()]


def bits(a: np.ndarray) -> list[str]:
    a = np.ascontiguousarray(a)
    u = a.view(f"<u{a.dtype.itemsize}") if a.dtype.itemsize > 1 else a.view(np.uint8)
    return [format(int(x), "x") for x in u.ravel()]


def mixed_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20260527)
    t = {
        "w.f64": rng.standard_normal((3, 4)).astype(np.float64),
        "w.f32": (rng.standard_normal((2, 3, 2)) * 10).astype(np.float32),
        "w.f16": np.array(SPECIAL, dtype=F64).astype(np.float16),
        "w.bf16": np.array(SPECIAL, dtype=np.float32).astype(ml_dtypes.bfloat16),
        "scalar": np.array(-3.25, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "i64": np.array([-(2 ** 63), 2 ** 63 - 1, 0, -1], dtype=np.int64),
        "i32": np.array([[-7, 8], [2 ** 31 - 1, -(2 ** 31)]], dtype=np.int32),
        "i16": np.array([-300, 300], dtype=np.int16),
        "i8": np.array([-128, 127, 0], dtype=np.int8),
        "u8": np.arange(5, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "blöck.ä": np.array([1.5, -0.5], dtype=np.float16),
    }
    return t


def describe(t: dict[str, np.ndarray]) -> dict:
    out = {}
    for name, a in t.items():
        d = {"dtype": a.dtype.name, "shape": list(a.shape), "bits": bits(a)}
        if a.dtype.kind == "f" or a.dtype == ml_dtypes.bfloat16:
            d["values"] = hexs(a.astype(F64))
        out[name] = d
    return out


def header(obj: dict) -> bytes:
    h = json.dumps(obj, separators=(",", ":")).encode()
    return h + b" " * ((8 - len(h) % 8) % 8)


def image(obj, data: bytes = b"", n: int | None = None, raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else header(obj)
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def corpus() -> dict[str, bytes]:
    f32 = np.arange(6, dtype=np.float32).tobytes()
    ok = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    two = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]}}
    c: dict[str, bytes] = {}
    c["valid_f32"] = image(ok, f32)
    c["valid_empty"] = image({})
    c["valid_meta"] = save({"x": np.ones(2, np.float16), "y": np.zeros((1, 2), np.float64)},
                           metadata={"step": "10", "spec": "[stack]\nlayers = 4"})
    c["valid_mixed"] = save(mixed_tensors(), metadata={"k": "v"})
    c["valid_bf16"] = save({"b": np.array([1, -2, 0.5], dtype=np.float32).astype(ml_dtypes.bfloat16)})
    c["valid_zero_size"] = image({"z": {"dtype": "F64", "shape": [0, 7], "data_offsets": [0, 0]},
                                  "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, f32[:4])
    c["valid_reversed_order"] = image({"b": two["b"], "a": two["a"]}, f32[:8] + b"\0\x3c\0\x40")
    c["valid_leading_space"] = image(None, f32, raw_header=b"  " + header(ok))
    c["valid_null_meta"] = image({"__metadata__": None, **ok}, f32)
    c["invalid_truncated"] = image(ok, f32)[:-5]
    c["invalid_short"] = b"\x08\0\0"
    c["invalid_huge_header_len"] = image(ok, f32, n=2 ** 63)
    c["invalid_header_cap"] = image(ok, f32, n=100_000_001)
    c["invalid_header_past_end"] = image(ok, f32, n=1000)
    c["invalid_not_object"] = image([1, 2, 3])
    c["invalid_not_json"] = image(None, raw_header=b"{\"a\": ")
    c["invalid_overlap"] = image({"a": two["a"], "b": {**two["b"], "data_offsets": [6, 10]}}, f32[:10])
    c["invalid_hole"] = image({"a": two["a"], "b": {**two["b"], "data_offsets": [10, 14]}}, f32[:8] + b"\0" * 6)
    c["invalid_beyond_buffer"] = image({"a": {**ok["a"], "data_offsets": [0, 24]}}, f32[:16])
    c["invalid_trailing_bytes"] = image(ok, f32 + b"\0\0\0\0")
    c["invalid_wrong_byte_count"] = image({"a": {**ok["a"], "shape": [2, 2]}}, f32)
    c["invalid_negative_shape"] = image({"a": {**ok["a"], "shape": [-2, -3]}}, f32)
    c["invalid_huge_shape"] = image({"a": {**ok["a"], "shape": [2 ** 62, 2 ** 62]}}, f32)
    c["invalid_overflow_bytes"] = image({"a": {**ok["a"], "shape": [2 ** 62]}}, f32)
    c["invalid_unknown_dtype"] = image({"a": {**ok["a"], "dtype": "F33"}}, f32)
    c["invalid_end_before_begin"] = image({"a": {**ok["a"], "data_offsets": [24, 0]}}, f32)
    c["invalid_meta_not_string"] = image({"__metadata__": {"step": 3}, **ok}, f32)
    c["invalid_entry_not_object"] = image({"a": [1, 2]}, f32)
    c["invalid_missing_offsets"] = image({"a": {"dtype": "F32", "shape": [6]}}, f32)
    c["invalid_bad_utf8"] = image(None, f32, raw_header=header(ok).replace(b'"a"', b'"\xff"'))
    # Upstream (serde) keeps one of two equal keys and then finds its buffer not covered;
    # sigprop names the duplicate.
    c["invalid_duplicate_name"] = image(
        None, f32[:8] + f32[:8],
        raw_header=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                   b'"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}')
    c["invalid_deep_nesting"] = image(None, b"", raw_header=b'{"__x":' + b"[" * 40 + b"]" * 40 + b"}")
    return c


def upstream_accepts(b: bytes) -> bool:
    try:
        safetensors.deserialize(b)
        return True
    except Exception:  # noqa: BLE001 - any rejection counts
        return False


def main() -> int:
    np.seterr(over="ignore")  # the edge values overflow float16/float32 on purpose (-> inf)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if a file would change")
    args = ap.parse_args()
    files: dict[Path, bytes] = {}

    t = mixed_tensors()
    meta = {"script": "tools/safetensors_golden.py", "safetensors": safetensors.__version__,
            "numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__, "seed": "20260527"}
    tmp = GOLDEN / ".tmp.mixed.safetensors"
    GOLDEN.mkdir(parents=True, exist_ok=True)
    # save_file is the API the brief names; its metadata order is a hash order, so the file
    # is made once per run and compared by content in --check through a stable re-save.
    save_file(t, tmp, metadata={"k": "v"})
    files[GOLDEN / "mixed.safetensors"] = tmp.read_bytes()
    tmp.unlink()
    files[GOLDEN / "mixed.json"] = (json.dumps({"generator": meta, "tensors": describe(t)}, indent=1,
                                               ensure_ascii=False) + "\n").encode()

    src64 = np.array(SPECIAL, dtype=F64)
    src32 = src64.astype(np.float32)
    enc = {"src64": src64, "src32": src32, "f16_from64": src64.astype(np.float16),
           "bf16_from32": src32.astype(ml_dtypes.bfloat16), "f32_from64": src32}
    files[GOLDEN / "encode.safetensors"] = save(enc, metadata={"generator": json.dumps(meta, sort_keys=True)})
    files[GOLDEN / "single_meta.safetensors"] = save(
        {"wte": np.arange(12, dtype=np.float32).reshape(3, 4), "ln.g": np.ones(4, np.float16),
         "b": np.array([0.5, -1], dtype=np.float64), "z": np.array([1, 2], dtype=np.int32),
         "bf": src32[:4].astype(ml_dtypes.bfloat16), "ä \"q\"\n": np.zeros(1, np.float32)},
        metadata={"sigprop \"spec\"": "[stack]\nlayers = 4\tü"})

    bad = []
    for name, b in corpus().items():
        acc = upstream_accepts(b)
        if name.startswith("valid_") != acc:
            bad.append(f"{name}: upstream {'accepts' if acc else 'rejects'} it")
        files[CORPUS / f"{name}.safetensors"] = b
    if bad:
        print("corpus disagrees with upstream safetensors:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1

    changed = [p for p, b in files.items() if not p.exists() or p.read_bytes() != b]
    if args.check:
        for p in changed:
            print(f"would change: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if changed else 0
    CORPUS.mkdir(parents=True, exist_ok=True)
    for p in changed:
        p.write_bytes(files[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
