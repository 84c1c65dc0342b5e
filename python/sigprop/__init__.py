"""sigprop: signal propagation in random transformer stacks, from Python.

The engines of the sigprop C++ library (infinite-width theory, finite-width Monte Carlo,
Jacobian spectra, depth-limit ODEs) called in-process, returning :class:`Profile` objects
whose columns are NumPy arrays. See docs/python.md.

A spec is given as ``None`` (the built-in default), a dict (``{"stack": {"depth": 48}}`` or
``{"stack.depth": 48}``), TOML text, a path to a TOML file, or a :class:`Spec`; keyword
overrides ``table_key=value`` (``stack_depth=48``, ``init_sigma_w2=2.0``) are applied after it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = [
    "CancelledError",
    "ConfigError",
    "CudaError",
    "Error",
    "IoError",
    "NumericalError",
    "Profile",
    "Progress",
    "ReportResult",
    "Spec",
    "SpecLike",
    "Validation",
    "default_report_config",
    "default_spec",
    "ode",
    "report",
    "resolve_spec",
    "simulate",
    "spectrum",
    "theory",
    "theory_many",
    "validate",
    "version",
]


class Error(Exception):
    """Base of every exception the sigprop engines raise."""


class ConfigError(Error, ValueError):
    """A spec key or setting that is unknown, mistyped or out of range (the message names it)."""


class IoError(Error, OSError):
    """A file that cannot be read or parsed."""


class NumericalError(Error):
    """A computation that cannot proceed."""


class CudaError(Error):
    """A CUDA failure, or backend "cuda" where no device (or no CUDA build) exists."""


class CancelledError(Error):
    """A run stopped because its progress callback returned False."""


_core._set_exceptions(Error, ConfigError, IoError, NumericalError, CudaError, CancelledError)

Spec = _core.Spec
#: What every entry point accepts as its spec.
SpecLike = Union[None, str, "os.PathLike[str]", Mapping[str, Any], _core.Spec]
#: ``progress(done, total, stage)``: ``done`` of ``total`` (always 1.0) finished, ``stage`` a short
#: description ("forward layer 3", "sample 40/64"). Returning False cancels the run.
Progress = Callable[[float, float, str], Optional[bool]]

#: The library's version, "major.minor.patch".
version: str = _core.version()

_TABLES = ("stack", "init", "input")


def _toml_value(key: str, v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string
    raise ConfigError(f"spec key '{key}': a value of type {type(v).__name__} is not a TOML scalar")


def _flatten(spec: Mapping[str, Any]) -> List[str]:
    sets: List[str] = []
    for table, value in spec.items():
        if isinstance(value, Mapping):
            for key, v in value.items():
                sets.append(f"{table}.{key}={_toml_value(f'{table}.{key}', v)}")
        else:
            sets.append(f"{table}={_toml_value(str(table), value)}")
    return sets


def _keyword_overrides(func: str, overrides: Mapping[str, Any]) -> List[str]:
    sets: List[str] = []
    for name, v in overrides.items():
        table, _, key = name.partition("_")
        if table not in _TABLES or not key:
            raise TypeError(
                f"{func}() got an unexpected keyword argument '{name}' (spec overrides are "
                "written table_key=value: stack_depth=48, init_sigma_w2=2.0, input_rho0=0.5)"
            )
        sets.append(f"{table}.{key}={_toml_value(f'{table}.{key}', v)}")
    return sets


def resolve_spec(spec: SpecLike = None, **overrides: Any) -> Spec:
    """The validated :class:`Spec` for ``spec`` with ``table_key=value`` overrides applied.

    ``spec``: None (the default spec), a dict (nested tables or dotted keys), TOML text (a str
    holding a newline or ``=``), a path to a TOML file (any other str, or an os.PathLike), or a
    Spec. Raises ConfigError naming the key, IoError for an unreadable file."""
    sets: List[str] = []
    if spec is None:
        s = _core.default_spec()
    elif isinstance(spec, _core.Spec):
        s = spec
    elif isinstance(spec, os.PathLike):
        s = _core.spec_from_file(os.fspath(spec))
    elif isinstance(spec, str):
        if "\n" in spec or "=" in spec:
            s = _core.spec_from_toml(spec, "<spec>")
        else:
            s = _core.spec_from_file(spec)
    elif isinstance(spec, Mapping):
        s = _core.default_spec()
        sets = _flatten(spec)
    else:
        raise TypeError(
            f"spec must be None, a dict, TOML text, a path or a sigprop.Spec, not {type(spec).__name__}"
        )
    sets += _keyword_overrides("resolve_spec", overrides)
    return _core.apply_overrides(s, sets) if sets else s


def default_spec() -> Dict[str, Any]:
    """The built-in default spec as a dict {"stack": {...}, "init": {...}, "input": {...}}."""
    result: Dict[str, Any] = json.loads(_core.default_spec().to_json())
    return result


class Profile:
    """One engine's result: a row per layer (per output time for the clustering ODE) and a
    read-only NumPy array per metric. ``p["grad_var"]``, ``p.se("grad_var")``, ``p.layers``."""

    __slots__ = ("_p",)

    def __init__(self, core: _core.Profile) -> None:
        self._p = core

    def __getitem__(self, metric: str) -> npt.NDArray[np.float64]:
        """The column ``metric`` (NaN where undefined); ConfigError naming the available ones."""
        return self._p.values(metric)

    def __contains__(self, metric: object) -> bool:
        return isinstance(metric, str) and self._p.has(metric)

    def __len__(self) -> int:
        return self._p.rows

    def __repr__(self) -> str:
        return f"<sigprop.Profile {self.engine}: {self._p.rows} rows, {len(self.metrics)} metrics>"

    def se(self, metric: str) -> npt.NDArray[np.float64]:
        """The standard error of ``metric`` (the column ``<metric>_se``)."""
        if not self._p.has(metric + "_se"):
            raise ConfigError(
                f"metric '{metric}' has no standard error in this {self.engine} profile "
                f"(columns: {', '.join(self.metrics)})"
            )
        return self._p.values(metric + "_se")

    def keys(self) -> List[str]:
        return list(self._p.metrics)

    @property
    def engine(self) -> str:
        """"theory", "simulate", "continuum", "clustering", "shaped-sde", "spectrum-theory" or
        "spectrum-simulate"."""
        return self._p.engine

    @property
    def version(self) -> str:
        return self._p.version

    @property
    def layers(self) -> npt.NDArray[np.int64]:
        """The row indices 0..len(self)-1 (layers 0..L for theory and simulate)."""
        return np.arange(self._p.rows, dtype=np.int64)

    @property
    def metrics(self) -> List[str]:
        """Every column in order, ``_se`` columns included."""
        return list(self._p.metrics)

    @property
    def spec(self) -> Dict[str, Any]:
        """The resolved spec the engine ran, as a dict (pass it back as a spec)."""
        result: Dict[str, Any] = json.loads(self._p.spec_json())
        return result

    @property
    def settings(self) -> Dict[str, Any]:
        """Engine settings (samples, seed, backend, ...)."""
        result: Dict[str, Any] = json.loads(self._p.settings_json())
        return result

    @property
    def extras(self) -> Dict[str, Any]:
        """Engine-specific summaries (fixed points, spectrum density, ...)."""
        result: Dict[str, Any] = json.loads(self._p.extras_json())
        return result

    @property
    def warnings(self) -> List[str]:
        return list(self._p.warnings)

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The profile as ``sigprop <engine> --json`` writes it (indent None: one line)."""
        return self._p.to_json(-1 if indent is None else indent)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document as a dict (undefined values are None)."""
        result: Dict[str, Any] = json.loads(self._p.to_json(-1))
        return result

    def to_csv(self) -> str:
        """As ``sigprop <engine> --csv`` writes it."""
        return self._p.to_csv()

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one column per metric, indexed by layer. Needs pandas."""
        try:
            import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as e:
            raise ImportError("Profile.to_pandas() needs pandas: pip install pandas") from e
        df = pd.DataFrame({m: self._p.values(m) for m in self._p.metrics}, index=self.layers)
        df.index.name = "layer"
        return df


