"""The paper's excess-risk bounds (SPEC §4), evaluated with **unit constants**.

Theorem 4.1 (the shape of Zou et al.'s bound for constant-step SGD with iterate averaging,
with ``H^(q)`` in place of ``H``), at ``N`` steps::

    E[R(w̄_N)] ≲ VarErr + BiasErr + ApproxErr
    VarErr  = σ_G² · (k*/N + N γ² Σ_{i>k*} (λ^(q)_i)²)
    BiasErr = ‖w_0 − w*^(q)‖²_{(H^(q)_{0:k*})⁻¹} / (γ²N²) + ‖w_0 − w*^(q)‖²_{H^(q)_{k*:∞}}
    k*      = max{k : λ^(q)_k ≥ 1/(Nγ)}

Corollary 4.1 (additive) and Theorem 4.2 (multiplicative) are this bound with the
corresponding ``H^(q)``, ``w*^(q)`` and ``σ_G²`` (:func:`noise_terms`); :func:`bound` labels
each row with the statement that applies. The paper proves these up to absolute constants:
every number here is an order of magnitude, never a prediction (use
:func:`qlinreg.theory.exact_risk` for that). Choices the SPEC leaves open are argued in
``docs/theory.md`` §6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from qlinreg.algorithm import SGDConfig, check_checkpoints, check_run, run_config
from qlinreg.problem import Problem, power_law_spectrum
from qlinreg.quantize.idealized import error_moments
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.quantized_data import (
    H_q,
    approx_err,
    approx_err_clean,
    k_star,
    rotation_invariant,
    w_star_q,
)

__all__ = [
    "bound",
    "fp_beats_int",
    "fp_int_threshold",
    "noise_terms",
    "polynomial_decay_rates",
    "sigma_G2",
    "theorem",
]

Convention = Literal["quantized", "clean"]
ROLES_NOISE = ("labels", "activations", "params", "grads")


def _eps(role: str, q) -> tuple[float, float, bool]:
    """``(additive ε, multiplicative ε, rank-one?)`` of an idealized quantizer."""
    m = error_moments(q, role)
    return m.add, m.mult, m.rank1 > 0


def theorem(scheme: Scheme) -> str:
    """Which statement of the paper the bound instantiates for ``scheme``.

    ``"Cor 4.1"`` when every quantized role is additive, ``"Thm 4.2"`` when every one is
    rank-one multiplicative, ``"Thm 4.1"`` otherwise (mixed kinds, elementwise multiplicative,
    or full precision — where it is Zou et al.'s bound).
    """
    kinds = {m.kind for m in (error_moments(q, r) for r, q in scheme.items()) if m.eps > 0}
    if kinds == {"additive"}:
        return "Cor 4.1"
    if kinds == {"multiplicative"}:
        return "Thm 4.2"
    return "Thm 4.1"


def noise_terms(
    problem: Problem, scheme: Scheme, batch: int, w0: np.ndarray | None = None
) -> dict[str, float]:
    """The effective noise ``σ_G²`` of Theorem 4.1 and its parts (SPEC §4).

    ``σ_G² = (σ² + v_l + v_a + v_o)/B + (1 − 1/B)·Σ_{rank-one r} v_r + α_B·E tr(H^(q) ε_p ε_pᵀ)``

    with per-sample error variances ``v_r`` of labels, activations and output gradients
    (additive: ``ε``; multiplicative: ``ε·E[u²]`` of the quantized value ``u``, taken at its
    largest along the path ``w_0 → w*^(q)``), and ``α_B = 1/B + (1 − 1/B)·ρ_p`` with
    ``ρ_p = λ^(q)_1 / tr(H^(q))`` for additive parameter errors and 1 for multiplicative ones.
    Rank-one multiplicative errors share one scale across the batch, so they are not divided
    by ``B``. Returns the terms and their sum under ``"sigma_G2"``.
    """
    lab, act, par, out = (_eps(r, getattr(scheme, r)) for r in ROLES_NOISE)
    lam, ws = problem.spectrum, problem.w_star
    h, u = H_q(problem, scheme.data), w_star_q(problem, scheme.data)
    w0 = np.zeros(problem.d) if w0 is None else np.asarray(w0, dtype=np.float64)
    B = int(batch)
    w_norm2 = max(float(h @ u**2), float(h @ w0**2))  # sup of E⟨x̃, w⟩² over the path
    tr_p = par[0] * float(h.sum()) + par[1] * w_norm2  # E tr(H^(q) ε_p ε_pᵀ)
    rho_p = float(h.max() / h.sum()) if par[0] > 0 else 1.0
    alpha_B = 1 / B + (1 - 1 / B) * rho_p
    v_l = lab[0] + lab[1] * (float(lam @ ws**2) + problem.noise)
    v_a = act[0] + act[1] * (w_norm2 + tr_p)
    residual = (
        problem.noise
        + 2 * approx_err(problem, scheme.data)
        + float(h @ (w0 - u) ** 2)
        + v_l
        + v_a
        + tr_p
    )
    v_o = out[0] + out[1] * residual
    shared = sum(v for v, q in zip((v_l, v_a, v_o), (lab, act, out), strict=True) if q[2])
    terms = {
        "label_noise": problem.noise / B,
        "labels": v_l / B,
        "activations": v_a / B,
        "grads": v_o / B,
        "batch_shared": (1 - 1 / B) * shared,
        "params": alpha_B * tr_p,
        "alpha_B": alpha_B,
    }
    terms["sigma_G2"] = sum(v for k, v in terms.items() if k != "alpha_B")
    return terms


def sigma_G2(problem: Problem, scheme: Scheme, batch: int, w0: np.ndarray | None = None) -> float:
    """``σ_G²`` of Theorem 4.1 (see :func:`noise_terms`)."""
    return noise_terms(problem, scheme, batch, w0)["sigma_G2"]


def bound(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    checkpoints: Sequence[int] | None = None,
    *,
    convention: Convention = "quantized",
) -> pd.DataFrame:
    """Theorem 4.1 / Corollary 4.1 / Theorem 4.2 with unit constants, as a curve over ``N``.

    Args:
        problem, scheme, sgd: as for :func:`qlinreg.simulate` (the bound is for the Polyak
            average; ``sgd.steps`` only bounds the checkpoints).
        checkpoints: values of ``N`` (default: ~10 per decade up to ``sgd.steps``).
        convention: ``"quantized"`` (the paper's risk on quantized inputs, ApproxErr
            ``= R_q(w*^(q))``) or ``"clean"`` (ApproxErr ``= ½‖w*^(q) − w*‖²_H``; VarErr and
            BiasErr bound ``½‖w̄ − w*^(q)‖²_{H^(q)} ≥ ½‖w̄ − w*^(q)‖²_H`` in both).

    Returns:
        One row per ``N``: ``step, bound, bound_var, bound_bias, bound_approx, k_star,
        sigma_G2, theorem, constants`` (= ``"unit"``), then the run's config.
    """

    scheme = check_run(problem, scheme, sgd)
    if convention not in ("quantized", "clean"):
        raise ValueError(f"convention must be 'quantized' or 'clean', got {convention!r}")
    config = run_config(problem, scheme, sgd)
    if not problem.diagonal or problem.samples is not None:
        if not (rotation_invariant(scheme.data) and rotation_invariant(scheme.params)):
            raise ValueError(
                "the paper's bounds are stated in the eigenbasis of H: elementwise "
                "quantization of a full covariance's coordinates is outside them (use exact=true)"
            )
        problem = problem.eigen()  # the same risks, in law (see theory.exact.in_eigenbasis)
    steps = check_checkpoints(checkpoints, sgd.steps)
    w0 = sgd.initial(problem.d)
    s2 = sigma_G2(problem, scheme, sgd.batch, w0)
    h = H_q(problem, scheme.data)
    order = np.argsort(-h, kind="stable")
    h = h[order]
    v0 = (w0 - w_star_q(problem, scheme.data))[order]
    approx = (approx_err if convention == "quantized" else approx_err_clean)(problem, scheme.data)
    rows = []
    for n in steps:
        k = k_star(problem, scheme.data, int(n), sgd.lr)
        var = s2 * (k / n + n * sgd.lr**2 * float(np.sum(h[k:] ** 2)))
        bias = float(np.sum(v0[:k] ** 2 / h[:k])) / (sgd.lr * n) ** 2 + float(h[k:] @ v0[k:] ** 2)
        rows.append((int(n), var + bias + approx, var, bias, approx, k))
    df = pd.DataFrame(
        rows, columns=["step", "bound", "bound_var", "bound_bias", "bound_approx", "k_star"]
    )
    df["sigma_G2"] = s2
    df["theorem"] = theorem(scheme)
    df["constants"] = "unit"
    df["convention"] = convention
    for key, value in config.items():
        df[key] = value
    return df


def polynomial_decay_rates(
    decay: float,
    dim: int,
    steps: int,
    lr: float,
    eps: float,
    kind: Literal["additive", "multiplicative"],
    *,
    noise: float = 1.0,
    batch: int = 1,
) -> dict[str, float]:
    """Corollary 4.3: the bound's terms for ``λ_i = i^(-a)``, ``w* = 1``, ``w_0 = 0``, data
    quantized with ``ε`` (other roles full precision), sums replaced by integrals.

    Multiplicative: ``k* = min(d, ((1+ε)Nγ)^{1/a})`` and every term stays bounded as
    ``d → ∞`` (dimension-free). Additive: the floor ``ε`` adds ``Nγ²ε²(d − k*)`` to VarErr,
    and ``k* = d`` once ``ε ≥ 1/(Nγ)`` (VarErr ``≍ σ²d/N``), so the bound grows linearly in
    ``d`` and diverges. Additive sums split at ``i_ε = ε^{-1/a}`` (where ``λ_i = ε``). Unit
    constants; orders of magnitude only. Requires ``a > 1``.
    """
    a, d, n = float(decay), int(dim), float(steps) * float(lr)
    if not a > 1:
        raise ValueError(f"decay (a) must be > 1 for a summable spectrum, got {decay!r}")
    if kind not in ("additive", "multiplicative"):
        raise ValueError(f"kind must be 'additive' or 'multiplicative', got {kind!r}")
    s2 = noise / batch

    def integral(s: float, lo: float, hi: float) -> float:  # ∫_lo^hi x^(-s) dx
        return (hi ** (1 - s) - lo ** (1 - s)) / (1 - s) if hi > lo else 0.0

    lam = power_law_spectrum(d, a)
    if kind == "multiplicative":
        k = min(d, ((1 + eps) * n) ** (1 / a))
        var = s2 * (k / steps + steps * lr**2 * (1 + eps) ** 2 * integral(2 * a, k, d))
        bias = integral(-a, 0, k) / ((1 + eps) ** 3 * n**2) + integral(a, k, d) / (1 + eps)
        approx = 0.5 * eps / (1 + eps) * float(lam.sum())
    else:
        k = float(d) if eps >= 1 / n else min(d, (1 / n - eps) ** (-1 / a))
        spread = integral(2 * a, k, d) + 2 * eps * integral(a, k, d) + eps**2 * max(d - k, 0)
        var = s2 * (k / steps + steps * lr**2 * spread)
        # u_i²/λ^(q)_i ≈ 1/λ_i above the floor, λ_i²/ε³ below; λ^(q)_i u_i² ≈ λ_i or λ_i²/ε.
        i_eps = min(float(d), eps ** (-1 / a)) if eps > 0 else float(d)  # where λ_i = ε
        head = integral(-a, 0, min(k, i_eps))
        tail = integral(a, k, max(k, i_eps))
        if i_eps < d:
            head += integral(2 * a, i_eps, k) / eps**3
            tail += integral(2 * a, max(k, i_eps), d) / eps
        bias = head / n**2 + tail
        approx = 0.5 * float(np.sum(lam * eps / (lam + eps)))
    return {"k_star": k, "var": var, "bias": bias, "approx": approx, "total": var + bias + approx}


def fp_int_threshold(int_bits: float, decay: float, dim: int) -> float:
    """Corollary 4.3's rule: FP data quantization with ``m`` mantissa bits beats INT with ``b``
    bits when ``m ≥ b − (a/2)·log2(d)`` (``ε_FP = 2^(−2m)``, ``ε_INT = 2^(−2b)``, ``λ_i = i^(-a)``:
    equivalently ``ε_FP·λ_d ≤ ε_INT``). Returns that least ``m``."""
    return float(int_bits) - float(decay) / 2 * math.log2(dim)


def fp_beats_int(mantissa_bits: float, int_bits: float, decay: float, dim: int) -> bool:
    """``m ≥ b − (a/2)·log2(d)`` (see :func:`fp_int_threshold`)."""
    return float(mantissa_bits) >= fp_int_threshold(int_bits, decay, dim)
