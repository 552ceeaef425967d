"""Real number formats (SPEC §3): exact rounding, unbiased stochastic rounding, scales, parsing.

Independent routes: ``ml_dtypes``/NumPy casts (round-to-nearest-even), a grid enumerated from
the format's definition with ``searchsorted`` (all rounding modes, float64 inputs), the OCP MX
scale rule evaluated with ``np.frexp``, and Bernoulli moments for stochastic rounding.
"""

from __future__ import annotations

import math
from functools import cache

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qlinreg import prng
from qlinreg.quantize import Scheme, parse_quantizer
from qlinreg.quantize.formats import (
    FLOAT_PRESETS,
    FORMAT_NAMES,
    FloatFormat,
    IntFormat,
    MXFormat,
    with_rounding,
)
from qlinreg.quantize.rounding import ROUNDINGS

KEY = prng.key(2024)
HYP = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# preset → the ml_dtypes (or NumPy) type with the same values and overflow rule on cast.
ML = {
    "fp8_e4m3fn": ml_dtypes.float8_e4m3fn,  # no inf: overflow → NaN   (our overflow="nan")
    "fp8_e5m2": ml_dtypes.float8_e5m2,  # IEEE: overflow → ±inf      (overflow="inf")
    "fp8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,  # no inf, no −0: overflow → NaN, −0 → +0
    "fp8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,  # no inf/NaN: saturates    (overflow="saturate")
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
}
CODES = {"fp6_e3m2": 64, "fp6_e2m3": 64, "fp4_e2m1": 16}
# Non-preset formats that ml_dtypes also has: IEEE-style E4M3 (max 240, has inf) and E3M4.
CUSTOM = {
    "e4m3_ieee": (FloatFormat(4, 3), ml_dtypes.float8_e4m3),
    "e3m4_ieee": (FloatFormat(3, 4), ml_dtypes.float8_e3m4),
}


@cache
def _jit(q):
    return jax.jit(q)


def _q(q, x, key=KEY):
    return np.asarray(_jit(q)(key, x))


@cache
def _method(q, name: str):
    """A jitted method of ``q`` (eager JAX would compile every primitive on its own)."""
    return jax.jit(getattr(q, name))


def _all_values(dt) -> np.ndarray:
    """Every value of an ml_dtypes/NumPy type, from all its codes, as float32."""
    nbytes = np.dtype(dt).itemsize
    codes = np.arange(256**nbytes, dtype=np.uint8 if nbytes == 1 else np.uint16)
    return codes.view(dt).astype(np.float32)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise identical: equal with the same sign (so ±0 differ), or both NaN."""
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


@cache
def _grid(fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative values of ``fmt`` enumerated from its codes, plus the value one code past
    the largest finite one (where the overflow rule starts), and each code's last mantissa bit.
    Without subnormals, a tie in the gap (0, 2^emin) goes to 0: 2^emin counts as odd there."""
    e, m, b = fmt.exp_bits, fmt.man_bits, fmt.bias

    def value(E: int, M: int) -> float:
        return math.ldexp(M if E == 0 else (1 << m) + M, (1 if E == 0 else E) - b - m)

    top, vals, lsb = (1 << e) - 1, [], []
    for E in range(1 << e):
        for M in range(1 << m):
            if fmt.specials == "ieee" and E == top:
                continue
            if fmt.specials == "fn" and E == top and M == (1 << m) - 1:
                continue
            if not fmt.subnormals and E == 0 and M > 0:
                continue
            vals.append(value(E, M))
            lsb.append((E if m == 0 else M) & 1)
            last = (E, M)
    E, M = last[0] + (last[1] + 1) // (1 << m), (last[1] + 1) % (1 << m)
    vals.append(value(E, M))
    lsb.append((E if m == 0 else M) & 1)
    return np.array(vals), np.array(lsb)


def _neighbours(a: np.ndarray, vals: np.ndarray):
    """Indices ``i`` with ``vals[i] ≤ a < vals[i+1]`` (clipped to the last point)."""
    return np.clip(np.searchsorted(vals, a, side="right") - 1, 0, len(vals) - 2)


