"""NVFP4, the MX scale rules, k-bit stochastic rounding, delayed scaling and the draw/apply split
(SPEC §3, real formats).

Independent routes: references written from the definitions in NumPy float32 arithmetic with
``ml_dtypes`` casts (``float4_e2m1fn``, ``float8_e4m3fn``, ``float8_e8m0fnu``) and exact
rational arithmetic for the scale exponents; the Bernoulli law of ``k``-bit stochastic rounding
(``P(up) = ⌊f·2^k⌋/2^k``) for Monte Carlo means and variances.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from qlinreg import prng
from qlinreg.quantize import Scheme, parse_quantizer
from qlinreg.quantize.formats import (
    FloatFormat,
    IntFormat,
    MXFormat,
    NVFP4Format,
    with_rounding,
)

KEY = prng.key(77)
E4M3, E2M1, E8M0 = ml_dtypes.float8_e4m3fn, ml_dtypes.float4_e2m1fn, ml_dtypes.float8_e8m0fnu
F32 = np.float32


@cache
def _jit(q):
    return jax.jit(q)


def _q(q, x, key=KEY):
    return np.asarray(_jit(q)(key, x))


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise identical: equal with the same sign (so ±0 differ), or both NaN."""
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def _wide(rng, shape, decades: float = 12.0) -> np.ndarray:
    """Random signs and magnitudes log-uniform over ``decades`` decades around 1."""
    mag = 10.0 ** rng.uniform(-decades / 2, decades / 2, shape)
    return (mag * rng.choice([-1.0, 1.0], shape)).astype(F32)


# ---- NVFP4 -----------------------------------------------------------------------------------


def ref_nvfp4(x: np.ndarray, block: int = 16) -> np.ndarray:
    """NVFP4 of one tensor from its definition (NVIDIA; the issue's formulas), float32 NumPy with
    ml_dtypes casts: ``s = amax/(6·448)``, ``b = E4M3_RNE(amax_block/6/s)`` saturating at 448
    (0: the block is 0), ``q = E2M1_RNE(x/(b·s))`` saturating at ±6, value ``q·(b·s)``."""
    x = x.astype(F32)
    n = x.shape[-1]
    s = F32(np.max(np.abs(x)) / F32(6 * 448))
    pad = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, -n % block)])
    blocks = pad.reshape(*x.shape[:-1], -1, block)
    ab = np.max(np.abs(blocks), axis=-1, keepdims=True)
    t = (ab / F32(6)) / s
    b = np.minimum(t, F32(448)).astype(E4M3).astype(F32)
    total = (b * s).astype(F32)
    ok = total > 0
    y = (blocks / np.where(ok, total, F32(1))).astype(F32)
    q = y.astype(E2M1).astype(F32)  # RNE; ml_dtypes saturates E2M1 at ±6
    out = np.where(ok, q * total, F32(0)).astype(F32)
    return out.reshape(*x.shape[:-1], -1)[..., :n]


def _nvfp4_tensors(rng) -> np.ndarray:
    """Tensors (3 × 64, i.e. 4 blocks per row) whose scales span 12 decades, with zero blocks,
    blocks whose scale underflows E4M3, ties of E2M1 and of the E4M3 block scale."""
    T = _wide(rng, (40, 3, 64), decades=4) * (10.0 ** rng.uniform(-6, 6, (40, 1, 1))).astype(F32)
    T[1, 0, :16] = 0.0  # an all-zero block
    T[2, 1, 16:32] *= F32(1e-9)  # its block scale underflows E4M3 (< 2^-10): the block is 0
    # amax 2688 gives s = 1 exactly; a block with max 24 gives b = 4, total 4: elements are
    # 4·y for E2M1 ties y (RNE: 2.5→2, 0.25→0, 5→4, 1.25→1, 1.75→2, 3.5→4, 0.75→1, 4.5→4).
    T[3] = 0.0
    T[3, 0, 0] = 2688.0
    ties = F32([24.0, 2.5, 0.25, 5.0, 1.25, 1.75, 3.5, 0.75, 4.5, -2.5, -0.25, -5.0])
    T[3, 1, :12] = ties * np.where(np.arange(12) == 0, 1, 4).astype(F32)
    # an E4M3 tie of the block scale: max 25.5 = 6·4.25, 4.25 halfway between 4 and 4.5 → 4
    T[3, 2, :4] = F32([25.5, 3.0, -7.0, 11.0])
    return T


