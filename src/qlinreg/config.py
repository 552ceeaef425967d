"""One run's configuration: the fields shared by ``qlinreg run`` flags and TOML config files.

:class:`RunConfig` checks every field's type and value at construction, before anything is
compiled, and builds the library objects (:class:`~qlinreg.problem.Problem`,
:class:`~qlinreg.quantize.Scheme`, :class:`~qlinreg.sgd.SGDConfig`) and the run's
:class:`~qlinreg.pipeline.RunSpec`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from qlinreg.algorithm import SGDConfig, geometric_checkpoints, positive_int
from qlinreg.pipeline import RunSpec
from qlinreg.problem import Problem, make_problem
from qlinreg.quantize import Scheme, parse_quantizer
from qlinreg.sketch import Sketch

__all__ = ["RunConfig", "load_toml", "run_options"]


_KINDS = {"int": "an integer", "float": "a number", "str": "text", "bool": "true or false"}


def _typed(name: str, kind: str, value):
    """``value`` checked against the field's type: no booleans for numbers, no strings for
    anything but text, integers accepted for floats (and made floats, so that ``lr = 1`` and
    ``lr = 1.0`` are the same configuration)."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        hint = " (a quoted string; write it without quotes)" if isinstance(value, str) else ""
        raise ValueError(f"{name} must be {_KINDS[kind]}, got {value!r}{hint}")
    return float(value) if kind == "float" else value


