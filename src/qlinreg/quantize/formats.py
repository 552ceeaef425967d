"""Real number formats as quantizers (SPEC §3): INT-b with a scale, FP (e, m), MX and NVFP4 blocks.

Each format is a frozen dataclass registered as a JAX pytree and called as ``q(key, u)``
(``key`` a ``uint32[2]`` :mod:`qlinreg.prng` key, used by ``stochastic`` rounding only); the
result has the shape and dtype of ``u`` (float32 or float64) and holds values of the format,
scale applied. The last axis of ``u`` is the paper's vector (SPEC §3): per-vector and block
scales run along it. Rounding is exact, bit by bit, one function for every format
(:func:`qlinreg.quantize.rounding.round_to_grid`); a format is data (its grid) plus at most a
small scale rule.

Draw/apply split (as the idealized quantizers have): ``q.draw(key, shape, dtype)`` returns the
random words of stochastic rounding (``None`` for a deterministic rounding) and
``q.apply(u, words)`` rounds with them; ``q(key, u) == q.apply(u, q.draw(key, u.shape,
u.dtype))`` bit for bit, so the engine draws a block of steps' words ahead of its sequential
loop.

- :class:`FloatFormat`: ``exp_bits``, ``man_bits``, ``bias``, subnormals, which codes are
  special (``ieee``: top exponent is inf/NaN; ``fn``: only the all-ones code is NaN; ``fnuz``:
  the negative-zero code is the only NaN, no −0; ``none``: every code is finite), the overflow
  rule, and an optional power-of-two scale per tensor, vector or block, or a delayed one.
  Presets in :data:`FLOAT_PRESETS`.
- :class:`IntFormat`: ``bits``, signed (symmetric or two's complement) or unsigned; a fixed
  scale, or an absmax scale per tensor, vector or block, or a delayed one.
- :class:`MXFormat`: OCP Microscaling v1.0 blocks (32 by default) sharing an E8M0 scale
  ``2^s`` chosen by a scale rule (:data:`MX_SCALE_RULES`); elements FP8/FP6/FP4 or INT8.
- :class:`NVFP4Format`: NVIDIA's NVFP4: E2M1 elements in blocks of 16, an E4M3 scale per
  block and an FP32 scale per tensor.

**Delayed scaling** (``scaling="delayed"``, ``history=k``), as in FP8 training recipes: the
tensor's scale comes from a reference ``amax``, the largest ``max|u|`` of the last ``k`` steps
(only steps before the current one), passed as ``q.apply(u, words, amax)``; the engine keeps
the history (:mod:`qlinreg.sgd`). Without a reference (a call ``q(key, u)``, the first step,
or a history of zero tensors only) the current tensor's ``max|u|`` is used. Values above the
reference saturate.

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
    check_sr_bits,
    floor_log2,
    out_of_range,
    random_words,
    round_to_grid,
)
from qlinreg.quantize.scheme import register_kind

__all__ = [
    "DELAYED_HISTORY",
    "FLOAT_PRESETS",
    "FORMAT_NAMES",
    "MX_ELEMENTS",
    "MX_SCALE_RULES",
    "FloatFormat",
    "IntFormat",
    "MXFormat",
    "NVFP4Format",
    "NumberFormat",
    "quantize_steps",
    "windowed_refs",
    "with_rounding",
]

Specials = Literal["ieee", "fn", "fnuz", "none"]
_SPECIALS = ("ieee", "fn", "fnuz", "none")
_DEFAULT_OVERFLOW = {"ieee": "inf", "fn": "nan", "fnuz": "nan", "none": "saturate"}

FLOAT_PRESETS: dict[str, dict] = {
    "fp32": {"exp_bits": 8, "man_bits": 23},
    "bf16": {"exp_bits": 8, "man_bits": 7},
    "fp16": {"exp_bits": 5, "man_bits": 10},
    "fp8_e4m3fn": {"exp_bits": 4, "man_bits": 3, "specials": "fn"},
    "fp8_e5m2": {"exp_bits": 5, "man_bits": 2},
    "fp8_e4m3fnuz": {"exp_bits": 4, "man_bits": 3, "specials": "fnuz"},
    "fp8_e5m2fnuz": {"exp_bits": 5, "man_bits": 2, "specials": "fnuz"},
    "fp6_e3m2": {"exp_bits": 3, "man_bits": 2, "specials": "none"},
    "fp6_e2m3": {"exp_bits": 2, "man_bits": 3, "specials": "none"},
    "fp4_e2m1": {"exp_bits": 2, "man_bits": 1, "specials": "none"},
}
"""Named FP formats (OCP / IEEE, and the FNUZ FP8 of AMD/Graphcore); biases are the default
``2^(exp_bits−1) − 1`` (``2^(exp_bits−1)`` for ``fnuz``)."""

_ALIASES = {"fp8_e4m3": "fp8_e4m3fn"}

MX_ELEMENTS: tuple[str, ...] = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "int8")
"""Element formats of :class:`MXFormat` (OCP MX v1.0 MXFP8/6/4 and MXINT8)."""

MX_SCALE_RULES: tuple[str, ...] = ("floor", "ceil", "rceil", "even")
"""Shared-scale rules of :class:`MXFormat` (see its docstring)."""

DELAYED_HISTORY = 16
"""Default ``k`` of delayed scaling: the amax history of the last 16 steps."""

_MX_NAMES = {
    "mxfp8_e4m3": "fp8_e4m3",
    "mxfp8_e5m2": "fp8_e5m2",
    "mxfp6_e3m2": "fp6_e3m2",
    "mxfp6_e2m3": "fp6_e2m3",
    "mxfp4": "fp4_e2m1",
    "mxint8": "int8",
}
_MX_SCALE_EXP = (-127, 127)  # exponent range of the E8M0 shared scale
_B_ROLES = ("labels", "activations", "grads")  # roles whose vector has B entries


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


def _check_scaling(own: str, fmt, allowed: tuple[str, ...]) -> None:
    """Validate ``scaling``, ``block_size``, ``axis`` and ``history`` of a scaled format."""
    _choice(own, "scaling", fmt.scaling, allowed)
    if fmt.block_size is not None:
        _int(own, "block_size", fmt.block_size, 1)
    _int(own, "axis", fmt.axis, -64, 63)
    if fmt.scaling == "delayed":
        _int(own, "history", fmt.history, 1, 4096)
    elif fmt.history != 0:
        raise ValueError(f"{own}: history={fmt.history!r} needs scaling='delayed'")


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
        self.n = x.shape[self.axis]
        self.size = max(1, self.n) if size is None else size
        self.blocks = self.split(x)

    def split(self, y: jax.Array) -> jax.Array:
        """Any array shaped like ``x`` (e.g. its random words) in the same blocks."""
        moved = jnp.moveaxis(y, self.axis, -1)
        nb = max(1, -(-self.n // self.size))
        pad = nb * self.size - self.n
        if pad:
            moved = jnp.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, pad)])
        return moved.reshape(*moved.shape[:-1], nb, self.size)

    def restore(self, yb: jax.Array) -> jax.Array:
        y = yb.reshape(*yb.shape[:-2], -1)[..., : self.n]
        return jnp.moveaxis(y, -1, self.axis)


def _div(a: jax.Array, c, like: jax.Array | None = None) -> jax.Array:
    """``a / c`` correctly rounded, elementwise (``like``: an array of the result's shape that
    is not a broadcast; default ``a``).

    XLA rewrites a division by a constant or by a broadcast into a multiplication by the
    rounded reciprocal, off by an ulp in about a third of cases (2688/448 gave 6.0000005). A
    divisor ``c + 0·v``, ``v`` = ``like`` with its non-finite entries zeroed, is neither (XLA
    keeps ``0·v``: it would be NaN for non-finite ``v``)."""
    like = a if like is None else like
    zero = jnp.where(jnp.isfinite(like), like, 0) * 0
    return a / (jnp.asarray(c, a.dtype) + zero.astype(a.dtype))


def _finite_amax(x: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
    """``max|x|`` over the finite entries (the group is made NaN separately)."""
    return jnp.max(jnp.where(jnp.isfinite(x), jnp.abs(x), 0), axis=axis, keepdims=keepdims)


def _reference(x: jax.Array, amax) -> jax.Array:
    """The delayed-scaling reference: ``amax`` where it is positive, else the current
    tensor's ``max|x|`` (no history yet, or only zero tensors in it)."""
    if amax is None:
        return _finite_amax(x)
    amax = jnp.asarray(amax, x.dtype)
    return jnp.where(amax > 0, amax, _finite_amax(x))


