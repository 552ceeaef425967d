"""The one run pipeline: validate, add theory, simulate, record status, write tables.

``qlinreg run``, sweeps and the recipes all go through :func:`run`: a :class:`RunSpec` is
validated once at construction (including combinations: the theory overlays do not model
low-precision weight storage, the bound is stated for the Polyak average), the exact risk and
the bound are computed on the checkpoints, Monte Carlo follows, and the result is one tidy
table (:mod:`qlinreg.table`) whose ``status`` says whether it is complete (``ok``), stopped by
a divergence, or interrupted, with the step every row up to which is complete (``reached``).

With ``out``, the folder is checked before any work, stale tables are removed, and the tables
are rewritten atomically each time a chunk of steps completes new checkpoints (marked
``interrupted`` until the run ends), so a run killed by any signal keeps what finished.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlinreg.algorithm import SGDConfig, check_checkpoints, check_run, positive_int, run_config
from qlinreg.files import prepare_dir, write_atomic
from qlinreg.problem import Problem
from qlinreg.quantize.idealized import error_moments
from qlinreg.quantize.scheme import Scheme
from qlinreg.sgd import DivergenceError, SimResult, check_simulation, simulate
from qlinreg.table import MC_COLUMNS

__all__ = ["EXIT_CODES", "QuantizationWarning", "RunResult", "RunSpec", "run", "write_tables"]

EXIT_CODES = {"ok": 0, "diverged": 3, "interrupted": 130}
"""Process exit status of the CLI per run status."""


class QuantizationWarning(UserWarning):
    """A configuration that runs but does not do what it seems to (e.g. a role left exact)."""


@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run: the model, the quantizers, SGD, Monte Carlo size and the theory to add.

    Attributes:
        problem, scheme, sgd: as for :func:`qlinreg.simulate` (``scheme=None``: full precision).
        trials: Monte Carlo trials; 0 computes the theory only.
        seed, dtype, literal: as for :func:`qlinreg.simulate`.
        checkpoints: steps reported (default: ~10 per decade, always ``N``).
        exact: add the exact expected risk (:func:`qlinreg.exact_risk`; idealized quantizers).
        bound: add the paper's bound with unit constants (:func:`qlinreg.bound`; Polyak).
        tags: constant columns added to the table (recipes label their points with them).
    """

    problem: Problem
    scheme: Scheme | None
    sgd: SGDConfig
    trials: int = 100
    seed: int = 0
    checkpoints: np.ndarray | None = None
    dtype: str = "float32"
    literal: bool = False
    exact: bool = False
    bound: bool = False
    tags: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme = check_run(self.problem, self.scheme, self.sgd)
        object.__setattr__(self, "scheme", scheme)
        for name in ("literal", "exact", "bound"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        trials = positive_int("trials", self.trials, low=0)
        if trials:
            _, ck = check_simulation(
                self.problem, scheme, self.sgd, trials=trials, seed=self.seed,
                checkpoints=self.checkpoints, dtype=self.dtype,
            )  # fmt: skip
        else:
            ck = check_checkpoints(self.checkpoints, self.sgd.steps)
            if not (self.exact or self.bound):
                raise ValueError("trials = 0 computes nothing: give trials ≥ 1, exact or bound")
        object.__setattr__(self, "checkpoints", ck)
        if self.exact or self.bound:
            _check_theory(scheme, self.sgd, self.bound)
        if self.exact:
            from qlinreg.theory.exact import check_exact

            check_exact(self.problem, scheme, self.sgd)

    @property
    def title(self) -> str:
        """Plot title: ``d, B, γ`` and the scheme."""
        sgd, pb = self.sgd, self.problem
        data = f"{pb.name} ({pb.data_mode}), " if pb.name else ""
        return f"{data}d={pb.d}, B={sgd.batch}, γ={sgd.lr:g}, {self.scheme.describe()}"

    def warnings(self) -> list[str]:
        """Configurations that run but quantize less than they seem to."""
        B, d = self.sgd.batch, self.problem.d
        shapes = {"data": (B, d), "params": (d,), "labels": (B,), "activations": (B,)}
        shapes["grads"] = (B,)
        out = []
        for role, q in self.scheme.items():
            if hasattr(q, "exact_on") and q.exact_on(shapes[role]):
                out.append(
                    f"{role}: {q.label} leaves this role unquantized: with an absmax scale, a "
                    f"scale group of one element (a {role} vector has {shapes[role][-1]} at "
                    f"B = {B}) is represented exactly. Use delayed scaling "
                    f"({q.label.split(':')[0]}:delayed, the text default on labels, "
                    f"activations and grads), a fixed scale (INT: "
                    f"{q.label.split(':')[0]}::scale=0.05), another format, or B > 1"
                )
        return out


def _check_theory(scheme: Scheme, sgd: SGDConfig, bound: bool) -> None:
    if sgd.storage is not None:
        raise ValueError(
            f"exact/bound: the theory keeps w_t in full precision and does not model weight "
            f"storage in {sgd.storage.label}; drop storage or the theory overlay"
        )
    for role, q in scheme.items():
        try:
            error_moments(q, role)
        except TypeError as exc:
            raise ValueError(f"exact/bound: {exc}") from None
    if bound and sgd.schedule:
        raise ValueError(
            "bound: the paper's bound is stated for a constant step size; drop the schedule, "
            "or use exact alone"
        )
    if bound and sgd.average != "polyak":
        raise ValueError(
            f"bound: the paper's bound is stated for the Polyak average, not average = "
            f"{sgd.average!r}; use average = 'polyak', or exact alone"
        )


@dataclass(frozen=True, eq=False)
class RunResult:
    """What :func:`run` returns.

    Attributes:
        frame: the tidy table (one row per checkpoint; :mod:`qlinreg.table`).
        status: ``ok``, ``diverged`` or ``interrupted``.
        reached: every Monte Carlo checkpoint ``≤ reached`` is complete (``N`` if ``ok``).
        message: why the run stopped early (the divergence report), else empty.
        simulation: the Monte Carlo result (``None`` for theory only).
        warnings: :meth:`RunSpec.warnings`.
        written: the files written (with ``out``).
    """

    frame: pd.DataFrame
    status: str
    reached: int
    message: str = ""
    simulation: SimResult | None = None
    warnings: tuple[str, ...] = ()
    written: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def _theory(spec: RunSpec) -> pd.DataFrame | None:
    if not (spec.exact or spec.bound):
        return None
    from qlinreg.theory.curves import theory_columns

    return theory_columns(
        spec.problem, spec.scheme, spec.sgd, spec.checkpoints, exact=spec.exact, bound=spec.bound
    )


def _frame(spec: RunSpec, sim: SimResult | None, theory, status: str, reached: int):
    """The run's table: checkpoints × (Monte Carlo, theory, status, configuration, tags)."""
    steps = spec.checkpoints if theory is not None or sim is None else sim.steps
    df = pd.DataFrame({"step": steps.astype(np.int64)})
    if sim is not None and len(sim.steps):
        mc = pd.DataFrame({"step": sim.steps, **sim.summary()})
        for role, (sat, under) in sim.saturation.items():
            mc[f"saturated_{role}"], mc[f"underflow_{role}"] = sat, under
        df = df.merge(mc, on="step", how="left")
    else:
        df[list(MC_COLUMNS)] = np.nan
    if theory is not None:
        df = df.merge(theory, on="step", how="left")
    df["trials"] = spec.trials
    df["status"], df["reached"] = status, reached
    df["scheme"] = spec.scheme.describe()
    config = {
        **run_config(spec.problem, spec.scheme, spec.sgd),
        "seed": spec.seed,
        "dtype": spec.dtype,
        "literal": spec.literal,
        "storage": getattr(spec.sgd.storage, "label", "none"),
        **spec.tags,
    }
    for k, v in config.items():
        df[k] = v
    return df


def write_tables(df: pd.DataFrame, out: Path, stem: str = "risk") -> list[Path]:
    """``OUT/STEM.parquet`` and ``OUT/STEM.csv``, each written atomically."""
    paths = [out / f"{stem}.parquet", out / f"{stem}.csv"]
    write_atomic(paths[0], lambda p: df.to_parquet(p, index=False))
    write_atomic(paths[1], lambda p: df.to_csv(p, index=False))
    return paths


def run(
    spec: RunSpec,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    figure: bool = True,
    stem: str = "risk",
    on_checkpoint: Callable[[pd.DataFrame], None] | None = None,
) -> RunResult:
    """Run ``spec``: theory columns, then Monte Carlo; returns a :class:`RunResult`.

    Divergence and interruption (Ctrl-C, SIGTERM) do not raise: the result's ``status`` says
    so and its table keeps every checkpoint that finished. With ``out`` the folder is checked
    first and ``OUT/STEM.parquet``, ``OUT/STEM.csv`` (atomically, as checkpoints complete) and,
    with ``figure``, ``OUT/STEM.png`` are written (``stem``: ``risk``). ``on_checkpoint``
    receives each partial table (status ``interrupted``) as chunks of steps complete.
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"run needs a qlinreg.RunSpec, got {type(spec).__name__}")
    folder = None if out is None else prepare_dir(out, "out")
    notes = tuple(spec.warnings())
    for note in notes:
        warnings.warn(note, QuantizationWarning, stacklevel=2)
    if folder is not None:
        for ext in ("parquet", "csv", "png"):
            (folder / f"{stem}.{ext}").unlink(missing_ok=True)  # no previous run's files
    theory = _theory(spec)

    def partial(res: SimResult) -> None:
        df = _frame(spec, res, theory, "interrupted", res.reached)
        if folder is not None:
            write_tables(df, folder, stem)
        if on_checkpoint is not None:
            on_checkpoint(df)

    sim, status, message = None, "ok", ""
    reached = spec.sgd.steps
    if spec.trials:
        try:
            sim = simulate(
                spec.problem, spec.scheme, spec.sgd, trials=spec.trials, seed=spec.seed,
                checkpoints=spec.checkpoints, dtype=spec.dtype, literal=spec.literal,
                progress=progress, on_checkpoint=partial,
            )  # fmt: skip
            if sim.interrupted:
                status = "interrupted"
        except DivergenceError as exc:
            sim, status, message = exc.result, "diverged", str(exc)
        reached = sim.reached
    df = _frame(spec, sim, theory, status, reached)
    written: list[Path] = []
    if folder is not None:
        written += write_tables(df, folder, stem)
        if figure and len(df):
            from qlinreg.plot import plot_risk, save

            written += save(plot_risk(df, title=spec.title), folder / f"{stem}.png")
    return RunResult(df, status, reached, message, sim, notes, tuple(written))
