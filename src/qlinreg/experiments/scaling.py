"""Precision scaling laws in the sketched model (the follow-up, Zhang, Tang, Liang, Zou, ICML
2026, arXiv 2602.19241): exact risk over M × N × ε, fitted to the form

    R(M, N; ε) ≈ R_∞(M_eff) + C·N_eff^(−q),     R_∞(M) = A·M^(−p)  (full precision)

with the effective model size ``M_eff(M, ε)`` and data size ``N_eff = n_ε·N``.

Setting: ``λ_i = i^-2``, ``w* = 1`` (a power-law source, ``b = 0``), ``σ² = 1``, a nested
Gaussian sketch ``S_M`` (:meth:`~qlinreg.sketch.Sketch.gaussian`), all five roles quantized
with the same ε after the sketch, ``B = 1``, ``γ = 0.05``, Polyak average; the exact risk
(:func:`qlinreg.exact_risk` on the exact reduction, :mod:`qlinreg.sketch`) against the full
model ``w*``, both conventions. Definitions (each a fit; docs/theory.md §13):

- ``R_∞(M, ε)``: the ``N → ∞`` limit, in closed form: the sketch's approximation error plus
  the reduced model's ApproxErr (quantized inputs) or ``½‖w*^(q) − v*‖²_{H_s}`` (clean).
- ``A, p``: least squares of ``log R_∞(M, 0)`` on ``log M``. ``M_eff``: the full-precision
  model size with the same floor, ``R_∞(M_eff, 0) = R_∞(M, ε)`` (the exact full-precision
  floors interpolated in log–log, continued by the slope ``p``). ``M_ε`` fits
  ``M_eff = M/(1 + M/M_ε)`` (saturation) and ``M_ε ∝ ε^(−κ_M)``.
- ``C, q``: least squares of ``log(R − R_∞)`` on ``log N`` at full precision and the largest
  ``M``. ``N_eff``: the full-precision ``N`` with the same excess over the floor (the exact
  curve inverted likewise, slope ``q``); ``n_ε`` is the geometric mean of ``N_eff/N``.

Uncertainties are standard errors from the residuals (least squares) or from the spread over
the grid (``n_ε``, ``M_ε``): the exact surface has no sampling noise, so they measure how well
the form describes it.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qlinreg.experiments.base import register
from qlinreg.problem import make_problem
from qlinreg.quantize import Additive, Multiplicative, Scheme
from qlinreg.report import Claim
from qlinreg.sgd import SGDConfig
from qlinreg.sketch import Sketch, sketched_model
from qlinreg.table import CONVENTIONS
from qlinreg.theory import approx_err, approx_err_clean, exact_risk

LR = 0.05
MODELS = {"additive": Additive, "multiplicative": Multiplicative}
_SIZES = {
    "tiny": {"d": 64, "M": (8, 16), "eps": (1e-3, 1e-2), "N": (2, 4)},
    "quick": {"d": 512, "M": (16, 32, 64), "eps": (1e-4, 1e-3, 1e-2), "N": (2, 6)},
    "full": {
        "d": 2048,
        "M": (16, 32, 64, 128, 256, 512),
        "eps": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        "N": (2, 7),
    },
}


# ------------------------------------------------------------------------------- the fits


def fit_power_law(x, y) -> tuple[float, float, float, float]:
    """``y ≈ A·x^(−p)`` by least squares in logs: ``(A, p, se(log A), se(p))`` (standard errors
    from the residuals; NaN with two points)."""
    X = np.column_stack([np.ones(len(x)), -np.log(np.asarray(x, float))])
    t = np.log(np.asarray(y, float))
    coef, *_ = np.linalg.lstsq(X, t, rcond=None)
    dof = len(t) - 2
    if dof <= 0:
        return math.exp(coef[0]), float(coef[1]), math.nan, math.nan
    s2 = float(np.sum((t - X @ coef) ** 2)) / dof
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    return math.exp(coef[0]), float(coef[1]), float(se[0]), float(se[1])


def effective_size(target, x, y, p: float) -> np.ndarray:
    """Invert a decreasing curve ``y(x)`` given on a grid: the ``x'`` with ``y(x') = target``,
    by linear interpolation in ``log x``–``log y``, continued beyond the grid's ends by the
    power law ``y ∝ x^(−p)`` through the end point."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    order = np.argsort(ly)  # increasing log y ↔ decreasing x
    lx, ly = lx[order], ly[order]
    t = np.log(np.asarray(target, float))
    inside = np.interp(t, ly, lx)
    below = lx[0] - (t - ly[0]) / p  # past the largest x
    above = lx[-1] - (t - ly[-1]) / p  # before the smallest x
    return np.exp(np.where(t < ly[0], below, np.where(t > ly[-1], above, inside)))


