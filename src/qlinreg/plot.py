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

__all__ = ["plot_risk", "plot_spectrum", "save"]


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
    not a prediction).
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
            ax.plot(g["step"], g[bound], color=color, ls="--", lw=1.0, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step N")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(textwrap.fill(title, 70), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    handles, names = ax.get_legend_handles_labels()
    how = {"estimated": " (moment-estimated, ±1 SE)", "surrogate": " (surrogates of the formats)"}
    kind = df["exact_moments"].iloc[0] if "exact_moments" in df and len(df) else "exact"
    exact_text = "exact risk" + how.get(kind, "")
    for col, style, text in ((exact, "-", exact_text), (bound, "--", "bound (unit constants)")):
        if col in df and df[col].notna().any():
            handles.append(Line2D([], [], color="0.3", ls=style))
            names.append(text)
    ax.legend(handles, names, fontsize=8, frameon=False)
    return ax


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