def _settings(**kw: Any) -> Dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def theory(
    spec: SpecLike = None,
    *,
    attn_samples: Optional[int] = None,
    seed: Optional[int] = None,
    error_batches: Optional[int] = None,
    attn_method: Optional[str] = None,
    quad_order: Optional[int] = None,
    finite_dh: Optional[bool] = None,
    progress: Optional[Progress] = None,
    **overrides: Any,
) -> Profile:
    """Every metric in the infinite-width limit, layers 0..L (docs/theory.md); equal to
    ``sigprop theory --json``. Unset settings take the engine's defaults."""
    s = resolve_spec(spec, **overrides)
    st = _settings(
        attn_samples=attn_samples,
        seed=seed,
        error_batches=error_batches,
        attn_method=attn_method,
        quad_order=quad_order,
        finite_dh=finite_dh,
    )
    return Profile(_core.theory(s, st, progress))


def simulate(
    spec: SpecLike = None,
    *,
    samples: Optional[int] = None,
    seed: Optional[int] = None,
    backend: Optional[str] = None,
    precision: Optional[str] = None,
    threads: Optional[int] = None,
    weights_sampling: Optional[str] = None,
    cuda_plugin: Optional[str] = None,
    input_kernel: Optional[str] = None,
    progress: Optional[Progress] = None,
    **overrides: Any,
) -> Profile:
    """Ensemble mean and standard error of every metric over ``samples`` random stacks
    (docs/simulate.md; defaults: 64 samples, seed 0, backend "cpu", 1 thread, 0 = every
    hardware thread). Bitwise equal to ``sigprop simulate --json`` for the same seed.
    ``cuda_plugin``: path of libsigprop_cuda.so for backend "cuda" (default: searched next
    to the library, docs/cuda.md). ``input_kernel``: "sampled" (default, MODEL.md) or
    "exact" (every sample's input has exactly the kernel q0 ((1-rho0) I + rho0 11^T);
    backends "cpu" and "reference", width >= tokens + 1)."""
    s = resolve_spec(spec, **overrides)
    st = _settings(
        samples=samples,
        seed=seed,
        backend=backend,
        precision=precision,
        threads=threads,
        weights_sampling=weights_sampling,
        cuda_plugin=cuda_plugin,
        input_kernel=input_kernel,
    )
    return Profile(_core.simulate(s, st, progress))


