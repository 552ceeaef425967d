"""The paper's excess-risk bound (SPEC §4, §9), evaluated with **unit constants**, its
hypotheses checked.

A reconstruction: the paper's text is not available here. Its shape is Zou et al.'s (2021,
Theorem 2.1) bound for constant-step SGD with iterate averaging, with ``H^(q)``, ``w*^(q)``
and an effective noise ``σ_G²`` in place of ``H``, ``w*`` and ``σ²``; at ``N`` steps::

    E[R(w̄_N)] ≲ VarErr + VarBiasErr + BiasErr + ApproxErr
    D          = k*/N + N γ² Σ_{i>k*} (λ^(q)_i)²
    VarErr     = σ_G² · D / (1 − γ α tr H^(q))
    VarBiasErr = 2α (‖v_0‖²_{I_{0:k*}} + Nγ ‖v_0‖²_{H^(q)_{k*:∞}}) / (Nγ (1 − γ α tr H^(q))) · D
    BiasErr    = ‖exp(−NγH^(q)) v_0‖²_{(H^(q)_{0:k*})⁻¹} / (γ²N²) + ‖v_0‖²_{H^(q)_{k*:∞}}
    k*         = max{k : λ^(q)_k ≥ 1/(Nγ)},   v_0 = w_0 − w*^(q)

**Hypothesis** (:func:`hypotheses`): ``γ < 1/(α·tr H^(q))``, with ``α`` the fourth-moment
constant of one step's update (:func:`step_alpha`; ``α = 3`` for Gaussian features, ``B = 1``
and no multiplicative error), and a stable second-moment recursion. Outside it the terms
``1/(1 − γα tr H^(q))`` are undefined: :func:`bound` then reports the expression without that
factor, with ``bound_valid = False`` and the reason — a number for orientation, not a bound.

Zou et al.'s theorem carries explicit factors 2 (``2·EffBias + 2·EffVar``); here every outer
constant is 1, as for the paper's ``≲``. Every number is an order of magnitude, never a
prediction (use :func:`qlinreg.theory.exact_risk` for that). Each choice is derived in
``docs/theory.md`` §6, with its source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from qlinreg.algorithm import (
    SGDConfig,
    check_checkpoints,
    check_run,
    geometric_checkpoints,
    run_config,
)
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
    "ALPHA_B",
    "Hypotheses",
    "bound",
    "fourth_moment_alpha",
    "fp_beats_int",
    "fp_int_threshold",
    "hypotheses",
    "noise_terms",
    "path_sup",
    "polynomial_decay_rates",
    "sigma_G2",
    "step_alpha",
    "theorem",
]

Convention = Literal["quantized", "clean"]
AlphaB = Literal["standard", "spectral"]
ALPHA_B = ("standard", "spectral")
Sup = Literal["exact", "endpoints"]
SUPS = ("exact", "endpoints")
ROLES_NOISE = ("labels", "activations", "params", "grads")
_SUP_STEPPED = 256  # sup_t over every step up to here, then on a geometric grid
_SUP_PER_DECADE = 40


def _eps(role: str, q) -> tuple[float, float, bool]:
    """``(additive ε, multiplicative ε, rank-one?)`` of an idealized quantizer."""
    m = error_moments(q, role)
    return m.add, m.mult, m.rank1 > 0


def theorem(scheme: Scheme) -> str:
    """What the bound instantiates for ``scheme`` (a name that says what it is).

    Full precision: ``"Zou et al. Thm 2.1"``. Every quantized role additive: ``"Thm 4.1,
    additive (Cor 4.1)"``. Every one rank-one multiplicative: ``"Thm 4.1, multiplicative (not
    Thm 4.2)"`` — the general bound with ``(1+ε)H``; the paper's Theorem 4.2 is a direct,
    tighter result not reconstructed here. Otherwise (mixed kinds, elementwise): ``"Thm 4.1"``.
    """
    kinds = {m.kind for m in (error_moments(q, r) for r, q in scheme.items()) if m.eps > 0}
    if not kinds:
        return "Zou et al. Thm 2.1"
    if kinds == {"additive"}:
        return "Thm 4.1, additive (Cor 4.1)"
    if kinds == {"multiplicative"}:
        return "Thm 4.1, multiplicative (not Thm 4.2)"
    return "Thm 4.1"


def fourth_moment_alpha(q) -> float:
    """``α`` of one quantized feature row: the least constant with
    ``E[x̃x̃ᵀ A x̃x̃ᵀ] ≼ α·tr(H^(q)A)·H^(q)`` for every PSD ``A`` (Zou et al.'s Assumption 2.1,
    ``x ~ N(0, H)`` diagonal, ``x̃ = Q_d(x)``).

    ``3`` for none and additive data (Gaussian: ``2H̃AH̃ + tr(H̃A)H̃``, tight along the top
    eigenvector; a uniform dither's negative fourth cumulant only lowers it); ``3·E s⁴/(1+ε)²``
    for both multiplicative kinds (``s = 1 + √ε ζ``, ``E s⁴ = 1 + 6ε + μ4ε²``: the rank-one
    scale multiplies the Gaussian operator by ``E s⁴``, the elementwise one adds a diagonal
    ``3(E s⁴/(1+ε)² − 1)·Diag(h_i² A_ii) ≼ 3(E s⁴/(1+ε)² − 1)·tr(H̃A)H̃``).
    """
    m = error_moments(q, "data")
    if m.kind in ("multiplicative", "multiplicative_elementwise"):
        e = m.eps
        return 3.0 * (1 + 6 * e + m.mu4 * e * e) / (1 + e) ** 2
    return 3.0


def step_alpha(scheme: Scheme, batch: int) -> float:
    """``α`` of one mini-batch step, for the hypothesis ``γ < 1/(α·tr H^(q))``.

    The ``v``-dependent part of the step's noise (``v = w − w*^(q)``, docs/theory.md §4 and
    §10) is ``(γ²/B)·[Π_M·𝒦(P) + (B − 1)·Π_R·H̃PH̃]`` with ``𝒦`` the row's fourth-moment
    operator (≼ ``α_d tr(H̃P)H̃``, :func:`fourth_moment_alpha`), ``H̃PH̃ ≼ tr(H̃P)H̃``, and the
    multiplicative errors' factors ``Π_M = (1+ε_o^M)(1+ε_a^M)(1+ε_p^M)``,
    ``Π_R = (1+ε_o^R)(1+ε_a^R)(1+ε_p^M)`` (``R``: rank-one, shared by the batch). Hence
    ``α = (α_d Π_M + (B − 1) Π_R)/B``: 3 at full precision with ``B = 1``, ``1 + 2/B`` with
    ``B`` rows (the standard mini-batch argument).
    """
    m = {role: error_moments(q, role) for role, q in scheme.items()}
    act, par, out = m["activations"], m["params"], m["grads"]
    pi_m = (1 + out.mult) * (1 + act.mult) * (1 + par.mult)
    pi_r = (1 + out.rank1) * (1 + act.rank1) * (1 + par.mult)
    B = int(batch)
    return (fourth_moment_alpha(scheme.data) * pi_m + (B - 1) * pi_r) / B


@dataclass(frozen=True)
class Hypotheses:
    """Whether the bound's hypotheses hold (see :func:`hypotheses`).

    Attributes:
        valid: all hold.
        reason: one line: which condition, with its numbers.
        alpha: ``α`` of :func:`step_alpha`.
        lr_max: ``1/(α·tr H^(q))``: the hypothesis is ``γ < lr_max``.
        stable: the exact second-moment recursion is stable (the expected risk stays bounded).
    """

    valid: bool
    reason: str
    alpha: float
    lr_max: float
    stable: bool


def hypotheses(problem: Problem, scheme: Scheme | None, sgd: SGDConfig) -> Hypotheses:
    """Check the bound's hypotheses for ``(problem, scheme, sgd)``: ``γ < 1/(α·tr H^(q))``
    (Zou et al.'s step-size condition with :func:`step_alpha`'s ``α``) and a stable exact
    second-moment recursion (:func:`~qlinreg.theory.exact.second_moment_radius` < 1: otherwise
    the expected risk grows without bound and no finite bound holds)."""
    from qlinreg.theory.exact import _is_stable, _radius, _recursion

    scheme = check_run(problem, scheme, sgd)
    eig = problem.eigen()
    alpha = step_alpha(scheme, sgd.batch)
    tr = float(H_q(eig, scheme.data).sum())
    lr_max = 1.0 / (alpha * tr)
    rec = _recursion(eig, scheme, replace(sgd, schedule=()))[0]
    stable = _is_stable(rec)
    where = f"α = {alpha:.4g}, tr H^(q) = {tr:.4g}"
    if sgd.lr >= lr_max:
        reason = f"fails: γ = {sgd.lr:g} ≥ 1/(α·tr H^(q)) = {lr_max:.4g} ({where})"
    elif not stable:
        reason = (
            f"fails: the second-moment recursion is unstable (spectral radius {_radius(rec):.6g})"
        )
    else:
        reason = f"holds: γ = {sgd.lr:g} < 1/(α·tr H^(q)) = {lr_max:.4g} ({where})"
    return Hypotheses(sgd.lr < lr_max and stable, reason, alpha, lr_max, stable)


def _alpha_B(kind: AlphaB, alpha_d: float, B: int, h: np.ndarray, additive: bool) -> float:
    if kind == "standard":  # E[(1/B)Σx̃x̃ᵀ A (1/B)Σx̃x̃ᵀ] ≼ (α/B + 1 − 1/B)·tr(H̃A)·H̃
        return alpha_d / B + (1 - 1 / B)
    if kind == "spectral":  # one row at constant 1; batch part H̃AH̃ ≼ λ^(q)_1·H̃ for A = εI
        rho = float(h.max() / h.sum()) if additive else 1.0
        return 1 / B + (1 - 1 / B) * rho
    raise ValueError(f"alpha_B must be one of {ALPHA_B}, got {kind!r}")


def noise_terms(
    problem: Problem,
    scheme: Scheme,
    batch: int,
    w0: np.ndarray | None = None,
    *,
    alpha_B: AlphaB = "standard",
    sup_w: float | None = None,
    sup_v: float | None = None,
) -> dict[str, float]:
    """The effective noise ``σ_G²`` of Theorem 4.1 and its parts (SPEC §4, §9)::

        σ_G² = (σ² + 2·ApproxErr + v_l + v_a + v_o)/B + (1 − 1/B)·Σ_{rank-one r} v_r
               + α_B·E tr(H^(q) ε_p ε_pᵀ)

    ``σ² + 2·ApproxErr`` is the variance of the residual of the best quantized predictor
    ``w*^(q)`` (docs/theory.md §3). ``v_r``: per-sample error variances of labels,
    activations and output gradients (additive: ``ε``; multiplicative: ``ε·E[u²]`` of the
    quantized value, at its largest along the path). Rank-one multiplicative errors share one
    scale across the batch and are not divided by ``B``. ``α_B``: ``"standard"`` (default,
    ``α/B + 1 − 1/B`` with ``α`` of :func:`fourth_moment_alpha`: bounding the batch's
    fourth-moment operator by ``α_B·tr(H^(q)A)·H^(q)``, which does not vanish with ``B``) or
    ``"spectral"`` (tighter, the earlier choice: ``1/B + (1 − 1/B)·λ^(q)_1/tr H^(q)`` for
    additive parameter errors, ``1`` for multiplicative ones).

    ``sup_w``, ``sup_v``: ``sup_t E‖w_t‖²_{H^(q)}`` and ``sup_t E‖w_t − w*^(q)‖²_{H^(q)}``
    (:func:`path_sup`, from the exact recursion); default: the endpoints,
    ``max(‖w_0‖², ‖w*^(q)‖²)_{H^(q)}`` and ``‖w_0 − w*^(q)‖²_{H^(q)}`` (the gradient-descent
    path). Returns the terms and their sum under ``"sigma_G2"``.
    """
    lab, act, par, out = (_eps(r, getattr(scheme, r)) for r in ROLES_NOISE)
    lam, ws = problem.spectrum, problem.to_eigen(problem.w_star)
    eig = problem.eigen()
    h, u = H_q(eig, scheme.data), w_star_q(eig, scheme.data)
    w0 = np.zeros(problem.d) if w0 is None else problem.to_eigen(np.asarray(w0, np.float64))
    B = int(batch)
    W = max(float(h @ u**2), float(h @ w0**2)) if sup_w is None else float(sup_w)
    V = float(h @ (w0 - u) ** 2) if sup_v is None else float(sup_v)
    ae2 = 2 * approx_err(eig, scheme.data)
    tr_p = par[0] * float(h.sum()) + par[1] * W  # E tr(H^(q) ε_p ε_pᵀ)
    a_B = _alpha_B(alpha_B, fourth_moment_alpha(scheme.data), B, h, par[0] > 0)
    v_l = lab[0] + lab[1] * (float(lam @ ws**2) + problem.noise)
    v_a = act[0] + act[1] * (W + tr_p)
    v_o = out[0] + out[1] * (problem.noise + ae2 + V + v_l + v_a + tr_p)
    shared = sum(v for v, q in zip((v_l, v_a, v_o), (lab, act, out), strict=True) if q[2])
    terms = {
        "label_noise": problem.noise / B,
        "approx_noise": ae2 / B,
        "labels": v_l / B,
        "activations": v_a / B,
        "grads": v_o / B,
        "batch_shared": (1 - 1 / B) * shared,
        "params": a_B * tr_p,
    }
    terms["sigma_G2"] = sum(terms.values())
    terms["alpha_B"] = a_B
    return terms


def sigma_G2(
    problem: Problem,
    scheme: Scheme,
    batch: int,
    w0: np.ndarray | None = None,
    *,
    alpha_B: AlphaB = "standard",
) -> float:
    """``σ_G²`` of Theorem 4.1 with endpoint sups (see :func:`noise_terms`)."""
    return noise_terms(problem, scheme, batch, w0, alpha_B=alpha_B)["sigma_G2"]


def path_sup(
    problem: Problem, scheme: Scheme, sgd: SGDConfig, steps: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Running sups, for each ``N`` in ``steps``, of ``E‖w_t‖²_{H^(q)}`` and
    ``E‖w_t − w*^(q)‖²_{H^(q)}`` over ``0 ≤ t ≤ N``, from the exact recursion.

    ``E‖w_t − u‖²_{H^(q)} = ⟨λ^(q), p_t⟩ = 2(E R_q(w_t) − ApproxErr)`` (the last iterate's exact
    risk, :func:`~qlinreg.theory.exact.exact_risk`) and ``E‖w_t‖²_{H^(q)} = ‖u‖²_{H^(q)} +
    2⟨λ^(q)u, (1 − γλ^(q))^t m_0⟩ + ⟨λ^(q), p_t⟩`` (``u = w*^(q)``, ``m_0 = w_0 − u``), in the
    eigenbasis. The sup is taken over every step up to 256 and 40 points per decade beyond
    (the moments move by a few per cent between them). Needs a stable recursion.
    """
    from qlinreg.theory.exact import exact_risk

    eig = problem.eigen()
    steps = np.asarray(steps, np.int64)
    top = int(steps.max())
    grid = np.unique(
        np.concatenate(
            [np.arange(1, min(top, _SUP_STEPPED) + 1), geometric_checkpoints(top, _SUP_PER_DECADE)]
            + [steps]
        )
    )
    ex = exact_risk(eig, scheme, replace(sgd, average="last"), grid)
    h, u = H_q(eig, scheme.data), w_star_q(eig, scheme.data)
    m0 = eig.to_eigen(sgd.initial(problem.d)) - u
    hv = np.maximum(2 * (ex.risk["last"] - approx_err(eig, scheme.data)), 0.0)
    decay = np.exp(np.outer(grid, np.log1p(-sgd.lr * h)))  # (1 − γλ^(q))^t, t ≥ 1
    hw = float(h @ u**2) + 2 * decay @ (h * u * m0) + hv
    hv = np.maximum.accumulate(np.concatenate([[float(h @ m0**2)], hv]))[1:]
    hw = np.maximum.accumulate(np.concatenate([[float(h @ (m0 + u) ** 2)], hw]))[1:]
    at = np.searchsorted(grid, steps)
    return hw[at], hv[at]


