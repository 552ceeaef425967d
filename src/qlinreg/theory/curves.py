"""Theory columns for a run's table: exact risk and the unit-constant bound, per checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from qlinreg.algorithm import SGDConfig
from qlinreg.problem import Problem
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.bounds import bound as _bound
from qlinreg.theory.exact import exact_risk
from qlinreg.theory.quantized_data import approx_err_clean

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
    bound_clean`` (Theorem 4.1 family, unit constants) with the bound's parts and its
    hypotheses (``bound_valid``, ``bound_reason``), per checkpoint.

    ``surrogate`` and ``seed`` go to :func:`~qlinreg.theory.exact.exact_risk`. The bounds are
    stated for the idealized models only (``TypeError`` for a number format).
    """
    df = None
    if exact:
        ex = exact_risk(problem, scheme, sgd, checkpoints, surrogate=surrogate, seed=seed)
        cols = ["step", "exact_risk", "exact_risk_clean", "exact_risk_se", "exact_risk_clean_se"]
        df = ex.to_frame()[[*cols, "exact_moments"]]
    if bound:
        parts = ["bound", "bound_var", "bound_var_bias", "bound_bias", "bound_approx"]
        extra = ["k_star", "sigma_G2", "alpha", "bound_valid", "bound_reason", "theorem"]
        bq = _bound(problem, scheme, sgd, checkpoints, convention="quantized")
        b = bq[["step", *parts, *extra]].copy()
        # The clean convention differs only in its ApproxErr term (``bound`` docstring).
        clean = approx_err_clean(problem, (scheme or Scheme()).data)
        b["bound_clean"] = b["bound"] - b["bound_approx"] + clean
        b["bound_approx_clean"] = clean
        df = b if df is None else df.merge(b, on="step")
    if df is None:
        raise ValueError("theory_columns needs exact=True or bound=True")
    return df