def ode(
    spec: SpecLike = None,
    *,
    kind: str = "continuum",
    abs_tol: Optional[float] = None,
    rel_tol: Optional[float] = None,
    max_evals: Optional[int] = None,
    seed: Optional[int] = None,
    attn_samples: Optional[int] = None,
    steps: Optional[int] = None,
    quad_order: Optional[int] = None,
    variant: Optional[str] = None,
    beta: Optional[float] = None,
    t_end: Optional[float] = None,
    points: Optional[int] = None,
    equiangular: Optional[bool] = None,
    model: Optional[str] = None,
    shape_c: Optional[float] = None,
    gamma2: Optional[float] = None,
    tau0: Optional[float] = None,
    key_dim: Optional[int] = None,
    paths: Optional[int] = None,
    samples: Optional[int] = None,
    substeps: Optional[int] = None,
    progress: Optional[Progress] = None,
    **overrides: Any,
) -> Profile:
    """Depth limits (docs/ode.md): ``kind`` "continuum", "clustering" or "shaped-sde", as
    ``sigprop ode --kind``."""
    s = resolve_spec(spec, **overrides)
    st = _settings(
        kind=kind,
        abs_tol=abs_tol,
        rel_tol=rel_tol,
        max_evals=max_evals,
        seed=seed,
        attn_samples=attn_samples,
        steps=steps,
        quad_order=quad_order,
        variant=variant,
        beta=beta,
        t_end=t_end,
        points=points,
        equiangular=equiangular,
        model=model,
        shape_c=shape_c,
        gamma2=gamma2,
        tau0=tau0,
        key_dim=key_dim,
        paths=paths,
        samples=samples,
        substeps=substeps,
    )
    return Profile(_core.ode(s, st, progress))