def fit_saturation(M, M_eff) -> tuple[float, float]:
    """``M_eff ≈ M/(1 + M/M_ε)``: ``(M_ε, se(log M_ε))`` by least squares on ``1/M_eff − 1/M =
    1/M_ε`` (``inf`` when the data show no saturation)."""
    r = 1.0 / np.asarray(M_eff, float) - 1.0 / np.asarray(M, float)
    inv = float(np.mean(r))
    if inv <= 0:
        return math.inf, math.nan
    se = float(np.std(r, ddof=1) / math.sqrt(len(r))) if len(r) > 1 else math.nan
    return 1.0 / inv, se / inv


def log_mean(ratio) -> tuple[float, float]:
    """Geometric mean of positive ratios and the standard error of its log (NaN for one)."""
    lr = np.log(np.asarray(ratio, float))
    se = float(np.std(lr, ddof=1) / math.sqrt(len(lr))) if len(lr) > 1 else math.nan
    return math.exp(float(np.mean(lr))), se


# ---------------------------------------------------------------------------------- verdicts


def keeps_size(ratio, tol: float = 0.1) -> bool:
    """Every ``M_eff/M`` (at the largest M) within ``tol`` of 1."""
    r = np.asarray(ratio, float)
    return bool(r.size and np.all(np.abs(r - 1) <= tol))


def shrinks_size(ratio, eps, tol: float = 0.1) -> bool:
    """``M_eff/M`` below 1 and decreasing as ε grows, and below ``1 − tol`` at the largest ε."""
    order = np.argsort(np.asarray(eps, float))
    r = np.asarray(ratio, float)[order]
    return bool(r.size and np.all(r < 1) and np.all(np.diff(r) < 0) and r[-1] < 1 - tol)


def shrinks_data(n: float, se_log: float, k: float = 2.0) -> bool:
    """``n_ε < 1`` by more than ``k`` standard errors of ``log n`` (and below 0.95 when the
    error is unknown)."""
    if not math.isfinite(se_log):
        return n < 0.95
    return math.log(n) < -k * se_log


# -------------------------------------------------------------------------------- the recipe


def _grid(sz: dict) -> pd.DataFrame:
    problem = make_problem(sz["d"])
    lo, hi = sz["N"]
    steps = np.unique(np.round(np.logspace(lo, hi, 3 * (hi - lo) + 1)).astype(np.int64))
    sgd = SGDConfig(LR, int(steps[-1]))
    rows = []
    for M in sz["M"]:
        model = sketched_model(problem, Sketch.gaussian(M, problem.d, seed=0))
        red = model.reduced
        cases = [("full precision", 0.0)] + [(k, e) for k in MODELS for e in sz["eps"]]
        for kind, eps in cases:
            scheme = Scheme() if eps == 0 else Scheme.all(MODELS[kind](eps))
            ex = exact_risk(red, scheme, sgd, steps)
            floor = {
                "quantized": model.approx + approx_err(red.eigen(), scheme.data),
                "clean": model.approx + approx_err_clean(red.eigen(), scheme.data),
            }
            for j, n in enumerate(ex.steps):
                rows.append({
                    "M": M, "model": kind, "eps": eps, "step": int(n), "d": problem.d,
                    "exact_risk": ex.exact_risk[j] + model.approx,
                    "exact_risk_clean": ex.exact_risk_clean[j] + model.approx,
                    "floor": floor["quantized"], "floor_clean": floor["clean"],
                    "sketch_approx": model.approx, "stable": ex.stable, "lr": LR,
                })  # fmt: skip
    return pd.DataFrame(rows)