@dataclass(frozen=True)
class RunConfig:
    """Every parameter of one run, as plain values (see ``qlinreg run --help``).

    ``trials = 0`` with ``exact`` or ``bound`` computes the theory only. A step-size schedule
    is ``schedule = ["STEP:LR", …]`` (γ = LR from update STEP on) or ``step_decay = FACTOR``
    (γ times FACTOR every ``decay_every`` steps; 0: ⌈N/log₂ N⌉).

    The problem is synthetic (``dim``, ``spectrum``, ``decay``, ``w_star``, ``source``,
    ``noise``), a given Gaussian (``covariance`` = a ``.npy`` file of ``H``; ``w_star`` a
    ``.npy`` file or a kind; ``noise``), or fitted to data (``data`` = a ``.npz``/``.csv``/
    ``.parquet`` file or ``sklearn:NAME``, with ``target``, ``features`` = ``relu:D`` /
    ``rff:D``, ``standardize``, ``center``, ``ridge``; :meth:`qlinreg.Problem.from_data`) and
    then sampled as that Gaussian or, with ``data_mode = "empirical"``, by resampling the
    data's rows. With a covariance or data, ``d`` is theirs (``dim`` is not used).

    The follow-up's sketched model (:mod:`qlinreg.sketch`): ``sketch`` = ``M`` (a Gaussian
    ``M × d`` sketch, entries ``N(0, 1/M)`` from ``sketch_seed``) or a ``.npy`` file of ``S``;
    ``sketch_quantize`` = ``"after"`` (``Q_d(Sx)``) or ``"before"`` (``S·Q_d(x)``). These are
    problem options: every command that builds a problem from a config reads them
    (:meth:`sketch_of`).
    """

    dim: int = 200
    spectrum: str = "power_law"
    decay: float = 2.0
    w_star: str = "ones"
    source: float = 1.0
    noise: float = 1.0
    batch: int = 1
    lr: float = 0.1
    steps: int = 10_000
    average: str = "polyak"
    trials: int = 100
    seed: int = 0
    dtype: str = "float32"
    literal: bool = False
    checkpoints_per_decade: int = 10
    quant: tuple[str, ...] = field(default_factory=tuple)
    storage: str = "none"
    exact: bool = False
    surrogate: bool = False
    bound: bool = False
    schedule: tuple[str, ...] = field(default_factory=tuple)
    step_decay: float = 0.0
    decay_every: int = 0
    data: str = ""
    target: str = ""
    features: str = ""
    data_mode: str = "gaussian"
    standardize: bool = True
    center: bool = False
    ridge: float = 0.0
    covariance: str = ""
    sketch: str = ""
    sketch_seed: int = 0
    sketch_quantize: str = "after"

    def __post_init__(self) -> None:
        if isinstance(self.sketch, int) and not isinstance(self.sketch, bool):
            object.__setattr__(self, "sketch", str(self.sketch))  # TOML: sketch = 64
        quant = (self.quant,) if isinstance(self.quant, str) else self.quant
        if not isinstance(quant, list | tuple) or not all(isinstance(q, str) for q in quant):
            raise ValueError(f"quant must be a list of 'ROLE=KIND:EPS' strings, got {quant!r}")
        object.__setattr__(self, "quant", tuple(quant))
        object.__setattr__(self, "schedule", tuple(_schedule_text(e) for e in self.schedule))
        for f in fields(self):
            if f.type in _KINDS:
                object.__setattr__(self, f.name, _typed(f.name, f.type, getattr(self, f.name)))
        positive_int("checkpoints_per_decade", self.checkpoints_per_decade)
        self.spec()  # builds and validates everything: any invalid value raises, naming it

    def problem(self) -> Problem:
        if self.data_mode not in DATA_MODES:
            raise ValueError(f"data_mode must be 'gaussian' or 'empirical', got {self.data_mode!r}")
        if self.data and self.covariance:
            raise ValueError("give either data or covariance, not both")
        if self.data_mode == "empirical" and not self.data:
            raise ValueError("data_mode 'empirical' resamples a data set: give data (a file)")
        if not self.data and (self.target or self.features):
            raise ValueError(f"{'target' if self.target else 'features'} needs data (a file)")
        if self.data:
            return _data_problem(
                self.data, _stamp(self.data), self.target or None, self.features or None,
                self.standardize, self.center, self.ridge, self.data_mode, self.seed,
            )  # fmt: skip
        if self.covariance:
            return _covariance_problem(
                self.covariance, _stamp(self.covariance), self.w_star, _stamp(self.w_star),
                self.source, self.noise, self.seed,
            )  # fmt: skip
        if self.w_star not in W_STAR_KINDS:
            raise ValueError(
                f"w_star must be one of {', '.join(W_STAR_KINDS)} (a .npy file needs "
                f"covariance), got {self.w_star!r}"
            )
        return make_problem(
            self.dim,
            spectrum=self.spectrum,
            decay=self.decay,
            w_star=self.w_star,
            source=self.source,
            noise=self.noise,
            seed=self.seed,
        )

    def sketch_of(self, problem: Problem) -> Sketch | None:
        """The sketch for ``problem`` (``None`` without one)."""
        if not self.sketch:
            if self.sketch_quantize != "after" or self.sketch_seed:
                raise ValueError("sketch_quantize and sketch_seed need sketch (M or a .npy file)")
            return None
        if self.sketch.isdigit():
            return Sketch.gaussian(int(self.sketch), problem.d, self.sketch_seed,
                                   self.sketch_quantize)  # fmt: skip
        if Path(self.sketch).suffix != ".npy":
            raise ValueError(
                f"sketch must be a number of rows M or a .npy file of S (M × d), got "
                f"{self.sketch!r}"
            )
        if self.sketch_seed:
            raise ValueError("sketch_seed applies to a Gaussian sketch (sketch = M), not a file")
        return Sketch.load(self.sketch, self.sketch_quantize)

    def scheme(self) -> Scheme:
        return Scheme.parse(self.quant)

    def sgd(self) -> SGDConfig:
        kw = {"batch": self.batch, "average": self.average}
        kw["storage"] = parse_quantizer(self.storage)
        if self.step_decay:
            if self.schedule:
                raise ValueError("give either schedule or step_decay, not both")
            every = positive_int("decay_every", self.decay_every, low=0) or None
            return SGDConfig.step_decay(self.lr, self.steps, self.step_decay, every, **kw)
        if self.decay_every:
            raise ValueError("decay_every needs step_decay (the factor γ is multiplied by)")
        schedule = tuple(_schedule_pair(e) for e in self.schedule)
        return SGDConfig(lr=self.lr, steps=self.steps, schedule=schedule, **kw)

    def checkpoints(self) -> np.ndarray:
        return geometric_checkpoints(self.steps, self.checkpoints_per_decade)

    def spec(self, *, seed: int | None = None) -> RunSpec:
        """The :class:`~qlinreg.pipeline.RunSpec` of this configuration (``seed`` overrides the
        simulation seed, as sweeps do; ``w*`` keeps ``self.seed``)."""
        problem = self.problem()
        return RunSpec(
            problem, self.scheme(), self.sgd(), trials=self.trials,
            seed=self.seed if seed is None else seed, checkpoints=self.checkpoints(),
            dtype=self.dtype, literal=self.literal, exact=self.exact, surrogate=self.surrogate,
            bound=self.bound, sketch=self.sketch_of(problem),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quant"], d["schedule"] = list(self.quant), list(self.schedule)
        return d

    def digest(self) -> str:
        """Stable hash of the full config (keys sorted, numbers normalised) and of the contents
        of the files it names (data, covariance, w*), for result stores and seeds."""
        values = self.to_dict()
        for key in ("data", "covariance", "w_star", "sketch"):
            if Path(values[key]).suffix and Path(values[key]).is_file():
                values[f"{key}_sha256"] = _file_hash(values[key], *_stamp(values[key]))
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a mapping, rejecting unknown keys with the list of allowed ones."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"unknown {source} key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**data)


