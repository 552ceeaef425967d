"""Column names of the tidy result tables, in one place.

Every run's table (``qlinreg run``, sweeps, recipes) has one row per checkpoint ``step``:
Monte Carlo ``risk_*`` columns (NaN where not simulated), theory ``exact_risk*`` and
``bound*`` columns where asked for, the run's ``status`` and the step it ``reached``, and its
configuration. Each risk comes in two conventions (SPEC §4–5): on quantized inputs (the
paper's) and on clean inputs.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CONVENTIONS", "MC_COLUMNS", "STATUSES", "Convention"]


class Convention(NamedTuple):
    """The columns of one risk convention."""

    mean: str  # Monte Carlo mean over trials
    se: str  # its standard error
    exact: str  # exact expected risk
    bound: str  # the paper's bound (unit constants)
    label: str  # axis label


CONVENTIONS: dict[str, Convention] = {
    "quantized": Convention(
        "risk_mean", "risk_se", "exact_risk", "bound", "excess risk (quantized inputs)"
    ),
    "clean": Convention(
        "risk_clean_mean",
        "risk_clean_se",
        "exact_risk_clean",
        "bound_clean",
        "excess risk (clean inputs)",
    ),
}

MC_COLUMNS = ("risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se")

STATUSES = ("ok", "diverged", "interrupted")
"""A run's ``status``: finished; stopped by divergence (the rows before it are valid); or
interrupted — Ctrl-C, SIGTERM, or still running when the table was written, or killed — with
every checkpoint up to ``reached`` complete."""
