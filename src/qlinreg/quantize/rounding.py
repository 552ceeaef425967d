"""Exact rounding of float32/float64 values onto a number format's grid (SPEC §3, real formats).

A :class:`Grid` is the set of magnitudes of a sign-magnitude format: ``m`` bits after the
leading one, the binade ``[2^e, 2^(e+1))`` has spacing ``2^(e−m)`` for ``e ≥ emin``, and below
``2^emin`` the spacing is ``2^(emin−m)`` (subnormals) or the only points are ``0`` and
``2^emin`` (no subnormals). The grid goes on above the largest finite value; what happens to a
value that rounds past it is the grid's *overflow* rule. Integer grids are the special case
``emin = m`` (spacing 1 up to ``2^(m+1) − 1``).

:func:`round_to_grid` works on the bits of the input (``uint32``/``uint64``), never on scaled
floating-point values, so it is exact for every input, subnormals included, whatever the
CPU's flush-to-zero mode (XLA on CPU flushes float32 subnormals in arithmetic). An integer
exponent ``offset`` shifts the grid by ``2^offset`` exactly: that is how per-tensor and MX
block scales are applied.

Rounding modes (``x`` between neighbouring grid points ``lo < x < hi``, magnitudes):

- ``stochastic``: ``hi`` with probability ``(x − lo)/(hi − lo)``, else ``lo``; unbiased, with
  variance ``(x − lo)(hi − x)``. The probability is exact whenever the spacing is at most
  ``2^32`` (float32 input) or ``2^64`` (float64) input ulps, i.e. for every input in the
  format's normal range; below that it is truncated to 32 (64) bits, a bias under ``2^-32``
  (``2^-64``) of the spacing. With ``sr_bits = k`` (1 … 32) it is the hardware rule instead:
  ``hi`` iff ``r < ⌊f·2^k⌋`` for ``r`` the top ``k`` bits of the random word and
  ``f = (x − lo)/(hi − lo)``, so ``P(hi) = ⌊f·2^k⌋/2^k``: the discarded bits below the top
  ``k`` are truncated, a bias toward zero of up to ``2^-k`` of the spacing (gfloat's
  ``StochasticFastest`` with ``srnumbits = k``).
- ``nearest_even``: nearer point; a tie goes to the point with an even last code bit
  (IEEE 754 roundTiesToEven); in the gap ``(0, 2^emin)`` of a grid without subnormals, to 0.
- ``nearest_away``: nearer point; a tie goes to the larger magnitude (roundTiesToAway).
- ``toward_zero``: ``lo`` (truncation); a finite input never overflows (IEEE 754: saturates).
- ``toward_positive`` / ``toward_negative``: the neighbour above / below ``x`` on the real line
  (IEEE 754 roundTowardPositive / roundTowardNegative); a finite input overflowing in the
  direction of zero saturates, as IEEE 754 specifies.
- ``to_odd``: ``x`` if it is on the grid, else whichever neighbour has an odd last code bit
  (round-to-odd; it makes a later rounding to fewer bits free of double-rounding error).

The last code bit is the last mantissa bit (for ``m = 0`` the last exponent-field bit, as
gfloat defines it). Overflow (the rounded magnitude exceeds the largest finite one, or the
input is ±inf): ``saturate`` gives ±max, ``inf`` gives ±inf, ``nan`` gives NaN. NaN inputs give
NaN. A grid without a negative zero (``signed_zero=False``: the FNUZ formats) returns +0 for
every zero result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qlinreg import prng

__all__ = [
    "OVERFLOWS",
    "ROUNDINGS",
    "Grid",
    "Overflow",
    "Rounding",
    "check_rounding",
    "check_sr_bits",
    "floor_log2",
    "out_of_range",
    "random_words",
    "round_to_grid",
]

Rounding = Literal[
    "stochastic",
    "nearest_even",
    "nearest_away",
    "toward_zero",
    "toward_positive",
    "toward_negative",
    "to_odd",
]
ROUNDINGS: tuple[str, ...] = get_args(Rounding)
Overflow = Literal["saturate", "inf", "nan"]
OVERFLOWS: tuple[str, ...] = ("saturate", "inf", "nan")
SR_BITS_MAX = 32


def check_rounding(rounding: object) -> str:
    """``rounding`` if it is one of :data:`ROUNDINGS`, else a ``ValueError`` listing them."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")
    return str(rounding)


