"""Recipe registry and the common runner: table to Parquet + CSV, figures to PNG + SVG."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = [
    "RECIPES",
    "SIZES",
    "Recipe",
    "agreement_claim",
    "finished",
    "register",
    "run_point",
    "run_recipe",
]


@dataclass(frozen=True)
class Recipe:
    """A named experiment: ``run(size) -> (table, {figure name: figure}, [Claim, ...])``.

    ``size`` is one of :data:`SIZES`: ``"tiny"`` (tests: seconds), ``"quick"``
    (``reproduce --quick``) or ``"full"``.
    """

    name: str
    description: str
    run: Callable[[str], tuple[pd.DataFrame, dict, list]]


SIZES = ("tiny", "quick", "full")


RECIPES: dict[str, Recipe] = {}


def finished(result):
    """``result`` (a :class:`~qlinreg.SimResult` or :class:`~qlinreg.pipeline.RunResult`), or
    ``KeyboardInterrupt`` if it was interrupted: a partial run never backs a claim."""
    if getattr(result, "interrupted", False) or getattr(result, "status", "") == "interrupted":
        raise KeyboardInterrupt
    return result


def run_point(
    problem,
    scheme,
    sgd,
    *,
    trials: int = 0,
    seed: int = 0,
    theory: bool = True,
    checkpoints=None,
    **tags,
) -> pd.DataFrame:
    """One configuration's table from the run pipeline (:func:`qlinreg.pipeline.run`): Monte
    Carlo (``trials > 0``), the exact risk and the unit-constant bound (``theory``), the
    ``status`` and ``tags`` columns. Rows without a Monte Carlo value have NaN ``risk_*``."""
    from qlinreg.pipeline import RunSpec, run

    spec = RunSpec(
        problem, scheme, sgd, trials=trials, seed=seed, checkpoints=checkpoints,
        exact=theory, bound=theory and sgd.average == "polyak", tags=tags,
    )  # fmt: skip
    return finished(run(spec)).frame


def agreement_claim(experiment: str, df: pd.DataFrame, *, min_step: int = 100) -> list:
    """Monte Carlo vs exact risk at every checkpoint ``n ≥ min_step`` that has both, in both
    conventions: within 3 SE + 1 % (the validation behind every exact curve in the recipe).

    Early checkpoints are left out: there the averaged iterate's risk is dominated by a few
    coordinates, its distribution over trials is strongly skewed, and a mean ± 3 SE test
    over a few dozen trials is not calibrated (the tests in ``tests/test_exact.py`` check
    early steps with many trials).
    """
    from qlinreg.report import Claim
    from qlinreg.table import CONVENTIONS

    claims = []
    for conv, (mean, se, exact, _, _) in CONVENTIONS.items():
        if mean not in df or exact not in df:
            continue
        both = df[df[mean].notna() & df[exact].notna() & (df["step"] >= min_step)]
        if both.empty:
            continue
        dev = (both[mean] - both[exact]).abs()
        ok = dev <= 3 * both[se].fillna(0) + 0.01 * both[exact].abs()
        z = (dev / both[se]).replace([float("inf")], float("nan"))
        claims.append(
            Claim(
                experiment,
                "Simulation agrees with the exact expected risk (validation of the theory curves).",
                conv,
                f"{int(ok.sum())} of {len(ok)} (config, checkpoint) points within 3 SE + 1 %; "
                f"median |MC − exact|/SE = {z.median():.2f}",
                bool(ok.mean() >= 0.95),
                f"≥ 95 % of points (checkpoints n ≥ {min_step}) within 3 SE + 1 % (about 0.3 % "
                "expected outside by chance)",
            )
        )
    return claims


def register(name: str, description: str):
    """Decorator adding a recipe function to :data:`RECIPES`."""

    def wrap(fn):
        RECIPES[name] = Recipe(name, description, fn)
        return fn

    return wrap


def run_recipe(name: str, out_dir: str | Path, *, size: str = "full") -> dict[str, list]:
    """Run recipe ``name``; write ``OUT/NAME.parquet``, ``.csv`` and its figures (PNG, and SVG
    except at ``size="quick"``).

    Returns ``{"tables": [...], "figures": [...], "claims": [Claim, ...], "notes": [...]}``
    (notes: how many bound points lie outside the bound's hypotheses).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(RECIPES)}")
    from qlinreg.plot import save
    from qlinreg.report import bound_note

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    table, figures, claims = RECIPES[name].run(size)
    table.to_parquet(out / f"{name}.parquet", index=False)
    table.to_csv(out / f"{name}.csv", index=False)
    written = {
        "tables": [out / f"{name}.parquet", out / f"{name}.csv"],
        "figures": [],
        "claims": claims,
        "notes": [n for n in (bound_note(table),) if n],
    }
    for fig_name, fig in figures.items():
        # SVG (vector, for papers) costs ~1 s a figure: the full run writes it, --quick not.
        formats = ("png",) if size == "quick" else ("png", "svg")
        written["figures"] += save(fig, out / fig_name, formats=formats)
    return written
