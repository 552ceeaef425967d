"""The statistical model of SPEC §1: Gaussian features, a ground truth ``w*`` and label noise.

``x ~ N(0, H)``, ``y = ⟨w*, x⟩ + ξ`` with ``ξ ~ N(0, σ²)``; the excess risk of ``w`` on clean
inputs is ``½‖w − w*‖²_H``. A problem is stored by the eigen-decomposition ``H = U diag(λ) Uᵀ``:
without a ``basis`` the coordinates *are* the eigenbasis (``U = I``, the paper's diagonal
setting); with one (:meth:`Problem.from_covariance`, :meth:`Problem.from_data`) the coordinates
are the data's own, ``x = U (√λ ⊙ z)``, and every quantizer acts on them as given. A problem
fitted to data may also carry the data's rows (``samples``): the engine then resamples them
(``data mode "empirical"``) instead of drawing Gaussian features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import jax
import numpy as np

from qlinreg import prng

__all__ = [
    "Problem",
    "Samples",
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


_ORTHO_TOL = 1e-8  # ‖UᵀU − I‖_max allowed of a basis (float64 eigenvectors are ~1e-15)
PSD_TOL = 1e-10  # relative tolerance of the symmetry and semidefiniteness checks of H


def _read_matrix(name: str, value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite ({int(np.sum(~np.isfinite(a)))} entries are not)")
    return a


@dataclass(frozen=True, eq=False)
class Samples:
    """The rows of a data set, resampled uniformly with replacement in empirical data mode."""

    X: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        X = _read_matrix("samples X", self.X)
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(f"samples X must be a 2-D array (n × d), got shape {X.shape}")
        y = _read_matrix("samples y", self.y, (X.shape[0],))
        if X.shape[0] >= 2**31:
            raise ValueError(f"samples must have fewer than 2^31 rows, got {X.shape[0]}")
        X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


@dataclass(frozen=True, eq=False)
class Problem:
    """Gaussian linear-regression model (SPEC §1), validated at construction.

    Attributes:
        spectrum: eigenvalues ``λ_1 … λ_d`` of ``H`` (all > 0, finite).
        w_star: ground truth ``w*`` (length ``d``) in the problem's coordinates.
        noise: label-noise variance ``σ²`` (≥ 0).
        basis: ``U`` (``d × d``, orthonormal columns: ``H = U diag(λ) Uᵀ``) when the
            coordinates are not the eigenbasis; ``None`` (default): ``H = diag(λ)``.
        samples: the data's rows, for empirical data mode (:meth:`from_data`); the Gaussian
            model (``H = Σ``, ``w*``, ``σ²``) is then the data's second-moment fit.
        name: a label for tables (e.g. the data set).
    """

    spectrum: np.ndarray
    w_star: np.ndarray
    noise: float = 1.0
    basis: np.ndarray | None = None
    samples: Samples | None = None
    name: str = ""
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
        U = self.basis
        if U is not None:
            U = _read_matrix("basis", U, (lam.size, lam.size))
            err = float(np.abs(U.T @ U - np.eye(lam.size)).max())
            if err > _ORTHO_TOL:
                raise ValueError(f"basis must have orthonormal columns (‖UᵀU − I‖ = {err:.2g})")
            U.setflags(write=False)
        if self.samples is not None:
            if not isinstance(self.samples, Samples):
                raise TypeError("samples must be a qlinreg.problem.Samples")
            if self.samples.X.shape[1] != lam.size:
                raise ValueError(
                    f"samples must have dim = {lam.size} columns, got {self.samples.X.shape[1]}"
                )
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        lam.setflags(write=False)
        w.setflags(write=False)
        object.__setattr__(self, "spectrum", lam)
        object.__setattr__(self, "w_star", w)
        object.__setattr__(self, "basis", U)
        object.__setattr__(self, "noise", _check_finite("noise (σ²)", self.noise, low=0.0))
        object.__setattr__(self, "d", int(lam.size))

    @classmethod
    def from_covariance(cls, H, w_star, noise: float = 1.0, *, name: str = "") -> Problem:
        """The Gaussian model with a full covariance ``H`` (symmetric positive definite, ``d × d``)
        and ``w*`` in the same coordinates: quantizers act on those coordinates.

        ``H`` must be finite, symmetric (to ``1e-10`` relative) and positive semidefinite (its
        smallest eigenvalue ≥ ``−1e-10·λ_max``); a singular ``H`` (an eigenvalue within that
        tolerance of 0) is refused with the advice to add a ridge ``H + εI``: a direction the
        features never take has no risk and makes ``w*^(q)`` undefined.
        """
        H = _read_matrix("covariance (H)", H)
        if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] < 1:
            raise ValueError(f"covariance (H) must be a square d × d matrix, got shape {H.shape}")
        scale = float(np.abs(H).max()) or 1.0
        asym = float(np.abs(H - H.T).max())
        if asym > PSD_TOL * scale:
            raise ValueError(f"covariance (H) must be symmetric (max |H − Hᵀ| = {asym:.3g})")
        lam, U = np.linalg.eigh(0.5 * (H + H.T))
        lam, U = lam[::-1].copy(), U[:, ::-1].copy()  # descending, as the synthetic spectra
        if lam[-1] < -PSD_TOL * lam[0]:
            raise ValueError(
                f"covariance (H) must be positive semidefinite: its smallest eigenvalue is "
                f"{lam[-1]:.4g}"
            )
        if lam[-1] <= PSD_TOL * lam[0]:
            raise ValueError(
                f"covariance (H) is singular (smallest eigenvalue {lam[-1]:.3g}, largest "
                f"{lam[0]:.3g}): add a ridge, H + εI with ε ≈ {1e-6 * lam.mean():.2g}"
            )
        w = _read_matrix("w_star", w_star, (H.shape[0],))
        return cls(spectrum=lam, w_star=w, noise=noise, basis=U, name=name)

    @classmethod
    def from_data(
        cls,
        X,
        y,
        *,
        center: bool = False,
        ridge: float = 0.0,
        empirical: bool = False,
        name: str = "",
    ) -> Problem:
        """The model fitted to data rows ``X`` (``n × d``) and labels ``y`` (:func:`qlinreg.data.
        fit_gaussian`): ``H = Σ = XᵀX/n`` (plus ``ridge·I`` when given, so that the model is
        positive definite), ``w*`` the (ridge) least-squares fit, ``σ²`` its mean squared
        residual. With ``empirical`` the problem also carries the rows: the engine resamples
        them (the data's real, non-Gaussian distribution) and the clean excess risk is
        ``½‖w − w*‖²_Σ`` on that same distribution; the theory always sees the Gaussian.
        ``center`` subtracts the column means of ``X`` and the mean of ``y`` first.
        """
        from qlinreg.data import fit_gaussian

        fit = fit_gaussian(X, y, center=center, ridge=ridge)
        H = fit.covariance + fit.ridge * np.eye(fit.covariance.shape[0])
        p = cls.from_covariance(H, fit.w_star, fit.noise, name=name)
        if not empirical:
            return p
        Xs, ys = np.asarray(X, np.float64), np.asarray(y, np.float64).reshape(-1)
        if center:
            Xs, ys = Xs - Xs.mean(axis=0), ys - ys.mean()
        return replace(p, samples=Samples(Xs, ys))

    def eigen(self) -> Problem:
        """The same model in its eigenbasis: ``H = diag(λ)``, ``w*`` rotated (``Uᵀw*``), no
        samples. Quantizers that commute with rotations see the same risk there."""
        if self.basis is None and self.samples is None:
            return self
        w = self.w_star if self.basis is None else self.basis.T @ self.w_star
        return Problem(spectrum=self.spectrum, w_star=w, noise=self.noise, name=self.name)

    @property
    def diagonal(self) -> bool:
        """Whether the coordinates are the eigenbasis (``H`` diagonal)."""
        return self.basis is None

    @property
    def data_mode(self) -> str:
        """``"gaussian"`` or ``"empirical"`` (rows of the data resampled)."""
        return "gaussian" if self.samples is None else "empirical"

    @property
    def covariance(self) -> np.ndarray:
        """``H`` as a ``d × d`` matrix in the problem's coordinates."""
        if self.basis is None:
            return np.diag(self.spectrum)
        return (self.basis * self.spectrum) @ self.basis.T

    @property
    def factor(self) -> np.ndarray:
        """``L = U diag(√λ)``, so that ``x = L z`` with ``z ~ N(0, I)`` has covariance ``H``."""
        if self.basis is None:
            return np.diag(np.sqrt(self.spectrum))
        return self.basis * np.sqrt(self.spectrum)

    def to_eigen(self, w: np.ndarray) -> np.ndarray:
        """Coordinates ``Uᵀw`` of vectors ``w`` (last axis) in the eigenbasis."""
        return np.asarray(w) if self.basis is None else np.asarray(w) @ self.basis

    @property
    def trace_H(self) -> float:
        """``tr(H)``."""
        return float(self.spectrum.sum())

    def excess_risk(self, w: np.ndarray) -> np.ndarray:
        """Clean-input excess risk ``½‖w − w*‖²_H`` (vectorised over leading axes of ``w``)."""
        v = self.to_eigen(np.asarray(w) - self.w_star)
        return 0.5 * np.sum(self.spectrum * v * v, axis=-1)

    def features(self, key: jax.Array, rows: int, dtype="float32") -> jax.Array:
        """``rows`` feature rows of this problem: Gaussian (:func:`draw_features`, times
        ``Uᵀ`` in data coordinates) or, in empirical mode, rows of the data drawn uniformly."""
        if self.samples is not None:
            idx = prng.index(key, (rows,), self.samples.n)
            return jax.numpy.asarray(self.samples.X, dtype)[idx]
        sqrt_lam = jax.numpy.asarray(np.sqrt(self.spectrum), dtype)
        x = draw_features(key, sqrt_lam, (rows, self.d), dtype)
        return x if self.basis is None else x @ jax.numpy.asarray(self.basis.T, dtype)

    def describe(self) -> dict:
        """Plain summary for tables and reports."""
        return {
            "dim": self.d,
            "trace_H": self.trace_H,
            "noise": self.noise,
            "w_star_norm_H2": float(np.sum(self.spectrum * self.to_eigen(self.w_star) ** 2)),
            "coordinates": "eigen" if self.basis is None else "data",
            "data_mode": self.data_mode,
            "data": self.name or "synthetic",
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
