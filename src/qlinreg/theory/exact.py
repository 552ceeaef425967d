"""Exact expected excess risk of quantized SGD (SPEC §2) for Gaussian features, diagonal ``H``.

For the idealized quantizers on any of the five roles, number formats on the data and labels,
and any batch size ``B``, the mean ``m_t = E[v_t]`` and the diagonal second moment
``p_t = E[v_t ⊙ v_t]`` of ``v_t = w_t − w*^(q)`` obey a closed affine recursion (it needs only
the data quantizer's symmetry under flipping one coordinate's sign; docs/theory.md §14)::

    m_{t+1} = (1 − γλ^(q)) ⊙ m_t
    p_{t+1} = α ⊙ p_t + k (hᵀ p_t) + ν ⊙ m_t + ω (gᵀ m_t) + c

(``k, h``: rank one — ``h = λ^(q)`` — except for moments estimated from samples, a full
symmetric coupling; ``g``: ``λ^(q) ⊙ w*^(q)``, plus ``Hw*`` for biased labels) and, because
``E[v_t | v_s] = (I − γH^(q))^{t−s} v_s``, the second moment of any average of iterates follows
from two running sums. The moments of one quantized row come from
:mod:`~qlinreg.theory.row_moments` (idealized kinds, elementwise formats),
:mod:`~qlinreg.theory.label_moments` (formats on labels) or
:mod:`~qlinreg.theory.sampled_moments` (shared scales). Derivation, term by term:
``docs/theory.md``. Computations run in float64 (JAX x64 is switched on inside
:func:`exact_risk` only, with a context manager).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.optimize import brentq

from qlinreg.algorithm import (
    AVERAGES,
    SGDConfig,
    check_checkpoints,
    check_run,
    positive_int,
    run_config,
)
from qlinreg.problem import Problem
from qlinreg.quantize.formats import IntFormat, NumberFormat
from qlinreg.quantize.idealized import ErrorMoments, error_moments
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.closed_form import Coefficients, contour_functionals, contour_moments
from qlinreg.theory.format_moments import scalar_grid
from qlinreg.theory.label_moments import BiasedPairError, LabelMoments, label_moments
from qlinreg.theory.quantized_data import rotation_invariant
from qlinreg.theory.row_moments import RowMoments, exact_data_quantizer, row_moments
from qlinreg.theory.sampled_moments import (
    DEFAULT_SAMPLES,
    GROUPS,
    SAMPLED_MAX_DIM,
    sample_moments,
)

__all__ = [
    "ExactResult",
    "check_exact",
    "exact_risk",
    "has_exact_moments",
    "in_eigenbasis",
    "second_moment_radius",
]


@dataclass(frozen=True)
class _DataMoments:
    """Moments of one row ``(x̃, ỹ)`` of quantized training data that the recursion reads.

    With ``h = λ^(q)`` (``E x̃_i²``), ``u`` the training fixed point (``E[x̃ ỹ] = h ⊙ u``) and
    ``e = ỹ − ⟨u, x̃⟩`` (so ``E[e x̃] = 0``), in low-rank form (``R_A``, ``R_m`` columns):

    - ``A_ij = E[x̃_i² x̃_j²] = (UA VAᵀ)_ij + δ_ij D_i``;
    - ``E[x̃_i² e ⟨x̃, v⟩] = (Ub Gmᵀ v)_i + η_i v_i``, and ``(UA VAᵀ)(u ⊙ v) = UAm Gmᵀ v``;
    - ``Ge_i = E[x̃_i² e²]``, ``Gy_i = E[x̃_i² y²]`` (clean ``y``: for idealized label errors);
    - two rows ``b ≠ b'`` of one batch, per coordinate: ``Qxx = E[x̃_{b,i}² x̃_{b',i}²]``,
      ``Qex = E[x̃_{b,i} e_b x̃_{b',i}²]``, ``Qee = E[x̃_{b,i} e_b x̃_{b',i} e_{b'}]``,
      ``Qyy = E[x̃_{b,i} y_b x̃_{b',i} y_{b'}]`` (independent rows: ``h², 0, 0, (h ⊙ u)²``);
    - the quantized-input risk ``R_q(w) = ½‖w − u + shift_q‖²_{H^(q)} + ae`` (``shift_q ≠ 0``
      only when biased labels move ``u`` away from the best predictor ``w*^(q)``).
    """

    h: np.ndarray
    u: np.ndarray
    UA: np.ndarray
    VA: np.ndarray
    D: np.ndarray
    Gm: np.ndarray
    Ub: np.ndarray
    UAm: np.ndarray
    eta: np.ndarray
    Ge: np.ndarray
    Gy: np.ndarray
    Qxx: np.ndarray
    Qex: np.ndarray
    Qee: np.ndarray
    Qyy: np.ndarray
    ae: float
    shift_q: np.ndarray


def _col(v) -> np.ndarray:
    return np.asarray(v, np.float64).reshape(-1, 1)


def _data_moments(problem: Problem, rm: RowMoments) -> _DataMoments:
    """:class:`_DataMoments` from the row moments of the data quantizer, clean labels
    (docs/theory.md §3, §14).

    With ``t = c/h`` (so ``u = t w*``) and ``ρ_i = w*_i x_i − u_i x̃_i`` (``e = ξ + Σ ρ_j``,
    the ``ρ_j`` uncorrelated): ``E[x̃_i² ρ_j²] = h_i r_j`` for ``j ≠ i`` with
    ``r_j = w*_j²(π_C λ_j − 2π_B t_j c_j + π_A t_j² h_j)``, and ``= w*_i²(c4 − 2t b4 + t² a4)``
    for ``j = i``. Every term is formed so that full precision gives exact zeros.
    """
    lam, ws, s2 = problem.spectrum, problem.w_star, problem.noise
    h, c = rm.h, rm.c
    pa, pb, pc = rm.pi
    t = c / h  # exactly 1 without data quantization
    u = t * ws
    g = h * u  # E[x̃ y]
    r = ws * ws * (pc * lam - 2 * pb * t * c + pa * t * t * h)
    local = ws * ws * (rm.c4 - 2 * t * rm.b4 + t * t * rm.a4)
    beta = pb - pa
    W = float(np.sum(lam * ws * ws))  # ‖w*‖²_H
    return _DataMoments(
        h=h,
        u=u,
        UA=_col(pa * h),
        VA=_col(h),
        D=rm.a4 - pa * h * h,
        Gm=_col(g),
        Ub=_col(beta * h),
        UAm=_col(pa * h),
        eta=ws * (rm.b4 - t * rm.a4) - beta * h * g,
        Ge=h * (s2 + (float(np.sum(r)) - r)) + local,
        Gy=h * (s2 + pc * W) + ws * ws * (rm.c4 - pc * h * lam),
        Qxx=h * h,
        Qex=np.zeros_like(h),
        Qee=np.zeros_like(h),
        Qyy=g * g,
        ae=0.5 * float(np.sum(ws * ws * (lam - t * c))),
        shift_q=np.zeros_like(h),
    )


def _data_moments_labels(problem: Problem, rm: RowMoments, lm: LabelMoments) -> _DataMoments:
    """:class:`_DataMoments` with a number format on the labels (docs/theory.md §14): the
    general formulas in ``ℓ = E[x̃ ỹ]``, ``E[x̃_i³ ỹ]``, ``E[x̃_i² ỹ²]`` and the coupling
    ``E[x̃_i² ỹ x̃_k] = π_B κ_i f_k`` (``k ≠ i``): ``u = ℓ/h``, ``e = ỹ − ⟨u, x̃⟩``,

    ``E[x̃_i² e ⟨x̃, v⟩] = π_B κ_i ⟨f, v⟩ − π_A h_i ⟨h ⊙ u, v⟩ + η_i v_i``,
    ``E[x̃_i² e²] = E[x̃_i² ỹ²] − 2(u_i E[x̃_i³ ỹ] + π_B κ_i(⟨f, u⟩ − f_i u_i))
    + u_i² a4_i + π_A h_i(⟨h, u²⟩ − h_i u_i²)``.

    Unbiased labels: ``κ = h``, ``f = c ⊙ w* = h ⊙ u`` (one direction). The quantized-input
    risk is evaluated at the best predictor on clean labels, ``(c/h) ⊙ w*``.
    """
    lam, ws = problem.spectrum, problem.w_star
    h, pa, pb = rm.h, rm.pi[0], rm.pi[1]
    u = lm.ell / h
    g = h * u
    t = rm.c / h
    if lm.coef is None:
        kappa, f = h, g
        Gm, Ub, UAm = _col(g), _col((pb - pa) * h), _col(pa * h)
    else:
        kappa, f = lm.coef, lm.dirn
        Gm, Ub = np.stack([f, g], axis=1), np.stack([pb * kappa, -pa * h], axis=1)
        UAm = np.stack([np.zeros_like(h), pa * h], axis=1)
    cross = pb * kappa * (float(f @ u) - f * u)
    zero = np.zeros_like(h)
    return _DataMoments(
        h=h,
        u=u,
        UA=_col(pa * h),
        VA=_col(h),
        D=rm.a4 - pa * h * h,
        Gm=Gm,
        Ub=Ub,
        UAm=UAm,
        eta=lm.x3y - u * rm.a4 - pb * kappa * f + pa * h * g,
        Ge=lm.x2y2
        - 2 * (u * lm.x3y + cross)
        + u * u * rm.a4
        + pa * h * (float(h @ (u * u)) - h * u * u),
        Gy=zero,
        Qxx=h * h,
        Qex=zero,
        Qee=zero,
        Qyy=g * g,
        ae=0.5 * float(np.sum(ws * ws * (lam - t * rm.c))),
        shift_q=u - t * ws,
    )


def _second_moment_map(
    dm: _DataMoments, r: dict[str, ErrorMoments], lr: float, B: int, m, p, hp, sm
):
    """The noise part of ``p_{t+1}`` — all but the contraction ``(1 − 2γλ^(q)) ⊙ p_t`` — from
    ``(m_t, p_t)`` (``d × P``: ``P`` probes at once) and their functionals ``hp = VAᵀ p_t``,
    ``sm = Gmᵀ m_t`` (``R_A × P``, ``R_m × P``).

    The one place where the quantizers' moments enter (docs/theory.md §4): ``diag`` is
    ``E[x̃_i² g_b²]`` (one row of the batch), ``off`` is ``E[x̃_{b,i} x̃_{b',i} g_b g_{b'}]``
    (two distinct rows), with ``g = Q_o(Q_l(y) − Q_a(Q_d(X) Q_p(w)))``.
    """
    lab, act, par, out = r["labels"], r["activations"], r["params"], r["grads"]
    h, u, D = _col(dm.h), _col(dm.u), _col(dm.D)
    q = u * u + 2 * u * m + p  # E[w_i²]
    Aq = dm.UA @ (dm.VA.T @ (u * u) + hp) + 2 * (dm.UAm @ sm) + D * q  # E[x̃_i² ⟨x̃, w⟩²]
    row_A = dm.UA @ dm.VA.sum(0, keepdims=True).T + D  # Σ_j A_ij
    F = _col(dm.Ge) - 2 * (dm.Ub @ sm + _col(dm.eta) * m) + dm.UA @ hp + D * p
    r2 = (
        F
        + lab.mult * _col(dm.Gy)
        + act.mult * Aq
        + (1 + act.mult) * (par.add * row_A + par.mult * Aq)
        + (lab.add + act.add) * h
    )
    diag = out.add * h + (1 + out.mult) * r2
    Qxx = _col(dm.Qxx)
    off = (1 + out.rank1) * (
        _col(dm.Qee)
        - 2 * _col(dm.Qex) * m
        + Qxx * (p + act.rank1 * q + (1 + act.rank1) * (par.add + par.mult * q))
        + lab.rank1 * _col(dm.Qyy)
    )
    return lr * lr / B * (diag + (B - 1) * off)


@dataclass(frozen=True)
class _Recursion:
    """Coefficients of the affine moment recursion (see the module docstring)."""

    a: np.ndarray  # 1 − γλ^(q): the mean's contraction
    one_minus_a: np.ndarray  # γλ^(q), kept exactly (1 − γλ^(q) rounds to 1 for tiny γλ^(q))
    alpha: np.ndarray
    one_minus_alpha: np.ndarray  # 1 − α, computed without cancellation (for γλ^(q) ≪ 1)
    k: np.ndarray  # d × R_A: p' ∋ k (hᵀp)
    nu: np.ndarray
    omega: np.ndarray  # d × R_m: p' ∋ ω (gᵀm)
    c: np.ndarray
    h: np.ndarray  # d × R_A: the p-functionals (λ^(q) for a rank-one coupling)
    g: np.ndarray  # d × R_m: the m-functionals (λ^(q) ⊙ w*^(q) = H w* for unbiased data)
    m0: np.ndarray
    # R_A > 1 (estimated moments): the p-map's eigenvalues as 1 − μ_j and eigenvectors
    # (diag(α) + k hᵀ is symmetric there); empty at rank one.
    gaps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    V: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


_ITERATE_ROLES = ("params", "activations", "grads")


def _data_moments_sampled(problem: Problem, mom: dict, pairs: bool) -> _DataMoments:
    """:class:`_DataMoments` from estimated moments (:mod:`~qlinreg.theory.sampled_moments`):
    full ``d × d`` couplings, ``A`` and ``E[x̃_i² e x̃_k] = M_ik − u_k A_ik`` (``Gm = I``), and,
    for rows coupled by a scale, the two-row moments ``Qex = Pxy − u Pxx``,
    ``Qee = Pyy − 2u Pxy + u² Pxx``."""
    lam, ws = problem.spectrum, problem.w_star
    h, c, A, M = mom["h"], mom["c"], mom["A"], mom["M"]
    u = mom["ell"] / h
    D = np.diag(A).copy()
    A_off = A - np.diag(D)
    Bm = M - A * u[None, :]
    eta = np.diag(Bm).copy()
    t = c / h
    if pairs:
        Qxx, Pxy = mom["Pxx"], mom["Pxy"]
        Qex, Qee, Qyy = Pxy - u * Qxx, mom["Pyy"] - 2 * u * Pxy + u * u * Qxx, mom["Pcl"]
    else:
        Qxx, Qex, Qee, Qyy = h * h, np.zeros_like(h), np.zeros_like(h), (c * ws) ** 2
    return _DataMoments(
        h=h,
        u=u,
        UA=A_off,
        VA=np.eye(problem.d),
        D=D,
        Gm=np.eye(problem.d),
        Ub=Bm - np.diag(eta),
        UAm=A_off * u[None, :],
        eta=eta,
        Ge=mom["gy"] - 2 * M @ u + A @ (u * u),
        Gy=mom["gyc"],
        Qxx=Qxx,
        Qex=Qex,
        Qee=Qee,
        Qyy=Qyy,
        ae=0.5 * float(np.sum(ws * ws * (lam - t * c))),
        shift_q=u - t * ws,
    )


@dataclass(frozen=True)
class _Plan:
    """The moments the recursion reads: exact, or estimated with jackknife replicas (the
    estimates without one group of rows each)."""

    dm: _DataMoments | None
    r: dict[str, ErrorMoments]
    replicas: tuple[_DataMoments, ...] = ()

    @property
    def moments(self) -> str:
        return "estimated" if self.replicas else "exact"


def _exact_moments(problem: Problem, scheme: Scheme) -> _DataMoments | None:
    """Exact moments (closed form, quadrature) of the data and label quantizers, or ``None``
    when they have none: a shared scale, or biased data and biased labels together."""
    data, labels = scheme.data, scheme.labels
    if not exact_data_quantizer(data):
        return None
    rm = row_moments(data, problem.spectrum)
    if not isinstance(labels, NumberFormat):
        return _data_moments(problem, rm)
    if scalar_grid(labels) is None:
        return None
    try:
        return _data_moments_labels(problem, rm, label_moments(problem, data, labels))
    except BiasedPairError:
        return None


def has_exact_moments(problem: Problem, scheme: Scheme) -> bool:
    """Whether the data and label quantizers of ``scheme`` on the diagonal ``problem`` have
    exact moments (closed form, quadrature): no sampling, no standard error."""
    return _exact_moments(problem, scheme) is not None


def _moment_plan(
    problem: Problem,
    scheme: Scheme,
    batch: int,
    *,
    samples: int,
    seed: int,
    check_only: bool = False,
) -> _Plan:
    """Where the recursion's moments come from (docs/theory.md §14): exact for idealized
    quantizers and elementwise formats with a fixed grid, estimated from ``samples`` sampled
    rows (:mod:`~qlinreg.theory.sampled_moments`) for shared scales; a ``ValueError`` naming a
    role the recursion cannot take. ``check_only``: validate, draw nothing."""
    for role in _ITERATE_ROLES:
        q = getattr(scheme, role)
        if isinstance(q, NumberFormat):
            raise ValueError(
                f"exact risk: {role}={q.label}: a number format on {role} has an error that "
                f"depends on the iterate, so its risk is Monte Carlo only (qlinreg.simulate); "
                f"the surrogate option (surrogate=True, --surrogate) replaces it by an idealized "
                f"model, an approximation"
            )
    for role in ("data", "labels"):
        q = getattr(scheme, role)
        if getattr(q, "scaling", None) == "delayed":
            raise ValueError(
                f"exact risk: {role}={q.label}: delayed scaling takes its scale from the amax of "
                f"the previous steps, so consecutive steps' quantized samples are dependent and "
                f"the recursion does not apply; simulate it, give the format a scale of its own "
                f"(e.g. ':vector', ':tensor', INT ':scale=X'), or use the surrogate option"
            )
    r = {
        role: ErrorMoments() if isinstance(q, NumberFormat) else error_moments(q, role)
        for role, q in scheme.items()
        if role != "data"
    }
    dm = _exact_moments(problem, scheme)
    if dm is not None:
        return _Plan(dm, r)
    if problem.d > SAMPLED_MAX_DIM:
        raise ValueError(
            f"exact risk: {scheme.describe()}: a shared scale (or biased data and labels) needs "
            f"moments estimated as d × d matrices, for d ≤ {SAMPLED_MAX_DIM}; d = {problem.d}: "
            f"simulate it, or use the surrogate option"
        )
    data = scheme.data
    if not isinstance(data, NumberFormat):  # unknown: no sign symmetry to rely on
        error_moments(data, "data")  # its TypeError names what the theory takes
    if isinstance(data, IntFormat) and not (data.signed and data.symmetric):
        raise ValueError(
            f"exact risk: data={data.label}: the exact theory needs a grid symmetric about 0 "
            f"(Q(−x) = −Q(x)); use a signed, symmetric INT format, or simulate this one"
        )
    if check_only:
        return _Plan(None, r)
    dm, replicas = _sampled_plan(problem, scheme.data, scheme.labels, batch, samples, seed)
    return _Plan(dm, r, replicas)


@functools.lru_cache(maxsize=32)
def _sampled_plan(problem: Problem, data, labels, batch: int, samples: int, seed: int):
    """The data moments of the estimated route and their jackknife replicas, cached per
    (problem, data and label quantizers, B, samples, seed): the other roles' quantizers do not
    enter them, so a search over those reuses one estimate (the cache holds its arguments, so an
    identity-hashed problem stays the same object)."""
    sm = sample_moments(problem, data, labels, batch, samples=samples, seed=seed)
    dm = _data_moments_sampled(problem, sm.moments(), sm.pairs)
    replicas = tuple(_data_moments_sampled(problem, sm.moments(g), sm.pairs) for g in range(GROUPS))
    return dm, replicas


def _recursion(problem: Problem, scheme: Scheme, sgd: SGDConfig) -> tuple[_Recursion, _DataMoments]:
    """The recursion of one constant step size, and the data moments it was built from."""
    plan = _moment_plan(problem, scheme, sgd.batch, samples=DEFAULT_SAMPLES, seed=0)
    return _recursion_of(problem, plan.r, plan.dm, sgd), plan.dm


def _recursion_of(
    problem: Problem, r: dict[str, ErrorMoments], dm: _DataMoments, sgd: SGDConfig
) -> _Recursion:
    d, RA, Rm = problem.d, dm.VA.shape[1], dm.Gm.shape[1]
    # The map is affine in (m, p, hp, sm) and elementwise in (m, p): probing recovers it, all
    # probes at once (columns): 0, p = 1, m = 1, then each unit hp and each unit sm.
    P = 3 + RA + Rm
    m, p = np.zeros((d, P)), np.zeros((d, P))
    hp, sm = np.zeros((RA, P)), np.zeros((Rm, P))
    p[:, 1], m[:, 2] = 1.0, 1.0
    hp[:, 3 : 3 + RA] = np.eye(RA)
    sm[:, 3 + RA :] = np.eye(Rm)
    out = _second_moment_map(dm, r, sgd.lr, sgd.batch, m, p, hp, sm)
    c = out[:, 0]
    noise = out[:, 1] - c
    k = out[:, 3 : 3 + RA] - c[:, None]
    one_minus_alpha = 2 * sgd.lr * dm.h - noise
    gaps, V = np.zeros(0), np.zeros((0, 0))
    if RA > 1:  # I − diag(α) − k hᵀ, symmetric: its eigenvalues are the gaps 1 − μ directly
        K = k @ dm.VA.T
        gaps, V = np.linalg.eigh(np.diag(one_minus_alpha) - 0.5 * (K + K.T))
    return _Recursion(
        a=1 - sgd.lr * dm.h,
        one_minus_a=sgd.lr * dm.h,
        alpha=(1 - 2 * sgd.lr * dm.h) + noise,
        one_minus_alpha=one_minus_alpha,
        k=k,
        nu=out[:, 2] - c,
        omega=out[:, 3 + RA :] - c[:, None],
        c=c,
        h=dm.VA,
        g=dm.Gm,
        m0=sgd.initial(problem.d) - dm.u,
        gaps=gaps,
        V=V,
    )


def _radius(rec: _Recursion) -> float:
    """Spectral radius of the recursion: ``max |1 − γλ^(q)_i|`` and that of the ``p``-map
    ``diag(α) + k hᵀ``.

    Rank one (``k, h ≥ 0``): its eigenvalues interlace with ``α``; the smallest is ≥ min α,
    the largest is the root above max α of ``Σ_i k_i h_i / (x − α_i) = 1``. Higher rank (a
    moment-estimated coupling, symmetric): its eigenvalues ``1 − gaps``.
    """
    alpha, mean = rec.alpha, float(np.abs(rec.a).max())
    if rec.gaps.size:
        return max(float(np.abs(1 - rec.gaps).max()), mean)
    kh = rec.k[:, 0] * rec.h[:, 0]
    top, total = float(alpha.max()), float(kh.sum())
    gap = top - alpha  # ≥ 0, exact where α_i = max α

    def secular(t: float) -> float:  # at x = max α + t: decreasing in t > 0, ≤ 0 at t = Σ kh
        return float(np.sum(kh / (gap + t))) - 1.0

    root = top
    if total > 0:
        lo = total * 2.0**-60
        if secular(lo) > 0:
            root = top + brentq(secular, lo, total, xtol=1e-300, rtol=4 * np.finfo(float).eps)
        else:  # the root lies within 2^-60·Σ kh of max α
            root = top + lo
    return max(root, abs(float(alpha.min())), mean)


def _is_stable(rec: _Recursion) -> bool:
    """Whether every eigenvalue of the recursion lies in (−1, 1), decided on the gaps ``γλ``,
    ``1 − α`` (which float64 keeps when ``1 − γλ`` rounds to 1): the mean needs
    ``0 < γλ^(q) < 2``; a rank-one ``diag(α) + k hᵀ`` (eigenvalues interlacing ``α``, the top
    one the root of ``Σ kh/(x − α) = 1`` above ``max α``) needs ``α > −1``, ``1 − α > 0`` and
    ``Σ k_i h_i/(1 − α_i) < 1`` (the secular function is below 1 at ``x = 1``); a higher rank
    needs its spectral radius below 1."""
    if np.any(rec.one_minus_a <= 0) or np.any(rec.one_minus_a >= 2):
        return False
    if rec.gaps.size:
        return bool(np.all(rec.gaps > 0) and np.all(rec.gaps < 2))
    if np.any(rec.one_minus_alpha <= 0) or np.any(rec.alpha <= -1):
        return False
    return bool(np.sum(rec.k[:, 0] * rec.h[:, 0] / rec.one_minus_alpha) < 1)


def second_moment_radius(problem: Problem, scheme: Scheme | None, sgd: SGDConfig) -> float:
    """Spectral radius of the second-moment recursion: the expected risk stays bounded in ``N``
    iff it is < 1 (it includes the mean's contraction ``max |1 − γλ^(q)_i|``)."""
    scheme = Scheme() if scheme is None else scheme
    if not in_eigenbasis(problem, scheme):
        raise ValueError("second_moment_radius is for problems in their eigenbasis")
    return _radius(_recursion(problem.eigen(), scheme, sgd)[0])


def low_rank(k, h, x):
    """``k (hᵀ x)`` for ``d × R`` factors (a sum of products when ``R = 1``); NumPy or JAX."""
    if k.shape[1] == 1:
        return k[:, 0] * (h[:, 0] * x).sum()
    return k @ (h.T @ x)


@jax.jit
def _advance(X, C, L, n):
    """``n`` steps of the recursion on ``X = [m_t, p_t, S_t, U_t]`` (a ``4×d`` array), with, per
    coordinate, ``S_t = E[(Σ_{s<t} v_s)²]`` and ``U_t = Σ_{s<t} E[v_t v_s] = Σ_{s<t} a^{t−s} p_s``.

    ``C`` stacks ``a, α, ν, c``, ``L`` holds the low-rank factors ``k, h, ω, g``. One stacked
    state is ~2× faster on CPU than a tuple of vectors (fewer buffers per loop iteration).
    """
    a, alpha, nu, c = C
    k, h, omega, g = L

    def body(_, X):
        m, p, S, U = X
        new_p = alpha * p + low_rank(k, h, p) + nu * m + low_rank(omega, g, m) + c
        return jnp.stack([a * m, new_p, S + p + 2 * U, a * (U + p)])

    return jax.lax.fori_loop(0, n, body, X)


def _geometric_sum(gh: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``Σ_{k<L} (1 − gh)^k = (1 − (1 − gh)^L)/gh``, stable for small ``gh = γλ^(q)``."""
    small = gh < 0.5
    safe = np.where(small, gh, 0.25)
    via_log = -np.expm1(L * np.log1p(-safe)) / safe
    direct = (1 - np.power(1 - gh, L)) / gh
    return np.where(small, via_log, direct)


@dataclass(frozen=True, eq=False)
class ExactResult:
    """Exact expected excess risk at each checkpoint, for the three iterate choices.

    Attributes:
        steps: checkpoint steps ``n`` (ascending).
        risk: ``{"polyak" | "tail" | "last": E[R_q]}``, quantized-input risk (paper's convention).
        risk_clean: same keys, clean-input risk ``E ½‖w − w*‖²_H``.
        average: the iterate chosen in the :class:`SGDConfig` (``exact_risk`` columns).
        radius: spectral radius of the second-moment recursion (< 1: bounded as ``N → ∞``;
            it rounds to 1 in float64 when ``γλ^(q)_min < 10⁻¹⁶``).
        stable: whether the recursion is stable (decided without that rounding).
        config: the run's parameters, flat, keyed as in :class:`qlinreg.SimResult`.
        moments: where the data and label moments come from: ``exact`` (closed form or
            quadrature), ``estimated`` (from sampled rows: :attr:`risk_se` is the risk's
            standard error) or ``surrogate`` (number formats replaced by idealized models).
        risk_se, risk_clean_se: standard errors of ``risk``, ``risk_clean`` from the moments'
            sampling error (0 when ``exact``; NaN for a surrogate, whose error is a model error;
            inf when an estimated recursion is unstable: its replicas are not computed).
    """

    steps: np.ndarray
    risk: dict[str, np.ndarray]
    risk_clean: dict[str, np.ndarray]
    average: str
    radius: float
    config: dict = field(default_factory=dict)

    stable: bool = True
    moments: str = "exact"
    risk_se: dict[str, np.ndarray] | None = None
    risk_clean_se: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        fill = 0.0 if self.moments == "exact" else np.nan
        for name in ("risk_se", "risk_clean_se"):
            if getattr(self, name) is None:
                se = {avg: np.full(len(self.steps), fill) for avg in AVERAGES}
                object.__setattr__(self, name, se)

    @property
    def exact_risk(self) -> np.ndarray:
        return self.risk[self.average]

    @property
    def exact_risk_clean(self) -> np.ndarray:
        return self.risk_clean[self.average]

    def to_frame(self) -> pd.DataFrame:
        """One row per checkpoint: ``step, exact_risk, exact_risk_clean`` (chosen average),
        their standard errors ``exact_risk_se, exact_risk_clean_se``,
        ``exact_risk_{polyak,tail,last}`` and ``exact_risk_clean_{…}``, ``exact_moments``,
        ``stable``, then the config."""
        cols = {"step": self.steps, "exact_risk": self.exact_risk}
        cols["exact_risk_clean"] = self.exact_risk_clean
        cols["exact_risk_se"] = self.risk_se[self.average]
        cols["exact_risk_clean_se"] = self.risk_clean_se[self.average]
        for avg in AVERAGES:
            cols[f"exact_risk_{avg}"] = self.risk[avg]
            cols[f"exact_risk_clean_{avg}"] = self.risk_clean[avg]
        df = pd.DataFrame(cols)
        df["exact_moments"] = self.moments
        df["stable"] = self.stable
        for k, v in self.config.items():
            df[k] = v
        return df


_STEPPED = 64  # the first steps of each segment are stepped (the contour needs τ ≥ N_NODES)
_MAX_STEPPED_WORK = 2 * 10**10  # steps × d beyond which stepping (unstable runs) is refused
METHODS = ("auto", "closed", "step")


def _coefficients(rec: _Recursion) -> Coefficients:
    return Coefficients(
        a=rec.a, one_minus_a=rec.one_minus_a, alpha=rec.alpha, one_minus_alpha=rec.one_minus_alpha,
        k=rec.k, nu=rec.nu, omega=rec.omega, c=rec.c, h=rec.h, g=rec.g, gaps=rec.gaps, V=rec.V,
    )  # fmt: skip


def _products(segs, lo: int, hi: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, over transitions ``lo … hi−1``: ``Π_j a_j`` and ``Σ_{t=lo}^{hi−1}
    Π_{j=lo}^{t−1} a_j`` (the mean's contraction over a schedule), from per-segment geometric
    sums (no division by a product that may underflow)."""
    prod, total = np.ones(d), np.zeros(d)
    for T0, T1, rec in segs:
        L = min(hi, T1) - max(lo, T0)
        if L <= 0:
            continue
        total = total + prod * _geometric_sum(rec.one_minus_a, np.float64(L))
        prod = prod * np.power(rec.a, np.float64(L))
    return prod, total


def _moments(segs, record: np.ndarray, weights, d: int, m0: np.ndarray, method: str):
    """``W @ (p_τ, U_τ, S_τ)`` at every record time ``τ`` (``weights(τ)`` gives ``W``):
    stepped (O(τ·d)) or, past the first :data:`_STEPPED` steps of a segment, in closed form
    from the segment's start state (:func:`~qlinreg.theory.closed_form.contour_moments`)."""
    out = {}
    m, p, S, U = m0, m0 * m0, np.zeros(d), np.zeros(d)
    for T0, T1, rec in segs:
        C = _coefficients(rec)
        Cs = np.stack([rec.a, rec.alpha, rec.nu, rec.c])
        Ls = (rec.k, rec.h, rec.omega, rec.g)
        negative = bool(rec.a.min() < 0 or rec.alpha.min() < 0 or np.any(rec.gaps > 1))
        inside = [int(t) for t in record if T0 < t <= T1]
        X, t = jnp.asarray(np.stack([m, p, S, U])), T0
        stepped = inside if method == "step" else [n for n in inside if n - T0 <= _STEPPED]
        for n in stepped:
            X = _advance(X, Cs, Ls, np.int64(n - t))
            t = n
            W = weights(n)
            vec = np.asarray(X)[[1, 3, 2]]  # p, U, S
            out[n] = vec @ W.T
        later = inside[len(stepped) :]
        if later:
            Ws = [weights(n) for n in later]
            rows = max(len(W) for W in Ws)
            padded = np.stack([np.pad(W, ((0, rows - len(W)), (0, 0))) for W in Ws])
            taus = np.array(later) - T0
            res = contour_functionals(taus, C, m, p, padded, negative)
            for n, tau, W, r in zip(later, taus, Ws, res, strict=True):
                r = r[:, : len(W)].copy()
                geom = _geometric_sum(rec.one_minus_a, np.float64(tau))
                r[1] += W @ (np.power(rec.a, np.float64(tau)) * U)
                r[2] += W @ (S + 2 * U * geom)
                out[n] = r
        if T1 == segs[-1][1]:
            break
        L = T1 - T0
        if method == "step" or L <= _STEPPED:
            X = _advance(X, Cs, Ls, np.int64(T1 - t))
            m, p, S, U = np.asarray(X)
        else:
            _, vec = contour_moments(L, C, m, p, np.zeros((1, d)), negative, vectors=True)
            aL = np.power(rec.a, np.float64(L))
            geom = _geometric_sum(rec.one_minus_a, np.float64(L))
            m, p, S, U = aL * m, vec[0], S + 2 * U * geom + vec[2], aL * U + vec[1]
    return out


def _segments(problem: Problem, dm: _DataMoments, r, sgd: SGDConfig, method: str = "auto"):
    """The recursion of each constant-step segment, its radius and stability; ``ValueError``
    when the requested computation cannot be done (closed form of an unstable run, or an
    unstable run too long to step)."""
    segs = [
        (T0, T1, _recursion_of(problem, r, dm, sgd.with_lr(lr))) for T0, T1, lr in sgd.segments()
    ]
    radius = max(_radius(rec) for *_, rec in segs)
    stable = all(_is_stable(rec) for *_, rec in segs)
    if not stable and method == "closed":
        raise ValueError(
            f"method 'closed' needs a stable recursion; its spectral radius is {radius:.6g}"
        )
    if not stable and sgd.steps * problem.d > _MAX_STEPPED_WORK:
        raise ValueError(
            f"the second-moment recursion is unstable (spectral radius {radius:.6g} ≥ 1): its "
            f"exact risk grows geometrically and would need N·d = {sgd.steps * problem.d:.3g} "
            f"steps of stepping; lower the step size γ = {sgd.lr:g}"
        )
    return segs, radius, stable


_MAX_DENSE_WORK = 2 * 10**12  # N·d³ beyond which the full-matrix recursion is refused


def in_eigenbasis(problem: Problem, scheme: Scheme) -> bool:
    """Whether the exact risk of ``problem`` can be computed in the eigenbasis of ``H``: a
    diagonal problem, or data and parameter quantizers that commute with rotations (the
    labels, activations and output gradients are scalars per sample, basis-free). Then the
    update of ``Uᵀw`` is the update of a diagonal problem with ``Uᵀw*``, in law."""
    return problem.diagonal or (
        rotation_invariant(scheme.data) and rotation_invariant(scheme.params)
    )


def _closed_is_cheaper(segs, sgd: SGDConfig, ckpts, d: int) -> bool:
    """Closed form (O(d) per contour node at rank one; O(d²) with an eigenbasis at a higher
    rank, the cost of one step): the closed form at rank one, else whichever costs less."""
    R = max(rec.k.shape[1] for *_, rec in segs)
    nodes = 24 * (2 * len(ckpts) + len(segs))
    return R == 1 or nodes < sgd.steps


def _check_dense(problem: Problem, scheme: Scheme, sgd: SGDConfig, method: str) -> None:
    from qlinreg.theory.dense import DENSE_MAX_DIM

    for role in ("data", "params"):
        q = getattr(scheme, role)
        if isinstance(q, NumberFormat):
            raise ValueError(
                f"exact risk: {role}={q.label} with a full covariance: a number format acts on "
                f"correlated coordinates, which the exact recursion does not cover; simulate "
                f"it, or use the surrogate option (surrogate=True, --surrogate: an idealized model)"
            )
    why = "elementwise quantization in the data's coordinates needs the full-matrix recursion"
    if problem.d > DENSE_MAX_DIM:
        raise ValueError(
            f"no exact risk for d = {problem.d} > {DENSE_MAX_DIM} with a full covariance: {why} "
            f"(O(N·d³)); simulate it, or use a rotation-invariant quantizer"
        )
    if method == "closed":
        raise ValueError(f"method 'closed' is not available here: {why}; use 'step' or 'auto'")
    work = sgd.steps * problem.d**3
    if work > _MAX_DENSE_WORK:
        raise ValueError(
            f"the exact risk would need N·d³ = {work:.3g} multiply-adds ({why}; limit "
            f"{_MAX_DENSE_WORK:.0e}): lower steps (N) or d, or simulate it"
        )


def check_exact(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    *,
    surrogate: bool = False,
    seed: int = 0,
) -> None:
    """Raise the ``ValueError`` :func:`exact_risk` would, without computing it (O(d), plus the
    formats' exact moments or surrogates, which are cached; estimated moments are not drawn)."""
    scheme = check_run(problem, scheme, sgd)
    if surrogate:
        from qlinreg.theory.surrogates import surrogate_scheme

        scheme = surrogate_scheme(problem, scheme, sgd.batch, seed=seed)
    if not in_eigenbasis(problem, scheme):
        _check_dense(problem, scheme, sgd, "auto")
        return
    problem = problem.eigen()
    plan = _moment_plan(problem, scheme, sgd.batch, samples=1, seed=seed, check_only=True)
    if plan.dm is not None:
        _segments(problem, plan.dm, plan.r, sgd)


def _dense_exact(problem, scheme, sgd, ckpts, method) -> ExactResult:
    from qlinreg.theory.dense import dense_exact_risk

    _check_dense(problem, scheme, sgd, method)
    risk, risk_clean, radius, stable = dense_exact_risk(
        problem.covariance, problem.w_star, problem.noise, scheme, sgd, ckpts
    )
    if not stable:
        warnings.warn(
            f"the second-moment recursion looks unstable (estimated spectral radius "
            f"{radius:.4g} ≥ 1): the expected risk grows with N; lower the step size",
            RuntimeWarning,
            stacklevel=3,
        )
    config = run_config(problem, scheme, sgd)
    return ExactResult(ckpts, risk, risk_clean, sgd.average, radius, config, stable)


def exact_risk(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    checkpoints: Sequence[int] | None = None,
    *,
    method: str = "auto",
    surrogate: bool = False,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> ExactResult:
    """Exact ``E[excess risk]`` of quantized SGD (SPEC §2), both conventions, no sampling.

    Valid for Gaussian features and the idealized quantizers (:class:`NoQuant`,
    :class:`Additive`, :class:`Multiplicative`, :class:`MultiplicativeElementwise`, either
    noise law) on any roles, any batch size, and a constant or piecewise-constant step size
    (``sgd.schedule``). Number formats on the data of a diagonal problem are exact when they
    round each entry on a fixed grid (FP without scaling, INT with a fixed scale; any rounding:
    docs/theory.md §14). Formats on parameters, activations or output gradients are Monte
    Carlo only (``ValueError``) unless ``surrogate``. A full covariance is computed in its
    eigenbasis when the data and parameter quantizers commute with rotations
    (:func:`in_eigenbasis`); otherwise
    (elementwise quantization in the data's coordinates) by the full-matrix recursion of
    :mod:`qlinreg.theory.dense` (``d ≤ 512``, O(N·d³), stepped). A problem carrying data rows
    gets the risk of its Gaussian model (same ``H``, ``w*``, ``σ²``).

    Args:
        problem: the statistical model.
        scheme: quantizer per role (``None``: full precision).
        sgd: step size(s), steps, batch size, averaging (selects ``exact_risk``), ``w_0``.
        checkpoints: steps at which to report (default: ~10 per decade, always ``N``).
        method: ``"closed"``: the closed form of :mod:`~qlinreg.theory.closed_form`, O(d) per
            checkpoint and segment whatever ``N`` (needs a stable recursion); ``"step"``: the
            O(N·d) stepping of the recursion (the reference); ``"auto"`` (default): closed
            form when stable, stepping otherwise.
        surrogate: replace every number format by its idealized surrogate, one ε fitted to
            its measured error energy (:func:`~qlinreg.theory.surrogates.surrogate_scheme`,
            with ``seed``): the approximation that exact moments replace, kept for comparison.
        samples: rows sampled to estimate the moments of a shared-scale format (per-vector or
            per-block INT, per-tensor scaling, MX; or biased data with biased labels):
            :mod:`~qlinreg.theory.sampled_moments`. The result is then ``moments =
            "estimated"``, with the risk's standard error from the moments' sampling error.
        seed: seed of those samples, and of the samples the surrogates are measured on.

    Returns:
        An :class:`ExactResult` holding the Polyak, tail-averaged and last-iterate risks. If the
        recursion is unstable (``radius ≥ 1``) the values are still exact expectations, which
        grow geometrically (``inf`` once they overflow); a ``RuntimeWarning`` says so.
    """
    scheme = check_run(problem, scheme, sgd)
    ckpts = check_checkpoints(checkpoints, sgd.steps)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(surrogate, bool):
        raise ValueError(f"surrogate must be True or False, got {surrogate!r}")
    samples = positive_int("samples", samples, low=GROUPS)
    if surrogate:
        from qlinreg.theory.surrogates import surrogate_scheme

        ideal = surrogate_scheme(problem, scheme, sgd.batch, seed=seed)
        res = exact_risk(problem, ideal, sgd, ckpts, method=method)
        config = {**run_config(problem, scheme, sgd), "surrogate": ideal.describe()}
        return replace(res, config=config, moments="surrogate", risk_se=None, risk_clean_se=None)
    if not problem.diagonal or problem.samples is not None:
        if not in_eigenbasis(problem, scheme):
            return _dense_exact(problem, scheme, sgd, ckpts, method)
        res = exact_risk(
            problem.eigen(), scheme, sgd, ckpts, method=method, samples=samples, seed=seed
        )
        return replace(res, config=run_config(problem, scheme, sgd))
    plan = _moment_plan(problem, scheme, sgd.batch, samples=samples, seed=seed)
    risk, risk_clean, radius, stable = _diagonal_risks(problem, plan.dm, plan.r, sgd, ckpts, method)
    se = se_clean = None
    if plan.replicas and not stable:  # a growing risk has no standard error worth its cost
        se = se_clean = {avg: np.full(len(ckpts), np.inf) for avg in AVERAGES}
    elif plan.replicas:
        reps = [_diagonal_risks(problem, dm, plan.r, sgd, ckpts, method) for dm in plan.replicas]
        se = {avg: _jackknife([rep[0][avg] for rep in reps]) for avg in AVERAGES}
        se_clean = {avg: _jackknife([rep[1][avg] for rep in reps]) for avg in AVERAGES}
    config = run_config(problem, scheme, sgd)
    if plan.replicas:
        config["moment_samples"] = samples
    return ExactResult(
        ckpts, risk, risk_clean, sgd.average, radius, config, stable, plan.moments, se, se_clean
    )


def _jackknife(values: list[np.ndarray]) -> np.ndarray:
    """Delete-one-group jackknife standard error from the ``G`` leave-one-out estimates."""
    v = np.stack(values)
    G = v.shape[0]
    return np.sqrt((G - 1) / G * np.sum((v - v.mean(0)) ** 2, axis=0))


def _diagonal_risks(problem: Problem, dm: _DataMoments, r, sgd: SGDConfig, ckpts, method: str):
    """Both risks of every average at the checkpoints from the moments ``dm``, ``r``, with the
    recursion's radius and stability (warns when unstable)."""
    d = problem.d
    segs, radius, stable = _segments(problem, dm, r, sgd, method)
    if not stable:
        warnings.warn(
            f"the second-moment recursion is unstable (spectral radius {radius:.4g} ≥ 1): the "
            f"expected risk grows geometrically with N; lower the step size γ = {sgd.lr:g}",
            RuntimeWarning,
            stacklevel=3,
        )
        method = "step"
    elif method == "auto":
        method = "closed" if _closed_is_cheaper(segs, sgd, ckpts, d) else "step"

    lam, h, m0 = problem.spectrum, dm.h, segs[0][2].m0
    starts = ckpts // 2
    tails = {}  # record time s → [(n, G(s, n)), …] for the tail cross term U_s·G
    for n, s0 in zip(ckpts, starts, strict=True):
        tails.setdefault(int(s0), []).append((int(n), _products(segs, int(s0), int(n), d)[1]))

    def weights(t: int) -> np.ndarray:
        rows = [h, lam] + [w * G for _, G in tails.get(t, []) for w in (h, lam)]
        return np.stack(rows)

    record = np.unique(np.concatenate([ckpts, starts[starts > 0]]))

    # An unstable run's values overflow to inf (reported as such below): no warnings for that.
    def quiet():
        return np.errstate(over="ignore", invalid="ignore") if not stable else nullcontext()

    with jax.enable_x64(True), quiet():
        mom = _moments(segs, record, weights, d, m0, method)
    zero = np.zeros((3, 2 + 2 * len(tails.get(0, []))))
    mom.setdefault(0, zero)

    shift, shift_q = dm.u - problem.w_star, dm.shift_q
    fixed = float(lam @ (shift * shift))
    fixed_q = float(h @ (shift_q * shift_q)) + 2 * dm.ae
    risk = {avg: np.empty(len(ckpts)) for avg in AVERAGES}
    risk_clean = {avg: np.empty(len(ckpts)) for avg in AVERAGES}
    with quiet():
        for j, (n, s0) in enumerate(zip(ckpts, starts, strict=True)):
            n, s0 = int(n), int(s0)
            L = n - s0
            P0n, G0n = _products(segs, 0, n, d)
            P0s, _ = _products(segs, 0, s0, d)
            k, G_tail = next((i, G) for i, (nn, G) in enumerate(tails[s0]) if nn == n)
            U_tail = mom[s0][1, 2 + 2 * k : 4 + 2 * k]  # ⟨(h, λ)⊙G(s0, n), U_{s0}⟩
            seconds = {
                "polyak": (mom[n][2, :2] / n**2, G0n * m0 / n),
                "tail": (
                    (mom[n][2, :2] - mom[s0][2, :2] - 2 * U_tail) / L**2,
                    P0s * G_tail * m0 / L,
                ),
                "last": (mom[n][0, :2], P0n * m0),
            }
            for avg, (second, mean) in seconds.items():
                risk[avg][j] = 0.5 * (second[0] + 2 * float(h @ (mean * shift_q)) + fixed_q)
                risk_clean[avg][j] = 0.5 * (second[1] + 2 * float(lam @ (mean * shift)) + fixed)
    for values in (*risk.values(), *risk_clean.values()):
        values[~np.isfinite(values)] = np.inf  # an unstable run that overflowed: not NaN
    return risk, risk_clean, radius, stable