def check_sr_bits(sr_bits: object, rounding: str, owner: str = "rounding") -> int | None:
    """``sr_bits`` (``None``: exact stochastic rounding, or an integer in [1, 32] that only
    ``stochastic`` rounding takes), else a ``ValueError`` naming it."""
    if sr_bits is None:
        return None
    ok = isinstance(sr_bits, int | np.integer) and not isinstance(sr_bits, bool)
    if not ok or not 1 <= sr_bits <= SR_BITS_MAX:
        raise ValueError(
            f"{owner}: sr_bits must be an integer in [1, {SR_BITS_MAX}] or None (exact), "
            f"got {sr_bits!r}"
        )
    if rounding != "stochastic":
        raise ValueError(
            f"{owner}: sr_bits={sr_bits} needs rounding='stochastic', got {rounding!r}"
        )
    return int(sr_bits)


@dataclass(frozen=True)
class Grid:
    """Magnitudes of a sign-magnitude number format (see the module docstring).

    Attributes:
        man_bits: ``m``, bits after the leading one.
        emin: exponent of the smallest normal binade.
        subnormals: whether the spacing below ``2^emin`` stays ``2^(emin−m)``.
        max_sig, max_exp: largest positive value ``max_sig·2^max_exp`` (``max_sig ≥ 0``).
        neg_sig, neg_exp: largest negative magnitude (``None``: the same as the positive one).
        overflow: what a value rounded past the largest magnitude becomes.
        signed_zero: whether −0 exists (False for FNUZ formats: zero results are +0).
    """

    man_bits: int
    emin: int
    subnormals: bool
    max_sig: int
    max_exp: int
    overflow: Overflow = "saturate"
    neg_sig: int | None = None
    neg_exp: int | None = None
    signed_zero: bool = True

    @property
    def max_value(self) -> float:
        """Largest finite positive value (as a Python float; may be ``inf`` if beyond float64)."""
        try:
            return float(self.max_sig * 2.0**self.max_exp)
        except OverflowError:
            return float("inf")

    @property
    def emax(self) -> int:
        """``floor(log2(max_value))``: the exponent of the largest power of two in the format."""
        return self.max_exp + self.max_sig.bit_length() - 1


@dataclass(frozen=True)
class _Layout:
    """Bit layout of an IEEE binary input type."""

    uint: np.dtype
    width: int
    p: int  # stored mantissa bits
    bias: int

    def c(self, v: int) -> jax.Array:
        return jnp.asarray(np.array(v, dtype=self.uint))

    @property
    def sign(self) -> int:
        return 1 << (self.width - 1)

    @property
    def inf(self) -> int:
        return ((2 * self.bias + 1) << self.p) & ~self.sign

    @property
    def nan(self) -> int:
        return self.inf | (1 << (self.p - 1))


_LAYOUTS = {
    np.dtype(np.float32): _Layout(np.dtype(np.uint32), 32, 23, 127),
    np.dtype(np.float64): _Layout(np.dtype(np.uint64), 64, 52, 1023),
}


def _layout(dtype) -> _Layout:
    dt = np.dtype(dtype)
    if dt not in _LAYOUTS:
        raise TypeError(f"number formats quantize float32 or float64 arrays, got dtype {dt}")
    return _LAYOUTS[dt]


def _shl(x: jax.Array, n, lay: _Layout) -> jax.Array:
    n = jnp.clip(jnp.asarray(n, jnp.int32), 0, lay.width - 1).astype(lay.uint)
    return lax.shift_left(x, n)


def _shr(x: jax.Array, n, lay: _Layout) -> jax.Array:
    n = jnp.clip(jnp.asarray(n, jnp.int32), 0, lay.width - 1).astype(lay.uint)
    return lax.shift_right_logical(x, n)


def _decompose(x: jax.Array, lay: _Layout):
    """``|x| = sig·2^q`` with ``sig`` an unsigned integer, plus ``floor(log2|x|)`` and the bits."""
    bits = lax.bitcast_convert_type(x, lay.uint)
    sign = bits & lay.c(lay.sign)
    mag = bits & lay.c(~lay.sign & ((1 << lay.width) - 1))
    field = lax.convert_element_type(mag >> lay.c(lay.p), jnp.int32)
    frac = mag & lay.c((1 << lay.p) - 1)
    sig = jnp.where(field > 0, frac | lay.c(1 << lay.p), frac)
    q = jnp.maximum(field, 1) - (lay.bias + lay.p)
    bitlen = lay.width - lax.clz(frac).astype(jnp.int32)
    ex = jnp.where(field > 0, field - lay.bias, bitlen - 1 + q)
    return sign, mag, sig, q, ex