_COLS = {"quantized": ("exact_risk", "floor"), "clean": ("exact_risk_clean", "floor_clean")}


def fit_scaling(df: pd.DataFrame, convention: str) -> dict:
    """The fits of the module docstring, for one convention: ``law`` (A, p, C, q and their
    standard errors) and ``effective`` (one row per model and ε: ``M_eff/M`` at the largest M,
    the saturation size ``M_ε``, ``n_ε = N_eff/N`` with the standard error of its log), plus
    ``kappa_M`` (additive ``M_ε ∝ ε^(−κ)``, with its standard error)."""
    risk, floor = _COLS[convention]
    fp = df[df["model"] == "full precision"]
    floors = fp.drop_duplicates("M")
    A, p, se_lA, se_p = fit_power_law(floors["M"], floors[floor])
    big = int(df["M"].max())
    top = fp[fp["M"] == big]
    excess = top[risk] - top[floor]
    C, q, se_lC, se_q = fit_power_law(top["step"], excess)
    law = {"A": A, "p": p, "se_log_A": se_lA, "se_p": se_p,
           "C": C, "q": q, "se_log_C": se_lC, "se_q": se_q}  # fmt: skip
    rows = []
    for (model, eps), g in df[df["model"] != "full precision"].groupby(["model", "eps"]):
        fl = g.drop_duplicates("M")
        m_eff = effective_size(fl[floor], floors["M"], floors[floor], p)
        sat, se_sat = fit_saturation(fl["M"], m_eff)
        t = g[g["M"] == big]
        n_eff = effective_size(t[risk] - t[floor], top["step"], excess, q)
        n, se_n = log_mean(n_eff / t["step"].to_numpy())
        rows.append({
            "model": model, "eps": eps, "M_eff_ratio": float(m_eff[fl["M"] == big][0] / big),
            "M_eps": sat, "se_log_M_eps": se_sat, "n_eps": n, "se_log_n": se_n,
        })  # fmt: skip
    eff = pd.DataFrame(rows)
    add = eff[(eff["model"] == "additive") & np.isfinite(eff["M_eps"])]
    kappa = fit_power_law(add["eps"], add["M_eps"]) if len(add) >= 2 else (math.nan,) * 4
    return {"law": law, "effective": eff, "kappa_M": (kappa[1], kappa[3])}


def scaling_claims(df: pd.DataFrame) -> list[Claim]:
    """The follow-up's three claims, per convention, from :func:`fit_scaling`."""
    claims = []
    for conv in CONVENTIONS:
        fit = fit_scaling(df, conv)
        law, eff = fit["law"], fit["effective"]
        head = (
            f"law: p = {law['p']:.3f} ± {law['se_p']:.3f}, q = {law['q']:.3f} ± "
            f"{law['se_q']:.3f}; κ_M = {fit['kappa_M'][0]:.3f} ± {fit['kappa_M'][1]:.3f}. "
        )
        add, mult = (eff[eff["model"] == m].sort_values("eps") for m in MODELS)

        def ratios(g):
            return ", ".join(f"ε={r.eps:g}: {r.M_eff_ratio:.3f}" for r in g.itertuples())

        def scales(g):
            return ", ".join(
                f"ε={r.eps:g}: {r.n_eps:.3f} (±{r.se_log_n:.2g} in log)" for r in g.itertuples()
            )

        big = int(df["M"].max())
        claims.append(Claim(
            "precision_scaling",
            "Multiplicative quantization keeps the effective model size: M_eff = M.",
            conv,
            head + f"M_eff/M at M = {big}: {ratios(mult)}",
            keeps_size(mult["M_eff_ratio"]),
            "M_eff/M within 10 % of 1 at the largest M, for every ε",
        ))  # fmt: skip
        claims.append(Claim(
            "precision_scaling",
            "Additive quantization shrinks the effective model size.",
            conv,
            head + f"M_eff/M at M = {big}: {ratios(add)}",
            shrinks_size(add["M_eff_ratio"], add["eps"]),
            "at the largest M: M_eff/M < 1 and decreasing in ε, and < 0.9 at the largest ε",
        ))  # fmt: skip
        last = [g.iloc[-1] for g in (mult, add)]
        claims.append(Claim(
            "precision_scaling",
            "Both multiplicative and additive quantization shrink the effective data size.",
            conv,
            head + f"N_eff/N: multiplicative {scales(mult)}; additive {scales(add)}",
            all(shrinks_data(r["n_eps"], r["se_log_n"]) for r in last),
            "N_eff/N < 1 by more than 2 standard errors (of log n) at the largest ε, both models",
        ))  # fmt: skip
    return claims


