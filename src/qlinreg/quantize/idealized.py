"""The paper's idealized, unbiased quantizers (SPEC §3).

Each quantizer is a frozen description (a JAX pytree whose only leaf is ``eps``, so a sweep
over ε does not recompile) and a pure, jittable call ``q(key, u)`` with ``key`` a
``uint32[2]`` :mod:`qlinreg.prng` key. The *vector* of the paper is the **last axis** of
``u``: a feature row for ``Q_d`` (``u`` is the ``B×d`` batch), the length-``B`` vector for
``Q_l``, ``Q_a``, ``Q_o`` and the whole ``w`` for ``Q_p``.

Conditional moments, for every kind: ``E[Q(u) | u] = u`` and

- :class:`Additive` ``E[(Q(u)−u)(Q(u)−u)ᵀ | u] = ε·I``,
- :class:`Multiplicative` ``= ε·u uᵀ`` (``Q(u) = (1 + √ε·ζ)·u``, one ``ζ`` per vector),
- :class:`MultiplicativeElementwise` ``= ε·diag(u²)`` (one ``ζ_i`` per element).

The noise variables are standard normal by default; ``noise="uniform"`` uses a uniform
variable of the same variance (a dither), which changes no second moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from qlinreg import prng

__all__ = [
    "Additive",
    "ErrorMoments",
    "Idealized",
    "Multiplicative",
    "MultiplicativeElementwise",
    "NoQuant",
    "error_moments",
    "unit_noise",
]

NoiseLaw = Literal["gaussian", "uniform"]
_NOISE_LAWS = ("gaussian", "uniform")
_NOISE_MU4 = {"gaussian": 3.0, "uniform": 9.0 / 5.0}  # E[ζ⁴] of each unit-variance law


@dataclass(frozen=True)
class ErrorMoments:
    """The moments of an idealized quantizer's error ``e = Q(u) − u`` that the theory uses.

    ``E[e | u] = 0`` and ``E[e eᵀ | u] = add·I + mult·diag(u²) + rank1·(u uᵀ − diag(u²))``:

    - ``add``: additive ε; ``mult``: multiplicative ε of either kind (they agree on the
      diagonal); ``rank1``: rank-one multiplicative ε only (one scale per vector correlates
      the entries of a vector, e.g. the ``B`` entries of a batch);
    - ``mu4``: ``E[ζ⁴]`` of the unit noise variable (3 Gaussian, 9/5 uniform);
    - ``kind`` and ``law``: the quantizer's kind (``none`` …) and noise law (``none`` for
      full precision).
    """

    add: float = 0.0
    mult: float = 0.0
    rank1: float = 0.0
    mu4: float = 3.0
    kind: str = "none"
    law: str = "none"

    @property
    def eps(self) -> float:
        """The quantizer's ε (0 for full precision)."""
        return self.add + self.mult

    def noise_diag(self, u2):
        """Diagonal of ``E[e eᵀ | u]`` given ``u²`` (NumPy or JAX arrays): ``add + mult·u²``."""
        return self.add + self.mult * u2


def unit_noise(key: jax.Array, shape: tuple[int, ...], dtype, law: NoiseLaw) -> jax.Array:
    """Mean-0, variance-1 draws: standard normal or uniform on (−√3, √3)."""
    if law == "gaussian":
        return prng.normal(key, shape, dtype)
    return jnp.asarray(math.sqrt(3.0), dtype) * prng.uniform_symmetric(key, shape, dtype)


def _check_eps(kind: str, eps) -> None:
    if isinstance(eps, bool):
        raise ValueError(f"{kind} quantizer: eps must be a number ≥ 0, got {eps!r}")
    if isinstance(eps, int | float | np.number):
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"{kind} quantizer: eps must be a finite number ≥ 0, got {eps!r}")
    elif isinstance(eps, str | bytes | list | tuple | dict):
        raise ValueError(f"{kind} quantizer: eps must be a number ≥ 0, got {eps!r}")


def _check_noise(kind: str, noise) -> None:
    if noise not in _NOISE_LAWS:
        raise ValueError(f"{kind} quantizer: noise must be one of {_NOISE_LAWS}, got {noise!r}")


def _pytree(cls):
    """Register an ε-quantizer as a pytree: ``eps`` is data, the noise law is static."""
    return jax.tree_util.register_dataclass(cls, data_fields=["eps"], meta_fields=["noise"])


@partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=[])
@dataclass(frozen=True)
class NoQuant:
    """Full precision: ``Q(u) = u``."""

    kind: ClassVar[str] = "none"

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        return u

    @property
    def label(self) -> str:
        return "none"

    def moments(self) -> ErrorMoments:
        return ErrorMoments()


class _Scaled:
    """Shared parts of the ε-parametrised quantizers.

    Besides ``q(key, u)``, each offers the split ``q.apply(u, q.draw(key, u.shape, u.dtype))``
    (the same numbers): the noise does not depend on ``u``, so the engine can draw a block of
    steps' noise at once and apply it inside the sequential loop.
    """

    kind: ClassVar[str]
    eps: float
    noise: NoiseLaw

    def __post_init__(self) -> None:
        _check_eps(self.kind, self.eps)
        _check_noise(self.kind, self.noise)

    @property
    def label(self) -> str:
        tail = "" if self.noise == "gaussian" else f":{self.noise}"
        return f"{self.kind}:{float(self.eps):g}{tail}"

    def _sqrt_eps(self, dtype) -> jax.Array:
        return jnp.sqrt(jnp.asarray(self.eps, dtype))

    def noise_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the unit noise for an input of ``shape``."""
        return tuple(shape)

    def draw(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
        """The unit noise (mean 0, variance 1) for an input of ``shape``."""
        return unit_noise(key, self.noise_shape(shape), dtype, self.noise)

    def __call__(self, key: jax.Array, u: jax.Array) -> jax.Array:
        return self.apply(u, self.draw(key, u.shape, u.dtype))

    def moments(self) -> ErrorMoments:
        """The error moments (see :class:`ErrorMoments`); ``eps`` must be concrete."""
        eps, mu4 = float(self.eps), _NOISE_MU4[self.noise]
        parts = {
            "additive": {"add": eps},
            "multiplicative": {"mult": eps, "rank1": eps},
            "multiplicative_elementwise": {"mult": eps},
        }[self.kind]
        return ErrorMoments(**parts, mu4=mu4, kind=self.kind, law=self.noise)


@_pytree
@dataclass(frozen=True)
class Additive(_Scaled):
    """INT-like additive error, covariance ``ε·I``: ``Q(u) = u + √ε·z``."""

    eps: float
    noise: NoiseLaw = "gaussian"
    kind: ClassVar[str] = "additive"

    def apply(self, u: jax.Array, z: jax.Array) -> jax.Array:
        return u + self._sqrt_eps(u.dtype) * z


@_pytree
@dataclass(frozen=True)
class Multiplicative(_Scaled):
    """FP-like rank-one error, covariance ``ε·u uᵀ``: ``Q(u) = (1 + √ε·ζ)·u``, one ``ζ``/vector."""

    eps: float
    noise: NoiseLaw = "gaussian"
    kind: ClassVar[str] = "multiplicative"

    def noise_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape[:-1]) + (1,)

    def apply(self, u: jax.Array, zeta: jax.Array) -> jax.Array:
        return u * (1 + self._sqrt_eps(u.dtype) * zeta)


@_pytree
@dataclass(frozen=True)
class MultiplicativeElementwise(_Scaled):
    """Per-element multiplicative error, covariance ``ε·diag(u²)``: ``Q(u)_i = (1+√ε·ζ_i)·u_i``."""

    eps: float
    noise: NoiseLaw = "gaussian"
    kind: ClassVar[str] = "multiplicative_elementwise"

    def apply(self, u: jax.Array, zeta: jax.Array) -> jax.Array:
        return u * (1 + self._sqrt_eps(u.dtype) * zeta)


Idealized = NoQuant | Additive | Multiplicative | MultiplicativeElementwise


def error_moments(q, role: str = "") -> ErrorMoments:
    """:class:`ErrorMoments` of an idealized quantizer; ``TypeError`` for anything else (number
    formats have no such closed form: measure their ε, or simulate them)."""
    if not isinstance(q, Idealized):
        where = f" on {role}" if role else ""
        raise TypeError(
            f"the closed-form theory needs an idealized quantizer (none, additive, "
            f"multiplicative, multiplicative_elementwise){where}; got {getattr(q, 'label', q)!r}. "
            f"Simulate number formats (qlinreg.simulate), or use an idealized model of them"
        )
    return q.moments()