def _ref_round(x: np.ndarray, fmt: FloatFormat, mode: str) -> np.ndarray:
    """Reference rounding of float64 ``x`` by enumeration (not for stochastic)."""
    vals, lsb = _grid(fmt)
    a = np.abs(x)
    i = _neighbours(a, vals)
    lo, hi = vals[i], vals[i + 1]
    dlo, dhi = a - lo, hi - a  # exact (Sterbenz)
    neg = np.signbit(x)
    away = {  # directed modes: the magnitude goes up when x is inexact on the far side of 0
        "toward_zero": np.zeros_like(neg),
        "toward_positive": ~neg & (a > lo),
        "toward_negative": neg & (a > lo),
        "to_odd": (a > lo) & (lsb[i] == 0),
    }
    if mode in away:
        r = np.where((a >= hi) | away[mode], hi, lo)
    else:
        # Without subnormals, a tie in the gap (0, 2^emin) goes to 0 (both codes are even).
        gap = (i == 0) & (not fmt.subnormals)
        tie_hi = (lsb[i + 1] == 0) & ~gap if mode == "nearest_even" else np.ones_like(a, bool)
        r = np.where((dhi < dlo) | ((dhi == dlo) & tie_hi) | (a >= hi), hi, lo)
    vmax = vals[-2]
    over = (r > vmax) | np.isinf(a)
    fill = {"saturate": vmax, "inf": np.inf, "nan": np.nan}[fmt.overflow]
    r = np.where(over, fill, r)
    # IEEE 754: a finite input rounded toward zero's side never overflows
    toward = {"toward_zero": True, "toward_positive": neg, "toward_negative": ~neg}
    if mode in toward:
        r = np.where(over & np.isfinite(a) & toward[mode], vmax, r)
    r = np.copysign(r, x)
    if fmt.specials == "fnuz":  # no negative zero
        r = np.where(r == 0, 0.0, r)
    return np.where(np.isnan(x), np.nan, r)


def _probe_values(vals: np.ndarray, vmax: float, rng) -> np.ndarray:
    """Float32 inputs around a format's grid: its values, midpoints (ties) and their float32
    neighbours, random magnitudes from below the smallest subnormal to beyond the max, specials."""
    v = np.unique(vals[:-1].astype(np.float32))  # without the code past the max
    v = np.concatenate([-v[::-1], v])
    mid = ((v[:-1].astype(np.float64) + v[1:]) / 2).astype(np.float32)
    tiny = v[v > 0].min()
    mag = np.exp(rng.uniform(np.log(tiny / 8), np.log(vmax * 8), 20_000))
    mag = np.minimum(mag, np.finfo(np.float32).max).astype(np.float32)
    rand = mag * rng.choice(np.float32([-1, 1]), mag.size)
    special = np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -3e-42, 3e38, -3e38])
    parts = [v, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, -np.inf)]
    return np.concatenate([*parts, rand, special]).astype(np.float32)


# ---- round-to-nearest-even against ml_dtypes ---------------------------------------------


@pytest.mark.parametrize("name", list(ML) + list(CUSTOM))
def test_nearest_even_matches_ml_dtypes(name):
    """Every representable value, every tie, both neighbours of each tie, random values, overflow,
    ±inf, NaN, float32 subnormals: our RNE equals the ml_dtypes cast, bit for bit (±0 included)."""
    if name in CUSTOM:
        fmt, dt = CUSTOM[name]
        fmt = with_rounding(fmt, "nearest_even")
    else:
        fmt, dt = FloatFormat.preset(name, rounding="nearest_even"), ML[name]
    vals = _all_values(dt)
    if name in CODES:
        vals = vals[: CODES[name]]
    assert np.array_equal(np.unique(np.abs(vals[np.isfinite(vals)])), _grid(fmt)[0][:-1])
    x = _probe_values(_grid(fmt)[0], fmt.max_value, np.random.default_rng(1))
    # The overflow tie: halfway between the max and the first code past it, and its neighbours.
    nxt = np.float32((_grid(fmt)[0][-1] + fmt.max_value) / 2)
    x = np.concatenate([x, [nxt, -nxt, np.nextafter(nxt, np.float32(0)), np.nextafter(nxt, 1e38)]])
    x = x.astype(np.float32)
    ours = _q(fmt, x)
    with np.errstate(over="ignore"):
        ref = x.astype(dt).astype(np.float32)
    if fmt.specials == "none":
        # These types have no NaN code: ml_dtypes maps NaN to −0; we keep NaN (documented).
        assert np.all(np.isnan(ours[np.isnan(x)]))
        ours, ref, x = ours[~np.isnan(x)], ref[~np.isnan(x)], x[~np.isnan(x)]
    bad = ~_same(ours, ref)
    assert not bad.any(), (x[bad][:8], ours[bad][:8], ref[bad][:8])