def _figure(df: pd.DataFrame):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    fit = fit_scaling(df, "clean")
    law, eff = fit["law"], fit["effective"]
    fp = df[df["model"] == "full precision"]
    for j, (M, g) in enumerate(fp.groupby("M")):
        axes[0].plot(g["step"], g["exact_risk_clean"], color=f"C{j}", label=f"M = {M}")
        model = law["A"] * M ** -law["p"] + law["C"] * g["step"] ** -law["q"]
        axes[0].plot(g["step"], model, color=f"C{j}", ls="--", lw=0.9)
    axes[0].set(xscale="log", yscale="log", xlabel="steps N",
                ylabel="exact excess risk (clean, vs w*)")  # fmt: skip
    axes[0].set_title(
        f"full precision; dashed: A·M^-p + C·N^-q, p = {law['p']:.2f} ± {law['se_p']:.2f}, "
        f"q = {law['q']:.2f} ± {law['se_q']:.2f}",
        fontsize=8,
    )
    axes[0].legend(fontsize=7, frameon=False)
    for k, model in enumerate(MODELS):
        for j, (eps, g) in enumerate(df[df["model"] == model].groupby("eps")):
            fl = g.drop_duplicates("M")
            fl0 = fp.drop_duplicates("M")
            m_eff = effective_size(fl["floor_clean"], fl0["M"], fl0["floor_clean"], law["p"])
            axes[1].plot(fl["M"], m_eff / fl["M"], marker="os"[k], ls="-" if k == 0 else "--",
                         color=f"C{j}", label=f"{model} ε = {eps:g}")  # fmt: skip
    axes[1].axhline(1, color="0.4", lw=0.8)
    axes[1].set(xscale="log", yscale="log", xlabel="sketch size M", ylabel="M_eff / M")
    sizes = sorted(df["M"].unique())
    axes[1].set_xticks(sizes, [str(m) for m in sizes], minor=False)
    axes[1].set_xticks([], minor=True)
    kap = fit["kappa_M"]
    axes[1].set_title(f"effective model size (clean); additive M_ε ∝ ε^-κ, κ = {kap[0]:.2f} ± "
                      f"{kap[1]:.2f}", fontsize=8)  # fmt: skip
    axes[1].legend(fontsize=6, frameon=False)
    for k, model in enumerate(MODELS):
        g = eff[eff["model"] == model].sort_values("eps")
        err = [g["n_eps"] * (1 - np.exp(-g["se_log_n"].fillna(0))),
               g["n_eps"] * (np.exp(g["se_log_n"].fillna(0)) - 1)]  # fmt: skip
        axes[2].errorbar(g["eps"], g["n_eps"], yerr=err, marker="os"[k], capsize=3, label=model)
    axes[2].axhline(1, color="0.4", lw=0.8)
    axes[2].set(xscale="log", yscale="log", xlabel="ε (all five roles)", ylabel="N_eff / N")
    axes[2].set_title(f"effective data size at M = {int(df['M'].max())} (clean); ±1 SE",
                      fontsize=8)  # fmt: skip
    axes[2].legend(fontsize=7, frameon=False)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.25)
    return fig


@register(
    "precision_scaling",
    "Precision scaling laws (follow-up, arXiv 2602.19241): sketched model, exact risk over "
    "M × N × ε, fitted effective model size M_eff and data size N_eff, additive vs "
    "multiplicative",
)
def precision_scaling(size: str):
    df = _grid(_SIZES[size])
    return df, {"precision_scaling": _figure(df)}, scaling_claims(df)