def _terms(
    problem: Problem,
    scheme: Scheme,
    sgd: SGDConfig,
    n: int,
    hyp: Hypotheses,
    alpha_B: AlphaB,
    sup_w: float | None = None,
    sup_v: float | None = None,
) -> tuple[float, float, float, int, float, float]:
    """``(VarErr, VarBiasErr, BiasErr, k*, σ_G², α_B)`` at ``N = n``, in the eigenbasis
    (``sup_w``, ``sup_v``: :func:`noise_terms`; ``None``: the endpoints)."""
    w0 = sgd.initial(problem.d)
    h = H_q(problem, scheme.data)
    order = np.argsort(-h, kind="stable")
    v0 = (w0 - w_star_q(problem, scheme.data))[order]
    h = h[order]
    lr, alpha = sgd.lr, hyp.alpha
    factor = 1.0 / (1.0 - lr * alpha * float(h.sum())) if hyp.valid else 1.0
    s2 = noise_terms(problem, scheme, sgd.batch, w0, alpha_B=alpha_B, sup_w=sup_w, sup_v=sup_v)
    k = k_star(problem, scheme.data, n, lr)
    dim = k / n + n * lr**2 * float(np.sum(h[k:] ** 2))
    var = s2["sigma_G2"] * factor * dim
    head, tail = float(np.sum(v0[:k] ** 2)), float(h[k:] @ v0[k:] ** 2)
    var_bias = 2 * alpha * (head + n * lr * tail) / (n * lr) * factor * dim
    shrink = np.exp(-2 * n * lr * h[:k])
    bias = float(np.sum(shrink * v0[:k] ** 2 / h[:k])) / (lr * n) ** 2 + tail
    return var, var_bias, bias, k, s2["sigma_G2"], s2["alpha_B"]