@HYP
@given(arrays(np.uint32, 512))
def test_nearest_even_matches_ml_dtypes_on_arbitrary_bit_patterns(words):
    x = words.view(np.float32)
    for name in ("fp8_e4m3fn", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp4_e2m1", "bf16"):
        ours = _q(FloatFormat.preset(name, rounding="nearest_even"), x)
        ref = x.astype(ML[name]).astype(np.float32)
        keep = ~np.isnan(x)
        assert np.all(_same(ours[keep], ref[keep])), name


def test_fp32_and_fp16_on_float64_inputs_match_numpy():
    """ml_dtypes rounds float64 through float32 (double rounding); NumPy's float64 → float32 and
    → float16 casts round once, and so do we."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50_000) * np.exp2(rng.integers(-160, 140, 50_000))
    # ties and near-ties of float16 and float32 that double rounding would get wrong
    x = np.concatenate([x, 1 + 2.0**-11 + np.float64([0, 2.0**-40, -(2.0**-40)])])
    x = np.concatenate([x, 1 + 2.0**-24 + np.float64([0, 2.0**-60, -(2.0**-60)])])
    with jax.enable_x64(True):
        for name, dt in (("fp32", np.float32), ("fp16", np.float16)):
            ours = np.asarray(jax.jit(FloatFormat.preset(name, rounding="nearest_even"))(KEY, x))
            assert ours.dtype == np.float64
            with np.errstate(over="ignore"):
                ref = x.astype(dt).astype(np.float64)
            assert np.all(_same(ours, ref)), name


# ---- all deterministic modes against enumeration ------------------------------------------

ENUM_FORMATS = {
    "fp8_e4m3fn": FloatFormat.preset("fp8_e4m3fn"),
    "fp8_e5m2": FloatFormat.preset("fp8_e5m2"),
    "fp4_e2m1": FloatFormat.preset("fp4_e2m1"),
    "bf16": FloatFormat.preset("bf16"),
    "e3m3_nosub_bias5": FloatFormat(3, 3, bias=5, subnormals=False, specials="none"),
    "e4m3fn_saturate": FloatFormat.preset("fp8_e4m3fn", overflow="saturate"),
    "fp8_e4m3fnuz": FloatFormat.preset("fp8_e4m3fnuz"),
    "fp8_e5m2fnuz": FloatFormat.preset("fp8_e5m2fnuz"),
    "e3m0_none": FloatFormat(3, 0, specials="none"),  # m = 0: the code's last bit is E's
    "e3m0_ieee": FloatFormat(3, 0),
}
DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]


@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("name", list(ENUM_FORMATS))
def test_deterministic_modes_match_enumeration_float64(name, mode):
    fmt = with_rounding(ENUM_FORMATS[name], mode)
    vals = _grid(fmt)[0]
    rng = np.random.default_rng(4)
    x = _probe_values(vals, fmt.max_value, rng).astype(np.float64)
    # float64-only inputs: ties ± 2^-40 relative, and tiny values far below the grid
    x = np.concatenate([x, x[np.isfinite(x)] * (1 + 2.0**-40), [1e-300, -1e-310, 1e300]])
    with jax.enable_x64(True):
        ours = np.asarray(jax.jit(fmt)(KEY, x))
    ref = _ref_round(x, fmt, mode)
    bad = ~_same(ours, ref)
    assert not bad.any(), (x[bad][:6], ours[bad][:6], ref[bad][:6])


# ---- stochastic rounding: unbiased, variance (x − lo)(hi − x) ---------------------------------

N_SR = 4000  # replicates of each probe value


def _check_bernoulli(samples: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Each column of ``samples`` takes only the values ``lo``, ``hi``, with mean ``x`` and
    variance ``(x−lo)(hi−x)``.

    With ``p = (x−lo)/h``, ``h = hi − lo``, and ``p̂`` the observed fraction of ``hi``: the mean
    must be within 5 standard errors, ``|p̂ − p| ≤ z = 5·√(p(1−p)/n)``. The sample variance is
    ``h²·p̂(1−p̂)·n/(n−1)``, so given that bound it lies within
    ``h²·(|1−2p|·z + z² + p(1−p)/(n−1))`` of ``h²·p(1−p)`` (the delta method alone would give
    a zero tolerance at ``p = ½``).
    """
    n = samples.shape[0]
    assert np.all((samples == lo) | (samples == hi)), "stochastic rounding left {lo, hi}"
    h = hi - lo
    p = np.where(h > 0, (x - lo) / np.where(h > 0, h, 1), 0)
    z = 5 * np.sqrt(p * (1 - p) / n)
    slack = 1e-12 * np.abs(x)  # float64 rounding of x − lo
    mean, svar = samples.mean(axis=0), samples.var(axis=0, ddof=1)
    assert np.all(np.abs(mean - x) <= h * z + slack), (x, mean)
    tol = h**2 * (np.abs(1 - 2 * p) * z + z**2 + p * (1 - p) / (n - 1))
    assert np.all(np.abs(svar - h**2 * p * (1 - p)) <= tol + slack * h), (x, svar)


def _interval_probes(vals: np.ndarray, rng, k: int = 12) -> np.ndarray:
    """Float32 points inside chosen grid intervals: the first (below the smallest subnormal),
    the subnormal → normal crossing, binade tops, the last below the max, random others."""
    n = len(vals) - 2
    tops = [i for i in range(n) if math.log2(vals[i + 1]).is_integer()]
    idx = sorted({0, 1, n - 1, *rng.integers(0, n, k).tolist(), *rng.choice(tops, 8).tolist()})
    f = np.array([0.0, 1e-3, 0.25, 0.5, 0.75, 0.999])
    pts = (vals[idx][:, None] + f * (vals[np.array(idx) + 1] - vals[idx])[:, None]).ravel()
    return np.concatenate([pts, [vals[1] * 2.0**-20]]).astype(np.float32)


@pytest.mark.parametrize("name", ["fp8_e4m3fn", "fp8_e5m2", "fp4_e2m1", "bf16", "e3m3_nosub_bias5"])
def test_stochastic_is_unbiased_with_bernoulli_variance(name):
    fmt = with_rounding(ENUM_FORMATS[name], "stochastic")
    vals = _grid(fmt)[0]
    x = _interval_probes(vals, np.random.default_rng(5))
    sign = np.where(np.arange(x.size) % 2 == 0, 1, -1).astype(np.float32)
    x = x * sign
    out = _q(fmt, np.broadcast_to(x, (N_SR, x.size)).copy()).astype(np.float64)
    a = np.abs(x.astype(np.float64))
    i = _neighbours(a, vals)
    _check_bernoulli(out * sign, a, vals[i], vals[i + 1])


def test_stochastic_float64_path_subnormals_and_below():
    """float64 inputs (64 random bits per entry): between 0 and the smallest E4M3 subnormal
    s = 2^-9, and between two subnormals, rounding up has probability (x − lo)/s."""
    fmt = FloatFormat.preset("fp8_e4m3fn")
    s = 2.0**-9
    x = s * np.array([0.3, 0.7, 2.0**-10, 1.0 + 1 / 3, 5.9])
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(fmt)(KEY, np.broadcast_to(x, (100_000, x.size)).copy()))
    lo = np.floor(x / s) * s
    _check_bernoulli(out, x, lo, lo + s)


