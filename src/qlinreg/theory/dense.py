"""Exact expected excess risk of quantized SGD (SPEC §2) for Gaussian features ``x ~ N(0, H)``
with a full (non-diagonal) covariance ``H``, every quantizer acting on the coordinates as given.

Elementwise multiplicative quantization does not commute with rotations, so the diagonal
recursion of :mod:`~qlinreg.theory.exact` (valid in the eigenbasis) does not apply; here the
mean ``m_t = E v_t`` and the full second moment ``P_t = E v_t v_tᵀ`` of ``v_t = w_t − u``
(``u = w*^(q) = H̃⁻¹Hw*``, ``H̃ = H^(q) = E x̃x̃ᵀ``) are stepped as ``d × d`` matrices::

    m_{t+1} = A_t m_t,      A_t = I − γ_t H̃
    P_{t+1} = P_t − γ_t(H̃P_t + P_tH̃) + (γ_t²/B)·(Dg + (B − 1)·Off)

``Dg = E[x̃x̃ᵀ g²]`` (one row of the batch) and ``Off = E[x̃_b x̃_{b'}ᵀ g_b g_{b'}]`` (two rows)
are affine in ``(m_t, P_t)``; they need the fourth-moment operators of one quantized row
(:func:`_K`, :func:`_L`, :func:`_J`). Averages follow from ``S_t = E[(Σ_{s<t}v_s)(Σ_{s<t}v_s)ᵀ]``
and ``U_t = Σ_{s<t} E[v_t v_sᵀ]``. Cost O(N·d³): a few ``d × d`` products per step, float64 (JAX
x64 inside :func:`dense_exact_risk` only). Derivation: ``docs/theory.md`` (diagonal case); the
dense operators are stated and checked in ``tests/test_dense_exact.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from qlinreg.algorithm import AVERAGES, SGDConfig, check_checkpoints
from qlinreg.quantize.idealized import ErrorMoments, error_moments
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.exact import _products
from qlinreg.theory.quantized_data import noise_matrix, rotation_invariant

__all__ = ["DENSE_MAX_DIM", "dense_H_q", "dense_exact_risk", "rotation_invariant"]

DENSE_MAX_DIM = 512  # O(d³) per step and d × d state: beyond this use the eigenbasis theory
_SYM_TOL = 1e-10  # relative asymmetry of H allowed
_POWER_ITERATIONS = 50


def dense_H_q(H: np.ndarray, q) -> np.ndarray:
    """``H̃ = H^(q) = E[Q_d(x)Q_d(x)ᵀ] = H + D`` for ``x ~ N(0, H)`` and the data quantizer ``q``
    (``TypeError`` for number formats, as :func:`~qlinreg.quantize.idealized.error_moments`)."""
    return _H_q(np.asarray(H, np.float64), error_moments(q, "data"))


def _H_q(H: np.ndarray, e: ErrorMoments) -> np.ndarray:
    """``H + D`` with the error covariance ``D = add·I + (mult − rank1)·Diag(diag H) + rank1·H``
    (:class:`~qlinreg.quantize.idealized.ErrorMoments`)."""
    return H + noise_matrix(H, e)


# ------------------------------------------------------------ fourth moments of one quantized row
# The data quantizer's family decides the operators: "gaussian" (none, additive: x̃ = x + √ε z),
# "scale" (rank-one multiplicative: x̃ = s x) and "elementwise" (x̃ = s ⊙ x), with s = 1 + √ε ζ,
# E s² = 1 + ε, E s³ = s3 = 1 + 3ε, E s⁴ = s4 = 1 + 6ε + μ4ε², c4 = (μ4 − 3)ε².

_FAMILY = {
    "none": "gaussian",
    "additive": "gaussian",
    "multiplicative": "scale",
    "multiplicative_elementwise": "elementwise",
}


def _row_constants(H: np.ndarray, e: ErrorMoments) -> dict:
    """The arrays and scalars the operators read (``Ht`` = H̃, ``h = diag H``, ``pi``: the
    factor of ``2H̃MH̃`` in ``𝒦``)."""
    eps, mu4 = e.eps, e.mu4
    s3, s4 = 1 + 3 * eps, 1 + 6 * eps + mu4 * eps * eps
    pi = s4 / (1 + eps) ** 2 if e.kind == "multiplicative" else 1.0
    return {
        "H": H, "Ht": _H_q(H, e), "h": np.diag(H).copy(), "eps": eps, "c4": (mu4 - 3) * eps * eps,
        "s3": s3, "s4": s4, "pi": pi,
    }  # fmt: skip


def _K_rest(family: str, c: dict, M):
    """``𝒦(M) − 2π·H̃MH̃`` with ``𝒦(M) = E[x̃x̃ᵀ (x̃ᵀMx̃)]`` (``M`` symmetric)."""
    Ht = c["Ht"]
    dM = jnp.diag(M)
    if family == "gaussian":  # 2H̃MH̃ + tr(H̃M)H̃ + c4·Diag(diag M)
        return jnp.sum(Ht * M) * Ht + c["c4"] * jnp.diag(dM)
    if family == "scale":  # s4·(2HMH + tr(HM)H) = π·(2H̃MH̃ + tr(H̃M)H̃)
        return c["pi"] * jnp.sum(Ht * M) * Ht
    # elementwise: 𝒦 = 2·T1 + T2 (conditioning on s, then Isserlis; see the tests), where
    # T1 = H̃MH̃ + ε[Diag(diag HM)H + H·Diag(diag HM) + Diag(diag HMH) + H·Diag(diag M)·H]
    #      + ε²[(H∘H)∘M + Diag((H∘H)·diag M)] + c4·Diag(h² ∘ diag M)
    H, h, e, c4 = c["H"], c["h"], c["eps"], c["c4"]
    HM = H @ M
    dHM = jnp.sum(H * M, axis=1)  # diag(HM), M symmetric
    dHMH = jnp.sum(HM * H, axis=1)  # diag(HMH)
    HdH = (H * dM[None, :]) @ H  # H·Diag(diag M)·H
    H2 = H * H
    trHM, hdM = jnp.sum(H * M), h @ dM
    corner = c4 * jnp.diag(h * h * dM)
    t1 = (
        e * (dHM[:, None] * H + H * dHM[None, :] + jnp.diag(dHMH) + HdH)
        + e * e * (H2 * M + jnp.diag(H2 @ dM))
        + corner
    )
    t2 = (
        trHM * H
        + e * (trHM * jnp.diag(h) + 2 * dHM[:, None] * H + 2 * H * dHM[None, :] + hdM * H)
        + e * e * (hdM * jnp.diag(h) + 2 * H2 * M)
        + corner
    )
    return 2 * t1 + t2


def _K(family: str, c: dict, M):
    """``𝒦(M) = E[x̃x̃ᵀ (x̃ᵀMx̃)]`` for symmetric ``M``."""
    Ht = c["Ht"]
    return 2 * c["pi"] * (Ht @ M @ Ht) + _K_rest(family, c, M)


def _L(family: str, c: dict, a, b):
    """``ℒ(a, b) = E[x̃x̃ᵀ (xᵀa)(x̃ᵀb)]`` (``x`` clean, ``x̃ = Q_d(x)``)."""
    H, Ht = c["H"], c["Ht"]
    Ha, Hb = H @ a, H @ b
    aHb = a @ Hb
    if family == "gaussian":
        Htb = Ht @ b
        return aHb * Ht + jnp.outer(Ha, Htb) + jnp.outer(Htb, Ha)
    if family == "scale":
        return c["s3"] * (aHb * H + jnp.outer(Ha, Hb) + jnp.outer(Hb, Ha))
    h, e = c["h"], c["eps"]
    cab = Ha * b
    A = aHb * (H + e * jnp.diag(h)) + e * H * (cab[:, None] + cab[None, :])
    B = jnp.outer(Ha, Hb) + e * (jnp.diag(Ha * Hb) + cab[:, None] * H + jnp.outer(Ha, h * b))
    return A + B + B.T


def _J(family: str, c: dict, a):
    """``𝒥(a) = E[x̃x̃ᵀ (xᵀa)²]``."""
    H, Ht = c["H"], c["Ht"]
    Ha = H @ a
    aHa = a @ Ha
    if family == "gaussian":
        return aHa * Ht + 2 * jnp.outer(Ha, Ha)
    if family == "scale":
        return (1 + c["eps"]) * (aHa * H + 2 * jnp.outer(Ha, Ha))
    return aHa * Ht + 2 * (jnp.outer(Ha, Ha) + c["eps"] * jnp.diag(Ha * Ha))


# ----------------------------------------------------------------------- the moment recursion


def _coefficients(H, w_star, noise: float, r: dict[str, ErrorMoments], batch: int) -> dict:
    """Everything one step reads, as arrays and scalars (a JAX pytree: a new ε, γ or σ² does
    not recompile). ``const`` is the part of ``Dg`` that does not depend on ``(m, P)``."""
    lab, act, par, out = r["labels"], r["activations"], r["params"], r["grads"]
    c = _row_constants(H, r["data"])
    family = _FAMILY[r["data"].kind]
    u = np.linalg.solve(c["Ht"], H @ w_star)
    cj = {k: jnp.asarray(v) for k, v in c.items()}
    Ht = c["Ht"]
    inner = (
        (noise * (1 + lab.mult) + lab.add + act.add) * Ht
        + (1 + lab.mult) * np.asarray(_J(family, cj, jnp.asarray(w_star)))
        - 2 * np.asarray(_L(family, cj, jnp.asarray(w_star), jnp.asarray(u)))
    )
    c.update(
        w_star=w_star, u=u, uu=np.outer(u, u), lr=0.0, batch=float(batch),
        p_add=par.add, p_diag=par.mult - par.rank1, p_r1=par.rank1,
        k_act=1 + act.mult, o_mult1=1 + out.mult,
        y_K=2 * c["pi"] * (1 + out.mult), y_off=(batch - 1) * (1 + out.rank1),
        l_r1=lab.rank1, a_r1=act.rank1,
        const=out.add * Ht + (1 + out.mult) * inner,
    )  # fmt: skip
    return c


def _homogeneous(c: dict) -> dict:
    """The coefficients of the linear part of the ``P`` map (no ``u``, no constant terms)."""
    d = c["h"].shape[0]
    return {**c, "u": np.zeros(d), "uu": np.zeros((d, d)), "p_add": 0.0, "const": 0 * c["const"]}


def _p_update(family: str, c: dict, m, P):
    """``P_{t+1}`` from ``(m_t, P_t)``, with ``W = E wwᵀ``, ``Π = E[(Q_p(w) − w)(·)ᵀ]`` and::

        Dg  = out.add·H̃ + (1 + out.mult)·[σ²(1 + lab.mult)H̃ + (1 + lab.mult)𝒥(w*)
              − 2ℒ(w*, u + m) + (1 + act.mult)𝒦(W + Π) + (lab.add + act.add)H̃]
        Off = (1 + out.rank1)·H̃(P + Π + lab.rank1·uuᵀ + act.rank1·(W + Π))H̃

    The two ``H̃·H̃`` sandwiches (the ``2π H̃MH̃`` of ``𝒦`` and ``Off``) share two products.
    """
    Ht, u = c["Ht"], c["u"]
    um = jnp.outer(u, m)
    W = c["uu"] + um + um.T + P
    Pi = c["p_add"] * jnp.eye(P.shape[0]) + c["p_diag"] * jnp.diag(jnp.diag(W)) + c["p_r1"] * W
    MK = c["k_act"] * (W + Pi)
    Xoff = P + Pi + c["l_r1"] * c["uu"] + c["a_r1"] * (W + Pi)
    Z = Ht @ ((c["y_K"] * MK + c["y_off"] * Xoff) @ Ht)
    rest = _K_rest(family, c, MK) - 2 * _L(family, c, c["w_star"], m)
    noise = 0.5 * (Z + Z.T) + c["o_mult1"] * rest + c["const"]
    HtP = Ht @ P
    lr = c["lr"]
    return P - lr * (HtP + HtP.T) + (lr * lr / c["batch"]) * noise


@partial(jax.jit, static_argnames="family")
def _advance(state, c: dict, n, family: str):
    """``n`` steps of ``(m, P, S, U)``: ``S_{t+1} = S_t + P_t + U_t + U_tᵀ``,
    ``U_{t+1} = A(U_t + P_t)``."""

    def body(_, st):
        m, P, S, U = st
        UP = U + P
        return (
            m - c["lr"] * (c["Ht"] @ m),
            _p_update(family, c, m, P),
            S + P + U + U.T,
            UP - c["lr"] * (c["Ht"] @ UP),
        )

    return jax.lax.fori_loop(0, n, body, state)


@partial(jax.jit, static_argnames=("family", "iterations"))
def _power(c: dict, family: str, iterations: int):
    """Power iteration of the homogeneous ``P`` map ``T`` from ``I``: ``X ← T(X)/tr T(X)``;
    returns the last ratio ``tr T(X)/tr X``."""
    d = c["h"].shape[0]
    zero = jnp.zeros(d)

    def body(_, carry):
        X, _ = carry
        Y = _p_update(family, c, zero, X)
        t = jnp.trace(Y)
        return Y / t, t

    X0 = jnp.eye(d) / d
    return jax.lax.fori_loop(0, iterations, body, (X0, jnp.asarray(1.0)))[1]


# ------------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class _Contraction:
    """``A = I − γH̃`` in the eigenbasis of ``H̃`` (what :func:`~exact._products` reads)."""

    a: np.ndarray
    one_minus_a: np.ndarray


def _check_inputs(H, w_star, noise, scheme, sgd) -> tuple[np.ndarray, np.ndarray, float]:
    try:
        H = np.array(H, dtype=np.float64)
        w = np.array(w_star, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError("H and w_star must be arrays of numbers") from None
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] < 1:
        raise ValueError(f"H must be a square d × d matrix, got shape {H.shape}")
    d = H.shape[0]
    if d > DENSE_MAX_DIM:
        raise ValueError(
            f"dense_exact_risk steps d × d matrices (O(N·d³)): d = {d} exceeds DENSE_MAX_DIM = "
            f"{DENSE_MAX_DIM}; for rotation-invariant quantizers use exact_risk in the eigenbasis"
        )
    if w.size != d:
        raise ValueError(f"w_star must have length d = {d}, got {w.size}")
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(w))):
        raise ValueError("H and w_star must be finite")
    scale = float(np.abs(H).max()) or 1.0
    asym = float(np.abs(H - H.T).max())
    if asym > _SYM_TOL * scale:
        raise ValueError(f"H must be symmetric (max |H − Hᵀ| = {asym:.3g})")
    H = 0.5 * (H + H.T)
    if np.linalg.eigvalsh(H)[0] < -_SYM_TOL * scale:
        raise ValueError("H must be positive semidefinite")
    if isinstance(noise, bool) or not isinstance(noise, int | float | np.floating):
        raise ValueError(f"noise (σ²) must be a number ≥ 0, got {noise!r}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise (σ²) must be a finite number ≥ 0, got {noise!r}")
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a qlinreg.Scheme, got {type(scheme).__name__}")
    if not isinstance(sgd, SGDConfig):
        raise TypeError(f"sgd must be a qlinreg.SGDConfig, got {type(sgd).__name__}")
    if sgd.storage is not None:
        raise TypeError(
            f"the exact theory has no weight storage (got storage "
            f"{getattr(sgd.storage, 'label', sgd.storage)!r}): simulate it (qlinreg.simulate)"
        )
    return H, w, float(noise)


def dense_exact_risk(
    H: np.ndarray,
    w_star: np.ndarray,
    noise: float,
    scheme: Scheme | None,
    sgd: SGDConfig,
    checkpoints: Sequence[int] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, bool]:
    """Exact ``E[excess risk]`` of quantized SGD (SPEC §2) for ``x ~ N(0, H)``, ``H`` full.

    Valid for Gaussian features, Gaussian label noise (variance ``noise``), the idealized
    quantizers (either noise law) on any roles acting on the given coordinates, any batch size
    and a constant or piecewise-constant step size; ``d ≤`` :data:`DENSE_MAX_DIM`. Cost
    O(N·d³), memory O(d²) (only the record times' traces are kept).

    Returns:
        ``(risk, risk_clean, radius, stable)``: ``risk`` and ``risk_clean`` map ``"polyak"``,
        ``"tail"``, ``"last"`` to arrays aligned with the (validated, ascending) checkpoints:
        the quantized-input risk ``½E‖w − u‖²_{H̃} + ApproxErr`` and the clean one
        ``½E‖w − w*‖²_H``. ``radius`` is an *estimate* of the spectral radius of the linear
        part of the second-moment map at the first segment's step size (50 power iterations
        from ``I``, the ratio ``tr T(X)/tr X``, and at least ``max|1 − γλ(H̃)|``); ``stable``
        is ``radius < 1``. When not stable a ``RuntimeWarning`` is issued; the values are
        still exact (``inf`` once they overflow).
    """
    scheme = Scheme() if scheme is None else scheme
    H, w_star, noise = _check_inputs(H, w_star, noise, scheme, sgd)
    ckpts = check_checkpoints(checkpoints, sgd.steps)
    r = {role: error_moments(q, role) for role, q in scheme.items()}
    family = _FAMILY[r["data"].kind]
    d = H.shape[0]
    lam_t, V = np.linalg.eigh(_H_q(H, r["data"]))  # A_t = V diag(1 − γ_t λ̃) Vᵀ
    if lam_t[0] <= _SYM_TOL * lam_t[-1]:
        raise ValueError(
            f"H^(q) = H + D is singular (smallest eigenvalue {lam_t[0]:.3g}): add a ridge to H"
        )
    with jax.enable_x64(True):
        c = _coefficients(H, w_star, noise, r, sgd.batch)
    Ht, u = c["Ht"], c["u"]
    pieces = sgd.segments()
    segs = [(T0, T1, _Contraction(1 - lr * lam_t, lr * lam_t)) for T0, T1, lr in pieces]
    m0 = sgd.initial(d) - u

    starts = ckpts // 2
    tails: dict[int, list[tuple[int, np.ndarray]]] = {}
    for n, s0 in zip(ckpts, starts, strict=True):
        G = _products(segs, int(s0), int(n), d)[1]
        tails.setdefault(int(s0), []).append((int(n), G))
    record = np.unique(np.concatenate([ckpts, starts[starts > 0]]))
    KH = V.T @ H @ V  # H in the eigenbasis of H̃

    traces: dict[int, np.ndarray] = {0: np.zeros(4)}  # τ → tr(H̃S), tr(HS), tr(H̃P), tr(HP)
    cross: dict[tuple[int, int], np.ndarray] = {}  # (s0, n) → tr(H̃GU_{s0}), tr(HGU_{s0})

    def keep(tau: int, state) -> None:
        _, P, S, U = (np.asarray(a) for a in state)
        traces[tau] = np.array([np.sum(Ht * S), np.sum(H * S), np.sum(Ht * P), np.sum(H * P)])
        if tau in tails:
            Ur = V.T @ U @ V
            for n, G in tails[tau]:
                cross[tau, n] = np.array(
                    [np.sum(lam_t * G * np.diag(Ur)), np.sum(KH * (G[None, :] * Ur.T))]
                )

    with jax.enable_x64(True):
        cj = {k: jnp.asarray(v) for k, v in c.items()}
        first = {**_homogeneous(cj), "lr": jnp.asarray(pieces[0][2])}
        ratio = float(_power(first, family, _POWER_ITERATIONS))
        radius = max(ratio, float(np.abs(segs[0][2].a).max()))
        stable = radius < 1
        quiet = np.errstate(over="ignore", invalid="ignore") if not stable else nullcontext()
        with quiet:
            z = jnp.zeros((d, d))
            state, t = (jnp.asarray(m0), jnp.asarray(np.outer(m0, m0)), z, z), 0
            for T0, T1, lr in pieces:
                cs = {**cj, "lr": jnp.asarray(lr)}
                for n in (int(n) for n in record if T0 < n <= T1):
                    state, t = _advance(state, cs, jnp.asarray(n - t), family), n
                    keep(n, state)
                if T1 < sgd.steps:
                    state, t = _advance(state, cs, jnp.asarray(T1 - t), family), T1
    if not stable:
        warnings.warn(
            f"the second-moment recursion looks unstable (estimated spectral radius "
            f"{radius:.4g} ≥ 1): the expected risk grows geometrically with N; lower the step "
            f"size γ = {sgd.lr:g}",
            RuntimeWarning,
            stacklevel=2,
        )

    shift = u - w_star
    ae = 0.5 * float(u @ (Ht - H) @ w_star)  # ½(‖w*‖²_H − ‖u‖²_{H̃}) = ½uᵀDw*, no cancellation
    fixed = float(shift @ H @ shift)
    m0r, zr = V.T @ m0, V.T @ (H @ shift)  # eigenbasis of H̃
    risk = {avg: np.empty(len(ckpts)) for avg in AVERAGES}
    risk_clean = {avg: np.empty(len(ckpts)) for avg in AVERAGES}
    with np.errstate(over="ignore", invalid="ignore") if not stable else nullcontext():
        for j, (n, s0) in enumerate(zip(ckpts, starts, strict=True)):
            n, s0 = int(n), int(s0)
            L = n - s0
            P0n, G0n = _products(segs, 0, n, d)
            P0s, _ = _products(segs, 0, s0, d)
            Gt = next(G for nn, G in tails[s0] if nn == n)
            cr = cross.get((s0, n), np.zeros(2))
            seconds = {  # (tr(H̃Σ_v), tr(HΣ_v)) and E v̄ in the eigenbasis
                "polyak": (traces[n][:2] / n**2, G0n * m0r / n),
                "tail": ((traces[n][:2] - traces[s0][:2] - 2 * cr) / L**2, P0s * Gt * m0r / L),
                "last": (traces[n][2:], P0n * m0r),
            }
            for avg, (second, mean) in seconds.items():
                risk[avg][j] = 0.5 * second[0] + ae
                risk_clean[avg][j] = 0.5 * (second[1] + 2 * float(mean @ zr) + fixed)
    for values in (*risk.values(), *risk_clean.values()):
        values[~np.isfinite(values)] = np.inf
    return risk, risk_clean, radius, bool(stable)
