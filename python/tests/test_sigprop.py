"""Tests of the sigprop Python package (docs/python.md). Cheap: a few seconds in all."""

from __future__ import annotations

import _thread
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

import sigprop

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = {"stack.depth": 3, "stack.width": 16, "stack.heads": 2, "stack.tokens": 4}


def cli() -> str:
    """The sigprop command line: $SIGPROP_CLI (scripts/test.sh sets it) or build/cli/sigprop."""
    path = os.environ.get("SIGPROP_CLI") or str(ROOT / "build" / "cli" / "sigprop")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no sigprop command line at {path} (set SIGPROP_CLI to compare with it)")
    return path


def cli_json(tmp_path: pathlib.Path, args: List[str]) -> Dict[str, Any]:
    out = tmp_path / "cli.json"
    subprocess.run([cli(), *args, "--json", str(out), "-q"], check=True, cwd=tmp_path)
    result: Dict[str, Any] = json.loads(out.read_text())
    return result


def column(doc: Dict[str, Any], metric: str) -> np.ndarray:
    return np.array([math.nan if row[metric] is None else row[metric] for row in doc["layers"]])


# ------------------------------------------------------------------------------------------------
# Entry points and the Profile


def test_version_and_default_spec() -> None:
    assert sigprop.version.count(".") == 2
    d = sigprop.default_spec()
    assert d["stack"]["depth"] == 24 and d["stack"]["norm"] == "pre" and d["input"]["rho0"] == 0.1


def test_theory_profile() -> None:
    p = sigprop.theory(stack_depth=4)
    assert p.engine == "theory" and p.version == sigprop.version
    assert len(p) == 5 and p.layers.tolist() == [0, 1, 2, 3, 4] and p.layers.dtype == np.int64
    g = p["grad_var"]
    assert g.dtype == np.float64 and g.shape == (5,) and g[-1] == 1.0
    assert not g.flags.writeable
    with pytest.raises(ValueError):
        g[0] = 2.0
    assert "rho" in p and "nonsense" not in p and p.keys() == p.metrics
    assert p.se("rho").shape == (5,) and "rho_se" in p.metrics
    assert p.spec["stack"]["depth"] == 4
    assert p.settings["engine"] == "theory"
    assert isinstance(p.extras, dict) and p.warnings == []
    d = p.to_dict()
    assert d["format"] == "sigprop-profile" and len(d["layers"]) == 5
    assert json.loads(p.to_json()) == d and json.loads(p.to_json(indent=None)) == d
    assert any(line.startswith("layer,q,rho") for line in p.to_csv().splitlines())
    # the column outlives the Profile object that gave it
    del p
    assert g[-1] == 1.0


def test_spec_forms_agree(tmp_path: pathlib.Path) -> None:
    toml = "[stack]\ndepth = 5\nnorm = \"post\"\n[input]\nrho0 = 0.3\n"
    f = tmp_path / "s.toml"
    f.write_text(toml)
    forms: List[sigprop.SpecLike] = [
        toml,
        str(f),
        f,
        {"stack": {"depth": 5, "norm": "post"}, "input": {"rho0": 0.3}},
        {"stack.depth": 5, "stack.norm": "post", "input.rho0": 0.3},
        sigprop.resolve_spec(f),
    ]
    ref = sigprop.theory(stack_depth=5, stack_norm="post", input_rho0=0.3)
    for form in forms:
        p = sigprop.theory(form)
        assert p.spec == ref.spec
        assert np.array_equal(p["rho"], ref["rho"])
    # a profile's spec goes back in unchanged; keyword overrides win over the spec
    assert sigprop.theory(ref.spec).spec == ref.spec
    assert sigprop.theory(ref.spec, stack_depth=2).spec["stack"]["depth"] == 2