def _encode(k: jax.Array, t: jax.Array, lay: _Layout) -> jax.Array:
    """Bits of the magnitude ``k·2^t`` (``k`` unsigned, ``t`` int32); past the type's range: inf.

    Exact whenever ``k·2^t`` is a value of the input type (``t`` at least the exponent of its
    smallest subnormal and ``k < 2^(p+2)``).
    """
    k = k.astype(lay.uint)
    t = jnp.asarray(t, jnp.int32)
    L = lay.width - lax.clz(k).astype(jnp.int32)
    e = t + L - 1
    sig = jnp.where(L <= lay.p + 1, _shl(k, lay.p + 1 - L, lay), _shr(k, L - (lay.p + 1), lay))
    # (e + bias − 1)·2^p + sig: the leading one of ``sig`` carries into the exponent field.
    normal = _shl(jnp.maximum(e + lay.bias - 1, 0).astype(lay.uint), lay.p, lay) + sig
    sub = _shl(k, t - (1 - lay.bias - lay.p), lay)
    out = jnp.where(e >= 1 - lay.bias, normal, sub)
    out = jnp.where(e > lay.bias, lay.c(lay.inf), out)
    return jnp.where(k == 0, lay.c(0), out)


def _limit_bits(sig: int, exp: int, offset, lay: _Layout) -> jax.Array:
    """Bits of ``sig·2^(exp + offset)``, ``sig`` cut to the input type's precision (toward 0)."""
    extra = max(0, sig.bit_length() - (lay.p + 1))
    return _encode(lay.c(sig >> extra), exp + extra + offset, lay)


def _limits(grid: Grid, offset, lay: _Layout) -> tuple[jax.Array, jax.Array]:
    pos = _limit_bits(grid.max_sig, grid.max_exp, offset, lay)
    if grid.neg_sig is None:
        return pos, pos
    neg_exp = grid.max_exp if grid.neg_exp is None else grid.neg_exp
    return pos, _limit_bits(grid.neg_sig, neg_exp, offset, lay)


