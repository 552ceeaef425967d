"""Theory columns for a run's table: exact risk and the unit-constant bound, per checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from qlinreg.algorithm import SGDConfig
from qlinreg.problem import Problem
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.bounds import bound as _bound
from qlinreg.theory.exact import exact_risk

__all__ = ["theory_columns"]


def theory_columns(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    checkpoints: Sequence[int] | None = None,
    *,
    exact: bool = True,
    bound: bool = True,
    surrogate: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """``step`` plus ``exact_risk, exact_risk_clean`` (the chosen average) with their standard
    errors and ``exact_moments`` (:class:`~qlinreg.theory.exact.ExactResult`), and ``bound,
    bound_clean`` (Theorem 4.1 family, unit constants) with the bound's parts, per checkpoint.

    ``surrogate`` and ``seed`` go to :func:`~qlinreg.theory.exact.exact_risk`. The bounds are
    stated for the idealized models only (``TypeError`` for a number format).
    """
    df = None
    if exact:
        ex = exact_risk(problem, scheme, sgd, checkpoints, surrogate=surrogate, seed=seed)
        cols = ["step", "exact_risk", "exact_risk_clean", "exact_risk_se", "exact_risk_clean_se"]
        df = ex.to_frame()[[*cols, "exact_moments"]]
    if bound:
        parts = ["bound", "bound_var", "bound_bias", "bound_approx"]
        bq = _bound(problem, scheme, sgd, checkpoints, convention="quantized")
        bc = _bound(problem, scheme, sgd, checkpoints, convention="clean")
        b = bq[["step", *parts, "k_star", "sigma_G2", "theorem"]].copy()
        b["bound_clean"] = bc["bound"].to_numpy()
        b["bound_approx_clean"] = bc["bound_approx"].to_numpy()
        df = b if df is None else df.merge(b, on="step")
    if df is None:
        raise ValueError("theory_columns needs exact=True or bound=True")
    return df