def test_nvfp4_nearest_even_matches_the_definition_bit_for_bit():
    q = NVFP4Format(rounding="nearest_even")
    T = _nvfp4_tensors(np.random.default_rng(0))
    ours = np.asarray(jax.jit(jax.vmap(lambda u: q(KEY, u)))(T))
    ref = np.stack([ref_nvfp4(t) for t in T])
    bad = ~_same(ours, ref)
    assert not bad.any(), (T[bad][:5], ours[bad][:5], ref[bad][:5])
    assert np.all(ours[1, 0, :16] == 0) and np.all(ours[2, 1, 16:32] == 0)
    assert np.array_equal(ours[3, 1, 1:12] / 4, [2, 0, 4, 1, 2, 4, 1, 4, -2, -0.0, -4])
    assert ours[3, 2, 0] == 24.0  # b = E4M3(4.25) = 4: the block max saturates at 6·4
    # a 1-D vector is one tensor, blocks along it; a partial last block
    v = _wide(np.random.default_rng(1), (53,))
    assert np.all(_same(_q(q, v), ref_nvfp4(v)))


def test_nvfp4_saturated_entries_and_one_element_tensor():
    """An entry saturates when |x| > 6·b·s: only a block max, when RNE of its E4M3 scale rounds
    down; a one-element tensor is represented exactly (b = 448, q = ±6)."""
    q = NVFP4Format(rounding="nearest_even")
    x = np.zeros((2, 16), F32)
    x[0, 0] = 2688.0  # s = 1
    x[1, :3] = [25.5, 3.0, -7.0]  # b = 4: 25.5 > 24 saturates
    sat = np.asarray(jax.jit(q.saturated)(x))
    assert sat.sum() == 1 and sat[1, 0]
    assert q.exact_on((1,)) and not q.exact_on((2,))
    for v in (F32(3.7e-3), F32(-1234.5), F32(6.02e5)):
        assert _q(q, np.array([v])) == pytest.approx(v, rel=2**-22)


# ---- MX scale rules --------------------------------------------------------------------------

MX_EMAX = {"fp8_e4m3": 8, "fp8_e5m2": 15, "fp6_e2m3": 2, "fp4_e2m1": 2, "int8": 0}
MX_ML = {"fp8_e4m3": E4M3, "fp8_e5m2": ml_dtypes.float8_e5m2, "fp6_e2m3": ml_dtypes.float6_e2m3fn,
         "fp4_e2m1": E2M1}  # fmt: skip
MX_MAN = {"fp8_e4m3": 3, "fp8_e5m2": 2, "fp6_e2m3": 3, "fp4_e2m1": 1, "int8": 6}
MX_MAX = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0, "fp6_e2m3": 7.5, "fp4_e2m1": 6.0,
          "int8": 127 / 64}  # fmt: skip