def spectrum(
    spec: SpecLike = None,
    *,
    engine: Optional[str] = None,
    grid_lo: Optional[float] = None,
    grid_hi: Optional[float] = None,
    grid_points: Optional[int] = None,
    panels: Optional[int] = None,
    samples: Optional[int] = None,
    seed: Optional[int] = None,
    map: Optional[str] = None,
    token: Optional[int] = None,
    jacobian_method: Optional[str] = None,
    threads: Optional[int] = None,
    progress: Optional[Progress] = None,
    **overrides: Any,
) -> Profile:
    """Singular values of the input-output Jacobian (docs/spectrum.md), ``engine`` "theory"
    (the default) or "simulate"; equal to ``sigprop spectrum --json``."""
    s = resolve_spec(spec, **overrides)
    st = _settings(
        engine=engine,
        grid_lo=grid_lo,
        grid_hi=grid_hi,
        grid_points=grid_points,
        panels=panels,
        samples=samples,
        seed=seed,
        map=map,
        token=token,
        jacobian_method=jacobian_method,
        threads=threads,
    )
    return Profile(_core.spectrum(s, st, progress))


def theory_many(
    specs: Iterable[SpecLike],
    *,
    threads: int = 0,
    attn_samples: Optional[int] = None,
    seed: Optional[int] = None,
    error_batches: Optional[int] = None,
    attn_method: Optional[str] = None,
    quad_order: Optional[int] = None,
    finite_dh: Optional[bool] = None,
) -> List[Profile]:
    """:func:`theory` for every spec, on ``threads`` C++ threads (0 = every hardware thread)
    with the GIL released; the results, in order, equal single calls. The first failing spec's
    error is raised (its message starts with ``specs[i]:``) and the other runs stop; Ctrl-C
    stops them all (KeyboardInterrupt)."""
    resolved: List[Spec] = []
    for i, s in enumerate(specs):
        try:
            resolved.append(resolve_spec(s))
        except Error as e:
            raise type(e)(f"specs[{i}]: {e}") from e
    st = _settings(
        attn_samples=attn_samples,
        seed=seed,
        error_batches=error_batches,
        attn_method=attn_method,
        quad_order=quad_order,
        finite_dh=finite_dh,
    )
    return [Profile(p) for p in _core.theory_many(resolved, st, threads)]


class Validation:
    """The result of :func:`validate`: the checkpoint's measured profile, the predictions that
    ran, the agreement table (docs/validate.md) and notes."""

    __slots__ = ("_v",)

    def __init__(self, core: _core.Validation) -> None:
        self._v = core

    def __repr__(self) -> str:
        ran = [n for n in ("theory", "simulate", "init_ensemble") if getattr(self, n) is not None]
        return f"<sigprop.Validation: measured {len(self.measured)} rows, predictions {', '.join(ran) or 'none'}>"

    @property
    def measured(self) -> Profile:
        """The checkpoint's metrics on the corpus (engine "measured"); extras hold loss and loss_se."""
        return Profile(self._v.measured())

    @property
    def theory(self) -> Optional[Profile]:
        """The theory prediction, None when it did not run (``notes`` says why)."""
        p = self._v.theory()
        return None if p is None else Profile(p)

    @property
    def simulate(self) -> Optional[Profile]:
        p = self._v.simulate()
        return None if p is None else Profile(p)

    @property
    def init_ensemble(self) -> Optional[Profile]:
        p = self._v.init_ensemble()
        return None if p is None else Profile(p)

    @property
    def model(self) -> Dict[str, Any]:
        """The model's configuration."""
        result: Dict[str, Any] = json.loads(self._v.model_json())
        return result

    @property
    def agreement(self) -> List[Dict[str, Any]]:
        """Per prediction, metric and layer: diff, z and z_pi."""
        result: List[Dict[str, Any]] = json.loads(self._v.agreement_json())
        return result

    @property
    def summary(self) -> List[Dict[str, Any]]:
        """Per prediction and metric: largest |z|, fraction within 3."""
        result: List[Dict[str, Any]] = json.loads(self._v.summary_json())
        return result

    @property
    def notes(self) -> List[str]:
        return list(self._v.notes)

    @property
    def sequence_loss(self) -> npt.NDArray[np.float64]:
        """Each measured sequence's mean cross-entropy (nats per token), in corpus order."""
        return self._v.sequence_loss()

    def to_json(self, indent: Optional[int] = 2) -> str:
        """Everything, as ``sigprop validate --json`` writes it (indent None: one line)."""
        return self._v.to_json(-1 if indent is None else indent)

    def to_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = json.loads(self._v.to_json(-1))
        return result