def _rows(
    problem: Problem,
    scheme: Scheme,
    sgd: SGDConfig,
    steps: np.ndarray,
    hyp: Hypotheses,
    alpha_B: AlphaB,
    sup: Sup = "exact",
) -> pd.DataFrame:
    """The bound's terms (without ApproxErr) at each ``N`` in ``steps``, in the eigenbasis."""
    if hyp.stable and sup == "exact":
        sup_w, sup_v = path_sup(problem, scheme, sgd, steps)
        source = "exact recursion"
    else:  # the endpoints (an unstable recursion has no finite sup: the row is not valid)
        sup_w = sup_v = [None] * len(steps)
        source = "endpoints"
    rows = [
        (int(n), *_terms(problem, scheme, sgd, int(n), hyp, alpha_B, sw, sv))
        for n, sw, sv in zip(steps, sup_w, sup_v, strict=True)
    ]
    cols = ["step", "bound_var", "bound_var_bias", "bound_bias", "k_star", "sigma_G2", "alpha_B"]
    df = pd.DataFrame(rows, columns=cols)
    df["sup_source"] = source
    return df


def bound(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    checkpoints: Sequence[int] | None = None,
    *,
    convention: Convention = "quantized",
    alpha_B: AlphaB = "standard",
    sup: Sup = "exact",
) -> pd.DataFrame:
    """The unit-constant bound (Theorem 4.1 family; Zou et al.'s Theorem 2.1 at full
    precision) as a curve over ``N``, its hypotheses checked (:func:`hypotheses`).

    Args:
        problem, scheme, sgd: as for :func:`qlinreg.simulate` (the bound is for the Polyak
            average and a constant step size; ``sgd.steps`` only bounds the checkpoints). A
            full covariance is bounded in its eigenbasis, for rotation-invariant data and
            parameter quantizers only.
        checkpoints: values of ``N`` (default: ~10 per decade up to ``sgd.steps``).
        convention: ``"quantized"`` (the paper's risk on quantized inputs, ApproxErr
            ``= R_q(w*^(q))``) or ``"clean"`` (ApproxErr ``= ½‖w*^(q) − w*‖²_H``; the other
            terms bound ``½‖w̄ − w*^(q)‖²_{H^(q)} ≥ ½‖w̄ − w*^(q)‖²_H`` in both).
        alpha_B: the parameter-noise factor of ``σ_G²`` (:func:`noise_terms`).
        sup: where the multiplicative errors' ``sup_t`` second moments come from:
            ``"exact"`` (default: the exact recursion, :func:`path_sup`) or ``"endpoints"``
            (``w_0`` and ``w*^(q)``: closed form, no recursion).

    Returns:
        One row per ``N``: ``step, bound, bound_var, bound_var_bias, bound_bias,
        bound_approx, k_star, sigma_G2, alpha_B, alpha, bound_valid, bound_reason,
        sup_source, theorem, constants`` (= ``"unit"``), ``convention``, then the run's
        config. Where ``bound_valid`` is false the expression is reported without the
        undefined factor ``1/(1 − γα tr H^(q))``: not a bound.
    """
    scheme = check_run(problem, scheme, sgd)
    if convention not in ("quantized", "clean"):
        raise ValueError(f"convention must be 'quantized' or 'clean', got {convention!r}")
    if alpha_B not in ALPHA_B:
        raise ValueError(f"alpha_B must be one of {ALPHA_B}, got {alpha_B!r}")
    if sup not in SUPS:
        raise ValueError(f"sup must be one of {SUPS}, got {sup!r}")
    if sgd.schedule:
        raise ValueError("bound: the bound is stated for a constant step size; drop the schedule")
    config = run_config(problem, scheme, sgd)
    if not problem.diagonal or problem.samples is not None:
        if not (rotation_invariant(scheme.data) and rotation_invariant(scheme.params)):
            raise ValueError(
                "the paper's bounds are stated in the eigenbasis of H: elementwise "
                "quantization of a full covariance's coordinates is outside them (use exact=true)"
            )
        w0 = None if sgd.w0 is None else problem.to_eigen(sgd.w0)
        problem, sgd = problem.eigen(), replace(sgd, w0=w0)  # the same risks, in law
    steps = check_checkpoints(checkpoints, sgd.steps)
    hyp = hypotheses(problem, scheme, sgd)
    df = _rows(problem, scheme, sgd, steps, hyp, alpha_B, sup)
    approx = (approx_err if convention == "quantized" else approx_err_clean)(problem, scheme.data)
    df["bound_approx"] = approx
    df.insert(1, "bound", df["bound_var"] + df["bound_var_bias"] + df["bound_bias"] + approx)
    df["alpha"] = hyp.alpha
    df["bound_valid"] = hyp.valid
    df["bound_reason"] = hyp.reason
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
    ``d`` and diverges. Additive sums split at ``i_ε = ε^{-1/a}`` (where ``λ_i = ε``). The
    head of BiasErr omits Zou et al.'s ``exp(−NγH^(q))`` (≤ e⁻²); VarErr carries
    ``σ² + 2·ApproxErr`` and ``1/(1 − γα·tr H^(q))`` (``α`` of :func:`fourth_moment_alpha`),
    and the bias-induced term ``2α(Σ_{i≤k*} u_i² + Nγ Σ_{i>k*} λ^(q)_i u_i²)/(Nγ)`` times the
    same factor; it needs ``γα·tr H^(q) < 1``. Unit constants; orders of magnitude only.
    Requires ``a > 1``.
    """
    a, d, n = float(decay), int(dim), float(steps) * float(lr)
    if not a > 1:
        raise ValueError(f"decay (a) must be > 1 for a summable spectrum, got {decay!r}")
    if kind not in ("additive", "multiplicative"):
        raise ValueError(f"kind must be 'additive' or 'multiplicative', got {kind!r}")

    def integral(s: float, lo: float, hi: float) -> float:  # ∫_lo^hi x^(-s) dx
        return (hi ** (1 - s) - lo ** (1 - s)) / (1 - s) if hi > lo else 0.0

    lam = power_law_spectrum(d, a)
    if kind == "multiplicative":
        k = min(d, ((1 + eps) * n) ** (1 / a))
        spread = (1 + eps) ** 2 * integral(2 * a, k, d)
        tail, head_u2 = integral(a, k, d) / (1 + eps), k / (1 + eps) ** 2  # u = w*/(1+ε)
        bias = integral(-a, 0, k) / ((1 + eps) ** 3 * n**2) + tail
        approx = 0.5 * eps / (1 + eps) * float(lam.sum())
        trace = (1 + eps) * float(lam.sum())
        alpha = 3.0 * (1 + 6 * eps + 3 * eps * eps) / (1 + eps) ** 2
    else:
        k = float(d) if eps >= 1 / n else min(d, (1 / n - eps) ** (-1 / a))
        spread = integral(2 * a, k, d) + 2 * eps * integral(a, k, d) + eps**2 * max(d - k, 0)
        # u_i²/λ^(q)_i ≈ 1/λ_i above the floor, λ_i²/ε³ below; λ^(q)_i u_i² ≈ λ_i or λ_i²/ε.
        i_eps = min(float(d), eps ** (-1 / a)) if eps > 0 else float(d)  # where λ_i = ε
        head = integral(-a, 0, min(k, i_eps))
        tail = integral(a, k, max(k, i_eps))
        head_u2 = min(k, i_eps)  # Σ_{i≤k*} u_i², u_i ≈ 1 above the floor, λ_i/ε below
        if i_eps < d:
            head += integral(2 * a, i_eps, k) / eps**3
            tail += integral(2 * a, max(k, i_eps), d) / eps
            head_u2 += integral(2 * a, i_eps, k) / eps**2
        bias = head / n**2 + tail
        approx = 0.5 * float(np.sum(lam * eps / (lam + eps)))
        trace = float(lam.sum()) + d * eps
        alpha = 3.0
    alpha = (alpha + batch - 1) / batch  # step_alpha with only the data quantized
    slack = 1 - float(lr) * alpha * trace
    if slack <= 0:
        raise ValueError(
            f"γ = {lr:g} ≥ 1/(α·tr H^(q)) = {1 / (alpha * trace):.4g}: outside the bound's "
            "hypothesis (lower lr)"
        )
    dim_factor = (k / steps + steps * lr**2 * spread) / slack
    var = (noise + 2 * approx) / batch * dim_factor
    var_bias = 2 * alpha * (head_u2 + n * tail) / n * dim_factor
    total = var + var_bias + bias + approx
    return {
        "k_star": k, "var": var, "var_bias": var_bias, "bias": bias, "approx": approx,
        "total": total,
    }  # fmt: skip


def fp_int_threshold(int_bits: float, decay: float, dim: int) -> float:
    """Corollary 4.3's rule: FP data quantization with ``m`` mantissa bits beats INT with ``b``
    bits when ``m ≥ b − (a/2)·log2(d)`` (``ε_FP = 2^(−2m)``, ``ε_INT = 2^(−2b)``, ``λ_i = i^(-a)``:
    equivalently ``ε_FP·λ_d ≤ ε_INT``). Returns that least ``m``."""
    return float(int_bits) - float(decay) / 2 * math.log2(dim)


def fp_beats_int(mantissa_bits: float, int_bits: float, decay: float, dim: int) -> bool:
    """``m ≥ b − (a/2)·log2(d)`` (see :func:`fp_int_threshold`)."""
    return float(mantissa_bits) >= fp_int_threshold(int_bits, decay, dim)