def test_simulate_spectrum_ode() -> None:
    s = sigprop.simulate(SMALL, samples=3, seed=2)
    assert s.engine == "simulate" and len(s) == 4 and s.settings["samples"] == 3
    assert np.all(s.se("rho")[1:] > 0)
    ex = sigprop.simulate(SMALL, samples=3, seed=2, input_kernel="exact")
    assert ex.settings["input_kernel"] == "exact" and "input_kernel" not in s.settings
    assert ex.se("rho")[0] < 1e-12 and s.se("rho")[0] > 1e-3
    dense = {"stack.depth": 3, "stack.blocks": "dense", "stack.norm": "none", "stack.residual": False, "stack.width": 16}
    sp = sigprop.spectrum(dense, grid_points=8)
    assert sp.engine == "spectrum-theory" and "sv2_mean" in sp and sp.extras["density"] and sp.warnings == []
    sps = sigprop.spectrum(dense, engine="simulate", samples=2, grid_lo=0.1, grid_hi=4.0, grid_points=8)
    assert sps.engine == "spectrum-simulate" and np.all(np.isfinite(sps.se("sv2_mean")[1:]))
    c = sigprop.ode(stack_depth=4, stack_branch_scale="1/sqrt(L)", stack_qk_scale="1/dh")
    assert c.engine == "continuum" and np.all(np.isfinite(c["rho"]))
    cl = sigprop.ode(kind="clustering", stack_qk_scale="1/dh", points=5, t_end=1.0)
    assert cl.engine == "clustering" and len(cl) == 6
    sde = sigprop.ode(SMALL, kind="shaped-sde", paths=8, samples=0, substeps=2)
    assert sde.engine == "shaped-sde" and len(sde["rho"]) == len(sde)


def test_to_pandas_or_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    p = sigprop.theory(stack_depth=2)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    with pytest.raises(ImportError, match="pandas"):
        p.to_pandas()
    monkeypatch.undo()
    try:
        import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return
    df = p.to_pandas()
    assert list(df.columns) == p.metrics and np.array_equal(df["q"].to_numpy(), p["q"])


# ------------------------------------------------------------------------------------------------
# Errors: the named exception, the C++ message naming the key, no file written


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: sigprop.theory(stack_depth=0), sigprop.ConfigError, "stack.depth"),
        (lambda: sigprop.theory({"stack": {"nrm": "pre"}}), sigprop.ConfigError, "stack.nrm"),
        (lambda: sigprop.theory("[stack]\ndepth = \"deep\"\n"), sigprop.ConfigError, "stack.depth"),
        (lambda: sigprop.theory(stack_norm="sideways"), sigprop.ConfigError, "stack.norm"),
        (lambda: sigprop.simulate(SMALL, samples=0), sigprop.ConfigError, "samples"),
        (lambda: sigprop.simulate(SMALL, samples="many"), sigprop.ConfigError, "samples"),  # type: ignore[arg-type]
        (lambda: sigprop.simulate(SMALL, backend="abacus"), sigprop.ConfigError, "abacus"),
        (lambda: sigprop.simulate(SMALL, input_kernel="exakt"), sigprop.ConfigError, 'did you mean "exact"'),
        (lambda: sigprop.simulate(SMALL, stack_width=4, input_kernel="exact"), sigprop.ConfigError, "input_kernel"),
        (lambda: sigprop.ode(kind="wave"), sigprop.ConfigError, "kind"),
        (lambda: sigprop.theory("no/such/spec.toml"), sigprop.IoError, "no/such/spec.toml"),
        (lambda: sigprop.theory_many([{"stack.depth": 2}, {"stack.depth": -1}]), sigprop.ConfigError, "specs[1]"),
    ],
)
def test_errors(
    call: Any, exc: type, words: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=None) as info:
        call()
    assert isinstance(info.value, sigprop.Error)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_error_classes() -> None:
    assert issubclass(sigprop.ConfigError, ValueError) and issubclass(sigprop.IoError, OSError)
    for cls in (sigprop.ConfigError, sigprop.IoError, sigprop.NumericalError, sigprop.CudaError, sigprop.CancelledError):
        assert issubclass(cls, sigprop.Error)
    with pytest.raises(TypeError, match="stack_depth=48"):
        sigprop.theory(depth=3)
    with pytest.raises(TypeError, match="spec must be"):
        sigprop.theory(3.0)  # type: ignore[arg-type]
    with pytest.raises(sigprop.ConfigError, match="grad_var_se|nonsense"):
        sigprop.theory(stack_depth=2)["nonsense"]


def test_cuda_backend_without_device_is_a_cuda_error() -> None:
    try:
        sigprop.simulate(SMALL, samples=1, backend="cuda")
    except sigprop.CudaError as e:
        assert "cuda" in str(e).lower()
    # with a CUDA build and a device the call simply succeeds