def _log2_floor(a: Fraction) -> int:
    """``floor(log2 a)`` of a positive rational, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


def ref_mx_exponent(amax: float, element: str, rule: str) -> int:
    """The shared-scale exponent from its definition, in exact rationals (clamped to E8M0)."""
    if amax == 0:
        return -127
    a, emax = Fraction(amax), MX_EMAX[element]
    if rule == "floor":  # OCP MX v1.0
        s = _log2_floor(a) - emax
    elif rule == "ceil":
        e = _log2_floor(a)
        s = e + (Fraction(2) ** e != a) - emax
    elif rule == "even":  # a rounded half up to the element's mantissa bits, then floor
        e, m = _log2_floor(a), MX_MAN[element]
        unit = Fraction(2) ** (e - m)
        s = _log2_floor(math.floor(a / unit + Fraction(1, 2)) * unit) - emax
    else:  # rceil: the least s with a ≤ max·2^s
        r = a / Fraction(MX_MAX[element])
        s = _log2_floor(r)
        s += Fraction(2) ** s != r
    return int(np.clip(s, -127, 127))


def ref_mx(x: np.ndarray, element: str, block: int, rule: str) -> np.ndarray:
    """MX of ``x`` (rows; blocks along the last axis): the scale ``2^s`` as an E8M0 value
    (ml_dtypes), elements RNE by ml_dtypes after saturating at ±max (INT8: ``k/64``)."""
    n = x.shape[-1]
    pad = np.pad(x, [(0, 0), (0, -n % block)]).reshape(x.shape[0], -1, block)
    amax = np.abs(pad).max(axis=-1)
    s = np.vectorize(lambda a: ref_mx_exponent(float(a), element, rule))(amax)
    X = np.exp2(s.astype(np.float64))
    X32 = X.astype(F32).astype(E8M0).astype(np.float64)
    assert np.array_equal(X32, X)  # every shared scale is an E8M0 value
    y = (pad.astype(np.float64) / X[..., None]).astype(F32)  # exact: a power-of-two scale
    mx = MX_MAX[element]
    if element == "int8":
        e = np.clip(np.rint(y.astype(np.float64) * 64), -127, 127) / 64
    else:
        e = np.clip(y, -mx, mx).astype(MX_ML[element]).astype(np.float64)
    return (e * X[..., None]).reshape(x.shape[0], -1)[:, :n].astype(F32), s


def _mx_rows(rng, element: str, block: int) -> np.ndarray:
    """Rows spanning 12 decades, a zero block, and block maxima at each rule's boundaries:
    a power of two (floor = ceil), max·2^k and its float32 neighbours (rceil), the half-up
    threshold of ``even`` and its neighbour below; element ties at the scale."""
    m, mx, emax = MX_MAN[element], MX_MAX[element], MX_EMAX[element]
    x = _wide(rng, (8, 4 * block + 5))
    x[:, :block] *= F32(10.0 ** rng.integers(-6, 7))
    x[1, block : 2 * block] = 0.0
    special = [
        F32(2.0**5),
        F32(mx * 2.0**-3),
        np.nextafter(F32(mx * 2.0**-3), F32(np.inf)),
        np.nextafter(F32(mx * 2.0**-3), F32(0)),
        F32((2 - 2.0 ** -(m + 1)) * 2.0**4),  # `even` rounds it up to 2^5
        np.nextafter(F32((2 - 2.0 ** -(m + 1)) * 2.0**4), F32(0)),
    ]
    for r, v in enumerate(special):
        row = 2 + r // 4 * 0 + (r % 6)
        blk = x[row % 8, 2 * block : 3 * block]
        blk[:] = np.clip(blk, -abs(v) / 2, abs(v) / 2)
        blk[0] = v
        # element ties at this block's floor scale: midpoints of the element grid
        X = 2.0 ** (math.floor(math.log2(v)) - emax)
        blk[1:4] = (
            F32(np.array([1.25, 0.75, 2.5]) * X)
            if element != "int8"
            else F32(np.array([1.5, 2.5, -0.5]) / 64 * X)
        )
    return x


RULES = ("floor", "ceil", "even", "rceil")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("element", list(MX_EMAX))
def test_mx_scale_rules_and_nearest_even_match_the_definitions(element, rule):
    """Every (element, rule) pair, at one block size each; every element and every rule meets
    all three block sizes (16, 32, 64) across the pairs."""
    block = (16, 32, 64)[(list(MX_EMAX).index(element) + RULES.index(rule)) % 3]
    fmt = MXFormat(element, block_size=block, scale_rule=rule, rounding="nearest_even")
    x = _mx_rows(np.random.default_rng(block), element, block)
    ref, s_ref = ref_mx(x, element, block, rule)
    s = np.asarray(jax.jit(fmt.scale_exponent)(x))
    assert np.array_equal(s, s_ref), (block, s[s != s_ref], s_ref[s != s_ref])
    ours = _q(fmt, x)
    bad = ~_same(ours, ref)
    assert not bad.any(), (block, x[bad][:5], ours[bad][:5], ref[bad][:5])


def test_rceil_never_saturates_a_block_max_and_floor_does():
    """Block-max saturation counts: on Gaussian blocks the OCP floor rule saturates the max of
    the blocks whose max lies above max_elem·2^s (E4M3: mantissa of amax/2^e above 1.75);
    rceil never; ceil and even in between (ceil never, even only above 448 < a' rounding)."""
    x = np.random.default_rng(3).standard_normal((512, 64)).astype(F32)
    frac = {}
    for rule in ("floor", "ceil", "even", "rceil"):
        fmt = MXFormat("fp8_e4m3", scale_rule=rule, rounding="nearest_even")
        frac[rule] = float(jax.jit(fmt.block_max_saturated)(x))
    # floor: a block max a = f·2^e saturates iff f·2^8 > 448, i.e. f > 1.75
    amax = np.abs(x.reshape(-1, 32)).max(axis=-1).astype(np.float64)
    f = amax / np.exp2(np.floor(np.log2(amax)))
    assert frac["floor"] == pytest.approx(np.mean(f > 1.75))
    # even: a' = a rounded half up at 3 mantissa bits reaches 2^(e+1) iff f ≥ 1.9375
    assert frac["even"] == pytest.approx(np.mean((f > 1.75) & (f < 1.9375)))
    assert frac["rceil"] == 0 and frac["ceil"] == 0 and frac["floor"] > 0.05


# ---- k-bit stochastic rounding -----------------------------------------------------------------


def _check_two_point(samples, lo, hi, p, n_se: float = 5.0):
    """Samples take only ``lo``/``hi``, with ``P(hi) = p``: mean and variance within ``n_se``
    standard errors of ``lo + p·h`` and ``h²p(1−p)`` (see ``test_formats._check_bernoulli``)."""
    n = samples.shape[0]
    assert np.all((samples == lo) | (samples == hi))
    h = hi - lo
    z = n_se * np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(samples.mean(axis=0) - (lo + p * h)) <= h * z + 1e-12)
    svar = samples.var(axis=0, ddof=1)
    tol = h**2 * (np.abs(1 - 2 * p) * z + z**2 + p * (1 - p) / (n - 1))
    assert np.all(np.abs(svar - h**2 * p * (1 - p)) <= tol + 1e-12)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_k_bit_stochastic_rounding_law_and_bias(k):
    """On the E4M3 grid (spacing h = 2^-3 in [1, 2)): x = 1 + f·h rounds up with probability
    ⌊f·2^k⌋/2^k (the top k discarded bits against k random bits), so its bias is
    −(f − ⌊f·2^k⌋/2^k)·h, toward zero; at k = 2 it is measured, many SE away from 0."""
    x = (1 + np.array([0.1, 0.3, 0.45, 0.7, 0.9, 0.99]) / 8).astype(F32)
    f = (x.astype(np.float64) - 1) * 8  # exact: the fraction of the spacing of the float32 x
    sign = np.where(np.arange(f.size) % 2 == 0, 1.0, -1.0)
    fmt = FloatFormat.preset("fp8_e4m3fn", sr_bits=k)
    n = 20_000
    out = _q(fmt, np.broadcast_to((x * sign).astype(F32), (n, f.size)).copy()) * sign
    out = out.astype(np.float64)
    p = np.floor(f * 2**k) / 2**k
    _check_two_point(out, 1.0, 1.125, p)
    if k == 2:
        bias = out.mean(axis=0) - x.astype(np.float64)
        se = np.sqrt(p * (1 - p) / n) / 8
        expect = -(f - p) / 8
        assert np.all(expect < 0) and np.all(np.abs(bias - expect) <= 5 * se + 1e-12)
        assert np.all(bias[se > 0] < -10 * se[se > 0])  # resolved: biased toward zero


