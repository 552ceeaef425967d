"""The algorithm's settings (SPEC §2): step size, steps, batch size, averaging, ``w_0``.

Shared by the Monte Carlo engine (:mod:`qlinreg.sgd`) and the theory (:mod:`qlinreg.theory`),
together with the checkpoint grid both report on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np

from qlinreg.problem import Problem
from qlinreg.quantize.idealized import NoQuant
from qlinreg.quantize.scheme import Quantizer, Scheme

__all__ = [
    "SGDConfig",
    "check_checkpoints",
    "check_run",
    "geometric_checkpoints",
    "positive_int",
    "run_config",
]

Average = Literal["polyak", "tail", "last"]
AVERAGES = get_args(Average)


def positive_int(name: str, value, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class SGDConfig:
    """One-pass SGD (SPEC §2) with a constant or piecewise-constant step size.

    Attributes:
        lr: step size ``γ`` (> 0); with a ``schedule``, the step size of the first steps.
        steps: number of steps ``N`` (≥ 1); ``N·B`` samples are used once each.
        batch: batch size ``B`` (≥ 1).
        average: ``"polyak"`` (``w̄_N = (1/N) Σ_{t=0}^{N-1} w_t``), ``"tail"`` (average of
            ``w_{⌊N/2⌋} … w_{N-1}``) or ``"last"`` (``w_N``).
        w0: initial weights (default ``0``).
        storage: quantizer applied to ``w_t`` after every update (low-precision weight
            storage, beyond the paper), e.g. ``parse_quantizer("bf16:nearest_even")``; ``None``
            keeps full precision (SPEC §2).
        schedule: ``((t, γ_t), …)``: from update ``t`` on (``2 ≤ t ≤ N``, increasing) the step
            size is ``γ_t``; empty: constant ``lr``. See :meth:`step_decay`.
    """

    lr: float
    steps: int
    batch: int = 1
    average: Average = "polyak"
    w0: np.ndarray | None = None
    storage: Quantizer | None = None
    schedule: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            lr = float(self.lr)
        except (TypeError, ValueError):
            raise ValueError(f"lr (γ) must be a number > 0, got {self.lr!r}") from None
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr (γ) must be a finite number > 0, got {self.lr!r}")
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "steps", positive_int("steps (N)", self.steps))
        object.__setattr__(self, "batch", positive_int("batch (B)", self.batch))
        if self.average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {self.average!r}")
        if self.w0 is not None:
            w0 = np.array(self.w0, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(w0)):
                raise ValueError("w0 must be finite")
            w0.setflags(write=False)
            object.__setattr__(self, "w0", w0)
        if isinstance(self.storage, NoQuant):
            object.__setattr__(self, "storage", None)
        if self.storage is not None and not callable(self.storage):
            raise TypeError(f"storage must be a quantizer or None, got {self.storage!r}")
        object.__setattr__(self, "schedule", self._checked_schedule())

    def _checked_schedule(self) -> tuple[tuple[int, float], ...]:
        out, last = [], 1
        for item in self.schedule:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(f"schedule entries must be (step, lr) pairs, got {item!r}")
            t = positive_int("schedule step", item[0], low=2)
            if t <= last or t > self.steps:
                raise ValueError(
                    f"schedule steps must increase and lie in [2, steps (N) = {self.steps}], "
                    f"got {t} after {last}"
                )
            lr = item[1]
            if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating):
                raise ValueError(f"schedule lr must be a number > 0, got {lr!r}")
            if not math.isfinite(lr) or lr <= 0:
                raise ValueError(f"schedule lr (γ) must be a finite number > 0, got {lr!r}")
            out.append((t, float(lr)))
            last = t
        return tuple(out)

    @classmethod
    def step_decay(
        cls, lr: float, steps: int, factor: float = 0.5, every: int | None = None, **kw
    ) -> SGDConfig:
        """Geometric step decay: ``γ`` times ``factor`` every ``every`` steps (default
        ``⌈N / log₂ N⌉``: about log₂ N phases, as in the last-iterate SGD literature)."""
        steps = positive_int("steps (N)", steps)
        if isinstance(factor, bool) or not (isinstance(factor, int | float) and 0 < factor < 1):
            raise ValueError(f"step decay factor must be a number in (0, 1), got {factor!r}")
        every = every or max(1, math.ceil(steps / max(1.0, math.log2(steps))))
        every = positive_int("step decay every", every)
        schedule = tuple((1 + j * every, float(lr) * factor**j) for j in range(1, steps))
        return cls(lr, steps, schedule=tuple(p for p in schedule if p[0] <= steps), **kw)

    def segments(self) -> list[tuple[int, int, float]]:
        """Constant-step pieces ``(T0, T1, γ)``: updates ``T0+1 … T1`` (iterates ``w_{T0} →
        w_{T1}``) use ``γ``; they cover ``0 … N``."""
        starts = [(1, self.lr), *self.schedule]
        ends = [t for t, _ in self.schedule] + [self.steps + 1]
        return [(t - 1, end - 1, lr) for (t, lr), end in zip(starts, ends, strict=True)]

    def lr_at(self, t: np.ndarray) -> np.ndarray:
        """The step size of updates ``t`` (1-based; values past ``N`` get the last one)."""
        steps = np.array([1] + [s for s, _ in self.schedule])
        lrs = np.array([self.lr] + [g for _, g in self.schedule])
        return lrs[np.searchsorted(steps, np.asarray(t), side="right") - 1]

    def with_lr(self, lr: float) -> SGDConfig:
        """The same configuration with the constant step size ``lr`` (no schedule)."""
        return replace(self, lr=lr, schedule=())

    def initial(self, d: int) -> np.ndarray:
        """``w_0`` as a length-``d`` array."""
        if self.w0 is None:
            return np.zeros(d)
        if self.w0.size != d:
            raise ValueError(f"w0 must have length dim = {d}, got {self.w0.size}")
        return self.w0


def geometric_checkpoints(steps: int, per_decade: int = 10) -> np.ndarray:
    """About ``per_decade`` geometrically spaced steps per decade in ``[1, N]``, always ``N``."""
    steps = positive_int("steps (N)", steps)
    per_decade = positive_int("per_decade", per_decade)
    n = max(2, int(math.ceil(math.log10(steps) * per_decade)) + 1)
    pts = np.unique(np.round(np.geomspace(1, steps, n)).astype(np.int64))
    return np.unique(np.append(pts, steps))


def check_checkpoints(checkpoints, steps: int) -> np.ndarray:
    if checkpoints is None:
        return geometric_checkpoints(steps)
    arr = np.asarray(checkpoints)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("checkpoints must be a non-empty sequence of integer steps")
    if arr.min() < 1 or arr.max() > steps:
        raise ValueError(
            f"checkpoints must lie in [1, steps = {steps}], got {arr.min()}…{arr.max()}"
        )
    return np.unique(arr.astype(np.int64))


def check_run(problem: Problem, scheme: Scheme | None, sgd: SGDConfig) -> Scheme:
    """Type-check the three inputs of a run (simulation, exact risk, bound); ``None`` scheme is
    full precision. Returns the scheme."""
    scheme = Scheme() if scheme is None else scheme
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a qlinreg.Problem, got {type(problem).__name__}")
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a qlinreg.Scheme, got {type(scheme).__name__}")
    if not isinstance(sgd, SGDConfig):
        raise TypeError(f"sgd must be a qlinreg.SGDConfig, got {type(sgd).__name__}")
    return scheme


def run_config(problem: Problem, scheme: Scheme, sgd: SGDConfig) -> dict:
    """The flat configuration columns every result table carries."""
    return {
        **problem.describe(),
        **{f"quant_{r}": lab for r, lab in scheme.labels_by_role().items()},
        "lr": sgd.lr,
        "lr_schedule": ";".join(f"{t}:{g:g}" for t, g in sgd.schedule) or "constant",
        "batch": sgd.batch,
        "steps_total": sgd.steps,
        "average": sgd.average,
    }
