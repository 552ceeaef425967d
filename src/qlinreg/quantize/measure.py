"""Measured ε of a quantizer on actual values, and the paper's bits → ε mapping (SPEC §3).

The paper models a format by one number: additive ``E[(Q(u)−u)² | u] = ε`` (INT-like) or
multiplicative ``= ε·u²`` (FP-like), with the rough mapping INT ``b`` bits → ``ε ≈ 2^(−2b)``,
FP ``m`` mantissa bits → ``ε ≈ 2^(−2m)``. :func:`measure_epsilon` estimates both ε's from the
quantizer's actual errors and decides which model describes them better:

- ``eps_additive = mean (Q(u) − u)²`` over all entries;
- ``eps_multiplicative = mean ((Q(u) − u)/u)²`` over the entries with ``u ≠ 0``;
- model choice: the nonzero ``|u|`` are cut into equal-count bins ``j``; per bin the mean
  squared error ``m_j`` and mean ``v_j = u²``. Additive predicts ``m_j`` constant,
  multiplicative ``m_j/v_j`` constant; each model's misfit is the variance across bins of
  ``log m_j`` (resp. ``log(m_j/v_j)``), i.e. the residual of its best one-parameter fit on a
  log scale (scale-free, so bins of tiny and large ``|u|`` weigh alike). The smaller misfit
  wins. ``slope`` is the least-squares slope of ``log m_j`` on ``log v_j``: 0 is purely
  additive, 1 purely multiplicative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from qlinreg import prng
from qlinreg.problem import make_problem
from qlinreg.quantize.formats import (
    FLOAT_PRESETS,
    FloatFormat,
    IntFormat,
    MXFormat,
    NumberFormat,
    NVFP4Format,
)
from qlinreg.quantize.rounding import check_rounding
from qlinreg.quantize.scheme import Quantizer, parse_quantizer

__all__ = [
    "TABLE_FORMATS",
    "EpsilonEstimate",
    "error_variance",
    "estimate_epsilon",
    "formats_table",
    "measure_epsilon",
    "paper_epsilon",
    "rowwise",
]

TABLE_FORMATS: tuple[str, ...] = (
    "int8",
    "int4",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_e4m3fnuz",
    "fp8_e5m2fnuz",
    "fp6_e3m2",
    "fp6_e2m3",
    "fp4_e2m1",
    "fp4_e2m1:tensor",
    "mxfp8_e4m3",
    "mxfp8_e4m3:rceil",
    "mxfp8_e5m2",
    "mxfp6_e3m2",
    "mxfp6_e2m3",
    "mxfp4",
    "mxfp4:rceil",
    "mxint8",
    "nvfp4",
)
"""Formats of the ``qlinreg formats`` table, in order."""


@dataclass(frozen=True)
class EpsilonEstimate:
    """ε of a quantizer measured on samples (see the module docstring for the criterion).

    Attributes:
        eps_additive, eps_additive_se: ``mean (Q(u)−u)²`` and its standard error.
        eps_multiplicative, eps_multiplicative_se: ``mean ((Q(u)−u)/u)²`` over ``u ≠ 0``.
        model: ``additive``, ``multiplicative`` or ``exact`` (no error at all).
        slope: slope of ``log E[err² | u]`` on ``log u²`` across bins (0 additive, 1 mult.).
        misfit_additive, misfit_multiplicative: variance across bins of ``log m_j`` and
            ``log(m_j/v_j)``.
        bias: ``mean (Q(u)−u) / rms(u)``: 0 for unbiased rounding.
        n: number of entries used.
    """

    eps_additive: float
    eps_additive_se: float
    eps_multiplicative: float
    eps_multiplicative_se: float
    model: str
    slope: float
    misfit_additive: float
    misfit_multiplicative: float
    bias: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_se(a: np.ndarray) -> tuple[float, float]:
    if a.size == 0:
        return math.nan, math.nan
    se = a.std(ddof=1) / math.sqrt(a.size) if a.size > 1 else math.nan
    return float(a.mean()), float(se)


def measure_epsilon(
    quantizer: Quantizer | str,
    samples,
    *,
    key: jax.Array | None = None,
    bins: int = 32,
) -> EpsilonEstimate:
    """Estimate the additive and multiplicative ε of ``quantizer`` on ``samples`` (SPEC §3).

    Args:
        quantizer: a quantizer, or its text form (e.g. ``"fp8_e4m3:nearest_even"``).
        samples: float32/float64 array; its last axis is the paper's vector.
        key: ``uint32[2]`` :mod:`qlinreg.prng` key for the quantizer (default ``key(0)``).
        bins: number of equal-count ``|u|`` bins for the model choice (≥ 2).
    """
    q = parse_quantizer(quantizer) if isinstance(quantizer, str) else quantizer
    if not callable(q):
        raise TypeError(f"quantizer must be a quantizer or its text form, got {quantizer!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer ≥ 2, got {bins!r}")
    u = jnp.asarray(samples)
    if u.dtype not in (jnp.float32, jnp.float64) or u.size == 0:
        raise TypeError(
            f"samples must be a non-empty float32/float64 array, got {u.dtype} {u.shape}"
        )
    key = prng.key(0) if key is None else key
    uq = jax.jit(lambda k, x: q(k, x))(key, u)
    return _estimate(np.asarray(u), np.asarray(uq), bins)


def estimate_epsilon(u, uq, *, bins: int = 32) -> EpsilonEstimate:
    """The statistics of :func:`measure_epsilon` from values ``u`` and their quantized ``uq``
    (already computed: e.g. each tensor of a batch quantized on its own)."""
    return _estimate(np.asarray(u), np.asarray(uq), bins)


def _estimate(u: np.ndarray, uq: np.ndarray, bins: int) -> EpsilonEstimate:
    """The statistics of :func:`measure_epsilon` from samples ``u`` and their quantized ``uq``."""
    u64 = np.asarray(u, np.float64).ravel()
    err = np.asarray(uq, np.float64).ravel() - u64
    ok = np.isfinite(u64) & np.isfinite(err)
    u64, err = u64[ok], err[ok]
    if u64.size == 0:
        raise ValueError("no finite sample survived quantization; cannot measure ε")
    e2 = err**2
    nz = u64 != 0
    eps_a, se_a = _mean_se(e2)
    eps_m, se_m = _mean_se(e2[nz] / u64[nz] ** 2)
    rms = math.sqrt(float(np.mean(u64**2)))
    bias = float(np.mean(err)) / rms if rms > 0 else math.nan

    slope = misfit_a = misfit_m = math.nan
    if not np.any(e2 > 0):
        model = "exact"
    else:
        order = np.argsort(np.abs(u64[nz]))
        groups = np.array_split(order, min(bins, order.size))
        m = np.array([e2[nz][g].mean() for g in groups])
        v = np.array([(u64[nz][g] ** 2).mean() for g in groups])
        keep = (m > 0) & (v > 0)
        lm, lv = np.log(m[keep]), np.log(v[keep])
        if lm.size >= 2:
            misfit_a, misfit_m = float(np.var(lm)), float(np.var(lm - lv))
            slope = float(np.polyfit(lv, lm, 1)[0]) if np.ptp(lv) > 0 else math.nan
        model = "multiplicative" if misfit_m < misfit_a else "additive"
    return EpsilonEstimate(
        eps_additive=eps_a,
        eps_additive_se=se_a,
        eps_multiplicative=eps_m,
        eps_multiplicative_se=se_m,
        model=model,
        slope=slope,
        misfit_additive=misfit_a,
        misfit_multiplicative=misfit_m,
        bias=bias,
        n=int(u64.size),
    )


def paper_epsilon(q: NumberFormat) -> tuple[str, int, float]:
    """The paper's rough mapping (SPEC §3): ``(model, bits, ε)``.

    INT with ``b`` bits (and MXINT8, ``b = 8``) → additive ``2^(−2b)``; FP (and MXFP, NVFP4)
    with ``m`` mantissa bits → multiplicative ``2^(−2m)``.
    """
    if isinstance(q, IntFormat):
        return "additive", q.bits, 2.0 ** (-2 * q.bits)
    if isinstance(q, MXFormat):
        if q.element == "int8":
            return "additive", 8, 2.0**-16
        m = FLOAT_PRESETS[FloatFormat.preset(q.element).name]["man_bits"]
        return "multiplicative", m, 2.0 ** (-2 * m)
    if isinstance(q, FloatFormat):
        return "multiplicative", q.man_bits, 2.0 ** (-2 * q.man_bits)
    if isinstance(q, NVFP4Format):
        return "multiplicative", 1, 2.0**-2
    raise TypeError(f"paper_epsilon needs a number format, got {type(q).__name__}")


@jax.jit
def _quantize_with_stats(q: NumberFormat, key: jax.Array, u: jax.Array):
    uq = q(key, u)
    blocks = q.block_max_saturated(u) if isinstance(q, MXFormat) else jnp.nan
    return uq, (*q.stats(u, uq), blocks)


def _paper_samples(role: str, dim: int, rows: int, batch: int, key: jax.Array) -> jax.Array:
    """The paper's data (SPEC §5): ``x ~ N(0, diag(i^-2))``, ``y = ⟨1, x⟩ + ξ``, ``σ² = 1``."""
    problem = make_problem(dim)
    if role == "data":
        return problem.features(key, rows)
    # y ~ N(0, ‖w*‖²_H + σ²) exactly, with w* = 1 and σ² = 1.
    return np.float32(math.sqrt(problem.trace_H + 1.0)) * prng.normal(key, (rows, batch))


