"""One run's configuration: the fields shared by ``qlinreg run`` flags and TOML config files.

:class:`RunConfig` validates every field at construction, before anything is compiled, and
builds the library objects (:class:`~qlinreg.problem.Problem`, :class:`~qlinreg.quantize.Scheme`,
:class:`~qlinreg.sgd.SGDConfig`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from qlinreg.algorithm import SGDConfig, geometric_checkpoints, positive_int
from qlinreg.problem import Problem, make_problem
from qlinreg.quantize import Scheme, parse_quantizer

__all__ = ["RunConfig", "load_toml"]


@dataclass(frozen=True)
class RunConfig:
    """Every parameter of one run, as plain values (see ``qlinreg run --help``)."""

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

    def __post_init__(self) -> None:
        quant = (self.quant,) if isinstance(self.quant, str) else self.quant
        if not all(isinstance(q, str) for q in quant):
            raise ValueError(f"quant must be a list of 'ROLE=KIND:EPS' strings, got {quant!r}")
        object.__setattr__(self, "quant", tuple(quant))
        # Build everything once: any invalid value raises here, naming its field.
        self.problem()
        self.scheme()
        self.sgd()
        positive_int("trials", self.trials)
        positive_int("seed", self.seed, low=0)
        positive_int("checkpoints_per_decade", self.checkpoints_per_decade)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not isinstance(self.literal, bool):
            raise ValueError(f"literal must be true or false, got {self.literal!r}")

    def problem(self) -> Problem:
        return make_problem(
            self.dim,
            spectrum=self.spectrum,
            decay=self.decay,
            w_star=self.w_star,
            source=self.source,
            noise=self.noise,
            seed=self.seed,
        )

    def scheme(self) -> Scheme:
        return Scheme.parse(self.quant)

    def sgd(self) -> SGDConfig:
        if not isinstance(self.storage, str):
            raise ValueError(
                f"storage must be a format name such as 'bf16:stochastic', got {self.storage!r}"
            )
        return SGDConfig(
            lr=self.lr,
            steps=self.steps,
            batch=self.batch,
            average=self.average,
            storage=parse_quantizer(self.storage),
        )

    def checkpoints(self) -> np.ndarray:
        return geometric_checkpoints(self.steps, self.checkpoints_per_decade)

    def simulate_kwargs(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "seed": self.seed,
            "checkpoints": self.checkpoints(),
            "dtype": self.dtype,
            "literal": self.literal,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quant"] = list(self.quant)
        return d

    def digest(self) -> str:
        """Stable hash of the full config (keys sorted), for result stores and seeds."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
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


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (validated later by :class:`RunConfig`)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
