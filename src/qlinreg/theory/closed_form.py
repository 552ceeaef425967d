"""The affine moment recursion of :mod:`qlinreg.theory.exact` at any step, in closed form.

Per constant-step segment the recursion (docs/theory.md §4–5, §9)::

    m' = a ⊙ m,   p' = α ⊙ p + k(hᵀp) + ν ⊙ m + ω(gᵀm) + c,   S' = S + p + 2U,   U' = a ⊙ (U + p)

is linear with a diagonal-plus-low-rank ``p``-block (``k, h``: ``d × R``; ``ω, g``: ``d × R'``;
``R = 1`` for the idealized quantizers and elementwise formats). Its generating function
``P(z) = Σ_t p_t z^t`` follows in O(d) from Sherman–Morrison::

    P = r ⊙ (b + z k σ),  r = 1/(1 − zα),  b = p_0 + z(ν ⊙ M + ω(gᵀM) + c/(1 − z)),
    M = m_0/(1 − za),     σ = ⟨h, r ⊙ b⟩ / (1 − z⟨h, r ⊙ k⟩),

and, for a full ``d × d`` coupling (moments estimated from samples, symmetric), in O(d²) from
its eigendecomposition ``diag(α) + k hᵀ = V diag(μ) Vᵀ``: ``P = V (Vᵀb / (1 − zμ))``,

and ``p_n``, ``U_n`` and ``S_n`` are the coefficients of ``z^n`` in ``P``, ``az P/(1 − az)``
and ``z P (1 + az)/((1 − z)(1 − az))`` (plus the start values' explicit terms). A
coefficient is a contour integral; with ``z = e^{−s}`` it is the Bromwich integral
``(1/2πi)∫ F(e^{−s}) e^{ns} ds``, whose singularities ``s = log μ`` (``μ``: the eigenvalues
``a_i``, those of ``diag(α) + k hᵀ``, and 1) lie on the non-positive real axis when the
recursion is stable — and on the line ``Im s = π`` for negative ``μ``. The integral is
evaluated by the trapezoidal rule on Weideman's optimised Talbot contour, scaled by ``1/n``
(error ≈ e^{−1.36·N_nodes}, uniformly in where the singularities lie: it is a rational
approximation of ``e^{−x}`` on ``x ≥ 0``), plus a second contour around ``Im s = π`` when
some ``μ`` may be negative. Every quantity is formed without subtracting nearly equal terms:
``1 − zα = (1 − α) − (z − 1)α`` with ``1 − α`` and ``z − 1 = expm1(−s)`` computed directly.
Cost: O(d) per node (O(d²) for a full coupling), ``N_NODES/2`` nodes per contour, for any
``n``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["N_NODES", "Coefficients", "contour_functionals", "contour_moments"]

N_NODES = 24  # nodes of the full contour (half are evaluated: the integrand is conjugate-even)
# Weideman (2006), "Optimizing Talbot's contours for the inversion of the Laplace transform":
# s(θ) = (N/t)(−0.6122 + 0.5017 θ cot(0.6407 θ) + 0.2645 i θ), θ ∈ (−π, π).
_T0, _T1, _T2, _T3 = -0.6122, 0.5017, 0.6407, 0.2645


class Coefficients(NamedTuple):
    """One constant-step segment of the recursion (float64 d-vectors)."""

    a: np.ndarray  # 1 − γh
    one_minus_a: np.ndarray  # γh
    alpha: np.ndarray
    one_minus_alpha: np.ndarray
    k: np.ndarray  # d × R
    nu: np.ndarray
    omega: np.ndarray  # d × R'
    c: np.ndarray
    h: np.ndarray  # d × R
    g: np.ndarray  # d × R' (H w* for unbiased data)
    gaps: np.ndarray  # R > 1: eigenvalues 1 − μ of the symmetric p-map (else empty)
    V: np.ndarray  # R > 1: its orthonormal eigenvectors (else empty)


def _nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Talbot contour for ``t = 1`` at the positive midpoints ``θ_j``: ``s_j`` and ``s'(θ_j)``."""
    theta = (np.arange(n_nodes // 2) + 0.5) * (2 * np.pi / n_nodes)
    ct = 1 / np.tan(_T2 * theta)
    s = n_nodes * (_T0 + _T1 * theta * ct + 1j * _T3 * theta)
    ds = n_nodes * (_T1 * (ct - _T2 * theta / np.sin(_T2 * theta) ** 2) + 1j * _T3)
    return s, ds


def _kernels(z, zm1, C: Coefficients, m0, p0):
    """``(P, U-kernel·P, S-kernel·P)`` at one complex ``z`` (``zm1 = z − 1``, accurate)."""
    ra = 1 / (C.one_minus_a - zm1 * C.a)  # 1/(1 − za)
    r = 1 / (C.one_minus_alpha - zm1 * C.alpha)  # 1/(1 − zα)
    M = m0 * ra
    b = p0 + z * (C.nu * M + C.omega @ (C.g.T @ M) - C.c / zm1)
    if C.V.size:  # symmetric p-map V diag(μ) Vᵀ: 1 − zμ = (1 − μ) − (z − 1)μ
        P = C.V @ ((C.V.T @ b) / (C.gaps - zm1 * (1 - C.gaps)))
    else:
        rhs = C.h.T @ (r * b)
        sigma = rhs / (1 - z * (C.h[:, 0] @ (r * C.k[:, 0])))
        P = r * (b + z * (C.k @ sigma))
    U = z * C.a * ra * P
    S = -z * P * ((1 + C.a) + zm1 * C.a) * ra / zm1
    return jnp.stack([P, U, S])


def _contour_body(tau, flip, C: Coefficients, m0, p0, W, s1, ds1, vectors: bool):
    """``W @ [z^τ]F`` for the three kernels ``F`` (shape ``(3, w)``) and, with ``vectors``, the
    coefficient vectors themselves (``(3, d)``), on the contour scaled to ``τ``; ``flip``
    selects the contour around ``Im s = π`` (``z → −z``, times ``(−1)^τ``). One node at a
    time (a scan: O(d) memory; measured fastest on CPU)."""

    def node(acc, x):
        s, ds = x[0] / tau, x[1] / tau
        em1 = jnp.expm1(-s.real)
        y = -s.imag
        zm1 = em1 * jnp.cos(y) - 2 * jnp.sin(y / 2) ** 2 + 1j * (1 + em1) * jnp.sin(y)  # e^{−s} − 1
        z = 1 + zm1
        z, zm1 = jnp.where(flip, -z, z), jnp.where(flip, -z - 1, zm1)
        F = _kernels(z, zm1, C, m0, p0) * (jnp.exp(tau * s) * ds)
        scalars, vec = acc
        return (scalars + (F @ W.T).imag, vec + F.imag if vectors else vec), None

    d = m0.shape[-1]
    init = (jnp.zeros((3, W.shape[0])), jnp.zeros((3, d) if vectors else (3, 0)))
    (scalars, vec), _ = jax.lax.scan(node, init, jnp.stack([s1, ds1]).T)
    # (Δθ/π) Σ_{θ>0} Im(…) with Δθ = 2π/N_NODES; the flipped contour carries (−1)^τ.
    scale = jnp.where(flip & (jnp.mod(tau, 2) == 1), -1.0, 1.0) / s1.size
    return scalars * scale, vec * scale


_contour = jax.jit(_contour_body, static_argnames="vectors")
_CHUNK = 16  # τ per compiled call of :func:`_contour_many` (d ≤ _CHUNK_MAX_DIM)
_CHUNK_MAX_DIM = 4096


@jax.jit
def _contour_many(taus, flip, C: Coefficients, m0, p0, Ws, s1, ds1):
    """:func:`_contour_body`'s weighted sums for many ``τ`` in one call (one at a time)."""

    def one(x):
        return _contour_body(x[0], flip, C, m0, p0, x[1], s1, ds1, False)[0]

    return jax.lax.map(one, (taus, Ws))


def contour_moments(
    tau: int,
    C: Coefficients,
    m0: np.ndarray,
    p0: np.ndarray,
    W: np.ndarray,
    negative: bool,
    vectors: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``p_τ``, ``Σ_{r<τ} a^{τ−r} p_r`` and ``Σ_{r<τ} p_r (1 + 2Σ_{j=1}^{τ−1−r} a^j)`` from a start
    ``(m_0, p_0)`` with zero sums: as weighted sums ``(3, w)`` with the rows of ``W``, and as
    vectors ``(3, d)`` (with ``vectors``; else an empty array). ``negative``: some eigenvalue
    may be negative (second contour).

    Needs a stable recursion and ``τ ≥ N_NODES`` (the contour's imaginary extent, ``0.83
    N_NODES/τ``, stays below ``π/2``).
    """
    if tau < N_NODES:
        raise ValueError(f"contour_moments needs τ ≥ {N_NODES}, got {tau}")
    s1, ds1 = _nodes(N_NODES)
    args = (C, m0, p0, np.atleast_2d(W), s1, ds1)
    out, vec = _contour(float(tau), False, *args, vectors=vectors)
    if negative:
        o2, v2 = _contour(float(tau), True, *args, vectors=vectors)
        out, vec = out + o2, vec + v2
    return np.asarray(out), np.asarray(vec)


def contour_functionals(
    taus, C: Coefficients, m0: np.ndarray, p0: np.ndarray, Ws: np.ndarray, negative: bool
) -> np.ndarray:
    """:func:`contour_moments`' weighted sums for every ``τ`` of ``taus`` (each ≥ N_NODES),
    ``Ws[j]`` the rows for ``taus[j]``: shape ``(len(taus), 3, w)``, in one compiled call."""
    taus = np.asarray(taus, np.float64)
    if taus.size and taus.min() < N_NODES:
        raise ValueError(f"contour_functionals needs τ ≥ {N_NODES}, got {taus.min():g}")
    s1, ds1 = _nodes(N_NODES)
    # Fixed chunks of τ (the last padded by repeating its τ) and rows padded to a multiple of 8,
    # so calls with different numbers of checkpoints share one compilation per d; each τ is
    # computed alone (lax.map) and padded rows are zero: the same numbers bit for bit.
    n, w = taus.size, Ws.shape[-2]
    if n == 0:
        return np.zeros((0, 3, w))
    chunk = _CHUNK if m0.shape[-1] <= _CHUNK_MAX_DIM else max(n, 1)  # large d: compute dominates
    pad_n, pad_w = -n % chunk, -w % 8
    taus = np.concatenate([taus, np.repeat(taus[-1:], pad_n)])
    Ws = np.pad(np.concatenate([Ws, np.repeat(Ws[-1:], pad_n, axis=0)]),
                ((0, 0), (0, pad_w), (0, 0)))  # fmt: skip
    out = []
    for j in range(0, taus.size, chunk):
        part = (taus[j : j + chunk], C, m0, p0, Ws[j : j + chunk], s1, ds1)
        r = _contour_many(part[0], False, *part[1:])
        if negative:
            r = r + _contour_many(part[0], True, *part[1:])
        out.append(np.asarray(r))
    return np.concatenate(out)[:n, :, :w]