def test_stochastic_int_absmax_block_boundaries():
    """Per-vector and per-block absmax INT: the block max is exact, every other entry is an
    unbiased two-point rounding on its block's grid ``scale·Z``."""
    rng = np.random.default_rng(6)
    row = rng.standard_normal(24) * np.exp2(rng.integers(-6, 3, 24))
    row[3], row[17] = 5.0, -7.25  # block maxima for block_size=12
    blocks = np.abs(row).reshape(2, 12).max(axis=1).repeat(12)
    cases = [
        (IntFormat(4), np.abs(row).max()),
        (IntFormat(3, scaling="block", block_size=12), blocks),
        (IntFormat(4, symmetric=False, scaling="block", block_size=12), blocks),
        (IntFormat(2, scaling="tensor"), np.abs(row).max()),
    ]
    with jax.enable_x64(True):  # float64: the reference grid scale·Z is computed identically
        for fmt, amax in cases:
            scale = np.asarray(_method(fmt, "scale_of")(row))
            np.testing.assert_allclose(scale, np.broadcast_to(amax / fmt.qmax, 24), rtol=1e-15)
            out = np.asarray(jax.jit(fmt)(KEY, np.broadcast_to(row, (N_SR, 24)).copy()))
            top = np.abs(row) == amax
            assert np.all(out[:, top] == row[top])  # the block max is exact
            lo = np.floor(row / scale) * scale
            _check_bernoulli(out[:, ~top], row[~top], lo[~top], (lo + scale)[~top])


