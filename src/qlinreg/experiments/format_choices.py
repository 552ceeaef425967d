"""What the choices inside a 4-bit format do to learning (SPEC §3, §5): NVFP4 vs MXFP4 vs FP4
with a per-tensor scale, the MX scale rule (OCP floor vs rceil), stochastic rounding with
``k`` random bits, and round-to-nearest vs stochastic rounding — each on the data, the output
gradients and the parameters, one role at a time.

Setting (SPEC §5): ``λ_i = i^-2``, ``w* = 1``, ``σ² = 1``, ``B = 1``, ``γ = 0.1``, Polyak
average, ``d = 200`` (the paper's) and ``d = 1000``. The measured quantity is the *penalty*:
the risk at ``N`` minus the full-precision risk, on paired trials (one seed for every run: the
same features and label noise), in both conventions. Two variants are compared by the paired
difference of their penalties, with its standard error over trials. At ``B = 1`` a gradient is
a one-element vector: NVFP4 gets its role default there, a delayed tensor scale (a per-tensor
scale of the element itself would represent it exactly).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qlinreg.experiments.base import finished, register
from qlinreg.pipeline import RunSpec, run
from qlinreg.problem import make_problem
from qlinreg.quantize import Scheme, parse_quantizer
from qlinreg.report import Claim
from qlinreg.sgd import SGDConfig

__all__ = ["VARIANTS", "paired_verdict"]

LR = 0.1
SEED = 29
Z = 3.0  # a paired difference counts as resolved beyond Z standard errors

VARIANTS: dict[str, tuple[str, str | None]] = {
    # name: (format text, the variant it is compared with; None: full precision only)
    "mxfp4": ("mxfp4", None),
    "nvfp4": ("nvfp4", "mxfp4"),
    "fp4 tensor": ("fp4_e2m1:tensor", "mxfp4"),
    "mxfp4 rceil": ("mxfp4:rceil", "mxfp4"),
    "mxfp4 SR k=2": ("mxfp4:srbits=2", "mxfp4"),
    "mxfp4 SR k=4": ("mxfp4:srbits=4", "mxfp4"),
    "mxfp4 SR k=8": ("mxfp4:srbits=8", "mxfp4"),
    "mxfp4 nearest": ("mxfp4:nearest_even", "mxfp4"),
    "nvfp4 nearest": ("nvfp4:nearest_even", "nvfp4"),
}
"""The variants: MXFP4 (OCP floor rule, exact stochastic rounding) is the reference."""

_SIZES = {  # trials: per d
    "tiny": {"dims": (24,), "steps": 150, "trials": (16,), "roles": ("params",),
             "variants": ("mxfp4", "mxfp4 SR k=2")},
    "quick": {"dims": (200,), "steps": 1000, "trials": (32,), "roles": ("grads",),
              "variants": ("mxfp4", "mxfp4 rceil", "mxfp4 SR k=2")},
    "full": {"dims": (200, 1000), "steps": 10_000, "trials": (128, 64),
             "roles": ("data", "grads", "params"), "variants": tuple(VARIANTS)},
}  # fmt: skip
_CONV = {"quantized": "risk", "clean": "risk_clean"}


def paired_verdict(diffs: list[float], ses: list[float], sign: int, z: float = Z) -> bool:
    """Whether every paired difference is resolved in the direction ``sign``: ``sign = +1``,
    all ``diff > z·SE``; ``−1``, all ``diff < −z·SE``; ``0``, all ``|diff| ≤ z·SE``
    (indistinguishable). False for no differences."""
    if not diffs:
        return False
    d, s = np.asarray(diffs, float), np.asarray(ses, float)
    if sign > 0:
        return bool(np.all(d > z * s))
    if sign < 0:
        return bool(np.all(d < -z * s))
    return bool(np.all(np.abs(d) <= z * s))


def _mean_se(a: np.ndarray) -> tuple[float, float]:
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


def _risks(problem, scheme, sgd, trials) -> tuple[dict[str, np.ndarray], dict]:
    """Per-trial risks at N in both conventions, and the saturation of the run's formats."""
    spec = RunSpec(problem, scheme, sgd, trials=trials, seed=SEED, checkpoints=[sgd.steps])
    sim = finished(run(spec)).simulation
    return {c: getattr(sim, attr)[-1] for c, attr in _CONV.items()}, sim.saturation


def _rows(cfg: dict) -> tuple[pd.DataFrame, dict]:
    """One row per (d, role, variant): penalties and paired differences; also the per-trial
    penalties keyed by (d, role, variant) for the claims."""
    sgd = SGDConfig(LR, cfg["steps"])
    rows, pens = [], {}
    for d, trials in zip(cfg["dims"], cfg["trials"], strict=True):
        problem = make_problem(d)
        full, _ = _risks(problem, None, sgd, trials)
        for role in cfg["roles"]:
            for name in cfg["variants"]:
                text, ref = VARIANTS[name]
                scheme = Scheme(**{role: parse_quantizer(text, role)})
                risk, sat = _risks(problem, scheme, sgd, trials)
                pens[d, role, name] = {c: risk[c] - full[c] for c in _CONV}
                label = scheme.labels_by_role()[role]
                row = {"d": d, "role": role, "variant": name, "format": label,
                       "step": cfg["steps"], "trials": trials, "compared_to": ref or "",
                       "risk_full": float(full["quantized"].mean()),
                       "risk_full_clean": float(full["clean"].mean()),
                       "saturated": sat[role][0], "underflow": sat[role][1]}  # fmt: skip
                for conv, tail in (("quantized", ""), ("clean", "_clean")):
                    row[f"penalty{tail}"], row[f"penalty{tail}_se"] = _mean_se(
                        pens[d, role, name][conv]
                    )
                    diff = (np.nan, np.nan)
                    if ref in cfg["variants"]:
                        diff = _mean_se(pens[d, role, name][conv] - pens[d, role, ref][conv])
                    row[f"diff{tail}"], row[f"diff{tail}_se"] = diff
                rows.append(row)
    return pd.DataFrame(rows), pens


