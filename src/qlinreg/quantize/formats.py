"""Real number formats as quantizers (SPEC §3): INT-b with a scale, FP (e, m), MX block formats.

Each format is a frozen dataclass registered as a JAX pytree and called as ``q(key, u)``
(``key`` a ``uint32[2]`` :mod:`qlinreg.prng` key, used by ``stochastic`` rounding only); the
result has the shape and dtype of ``u`` (float32 or float64) and holds values of the format,
scale applied. The last axis of ``u`` is the paper's vector (SPEC §3): per-vector and MX
block scales run along it. Rounding is exact, bit by bit (:mod:`qlinreg.quantize.rounding`).

- :class:`FloatFormat`: ``exp_bits``, ``man_bits``, ``bias``, subnormals, which codes are
  special (``ieee``: top exponent is inf/NaN; ``fn``: only the all-ones code is NaN;
  ``none``: every code is finite) and the overflow rule; optional per-tensor power-of-two
  scaling. Presets in :data:`FLOAT_PRESETS`.
- :class:`IntFormat`: ``bits``, signed (symmetric or two's complement) or unsigned, scale
  fixed, per-tensor absmax or per-block absmax (``block_size=None``: the whole vector).
- :class:`MXFormat`: OCP Microscaling v1.0: blocks of 32 along the vector share the scale
  ``2^(floor(log2 amax) − emax_elem)`` (an E8M0 value, exponent clamped to [−127, 127]);
  elements are FP8/FP6/FP4 or INT8 (``k·2^-6``, ``|k| ≤ 127``) and saturate.

A non-finite value in a scaling group (tensor, block) makes the whole group NaN (OCP MX rule).
Text form, registered with :func:`qlinreg.quantize.scheme.register_kind` on import:
``NAME[:ROUNDING[:OPTION]...]``, rounding ``stochastic`` when omitted (the paper's quantizers
are unbiased); see :data:`FORMAT_NAMES` and ``docs/formats.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qlinreg.quantize.rounding import (
    OVERFLOWS,
    ROUNDINGS,
    Grid,
    Overflow,
    Rounding,
    check_rounding,
    floor_log2,
    out_of_range,
    round_to_grid,
)
from qlinreg.quantize.scheme import register_kind

__all__ = [
    "FLOAT_PRESETS",
    "FORMAT_NAMES",
    "MX_ELEMENTS",
    "FloatFormat",
    "IntFormat",
    "MXFormat",
    "NumberFormat",
    "with_rounding",
]

Specials = Literal["ieee", "fn", "none"]
_SPECIALS = ("ieee", "fn", "none")
_DEFAULT_OVERFLOW = {"ieee": "inf", "fn": "nan", "none": "saturate"}

FLOAT_PRESETS: dict[str, dict] = {
    "fp32": {"exp_bits": 8, "man_bits": 23},
    "bf16": {"exp_bits": 8, "man_bits": 7},
    "fp16": {"exp_bits": 5, "man_bits": 10},
    "fp8_e4m3fn": {"exp_bits": 4, "man_bits": 3, "specials": "fn"},
    "fp8_e5m2": {"exp_bits": 5, "man_bits": 2},
    "fp6_e3m2": {"exp_bits": 3, "man_bits": 2, "specials": "none"},
    "fp6_e2m3": {"exp_bits": 2, "man_bits": 3, "specials": "none"},
    "fp4_e2m1": {"exp_bits": 2, "man_bits": 1, "specials": "none"},
}
"""Named FP formats (OCP / IEEE); biases are the default ``2^(exp_bits−1) − 1``."""

_ALIASES = {"fp8_e4m3": "fp8_e4m3fn"}

MX_ELEMENTS: tuple[str, ...] = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "int8")
"""Element formats of :class:`MXFormat` (OCP MX v1.0 MXFP8/6/4 and MXINT8)."""

_MX_NAMES = {
    "mxfp8_e4m3": "fp8_e4m3",
    "mxfp8_e5m2": "fp8_e5m2",
    "mxfp6_e3m2": "fp6_e3m2",
    "mxfp6_e2m3": "fp6_e2m3",
    "mxfp4": "fp4_e2m1",
    "mxint8": "int8",
}
_MX_SCALE_EXP = (-127, 127)  # exponent range of the E8M0 shared scale


def _int(owner: str, name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, else a ValueError naming the parameter."""
    rng = f"in [{low}, {high}]" if high is not None else f"≥ {low}"
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        raise ValueError(f"{owner}: {name} must be an integer {rng}, got {value!r}")
    return int(value)


