"""Corollary 4.2, reproduced: the ε conditions (per role, additive and multiplicative) under
which the bound keeps the full-precision rate, with unit constants, and the exact risk's
verdict on them — sufficient, necessary, or neither.

Setting: the paper's (``λ_i = i^-2``, ``w* = 1``, ``σ² = 1``, ``B = 1``, ``γ = 0.1``, Polyak),
each role quantized alone. A condition is *sufficient* if at ``ε*`` the exact risk is within
×2 of full precision's (the factor the conditions use for the bound), *necessary* if at
``4ε*`` it is not (:func:`~qlinreg.theory.corollary.condition_verdict`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from qlinreg.experiments.base import register
from qlinreg.problem import make_problem
from qlinreg.report import Claim
from qlinreg.sgd import SGDConfig
from qlinreg.table import CONVENTIONS
from qlinreg.theory.corollary import VERDICTS, corollary_4_2, corollary_4_2_exact

LR = 0.1
_SIZES = {
    "tiny": {"dim": 50, "steps": (10**3, 10**4)},
    "quick": {"dim": 200, "steps": (10**3, 10**4, 10**5)},
    "full": {"dim": 200, "steps": (10**3, 10**4, 10**5, 10**6)},
}


def _table(dim: int, steps) -> pd.DataFrame:
    problem = make_problem(dim)
    frames = []
    for n in steps:
        sgd = SGDConfig(LR, int(n))
        for conv in CONVENTIONS:
            cond = corollary_4_2(problem, sgd, convention=conv)
            frames.append(corollary_4_2_exact(problem, sgd, cond))
    df = pd.concat(frames, ignore_index=True)
    df["dim"], df["lr"], df["batch"] = dim, LR, 1
    return df


def corollary_claims(df: pd.DataFrame) -> list[Claim]:
    """Per convention: are the conditions sufficient (every role and kind, every N), and are
    they necessary? The measured text counts the verdicts and lists the exceptions."""
    wanted = {
        "sufficient": (VERDICTS[0], VERDICTS[1]),
        "necessary": (VERDICTS[0], VERDICTS[2]),
    }
    claims = []
    for conv in CONVENTIONS:
        g = df[(df["convention"] == conv) & df["verdict"].isin(VERDICTS)]
        counts = g["verdict"].value_counts()
        tally = ", ".join(f"{v}: {int(counts.get(v, 0))}" for v in VERDICTS)
        for word, ok in wanted.items():
            bad = g[~g["verdict"].isin(ok)]
            shown = "; ".join(
                f"{r.role} {r.kind} N={r.steps}: ε*={r.eps_max:.3g}, ×{r.ratio_at:.3g} at ε*, "
                f"×{r.ratio_beyond:.3g} at 4ε*"
                for r in bad.itertuples()
            )
            paper = "the paper claims this" if word == "sufficient" else "not claimed by the paper"
            criterion = (
                "exact risk within ×2 of full precision's at ε* for every condition"
                if word == "sufficient"
                else "exact risk above ×2 of full precision's at 4ε* for every condition"
            )
            claims.append(
                Claim(
                    "corollary_4_2",
                    f"Corollary 4.2's ε conditions (unit constants, each role alone) are {word} "
                    f"for quantized SGD to match the full-precision rate ({paper}).",
                    conv,
                    f"{len(g)} (role, kind, N) conditions — {tally}"
                    + (f". Not {word}: {shown}" if shown else ""),
                    bool(len(g) and bad.empty),
                    criterion,
                )
            )
    return claims


def _figure(df: pd.DataFrame):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    g = df[df["convention"] == "quantized"]
    markers = {"additive": "o", "multiplicative": "s"}
    for j, ((role, kind), h) in enumerate(g.groupby(["role", "kind"], sort=False)):
        color = f"C{j // 2}"
        left.plot(h["steps"], h["eps_max"], marker=markers[kind], color=color,
                  ls="-" if kind == "additive" else "--", label=f"{role}, {kind}")  # fmt: skip
        right.plot(h["steps"], h["ratio_at"], marker=markers[kind], color=color,
                   ls="-" if kind == "additive" else "--")  # fmt: skip
        right.plot(h["steps"], h["ratio_beyond"], marker=markers[kind], color=color, ls=":",
                   alpha=0.6)  # fmt: skip
    right.axhline(2, color="0.3", lw=1)
    left.set(xscale="log", yscale="log", xlabel="steps N", ylabel="ε* (Corollary 4.2)")
    left.set_title("largest ε keeping the unit-constant bound within ×2 of full precision",
                   fontsize=9)  # fmt: skip
    right.set(xscale="log", yscale="log", xlabel="steps N",
              ylabel="exact risk ÷ full precision's")  # fmt: skip
    right.set_title("exact risk at ε* (solid/dashed) and 4ε* (dotted); line: ×2 (quantized "
                    "inputs)", fontsize=9)  # fmt: skip
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.25)
    left.legend(fontsize=7, frameon=False, ncol=2)
    return fig


@register(
    "corollary_4_2",
    "Corollary 4.2: per role and error model, the largest ε keeping the unit-constant bound "
    "within ×2 of full precision (d = 200, γ = 0.1), judged by the exact risk: sufficient, "
    "necessary, or neither",
)
def corollary(size: str):
    sz = _SIZES[size]
    df = _table(sz["dim"], sz["steps"])
    return df, {"corollary_4_2": _figure(df)}, corollary_claims(df)