def test_stochastic_mx_block_and_scale_boundaries():
    """MX: entries of a block at the element grid's power-of-two boundaries and inside its
    subnormals round unbiasedly; entries above the element max saturate to it exactly."""
    fmt = MXFormat("fp4_e2m1", block_size=8)
    X = 2.0**-3  # block max 5.5·2^-3: floor(log2) = -1, emax(fp4) = 2 → s = -3
    blk = np.float32([5.5, 3.9, 4.0, 1.2, 0.3, -0.7, 0.05, -2.6]) * np.float32(X)
    blk2 = np.float32([7.9, 6.5, -6.9, 3.0, 0.26, 1.0, 2.5, 0.9]) * np.float32(X)  # saturating
    row = np.concatenate([blk, blk2])
    assert np.array_equal(np.asarray(_method(fmt, "scale_exponent")(row)), [-3, -3])
    out = _q(fmt, np.broadcast_to(row, (N_SR, row.size)).copy()).astype(np.float64)
    vals = _grid(FloatFormat.preset("fp4_e2m1"))[0]
    a = np.abs(row.astype(np.float64)) / X
    sat = a > 6
    i = _neighbours(a, vals)
    sign = np.sign(row)
    assert np.all(out[:, sat] == (6 * X * sign[sat]))
    ok = ~sat
    _check_bernoulli((out * sign)[:, ok], a[ok] * X, vals[i][ok] * X, vals[i + 1][ok] * X)


def test_stochastic_fp_tensor_scaling_is_unbiased():
    fmt = FloatFormat.preset("fp4_e2m1", scaling="tensor")
    row = np.float32([100.0, -37.0, 3.3, 0.2, -12.5, 80.0])  # amax 100 ≤ 6·2^5 → s = 5
    assert int(_method(fmt, "scale_exponent")(row)) == 5
    out = _q(fmt, np.broadcast_to(row, (N_SR, row.size)).copy()).astype(np.float64)
    vals = _grid(FloatFormat.preset("fp4_e2m1"))[0] * 32
    a = np.abs(row.astype(np.float64))
    i = _neighbours(a, vals)
    _check_bernoulli(out * np.sign(row), a, vals[i], vals[i + 1])


@HYP
@given(arrays(np.float32, 256, elements=st.floats(width=32, allow_nan=False)), st.integers(0, 99))
def test_stochastic_lands_on_a_neighbour(x, seed):
    for name in ("fp8_e4m3fn", "fp6_e2m3", "bf16"):
        fmt = FloatFormat.preset(name)
        out = _q(fmt, x, prng.key(seed)).astype(np.float64)
        vals = _grid(fmt)[0]
        a = np.abs(x.astype(np.float64))
        i = _neighbours(a, vals)
        lo, hi = np.copysign(vals[i], x), np.copysign(vals[i + 1], x)
        over = (np.abs(hi) > fmt.max_value) | np.isinf(x)
        fine = (out == lo) | (out == hi)
        if fmt.overflow == "saturate":
            fine |= over & (np.abs(out) == fmt.max_value)
        else:
            fine |= over & ~np.isfinite(out)
        assert np.all(fine), name


# ---- INT formats ------------------------------------------------------------------------------


ABSMAX = [
    IntFormat(2, scaling="tensor", rounding="nearest_away"),
    IntFormat(8, rounding="stochastic"),  # per vector
    IntFormat(2, scaling="block", block_size=7, rounding="stochastic"),
    IntFormat(8, symmetric=False, scaling="block", block_size=7, rounding="nearest_away"),
]


@HYP
@given(
    arrays(
        np.float32, (3, 40), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)
    ),
    st.sampled_from(ABSMAX),
)
def test_int_absmax_never_overflows(u, fmt):
    """Codes stay within ±qmax, results finite and within each group's max|u| (when that max is
    at least qmax·tiny; below, the scale is floored at the smallest normal float)."""
    out = _q(fmt, u).astype(np.float64)
    scale = np.asarray(_method(fmt, "scale_of")(u), np.float64)
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(np.round(out / scale)) <= fmt.qmax)
    a = np.abs(u.astype(np.float64))
    if fmt.scaling == "tensor":
        amax = np.full_like(a, a.max())
    else:
        size = fmt.block_size or a.shape[-1]
        pad = np.pad(a, [(0, 0), (0, -a.shape[-1] % size)]).reshape(a.shape[0], -1, size)
        amax = np.repeat(pad.max(axis=-1), size, axis=-1)[:, : a.shape[-1]]
    normal = amax >= fmt.qmax * np.finfo(np.float32).tiny
    assert np.all(np.abs(out)[normal] <= amax[normal])
    assert float(_method(fmt, "stats")(u, out.astype(np.float32))[0]) == 0


