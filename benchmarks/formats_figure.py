"""Docs figure (docs/formats.md): risk against N for real FP8/INT8 formats on the data, next to
the exact risk of each format's idealized surrogate.

Only the data are quantized (``Q_d``), with stochastic rounding, at ``d ∈ {200, 2000}``, with
``λ_i = i^-2``, ``w* = 1``, ``σ² = 1``, ``B = 1``, ``γ = 0.1``, ``N = 10^4`` and the Polyak
average. Each format gets a Monte Carlo run of the real format (mean ± SE over trials). Its
surrogate is :func:`qlinreg.experiments.formats.surrogate`: the model that ``measure_epsilon``
prefers on the same features, with ε matched to the measured error energy. The surrogate's
risk is computed exactly, and so is the full-precision risk.

The penalty (risk − full precision) is estimated with paired trials: a full-precision Monte Carlo
run with the same seed sees the same features and label noise, so the difference keeps only the
quantization's own noise (and, for the quantized-input risk, that of the engine's 64 probe
rows). The script writes the PNG and prints the Markdown table of the final-N values, with
the exact risk of the other model at the same error energy for comparison.

    python benchmarks/formats_figure.py [--trials-200 T] [--trials-2000 T] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qlinreg import Scheme, SGDConfig, exact_risk, make_problem, parse_quantizer, prng, simulate
from qlinreg.experiments.formats import LR
from qlinreg.plot import plot_risk, save
from qlinreg.quantize import measure_epsilon
from qlinreg.quantize.measure import error_variance, rowwise
from qlinreg.theory import surrogate

FORMATS = ("int8", "fp8_e4m3", "fp8_e5m2", "mxfp8_e4m3")
DIMS = (200, 2000)
STEPS = 10_000
ROWS = 2000  # feature rows for the measured ε
MIN_STEP = 100  # the penalty panels start here
SEED = 5


def _mean_se(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a.mean(axis=1), a.std(axis=1, ddof=1) / math.sqrt(a.shape[1])


def run(dim: int, trials: int) -> pd.DataFrame:
    """Per checkpoint: Monte Carlo of each real format, its paired penalty over a full-precision
    run, and the exact risk of its surrogate, of the other same-energy model and of full
    precision."""
    problem, sgd = make_problem(dim), SGDConfig(LR, STEPS)
    X = problem.features(prng.key(31), ROWS)
    fp = simulate(problem, None, sgd, trials=trials, seed=SEED)
    steps = fp.steps
    full = exact_risk(problem, None, sgd, steps)
    frames = [
        fp.to_frame()[["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]].assign(
            exact_risk=full.exact_risk, exact_risk_clean=full.exact_risk_clean
        )
    ]
    frames[0] = frames[0].assign(format="full precision", surrogate="—", other="—")
    for f, fmt in enumerate(FORMATS):
        q = parse_quantizer(fmt)
        model = measure_epsilon(rowwise(q), X).model
        other = "additive" if model == "multiplicative" else "multiplicative"
        delta = error_variance(q, X, seed=40 + f)
        sq, sq_other = surrogate(model, delta, problem), surrogate(other, delta, problem)
        t0 = time.perf_counter()
        mc = simulate(problem, Scheme(data=q), sgd, trials=trials, seed=SEED)
        print(f"d={dim} {fmt}: {trials} trials in {time.perf_counter() - t0:.1f} s", flush=True)
        ex = exact_risk(problem, Scheme(data=sq), sgd, steps)
        pen, pen_se = _mean_se(mc.risk - fp.risk)
        pen_c, pen_c_se = _mean_se(mc.risk_clean - fp.risk_clean)
        frames.append(
            mc.to_frame()[["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]]
            .assign(
                exact_risk=ex.exact_risk,
                exact_risk_clean=ex.exact_risk_clean,
                other_risk=exact_risk(problem, Scheme(data=sq_other), sgd, steps).exact_risk,
                penalty_mc=pen,
                penalty_mc_se=pen_se,
                penalty_clean_mc=pen_c,
                penalty_clean_mc_se=pen_c_se,
                penalty=ex.exact_risk - full.exact_risk,
                penalty_clean=ex.exact_risk_clean - full.exact_risk_clean,
            )
            .assign(format=fmt, surrogate=sq.label, other=sq_other.label)
        )
    return pd.concat(frames, ignore_index=True).assign(d=dim)


def figure(df: pd.DataFrame):
    fig, axes = plt.subplots(len(DIMS), 2, figsize=(12, 4.4 * len(DIMS)), constrained_layout=True)
    for (ax_risk, ax_pen), dim in zip(axes, DIMS, strict=True):
        g = df[df["d"] == dim]
        plot_risk(g, by="format", ax=ax_risk, title=f"d = {dim}: Monte Carlo ±1 SE, exact lines")
        for k, fmt in enumerate(FORMATS):
            h = g[(g["format"] == fmt) & (g["step"] >= MIN_STEP)]
            color = f"C{k + 1}"  # as in plot_risk, where full precision comes first
            ax_pen.errorbar(
                h["step"], h["penalty_mc"], yerr=h["penalty_mc_se"], fmt="o", ms=3, capsize=2,
                color=color, label=fmt,
            )  # fmt: skip
            ax_pen.plot(h["step"], h["penalty"], color=color)
        ax_pen.axhline(0, color="0.5", lw=0.8)
        ax_pen.set(xscale="log", xlabel="step N")
        ax_pen.set_ylabel("penalty: risk − full precision (quantized inputs)")
        ax_pen.set_title(
            f"d = {dim}: Monte Carlo, paired with full precision (points, ±1 SE) vs surrogate "
            "(line)",
            fontsize=9,
        )
        ax_pen.grid(True, which="both", alpha=0.25)
        ax_pen.legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"Data quantized by real formats (stochastic rounding), B = 1, γ = {LR}, λ_i = i^-2",
        fontsize=10,
    )
    return fig


def table(df: pd.DataFrame) -> str:
    last = df[df["step"] == STEPS]
    lines = [
        "| d | format | surrogate | R_q Monte Carlo | R_q surrogate | penalty R_q: Monte Carlo "
        "| surrogate | other model | penalty R: Monte Carlo | surrogate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in last.itertuples():
        if r.format == "full precision":
            lines.append(
                f"| {r.d} | full precision | — | {r.risk_mean:.5f} ± {r.risk_se:.5f} | "
                f"{r.exact_risk:.5f} (exact) | — | — | — | — | — |"
            )
            continue
        lines.append(
            f"| {r.d} | {r.format} | {r.surrogate} | {r.risk_mean:.5f} ± {r.risk_se:.5f} | "
            f"{r.exact_risk:.5f} | {r.penalty_mc:.5f} ± {r.penalty_mc_se:.5f} | "
            f"{r.penalty:.5f} | {r.other_risk - r.exact_risk + r.penalty:.5f} ({r.other}) | "
            f"{r.penalty_clean_mc:.6f} ± {r.penalty_clean_mc_se:.6f} | {r.penalty_clean:.6f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials-200", type=int, default=96)
    ap.add_argument("--trials-2000", type=int, default=40)
    ap.add_argument("--out", default="docs/img/formats_risk.png")
    args = ap.parse_args()
    trials = {200: args.trials_200, 2000: args.trials_2000}
    df = pd.concat([run(d, trials[d]) for d in DIMS], ignore_index=True)
    save(figure(df), args.out)
    print(table(df))


if __name__ == "__main__":
    main()
