"""Exact moments of an elementwise number format on Gaussian values: quadrature over the
format's grid (docs/theory.md §14).

A format that rounds each entry on its own, on a grid that does not depend on the values (FP
without scaling, INT with a fixed scale), maps ``x`` to ``x̃ = x + e`` where, given ``x``, the
error's law is known in closed form on each grid cell ``[l, r]`` (``A = x − l``, ``C = r − x``,
``s = r − l``, magnitudes; the sign is put back, so ``m_b(−x) = (−1)^b m_b(x)``):

- stochastic: ``e = C`` with probability ``A/s``, else ``−A``: ``m_b(x) = E[e^b | x] =
  (A C^b + C (−A)^b)/s``, i.e. ``m_1 = 0``, ``m_2 = AC`` (the variance ``(x − lo)(hi − x)``),
  ``m_3 = AC(C − A)``, ``m_4 = AC(A² − AC + C²)``;
- nearest (either tie rule: ties have probability 0): ``e = −A`` if ``A < C``, else ``C``;
- toward zero: ``e = −A``;
- beyond the largest finite magnitude ``M``: ``x̃ = ±M`` (a saturating format). A format whose
  overflow gives inf or NaN is refused when ``P(|x| > M)`` is not 0 in float64: its moments
  are then infinite or undefined.

Every needed moment of ``(x, x̃)`` is a Gaussian moment of ``x`` plus ``E[x^a m_b(x)]``,
computed here on ``x ≥ 0`` (and doubled: ``x^a m_b(x)`` is even for ``a + b`` even) as a sum
over the grid cells of Gauss–Legendre rules on pieces at most ``σ/2`` wide (``m_b`` is a
polynomial on each piece, the Gaussian density smooth on it), over ``[σ·2⁻³⁰, 13σ]``: the rest
carries less than ``2⁻⁶⁰`` of any moment. Where the grid is much finer than ``σ`` (spacing
``s ≤ 2⁻¹³σ``, e.g. fp32) the cells are not enumerated: ``m_b`` is replaced by its average
over a cell (``s²/6`` and ``s⁴/30`` for stochastic rounding, ``s²/12`` and ``s⁴/80`` for
nearest), which is exact up to a relative ``O((s/σ)²) ≤ 2⁻²⁶`` of the quantization term (the
periodic remainder integrates to zero over every cell-aligned binade to first order), i.e.
below float64's resolution of the moment itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import erfc

from qlinreg.quantize.formats import FloatFormat, IntFormat, NumberFormat

__all__ = [
    "ScalarGrid",
    "check_overflow",
    "error_moments_1d",
    "format_error_moments",
    "gaussian_density",
    "nodes",
    "scalar_grid",
]

_WINDOW = 13.0  # Gaussian mass beyond 13σ: < 1e-37
_LOW = 2.0**-30  # [0, σ·2^-30) carries < 2^-60 of every moment used (all have degree ≥ 2)
_PIECE = 0.5  # Gauss–Legendre pieces at most σ/2 wide
_GL_T, _GL_W = np.polynomial.legendre.leggauss(8)
_FINE = {"stochastic": 2.0**-13, "nearest_even": 2.0**-13, "nearest_away": 2.0**-13}
_FINE_DEFAULT = 2.0**-26  # toward zero: the cell average of e is not 0, so be finer
# Cell averages of m_b / s^b for b = 1 … 4 (e uniform over the cell's position):
_AVERAGES = {
    "stochastic": (0.0, 1 / 6, 0.0, 1 / 30),
    "nearest_even": (0.0, 1 / 12, 0.0, 1 / 80),
    "nearest_away": (0.0, 1 / 12, 0.0, 1 / 80),
    "toward_zero": (-1 / 2, 1 / 3, -1 / 4, 1 / 5),
}
_SR, _DET, _AVG = 0, 1, 2  # piece kinds: stochastic cell (l, r); e = base − x; cell average


@dataclass(frozen=True)
class ScalarGrid:
    """The positive magnitudes of an elementwise format, as segments of constant spacing.

    Attributes:
        starts, ends, spacing: segment ``j`` is ``[starts[j], ends[j]]`` with grid points every
            ``spacing[j]`` (both ends are grid points; ``starts[0] = 0``).
        top: the largest finite magnitude ``M`` (scale applied).
        overflow: ``saturate`` (beyond ``M``: ``±M``), ``inf`` or ``nan``.
        rounding: the format's rounding mode.
        label: the format's label, for messages.
    """

    starts: np.ndarray
    ends: np.ndarray
    spacing: np.ndarray
    top: float
    overflow: str
    rounding: str
    label: str


def _float_segments(q: FloatFormat) -> tuple[list, float]:
    g = q.grid
    m, emin, top = g.man_bits, g.emin, g.max_value
    sub = 2.0 ** (emin - m) if g.subnormals else 2.0**emin
    segs = [(0.0, min(2.0**emin, top), sub)]
    e = emin
    while 2.0**e < top:
        segs.append((2.0**e, min(2.0 ** (e + 1), top), 2.0 ** (e - m)))
        e += 1
    return segs, top


def scalar_grid(q) -> ScalarGrid | None:
    """The grid of ``q`` if it rounds each entry on a value-independent grid (FP without
    scaling, INT with a fixed scale), else ``None`` (a shared scale, or not a number format).

    ``ValueError`` for an INT grid that is not symmetric about 0 (two's complement or
    unsigned): the exact theory needs ``Q(−x) = −Q(x)`` in law.
    """
    if isinstance(q, FloatFormat):
        if q.scaling != "none":
            return None
        segs, top = _float_segments(q)
        overflow = q.overflow
    elif isinstance(q, IntFormat):
        if q.scaling != "fixed":
            return None
        if not (q.signed and q.symmetric):
            raise ValueError(
                f"{q.label}: the exact theory needs a grid symmetric about 0 (Q(−x) = −Q(x)); "
                f"use a signed, symmetric INT format, or simulate this one"
            )
        s = float(q.scale)
        top = q.qmax * s
        segs, overflow = [(0.0, top, s)], "saturate"
    else:
        return None
    starts, ends, spacing = (np.array(col, np.float64) for col in zip(*segs, strict=True))
    return ScalarGrid(starts, ends, spacing, float(top), overflow, q.rounding, q.label)


def check_overflow(g: ScalarGrid, sigma: float) -> None:
    """``ValueError`` if values of standard deviation ``σ`` can overflow ``g`` to inf/NaN."""
    if g.overflow == "saturate" or not sigma > 0:
        return
    p = float(erfc(g.top / (sigma * math.sqrt(2.0))))
    if p > 0:
        raise ValueError(
            f"{g.label}: a value of standard deviation {sigma:.4g} exceeds the largest finite "
            f"magnitude {g.top:.6g} with probability {p:.3g} and then becomes {g.overflow}: the "
            f"expected risk is not finite; use a saturating format, a scale, or simulate it"
        )


def _split(a: np.ndarray, b: np.ndarray, width: float, *cols: np.ndarray):
    """Pieces ``[a, b]`` cut into equal parts at most ``width`` wide; ``cols`` repeated."""
    n = np.maximum(1, np.ceil((b - a) / width).astype(np.int64))
    idx = np.repeat(np.arange(a.size), n)
    first = np.cumsum(n) - n
    k = np.arange(idx.size) - first[idx]
    step = (b - a)[idx] / n[idx]
    lo = a[idx] + k * step
    hi = np.where(k == n[idx] - 1, b[idx], lo + step)
    return (lo, hi, *(c[idx] for c in cols))


def _pieces(g: ScalarGrid, sigma: float, upper: float, fine: float | None = None):
    """Integration pieces on ``[σ·2⁻³⁰, upper]`` for a Gaussian weight of width ``σ``: bounds
    ``(a, b)``, kind, and two parameters (stochastic cell: ``l, r``; deterministic error
    ``e = base − x``: ``base``; averaged: ``s``). Cells of spacing ``≤ fine·σ`` are averaged
    (default: ``2⁻¹³``, ``2⁻²⁶`` toward zero)."""
    x0, x1 = sigma * _LOW, upper
    width = sigma * _PIECE
    fine = sigma * (_FINE.get(g.rounding, _FINE_DEFAULT) if fine is None else fine)
    parts = []

    def add(a, b, kind, p, q):
        keep = b > a
        if np.any(keep):
            a, b, p, q = a[keep], b[keep], p[keep], q[keep]
            lo, hi, p, q = _split(a, b, width, p, q)
            parts.append((lo, hi, np.full(lo.size, kind), p, q))

    for start, end, s in zip(g.starts, g.ends, g.spacing, strict=True):
        lo, hi = max(start, x0), min(end, x1)
        if lo >= hi:
            continue
        if s <= fine:
            one = np.array([lo]), np.array([hi])
            add(*one, _AVG, np.array([s]), np.zeros(1))
            continue
        k = np.arange(math.floor((lo - start) / s), math.ceil((hi - start) / s))
        left = start + k * s
        right = np.minimum(left + s, end)
        a, b = np.maximum(left, lo), np.minimum(right, hi)
        if g.rounding == "stochastic":
            add(a, b, _SR, left, right)
        elif g.rounding == "toward_zero":
            add(a, b, _DET, left, left)
        else:  # nearest: e = l − x below the midpoint, r − x above
            mid = 0.5 * (left + right)
            add(a, np.minimum(b, mid), _DET, left, left)
            add(np.maximum(a, mid), b, _DET, right, right)
    if g.top < x1:  # saturation: x̃ = M
        add(np.array([max(g.top, x0)]), np.array([x1]), _DET, np.array([g.top]), np.zeros(1))
    if not parts:
        z = np.zeros(0)
        return z, z, np.zeros(0, np.int64), z, z
    return tuple(np.concatenate(c) for c in zip(*parts, strict=True))


def _error_powers(kind, p, q, x, rounding: str) -> np.ndarray:
    """``m_b(x) = E[e^b | x]`` for ``b = 1 … 4`` at nodes ``x`` (shape ``(4,) + x.shape``)."""
    out = np.empty((4, *x.shape))
    A, C = x - p[:, None], q[:, None] - x
    sr = kind[:, None] == _SR
    det = x - p[:, None]  # e = base − x = −(x − base)
    e = -det
    avg = _AVERAGES[rounding]
    s = p[:, None]
    for b in range(1, 5):
        if b == 1:
            srb = np.zeros_like(x)
        elif b == 2:
            srb = A * C
        elif b == 3:
            srb = A * C * (C - A)
        else:
            srb = A * C * (A * A - A * C + C * C)
        val = np.where(sr, srb, e**b)
        out[b - 1] = np.where(kind[:, None] == _AVG, avg[b - 1] * s**b, val)
    return out


def nodes(
    g: ScalarGrid, sigma: float, upper: float, fine: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes ``x`` on ``[σ·2⁻³⁰, upper]`` along ``g``'s cells (pieces at most
    ``σ/2`` wide; cell averages where the spacing is ``≤ fine·σ``, default ``2⁻¹³``), their
    weights ``w`` (no density) and ``m[b − 1] = m_b(x)``, ``b = 1 … 4``: ``Σ w f(x) m_b(x)``
    integrates ``f·m_b`` for any ``f`` smooth on the scale ``σ``. Flat arrays."""
    a, b, kind, p, q = _pieces(g, sigma, upper, fine)
    half = 0.5 * (b - a)
    x = (0.5 * (a + b))[:, None] + half[:, None] * _GL_T
    m = _error_powers(kind, p, q, x, g.rounding)
    return x.ravel(), (half[:, None] * _GL_W).ravel(), m.reshape(4, -1)