def _choice(owner: str, name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _as_float(u) -> jax.Array:
    u = jnp.asarray(u)
    if u.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"number formats quantize float32 or float64 arrays, got dtype {u.dtype}")
    return u


def _is_zero(x: jax.Array) -> jax.Array:
    """Exact ``x == ±0`` from the bits (immune to flush-to-zero of subnormals)."""
    bits = lax.bitcast_convert_type(x, jnp.uint32 if x.dtype == jnp.float32 else jnp.uint64)
    return (bits << jnp.asarray(1, bits.dtype)) == 0


def _underflow_fraction(u: jax.Array, uq: jax.Array) -> jax.Array:
    """Fraction of all entries that were nonzero (not NaN) and became ±0."""
    hit = ~_is_zero(u) & ~jnp.isnan(u) & _is_zero(uq)
    return jnp.mean(hit.astype(u.dtype))


class _Blocks:
    """``x`` viewed as ``(..., n_blocks, size)`` blocks along ``axis`` (zero-padded at the end)."""

    def __init__(self, x: jax.Array, axis: int, size: int | None):
        if x.ndim == 0:
            raise ValueError("block scaling needs an array with at least one axis, got a scalar")
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis {axis} is out of range for an array of shape {x.shape}")
        self.axis = axis % x.ndim
        moved = jnp.moveaxis(x, self.axis, -1)
        self.n = moved.shape[-1]
        self.size = max(1, self.n) if size is None else size
        nb = max(1, -(-self.n // self.size))
        pad = nb * self.size - self.n
        if pad:
            moved = jnp.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, pad)])
        self.blocks = moved.reshape(*moved.shape[:-1], nb, self.size)

    def restore(self, yb: jax.Array) -> jax.Array:
        y = yb.reshape(*yb.shape[:-2], -1)[..., : self.n]
        return jnp.moveaxis(y, -1, self.axis)


def _group_amax(x: jax.Array, axis: int, size: int | None, whole: bool) -> jax.Array:
    """``max|x|`` over the tensor (``whole``) or over blocks, broadcast back to ``x.shape``."""
    if whole:
        return jnp.broadcast_to(jnp.max(jnp.abs(x)), x.shape)
    b = _Blocks(x, axis, size)
    amax = jnp.max(jnp.abs(b.blocks), axis=-1, keepdims=True)
    return b.restore(jnp.broadcast_to(amax, b.blocks.shape))