def _groups(fmt, x: jax.Array, amax=None):
    """The ``max|u|`` of each scaling group of ``x`` (over the tensor, or its blocks;
    ``block_size=None``: the vector; for delayed scaling the reference), whether the group is
    all finite (``max|u|`` propagates NaN and ±inf: one reduction for both), and a function
    broadcasting per-group values back to ``x.shape``."""
    if fmt.scaling in ("tensor", "delayed"):
        raw = _reference(x, amax) if fmt.scaling == "delayed" else jnp.max(jnp.abs(x))
        finite = jnp.isfinite(raw) | (fmt.scaling == "delayed")
        return jnp.where(finite, raw, 0), finite, lambda g: jnp.broadcast_to(g, x.shape)
    b = _Blocks(x, fmt.axis, fmt.block_size)
    raw = jnp.max(jnp.abs(b.blocks), axis=-1, keepdims=True)
    finite = jnp.isfinite(raw)
    return (
        jnp.where(finite, raw, 0),
        finite,
        lambda g: b.restore(jnp.broadcast_to(g, b.blocks.shape)),
    )


def _rceil_exponent(amax: jax.Array, grid: Grid) -> jax.Array:
    """The least integer ``s`` with ``amax ≤ max·2^s`` (int32; 0 where ``amax`` is 0): the
    exact scale ``amax/max`` rounded up to a power of two, so ``amax`` never saturates."""
    s0 = floor_log2(amax) - grid.emax
    s = s0 + out_of_range(amax, grid, s0).astype(jnp.int32)
    return jnp.where(amax > 0, s, 0)


