"""Corollary 4.2 (a reconstruction): the largest ε, per role and error model, at which the
bound still matches the full-precision rate — evaluated with unit constants — and the exact
risk's verdict on whether those conditions are sufficient, necessary, or neither.

"Matches the full-precision rate" is made concrete as: with only role ``r`` quantized at
``ε`` (the other roles in full precision), the bound's hypotheses hold and the bound is at
most ``factor`` (default 2) times the full-precision bound, at the same ``N``, ``B``, ``γ``
(:func:`~qlinreg.theory.bounds.bound` with endpoint sups: closed form, no recursion). The
condition is ``ε ≤ ε*_r``; ``binding`` says which part of the bound crosses first. Leading
orders (docs/theory.md §6): labels, activations and output gradients additive
``ε ≲ (factor − 1)·B·R_fp/(D/(1 − γα tr H))`` (≈ σ² when VarErr dominates); parameters
additive the same divided by ``α_B·tr H``; data additive ``ε ≲ 1/(Nγ)`` (the floor stays
below the SGD's resolution) and ApproxErr ``≲ R_fp``; multiplicative data ``ε/(1+ε)·½‖w*‖²_H
≲ R_fp``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qlinreg.algorithm import SGDConfig, positive_int
from qlinreg.problem import Problem
from qlinreg.quantize.idealized import Additive, Multiplicative, MultiplicativeElementwise
from qlinreg.quantize.scheme import ROLES, Scheme
from qlinreg.theory.bounds import ALPHA_B, AlphaB, Convention, _terms, hypotheses
from qlinreg.theory.quantized_data import approx_err, approx_err_clean

__all__ = ["KINDS", "condition_verdict", "corollary_4_2", "corollary_4_2_exact"]

KINDS = {
    "additive": Additive,
    "multiplicative": Multiplicative,
    "multiplicative_elementwise": MultiplicativeElementwise,
}
_GRID = np.logspace(-12, 4, 33)  # ε scanned (2 per decade), then bisected
_BISECTIONS = 30
VERDICTS = (
    "sufficient and necessary",
    "sufficient, not necessary",
    "necessary, not sufficient",
    "neither",
)


def _evaluate(
    problem: Problem, scheme: Scheme, sgd: SGDConfig, n: int, alpha_B: AlphaB, convention: str
) -> tuple[float, float, float, float, bool]:
    """``(bound, variance terms, bias, ApproxErr, hypotheses hold)`` at ``N = n``."""
    hyp = hypotheses(problem, scheme, sgd)
    var, var_bias, bias, *_ = _terms(problem, scheme, sgd, n, hyp, alpha_B)
    approx = (approx_err if convention == "quantized" else approx_err_clean)(problem, scheme.data)
    return var + var_bias + bias + approx, var + var_bias, bias, approx, hyp.valid


def _binding(fp, hi) -> str:
    """Which part of the bound crossed: the hypothesis, or the term that grew the most."""
    if not hi[4]:
        return "hypothesis (γ < 1/(α·tr H^(q)))"
    growth = {"variance": hi[1] - fp[1], "bias": hi[2] - fp[2], "ApproxErr": hi[3] - fp[3]}
    return max(growth, key=growth.get)


def corollary_4_2(
    problem: Problem,
    sgd: SGDConfig,
    *,
    steps: int | None = None,
    roles: Sequence[str] = ROLES,
    kinds: Sequence[str] = ("additive", "multiplicative"),
    factor: float = 2.0,
    convention: Convention = "quantized",
    alpha_B: AlphaB = "standard",
) -> pd.DataFrame:
    """Corollary 4.2's conditions, one row per (role, kind): the largest ``ε*`` such that, for
    every ``ε ≤ ε*``, quantizing that role alone keeps the bound's hypotheses and the bound
    within ``factor`` × the full-precision bound at ``N = steps`` (default ``sgd.steps``).

    Returns columns ``role, kind, eps_max`` (``inf``: never binds up to ε = 10⁴; 0: no ε
    qualifies), ``binding`` (hypothesis, variance, bias or ApproxErr), ``bound_fp``,
    ``steps, factor, convention``. Unit constants; a full covariance is evaluated in its
    eigenbasis (the paper's additive and rank-one multiplicative models commute with
    rotations). ``ValueError`` when the full-precision bound's own hypothesis fails.
    """
    n = sgd.steps if steps is None else positive_int("steps (N)", steps)
    if not isinstance(factor, int | float) or isinstance(factor, bool) or not factor > 1:
        raise ValueError(f"factor must be a number > 1, got {factor!r}")
    if convention not in ("quantized", "clean"):
        raise ValueError(f"convention must be 'quantized' or 'clean', got {convention!r}")
    if alpha_B not in ALPHA_B:
        raise ValueError(f"alpha_B must be one of {ALPHA_B}, got {alpha_B!r}")
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    if sgd.schedule:
        raise ValueError("Corollary 4.2: the bound is stated for a constant step size")
    eig = problem.eigen()
    w0 = None if sgd.w0 is None else problem.to_eigen(sgd.w0)
    sgd = SGDConfig(sgd.lr, max(n, 1), sgd.batch, "polyak", w0)
    fp = _evaluate(eig, Scheme(), sgd, n, alpha_B, convention)
    if not fp[4]:
        raise ValueError(
            f"Corollary 4.2 compares with the full-precision bound, whose hypothesis "
            f"{hypotheses(eig, Scheme(), sgd).reason}: lower the step size"
        )
    rows = []
    for role in roles:
        for kind in kinds:

            def at(eps: float, role=role, kind=kind):
                return _evaluate(eig, Scheme(**{role: KINDS[kind](eps)}), sgd, n, alpha_B,
                                 convention)  # fmt: skip

            def ok(res) -> bool:
                return res[4] and res[0] <= factor * fp[0]

            eps_max, hi = _threshold(at, ok)
            binding = "none up to ε = 10⁴" if hi is None else _binding(fp, hi)
            rows.append((role, kind, eps_max, binding))
    df = pd.DataFrame(rows, columns=["role", "kind", "eps_max", "binding"])
    df["bound_fp"], df["steps"], df["factor"], df["convention"] = fp[0], n, factor, convention
    return df


def _threshold(at, ok) -> tuple[float, tuple | None]:
    """The largest ``ε`` with ``ok(at(ε'))`` for every ``ε' ≤ ε`` on the scan grid, refined by
    bisection in log ε; and the evaluation just above it (``None`` if it never fails)."""
    last_ok = 0.0
    for eps in _GRID:
        res = at(float(eps))
        if not ok(res):
            break
        last_ok = float(eps)
    else:
        return math.inf, None
    lo, hi, hi_res = last_ok, float(eps), res
    if lo == 0.0:
        return 0.0, hi_res
    for _ in range(_BISECTIONS):
        mid = math.sqrt(lo * hi)
        res = at(mid)
        if ok(res):
            lo = mid
        else:
            hi, hi_res = mid, res
    return lo, hi_res


def condition_verdict(ratio_at: float, ratio_beyond: float, factor: float = 2.0) -> str:
    """The exact risk's verdict on a condition ``ε ≤ ε*``: *sufficient* if at ``ε*`` the exact
    risk is within ``factor`` × full precision's, *necessary* if beyond it (at ``c·ε*``) it
    is not. One of :data:`VERDICTS`."""
    sufficient, necessary = ratio_at <= factor, ratio_beyond > factor
    if sufficient:
        return VERDICTS[0] if necessary else VERDICTS[1]
    return VERDICTS[2] if necessary else VERDICTS[3]


def corollary_4_2_exact(
    problem: Problem, sgd: SGDConfig, conditions: pd.DataFrame, *, beyond: float = 4.0
) -> pd.DataFrame:
    """``conditions`` (from :func:`corollary_4_2`) with the exact risk's verdict: the exact
    Polyak risk (same convention, ``N``, ``B``, ``γ``) with the role quantized at ``ε*`` and at
    ``beyond·ε*``, over full precision's (``ratio_at``, ``ratio_beyond``), and
    :func:`condition_verdict`. Rows whose ``ε*`` is 0 or infinite get no verdict."""
    from qlinreg.table import CONVENTIONS
    from qlinreg.theory.exact import exact_risk

    if not beyond > 1:
        raise ValueError(f"beyond must be > 1, got {beyond!r}")
    out = conditions.copy()
    cache: dict = {}

    def risk(scheme: Scheme, n: int, conv: str) -> float:
        key = (scheme.describe(), n)
        if key not in cache:
            ex = exact_risk(problem, scheme, SGDConfig(sgd.lr, n, sgd.batch, "polyak", sgd.w0),
                            [n])  # fmt: skip
            cache[key] = {"quantized": ex.exact_risk[0], "clean": ex.exact_risk_clean[0]}
        return float(cache[key][conv])

    ratios = []
    for r in out.itertuples():
        conv, n = r.convention, int(r.steps)
        if not (0 < r.eps_max < math.inf):
            ratios.append((math.nan, math.nan, "no verdict (ε* is 0 or ∞)"))
            continue
        base = risk(Scheme(), n, conv)
        at = risk(Scheme(**{r.role: KINDS[r.kind](r.eps_max)}), n, conv) / base
        past = risk(Scheme(**{r.role: KINDS[r.kind](beyond * r.eps_max)}), n, conv) / base
        ratios.append((at, past, condition_verdict(at, past, r.factor)))
    out["ratio_at"], out["ratio_beyond"], out["verdict"] = zip(*ratios, strict=True)
    out["beyond"] = beyond
    assert set(CONVENTIONS) >= set(out["convention"])
    return out