def formats_table(
    names: Sequence[str] = TABLE_FORMATS,
    *,
    rounding: str = "stochastic",
    role: Literal["data", "labels"] = "data",
    dim: int = 200,
    rows: int = 2000,
    batch: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Measured ε of named formats on the paper's data, next to the paper's mapping.

    Args:
        names: format names (text forms without rounding; see ``FORMAT_NAMES``).
        rounding: rounding mode applied to every format.
        role: ``data`` (rows of ``X``, vector = a feature row of length ``dim``) or ``labels``
            (vector = ``batch`` labels ``y = ⟨w*, x⟩ + ξ``, ``w* = 1``, ``σ² = 1``).
        dim: ``d`` (the paper: 200); rows: vectors sampled; batch: ``B`` for labels.
        seed: root seed of the samples and the rounding.

    Returns:
        One row per format: ``format, family, paper_model, paper_bits, paper_eps,
        eps_additive, eps_multiplicative, measured_model, measured_eps`` (the ε of the
        measured model), ``ratio`` (measured over paper ε, when the models agree),
        ``slope, bias, saturated, underflow`` and ``blocks_saturated`` (MX: the fraction of
        nonzero blocks whose maximum saturates; NaN for other formats).
    """
    check_rounding(rounding)
    if role not in ("data", "labels"):
        raise ValueError(f"role must be 'data' or 'labels', got {role!r}")
    for name, value in (("dim", dim), ("rows", rows), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    root = prng.key(seed)
    u = _paper_samples(role, dim, rows, batch, prng.derive(root, 0))
    out = []
    for i, name in enumerate(names):
        q = parse_quantizer(f"{name}:{rounding}")
        if not isinstance(q, NumberFormat):
            raise ValueError(f"{name!r} is not a number format")
        uq, (sat, under, blocks) = _quantize_with_stats(q, prng.derive(root, 1, i), u)
        est = _estimate(np.asarray(u), np.asarray(uq), bins=32)
        pm, pb, pe = paper_epsilon(q)
        meps = est.eps_additive if est.model == "additive" else est.eps_multiplicative
        out.append(
            {
                "format": name,
                "family": q.kind,
                "paper_model": pm,
                "paper_bits": pb,
                "paper_eps": pe,
                "eps_additive": est.eps_additive,
                "eps_multiplicative": est.eps_multiplicative,
                "measured_model": est.model,
                "measured_eps": meps,
                "ratio": meps / pe if est.model == pm else math.nan,
                "slope": est.slope,
                "bias": est.bias,
                "saturated": float(sat),
                "underflow": float(under),
                "blocks_saturated": float(blocks),
            }
        )
    return pd.DataFrame(out)


def rowwise(q):
    """``q`` applied to each row of a matrix on its own, as the engine does at ``B = 1``.

    Only per-tensor scaling depends on the rows quantized together, so any other quantizer is
    returned as is.
    """
    if getattr(q, "scaling", None) != "tensor":
        return q

    @jax.jit
    def apply(key, u):
        keys = jax.vmap(lambda i: prng.derive(key, i))(jnp.arange(u.shape[0]))
        return jax.vmap(lambda k, row: q(k, row[None])[0])(keys, u)

    return apply


def error_variance(q, X: jax.Array, seed: int) -> np.ndarray:
    """``δ_i = E(Q(x)_i − x_i)²`` per coordinate (column), averaged over the rows of ``X``
    (each row quantized on its own, :func:`rowwise`)."""
    Xq = jax.jit(rowwise(q))(prng.key(seed), X)
    return np.asarray(jnp.mean(jnp.square(Xq - X), axis=0), np.float64)