def test_int_fixed_scale_codes_rounding_and_saturation():
    """Fixed scale 0.5, int4 (codes −7 … 7): ties and saturation under each mode."""
    u = np.float32([0.25, 0.75, -0.25, -1.25, 3.5, 3.74, 3.76, 9.0, -9.0, 0.1, 0.0])
    expect = {
        "nearest_even": [0.0, 1.0, -0.0, -1.0, 3.5, 3.5, 3.5, 3.5, -3.5, 0.0, 0.0],
        "nearest_away": [0.5, 1.0, -0.5, -1.5, 3.5, 3.5, 3.5, 3.5, -3.5, 0.0, 0.0],
        "toward_zero": [0.0, 0.5, -0.0, -1.0, 3.5, 3.5, 3.5, 3.5, -3.5, 0.0, 0.0],
    }
    for mode, exp in expect.items():
        fmt = IntFormat(4, scaling="fixed", scale=0.5, rounding=mode)
        assert np.array_equal(_q(fmt, u), np.float32(exp)), mode
        sat, under = (float(v) for v in _method(fmt, "stats")(u, _q(fmt, u)))
        assert sat == pytest.approx(4 / 11)  # |u| > 7·0.5: 3.74, 3.76, 9, −9
        assert under == pytest.approx(
            sum(1 for a, b in zip(u, exp, strict=True) if a != 0 and b == 0) / 11
        )


def test_int_code_ranges():
    u = np.float32([-300.0, -128.0, -127.6, 126.6, 300.0])
    two = IntFormat(8, symmetric=False, scaling="fixed", scale=1.0, rounding="nearest_even")
    sym = with_rounding(IntFormat(8, scaling="fixed", scale=1.0), "nearest_even")
    uns = IntFormat(8, signed=False, scaling="fixed", scale=1.0, rounding="nearest_even")
    assert np.array_equal(_q(two, u), [-128, -128, -128, 127, 127])
    assert np.array_equal(_q(sym, u), [-127, -127, -127, 127, 127])
    assert np.array_equal(_q(uns, u), [0, 0, 0, 127, 255])


# ---- MX ---------------------------------------------------------------------------------------

MX_ML = {
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
}
EMAX = {"fp8_e4m3": 8, "fp8_e5m2": 15, "fp6_e3m2": 4, "fp6_e2m3": 2, "fp4_e2m1": 2, "int8": 0}


def _mx_input(rng) -> np.ndarray:
    """Rows of 100 (3 full blocks of 32 and a partial one) with very different magnitudes,
    an all-zero block and a block whose max is an exact power of two."""
    x = rng.standard_normal((6, 100)) * np.exp2(rng.integers(-30, 30, (6, 100)))
    x[:, :32] *= np.exp2(rng.integers(-40, 40, (6, 1)))
    x[1, 32:64] = 0.0
    x[2, 64:96] = np.clip(x[2, 64:96], -0.9, 0.9)
    x[2, 70] = -1.0
    return x.astype(np.float32)


@pytest.mark.parametrize("element", list(EMAX))
def test_mx_scale_and_nearest_even_match_ocp_definition(element):
    """Shared scale X = 2^(floor(log2 amax) − emax_elem) (OCP MX v1.0, an E8M0 value), elements
    = round-to-nearest-even of u/X by ml_dtypes, clamped to ±max (INT8: k/64, |k| ≤ 127)."""
    fmt = MXFormat(element, rounding="nearest_even")
    x = _mx_input(np.random.default_rng(7))
    pad = np.pad(x, [(0, 0), (0, 28)]).reshape(6, 4, 32)
    amax = np.abs(pad).max(axis=-1).astype(np.float64)
    s_ref = np.where(amax > 0, np.frexp(amax)[1] - 1 - EMAX[element], -127).clip(-127, 127)
    s = np.asarray(_method(fmt, "scale_exponent")(x))
    assert np.array_equal(s, s_ref)
    X = np.exp2(s_ref).astype(np.float32)
    assert np.array_equal(X.astype(ml_dtypes.float8_e8m0fnu).astype(np.float32), X)
    y = (pad / X[..., None]).astype(np.float32)  # exact: X is a power of two, no underflow here
    if element == "int8":
        ref = np.clip(np.round(y.astype(np.float64) * 64), -127, 127) / 64
    else:
        mx = float(ml_dtypes.finfo(MX_ML[element]).max)
        ref = np.clip(y, -mx, mx).astype(MX_ML[element]).astype(np.float64)
    ref = (ref * X[..., None]).reshape(6, -1)[:, :100]
    assert np.all(_same(_q(fmt, x).astype(np.float64), ref))


