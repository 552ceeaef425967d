"""Exact moments of a training row with a number format on the labels (docs/theory.md §14).

With an elementwise format ``Q_l`` on the labels (a fixed grid: FP without scaling, INT with a
fixed scale), the training label is ``ỹ = y + e_l`` with, given ``y``, ``E[e_l^k | y] =
L_k(y)`` known on each cell of the label grid (:mod:`qlinreg.theory.format_moments`), so
``E[ỹ | y] = y + L_1(y)`` and ``E[ỹ² | y] = y² + 2y L_1(y) + L_2(y)``; ``L_1 = 0`` for
stochastic rounding without saturation. Given ``x``, the data quantizer rounds each coordinate
on its own (``E[x̃_i^k | x_i] = μ_k(x_i)``: a polynomial for the idealized kinds, ``x^k`` plus
error terms ``D_j(x) = E[e_d^j | x]`` for a format), so every moment the recursion needs is a
sum of

    E[x_i^a D_j(x_i) y^c L_k(y)],   (x_i, y) jointly Gaussian: y = w*_i x_i + z_i,
    z_i ~ N(0, τ_i²),  τ_i² = ‖w*‖²_H + σ² − λ_i w*_i²,

computed as: a bivariate Gaussian moment (``j = k = 0``); a one-dimensional quadrature of the
data grid against ``E[y^c | x_i]`` (``k = 0``) or of the label grid against ``E[x_i^a | y]``
(``j = 0``), both polynomials; and, when both data and labels are formats, a two-dimensional
one (Gauss–Legendre on the data cells times, at each node, the label cells against the
conditional density of ``y``). That last term is a product of a data error and a label error;
it averages cells finer than ``2⁻⁶`` of the Gaussian's width (a relative error ``O(2⁻¹²)`` of
that product, i.e. ``≲ 2⁻¹²·δ_d·δ_l`` relative to the moment) to keep the double sum small.

Needed (per coordinate ``i``): ``ℓ_i = E[x̃_i ỹ]`` (the fixed point is ``u = ℓ/h``),
``E[x̃_i³ ỹ]``, ``E[x̃_i² ỹ²]`` and the coupling of two coordinates ``E[x̃_i² ỹ x̃_k]``
(``k ≠ i``). The last is ``π_B h_i c_k w*_k`` when the labels are unbiased, and
``π_B ρ_i λ_k w*_k`` with ``ρ_i = E[μ_2(x_i)(y − w*_i x_i) E[ỹ | y]] / τ_i²`` when the data are
(``E[x_k | x_i, y] = λ_k w*_k (y − w*_i x_i)/τ_i²``). When both are biased (saturation or
round-to-nearest on both) it needs a three-dimensional integral per pair of coordinates: not
provided (``ValueError``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

from qlinreg.problem import Problem
from qlinreg.quantize.idealized import Idealized, error_moments
from qlinreg.theory.format_moments import (
    ScalarGrid,
    check_overflow,
    error_moments_1d,
    gaussian_density,
    nodes,
    scalar_grid,
)

__all__ = ["BiasedPairError", "LabelMoments", "label_moments"]


class BiasedPairError(ValueError):
    """Data and labels are both biased: no exact two-coordinate coupling (see the module)."""


_WINDOW = 13.0
_FINE_2D = 2.0**-6  # cells finer than this (× the Gaussian's width) are averaged in 2-D terms


@dataclass(frozen=True)
class LabelMoments:
    """Per-coordinate moments of a row ``(x̃, ỹ)`` with a format on the labels (module
    docstring): ``ell = E[x̃_i ỹ]``, ``x3y = E[x̃_i³ ỹ]``, ``x2y2 = E[x̃_i² ỹ²]``, and the
    coupling ``E[x̃_i² ỹ x̃_k] = π_B·coef_i·dirn_k`` (``k ≠ i``) for biased labels (``coef =
    ρ``, ``dirn = Hw*``); ``None`` for unbiased ones, whose coupling is that of clean labels."""

    ell: np.ndarray
    x3y: np.ndarray
    x2y2: np.ndarray
    coef: np.ndarray | None
    dirn: np.ndarray | None


def _gauss(r: int, var: float) -> float:
    """``E z^r`` for ``z ~ N(0, var)``."""
    return 0.0 if r % 2 else math.prod(range(r - 1, 0, -2)) * var ** (r // 2)


def _unbiased(g: ScalarGrid, sigma: float) -> bool:
    """Stochastic rounding that never saturates within the quadrature window: ``L_1 = 0``."""
    return g.rounding == "stochastic" and g.top >= _WINDOW * sigma


class _Law:
    """``μ_k(x) = E[x̃^k | x]`` of the data quantizer as terms ``(coef, a, j)``: ``coef·x^a·D_j``
    (``D_0 = 1``); idealized kinds have polynomials only."""

    def __init__(self, q):
        self.grid = None if isinstance(q, Idealized) else scalar_grid(q)
        m = error_moments(q, "data") if self.grid is None else None
        self.eps_a = 0.0 if m is None else m.add
        self.eps_m = 0.0 if m is None else m.mult

    def mu(self, k: int) -> list[tuple[float, int, int]]:
        if self.grid is not None:  # (x + e)^k, E[e^j | x] = D_j
            return [(float(comb(k, j)), k - j, j) for j in range(k + 1)]
        ea, em = self.eps_a, self.eps_m
        return {
            1: [(1.0, 1, 0)],
            2: [(1 + em, 2, 0), (ea, 0, 0)],
            3: [(1 + 3 * em, 3, 0), (3 * ea, 1, 0)],
        }[k]

    def unbiased(self, sigma: float) -> bool:
        return self.grid is None or _unbiased(self.grid, sigma)


def _terms(phi, psi):
    """Products of data terms ``(coef, a, j)`` and label terms ``(coef, c, k)``."""
    return [(cx * cy, a, j, c, k) for cx, a, j in phi for cy, c, k in psi]


class _Coordinate:
    """``E[x^a D_j(x) y^c L_k(y)]`` for one coordinate: ``x ~ N(0, λ)``, ``y = w* x + z``."""

    def __init__(self, law: _Law, lg: ScalarGrid, lam: float, ws: float, V: float, label1d):
        self.law, self.lg, self.lam, self.ws = law, lg, lam, ws
        self.tau2 = max(V - lam * ws * ws, 0.0)
        self.rho, self.kappa2 = lam * ws / V, lam - lam * lam * ws * ws / V  # x | y
        self.label1d = label1d  # (c, k) → E[y^c L_k(y)]
        self._data1d: dict = {}
        self._grid2d = None
        self._inner: dict = {}

    def data1d(self, a: int, j: int) -> float:
        if (a, j) not in self._data1d:
            g, sig = self.law.grid, math.sqrt(self.lam)
            self._data1d[a, j] = float(error_moments_1d(g, sig, [(a, j)])[0])
        return self._data1d[a, j]

    def mean(self, a: int, j: int, c: int, k: int) -> float:
        if (a + j + c + k) % 2:
            return 0.0
        lam, ws, t2 = self.lam, self.ws, self.tau2
        if k == 0:  # E[y^c | x] = Σ_r C(c, r) (w* x)^{c−r} E z^r
            total = 0.0
            for r in range(0, c + 1, 2):
                e = comb(c, r) * ws ** (c - r) * _gauss(r, t2)
                total += e * (_gauss(a + c - r, lam) if j == 0 else self.data1d(a + c - r, j))
            return total
        if j == 0:  # E[x^a | y] = Σ_r C(a, r) (ρ y)^{a−r} E[(κζ)^r]
            total = 0.0
            for r in range(0, a + 1, 2):
                e = comb(a, r) * self.rho ** (a - r) * _gauss(r, self.kappa2)
                total += e * self.label1d(c + a - r, k)
            return total
        return self._two_dim(a, j, c, k)

    def _two_dim(self, a: int, j: int, c: int, k: int) -> float:
        sig, tau = math.sqrt(self.lam), math.sqrt(self.tau2)
        if self._grid2d is None:
            x, wx, mx = nodes(self.law.grid, sig, _WINDOW * sig, _FINE_2D)
            upper = abs(self.ws) * _WINDOW * sig + _WINDOW * tau
            y, wy, my = nodes(self.lg, tau, upper, _FINE_2D)
            t = self.ws * x
            plus = gaussian_density(y[None, :] - t[:, None], tau)
            minus = gaussian_density(y[None, :] + t[:, None], tau)
            # y ↦ −y flips the label factor by (−1)^{c+k}
            kernels = (plus + minus, plus - minus)
            self._grid2d = (x, wx * gaussian_density(x, sig), mx, y, wy, my, kernels)
        x, wx, mx, y, wy, my, kernels = self._grid2d
        if (c, k) not in self._inner:
            self._inner[c, k] = kernels[(c + k) % 2] @ (wy * y**c * my[k - 1])
        return float(2 * wx @ (x**a * mx[j - 1] * self._inner[c, k]))  # x ↦ −x: same sign

    def expect(self, terms) -> float:
        return sum(coef * self.mean(a, j, c, k) for coef, a, j, c, k in terms)


@lru_cache(maxsize=16)
def label_moments(problem: Problem, data_q, label_q) -> LabelMoments:
    """:class:`LabelMoments` of ``(Q_d(x), Q_l(y))`` on a diagonal ``problem``: ``data_q`` an
    idealized quantizer or an elementwise format, ``label_q`` an elementwise format.
    :class:`BiasedPairError` when both are biased. Cached (a problem is keyed by identity)."""
    lg = scalar_grid(label_q)
    lam, ws = problem.spectrum, problem.w_star
    V = float(np.sum(lam * ws * ws)) + problem.noise
    sy = math.sqrt(V)
    check_overflow(lg, sy)
    law = _Law(data_q)
    labels_unbiased = _unbiased(lg, sy)
    data_unbiased = all(law.unbiased(math.sqrt(v)) for v in lam)
    if not (labels_unbiased or data_unbiased):
        raise BiasedPairError(
            f"exact risk: data and labels both biased ({getattr(data_q, 'label', data_q)}, "
            f"{label_q.label}: saturation or non-stochastic rounding): the coupling of two "
            f"coordinates would need a 3-D integral per pair"
        )
    cache: dict = {}

    def label1d(c: int, k: int) -> float:
        if (c, k) not in cache:
            cache[c, k] = float(error_moments_1d(lg, sy, [(c, k)])[0])
        return cache[c, k]

    mean_y = [(1.0, 1, 0), (1.0, 0, 1)]  # E[ỹ | y] = y + L_1
    sq_y = [(1.0, 2, 0), (2.0, 1, 1), (1.0, 0, 2)]  # E[ỹ² | y]
    y_mean_y = [(1.0, 2, 0), (1.0, 1, 1)]  # y·E[ỹ | y]
    out = {name: np.empty(problem.d) for name in ("ell", "x3y", "x2y2", "rho")}
    for i in range(problem.d):
        co = _Coordinate(law, lg, float(lam[i]), float(ws[i]), V, label1d)
        out["ell"][i] = co.expect(_terms(law.mu(1), mean_y))
        out["x3y"][i] = co.expect(_terms(law.mu(3), mean_y))
        out["x2y2"][i] = co.expect(_terms(law.mu(2), sq_y))
        if not labels_unbiased:
            x_mu2 = [(cf, a + 1, j) for cf, a, j in law.mu(2)]
            num = co.expect(_terms(law.mu(2), y_mean_y)) - ws[i] * co.expect(_terms(x_mu2, mean_y))
            out["rho"][i] = num / co.tau2
    if labels_unbiased:
        return LabelMoments(out["ell"], out["x3y"], out["x2y2"], None, None)
    return LabelMoments(out["ell"], out["x3y"], out["x2y2"], out["rho"], lam * ws)
