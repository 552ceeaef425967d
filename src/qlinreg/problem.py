"""The statistical model of SPEC §1: Gaussian features, a ground truth ``w*`` and label noise.

Coordinates are the eigenbasis of ``H``: ``x ~ N(0, diag(λ))``, ``y = ⟨w*, x⟩ + ξ`` with
``ξ ~ N(0, σ²)``. Excess risk of ``w`` on clean inputs is ``½‖w − w*‖²_H``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import jax
import numpy as np

from qlinreg import prng

__all__ = [
    "Problem",
    "draw_features",
    "exponential_spectrum",
    "make_problem",
    "power_law_spectrum",
    "power_law_w_star",
]

SpectrumKind = Literal["power_law", "exponential"]
WStarKind = Literal["ones", "power_law", "gaussian"]


def _check_dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
        raise ValueError(f"dim (d) must be an integer ≥ 1, got {d!r}")
    return int(d)


def _check_finite(name: str, value, *, low: float | None = None, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v <= low if strict else v < low):
        raise ValueError(f"{name} must be {'>' if strict else '≥'} {low:g}, got {value!r}")
    return v


def power_law_spectrum(d: int, a: float = 2.0) -> np.ndarray:
    """``λ_i = i^(-a)``, ``i = 1 … d`` (the paper uses ``a = 2``)."""
    d = _check_dim(d)
    a = _check_finite("decay (a)", a, low=0.0, strict=True)
    return np.arange(1, d + 1, dtype=np.float64) ** -a


def exponential_spectrum(d: int, rate: float = 0.1) -> np.ndarray:
    """``λ_i = exp(-rate·(i − 1))``, ``i = 1 … d``."""
    d = _check_dim(d)
    rate = _check_finite("decay (rate)", rate, low=0.0, strict=True)
    return np.exp(-rate * np.arange(d, dtype=np.float64))


def power_law_w_star(d: int, b: float) -> np.ndarray:
    """Power-law source ``w*_i = i^(-b)``."""
    d = _check_dim(d)
    b = _check_finite("source exponent (b)", b)
    return np.arange(1, d + 1, dtype=np.float64) ** -b


def draw_features(key: jax.Array, sqrt_lam, shape: tuple[int, ...], dtype="float32") -> jax.Array:
    """Feature rows ``x ~ N(0, diag(λ))`` (SPEC §1): ``√λ ⊙ z``, ``z`` standard normal from
    ``key`` (:func:`qlinreg.prng.normal`), shape ``key.shape[:-1] + shape``, the last axis
    the ``d`` coordinates. Jittable (``sqrt_lam`` may be traced)."""
    return sqrt_lam * prng.normal(key, shape, dtype)


@dataclass(frozen=True, eq=False)
class Problem:
    """Gaussian linear-regression model (SPEC §1), validated at construction.

    Attributes:
        spectrum: eigenvalues ``λ_1 … λ_d`` of ``H`` (all > 0, finite).
        w_star: ground truth ``w*`` (length ``d``).
        noise: label-noise variance ``σ²`` (≥ 0).
    """

    spectrum: np.ndarray
    w_star: np.ndarray
    noise: float = 1.0
    d: int = field(init=False)

    def __post_init__(self) -> None:
        lam = np.array(self.spectrum, dtype=np.float64).reshape(-1)
        if lam.size < 1:
            raise ValueError("spectrum must have at least one eigenvalue (dim ≥ 1)")
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError("spectrum must be finite and > 0 (H is positive definite)")
        w = np.array(self.w_star, dtype=np.float64).reshape(-1)
        if w.shape != lam.shape:
            raise ValueError(f"w_star must have length dim = {lam.size}, got {w.size}")
        if not np.all(np.isfinite(w)):
            raise ValueError("w_star must be finite")
        lam.setflags(write=False)
        w.setflags(write=False)
        object.__setattr__(self, "spectrum", lam)
        object.__setattr__(self, "w_star", w)
        object.__setattr__(self, "noise", _check_finite("noise (σ²)", self.noise, low=0.0))
        object.__setattr__(self, "d", int(lam.size))

    @property
    def trace_H(self) -> float:
        """``tr(H)``."""
        return float(self.spectrum.sum())

    def excess_risk(self, w: np.ndarray) -> np.ndarray:
        """Clean-input excess risk ``½‖w − w*‖²_H`` (vectorised over leading axes of ``w``)."""
        v = np.asarray(w) - self.w_star
        return 0.5 * np.sum(self.spectrum * v * v, axis=-1)

    def features(self, key: jax.Array, rows: int, dtype="float32") -> jax.Array:
        """``rows`` feature rows of this problem (:func:`draw_features`)."""
        sqrt_lam = jax.numpy.asarray(np.sqrt(self.spectrum), dtype)
        return draw_features(key, sqrt_lam, (rows, self.d), dtype)

    def describe(self) -> dict:
        """Plain summary for tables and reports."""
        return {
            "dim": self.d,
            "trace_H": self.trace_H,
            "noise": self.noise,
            "w_star_norm_H2": float(np.sum(self.spectrum * self.w_star**2)),
        }


def make_problem(
    dim: int,
    *,
    spectrum: SpectrumKind = "power_law",
    decay: float = 2.0,
    w_star: WStarKind = "ones",
    source: float = 1.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Problem:
    """Build a :class:`Problem` from named choices (what the CLI and config files use).

    Args:
        dim: ``d``.
        spectrum: ``"power_law"`` (``λ_i = i^-decay``) or ``"exponential"``
            (``λ_i = exp(-decay·(i−1))``).
        decay: the spectrum's exponent ``a`` or rate.
        w_star: ``"ones"`` (paper), ``"power_law"`` (``w*_i = i^-source``) or ``"gaussian"``
            (``w* ~ N(0, I)``, drawn from ``seed``).
        source: exponent ``b`` of the power-law ``w*``.
        noise: ``σ²``.
        seed: seed of the Gaussian ``w*`` draw.
    """
    dim = _check_dim(dim)
    if spectrum == "power_law":
        lam = power_law_spectrum(dim, decay)
    elif spectrum == "exponential":
        lam = exponential_spectrum(dim, decay)
    else:
        raise ValueError(f"spectrum must be 'power_law' or 'exponential', got {spectrum!r}")
    if not lam[-1] > 0:
        first = int(np.argmax(lam <= 0)) + 1
        raise ValueError(
            f"decay = {decay:g} with dim = {dim} makes λ_i underflow to 0 in float64 from "
            f"i = {first} on ({spectrum} spectrum): use a smaller decay or dim"
        )
    if w_star == "ones":
        ws = np.ones(dim)
    elif w_star == "power_law":
        ws = power_law_w_star(dim, source)
    elif w_star == "gaussian":
        ws = np.random.default_rng(seed).standard_normal(dim)
    else:
        raise ValueError(f"w_star must be 'ones', 'power_law' or 'gaussian', got {w_star!r}")
    return Problem(spectrum=lam, w_star=ws, noise=noise)