def test_mx_non_finite_block_is_nan_and_other_axis():
    fmt = MXFormat("fp8_e4m3", block_size=4, axis=0, rounding="nearest_even")
    x = np.arange(1, 25, dtype=np.float32).reshape(8, 3)
    x[5, 1] = np.inf
    out = _q(fmt, x)
    assert np.all(np.isnan(out[4:, 1])) and np.all(np.isfinite(np.delete(out, 1, axis=1)))
    assert np.array_equal(out[:4], x[:4])  # small integers are exact in E4M3


def test_mx_stats_count_saturated_and_underflow():
    fmt = MXFormat("fp4_e2m1", block_size=4, rounding="nearest_even")
    x = np.float32([7.0, 6.5, 1e-3, 1.0, 2.0, 0.0, -0.1, 1.5])
    # block 1: amax 7 → s = 2 − 2 = 0, max 6: 7 and 6.5 saturate; 1e-3 → 0 (underflow).
    # block 2: amax 2 → s = 1 − 2 = −1, smallest subnormal 0.25: −0.1 → −0 (underflow); 0 is
    # not counted.
    sat, under = (float(v) for v in _method(fmt, "stats")(x, _q(fmt, x)))
    assert (sat, under) == pytest.approx((2 / 8, 2 / 8))


def test_float_stats_and_overflow_rules():
    x = np.float32([1.0, 500.0, -1000.0, np.inf, 1e-5, 0.0])
    for overflow, big in (("saturate", 448.0), ("nan", np.nan)):
        fmt = FloatFormat.preset("fp8_e4m3", overflow=overflow, rounding="nearest_even")
        out = _q(fmt, x)
        assert _same(out[1:4], np.float32([big, -big, big])).all(), overflow
        sat, under = (float(v) for v in _method(fmt, "stats")(x, out))
        assert (sat, under) == pytest.approx((3 / 6, 1 / 6))
    tz = FloatFormat.preset("fp8_e5m2", rounding="toward_zero")  # IEEE: finite never → inf
    assert np.array_equal(_q(tz, np.float32([1e6, -1e6, np.inf])), [57344, -57344, np.inf])


# ---- validation, parsing, pytree -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FloatFormat(4, -1), r"man_bits must be an integer in \[0, 52\]"),
        (lambda: FloatFormat(0, 3, specials="none"), r"exp_bits must be an integer in \[1, 11\]"),
        (lambda: FloatFormat(1, 3), r"exp_bits must be an integer in \[2, 11\]"),
        (lambda: FloatFormat(4, 0, specials="fn"), r"man_bits must be an integer in \[1, 52\]"),
        (lambda: FloatFormat(4, 3, specials="none", overflow="inf"), "overflow='inf' needs"),
        (lambda: FloatFormat(4, 3, overflow="wrap"), "overflow must be one of saturate, inf"),
        (lambda: FloatFormat(4, 3, rounding="nearest"), "rounding must be one of stochastic"),
        (lambda: FloatFormat.preset("fp7"), "unknown FP format preset 'fp7'; allowed: fp32"),
        (lambda: IntFormat(1), r"bits must be an integer in \[2, 24\]"),
        (lambda: IntFormat(8, block_size=0), "block_size must be an integer ≥ 1"),
        (lambda: IntFormat(8, scaling="fixed", scale=-1.0), "scale must be a finite number > 0"),
        (lambda: IntFormat(8, scaling="row"), "scaling must be one of fixed, tensor, block"),
        (lambda: MXFormat(block_size=0), "block_size must be an integer ≥ 1"),
        (lambda: MXFormat("fp8"), "element must be one of fp8_e4m3"),
        (lambda: parse_quantizer("fp8_e4m3:round"), "unknown option 'round'.*or a rounding"),
        (lambda: parse_quantizer("int8:stochastic:rows"), "unknown option 'rows'"),
        (lambda: parse_quantizer("mxfp4:nearest_even:block0"), r"blockN .* in \[1, "),
    ],
)
def test_invalid_parameters_raise_clear_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_float_input_is_a_type_error():
    with pytest.raises(TypeError, match="float32 or float64"):
        FloatFormat.preset("bf16")(KEY, jnp.arange(4))