def test_cuda_plugin_path_is_named_when_it_cannot_be_loaded(tmp_path: pathlib.Path) -> None:
    bogus = tmp_path / "no_such_plugin.so"
    with pytest.raises(sigprop.CudaError, match="no_such_plugin.so"):
        sigprop.simulate(SMALL, samples=1, backend="cuda", cuda_plugin=str(bogus))


# ------------------------------------------------------------------------------------------------
# Threads: the GIL is released while an engine runs


def test_two_threads_overlap_in_time() -> None:
    spans: Dict[int, List[float]] = {0: [], 1: []}

    def run(i: int) -> None:
        def progress(done: float, total: float, stage: str) -> bool:
            spans[i].append(time.perf_counter())
            return True

        sigprop.simulate(stack_depth=6, stack_width=64, stack_tokens=8, samples=24, seed=i, progress=progress)

    ts = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    (a0, a1), (b0, b1) = (min(spans[0]), max(spans[0])), (min(spans[1]), max(spans[1]))
    # Each engine reports progress while the other runs: their intervals overlap. With the GIL
    # held through a run, the second could not report anything before the first returned.
    assert max(a0, b0) < min(a1, b1), (spans[0], spans[1])


def test_theory_finite_dh() -> None:
    """finite_dh=True samples the 1/dh logits at the spec's d_h (docs/theory.md): _se columns
    appear and the values leave the uniform limit; a non-bool is refused, naming the setting."""
    spec = dict(SMALL, **{"stack.qk_scale": "1/dh", "init.sigma_qk2": 2.0})
    lim = sigprop.theory(spec)
    fin = sigprop.theory(spec, finite_dh=True, attn_samples=128)
    assert "grad_var_se" not in lim and "grad_var_se" in fin
    assert fin.settings["attention"]["finite_dh"] is True
    assert not np.array_equal(lim["grad_var"], fin["grad_var"])
    with pytest.raises(sigprop.Error, match="finite_dh"):
        sigprop.theory(spec, finite_dh=1)


def test_theory_many_equals_single_calls() -> None:
    specs: List[sigprop.SpecLike] = [
        {"stack.depth": d, "stack.norm": n} for d in (2, 5, 9) for n in ("pre", "post", "none")
    ]
    many = sigprop.theory_many(specs, threads=3, seed=7)
    assert len(many) == len(specs)
    for spec, p in zip(specs, many):
        q = sigprop.theory(spec, seed=7)
        assert p.to_json() == q.to_json()


# ------------------------------------------------------------------------------------------------
# Progress and cancellation


def test_progress_callback_and_cancel() -> None:
    seen: List[Tuple[float, float, str]] = []

    def record(done: float, total: float, stage: str) -> None:
        seen.append((done, total, stage))

    sigprop.theory(stack_depth=4, progress=record)
    assert seen and all(t == 1.0 for _, t, _ in seen) and seen[-1][0] == 1.0
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert any("layer" in s for _, _, s in seen)

    calls = []

    def stop(done: float, total: float, stage: str) -> bool:
        calls.append(done)
        return len(calls) < 3

    with pytest.raises(sigprop.CancelledError, match="cancelled"):
        sigprop.simulate(SMALL, samples=20, progress=stop)
    assert len(calls) == 3

    def boom(done: float, total: float, stage: str) -> bool:
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        sigprop.theory(stack_depth=4, progress=boom)

    def boom_at_the_end(done: float, total: float, stage: str) -> bool:
        if stage == "done":  # theory's last progress point, after every layer
            raise RuntimeError("at the end")
        return True

    with pytest.raises(RuntimeError, match="at the end"):
        sigprop.theory(stack_depth=4, progress=boom_at_the_end)


