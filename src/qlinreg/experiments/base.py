"""Recipe registry and the common runner: table to Parquet + CSV, figures to PNG + SVG."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["RECIPES", "SIZES", "Recipe", "register", "run_recipe"]


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


def register(name: str, description: str):
    """Decorator adding a recipe function to :data:`RECIPES`."""

    def wrap(fn):
        RECIPES[name] = Recipe(name, description, fn)
        return fn

    return wrap


def run_recipe(name: str, out_dir: str | Path, *, size: str = "full") -> dict[str, list]:
    """Run recipe ``name``; write ``OUT/NAME.parquet``, ``.csv`` and its figures.

    Returns ``{"tables": [...], "figures": [...], "claims": [Claim, ...]}``.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(RECIPES)}")
    from qlinreg.plot import save

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
    }
    for fig_name, fig in figures.items():
        written["figures"] += save(fig, out / fig_name, formats=("png", "svg"))
    return written