def gaussian_density(x: np.ndarray, sigma: float) -> np.ndarray:
    """The ``N(0, σ²)`` density at ``x``."""
    return np.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def error_moments_1d(g: ScalarGrid, sigma: float, pairs) -> np.ndarray:
    """``E[x^a m_b(x)]`` for ``x ~ N(0, σ²)`` and each ``(a, b)`` of ``pairs`` (``1 ≤ b ≤ 4``;
    0 when ``a + b`` is odd, by symmetry), for the rounding of ``g``; 0 for ``σ = 0``."""
    pairs = tuple(pairs)
    if not sigma > 0:
        return np.zeros(len(pairs))
    check_overflow(g, sigma)
    x, w, m = nodes(g, sigma, _WINDOW * sigma)
    w = 2 * w * gaussian_density(x, sigma)  # doubled: the integrands used are even
    return np.array([float(w @ (x**i * m[j - 1])) if (i + j) % 2 == 0 else 0.0 for i, j in pairs])


_PAIRS = ((1, 1), (0, 2), (3, 1), (2, 2), (1, 3), (0, 4))


@lru_cache(maxsize=64)
def _cached(q: NumberFormat, sigmas: bytes) -> np.ndarray:
    g = scalar_grid(q)
    sig = np.frombuffer(sigmas, np.float64)
    return np.stack([error_moments_1d(g, float(s), _PAIRS) for s in sig], axis=1)


def format_error_moments(q: NumberFormat, spectrum: np.ndarray) -> dict[str, np.ndarray]:
    """``E[x_i^a m_b(x_i)]`` per coordinate, ``x_i ~ N(0, λ_i)``, keyed ``"e{a}{b}"`` for the
    pairs the row moments need (``e11, e02, e31, e22, e13, e04``); cached per format and
    spectrum."""
    sig = np.sqrt(np.asarray(spectrum, np.float64))
    out = _cached(q, sig.tobytes())
    return {f"e{a}{b}": out[k] for k, (a, b) in enumerate(_PAIRS)}
