"""Figures: risk against steps on log–log axes, Monte Carlo band, exact line, bound dashed."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from qlinreg.table import CONVENTIONS  # noqa: E402

__all__ = ["bound_validity", "plot_pareto", "plot_risk", "plot_spectrum", "save"]


def plot_risk(
    df: pd.DataFrame,
    *,
    by: str | None = None,
    convention: str = "quantized",
    ax=None,
    title: str | None = None,
    labels: Iterable[str] | None = None,
):
    """Log–log excess risk vs step, one curve per value of column ``by``.

    Monte Carlo: mean with a ±1 SE band (where ``risk_se`` is finite); ``exact_risk*`` columns
    as a solid line (with a ±1 SE band and the legend saying so when its moments were estimated
    from samples, ``exact_moments``); ``bound*`` columns dashed (unit constants: an upper shape,
    not a prediction), grey and dotted where ``bound_valid`` is false (outside the hypothesis).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    mean, se, exact, bound, ylabel = CONVENTIONS[convention]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    groups = [(None, df)] if by is None else list(df.groupby(by, sort=False))
    names = list(labels) if labels is not None else [None] * len(groups)
    for (key, g), name in zip(groups, names, strict=True):
        g = g.sort_values("step")
        label = name if name is not None else (str(key) if key is not None else "Monte Carlo")
        color = None
        if mean in g and g[mean].notna().any():
            (line,) = ax.plot(g["step"], g[mean], marker="o", ms=2.5, lw=1.2, label=label)
            color = line.get_color()
            if se in g and np.isfinite(g[se]).any():
                lo = np.clip(g[mean] - g[se], a_min=np.finfo(float).tiny, a_max=None)
                ax.fill_between(g["step"], lo, g[mean] + g[se], color=color, alpha=0.25, lw=0)
        if exact in g and g[exact].notna().any():
            kw = {"label": f"{label} (exact)"} if color is None else {}
            (line,) = ax.plot(g["step"], g[exact], color=color, lw=1.0, alpha=0.9, **kw)
            color = line.get_color()
            band = g.get(f"{exact}_se")
            if band is not None and (band > 0).any():
                ax.fill_between(
                    g["step"], g[exact] - band, g[exact] + band, color=color, alpha=0.15
                )
        if bound in g and g[bound].notna().any():
            valid = bound_validity(g)
            ax.plot(g["step"], g[bound].where(valid), color=color, ls="--", lw=1.0, alpha=0.8)
            if not valid.all():
                ax.plot(g["step"], g[bound].where(~valid), color="0.6", ls=":", lw=1.0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step N")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    handles, names = ax.get_legend_handles_labels()
    inside = bound_validity(df)
    how = {"estimated": " (moment-estimated, ±1 SE)", "surrogate": " (surrogates of the formats)"}
    kind = df["exact_moments"].iloc[0] if "exact_moments" in df and len(df) else "exact"
    exact_text = "exact risk" + how.get(kind, "")
    for col, style, text in ((exact, "-", exact_text), (bound, "--", "bound (unit constants)")):
        if col in df and df[col][inside if col == bound else df.index].notna().any():
            handles.append(Line2D([], [], color="0.3", ls=style))
            names.append(text)
    if bound in df and df[bound].notna().any() and not inside.all():
        handles.append(Line2D([], [], color="0.6", ls=":"))
        names.append("outside the bound's hypothesis (γ ≥ 1/(α tr H^(q))): not a bound")
    ax.legend(handles, names, fontsize=8, frameon=False)
    return ax


def bound_validity(df: pd.DataFrame) -> pd.Series:
    """Rows whose bound's hypotheses hold (``bound_valid``; all rows if the column is absent)."""
    if "bound_valid" not in df:
        return pd.Series(True, index=df.index)
    return df["bound_valid"].fillna(True).astype(bool)


def plot_spectrum(df: pd.DataFrame, *, ax=None, title: str | None = None):
    """Log–log ``λ_i`` of ``H`` (black) and of ``H^(q)`` per ``quantizer``: closed form as a
    line where it exists, the estimate from quantized samples as points with ±1 SE bars."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    first = df[df["quantizer"] == df["quantizer"].iloc[0]]
    ax.plot(first["index"], first["lambda"], color="black", lw=1.5, label="H (full precision)")
    for name, g in df.groupby("quantizer", sort=False):
        color = None
        if g["lambda_q"].notna().any():
            (line,) = ax.plot(g["index"], g["lambda_q"], lw=1.2, label=f"{name} (closed form)")
            color = line.get_color()
        if "lambda_q_eigenbasis" in g and g["lambda_q_eigenbasis"].notna().any():
            ax.plot(
                g["index"], g["lambda_q_eigenbasis"], lw=0.9, ls="--", color=color,
                label=f"{name} (were it quantized in the eigenbasis)",
            )  # fmt: skip
        if "lambda_q_eig" in g and "lambda_q_est" not in g:
            ax.plot(
                g["index"], g["lambda_q_eig"], "o", ms=2, color=color, alpha=0.7,
                label=f"{name} (estimated)",
            )  # fmt: skip
        if "lambda_q_est" in g:
            ax.errorbar(
                g["index"], g["lambda_q_est"], yerr=g["lambda_q_se"], fmt="o", ms=2, lw=0.6,
                color=color, alpha=0.7, label=f"{name} (estimated)",
            )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("eigenvalue")
    if title:
        ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_pareto(advice, *, ax=None):
    """The advisor's cost–penalty plane: every joint scheme over the per-role fronts (grey:
    penalty estimated as the sum of penalties alone; blue: exact joint penalty), the Pareto
    front of the checked ones, the budget, the recommendation and its Monte Carlo check."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    j = advice.joint
    floor = max(advice.budget_abs * 1e-4, 1e-300)
    est = j[~j["checked"]]
    ax.scatter(est["cost_fraction"], np.maximum(est["penalty"], floor), s=8, color="0.75",
               label="schemes (sum of penalties alone)")  # fmt: skip
    chk = j[j["checked"]]
    ax.scatter(chk["cost_fraction"], np.maximum(chk["penalty"], floor), s=16, color="C0",
               label="schemes (exact joint penalty)")  # fmt: skip
    front = chk.sort_values("cost_fraction")
    front = front[front["penalty"] <= front["penalty"].cummin()]
    ax.step(front["cost_fraction"], np.maximum(front["penalty"], floor), where="post",
            color="C0", lw=1)  # fmt: skip
    ax.axhline(advice.budget_abs, color="C3", ls="--", lw=1, label="budget")
    rec = advice.recommended
    ax.plot(rec["cost_fraction"], max(rec["penalty"], floor), "*", ms=14, color="C3",
            label="recommended (predicted)")  # fmt: skip
    ver = advice.verification
    if len(ver):
        for _, v in ver[ver["status"] == "ok"].iterrows():
            cost = rec["cost_fraction"] if v["scheme"] == "recommended" else (
                advice.runner_up["cost_fraction"])  # fmt: skip
            ax.errorbar(cost, max(v["penalty"], floor), yerr=v["penalty_se"], fmt="o",
                        mfc="none", color="k", capsize=3)  # fmt: skip
        ax.plot([], [], "o", mfc="none", color="k", label="Monte Carlo, real formats (± SE)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bits per step / all-FP32")
    ax.set_ylabel(f"penalty ({advice.budget.convention} inputs)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, frameon=False)
    return ax


def save(fig_or_ax, path: str | Path, *, formats: Iterable[str] = ("png",)) -> list[Path]:
    """Save a figure (or an axis's figure) next to ``path`` in each format; returns the paths."""
    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = base.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=150)
        out.append(p)
    plt.close(fig)
    return out