def test_32_bit_stochastic_rounding_is_the_exact_rule_for_float32():
    x = _wide(np.random.default_rng(4), (64, 40), decades=6)
    for fmt in (FloatFormat.preset("fp8_e5m2"), IntFormat(4), MXFormat("fp4_e2m1")):
        k32 = with_rounding(fmt, "stochastic", sr_bits=32)
        assert np.array_equal(_q(fmt, x), _q(k32, x))
        assert not np.array_equal(_q(fmt, x), _q(with_rounding(fmt, "stochastic", 3), x))


# ---- draw/apply split ------------------------------------------------------------------------

SPLIT = [
    "fp8_e4m3",
    "fp8_e5m2fnuz:srbits=4",
    "int8",
    "int4:block7",
    "int8:delayed",
    "mxfp4",
    "mxfp8_e4m3:block16:rceil",
    "nvfp4",
    "nvfp4:nearest_even",
    "fp6_e2m3:to_odd",
]


@pytest.mark.parametrize("text", SPLIT)
def test_apply_of_drawn_words_is_the_call(text):
    q = parse_quantizer(text)
    u = jnp.asarray(_wide(np.random.default_rng(5), (3, 45), decades=4))
    dtypes = (jnp.float32, jnp.float64) if text in ("int8", "mxfp4", "nvfp4") else (jnp.float32,)
    for dt in dtypes:
        with jax.enable_x64(dt == jnp.float64):
            x = u.astype(dt)
            words = q.draw(KEY, x.shape, x.dtype)
            assert (words is None) == (q.rounding != "stochastic")
            split = jax.jit(q.apply)(x, words)
            assert np.array_equal(np.asarray(split), np.asarray(jax.jit(q)(KEY, x)))


