"""The paper's experiments (SPEC §5): Q1 (ε sweep at d = 200) and Q2 (d sweep at ε = 0.01).

Setting: ``λ_i = i^-2``, ``w* = 1``, ``σ² = 1``, ``B = 1``, ``γ = 0.1`` (γ·tr(H) = 0.16, well
inside the stable range), all five roles quantized with the same idealized quantizer.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from qlinreg.experiments.base import register
from qlinreg.plot import plot_risk
from qlinreg.problem import make_problem
from qlinreg.quantize import Additive, Multiplicative, Scheme
from qlinreg.sgd import SGDConfig, simulate

LR = 0.1
MODELS = {"additive": Additive, "multiplicative": Multiplicative}


def _size(quick: bool) -> dict:
    return {"steps": 10_000, "trials": 32} if quick else {"steps": 100_000, "trials": 100}


def _run(dim: int, model: str, eps: float, size: dict, seed: int) -> pd.DataFrame:
    problem = make_problem(dim)
    scheme = Scheme.all(MODELS[model](eps))
    res = simulate(problem, scheme, SGDConfig(LR, size["steps"]), trials=size["trials"], seed=seed)
    df = res.to_frame()
    df["model"], df["eps"], df["d"] = model, eps, dim
    return df


def _panels(df: pd.DataFrame, by: str, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, constrained_layout=True)
    for ax, model in zip(axes, MODELS, strict=True):
        sub = df[df["model"] == model]
        labels = [f"{by} = {v:g}" for v in sub[by].unique()]
        plot_risk(sub, by=by, ax=ax, title=f"{title}: {model}", labels=labels)
    return fig


@register(
    "paper_q1", "Q1: risk vs N, d = 200, ε ∈ {0, 1e-3, 5e-3, 1e-2}, additive vs multiplicative"
)
def paper_q1(quick: bool):
    size = _size(quick)
    frames = [
        _run(200, model, eps, size, seed=1) for model in MODELS for eps in (0.0, 1e-3, 5e-3, 1e-2)
    ]
    df = pd.concat(frames, ignore_index=True)
    return df, {"paper_q1": _panels(df, "eps", "Q1, d = 200")}


@register(
    "paper_q2", "Q2: risk vs N, ε = 0.01, d ∈ {50, 100, 200, 400}, additive vs multiplicative"
)
def paper_q2(quick: bool):
    size = _size(quick)
    frames = [_run(d, model, 0.01, size, seed=2) for model in MODELS for d in (50, 100, 200, 400)]
    df = pd.concat(frames, ignore_index=True)
    return df, {"paper_q2": _panels(df, "d", "Q2, ε = 0.01")}