# (claim, variant, sign of its difference to the reference for the claim to hold)
_CLAIMS = (
    ("Stochastic rounding with k = 2 random bits is biased enough to raise the penalty over "
     "exact stochastic rounding (MXFP4).", "mxfp4 SR k=2", 1),
    ("Stochastic rounding with k = 4 random bits is biased enough to raise the penalty over "
     "exact stochastic rounding (MXFP4).", "mxfp4 SR k=4", 1),
    ("Stochastic rounding with k = 8 random bits is as good as exact stochastic rounding "
     "(MXFP4).", "mxfp4 SR k=8", 0),
    ("NVFP4 (E4M3 scales per 16, FP32 per tensor) has a lower penalty than MXFP4 (E8M0 scales "
     "per 32).", "nvfp4", -1),
    ("FP4 with one power-of-two scale per tensor has a higher penalty than MXFP4.",
     "fp4 tensor", 1),
    ("The rceil MX scale rule (no block maximum saturates) lowers MXFP4's penalty below the "
     "OCP floor rule's.", "mxfp4 rceil", -1),
    ("Round-to-nearest raises MXFP4's penalty over stochastic rounding.", "mxfp4 nearest", 1),
    ("Round-to-nearest raises NVFP4's penalty over stochastic rounding.", "nvfp4 nearest", 1),
)  # fmt: skip
_DIRECTION = {1: "higher than", -1: "lower than", 0: "within ±3 SE of"}


def _claims(df: pd.DataFrame) -> list[Claim]:
    claims = []
    for text, variant, sign in _CLAIMS:
        g = df[df["variant"] == variant]
        if g.empty or g["diff"].isna().all():
            continue
        ref = g["compared_to"].iloc[0]
        for conv, tail in (("quantized", ""), ("clean", "_clean")):
            diff, se = g[f"diff{tail}"].tolist(), g[f"diff{tail}_se"].tolist()
            measured = "; ".join(
                f"{r.role} d={r.d}: {getattr(r, 'diff' + tail):+.3g} ± "
                f"{getattr(r, 'diff' + tail + '_se'):.2g}"
                for r in g.itertuples()
            )
            claims.append(
                Claim(
                    "format_choices",
                    text,
                    conv,
                    f"penalty of {variant} minus {ref} at N={int(g['step'].iloc[0])} "
                    f"({'/'.join(str(t) for t in g['trials'].unique())} paired trials): "
                    f"{measured}",
                    paired_verdict(diff, se, sign),
                    f"on every (role, d): the paired difference is {_DIRECTION[sign]} "
                    f"{'0 by more than 3 SE' if sign else '0'}",
                )
            )
    return claims


def _figure(df: pd.DataFrame):
    dims = sorted(df["d"].unique())
    roles = list(dict.fromkeys(df["role"]))
    variants = list(dict.fromkeys(df["variant"]))
    fig, axes = plt.subplots(2, len(dims), figsize=(6.5 * len(dims), 7.5), squeeze=False)
    width = 0.8 / len(roles)
    for j, d in enumerate(dims):
        for i, (conv, tail) in enumerate((("quantized", ""), ("clean", "_clean"))):
            ax = axes[i, j]
            for k, role in enumerate(roles):
                g = df[(df["d"] == d) & (df["role"] == role)].set_index("variant")
                g = g.reindex(variants)
                x = np.arange(len(variants)) + (k - (len(roles) - 1) / 2) * width
                ax.bar(x, g[f"penalty{tail}"], width, yerr=g[f"penalty{tail}_se"], label=role)
            ax.set_xticks(np.arange(len(variants)), variants, rotation=35, ha="right", fontsize=8)
            ax.set_yscale("symlog", linthresh=1e-5)
            ax.set_ylabel(f"penalty at N ({conv} inputs)")
            ax.set_title(f"d = {d}")
            ax.grid(True, axis="y", which="both", alpha=0.25)
            ax.legend(fontsize=8)
    fig.suptitle(
        "4-bit format choices, one role at a time (paired with full precision, ±1 SE)", fontsize=10
    )
    fig.tight_layout()
    return fig


@register(
    "format_choices",
    "NVFP4 vs MXFP4 vs FP4 per tensor, MX floor vs rceil, k-bit stochastic rounding and "
    "nearest vs stochastic, on data, gradients and parameters: paired penalties at N",
)
def format_choices(size: str = "full"):
    cfg = _SIZES[size]
    df, _ = _rows(cfg)
    return df, {"format_choices": _figure(df)}, _claims(df)