# ---- delayed scaling of a format (the engine's history is tested in test_engine_delayed) -------


def test_delayed_scale_uses_the_reference_and_saturates_above_it():
    q = IntFormat(4, scaling="delayed", history=8, rounding="nearest_even")
    u = jnp.asarray(F32([0.5, -3.0, 1.1]))
    # reference 2: scale 2/7; −3 saturates to −2, 0.5 → round(1.75) = 2, 1.1 → round(3.85) = 4
    out = np.asarray(jax.jit(q.apply)(u, None, F32(2.0)))
    np.testing.assert_allclose(out, [4 / 7, -2.0, 4 / 7 * 2], rtol=1e-6)
    assert float(jax.jit(q.stats)(u, out, F32(2.0))[0]) == pytest.approx(1 / 3)
    # no reference (0: no history yet) → the tensor's own amax, as q(key, u)
    same = np.asarray(jax.jit(q.apply)(u, None, F32(0.0)))
    assert np.array_equal(same, _q(q, np.asarray(u)))
    tensor = IntFormat(4, scaling="tensor", rounding="nearest_even")
    assert np.array_equal(same, _q(tensor, np.asarray(u)))
    # FP with a delayed power-of-two scale: amax 2 → 2 ≤ 448·2^s, s = −7
    fp = FloatFormat.preset(
        "fp8_e4m3", scaling="delayed", history=4, overflow="saturate", rounding="nearest_even"
    )
    v = jnp.asarray(F32([0.5, -5.0, 1.1]))
    assert int(jax.jit(fp.scale_exponent)(v, F32(2.0))) == -7
    assert float(jax.jit(fp.apply)(v, None, F32(2.0))[1]) == -448 * 2.0**-7