@pytest.fixture
def sigint_handled() -> Iterator[None]:
    """Python's own SIGINT handler, as in an interactive session: a process started in the
    background by a non-interactive shell inherits SIGINT ignored, and then
    _thread.interrupt_main() does nothing (Python's documentation), so these tests would test
    the launcher rather than sigprop."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.usefixtures("sigint_handled")
def test_keyboard_interrupt_from_callback() -> None:
    calls = []

    def interrupt(done: float, total: float, stage: str) -> bool:
        calls.append(done)
        if len(calls) == 2:
            _thread.interrupt_main()  # as Ctrl-C
        return True

    with pytest.raises(KeyboardInterrupt):
        sigprop.simulate(SMALL, samples=50, progress=interrupt)
    assert len(calls) == 2  # the engine stopped at its next check


@pytest.mark.usefixtures("sigint_handled")
@pytest.mark.parametrize("threads", [1, 2])
def test_keyboard_interrupt_without_callback(threads: int) -> None:
    spec = {"stack.depth": 6, "stack.width": 64, "stack.tokens": 8}
    t = time.perf_counter()
    sigprop.simulate(spec, samples=8, threads=threads)
    per_sample = (time.perf_counter() - t) / 8
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sigprop.simulate(spec, samples=2000, threads=threads)  # minutes if not cancelled
    timer.join()
    assert time.perf_counter() - t < 0.05 + 200 * per_sample + 1.0


@pytest.mark.usefixtures("sigint_handled")
def test_keyboard_interrupt_stops_theory_many() -> None:
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        sigprop.theory_many([{"stack.depth": 100}] * 400, threads=2)  # about a minute uncancelled
    timer.join()
    assert time.perf_counter() - t < 5.0


# ------------------------------------------------------------------------------------------------
# Equal to the command line's JSON


def test_theory_equals_cli(tmp_path: pathlib.Path) -> None:
    doc = cli_json(tmp_path, ["theory", "--set", "stack.depth=6", "--set", "stack.norm=post", "--seed", "3"])
    p = sigprop.theory(stack_depth=6, stack_norm="post", seed=3)
    assert p.metrics == doc["columns"]
    for m in p.metrics:
        np.testing.assert_allclose(p[m], column(doc, m), rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=m)
    assert p.spec == doc["spec"]


def test_simulate_equals_cli_bitwise(tmp_path: pathlib.Path) -> None:
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    doc = cli_json(tmp_path, ["simulate", *sets, "--samples", "5", "--seed", "11", "--backend", "cpu"])
    p = sigprop.simulate(SMALL, samples=5, seed=11, backend="cpu", threads=2)
    assert p.metrics == doc["columns"]
    for m in p.metrics:
        a, b = p[m], column(doc, m)
        assert np.array_equal(a, b, equal_nan=True), m
    assert json.loads(p.to_json()) == doc


# ------------------------------------------------------------------------------------------------
# The example script, and its type check against the stubs


def test_depth_curves_example(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "curves.png"
    script = ROOT / "examples" / "python" / "depth_curves.py"
    args = ["--depth", "4", "--width", "16", "--tokens", "4", "--samples", "2", "--threads", "1", "--out", str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, cwd=tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stubs_with_mypy() -> None:
    mypy: Optional[Any]
    try:
        from mypy import api as mypy
    except ImportError:
        mypy = None
    if mypy is None:
        pytest.skip("mypy is not installed (scripts/setup.sh installs it)")
    script = str(ROOT / "examples" / "python" / "depth_curves.py")
    stdout, stderr, rc = mypy.run(["--strict", "--no-incremental", script])
    assert rc == 0, stdout + stderr


# ------------------------------------------------------------------------------------------------
# validate and report (equal to `sigprop validate --json` and `sigprop report`)

REPORT_TOML = """[report]
title = "tiny"
[stack]
tokens = 4
width = 16
heads = 2
qk_scale = "1/dh"
[sweep]
stack.depth = [2, 3]
[engines.theory]
[engines.simulate]
samples = 2
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Tuple[pathlib.Path, pathlib.Path]:
    """A tiny sigprop checkpoint (one training step, made by the command line) and a corpus."""
    d = tmp_path_factory.mktemp("ckpt")
    words = "the lord said unto moses and he went up into the mountain of god".split()
    corpus = d / "corpus.txt"
    corpus.write_text(" ".join(words[(7 * i) % len(words)] for i in range(3000)))
    sets = ["stack.depth=2", "stack.width=16", "stack.heads=2", "stack.tokens=8"]
    args = [a for s in sets for a in ("--set", s)]
    subprocess.run(
        [cli(), "train", *args, "--corpus", str(corpus), "--out", str(d / "run"), "--steps", "1", "--batch", "2",
         "--val-batches", "1", "--checkpoint-every", "0", "-q"],
        check=True,
    )
    return d / "run" / "final.safetensors", corpus


