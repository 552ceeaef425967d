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
from qlinreg.quantize.scheme import ROLES, Scheme, role_shape
from qlinreg.sgd import DivergenceError, SimResult, check_simulation, simulate
from qlinreg.sketch import Sketch, exact_before, simulate_sketched, sketched_model
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
        exact: add the exact expected risk (:func:`qlinreg.exact_risk`: idealized quantizers
            anywhere, number formats on data and labels; docs/theory.md §14).
        surrogate: with ``exact``, replace number formats by idealized surrogates (one measured
            ε each) instead of computing their moments: the comparison baseline, and the only
            theory for formats on parameters, activations and output gradients.
        bound: add the paper's bound with unit constants (:func:`qlinreg.bound`; Polyak).
        tags: constant columns added to the table (recipes label their points with them).
        sketch: the follow-up's sketched model (:class:`qlinreg.sketch.Sketch`): SGD on
            ``v ∈ R^M`` with features ``S x``, risks against the full model. Quantized after
            the sketch, everything runs on the exact reduction (:func:`~qlinreg.sketch.
            sketched_model`) plus its approximation error; before it, Monte Carlo is the
            literal :func:`~qlinreg.sketch.simulate_sketched` and the theory exists only for
            none or rank-one multiplicative data quantizers.
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
    surrogate: bool = False
    bound: bool = False
    tags: Mapping[str, Any] = field(default_factory=dict)
    sketch: Sketch | None = None

    def __post_init__(self) -> None:
        scheme = check_run(self.problem, self.scheme, self.sgd)
        object.__setattr__(self, "scheme", scheme)
        sketched = None if self.sketch is None else sketched_model(self.problem, self.sketch)
        object.__setattr__(self, "sketched", sketched)
        model = self.model
        for name in ("literal", "exact", "surrogate", "bound"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        trials = positive_int("trials", self.trials, low=0)
        if trials:
            _, ck = check_simulation(
                model, scheme, self.sgd, trials=trials, seed=self.seed,
                checkpoints=self.checkpoints, dtype=self.dtype,
            )  # fmt: skip
        else:
            ck = check_checkpoints(self.checkpoints, self.sgd.steps)
            if not (self.exact or self.bound):
                raise ValueError("trials = 0 computes nothing: give trials ≥ 1, exact or bound")
        object.__setattr__(self, "checkpoints", ck)
        if self.surrogate and not self.exact:
            raise ValueError("surrogate replaces formats in the exact theory: give exact too")
        if self.exact or self.bound:
            _check_theory(scheme, self.sgd, self.bound)
            if self.before and not exact_before(scheme):
                raise ValueError(
                    f"exact/bound: quantizing x before the sketch (sketch_quantize = before) "
                    f"has exact theory only for a data quantizer that is none or rank-one "
                    f"multiplicative (then it equals quantizing after), not "
                    f"{scheme.data.label}: use Monte Carlo alone, or sketch_quantize = after"
                )
        if self.exact:
            from qlinreg.theory.exact import check_exact

            check_exact(model, scheme, self.sgd, surrogate=self.surrogate, seed=self.seed)

    @property
    def model(self) -> Problem:
        """The model the engine and the theory run on: ``problem``, or with a sketch the exact
        reduction of ``(Sx, y)`` (:func:`~qlinreg.sketch.sketched_model`)."""
        return self.problem if self.sketched is None else self.sketched.reduced

    @property
    def before(self) -> bool:
        """Whether the data quantizer acts on ``x`` before the sketch."""
        return self.sketch is not None and self.sketch.quantize == "before"

    @property
    def offset(self) -> float:
        """What the reduced model's risks miss of the full model's: the sketch's
        approximation error ``½‖w* − Sᵀv*‖²_H`` (0 without a sketch)."""
        return 0.0 if self.sketched is None else self.sketched.approx

    @property
    def title(self) -> str:
        """Plot title: ``d, B, γ`` and the scheme."""
        sgd, pb = self.sgd, self.problem
        data = f"{pb.name} ({pb.data_mode}), " if pb.name else ""
        sk = "" if self.sketch is None else f", M={self.sketch.M} ({self.sketch.quantize})"
        return f"{data}d={pb.d}{sk}, B={sgd.batch}, γ={sgd.lr:g}, {self.scheme.describe()}"

    def warnings(self) -> list[str]:
        """Configurations that run but quantize less than they seem to."""
        B, d = self.sgd.batch, self.model.d
        shapes = {role: role_shape(role, B, d) for role in ROLES}
        if self.before:  # the data quantizer sees x itself
            shapes["data"] = (B, self.problem.d)
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
    for role, q in scheme.items() if bound else ():
        try:
            error_moments(q, role)
        except TypeError as exc:
            raise ValueError(f"bound: {exc}") from None
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

    df = theory_columns(
        spec.model, spec.scheme, spec.sgd, spec.checkpoints, exact=spec.exact,
        bound=spec.bound, surrogate=spec.surrogate, seed=spec.seed,
    )  # fmt: skip
    for col in ("exact_risk", "exact_risk_clean", "bound", "bound_clean"):
        if col in df:
            df[col] += spec.offset  # the sketch's approximation error (0 without one)
    return df


def _frame(spec: RunSpec, sim: SimResult | None, theory, status: str, reached: int):
    """The run's table: checkpoints × (Monte Carlo, theory, status, configuration, tags)."""
    steps = spec.checkpoints if theory is not None or sim is None else sim.steps
    df = pd.DataFrame({"step": steps.astype(np.int64)})
    if sim is not None and len(sim.steps):
        mc = pd.DataFrame({"step": sim.steps, **sim.summary()})
        if not spec.before:  # the reduced model's risks; the literal path's are already full
            mc[["risk_mean", "risk_clean_mean"]] += spec.offset
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
    if spec.sketch is not None:
        config.update(
            sketch=spec.sketch.label, sketch_dim=spec.sketch.M,
            sketch_quantize=spec.sketch.quantize, sketch_approx=spec.offset,
        )  # fmt: skip
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
            if spec.before:
                sim = simulate_sketched(
                    spec.problem, spec.sketch, spec.scheme, spec.sgd, trials=spec.trials,
                    seed=spec.seed, checkpoints=spec.checkpoints, dtype=spec.dtype,
                )  # fmt: skip
            else:
                sim = simulate(
                    spec.model, spec.scheme, spec.sgd, trials=spec.trials, seed=spec.seed,
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