def test_role_defaults_quantize_a_one_element_vector():
    """``all=int4`` at B = 1: labels, activations and gradients get delayed scaling (a vector
    absmax scale would return a one-element vector unchanged); data and parameters keep their
    per-vector scale; an explicit scaling option wins."""
    s = Scheme.parse(["all=int4"])
    for role in ("labels", "activations", "grads"):
        q = getattr(s, role)
        assert q.scaling == "delayed" and q.history == 16 and not q.exact_on((1,))
    assert s.data.scaling == "block" and s.data.block_size is None
    assert Scheme.parse(["grads=int4:vector"]).grads.exact_on((1,))
    assert Scheme.parse(["grads=nvfp4"]).grads.scaling == "delayed"
    assert Scheme.parse(["params=nvfp4"]).params.scaling == "tensor"
    assert parse_quantizer("int4").scaling == "block"  # no role: the format's own default


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("fp8_e4m3:srbits=0", r"srbits=0.* in \[1, 32\]"),
        ("int8:nearest_even:srbits=4", "sr_bits=4 needs rounding='stochastic'"),
        ("mxfp4:round_up", "unknown option 'round_up'"),
        ("nvfp4:vector", "unknown option 'vector'"),
        ("int8:delayed=0", r"delayed.* in \[1, 4096\]"),
    ],
)
def test_new_options_raise_clear_value_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_quantizer(text)


def test_invalid_new_fields_raise():
    with pytest.raises(ValueError, match="scale_rule must be one of floor, ceil, rceil, even"):
        MXFormat(scale_rule="up")
    with pytest.raises(ValueError, match="history=3 needs scaling='delayed'"):
        IntFormat(8, history=3)
    with pytest.raises(ValueError, match="NVFP4Format: scaling must be one of tensor, delayed"):
        NVFP4Format(scaling="block")


# ---- the format_choices recipe's verdicts ------------------------------------------------------


def test_paired_verdict_either_side_of_the_threshold():
    from qlinreg.experiments.format_choices import paired_verdict

    se = [1.0, 2.0]
    assert paired_verdict([3.1, 6.1], se, +1) and not paired_verdict([3.1, 5.9], se, +1)
    assert paired_verdict([-3.1, -6.1], se, -1) and not paired_verdict([-2.9, -6.1], se, -1)
    assert not paired_verdict([3.1, 6.1], se, -1)
    assert paired_verdict([2.9, -5.9], se, 0) and not paired_verdict([3.1, 0.0], se, 0)
    assert not paired_verdict([], [], +1)


def test_fp_block_and_vector_scaling_match_the_definition():
    """FP with a power-of-two scale per block (and per vector): s is the least integer with
    amax ≤ max·2^s (exact rationals), elements the ml_dtypes RNE cast of u/2^s."""
    x = _wide(np.random.default_rng(8), (6, 40), decades=8)
    x[2, :10] = 0.0
    for block in (10, None):
        fmt = FloatFormat.preset(
            "fp8_e4m3", scaling="block", block_size=block, rounding="nearest_even"
        )
        size = block or x.shape[1]
        blocks = x.reshape(6, -1, size).astype(np.float64)
        amax = np.abs(blocks).max(axis=-1)
        s = np.zeros_like(amax, dtype=np.int64)
        for i, a in np.ndenumerate(amax):
            if a > 0:
                r = Fraction(float(a)) / 448
                s[i] = _log2_floor(r) + (Fraction(2) ** _log2_floor(r) != r)
        X = np.exp2(s)[..., None]
        ref = ((blocks / X).astype(F32).astype(E4M3).astype(np.float64) * X).reshape(x.shape)
        assert np.all(_same(_q(fmt, x).astype(np.float64), ref)), block
        assert not np.asarray(jax.jit(fmt.saturated)(x)).any()  # the block max never overflows