def test_validate_equals_cli(checkpoint: Tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path) -> None:
    ckpt, corpus = checkpoint
    stages: List[str] = []

    def progress(done: float, total: float, stage: str) -> bool:
        stages.append(stage)
        return True

    v = sigprop.validate(ckpt, corpus, tokens=256, ensemble=2, samples=2, seed=3, progress=progress)
    doc = cli_json(tmp_path, ["validate", "--checkpoint", str(ckpt), "--corpus", str(corpus), "--tokens", "256",
                              "--ensemble", "2", "--samples", "2", "--seed", "3"])
    assert v.to_dict() == doc and stages
    assert v.measured.engine == "measured" and len(v.sequence_loss) == 256 // 8
    assert not v.sequence_loss.flags.writeable
    assert v.theory is not None and v.simulate is not None and v.init_ensemble is not None
    assert v.model["model"]["vocab"] == 256 and v.agreement and v.summary and v.notes
    without = sigprop.validate(ckpt, corpus, tokens=256, ensemble=0, samples=0, theory=False)
    assert without.theory is None and without.simulate is None and without.init_ensemble is None


def test_validate_bad_input(
    checkpoint: Tuple[pathlib.Path, pathlib.Path], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, corpus = checkpoint
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sigprop.ConfigError, match="corpus"):
        sigprop.validate(ckpt, tmp_path / "missing.txt")
    with pytest.raises(sigprop.ConfigError, match="tokens"):
        sigprop.validate(ckpt, corpus, tokens=0)
    with pytest.raises(sigprop.CancelledError):
        sigprop.validate(ckpt, corpus, tokens=256, ensemble=2, samples=2, progress=lambda d, t, s: False)
    assert list(tmp_path.iterdir()) == []


def test_report_equals_cli(tmp_path: pathlib.Path) -> None:
    (tmp_path / "rep.toml").write_text(REPORT_TOML)
    r = sigprop.report(tmp_path / "rep.toml", out=tmp_path / "py", figures=False)
    assert (r.cells, r.jobs, r.jobs_reused) == (2, 4, 0) and r.figures_drawn == []
    assert pathlib.Path(r.index_html).is_file() and pathlib.Path(r.report_md).is_file()
    again = sigprop.report(REPORT_TOML, out=tmp_path / "py", figures=False)  # the text: same jobs
    assert again.jobs_reused == 4
    subprocess.run([cli(), "report", "rep.toml", "--out", "cli", "--no-figures", "-q"], check=True, cwd=tmp_path)
    py = sorted(p.relative_to(tmp_path / "py") for p in (tmp_path / "py").rglob("*") if p.is_file())
    assert py == sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    for rel in py:
        # versions.json names the build's MPI support, which the library lacks; a job's .timing.json
        # records how long it took
        if rel.name != "versions.json" and not rel.name.endswith(".timing.json"):
            assert (tmp_path / "py" / rel).read_bytes() == (tmp_path / "cli" / rel).read_bytes(), rel
    assert sigprop.default_report_config().startswith("#")
    # snapshot=True runs nothing and renders what is done into out/snapshot/
    snap = sigprop.report(REPORT_TOML, out=tmp_path / "py", figures=False, snapshot=True)
    assert (snap.cells, snap.jobs, snap.jobs_reused) == (2, 4, 4)
    assert pathlib.Path(snap.out) == tmp_path / "py" / "snapshot"
    assert (tmp_path / "py" / "snapshot" / "profiles.csv").read_bytes() == (tmp_path / "py" / "profiles.csv").read_bytes()


def test_report_bad_config_and_cancel(tmp_path: pathlib.Path) -> None:
    with pytest.raises(sigprop.ConfigError, match="stack.dept"):
        sigprop.report("[sweep]\nstack.dept = [1]\n", out=tmp_path / "bad")
    with pytest.raises(sigprop.IoError):
        sigprop.report(tmp_path / "none.toml", out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(sigprop.CancelledError):
        sigprop.report(REPORT_TOML, out=tmp_path / "cancelled", figures=False, progress=lambda d, t, s: False)
    assert not (tmp_path / "cancelled" / "index.html").exists()