def windowed_refs(hist: jax.Array, amax: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Delayed-scaling references of a block of ``L`` steps (the engine's, for a role quantized
    ahead of the loop; :func:`quantize_steps`).

    ``hist``: ``(T, k)`` the amaxes of the ``k`` steps before the block (oldest first);
    ``amax``: ``(L, T)`` the block's own. Step ``j`` of the block gets the max over steps
    ``j−k … j−1`` (only earlier steps); returns those ``(L, T)`` and the history after the
    block, ``(T, k)``.
    """
    k, L = hist.shape[-1], amax.shape[0]
    seq = jnp.concatenate([hist.T, amax], axis=0)  # (k + L, T)
    ref = lax.reduce_window(seq, -jnp.inf, lax.max, (k, 1), (1, 1), "VALID")[:L]
    return ref, seq[L:].T


def quantize_steps(q, keys: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """``q`` on each step's tensor ``u[k]`` with its own key ``keys[k]``: ``(Q(u), amax)``.

    Delayed scaling takes as reference the largest ``max|u|`` of the ``history`` tensors before
    ``u[k]`` along axis 0, cyclically: the tensors are treated as exchangeable draws of one role
    (for i.i.d. data and labels the law of the engine's reference; for values recorded along a
    run, an approximation). ``amax`` is that reference per tensor (``None`` for other scalings).
    """
    if getattr(q, "scaling", None) != "delayed":
        return jax.vmap(q)(keys, u), None
    a = jax.vmap(q.amax)(u)
    k, K = q.history, a.shape[0]
    ref = windowed_refs(jnp.tile(a, -(-k // K))[None, -k:], a[:, None])[0][:, 0]
    words = jax.vmap(lambda key, x: q.draw(key, x.shape, x.dtype))(keys, u)
    return jax.vmap(q.apply)(u, words, ref), ref


def _scale_label(fmt) -> list[str]:
    """Text options of a format's scaling (see the text form)."""
    if fmt.scaling == "tensor":
        return ["tensor"]
    if fmt.scaling == "delayed":
        return ["delayed" if fmt.history == DELAYED_HISTORY else f"delayed={fmt.history}"]
    if fmt.scaling == "block":
        return ["vector" if fmt.block_size is None else f"block{fmt.block_size}"]
    return []


class NumberFormat:
    """Shared interface of the real formats: ``q(key, u)``, ``q.draw``/``q.apply``,
    ``q.stats(u, uq)``, ``q.label``."""

    kind: ClassVar[str]
    rounding: Rounding
    sr_bits: int | None = None
    scaling: str = "none"
    history: int = 0

    def draw(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array | None:
        """The random words of stochastic rounding for an input of ``shape`` and ``dtype``
        (:func:`~qlinreg.quantize.rounding.random_words`); ``None`` for deterministic rounding."""
        if self.rounding != "stochastic":
            return None
        return random_words(key, tuple(shape), dtype)

    def apply(self, u: jax.Array, words: jax.Array | None, amax=None) -> jax.Array:
        """``u`` rounded with pre-drawn ``words`` (from :meth:`draw`); ``amax``: the reference
        of delayed scaling (ignored otherwise)."""
        raise NotImplementedError

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        x = _as_float(u)
        return self.apply(x, self.draw(key, x.shape, x.dtype))

    def amax(self, u: jax.Array) -> jax.Array:
        """The statistic a delayed scale keeps per step: ``max|u|`` over the tensor."""
        return jnp.max(jnp.abs(_as_float(u)))

    def saturated(self, u: jax.Array, amax=None) -> jax.Array:
        """Per entry: ``|u|`` exceeds the largest finite magnitude of its (scaled) format."""
        raise NotImplementedError

    def exact_on(self, shape: tuple[int, ...]) -> bool:
        """Whether the format returns every finite tensor of ``shape`` unchanged (a scale
        group of one element under absmax scaling: that role is not quantized at all)."""
        return False

    def stats(self, u: jax.Array, uq: jax.Array, amax=None) -> tuple[jax.Array, jax.Array]:
        """``(saturated_fraction, underflow_fraction)`` of one call ``uq = q.apply(u, ·, amax)``;
        jittable.

        Saturated: ``|u|`` above the largest finite magnitude of its scaled format (±inf
        included; such values were clamped, or became ±inf/NaN, by the overflow rule).
        Underflow: ``u ≠ 0`` and ``uq = ±0``. Both are fractions of all entries of ``u``.
        """
        u = _as_float(u)
        sat = self.saturated(u, amax)
        return jnp.mean(sat.astype(u.dtype)), _underflow_fraction(u, uq)

    def _round(self, x, grid, words, offset=0) -> jax.Array:
        sr = self.sr_bits
        return round_to_grid(x, grid, self.rounding, None, offset, words=words, sr_bits=sr)

    def _check_rounding(self, own: str) -> None:
        check_rounding(self.rounding)
        check_sr_bits(self.sr_bits, self.rounding, own)

    def _rounding_label(self) -> list[str]:
        return [self.rounding] + ([] if self.sr_bits is None else [f"srbits={self.sr_bits}"])


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
        "block_size",
        "axis",
        "history",
        "rounding",
        "sr_bits",
        "name",
    ],
)
@dataclass(frozen=True)
class FloatFormat(NumberFormat):
    """Binary floating point with ``exp_bits`` exponent and ``man_bits`` mantissa bits.

    Attributes:
        exp_bits: exponent field width, in [1, 11] ([2, 11] for ``specials="ieee"``).
        man_bits: stored mantissa bits, in [0, 52] ([1, 52] for ``specials="fn"``).
        bias: exponent bias (default ``2^(exp_bits−1) − 1``, ``2^(exp_bits−1)`` for ``fnuz``);
            the smallest normal is ``2^(1−bias)``.
        subnormals: keep subnormals; if False, the only grid point below ``2^(1−bias)`` is 0.
        specials: ``ieee`` (top exponent = inf/NaN; max ``(2 − 2^−m)·2^(2^e−2−bias)``),
            ``fn`` (only the all-ones code is NaN; max ``(2 − 2^(1−m))·2^(2^e−1−bias)``),
            ``fnuz`` (the −0 code is NaN, no −0, no inf; max ``(2 − 2^−m)·2^(2^e−1−bias)``) or
            ``none`` (all codes finite; max ``(2 − 2^−m)·2^(2^e−1−bias)``).
        overflow: ``saturate``, ``inf`` (needs ``ieee``) or ``nan`` (not for ``none``);
            default ``inf``/``nan``/``nan``/``saturate`` by ``specials``, as ``ml_dtypes``
            casts do.
        scaling: ``none``; ``tensor``, ``block`` (per block of ``block_size`` along ``axis``;
            ``None``: per vector) or ``delayed`` (reference amax of the last ``history``
            steps): scale by ``2^s``, ``s`` the least integer with ``amax ≤ max·2^s`` (exact;
            the group's max never overflows, except above a delayed reference).
        block_size, axis, history: see ``scaling``.
        rounding: one of :data:`~qlinreg.quantize.rounding.ROUNDINGS`.
        sr_bits: random bits of ``stochastic`` rounding (1 … 32; ``None``: exact).
        name: preset name, for labels.
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    subnormals: bool = True
    specials: Specials = "ieee"
    overflow: Overflow | None = None
    scaling: Literal["none", "tensor", "block", "delayed"] = "none"
    block_size: int | None = None
    axis: int = -1
    history: int = 0
    rounding: Rounding = "stochastic"
    sr_bits: int | None = None
    name: str = ""
    kind: ClassVar[str] = "fp"

    def __post_init__(self) -> None:
        own = "FloatFormat"
        specials = _choice(own, "specials", self.specials, _SPECIALS)
        e = _int(own, "exp_bits", self.exp_bits, 2 if specials == "ieee" else 1, 11)
        _int(own, "man_bits", self.man_bits, 1 if specials == "fn" else 0, 52)
        default_bias = (1 << (e - 1)) - (0 if specials == "fnuz" else 1)
        bias = default_bias if self.bias is None else self.bias
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
        _check_scaling(own, self, ("none", "tensor", "block", "delayed"))
        self._check_rounding(own)

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
        return Grid(
            m, 1 - bias, bool(self.subnormals), max_sig, top - m, self.overflow,
            signed_zero=self.specials != "fnuz",
        )  # fmt: skip

    @property
    def max_value(self) -> float:
        """Largest finite value (before any scaling)."""
        return self.grid.max_value

    @property
    def label(self) -> str:
        base = self.name or f"e{self.exp_bits}m{self.man_bits}"
        opts = _scale_label(self)
        if self.overflow != _DEFAULT_OVERFLOW[self.specials]:
            opts.append(self.overflow)
        return ":".join([base, *self._rounding_label(), *opts])

    def scale_exponent(self, u: jax.Array, amax=None) -> jax.Array:
        """``s`` of the scale ``2^s`` (int32; 0 without scaling or for a zero group): a scalar
        for ``tensor``/``delayed`` scaling, else one per entry of ``u``."""
        return self._exponent(_as_float(u), amax)[0]

    def _exponent(self, x: jax.Array, amax) -> tuple[jax.Array, jax.Array | None]:
        """The scale exponent (see :meth:`scale_exponent`) and where the group is finite."""
        if self.scaling == "none":
            return jnp.zeros((), jnp.int32), None
        a, finite, bcast = _groups(self, x, amax)
        s = _rceil_exponent(a, self.grid)
        if self.scaling == "block":
            return bcast(s), bcast(finite)
        return s, finite

    def apply(self, u: jax.Array, words: jax.Array | None, amax=None) -> jax.Array:
        x = _as_float(u)
        s, finite = self._exponent(x, amax)
        out = self._round(x, self.grid, words, s)
        if self.scaling in ("tensor", "block"):
            out = jnp.where(finite, out, jnp.nan)
        return out

    def saturated(self, u: jax.Array, amax=None) -> jax.Array:
        x = _as_float(u)
        return out_of_range(x, self.grid, self._exponent(x, amax)[0])


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["scale"],
    meta_fields=[
        "bits",
        "signed",
        "symmetric",
        "scaling",
        "block_size",
        "axis",
        "history",
        "rounding",
        "sr_bits",
    ],
)
@dataclass(frozen=True)
class IntFormat(NumberFormat):
    """``bits``-bit integers times a scale: ``Q(u) = scale·round(u/scale)``, clamped to the range.

    Attributes:
        bits: in [2, 24]. Codes: ``[−(2^(b−1)−1), 2^(b−1)−1]`` (signed, symmetric),
            ``[−2^(b−1), 2^(b−1)−1]`` (signed, not symmetric) or ``[0, 2^b−1]`` (unsigned).
        signed, symmetric: the code range, as above.
        scaling: ``fixed`` (``scale`` below), ``tensor`` (``max|u|/qmax`` over all of ``u``),
            ``block`` (``max|u|/qmax`` per block of ``block_size`` along ``axis``; ``None``:
            the whole axis, i.e. one scale per vector) or ``delayed`` (``amax/qmax`` with the
            reference amax of the last ``history`` steps; values above it saturate). Absmax
            scales of the tensor itself never overflow.
        block_size: block length (≥ 1) or ``None``.
        axis: the block axis (default the last, the paper's vector).
        history: steps of the delayed amax history (``scaling="delayed"``).
        scale: the fixed scale (> 0; a pytree leaf, so sweeping it does not recompile).
        rounding: one of :data:`~qlinreg.quantize.rounding.ROUNDINGS`.
        sr_bits: random bits of ``stochastic`` rounding (1 … 32; ``None``: exact).
    """

    bits: int
    signed: bool = True
    symmetric: bool = True
    scaling: Literal["fixed", "tensor", "block", "delayed"] = "block"
    block_size: int | None = None
    axis: int = -1
    history: int = 0
    scale: float = 1.0
    rounding: Rounding = "stochastic"
    sr_bits: int | None = None
    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        own = "IntFormat"
        _int(own, "bits", self.bits, 2, 24)
        for flag in ("signed", "symmetric"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ValueError(
                    f"{own}: {flag} must be True or False, got {getattr(self, flag)!r}"
                )
        _check_scaling(own, self, ("fixed", "tensor", "block", "delayed"))
        s = self.scale
        if isinstance(s, bool) or isinstance(s, str | bytes | list | tuple | dict):
            raise ValueError(f"{own}: scale must be a finite number > 0, got {s!r}")
        if isinstance(s, int | float | np.number) and not (math.isfinite(s) and s > 0):
            raise ValueError(f"{own}: scale must be a finite number > 0, got {s!r}")
        self._check_rounding(own)

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
        opts = [f"scale={float(self.scale):g}"] if self.scaling == "fixed" else _scale_label(self)
        if not self.signed:
            opts.append("unsigned")
        elif not self.symmetric:
            opts.append("asymmetric")
        return ":".join([f"int{self.bits}", *self._rounding_label(), *opts])

    def _absmax_scale(self, x: jax.Array, amax) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per entry: the group's ``amax`` (+inf for a group with a non-finite entry: its
        result is NaN), the scale ``max(amax/qmax, tiny)`` (1 for an all-zero group) and
        whether it was floored at ``tiny``."""
        a, finite, bcast = _groups(self, x, amax)
        a = jnp.where(finite, a, jnp.inf)
        scale = _div(a, self.qmax)  # one division per group
        tiny = jnp.asarray(jnp.finfo(x.dtype).tiny, x.dtype)
        floored = scale < tiny  # XLA flushes subnormal scales to zero
        scale = jnp.where(a > 0, jnp.where(floored, tiny, scale), jnp.ones((), x.dtype))
        return bcast(a), bcast(scale), bcast(floored)

    def scale_of(self, u: jax.Array, amax=None) -> jax.Array:
        """The scale of each entry of ``u`` (shape of ``u``): fixed, or ``max|u|/qmax`` over its
        group (or the delayed reference), floored at the smallest normal float; 1 for an
        all-zero group."""
        x = _as_float(u)
        if self.scaling == "fixed":
            return jnp.broadcast_to(jnp.asarray(self.scale, x.dtype), x.shape)
        return self._absmax_scale(x, amax)[1]

    def apply(self, u: jax.Array, words: jax.Array | None, amax=None) -> jax.Array:
        x = _as_float(u)
        if self.scaling == "fixed":
            scale = jnp.asarray(self.scale, x.dtype)
            return self._round(_div(x, scale), self.grid, words) * scale
        # |u| ≤ amax = qmax·scale: clip the division's rounding error (and, for a delayed
        # reference, saturate), and let the top code stand for amax itself (exact; qmax·scale
        # could round past the float type's max).
        amax, scale, floored = self._absmax_scale(x, amax)
        k = jnp.clip(_div(x, scale, x), -self.qmax, self.qmax)
        k = self._round(k, self.grid, words)
        top = (jnp.abs(k) == self.qmax) & ~floored
        return jnp.where(top, jnp.sign(k) * amax, k * scale)

    def saturated(self, u: jax.Array, amax=None) -> jax.Array:
        x = _as_float(u)
        if self.scaling == "delayed":
            return (jnp.abs(x) > _reference(x, amax)) & ~jnp.isnan(x)
        if self.scaling != "fixed":
            return jnp.isinf(x)
        return out_of_range(_div(x, self.scale_of(x)), self.grid)

    def exact_on(self, shape: tuple[int, ...]) -> bool:
        """An absmax scale maps a group of one element to ``±qmax`` exactly."""
        if self.scaling in ("fixed", "delayed") or not shape:
            return False
        if self.scaling == "tensor":
            return math.prod(shape) == 1
        n = shape[self.axis]
        return min(n, self.block_size or n) == 1


_POWERS_OF_TWO = Grid(0, -1074, True, 1, 0)  # max 1 = 2^0: _rceil_exponent gives ceil(log2)


def _mx_exponent(amax: jax.Array, grid: Grid, man_bits: int, rule: str) -> jax.Array:
    """The shared-scale exponent ``s`` of an MX block with maximum ``amax`` (see
    :class:`MXFormat`), clamped to the E8M0 range; −127 for an all-zero block."""
    e = floor_log2(amax)
    if rule == "ceil":  # ceil(log2 amax): the least e with amax ≤ 2^e
        e = _rceil_exponent(amax, _POWERS_OF_TWO)
    elif rule == "even":  # amax rounded (half up) to the element's mantissa bits first
        p = 23 if amax.dtype == jnp.float32 else 52
        if man_bits < p:
            sig = _mantissa_bits(amax)
            thr = (1 << p) - (1 << (p - man_bits - 1))
            e = e + (sig >= jnp.asarray(thr, sig.dtype)).astype(jnp.int32)
    if rule == "rceil":
        s = _rceil_exponent(amax, grid)
    else:
        s = e - grid.emax
    s = jnp.clip(s, *_MX_SCALE_EXP)
    return jnp.where(amax > 0, s, _MX_SCALE_EXP[0])


def _mantissa_bits(x: jax.Array) -> jax.Array:
    """The stored mantissa field of ``|x|`` (float32: 23 bits, float64: 52)."""
    if x.dtype == jnp.float32:
        return lax.bitcast_convert_type(x, jnp.uint32) & jnp.uint32((1 << 23) - 1)
    return lax.bitcast_convert_type(x, jnp.uint64) & jnp.uint64((1 << 52) - 1)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[],
    meta_fields=["element", "block_size", "axis", "scale_rule", "rounding", "sr_bits"],
)
@dataclass(frozen=True)
class MXFormat(NumberFormat):
    """OCP Microscaling (MX v1.0) block format: a shared E8M0 scale per block of elements.

    Shared scale of a block with maximum ``a = max|u|``: ``X = 2^s``, ``s`` clamped to
    [−127, 127] (−127 for an all-zero block), by ``scale_rule``:

    - ``floor`` (OCP v1.0): ``s = floor(log2 a) − emax_elem``; a block max can exceed the
      element max and saturates;
    - ``ceil``: ``s = ceil(log2 a) − emax_elem``;
    - ``even``: ``s = floor(log2 a') − emax_elem`` with ``a'`` = ``a`` rounded half-up to the
      element's mantissa bits (torchao's ``EVEN``);
    - ``rceil``: the least ``s`` with ``a ≤ max_elem·2^s``: the exact scale ``a/max_elem``
      rounded up to a power of two, so the block max never saturates (NVIDIA's rule, the
      ``cvt.rp`` conversion to UE8M0).

    ``emax_elem`` is the exponent of the element format's largest power of two (8, 15, 4, 2,
    2, 0 for FP8 E4M3, FP8 E5M2, FP6 E3M2, FP6 E2M3, FP4, INT8); elements are ``u/X`` rounded to
    the element format and saturated to ±its max (as microxcaling does).

    Attributes:
        element: one of :data:`MX_ELEMENTS`.
        block_size: elements per shared scale (OCP: 32).
        axis: the block axis (default the last, the paper's vector).
        scale_rule: one of :data:`MX_SCALE_RULES` (default ``floor``, OCP v1.0).
        rounding: one of :data:`~qlinreg.quantize.rounding.ROUNDINGS`.
        sr_bits: random bits of ``stochastic`` rounding (1 … 32; ``None``: exact).
    """

    element: str = "fp8_e4m3"
    block_size: int = 32
    axis: int = -1
    scale_rule: Literal["floor", "ceil", "rceil", "even"] = "floor"
    rounding: Rounding = "stochastic"
    sr_bits: int | None = None
    kind: ClassVar[str] = "mx"

    def __post_init__(self) -> None:
        _choice("MXFormat", "element", self.element, MX_ELEMENTS)
        _int("MXFormat", "block_size", self.block_size, 1)
        _int("MXFormat", "axis", self.axis, -64, 63)
        _choice("MXFormat", "scale_rule", self.scale_rule, MX_SCALE_RULES)
        self._check_rounding("MXFormat")

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
        opts += [] if self.scale_rule == "floor" else [self.scale_rule]
        return ":".join([self.name, *self._rounding_label(), *opts])

    def _blocks(self, x: jax.Array) -> tuple[_Blocks, jax.Array, jax.Array]:
        """The blocks, each block's exponent ``s`` and whether it is all finite (NaN and ±inf
        propagate through ``max|u|``: one reduction for both)."""
        b = _Blocks(x, self.axis, self.block_size)
        raw = jnp.max(jnp.abs(b.blocks), axis=-1)
        finite = jnp.isfinite(raw)
        amax = jnp.where(finite, raw, 0)
        return b, _mx_exponent(amax, self.grid, self.grid.man_bits, self.scale_rule), finite

    def scale_exponent(self, u: jax.Array) -> jax.Array:
        """``s`` of each block's scale ``2^s``: shape ``(..., n_blocks)``, the block axis last."""
        return self._blocks(_as_float(u))[1]

    def apply(self, u: jax.Array, words: jax.Array | None, amax=None) -> jax.Array:
        x = _as_float(u)
        b, s, finite = self._blocks(x)
        wb = None if words is None else b.split(words)
        yb = self._round(b.blocks, self.grid, wb, s[..., None])
        return b.restore(jnp.where(finite[..., None], yb, jnp.nan))

    def saturated(self, u: jax.Array, amax=None) -> jax.Array:
        x = _as_float(u)
        b, s, _ = self._blocks(x)
        return b.restore(out_of_range(b.blocks, self.grid, s[..., None]))

    def block_max_saturated(self, u: jax.Array) -> jax.Array:
        """Fraction of nonzero blocks whose maximum saturates (exceeds the element max after
        scaling): the cost of the ``floor`` rule, 0 under ``rceil``."""
        x = _as_float(u)
        b, s, _ = self._blocks(x)
        amax = jnp.max(jnp.abs(b.blocks), axis=-1)
        hit = out_of_range(amax, self.grid, s)
        return jnp.sum(hit) / jnp.maximum(jnp.sum(amax > 0), 1)


