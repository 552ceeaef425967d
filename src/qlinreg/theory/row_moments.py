"""The moment description of a data quantizer that the exact recursion reads (docs/theory.md §14).

For ``x ~ N(0, diag λ)`` and ``x̃ = Q_d(x)``, the diagonal recursion needs only moments of one
quantized row, and it stays closed for *any* ``Q_d`` whose law is symmetric under flipping the
sign of one coordinate (``(x, x̃) → (F_k x, F_k x̃)``, ``F_k`` the flip of coordinate ``k``):
every odd moment in a coordinate vanishes, so no product ``w_i w_j`` (``i ≠ j``) ever enters.
Unbiasedness is not needed: a biased quantizer (round-to-nearest, saturation) only moves the
fixed point, ``w*^(q)_i = E[x_i x̃_i] w*_i / E[x̃_i²]``.

When the coordinates are quantized independently given ``x`` (elementwise errors, idealized or
a real format with a fixed grid), or share one scalar scale independent of ``x`` (the rank-one
multiplicative model), the moments of a row are five numbers per coordinate,

    h = E x̃_i²,  c = E x_i x̃_i,  a4 = E x̃_i⁴,  b4 = E x_i x̃_i³,  c4 = E x_i² x̃_i²,

and three couplings for distinct coordinates ``i ≠ j``: ``E[x̃_i² x̃_j²] = π_A h_i h_j``,
``E[x̃_i² x_j x̃_j] = π_B h_i c_j``, ``E[x̃_i² x_j²] = π_C h_i λ_j`` (all 1 for independent
coordinates). Both the idealized kinds (closed form) and the number formats (quadrature,
:mod:`qlinreg.theory.format_moments`) produce this :class:`RowMoments`; the recursion reads
nothing else. All five follow from ``λ`` and the error moments ``e_ab = E[x^a m_b(x)]``,
``m_b(x) = E[(x̃ − x)^b | x]``: ``h = λ + 2e11 + e02``, ``c = λ + e11``,
``a4 = 3λ² + 4e31 + 6e22 + 4e13 + e04``, ``b4 = 3λ² + 3e31 + 3e22 + e13``,
``c4 = 3λ² + 2e31 + e22``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlinreg.quantize.formats import NumberFormat
from qlinreg.quantize.idealized import Idealized, error_moments
from qlinreg.theory.format_moments import format_error_moments, scalar_grid

__all__ = ["RowMoments", "exact_data_quantizer", "row_moments"]


@dataclass(frozen=True)
class RowMoments:
    """Moments of one quantized feature row ``x̃ = Q_d(x)``, ``x ~ N(0, diag λ)`` (see the
    module docstring): per coordinate ``λ, h, c, a4, b4, c4`` and the couplings
    ``pi = (π_A, π_B, π_C)``; ``method``: ``closed form`` (idealized) or ``quadrature``."""

    lam: np.ndarray
    h: np.ndarray
    c: np.ndarray
    a4: np.ndarray
    b4: np.ndarray
    c4: np.ndarray
    pi: tuple[float, float, float] = (1.0, 1.0, 1.0)
    method: str = "closed form"

    @classmethod
    def from_errors(
        cls, lam: np.ndarray, e: dict, pi=(1.0, 1.0, 1.0), method: str = "closed form"
    ) -> RowMoments:
        """From ``λ`` and the error moments ``e = {"e11": …, "e02": …, …}`` (absent: 0)."""
        lam = np.asarray(lam, np.float64)
        z = np.zeros_like(lam)
        e11, e02, e31, e22, e13, e04 = (
            np.asarray(e.get(k, z), np.float64) for k in ("e11", "e02", "e31", "e22", "e13", "e04")
        )
        l2 = 3 * lam * lam  # E x⁴
        return cls(
            lam=lam,
            h=lam + 2 * e11 + e02,
            c=lam + e11,
            a4=l2 + 4 * e31 + 6 * e22 + 4 * e13 + e04,
            b4=l2 + 3 * e31 + 3 * e22 + e13,
            c4=l2 + 2 * e31 + e22,
            pi=tuple(float(v) for v in pi),
            method=method,
        )

    @property
    def delta(self) -> np.ndarray:
        """``δ_i = E(x̃_i − x_i)²``, the error variance per coordinate."""
        return self.h - 2 * self.c + self.lam


def _idealized(q, lam: np.ndarray) -> RowMoments:
    """Closed forms: additive ``x̃ = x + √ε z``; multiplicative ``x̃ = s x`` (rank one: one ``s``
    per row) or ``x̃_i = s_i x_i`` (elementwise), ``s = 1 + √ε ζ``, ``E ζ⁴ = μ4``."""
    m = error_moments(q, "data")
    eps, mu4 = m.eps, m.mu4
    if m.kind == "none":
        return RowMoments.from_errors(lam, {})
    if m.kind == "additive":
        return RowMoments.from_errors(lam, {"e02": eps, "e22": eps * lam, "e04": mu4 * eps * eps})
    e = {"e02": eps * lam, "e22": 3 * eps * lam * lam, "e04": 3 * mu4 * eps * eps * lam * lam}
    if m.kind == "multiplicative_elementwise":
        return RowMoments.from_errors(lam, e)
    s3, s4 = 1 + 3 * eps, 1 + 6 * eps + mu4 * eps * eps  # E s³, E s⁴
    return RowMoments.from_errors(lam, e, pi=(s4 / (1 + eps) ** 2, s3 / (1 + eps), 1.0))


def exact_data_quantizer(q) -> bool:
    """Whether :func:`row_moments` is exact for ``q`` on data: an idealized quantizer, or a
    number format rounding each entry on a value-independent grid (FP without scaling, INT with
    a fixed scale), any rounding mode."""
    return isinstance(q, Idealized) or (isinstance(q, NumberFormat) and scalar_grid(q) is not None)


def row_moments(q, spectrum) -> RowMoments:
    """:class:`RowMoments` of the data quantizer ``q`` on ``x ~ N(0, diag(spectrum))``: closed
    form for the idealized kinds, quadrature over the grid for an elementwise format (see
    :func:`exact_data_quantizer`); ``TypeError`` otherwise."""
    lam = np.asarray(spectrum, np.float64)
    if isinstance(q, Idealized):
        return _idealized(q, lam)
    if isinstance(q, NumberFormat) and scalar_grid(q) is not None:
        return RowMoments.from_errors(lam, format_error_moments(q, lam), method="quadrature")
    raise TypeError(
        f"no exact row moments for {getattr(q, 'label', q)!r} on data: it is not an idealized "
        f"quantizer nor an elementwise format with a fixed grid"
    )