DATA_MODES = ("gaussian", "empirical")
W_STAR_KINDS = ("ones", "power_law", "gaussian")


def _stamp(path: str) -> tuple[float, int]:
    """``(mtime, size)`` of a file (zeros if it is not one): the cache key of its contents."""
    try:
        st = Path(path).stat()
    except (OSError, ValueError):
        return 0.0, 0
    return st.st_mtime, st.st_size


@functools.lru_cache(maxsize=32)
def _file_hash(path: str, mtime: float, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def _data_problem(source, stamp, target, features, standardize, center, ridge, mode, seed):
    """The fitted problem of a data set (cached: a config is validated, then run)."""
    from qlinreg.data import load_data

    ds = load_data(
        source, target=target, features=features, standardize_columns=standardize, seed=seed
    )
    return Problem.from_data(
        ds.X, ds.y, center=center, ridge=ridge, empirical=mode == "empirical", name=ds.name
    )


def _load_npy(name: str, path: str) -> np.ndarray:
    p = Path(path)
    if p.suffix != ".npy":
        raise ValueError(f"{name} file {path!r} must be a .npy array (numpy.save)")
    if not p.is_file():
        raise ValueError(f"{name} file {path!r} does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name} file {path!r} cannot be read as a .npy array: {exc}") from None


@functools.lru_cache(maxsize=8)
def _covariance_problem(path, stamp, w_star, w_stamp, source, noise, seed):
    """The Gaussian with the covariance in ``path`` (cached like :func:`_data_problem`)."""
    H = _load_npy("covariance", path)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"covariance file {path!r} must hold a square d × d array, got {H.shape}")
    d = H.shape[0]
    if w_star in W_STAR_KINDS:
        ws = make_problem(d, w_star=w_star, source=source, seed=seed).w_star
    else:
        ws = _load_npy("w_star", w_star).reshape(-1)
        if ws.size != d:
            raise ValueError(f"w_star file {w_star!r} must hold d = {d} numbers, got {ws.size}")
    try:
        return Problem.from_covariance(H, ws, noise, name=Path(path).name)
    except ValueError as exc:
        raise ValueError(f"covariance file {path!r}: {exc}") from None


def _schedule_text(entry) -> str:
    """A schedule entry ``"STEP:LR"`` or ``[STEP, LR]`` as the text ``"STEP:LR"``."""
    if isinstance(entry, list | tuple) and len(entry) == 2:
        entry = f"{entry[0]}:{entry[1]}"
    if not isinstance(entry, str) or entry.count(":") != 1:
        raise ValueError(f"schedule entries must be 'STEP:LR' (e.g. '5001:0.05'), got {entry!r}")
    return entry.strip()


def _schedule_pair(text: str) -> tuple[int, float]:
    step, lr = text.split(":")
    try:
        return int(step), float(lr)
    except ValueError:
        raise ValueError(
            f"schedule entry {text!r}: STEP must be an integer and LR a number"
        ) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (validated later by :class:`RunConfig`)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"config file {str(p)!r} is a folder, not a TOML file")
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(p)!r} is not a text (UTF-8 TOML) file") from None
    except OSError as exc:
        raise ValueError(f"config file {str(p)!r} cannot be read: {exc.strerror}") from None


def run_options(
    config: str | Path | None, options: dict[str, Any], default_out: str = "results/run"
) -> tuple[RunConfig, Path]:
    """A run's configuration and output folder from a TOML file (its keys: the
    :class:`RunConfig` fields and ``out``) overridden by command-line ``options`` (``None``
    values are not given)."""
    values = load_toml(config) if config is not None else {}
    out = values.pop("out", None)
    if out is not None and not isinstance(out, str):
        raise ValueError(f"out must be a folder path (text), got {out!r}")
    given = {k: v for k, v in options.items() if v is not None}
    out = given.pop("out", None) or out or default_out
    values.update(given)
    return RunConfig.from_dict(values, source="config" if config else "option"), Path(out)