def random_words(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """The random words of stochastic rounding for an input of ``shape`` and ``dtype``: one
    uniform ``uint32`` (float32 input) or ``uint64`` (float64) per element.

    Threefry-2x32 of :mod:`qlinreg.prng` with the element's flat index as counter (float64 takes
    both output words, float32 the first). A pure function of ``(key, shape)``: drawing them
    ahead (``q.draw``) and rounding later (``q.apply``) gives the numbers of ``q(key, u)``.
    One counter per element, shaped like the output, lets XLA fuse the generator into the
    rounding (about 8× faster on CPU than drawing a flat stream and reshaping it). Using both
    output words for two entries would halve the generator's work when the words are drawn
    ahead, but fused into a rounding the two halves are computed separately, and into NVFP4's
    blocks 5.5× slower than this (measured: 26 vs 145 M values/s).
    """
    lay = _layout(dtype)
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 2**32:
        raise ValueError(f"stochastic rounding draws at most 2**32 − 1 values per call, got {n}")
    key = jnp.asarray(key, jnp.uint32)
    ctr = lax.iota(jnp.uint32, n).reshape(shape)
    y0, y1 = prng.threefry2x32(key[0], key[1], ctr, jnp.uint32(0))
    if lay.width == 32:
        return y0
    return (y0.astype(lay.uint) << lay.c(32)) | y1.astype(lay.uint)


def _code_odd(k: jax.Array, t: jax.Array, low: jax.Array, grid: Grid, lay: _Layout) -> jax.Array:
    """Whether the grid point ``k·2^t`` has an odd last code bit: its last mantissa bit, or for
    ``m = 0`` (one point per binade) the last bit of its exponent field ``t − low + 1``."""
    if grid.man_bits > 0:
        return (k & lay.c(1)) == 1
    return (k != 0) & (((t - low + 1) & 1) == 1)


def round_to_grid(
    x: jax.Array,
    grid: Grid,
    rounding: Rounding,
    key: jax.Array | None = None,
    offset: jax.Array | int = 0,
    *,
    words: jax.Array | None = None,
    sr_bits: int | None = None,
) -> jax.Array:
    """Round ``x`` (float32/float64) onto ``grid·2^offset`` with the given rounding mode.

    Args:
        x: values; the result has the same shape and dtype.
        grid: the format's magnitudes and overflow rule.
        rounding: one of :data:`ROUNDINGS` (see the module docstring for tie rules).
        key: ``uint32[2]`` :mod:`qlinreg.prng` key: ``stochastic`` draws its words from it
            (:func:`random_words`) unless ``words`` are given.
        offset: integer exponent shift of the grid, broadcastable to ``x`` (a scale ``2^offset``).
        words: pre-drawn random words of ``stochastic`` rounding, shaped like ``x``.
        sr_bits: ``stochastic`` with ``k`` random bits (hardware rule), ``None``: exact.
    """
    x = jnp.asarray(x)
    lay = _layout(x.dtype)
    sign, mag, sig, q, ex = _decompose(x, lay)
    off = jnp.asarray(offset, jnp.int32)
    low = grid.emin + off
    if grid.subnormals:
        t = jnp.maximum(ex, low) - grid.man_bits
    else:
        t = jnp.where(ex >= low, ex - grid.man_bits, low)
    shift = t - q  # spacing in units of the input's ulp is 2^shift
    k_lo = _shr(sig, shift, lay)
    rem = sig - _shl(k_lo, shift, lay)
    half = _shl(lay.c(1), shift - 1, lay)
    neg = sign != 0
    inexact = rem > 0
    if rounding == "nearest_even":
        up = (rem > half) | ((rem == half) & _code_odd(k_lo, t, low, grid, lay))
    elif rounding == "nearest_away":
        up = rem >= half
    elif rounding == "toward_zero":
        up = jnp.zeros(x.shape, bool)
    elif rounding == "toward_positive":
        up = ~neg & inexact
    elif rounding == "toward_negative":
        up = neg & inexact
    elif rounding == "to_odd":
        up = inexact & ~_code_odd(k_lo, t, low, grid, lay)
    elif rounding == "stochastic":
        if words is None:
            if key is None:
                raise ValueError(
                    "stochastic rounding needs a key (a uint32[2] qlinreg.prng key) or words"
                )
            words = random_words(key, x.shape, x.dtype)
        # P(up) = thr/2^width = rem/2^shift, exact when shift ≤ width.
        thr = jnp.where(
            shift <= lay.width, _shl(rem, lay.width - shift, lay), _shr(rem, shift - lay.width, lay)
        )
        if sr_bits is not None:  # compare the top k random bits with the top k discarded bits
            drop = lay.c(lay.width - sr_bits)
            thr, words = thr >> drop, words >> drop
        up = words < thr
    else:
        check_rounding(rounding)
    up = up & inexact & (shift > 0)
    out = jnp.where(shift > 0, _encode(k_lo + up.astype(lay.uint), t, lay), mag)

    pos, neg_limit = _limits(grid, off, lay)
    limit = jnp.where(neg, neg_limit, pos)
    over = out > limit
    finite_in = mag < lay.c(lay.inf)
    if grid.overflow == "saturate":
        fill = limit
    else:
        fill = lay.c(lay.inf if grid.overflow == "inf" else lay.nan)
        # IEEE 754: a directed rounding toward zero's side of x never overflows a finite x.
        toward = {"toward_zero": True, "toward_positive": neg, "toward_negative": ~neg}
        if rounding in toward:
            fill = jnp.where(finite_in & toward[rounding], limit, fill)
    out = jnp.where(over, fill, out)
    if grid.signed_zero:
        out = out | sign
    else:
        out = jnp.where(out == 0, out, out | sign)
    out = jnp.where(mag > lay.c(lay.inf), lay.c(lay.nan), out)  # NaN in, NaN out
    return lax.bitcast_convert_type(out, x.dtype)


def out_of_range(x: jax.Array, grid: Grid, offset: jax.Array | int = 0) -> jax.Array:
    """Whether ``|x|`` exceeds the largest finite magnitude of ``grid·2^offset`` (False for NaN)."""
    x = jnp.asarray(x)
    lay = _layout(x.dtype)
    sign, mag, *_ = _decompose(x, lay)
    pos, neg = _limits(grid, jnp.asarray(offset, jnp.int32), lay)
    return (mag > jnp.where(sign != 0, neg, pos)) & (mag <= lay.c(lay.inf))


def floor_log2(x: jax.Array) -> jax.Array:
    """``floor(log2|x|)`` as int32, exact for every finite nonzero ``x`` (subnormals included)."""
    x = jnp.asarray(x)
    return _decompose(x, _layout(x.dtype))[4]