_E4M3 = FloatFormat.preset("fp8_e4m3fn", overflow="saturate", rounding="nearest_even")
_E2M1_GRID = FloatFormat.preset("fp4_e2m1").grid
_NV_TENSOR_DIVISOR = 6.0 * 448.0  # E2M1 max × E4M3 max


@partial(
    jax.tree_util.register_dataclass,
    data_fields=[],
    meta_fields=["block_size", "axis", "scaling", "history", "rounding", "sr_bits"],
)
@dataclass(frozen=True)
class NVFP4Format(NumberFormat):
    """NVIDIA NVFP4: E2M1 elements, an E4M3 scale per block of 16 along the vector, and an FP32
    scale per tensor (NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision
    inference", 2025; torchao's ``nvfp4_quantize``). In float32 arithmetic, for a tensor ``x``:

    - tensor scale ``s = amax(|x|)/(6·448)`` (``amax``: the tensor's, or the delayed
      reference; floored at the smallest normal float);
    - block scale ``b = E4M3_RNE(amax_block/6/s)``, saturating at 448; a block whose ``b`` is 0
      (all zeros, or a scale that underflows E4M3) quantizes to 0;
    - element ``q = E2M1(x/(b·s))`` with the chosen rounding, saturating at ±6; the value is
      ``q·(b·s)``.

    For a 1-D vector the tensor is the vector and blocks run along it; in the engine the tensor
    is a role's whole tensor of one step (``B×d`` data, ``d`` parameters, ``B`` labels,
    activations or gradients).

    Attributes:
        block_size: elements per E4M3 scale (NVFP4: 16).
        axis: the block axis (default the last, the paper's vector).
        scaling: ``tensor`` (the tensor's own amax) or ``delayed`` (the reference amax of the
            last ``history`` steps).
        history: steps of the delayed amax history.
        rounding: rounding of the elements, one of
            :data:`~qlinreg.quantize.rounding.ROUNDINGS` (the block scale is always RNE).
        sr_bits: random bits of ``stochastic`` rounding (1 … 32; ``None``: exact).
    """

    block_size: int = 16
    axis: int = -1
    scaling: Literal["tensor", "delayed"] = "tensor"
    history: int = 0
    rounding: Rounding = "stochastic"
    sr_bits: int | None = None
    kind: ClassVar[str] = "nvfp4"

    def __post_init__(self) -> None:
        _int("NVFP4Format", "block_size", self.block_size, 1)
        _int("NVFP4Format", "axis", self.axis, -64, 63)
        _choice("NVFP4Format", "scaling", self.scaling, ("tensor", "delayed"))
        if self.scaling == "delayed":
            _int("NVFP4Format", "history", self.history, 1, 4096)
        elif self.history != 0:
            raise ValueError(f"NVFP4Format: history={self.history!r} needs scaling='delayed'")
        self._check_rounding("NVFP4Format")

    @property
    def grid(self) -> Grid:
        return _E2M1_GRID

    @property
    def label(self) -> str:
        opts = [] if self.block_size == 16 else [f"block{self.block_size}"]
        if self.scaling == "delayed":
            opts += _scale_label(self)
        return ":".join(["nvfp4", *self._rounding_label(), *opts])

    def scales(self, u: jax.Array, amax=None) -> tuple[_Blocks, jax.Array, jax.Array, jax.Array]:
        """The blocks of ``u``, the tensor scale ``s``, the block scales ``b`` (shape
        ``(..., n_blocks, 1)``) and whether the tensor is finite (True for delayed scaling)."""
        x = _as_float(u)
        a, finite, _ = _groups(self, x, amax)
        tiny = jnp.finfo(x.dtype).tiny
        s = jnp.maximum(_div(a, _NV_TENSOR_DIVISOR), tiny)
        blk = _Blocks(x, self.axis, self.block_size)
        a_blk = jnp.max(jnp.abs(blk.blocks), axis=-1, keepdims=True)
        a_blk = jnp.where(jnp.isfinite(a_blk), a_blk, 0)
        b = _E4M3.apply(_div(_div(a_blk, 6.0), s), None)  # a_blk: one value per block
        return blk, s, b, finite

    def apply(self, u: jax.Array, words: jax.Array | None, amax=None) -> jax.Array:
        x = _as_float(u)
        blk, s, b, finite = self.scales(x, amax)
        total = b * s
        ok = total > 0
        y = _div(blk.blocks, jnp.where(ok, total, 1))
        wb = None if words is None else blk.split(words)
        q = self._round(y, self.grid, wb)
        out = blk.restore(jnp.where(ok, q * total, jnp.zeros((), x.dtype)))
        return jnp.where(finite, out, jnp.nan)

    def saturated(self, u: jax.Array, amax=None) -> jax.Array:
        x = _as_float(u)
        blk, s, b, _ = self.scales(x, amax)
        total = b * s
        y = _div(blk.blocks, jnp.where(total > 0, total, 1))
        return blk.restore(out_of_range(y, self.grid) & (total > 0))

    def exact_on(self, shape: tuple[int, ...]) -> bool:
        """A one-element tensor with its own scale gives ``b = 448``, ``q = ±6``: the value
        itself (to the float32 rounding of ``b·s``)."""
        return self.scaling == "tensor" and math.prod(shape) == 1


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