def validate(
    checkpoint: Union[str, "os.PathLike[str]"],
    corpus: Union[str, "os.PathLike[str]"],
    *,
    tokens: Optional[int] = None,
    seq_len: Optional[int] = None,
    ensemble: Optional[int] = None,
    samples: Optional[int] = None,
    theory: bool = True,
    seed: int = 0,
    threads: Optional[int] = None,
    precision: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> Validation:
    """Measures a checkpoint (a sigprop safetensors file or a Hugging Face folder) on a text
    corpus and runs the predictions, as ``sigprop validate`` (docs/validate.md; defaults: 8192
    tokens, the model's context, 32 ensemble models, 64 Monte Carlo samples, 1 thread, 0 = every
    hardware thread). Bad settings or unreadable files raise ConfigError naming the field."""
    st = _settings(
        checkpoint=os.fspath(checkpoint),
        corpus=os.fspath(corpus),
        tokens=tokens,
        seq_len=seq_len,
        ensemble=ensemble,
        samples=samples,
        theory=theory,
        seed=seed,
        threads=threads,
        precision=precision,
    )
    return Validation(_core.validate(st, progress))


@dataclasses.dataclass(frozen=True)
class ReportResult:
    """What :func:`report` wrote."""

    out: str  #: the output folder
    index_html: str
    report_md: str
    cells: int  #: grid points
    jobs: int  #: cells x engines
    jobs_reused: int  #: jobs already done in ``out``, not run again
    figures_drawn: List[str]  #: stems under figures/ with .svg and .png
    figures_missing: List[str]
    gnuplot_problem: str  #: why figures are missing ("" when none)


def default_report_config() -> str:
    """The built-in report config (``sigprop report --print-default``) as TOML."""
    return _core.default_report_config()


def report(
    config: Union[None, str, "os.PathLike[str]"] = None,
    *,
    out: Union[str, "os.PathLike[str]"],
    jobs: int = 1,
    threads: int = 1,
    gnuplot: Optional[str] = None,
    figures: bool = True,
    progress: Optional[Progress] = None,
    snapshot: bool = False,
) -> ReportResult:
    """Runs a report config's sweep and writes the report folder ``out``, as ``sigprop report``
    (docs/report.md). ``config``: None (the built-in default), TOML text (a str holding a newline
    or ``=``), or a path. Finished cells in ``out`` are reused; a cancelled run keeps them.
    ``snapshot=True`` runs nothing: it renders the cells done so far into ``out/snapshot/``
    (``sigprop report --snapshot``; safe while another process runs the report); the result's
    ``cells`` are those shown, ``jobs`` the jobs planned so far and ``jobs_reused`` those done."""
    st = _settings(out=os.fspath(out), jobs=jobs, threads=threads, gnuplot=gnuplot, figures=figures, snapshot=snapshot)
    if config is None:
        r = _core.report(None, _core.default_report_config(), st, progress)
    elif isinstance(config, str) and ("\n" in config or "=" in config):
        r = _core.report(None, config, st, progress)
    else:
        r = _core.report(os.fspath(config), None, st, progress)
    return ReportResult(**r)