class NumberFormat:
    """Shared interface of the real formats: ``q(key, u)``, ``q.stats(u, uq)``, ``q.label``."""

    kind: ClassVar[str]
    rounding: Rounding

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        raise NotImplementedError

    def saturated(self, u: jax.Array) -> jax.Array:
        """Per entry: ``|u|`` exceeds the largest finite magnitude of its (scaled) format."""
        raise NotImplementedError

    def exact_on(self, shape: tuple[int, ...]) -> bool:
        """Whether the format returns every finite tensor of ``shape`` unchanged (a scale
        group of one element under absmax scaling: that role is not quantized at all)."""
        return False

    def stats(self, u: jax.Array, uq: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(saturated_fraction, underflow_fraction)`` of one call ``uq = q(key, u)``; jittable.

        Saturated: ``|u|`` above the largest finite magnitude of its scaled format (±inf
        included; such values were clamped, or became ±inf/NaN, by the overflow rule).
        Underflow: ``u ≠ 0`` and ``uq = ±0``. Both are fractions of all entries of ``u``.
        """
        u = _as_float(u)
        return jnp.mean(self.saturated(u).astype(u.dtype)), _underflow_fraction(u, uq)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[],
    meta_fields=[
        "exp_bits",
        "man_bits",
        "bias",
        "subnormals",
        "specials",
        "overflow",
        "scaling",
        "rounding",
        "name",
    ],
)
@dataclass(frozen=True)
class FloatFormat(NumberFormat):
    """Binary floating point with ``exp_bits`` exponent and ``man_bits`` mantissa bits.

    Attributes:
        exp_bits: exponent field width, in [1, 11] ([2, 11] for ``specials="ieee"``).
        man_bits: stored mantissa bits, in [0, 52] ([1, 52] for ``specials="fn"``).
        bias: exponent bias (default ``2^(exp_bits−1) − 1``); the smallest normal is
            ``2^(1−bias)``.
        subnormals: keep subnormals; if False, the only grid point below ``2^(1−bias)`` is 0.
        specials: ``ieee`` (top exponent = inf/NaN; max ``(2 − 2^−m)·2^(2^e−2−bias)``),
            ``fn`` (only the all-ones code is NaN; max ``(2 − 2^(1−m))·2^(2^e−1−bias)``) or
            ``none`` (all codes finite; max ``(2 − 2^−m)·2^(2^e−1−bias)``).
        overflow: ``saturate``, ``inf`` (needs ``ieee``) or ``nan`` (needs ``ieee``/``fn``);
            default ``inf``/``nan``/``saturate`` by ``specials``, as ``ml_dtypes`` casts do.
        scaling: ``none`` or ``tensor``: scale by ``2^s``, ``s`` the least integer with
            ``max|u| ≤ max·2^s`` (exact, never overflows).
        rounding: one of ``stochastic``, ``nearest_even``, ``nearest_away``, ``toward_zero``.
        name: preset name, for labels.
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    subnormals: bool = True
    specials: Specials = "ieee"
    overflow: Overflow | None = None
    scaling: Literal["none", "tensor"] = "none"
    rounding: Rounding = "stochastic"
    name: str = ""
    kind: ClassVar[str] = "fp"

    def __post_init__(self) -> None:
        own = "FloatFormat"
        specials = _choice(own, "specials", self.specials, _SPECIALS)
        e = _int(own, "exp_bits", self.exp_bits, 2 if specials == "ieee" else 1, 11)
        _int(own, "man_bits", self.man_bits, 1 if specials == "fn" else 0, 52)
        bias = (1 << (e - 1)) - 1 if self.bias is None else self.bias
        object.__setattr__(self, "bias", _int(own, "bias", bias, -1074, 1074))
        if not isinstance(self.subnormals, bool | np.bool_):
            raise ValueError(f"{own}: subnormals must be True or False, got {self.subnormals!r}")
        overflow = _DEFAULT_OVERFLOW[specials] if self.overflow is None else self.overflow
        _choice(own, "overflow", overflow, OVERFLOWS)
        if overflow == "inf" and specials != "ieee" or overflow == "nan" and specials == "none":
            raise ValueError(
                f"{own}: overflow={overflow!r} needs a format that encodes it, but "
                f"specials={specials!r}; use overflow='saturate' or specials='ieee'"
            )
        object.__setattr__(self, "overflow", overflow)
        _choice(own, "scaling", self.scaling, ("none", "tensor"))
        check_rounding(self.rounding)

    @classmethod
    def preset(cls, name: str, **overrides) -> FloatFormat:
        """A named format of :data:`FLOAT_PRESETS` (``fp8_e4m3`` is ``fp8_e4m3fn``)."""
        canon = _ALIASES.get(name, name)
        if canon not in FLOAT_PRESETS:
            names = ", ".join([*FLOAT_PRESETS, *_ALIASES])
            raise ValueError(f"unknown FP format preset {name!r}; allowed: {names}")
        return cls(**{**FLOAT_PRESETS[canon], "name": canon, **overrides})

    @property
    def grid(self) -> Grid:
        e, m, bias = self.exp_bits, self.man_bits, self.bias
        top = (1 << e) - (2 if self.specials == "ieee" else 1) - bias  # largest normal exponent
        max_sig = (1 << (m + 1)) - (2 if self.specials == "fn" else 1)
        return Grid(m, 1 - bias, bool(self.subnormals), max_sig, top - m, self.overflow)

    @property
    def max_value(self) -> float:
        """Largest finite value (before any scaling)."""
        return self.grid.max_value

    @property
    def label(self) -> str:
        base = self.name or f"e{self.exp_bits}m{self.man_bits}"
        opts = [] if self.scaling == "none" else [self.scaling]
        if self.overflow != _DEFAULT_OVERFLOW[self.specials]:
            opts.append(self.overflow)
        return ":".join([base, self.rounding, *opts])

    def scale_exponent(self, u: jax.Array) -> jax.Array:
        """``s`` of the per-tensor scale ``2^s`` (int32; 0 without scaling or for a zero tensor)."""
        x = _as_float(u)
        if self.scaling == "none":
            return jnp.zeros((), jnp.int32)
        grid = self.grid
        amax = jnp.max(jnp.where(jnp.isfinite(x), jnp.abs(x), 0))
        s0 = floor_log2(amax) - grid.emax
        s = s0 + out_of_range(amax, grid, s0).astype(jnp.int32)
        return jnp.where(amax > 0, s, 0)

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        out = round_to_grid(x, self.grid, self.rounding, key, self.scale_exponent(x))
        if self.scaling == "tensor":
            out = jnp.where(jnp.all(jnp.isfinite(x)), out, jnp.nan)
        return out

    def saturated(self, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        return out_of_range(x, self.grid, self.scale_exponent(x))


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["scale"],
    meta_fields=["bits", "signed", "symmetric", "scaling", "block_size", "axis", "rounding"],
)
@dataclass(frozen=True)
class IntFormat(NumberFormat):
    """``bits``-bit integers times a scale: ``Q(u) = scale·round(u/scale)``, clamped to the range.

    Attributes:
        bits: in [2, 24]. Codes: ``[−(2^(b−1)−1), 2^(b−1)−1]`` (signed, symmetric),
            ``[−2^(b−1), 2^(b−1)−1]`` (signed, not symmetric) or ``[0, 2^b−1]`` (unsigned).
        signed, symmetric: the code range, as above.
        scaling: ``fixed`` (``scale`` below), ``tensor`` (``max|u|/qmax`` over all of ``u``) or
            ``block`` (``max|u|/qmax`` per block of ``block_size`` along ``axis``; ``None``:
            the whole axis, i.e. one scale per vector). Absmax scales never overflow.
        block_size: block length (≥ 1) or ``None``.
        axis: the block axis (default the last, the paper's vector).
        scale: the fixed scale (> 0; a pytree leaf, so sweeping it does not recompile).
        rounding: one of ``stochastic``, ``nearest_even``, ``nearest_away``, ``toward_zero``.
    """

    bits: int
    signed: bool = True
    symmetric: bool = True
    scaling: Literal["fixed", "tensor", "block"] = "block"
    block_size: int | None = None
    axis: int = -1
    scale: float = 1.0
    rounding: Rounding = "stochastic"
    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        own = "IntFormat"
        _int(own, "bits", self.bits, 2, 24)
        for flag in ("signed", "symmetric"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ValueError(
                    f"{own}: {flag} must be True or False, got {getattr(self, flag)!r}"
                )
        _choice(own, "scaling", self.scaling, ("fixed", "tensor", "block"))
        if self.block_size is not None:
            _int(own, "block_size", self.block_size, 1)
        _int(own, "axis", self.axis, -64, 63)
        s = self.scale
        if isinstance(s, bool) or isinstance(s, str | bytes | list | tuple | dict):
            raise ValueError(f"{own}: scale must be a finite number > 0, got {s!r}")
        if isinstance(s, int | float | np.number) and not (math.isfinite(s) and s > 0):
            raise ValueError(f"{own}: scale must be a finite number > 0, got {s!r}")
        check_rounding(self.rounding)

    @property
    def qmax(self) -> int:
        """Largest code."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def grid(self) -> Grid:
        b = self.bits
        if not self.signed:
            return Grid(b - 1, b - 1, True, self.qmax, 0, "saturate", neg_sig=0, neg_exp=0)
        neg = None if self.symmetric else 1 << (b - 1)
        return Grid(b - 2, b - 2, True, self.qmax, 0, "saturate", neg_sig=neg, neg_exp=0)

    @property
    def label(self) -> str:
        opts = []
        if self.scaling == "fixed":
            opts.append(f"scale={float(self.scale):g}")
        elif self.scaling == "tensor":
            opts.append("tensor")
        elif self.block_size is not None:
            opts.append(f"block{self.block_size}")
        if not self.signed:
            opts.append("unsigned")
        elif not self.symmetric:
            opts.append("asymmetric")
        return ":".join([f"int{self.bits}", self.rounding, *opts])

    def _absmax_scale(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``amax``, the scale ``max(amax/qmax, tiny)`` and whether it was floored at ``tiny``."""
        amax = _group_amax(x, self.axis, self.block_size, self.scaling == "tensor")
        tiny = jnp.asarray(jnp.finfo(x.dtype).tiny, x.dtype)
        floored = amax / self.qmax < tiny  # XLA flushes subnormal scales to zero
        scale = jnp.where(floored, tiny, amax / self.qmax)
        return amax, jnp.where(amax > 0, scale, jnp.ones((), x.dtype)), floored

    def scale_of(self, u: jax.Array) -> jax.Array:
        """The scale of each entry of ``u`` (shape of ``u``): fixed, or ``max|u|/qmax`` over its
        group, floored at the smallest normal float; 1 for an all-zero group."""
        x = _as_float(u)
        if self.scaling == "fixed":
            return jnp.broadcast_to(jnp.asarray(self.scale, x.dtype), x.shape)
        return self._absmax_scale(x)[1]

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        if self.scaling == "fixed":
            scale = jnp.asarray(self.scale, x.dtype)
            return round_to_grid(x / scale, self.grid, self.rounding, key) * scale
        # |u| ≤ amax = qmax·scale: clip the division's rounding error, and let the top code
        # stand for amax itself (exact; qmax·scale could round past the float type's max).
        amax, scale, floored = self._absmax_scale(x)
        k = jnp.clip(x / scale, -self.qmax, self.qmax)
        k = round_to_grid(k, self.grid, self.rounding, key)
        top = (jnp.abs(k) == self.qmax) & ~floored
        return jnp.where(top, jnp.sign(k) * amax, k * scale)

    def saturated(self, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        if self.scaling != "fixed":
            return jnp.isinf(x)
        return out_of_range(x / self.scale_of(x), self.grid)

    def exact_on(self, shape: tuple[int, ...]) -> bool:
        """An absmax scale maps a group of one element to ``±qmax`` exactly."""
        if self.scaling == "fixed" or not shape:
            return False
        if self.scaling == "tensor":
            return math.prod(shape) == 1
        n = shape[self.axis]
        return min(n, self.block_size or n) == 1


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[],
    meta_fields=["element", "block_size", "axis", "rounding"],
)
@dataclass(frozen=True)
class MXFormat(NumberFormat):
    """OCP Microscaling (MX v1.0) block format: a shared E8M0 scale per block of elements.

    Shared scale of a block: ``X = 2^s``, ``s = floor(log2(max|u|)) − emax_elem`` clamped to
    [−127, 127] (``emax_elem``: exponent of the element format's largest power of two: 8, 15,
    4, 2, 2, 0 for FP8 E4M3, FP8 E5M2, FP6 E3M2, FP6 E2M3, FP4, INT8); elements are
    ``u/X`` rounded to the element format and saturated to ±its max (as microxcaling does).

    Attributes:
        element: one of :data:`MX_ELEMENTS`.
        block_size: elements per shared scale (OCP: 32).
        axis: the block axis (default the last, the paper's vector).
        rounding: one of ``stochastic``, ``nearest_even``, ``nearest_away``, ``toward_zero``.
    """

    element: str = "fp8_e4m3"
    block_size: int = 32
    axis: int = -1
    rounding: Rounding = "stochastic"
    kind: ClassVar[str] = "mx"

    def __post_init__(self) -> None:
        _choice("MXFormat", "element", self.element, MX_ELEMENTS)
        _int("MXFormat", "block_size", self.block_size, 1)
        _int("MXFormat", "axis", self.axis, -64, 63)
        check_rounding(self.rounding)

    @property
    def grid(self) -> Grid:
        """The element format's grid (saturating)."""
        if self.element == "int8":
            return Grid(6, 0, True, 127, -6, "saturate")
        return FloatFormat.preset(self.element, overflow="saturate").grid

    @property
    def name(self) -> str:
        return next(n for n, e in _MX_NAMES.items() if e == self.element)

    @property
    def label(self) -> str:
        opts = [] if self.block_size == 32 else [f"block{self.block_size}"]
        return ":".join([self.name, self.rounding, *opts])

    def _blocks(self, x: jax.Array) -> tuple[_Blocks, jax.Array]:
        b = _Blocks(x, self.axis, self.block_size)
        amax = jnp.max(jnp.abs(b.blocks), axis=-1)
        s = jnp.clip(floor_log2(amax) - self.grid.emax, *_MX_SCALE_EXP)
        return b, jnp.where(amax > 0, s, _MX_SCALE_EXP[0])

    def scale_exponent(self, u: jax.Array) -> jax.Array:
        """``s`` of each block's scale ``2^s``: shape ``(..., n_blocks)``, the block axis last."""
        return self._blocks(_as_float(u))[1]

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        b, s = self._blocks(x)
        yb = round_to_grid(b.blocks, self.grid, self.rounding, key, s[..., None])
        finite = jnp.all(jnp.isfinite(b.blocks), axis=-1, keepdims=True)
        return b.restore(jnp.where(finite, yb, jnp.nan))

    def saturated(self, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        b, s = self._blocks(x)
        return b.restore(out_of_range(b.blocks, self.grid, s[..., None]))


# ---- text form: NAME[:ROUNDING[:OPTION]...] --------------------------------------------------


def _split(name: str, args: str | None) -> tuple[str, list[str]]:
    """``ROUNDING`` and the options of ``NAME[:TOKEN]...``: the rounding is whichever token
    names one (at most one; ``stochastic`` when none does; an empty token is skipped), every
    other token is an option, so ``int8:scale=0.1:nearest_even`` and
    ``int8:nearest_even:scale=0.1`` are the same format."""
    tokens = [t for t in ([] if args is None else args.split(":")) if t]
    named = [t for t in tokens if t in ROUNDINGS]
    if len(named) > 1:
        raise ValueError(f"{name}: more than one rounding ({', '.join(named)}); give one")
    return (named[0] if named else "stochastic"), [t for t in tokens if t not in ROUNDINGS]


def _bad_option(name: str, opt: str, allowed: str) -> ValueError:
    return ValueError(
        f"{name}: unknown option {opt!r}; allowed: {allowed}, or a rounding "
        f"({', '.join(ROUNDINGS)}); grammar: {name}[:ROUNDING][:OPTION]..."
    )


def _block_size(name: str, opt: str) -> int:
    try:
        n = int(opt[len("block") :])
    except ValueError:
        raise ValueError(f"{name}: option {opt!r} must be blockN with N an integer ≥ 1") from None
    if n < 1:
        raise ValueError(f"{name}: block size must be an integer ≥ 1, got {opt!r}")
    return n


def _parse_float(name: str):
    def parse(args: str | None) -> FloatFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if opt in ("tensor", "none"):
                kw["scaling"] = opt
            elif opt in OVERFLOWS:
                kw["overflow"] = opt
            else:
                raise _bad_option(name, opt, "tensor, none, saturate, inf, nan")
        return FloatFormat.preset(name, **kw)

    return parse


def _parse_int(bits: int):
    name = f"int{bits}"

    def parse(args: str | None) -> IntFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if opt == "vector":
                kw.update(scaling="block", block_size=None)
            elif opt == "tensor":
                kw["scaling"] = "tensor"
            elif opt.startswith("block"):
                kw.update(scaling="block", block_size=_block_size(name, opt))
            elif opt.startswith("scale="):
                try:
                    kw.update(scaling="fixed", scale=float(opt[len("scale=") :]))
                except ValueError:
                    raise ValueError(f"{name}: {opt!r} must be scale=X, X a number > 0") from None
            elif opt == "unsigned":
                kw["signed"] = False
            elif opt == "asymmetric":
                kw["symmetric"] = False
            else:
                raise _bad_option(
                    name, opt, "vector, tensor, blockN, scale=X, unsigned, asymmetric"
                )
        return IntFormat(bits, **kw)

    return parse


def _parse_mx(name: str):
    def parse(args: str | None) -> MXFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if not opt.startswith("block"):
                raise _bad_option(name, opt, "blockN")
            kw["block_size"] = _block_size(name, opt)
        return MXFormat(_MX_NAMES[name], **kw)

    return parse


_INT_NAMES = tuple(f"int{b}" for b in range(2, 17))
FORMAT_NAMES: tuple[str, ...] = (*FLOAT_PRESETS, *_ALIASES, *_INT_NAMES, *_MX_NAMES)
"""Names usable as ``ROLE=NAME[:ROUNDING[:OPTION]...]`` in a :class:`~qlinreg.quantize.Scheme`."""

for _name in (*FLOAT_PRESETS, *_ALIASES):
    register_kind(_name, _parse_float(_name))
for _bits in range(2, 17):
    register_kind(f"int{_bits}", _parse_int(_bits))
for _name in _MX_NAMES:
    register_kind(_name, _parse_mx(_name))


def with_rounding(q: NumberFormat, rounding: Rounding) -> NumberFormat:
    """The same format with another rounding mode (e.g. for storing ``w_t``)."""
    check_rounding(rounding)
    return replace(q, rounding=rounding)