def _number(name: str, opt: str, key: str, low: int, high: int) -> int:
    """The integer of option ``KEY=N`` (or ``KEYN``), checked to lie in ``[low, high]``."""
    text = opt[len(key) :].lstrip("=")
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or not low <= n <= high:
        raise ValueError(
            f"{name}: option {opt!r} must be {key}N (or {key}=N) with N an integer in "
            f"[{low}, {high}]"
        )
    return n


def _common(name: str, opt: str, kw: dict, scalings: tuple[str, ...]) -> bool:
    """Options shared by the formats: ``srbits=K``, and the scalings in ``scalings``
    (``tensor``, ``vector``, ``blockN``, ``delayed[=K]``). True if ``opt`` was one of them."""
    if opt.startswith("srbits"):
        kw["sr_bits"] = _number(name, opt, "srbits", 1, 32)
    elif opt == "tensor" and "tensor" in scalings:
        kw["scaling"] = "tensor"
    elif opt == "vector" and "vector" in scalings:
        kw.update(scaling="block", block_size=None)
    elif opt.startswith("block") and "block" in scalings:
        kw.update(scaling="block", block_size=_number(name, opt, "block", 1, 1 << 20))
    elif opt.startswith("delayed") and "delayed" in scalings:
        k = DELAYED_HISTORY if opt == "delayed" else _number(name, opt, "delayed", 1, 4096)
        kw.update(scaling="delayed", history=k)
    else:
        return False
    return True