def test_every_name_parses_and_labels_round_trip():
    for name in FORMAT_NAMES:
        for text in (name, *(f"{name}:{r}" for r in ROUNDINGS)):
            q = parse_quantizer(text)
            assert q.rounding == (text.split(":")[1] if ":" in text else "stochastic")
            assert parse_quantizer(q.label) == q, text
    extra = ["int8:nearest_even:block16:asymmetric", "int4::scale=0.25", "fp8_e5m2::tensor:nan"]
    for text in [*extra, "int6:toward_zero:tensor:unsigned", "mxint8:stochastic:block16"]:
        q = parse_quantizer(text)
        assert parse_quantizer(q.label) == q, text
    assert parse_quantizer("fp8_e4m3") == FloatFormat.preset("fp8_e4m3fn")
    assert parse_quantizer("int4::scale=0.25").scale == 0.25


def test_scheme_parse_with_formats():
    s = Scheme.parse(["data=fp8_e4m3:stochastic", "params=int8:nearest_even", "grads=mxfp4"])
    assert s.data == FloatFormat.preset("fp8_e4m3fn", rounding="stochastic")
    assert s.params == IntFormat(8, rounding="nearest_even")
    assert s.grads == MXFormat("fp4_e2m1")
    assert s.labels_by_role()["params"] == "int8:nearest_even:vector"


def test_pytree_jit_and_vmap_like_the_engine():
    """Leaves: only the fixed INT scale; the engine converts leaves to its dtype, vmaps over
    trials (a key and a B×d batch per trial); results equal one call per trial."""
    q = IntFormat(6, scaling="fixed", scale=0.125)
    assert jax.tree_util.tree_leaves(q) == [0.125]
    assert jax.tree_util.tree_leaves(MXFormat()) == []
    q32 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), q)
    keys = prng.derive(KEY, jnp.arange(3, dtype=jnp.uint32))
    u = jnp.asarray(np.random.default_rng(8).standard_normal((3, 4, 40)), jnp.float32)
    one = jax.jit(lambda f, k, x: f(k, x))  # the quantizer is a traced argument, as in the engine
    for fmt in (q32, MXFormat("fp6_e2m3")):
        both = jax.jit(jax.vmap(lambda k, x, f=fmt: f(k, x)))(keys, u)
        for t in range(3):
            assert np.array_equal(both[t], one(fmt, keys[t], u[t]))
        stats = jax.jit(jax.vmap(fmt.stats))(u, both)
        assert stats[0].shape == (3,)
    fmt = MXFormat("fp6_e2m3")
    a, b = one(fmt, prng.key(1), u[0]), one(fmt, prng.key(2), u[0])
    assert np.array_equal(a, one(fmt, prng.key(1), u[0])) and not np.array_equal(a, b)


@pytest.mark.parametrize("fmt", [IntFormat(8), MXFormat("int8"), MXFormat("fp6_e3m2")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_are_on_the_grid(fmt, dtype):
    """Idempotence: a quantized vector is a fixed point of round-to-nearest in the same format
    (the scales it induces are the same), in float32 and float64."""
    x = (np.random.default_rng(9).standard_normal((5, 64)) * 3).astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        y = jax.jit(fmt)(KEY, x)
        again = jax.jit(with_rounding(fmt, "nearest_even"))(KEY, y)
    assert y.dtype == dtype and y.shape == x.shape
    assert np.array_equal(np.asarray(again), np.asarray(y))


def test_presets_have_documented_limits():
    expect = {
        "fp8_e4m3fn": 448,
        "fp8_e5m2": 57344,
        "fp8_e4m3fnuz": 240,
        "fp8_e5m2fnuz": 57344,
        "fp6_e3m2": 28,
        "fp6_e2m3": 7.5,
        "fp4_e2m1": 6,
        "fp16": 65504,
        "bf16": float(ml_dtypes.finfo(ml_dtypes.bfloat16).max),
        "fp32": float(np.finfo(np.float32).max),
    }
    assert {n: FloatFormat.preset(n).max_value for n in FLOAT_PRESETS} == expect