def _role_default(kw: dict, role: str | None) -> dict:
    """Without a scaling option, the roles whose vector has ``B`` entries (labels, activations,
    output gradients) get delayed scaling: a per-vector or per-tensor absmax scale would leave
    a one-element vector (``B = 1``) unquantized."""
    if "scaling" not in kw and role in _B_ROLES:
        kw.update(scaling="delayed", history=DELAYED_HISTORY)
    return kw


def _parse_float(name: str):
    def parse(args: str | None, role: str | None = None) -> FloatFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if _common(name, opt, kw, ("tensor", "vector", "block", "delayed")):
                continue
            if opt == "none":
                kw["scaling"] = "none"
            elif opt in OVERFLOWS:
                kw["overflow"] = opt
            else:
                raise _bad_option(
                    name, opt, "tensor, vector, blockN, delayed[=K], none, srbits=K, "
                    "saturate, inf, nan",
                )  # fmt: skip
        return FloatFormat.preset(name, **kw)

    return parse


def _parse_int(bits: int):
    name = f"int{bits}"

    def parse(args: str | None, role: str | None = None) -> IntFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if _common(name, opt, kw, ("tensor", "vector", "block", "delayed")):
                continue
            if opt.startswith("scale="):
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
                    name, opt, "vector, tensor, blockN, delayed[=K], scale=X, srbits=K, "
                    "unsigned, asymmetric",
                )  # fmt: skip
        return IntFormat(bits, **_role_default(kw, role))

    return parse


def _parse_mx(name: str):
    def parse(args: str | None, role: str | None = None) -> MXFormat:
        rounding, opts = _split(name, args)
        kw: dict = {"rounding": rounding}
        for opt in opts:
            if opt in MX_SCALE_RULES:
                kw["scale_rule"] = opt
            elif opt.startswith("block"):
                kw["block_size"] = _number(name, opt, "block", 1, 1 << 20)
            elif not _common(name, opt, kw, ()):
                raise _bad_option(name, opt, "blockN, floor, ceil, rceil, even, srbits=K")
        return MXFormat(_MX_NAMES[name], **kw)

    return parse


def _parse_nvfp4(args: str | None, role: str | None = None) -> NVFP4Format:
    rounding, opts = _split("nvfp4", args)
    kw: dict = {"rounding": rounding}
    for opt in opts:
        if opt.startswith("block"):
            kw["block_size"] = _number("nvfp4", opt, "block", 1, 1 << 20)
        elif not _common("nvfp4", opt, kw, ("tensor", "delayed")):
            raise _bad_option("nvfp4", opt, "blockN, tensor, delayed[=K], srbits=K")
    return NVFP4Format(**_role_default(kw, role))


_INT_NAMES = tuple(f"int{b}" for b in range(2, 17))
FORMAT_NAMES: tuple[str, ...] = (
    *FLOAT_PRESETS, *_ALIASES, *_INT_NAMES, *_MX_NAMES, "nvfp4",
)  # fmt: skip
"""Names usable as ``ROLE=NAME[:ROUNDING[:OPTION]...]`` in a :class:`~qlinreg.quantize.Scheme`."""

for _name in (*FLOAT_PRESETS, *_ALIASES):
    register_kind(_name, _parse_float(_name))
for _bits in range(2, 17):
    register_kind(f"int{_bits}", _parse_int(_bits))
for _name in _MX_NAMES:
    register_kind(_name, _parse_mx(_name))
register_kind("nvfp4", _parse_nvfp4)


def with_rounding(q: NumberFormat, rounding: Rounding, sr_bits: int | None = None) -> NumberFormat:
    """The same format with another rounding mode (e.g. for storing ``w_t``)."""
    check_rounding(rounding)
    return replace(q, rounding=rounding, sr_bits=sr_bits)
