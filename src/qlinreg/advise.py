"""The advisor (SPEC §10): which tensor to quantize, to which format, at what cost.

For a problem, ``N``, ``B``, ``γ`` and a budget on the *penalty* (quantized minus full-precision
risk, at ``N`` or as ``N → ∞``, in one risk convention), :func:`advise`:

1. **measures** each candidate format's error on the tensors its role really carries: feature
   rows (data), labels, and the parameters, activations and output gradients of a short
   full-precision pilot run (:func:`role_samples`), each tensor quantized as the engine does
   (one call per step's tensor, so per-tensor and per-vector scales see the same groups);
2. **fits** the error model the measurement prefers (additive, or elementwise multiplicative:
   rounding errors are independent per element, so a rank-one model never describes a format)
   and matches its ε in the norm the risk sees (:func:`surrogate_for`);
3. **predicts** the penalty with the exact risk (:func:`qlinreg.exact_risk`) for each role
   alone and for joint schemes (penalties of different roles are not additive: the joint one
   is computed, never summed);
4. **searches** the cheapest scheme within budget: per role, each role's candidates reduced to
   their cost–penalty Pareto front; jointly, every combination of those fronts when there are
   few (:data:`EXHAUSTIVE`), otherwise a shortlist by cost of those whose *sum* of penalties
   alone is near the budget, each checked by its exact joint penalty until two fit (the
   recommendation and a runner-up), with a greedy descent from all-FP32 as the fallback
   (:func:`_joint_search`, ``docs/advise.md`` §5);
5. **verifies** the recommended scheme and the runner-up by Monte Carlo with the real formats,
   paired with full precision on shared seeds (same features, labels and noise per trial).

Cost (SPEC §10): bits per value (scale overhead included) × values moved per step — data
``B·d``, labels ``B``, parameters ``d``, activations ``B``, output gradients ``B`` — times a
user weight per role, also given as a fraction of all-FP32.

:func:`max_epsilon` is the inverse problem: per role and idealized kind, the largest ε whose
penalty alone stays within budget (bisection on the exact risk).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from qlinreg import prng
from qlinreg.algorithm import SGDConfig, check_run
from qlinreg.problem import Problem
from qlinreg.quantize import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
    Scheme,
    parse_quantizer,
)
from qlinreg.quantize.formats import (
    FloatFormat,
    IntFormat,
    MXFormat,
    NumberFormat,
    NVFP4Format,
    quantize_steps,
)
from qlinreg.quantize.measure import EpsilonEstimate, estimate_epsilon
from qlinreg.quantize.rounding import ROUNDINGS
from qlinreg.quantize.scheme import role_shape
from qlinreg.table import CONVENTIONS
from qlinreg.theory.sampled_moments import SAMPLED_MAX_DIM

__all__ = [
    "DEFAULT_MENU",
    "ROLES",
    "Advice",
    "Advisor",
    "Budget",
    "advise",
    "bits_per_value",
    "max_epsilon",
    "role_samples",
    "surrogate_for",
    "values_per_step",
]

ROLES: tuple[str, ...] = ("data", "labels", "params", "activations", "grads")
Convention = Literal["quantized", "clean"]
Horizon = Literal["N", "inf"]

DEFAULT_MENU: tuple[str, ...] = (
    "fp32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp6_e3m2",
    "fp6_e2m3",
    "fp4_e2m1",
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxfp6_e3m2",
    "mxfp6_e2m3",
    "mxfp4",
    "mxint8",
    "nvfp4",
    "int8",
    "int4",
)
"""Formats considered on every role unless a menu is given; each with :data:`DEFAULT_ROUNDINGS`.
``fp32`` is the reference: the role left in full precision (the engine computes in float32)."""

DEFAULT_ROUNDINGS: tuple[str, ...] = ("stochastic", "nearest_even")

UNDERFLOW_FLAG = 0.10
"""Fraction of nonzero values a floating-point format flushes to zero above which it is
flagged: in the subnormal range its error is additive, above it multiplicative, and one fitted
model describes neither part (INT formats are additive throughout: never flagged for it)."""
SATURATION_FLAG = 0.01
"""Fraction of values above the format's range above which a candidate is flagged."""
BIAS_FLAG = 0.05
"""Share of the error energy that is a systematic shrinkage (``β² E u² / E e²``, saturation or
directed rounding) above which a candidate is flagged: the surrogates are unbiased."""
EXHAUSTIVE = 256
"""Joint search: every combination of the per-role Pareto fronts is checked exactly when there
are at most this many."""
MAX_JOINT_CHECKS = 64
"""Joint search over more combinations: at most this many exact joint checks."""
SLACK = 2.0
"""Joint search: combinations whose sum of penalties alone is within ``SLACK × budget`` are
checked (penalties of different roles interact, mostly sub- or near-additively)."""


# ---- cost -------------------------------------------------------------------------------------


def values_per_step(role: str, batch: int, d: int) -> int:
    """Values a role moves per step: data ``B·d``, parameters ``d``, the others ``B``."""
    return math.prod(role_shape(role, batch, d))


def bits_per_value(q, shape: tuple[int, ...]) -> float:
    """Storage bits per value of quantizer ``q`` on a tensor of ``shape`` (its last axis the
    vector), scale overhead included: FP ``1 + e + m`` (+ an 8-bit power-of-two exponent per
    tensor, vector or block when scaled, one per tensor when delayed); INT ``b`` + a 32-bit
    scale per scale group (one per tensor when delayed; none for a fixed scale); MX element
    bits + an 8-bit (E8M0) scale per block; NVFP4 4 bits + an 8-bit (E4M3) scale per 16 + a
    32-bit scale per tensor. ``None``/:class:`NoQuant`: 32 (FP32)."""
    if q is None or isinstance(q, NoQuant):
        return 32.0
    size, vec = math.prod(shape), shape[-1]

    def group(fmt) -> int:  # values sharing one scale
        if fmt.scaling in ("tensor", "delayed"):
            return size
        return min(fmt.block_size or vec, vec)

    if isinstance(q, FloatFormat):
        return 1 + q.exp_bits + q.man_bits + (8 / group(q) if q.scaling != "none" else 0.0)
    if isinstance(q, IntFormat):
        return float(q.bits) if q.scaling == "fixed" else q.bits + 32 / group(q)
    if isinstance(q, MXFormat):
        element = 8 if q.element == "int8" else bits_per_value(FloatFormat.preset(q.element), (1,))
        return element + 8 / min(q.block_size, vec)
    if isinstance(q, NVFP4Format):
        return 4 + 8 / min(q.block_size, vec) + 32 / size
    raise TypeError(f"no storage cost is known for {type(q).__name__}")


# ---- the tensors each role carries -----------------------------------------------------------


def _draw_batch(problem: Problem, key: jax.Array, batch: int):
    """One batch ``(X, y)`` of the problem (Gaussian, or rows resampled in empirical mode)."""
    if problem.samples is not None:
        idx = prng.index(prng.derive(key, 0), (batch,), problem.samples.n)
        X = jnp.asarray(problem.samples.X, jnp.float32)[idx]
        return X, jnp.asarray(problem.samples.y, jnp.float32)[idx]
    X = problem.features(prng.derive(key, 0), batch)
    xi = prng.normal(prng.derive(key, 1), (batch,), jnp.float32)
    y = X @ jnp.asarray(problem.w_star, jnp.float32) + jnp.float32(math.sqrt(problem.noise)) * xi
    return X, y


PILOT_STEPS = 20_000
"""Longest full-precision pilot run (steps); a longer ``N`` is sampled over its first steps."""
PILOT_RECORDS = 64
"""Points along the pilot at which parameters, activations and gradients are recorded."""
PILOT_VALUES = 2_000_000
"""Cap on the data values sampled (rows × d)."""


def role_samples(problem: Problem, sgd: SGDConfig, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The tensors each role carries, shape ``(K, *role_shape)`` (float32), ``K`` independent
    tensors: data batches ``X_t`` and labels ``y_t`` of the problem; ``w_{t−1}``, the
    activations ``X_t w_{t−1}`` and output gradients ``y_t − X_t w_{t−1}`` of a full-precision
    SGD pilot (one trial, ``min(N, PILOT_STEPS)`` steps, the configured step sizes), recorded at
    :data:`PILOT_RECORDS` geometrically spaced steps, 8 fresh batches each."""
    B, d = sgd.batch, problem.d
    root = prng.key(seed)
    steps = min(sgd.steps, PILOT_STEPS)
    records = np.unique(np.geomspace(1, steps, PILOT_RECORDS).round().astype(np.int64))
    lrs = jnp.asarray(sgd.lr_at(np.arange(1, steps + 1)), jnp.float32)
    w0 = jnp.asarray(sgd.initial(d), jnp.float32)

    @jax.jit
    def advance(w, t0, t1):
        def body(t, w):
            X, y = _draw_batch(problem, prng.derive(root, 1, t), B)
            return w + (lrs[t - 1] / B) * (X.T @ (y - X @ w))

        return jax.lax.fori_loop(t0 + 1, t1 + 1, body, w)

    @jax.jit
    def probe(w, t):
        keys = jax.vmap(lambda j: prng.derive(prng.derive(root, 2, t), j))(jnp.arange(8))
        X, y = jax.vmap(lambda k: _draw_batch(problem, k, B))(keys)
        a = jnp.einsum("kbd,d->kb", X, w)
        return a, y - a

    w, t, out = w0, 0, {"params": [], "activations": [], "grads": []}
    for n in records:
        w = advance(w, t, int(n) - 1)  # w_{n−1}: the iterate step n quantizes
        t = int(n) - 1
        a, g = probe(w, t)
        out["params"].append(np.asarray(w)[None])
        out["activations"].append(np.asarray(a))
        out["grads"].append(np.asarray(g))
    K = int(max(8, min(512, PILOT_VALUES // (B * d))))
    keys = jax.vmap(lambda j: prng.derive(root, 3, j))(jnp.arange(K))
    X, y = jax.jit(jax.vmap(lambda k: _draw_batch(problem, k, B)))(keys)
    res = {k: np.concatenate(v) for k, v in out.items()}
    return {"data": np.asarray(X), "labels": np.asarray(y), **res}


# ---- candidates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """A candidate's error on its role's tensors: the ε estimate, per-coordinate error
    variance ``δ`` and mean square ``E u²`` (last axis), saturated and underflow fractions, and
    the share of the error energy that is a systematic shrinkage: ``β² E u² / E e²`` with
    ``β = E[e u] / E[u²]`` (0 for unbiased rounding, whose error is uncorrelated with ``u``)."""

    estimate: EpsilonEstimate
    delta: np.ndarray
    square: np.ndarray
    saturated: float
    underflow: float
    bias_share: float


def _per_tensor(q) -> bool:
    """Whether ``q``'s scale depends on a whole step's tensor (per tensor, or delayed: the
    amax of earlier tensors), so each tensor must be quantized by itself."""
    return getattr(q, "scaling", None) in ("tensor", "delayed")


def _quantize(q, u: jax.Array, key: jax.Array):
    """``(Q(u), saturated)`` (``saturated`` per entry: above the scaled format's range) with each
    tensor ``u[k]`` quantized as one step's tensor: one call on the whole array when the
    format's scale groups lie along the last axis (the vector; no tensor-wide scale), else one
    call per tensor (vmapped; delayed scaling: the reference from the tensors before,
    :func:`~qlinreg.quantize.formats.quantize_steps`)."""

    def saturated(x, amax=None):
        return q.saturated(x, amax) if isinstance(q, NumberFormat) else jnp.zeros(x.shape, bool)

    if _per_tensor(q):

        def each(u, key):
            keys = jax.vmap(lambda j: prng.derive(key, j))(jnp.arange(u.shape[0]))
            uq, ref = quantize_steps(q, keys, u)
            sat = jax.vmap(saturated)(u) if ref is None else jax.vmap(saturated)(u, ref)
            return uq, sat

        return jax.jit(each)(u, key)
    return jax.jit(lambda u, key: (q(key, u), saturated(u)))(u, key)


def measure_roles(q, samples: Mapping[str, np.ndarray], *, seed: int = 0) -> dict:
    """:class:`Measurement` of ``q`` on each role's tensors (``samples[role]``, shape
    ``(K, *role_shape)``). Roles whose tensors have the same vector length are quantized in one
    call (one compilation per format and vector length)."""
    groups: dict[tuple, list[str]] = {}
    for role, u in samples.items():
        groups.setdefault((role,) if _per_tensor(q) else u.shape[-1:], []).append(role)
    out = {}
    for g, (_, roles) in enumerate(groups.items()):
        flat = [np.asarray(samples[r], np.float32) for r in roles]
        if _per_tensor(q):
            u = jnp.asarray(flat[0])
        else:
            u = jnp.asarray(np.concatenate([a.reshape(-1, a.shape[-1]) for a in flat]))
        uq, sat = _quantize(q, u, prng.derive(prng.key(seed), 4, g))
        uq, sat = np.asarray(uq, np.float64), np.asarray(sat)
        start = 0
        for role, a in zip(roles, flat, strict=True):
            n = a.shape[0] if _per_tensor(q) else a.size // a.shape[-1]
            part_u = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
            part_q = uq[start : start + n].reshape(part_u.shape)
            part_s = sat[start : start + n]
            start += n
            out[role] = _measurement(part_u, part_q, part_s)
    return out


def _measurement(u: np.ndarray, uq: np.ndarray, saturated: np.ndarray) -> Measurement:
    """The statistics of one role's values ``u`` (rows: vectors), their quantized ``uq`` and the
    per-entry saturation mask."""
    err = uq - u
    err2, u2 = err**2, u**2
    under = float(np.mean((u != 0) & (uq == 0)))
    e2, s2 = float(err2.mean()), float(u2.mean())
    share = (float(np.mean(err * u)) ** 2 / s2) / e2 if e2 > 0 and s2 > 0 else 0.0
    return Measurement(
        estimate_epsilon(u, uq), err2.mean(axis=0), u2.mean(axis=0),
        float(np.mean(saturated)), under, share,
    )  # fmt: skip


def surrogate_for(role: str, m: Measurement, problem: Problem):
    """The idealized quantizer standing in for a measured format on ``role`` (SPEC §3), its ε
    matched in the norm the risk sees:

    - data: the error energy ``tr D = Σ δ_i`` (:func:`qlinreg.theory.quantized_data.surrogate`,
      which keeps ``tr H^(q)``);
    - parameters: ``E[e_pᵀ H e_p] = Σ H_ii δ_i`` (the update sees ``Q_d(X) e_p``): additive
      ``ε = Σ H_ii δ_i / tr H``, elementwise multiplicative ``ε = Σ H_ii δ_i / Σ H_ii E w_i²``;
    - labels, activations, output gradients: additive ``ε = E e²``, elementwise multiplicative
      ``ε = E e² / E u²`` (per-sample scalars).

    The model is the measured one (additive or multiplicative); no error at all gives
    :class:`NoQuant`."""
    from qlinreg.theory.quantized_data import surrogate

    model = m.estimate.model
    if model == "exact" or not np.any(m.delta > 0):
        return NoQuant()
    if role == "data":
        return surrogate(model, m.delta, problem)
    if role == "params":
        h = np.diag(problem.covariance) if problem.basis is not None else problem.spectrum
        energy = float(h @ m.delta)
        if model == "additive":
            return Additive(energy / float(h.sum()))
        return MultiplicativeElementwise(energy / max(float(h @ m.square), 1e-300))
    e2, u2 = float(m.delta.mean()), float(m.square.mean())
    if model == "additive":
        return Additive(e2)
    return MultiplicativeElementwise(e2 / max(u2, 1e-300))


def _flags(
    q, role: str, m: Measurement, shape: tuple[int, ...], empirical: bool, own_moments: bool
) -> list[str]:
    """Why a candidate's surrogate is known not to describe it (thresholds above). The
    surrogates draw a fresh, unbiased error at every step; a deterministic rounding (nearest,
    toward zero) of a value that recurs makes the same error again: the iterate changes slowly
    (its rounding error persists, as low-precision weight storage stalls), and a data set's
    rows are resampled (each row's rounding error is fixed: a different data set). A candidate
    predicted from its own moments (``own_moments``: data and labels, docs/theory.md §14) has
    none of the surrogate's failures; only the first and the last flag apply to it."""
    flags = []
    if hasattr(q, "exact_on") and q.exact_on(shape):
        flags.append("scale group of one element (the role is left exact)")
    deterministic = getattr(q, "rounding", "stochastic") != "stochastic"
    if own_moments:
        if deterministic and empirical:
            flags.append("deterministic rounding of resampled rows: each row's error is fixed")
        return flags
    floating = isinstance(q, FloatFormat) or (isinstance(q, MXFormat) and q.element != "int8")
    if floating and m.underflow > UNDERFLOW_FLAG:
        flags.append(f"{m.underflow:.0%} of values flush to zero (subnormal range)")
    if m.saturated > SATURATION_FLAG:
        flags.append(f"{m.saturated:.1%} of values saturate")
    if m.bias_share > BIAS_FLAG:
        flags.append(f"biased: {m.bias_share:.0%} of the error energy is a shrinkage")
    if deterministic and role == "params":
        flags.append("deterministic rounding of the iterate: its error persists across steps")
    if deterministic and empirical and role in ("data", "labels"):
        flags.append("deterministic rounding of resampled rows: each row's error is fixed")
    return flags


MAX_ESTIMATED = 4
"""Shared-scale formats per role whose penalty is predicted from estimated moments (each costs
seconds: :data:`ADVISE_SAMPLES` rows quantized)."""


def _prediction(q, role: str, problem: Problem) -> str:
    """How a candidate's penalty is predicted: ``exact`` (a format on a fixed grid on the data
    or labels of a diagonal problem: its own moments), ``estimated`` (a shared-scale format
    there, ``d ≤ SAMPLED_MAX_DIM``: moments from sampled rows), ``surrogate`` (parameters,
    activations, gradients — their values depend on the iterate —, delayed scales, shared
    scales at larger ``d``, and full covariances)."""
    from qlinreg.theory.format_moments import scalar_grid

    if role not in ("data", "labels") or problem.basis is not None:
        return "surrogate"
    if getattr(q, "scaling", None) == "delayed":  # steps share a scale: no exact recursion
        return "surrogate"
    try:
        grid = scalar_grid(q)
    except ValueError:  # an INT grid not symmetric about 0: no exact theory
        return "surrogate"
    if grid is not None:
        return "exact"
    return "estimated" if problem.d <= SAMPLED_MAX_DIM else "surrogate"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _parse_candidate(text: str, role: str | None = None):
    """A menu entry as ``-q ROLE=TEXT`` parses it (with the role's defaults, e.g. delayed
    scaling of INT and NVFP4 on the length-``B`` roles)."""
    q = parse_quantizer(text, role)
    if not isinstance(q, NumberFormat):
        raise ValueError(f"menu: {text!r} is not a number format (e.g. fp8_e4m3, int8, mxfp4)")
    return q


def _menu(menu: Mapping[str, Sequence[str]] | Sequence[str] | None, roles, roundings):
    """``{role: [format text, …]}`` from a menu for all roles or per role; each format without
    a rounding gets every one of ``roundings``; ``fp32`` stays the reference."""
    if menu is None:
        menu = DEFAULT_MENU
    per_role = dict(menu) if isinstance(menu, Mapping) else {r: list(menu) for r in roles}
    unknown = sorted(set(per_role) - set(ROLES))
    if unknown:
        raise ValueError(f"menu: unknown role(s) {', '.join(unknown)}; allowed: {', '.join(ROLES)}")
    out = {}
    for role in roles:
        texts = []
        for name in per_role.get(role, ()):
            name = str(name).strip()
            if name in ("fp32", "none"):
                continue
            _parse_candidate(name)  # unknown names fail here, naming them
            given = any(tok in roundings or tok in ROUNDINGS for tok in name.split(":"))
            texts += [name] if given else [f"{name}:{r}" for r in roundings]
        out[role] = list(dict.fromkeys(texts))
    return out


# ---- penalties ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """The penalty allowed: ``value`` (absolute, or × the full-precision risk if ``relative``)
    in one risk ``convention``, at ``N`` or as ``N → ∞`` (``horizon``)."""

    value: float
    relative: bool = False
    convention: Convention = "quantized"
    horizon: Horizon = "N"

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"budget must be a finite number > 0, got {v!r}")
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}"
            )
        if self.horizon not in ("N", "inf"):
            raise ValueError(f"horizon must be 'N' or 'inf', got {self.horizon!r}")


N_INF = 10**12
"""Steps standing in for ``N → ∞`` when a number format on the labels (whose bias also moves
the fixed point) rules out the closed-form floor: the closed form's cost does not grow with
``N``, and the Polyak variance left there is ``O(σ² d / N)``."""
ADVISE_SAMPLES = 1 << 13
"""Rows sampled to estimate the moments of a shared-scale format on data or labels
(:mod:`qlinreg.theory.sampled_moments`; its default is 4× more): the advisor's cost."""


class _Penalties:
    """Exact penalties of schemes (cached by their description) against full precision. A
    scheme may hold number formats on the data and labels (exact moments, or moments estimated
    from sampled rows for shared scales, with a standard error: docs/theory.md §14) and
    idealized quantizers anywhere."""

    def __init__(self, problem: Problem, sgd: SGDConfig, horizon: Horizon, seed: int = 0):
        from qlinreg.theory.exact import check_exact

        if horizon == "inf" and sgd.average == "last":
            raise ValueError(
                "horizon 'inf' needs the Polyak or tail average (the last iterate keeps a "
                "variance floor that depends on γ, not on the quantizers alone)"
            )
        self.problem, self.sgd, self.horizon, self.seed = problem, sgd, horizon, seed
        self._cache: dict[str, dict[str, float]] = {}
        check_exact(problem, Scheme(), sgd)
        self.full = self.risks(Scheme())

    def risks(self, scheme: Scheme) -> dict[str, float]:
        """``{convention: risk, convention_se: its standard error, "moments": how}`` at ``N``
        (or as ``N → ∞``) of ``scheme``."""
        key = scheme.describe()
        if key not in self._cache:
            self._cache[key] = self._compute(scheme)
        return self._cache[key]

    def _compute(self, scheme: Scheme) -> dict[str, float]:
        import warnings

        from qlinreg.theory import approx_err, approx_err_clean, exact_risk

        formats = any(isinstance(q, NumberFormat) for _, q in scheme.items())
        if self.horizon == "inf" and not formats:
            # The averaged iterate converges to w*^(q): its risk tends to ApproxErr (quantized
            # inputs) and ½‖w*^(q) − w*‖²_H (clean); only the data quantizer leaves a floor
            # (unbiased quantizers elsewhere add variance that averaging removes).
            q = scheme.data
            floors = {"quantized": approx_err(self.problem, q)}
            floors["clean"] = approx_err_clean(self.problem, q)
            return {**floors, "quantized_se": 0.0, "clean_se": 0.0, "moments": "exact"}
        sgd = self.sgd if self.horizon == "N" else replace(self.sgd, steps=N_INF, schedule=())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # instability: reported as inf
            try:
                res = exact_risk(self.problem, scheme, sgd, [sgd.steps],
                                 samples=ADVISE_SAMPLES, seed=self.seed)  # fmt: skip
            except ValueError:
                # biased data with biased labels need estimated moments, for d ≤ 512 only
                if not formats or self.problem.d <= SAMPLED_MAX_DIM:
                    raise
                res = exact_risk(self.problem, scheme, sgd, [sgd.steps], surrogate=True,
                                 seed=self.seed)  # fmt: skip
        out = {"moments": res.moments}
        for conv, risk, se in (("quantized", res.exact_risk, res.risk_se),
                               ("clean", res.exact_risk_clean, res.risk_clean_se)):  # fmt: skip
            v = float(risk[-1])
            out[conv] = v if math.isfinite(v) else math.inf
            out[f"{conv}_se"] = float(se[res.average][-1]) if se is not None else 0.0
        return out

    def penalty(self, scheme: Scheme, convention: str) -> float:
        return self.risks(scheme)[convention] - self.full[convention]

    def penalty_se(self, scheme: Scheme, convention: str) -> float:
        """Standard error of :meth:`penalty` (from estimated moments; 0 when exact)."""
        se = self.risks(scheme)[f"{convention}_se"]
        return float(se) if math.isfinite(se) else 0.0


# ---- the advice -----------------------------------------------------------------------------


@dataclass
class Advice:
    """What :func:`advise` found. Tables are pandas DataFrames; see ``to_json``."""

    budget: Budget
    budget_abs: float
    full_risk: float
    candidates: pd.DataFrame
    joint: pd.DataFrame
    recommended: dict
    runner_up: dict | None
    per_role: dict[str, str]
    batches: pd.DataFrame
    verification: pd.DataFrame
    setting: dict
    notes: list[str] = field(default_factory=list)

    @property
    def quant(self) -> list[str]:
        """``ROLE=FORMAT:ROUNDING`` strings of the recommendation (for ``qlinreg run -q``)."""
        return list(self.recommended["quant"])

    def to_json(self) -> dict:
        ver = self.verification
        rec = ver[ver["scheme"] == "recommended"] if len(ver) else ver
        vp = float(rec["penalty"].iloc[0]) if len(rec) else None
        vse = float(rec["penalty_se"].iloc[0]) if len(rec) else None
        return {
            "quant": self.quant,
            "predicted_penalty": self.recommended["penalty"],
            "verified_penalty": vp,
            "verified_se": vse,
            "cost_bits_per_step": self.recommended["bits_per_step"],
            "cost_fraction_of_fp32": self.recommended["cost_fraction"],
            "budget": self.budget_abs,
            "budget_given": self.budget.value,
            "relative": self.budget.relative,
            "convention": self.budget.convention,
            "horizon": self.budget.horizon,
            "full_precision_risk": self.full_risk,
            "per_role": self.per_role,
            "runner_up": None if self.runner_up is None else self.runner_up["quant"],
            "setting": self.setting,
            "notes": self.notes,
        }


def _verdict_reason(role: str, q, kind: str) -> str:
    """The paper's reading of a role's error (SPEC §4): which mechanism a kind of error hits."""
    if isinstance(q, NoQuant):
        return "no error: kept in full precision"
    additive = kind == "additive"
    return {
        "data": "spectral distortion: H^(q) = H + εI lifts the small eigenvalues and leaves an "
        "approximation error"
        if additive
        else "approximation error ε/(1+ε)·‖w*‖²_H; the spectrum keeps its shape",
        "labels": "label noise σ² + ε, divided by B like label noise"
        if additive
        else "label noise ε·E y², divided by B",
        "params": "noise amplification: ε·tr(H) enters σ_G² whatever B"
        if additive
        else "noise ε·‖w‖²_H, not divided by B",
        "activations": "noise divided by B (Corollary 4.1)"
        if additive
        else "couples with ‖w‖²_H; the rank-one part does not shrink with B",
        "grads": "noise divided by B (Corollary 4.1)"
        if additive
        else "scales the gradient noise by 1 + ε",
    }[role]


def _kind(q) -> str:
    if isinstance(q, Additive):
        return "additive"
    if isinstance(q, MultiplicativeElementwise):
        return "multiplicative_elementwise"
    if isinstance(q, Multiplicative):
        return "multiplicative"
    return "none"


class Advisor:
    """The budget-independent part of the advice: the pilot, each candidate's measurement and
    surrogate (one pass over the menu), then any number of budgets (:meth:`advise`).

    Args:
        problem, sgd: the setting (``sgd.storage`` must be unset).
        roles: roles that may be quantized (others stay in full precision).
        menu: candidate formats, for every role or ``{role: [...]}`` (default
            :data:`DEFAULT_MENU`); a name without a rounding is tried with each of ``roundings``.
        cost_weights: weight per role of its bits (default 1 each).
        seed: seed of the pilot, the measurements and the verification.
        risk_offset: a constant in every risk of this setting that no quantizer changes: the
            sketch's approximation error ``½‖w* − Sᵀv*‖²_H`` when ``problem`` is a sketched
            model's reduction (:func:`qlinreg.sketch.sketched_model`). Penalties do not see it;
            the full-precision risk (and a relative budget) does.
        progress: optional callable ``progress(message)``.
    """

    def __init__(
        self,
        problem: Problem,
        sgd: SGDConfig,
        *,
        roles: Sequence[str] = ROLES,
        menu: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        roundings: Sequence[str] = DEFAULT_ROUNDINGS,
        cost_weights: Mapping[str, float] | None = None,
        seed: int = 0,
        risk_offset: float = 0.0,
        progress=None,
    ):
        self.say = progress or (lambda _msg: None)
        self.offset = float(risk_offset)
        check_run(problem, None, sgd)
        if sgd.storage is not None:
            raise ValueError("advise: low-precision weight storage (storage) is not supported")
        self.roles = _check_roles(roles)
        roundings = tuple(roundings)
        for r in roundings:
            if r not in ROUNDINGS:
                raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {r!r}")
        self.weights = _check_weights(cost_weights)
        self.seed = _nonneg_int("seed", seed)
        menu_texts = _menu(menu, self.roles, roundings)
        self.problem, self.sgd = problem, sgd
        B, d = sgd.batch, problem.d
        self._penalties: dict[str, _Penalties] = {}
        self._baseline: dict[int, np.ndarray] = {}
        self.pen("N")  # the exact risk exists for this setting (else: one clear error)

        self.say("pilot run and tensors per role")
        samples = role_samples(problem, sgd, seed=seed)
        self.total_fp32 = sum(32.0 * values_per_step(r, B, d) * self.weights[r] for r in ROLES)
        self.rows, self.options = [], {r: [] for r in ROLES}
        texts = list(dict.fromkeys(t for role in self.roles for t in menu_texts[role]))
        self.say(f"measuring {len(texts)} formats on {len(self.roles)} roles")
        for i, text in enumerate(texts):
            parsed = {r: _parse_candidate(text, r) for r in self.roles if text in menu_texts[r]}
            measured = {}
            for q in dict.fromkeys(parsed.values()):  # roles whose defaults agree: one call
                want = {r: samples[r] for r, qr in parsed.items() if qr == q}
                measured |= measure_roles(q, want, seed=seed + 1 + i)
            for role, q in parsed.items():
                shape, m = role_shape(role, B, d), measured[role]
                sur = surrogate_for(role, m, problem)
                bits = bits_per_value(q, shape)
                how = _prediction(q, role, problem)
                flags = _flags(q, role, m, shape, problem.samples is not None, how != "surrogate")
                row = {
                    "role": role,
                    "format": q.label.split(":")[0],
                    "rounding": q.rounding,
                    "quant": f"{role}={q.label}",
                    "bits_per_value": bits,
                    "bits_per_step": bits * values_per_step(role, B, d) * self.weights[role],
                    "eps_additive": m.estimate.eps_additive,
                    "eps_multiplicative": m.estimate.eps_multiplicative,
                    "error_model": m.estimate.model,
                    "surrogate": sur.label if hasattr(sur, "label") else str(sur),
                    "surrogate_eps": float(getattr(sur, "eps", 0.0)),
                    "bias_share": m.bias_share,
                    "saturated": m.saturated,
                    "underflow": m.underflow,
                    "prediction": how,
                    "flags": "; ".join(flags),
                }
                self.rows.append(row)
                self.options[role].append((row, q if how == "exact" else sur, q, sur))
        order = {r: i for i, r in enumerate(ROLES)}
        self.rows.sort(key=lambda r: order[r["role"]])

    def pen(self, horizon: str) -> _Penalties:
        """The exact penalties at ``horizon`` (cached)."""
        if horizon not in self._penalties:
            self._penalties[horizon] = _Penalties(self.problem, self.sgd, horizon, self.seed)
        return self._penalties[horizon]

    def candidates(self, budget: Budget, allow_flagged: bool = False) -> pd.DataFrame:
        """One row per role × candidate with its predicted penalty alone in ``budget``'s
        convention and horizon (``predicted_se`` its standard error), whether that is within
        budget, and whether it may be recommended (``eligible``: unflagged, or
        ``allow_flagged``; a shared-scale format whose moments were not estimated never is).

        ``prediction`` says how: ``exact`` (the format's own moments: data and labels of a
        diagonal problem on a fixed grid), ``estimated`` (a shared-scale format on data or labels:
        moments from sampled rows, at most :data:`MAX_ESTIMATED` per role — those whose
        surrogate penalty is within ``SLACK ×`` the budget, cheapest first), ``surrogate``."""
        pen, conv = self.pen(budget.horizon), budget.convention
        limit = self.budget_abs(budget)
        rows = []
        for role in ROLES:
            estimated = 0
            for row, pred_q, q, sur in sorted(self.options[role],
                                              key=lambda o: o[0]["bits_per_step"]):  # fmt: skip
                out = {**row, "eligible": bool(allow_flagged or not row["flags"])}
                scheme = Scheme(**{role: pred_q})
                if row["prediction"] == "estimated":
                    p_sur = pen.penalty(Scheme(**{role: sur}), conv)
                    if out["eligible"] and p_sur <= SLACK * limit and estimated < MAX_ESTIMATED:
                        self.say(f"{row['quant']}: moments estimated from sampled rows")
                        scheme, estimated = Scheme(**{role: q}), estimated + 1
                    else:
                        out.update(prediction="surrogate", eligible=False,
                                   flags=_join(row["flags"], "shared scale: moments not "
                                               "estimated (surrogate shown)"))  # fmt: skip
                        scheme = Scheme(**{role: sur})
                p = pen.penalty(scheme, conv)
                out.update(predicted_penalty=p, predicted_se=pen.penalty_se(scheme, conv),
                           within_budget=bool(p <= limit))  # fmt: skip
                out["_scheme_q"] = getattr(scheme, role)
                rows.append(out)
        order = {r: i for i, r in enumerate(ROLES)}
        rows.sort(key=lambda r: (order[r["role"]], r["quant"]))
        return pd.DataFrame(rows)

    def budget_abs(self, budget: Budget) -> float:
        """The budget as an absolute penalty (× the full-precision risk if relative)."""
        full = self.full_risk(budget)
        if budget.relative and not full > 0:
            raise ValueError("budget: a relative budget needs a full-precision risk > 0")
        return budget.value * full if budget.relative else budget.value

    def full_risk(self, budget: Budget) -> float:
        """The full-precision risk in ``budget``'s convention and horizon (offset included)."""
        return self.pen(budget.horizon).full[budget.convention] + self.offset

    def advise(
        self,
        budget: Budget,
        *,
        trials: int = 32,
        allow_flagged: bool = False,
        max_batch: int = 1024,
    ) -> Advice:
        """The cheapest scheme within ``budget`` (module docstring), verified by ``trials``
        Monte Carlo trials (0: none); ``allow_flagged`` lets candidates whose surrogate is known
        to fail be recommended; ``max_batch``: largest batch size of the batch-size table."""
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a qlinreg.advise.Budget, got {type(budget).__name__}")
        trials = _nonneg_int("trials", trials)
        problem, sgd, conv = self.problem, self.sgd, budget.convention
        B, d = sgd.batch, problem.d
        pen = self.pen(budget.horizon)
        budget_abs = self.budget_abs(budget)
        candidates = self.candidates(budget, allow_flagged)
        options = {role: [] for role in ROLES}
        for r in candidates.to_dict("records"):
            options[r["role"]].append((r, r.pop("_scheme_q")))
        candidates = candidates.drop(columns="_scheme_q")

        # Per role: the cheapest candidate within budget alone (eligible), else FP32.
        per_role, fronts = {}, {}
        for role in ROLES:
            ref = _fp32_option(role, B, d, self.weights)
            opts = [(r, s) for r, s in options[role] if r["eligible"] and np.isfinite(
                r["predicted_penalty"])]  # fmt: skip
            fits = [o for o in opts if o[0]["within_budget"]]
            best = min(fits, key=lambda o: (o[0]["bits_per_step"], o[0]["predicted_penalty"]),
                       default=ref)  # fmt: skip
            per_role[role] = best[0]["quant"]
            near = [o for o in opts if o[0]["predicted_penalty"] <= budget_abs * SLACK]
            fronts[role] = _pareto([ref, *near])
        usable = candidates["within_budget"] & candidates["eligible"]
        if not usable.any():
            best = candidates.loc[candidates["predicted_penalty"].idxmin()]
            raise ValueError(
                f"budget: no candidate format meets the budget {budget_abs:.4g} ({conv} "
                f"inputs, horizon {budget.horizon}): the smallest predicted penalty is "
                f"{best['predicted_penalty']:.4g} ({best['quant']}"
                f"{', flagged' if best['flags'] else ''}); raise the budget or add formats"
            )

        self.say("joint search")
        joint = _joint_search(fronts, pen, conv, budget_abs, self.total_fp32)
        fitting = joint[joint["checked"] & (joint["penalty"] <= budget_abs)].sort_values(
            ["bits_per_step", "penalty"]
        )
        rec = fitting.iloc[0].to_dict()
        runner = fitting.iloc[1].to_dict() if len(fitting) > 1 else None
        for r in (rec, runner):
            if r is not None:
                r["quant"] = [q for q in r["quant"].split(" ") if q]

        batches = _batch_table(problem, sgd, options, budget, budget_abs, max_batch, rec)

        verification = pd.DataFrame()
        if trials:
            self.say(f"verification: Monte Carlo, {trials} trials, real formats")
            verification = self._verify(rec, runner, trials, conv, budget_abs)
        notes = _notes(budget, sgd, verification, candidates)
        setting = {
            "dim": d, "batch": B, "lr": sgd.lr, "steps": sgd.steps, "average": sgd.average,
            "problem": problem.name or "synthetic", "data_mode": problem.data_mode,
            "roles": list(self.roles), "cost_weights": self.weights,
        }  # fmt: skip
        return Advice(
            budget=budget, budget_abs=budget_abs, full_risk=self.full_risk(budget),
            candidates=candidates, joint=joint, recommended=rec, runner_up=runner,
            per_role=per_role, batches=batches, verification=verification, setting=setting,
            notes=notes,
        )  # fmt: skip

    def _finals(self, scheme: Scheme, trials: int):
        """Per-trial ``(risk, risk_clean)`` at ``N`` of a Monte Carlo run (seed shared by
        every scheme: trial ``k`` sees the same features, labels and label noise), or the
        run's message if it did not finish."""
        from qlinreg.pipeline import RunSpec, run

        spec = RunSpec(self.problem, scheme, self.sgd, trials=trials, seed=self.seed,
                       checkpoints=[self.sgd.steps])  # fmt: skip
        res = run(spec)
        if res.status != "ok":
            return None, res.message or res.status
        sim = res.simulation
        return {"quantized": sim.risk[-1], "clean": sim.risk_clean[-1]}, ""

    def _verify(self, rec, runner, trials, conv, budget_abs) -> pd.DataFrame:
        """Monte Carlo of the real formats of ``rec`` and ``runner``, paired with full
        precision (its run cached across budgets)."""
        if trials not in self._baseline:
            self._baseline[trials] = self._finals(Scheme(), trials)
        base, msg = self._baseline[trials]
        rows = []
        for name, r in (("recommended", rec), ("runner-up", runner)):
            if r is None:
                continue
            row = {"scheme": name, "quant": " ".join(r["quant"]), "predicted": r["penalty"],
                   "penalty": math.nan, "penalty_se": math.nan, "within_budget": False,
                   "agrees": False}  # fmt: skip
            vals, why = self._finals(Scheme.parse(r["quant"]), trials) if base else (None, "")
            if base is None or vals is None:
                rows.append({**row, "status": why or f"full precision: {msg}"})
                continue
            diff = np.asarray(vals[conv], np.float64) - np.asarray(base[conv], np.float64)
            mean = float(diff.mean())
            se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.nan
            rows.append({**row, "penalty": mean, "penalty_se": se,
                         "within_budget": bool(mean <= budget_abs + 3 * se),
                         "agrees": agrees(r["penalty"], mean, se), "status": "ok"})  # fmt: skip
        return pd.DataFrame(rows)


def advise(
    problem: Problem,
    sgd: SGDConfig,
    budget: Budget,
    *,
    roles: Sequence[str] = ROLES,
    menu: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    roundings: Sequence[str] = DEFAULT_ROUNDINGS,
    cost_weights: Mapping[str, float] | None = None,
    trials: int = 32,
    seed: int = 0,
    allow_flagged: bool = False,
    max_batch: int = 1024,
    risk_offset: float = 0.0,
    progress=None,
) -> Advice:
    """The cheapest quantization scheme within ``budget``, verified: :class:`Advisor` (its
    arguments) then :meth:`Advisor.advise` (``trials``, ``allow_flagged``, ``max_batch``)."""
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a qlinreg.advise.Budget, got {type(budget).__name__}")
    advisor = Advisor(
        problem, sgd, roles=roles, menu=menu, roundings=roundings, cost_weights=cost_weights,
        seed=seed, risk_offset=risk_offset, progress=progress,
    )  # fmt: skip
    return advisor.advise(budget, trials=trials, allow_flagged=allow_flagged, max_batch=max_batch)


def _check_roles(roles) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(roles))
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}, got {list(roles)!r}")
    return roles


def _check_weights(weights) -> dict[str, float]:
    out = dict.fromkeys(ROLES, 1.0)
    for role, w in (weights or {}).items():
        if role not in ROLES:
            raise ValueError(f"cost weights: unknown role {role!r}; allowed: {', '.join(ROLES)}")
        ok = isinstance(w, int | float) and not isinstance(w, bool)
        if not ok or not math.isfinite(w) or w < 0:
            raise ValueError(f"cost weights: {role} must be a finite number ≥ 0, got {w!r}")
        out[role] = float(w)
    if not any(out.values()):
        raise ValueError("cost weights: at least one role must weigh > 0")
    return out


def _nonneg_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
        raise ValueError(f"{name} must be an integer ≥ 0, got {v!r}")
    return int(v)


def _fp32_option(role: str, B: int, d: int, weights) -> tuple[dict, NoQuant]:
    bits = 32.0 * values_per_step(role, B, d) * weights[role]
    row = {"role": role, "quant": "", "bits_per_step": bits, "predicted_penalty": 0.0}
    return row, NoQuant()


def _pareto(opts: list[tuple[dict, object]]) -> list[tuple[dict, object]]:
    """The options no other option beats on both cost and penalty, cheapest first."""
    cost = np.array([o[0]["bits_per_step"] for o in opts], float)
    penalty = np.array([o[0]["predicted_penalty"] for o in opts], float)
    mask = _front_mask(cost, penalty)
    return [opts[i] for i in np.lexsort((penalty, cost)) if mask[i]]


def _joint_search(fronts, pen: _Penalties, conv: str, budget: float, total_fp32: float):
    """Joint schemes over the per-role fronts, each checked by its exact joint penalty:

    - at most :data:`EXHAUSTIVE` combinations: all of them;
    - more: (1) those whose sum of penalties alone is within the budget, in order of cost,
      until two fit; (2) those whose sum is within ``SLACK × budget`` and that are cheaper than
      the second fit (a joint penalty below the sum), in order of cost — together at most
      :data:`MAX_JOINT_CHECKS` checks; (3) if fewer than two fit, a greedy descent from
      all-FP32: repeatedly take, among the moves to the next cheaper option of one role's
      front, the one saving the most bits whose joint penalty still fits.

    Returns one row per combination: ``quant, bits_per_step, cost_fraction,
    penalty_additive`` (the sum), ``penalty`` (exact where ``checked``, else the sum),
    ``checked``, ``pareto``."""
    roles = list(fronts)
    combos = list(itertools.product(*(range(len(fronts[r])) for r in roles)))
    index = {c: i for i, c in enumerate(combos)}
    opt = [[fronts[r][k] for r, k in zip(roles, c, strict=True)] for c in combos]
    cost = np.array([sum(o[0]["bits_per_step"] for o in c) for c in opt])
    additive = np.array([sum(o[0]["predicted_penalty"] for o in c) for c in opt])
    checked = np.zeros(len(combos), bool)
    joint = np.full(len(combos), np.nan)

    def check(i) -> bool:
        if not checked[i]:
            scheme = Scheme(**{r: o[1] for r, o in zip(roles, opt[i], strict=True)})
            joint[i] = pen.penalty(scheme, conv)
            checked[i] = True
        return bool(joint[i] <= budget)

    order = np.lexsort((additive, cost))
    if len(combos) <= EXHAUSTIVE:
        for i in order:
            check(i)
    else:
        fits = []
        for i in order:
            if len(fits) == 2 or checked.sum() >= MAX_JOINT_CHECKS:
                break
            if additive[i] <= budget and check(i):
                fits.append(i)
        limit = cost[fits[-1]] if len(fits) == 2 else math.inf
        for i in order:
            if checked.sum() >= MAX_JOINT_CHECKS or cost[i] >= limit:
                break
            if budget < additive[i] <= SLACK * budget:
                check(i)
        if int(np.sum(checked & (joint <= budget))) < 2:
            # greedy descent from the most expensive option of every front (FP32 included)
            state = tuple(len(fronts[r]) - 1 for r in roles)
            check(index[state])
            while True:
                moves = [state[:j] + (state[j] - 1,) + state[j + 1 :]
                         for j in range(len(roles)) if state[j] > 0]  # fmt: skip
                moves.sort(key=lambda m: cost[index[m]])
                nxt = next((m for m in moves if check(index[m])), None)
                if nxt is None:
                    break
                state = nxt
    rows = []
    for i, c in enumerate(opt):
        quant = " ".join(o[0]["quant"] for o in c if o[0]["quant"])
        rows.append({
            "quant": quant, "bits_per_step": cost[i], "cost_fraction": cost[i] / total_fp32,
            "penalty_additive": additive[i], "penalty": joint[i] if checked[i] else additive[i],
            "checked": bool(checked[i]),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    df["pareto"] = _front_mask(df["bits_per_step"].to_numpy(), df["penalty"].to_numpy())
    return df


def _front_mask(cost: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Where no other point is at most as costly with a lower penalty (ties: the first)."""
    order = np.lexsort((penalty, cost))
    mask, best = np.zeros(cost.size, bool), math.inf
    for i in order:
        if penalty[i] < best:
            mask[i], best = True, penalty[i]
    return mask


def _batch_table(problem, sgd, options, budget, budget_abs, max_batch, rec):
    """Labels, activations, output gradients: for each candidate cheaper per value than the
    role's choice, the smallest ``B`` (powers of two ≤ ``max_batch``) at which its penalty alone
    is within budget — ε as measured at the given ``B`` (additive errors on these roles fall
    as ``1/B``; a per-vector scale's ε itself changes with ``B``: verify with ``qlinreg run``)."""
    rows = []
    chosen = {q.split("=")[0]: q for q in rec["quant"]}
    Bs = [b for b in (2**k for k in range(0, 31)) if b <= max_batch]
    pens = {}
    for role in ("labels", "activations", "grads"):
        ref_bits = next((r["bits_per_value"] for r, _ in options[role] if r["quant"] ==
                         chosen.get(role)), 32.0)  # fmt: skip
        for row, sur in options[role]:
            if row["bits_per_value"] >= ref_bits or not row["eligible"]:
                continue
            found = None
            for b in Bs:
                if b not in pens:
                    pens[b] = _Penalties(problem, replace(sgd, batch=b), budget.horizon)
                pb = pens[b]
                p = pb.penalty(Scheme(**{role: sur}), budget.convention)
                lim = budget.value * pb.full[budget.convention] if budget.relative else budget_abs
                if p <= lim:
                    found = (b, p)
                    break
            rows.append({
                "role": role, "quant": row["quant"], "bits_per_value": row["bits_per_value"],
                "min_batch": found[0] if found else None,
                "penalty_at_min_batch": found[1] if found else None,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["role", "quant", "bits_per_value", "min_batch",
                                       "penalty_at_min_batch"])  # fmt: skip


def agrees(predicted: float, measured: float, se: float) -> bool:
    """Prediction and Monte Carlo agree: within 3 SE + 10 % of the prediction (the surrogate's
    one-number ε is an approximation of a format's error law)."""
    return bool(abs(measured - predicted) <= 3 * se + 0.1 * abs(predicted))


def _notes(budget, sgd, verification, candidates) -> list[str]:
    notes = []
    if budget.horizon == "inf":
        notes.append("horizon inf: the floor as N → ∞ (only data quantization leaves one); "
                     f"the Monte Carlo check runs at N = {sgd.steps}")  # fmt: skip
    if sgd.steps > PILOT_STEPS:
        notes.append(f"parameters, activations and gradients were measured over the first "
                     f"{PILOT_STEPS} of N = {sgd.steps} steps")  # fmt: skip
    for _, v in verification.iterrows():
        if v["status"] != "ok":
            notes.append(f"{v['scheme']}: Monte Carlo did not finish ({v['status']})")
        elif not v["agrees"]:
            notes.append(
                f"{v['scheme']}: Monte Carlo penalty {v['penalty']:.4g} ± {v['penalty_se']:.2g} "
                f"disagrees with the prediction {v['predicted']:.4g} (beyond 3 SE + 10 %)"
            )
    flagged = int((candidates["flags"] != "").sum()) if len(candidates) else 0
    if flagged:
        notes.append(f"{flagged} candidates flagged (surrogate known to fail); see advice.csv")
    return notes


# ---- the inverse problem --------------------------------------------------------------------

_KINDS = {"additive": Additive, "multiplicative": Multiplicative}


def max_epsilon(
    problem: Problem,
    sgd: SGDConfig,
    budget: Budget,
    *,
    roles: Sequence[str] = ROLES,
    kinds: Sequence[str] = ("additive", "multiplicative"),
    conventions: Sequence[str] = ("quantized", "clean"),
    rtol: float = 1e-3,
) -> pd.DataFrame:
    """Per role, idealized kind (``additive``; ``multiplicative``: rank-one) and convention, the
    largest ``ε ∈ (0, 1]`` whose penalty alone stays within budget: bisection on ``log ε`` of
    the exact penalty (assumed increasing in ε), to relative precision ``rtol``. ``max_eps`` is
    NaN when even ``ε = 1`` is within budget and 0 when ``ε = 10⁻¹²`` is not.

    Returns columns ``role, kind, convention, max_eps, penalty_at_max`` and
    ``corollary_4_2_eps``: the reconstructed Corollary 4.2 condition next to it
    (:func:`qlinreg.theory.corollary.corollary_4_2`: the largest ε keeping the paper's bound,
    unit constants, within ×2 of its full-precision value; NaN where that bound's own
    hypothesis fails)."""
    roles = _check_roles(roles)
    for k in kinds:
        if k not in _KINDS:
            raise ValueError(f"kinds must be some of {', '.join(_KINDS)}, got {k!r}")
    pen = _Penalties(problem, sgd, budget.horizon)
    rows = []
    for role, kind, conv in itertools.product(roles, kinds, conventions):
        if conv not in CONVENTIONS:
            raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {conv!r}")
        limit = budget.value * pen.full[conv] if budget.relative else budget.value

        def f(log_eps, role=role, kind=kind, conv=conv):
            return pen.penalty(Scheme(**{role: _KINDS[kind](10.0**log_eps)}), conv)

        lo, hi = -12.0, 0.0
        if f(hi) <= limit:
            rows.append((role, kind, conv, math.nan, f(hi)))
            continue
        if f(lo) > limit:
            rows.append((role, kind, conv, 0.0, f(lo)))
            continue
        while hi - lo > math.log10(1 + rtol):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) <= limit else (lo, mid)
        rows.append((role, kind, conv, 10.0**lo, f(lo)))
    df = pd.DataFrame(rows, columns=["role", "kind", "convention", "max_eps", "penalty_at_max"])
    df["corollary_4_2_eps"] = [
        _corollary(problem, sgd, conv).get((role, kind), math.nan)
        for role, kind, conv in zip(df["role"], df["kind"], df["convention"], strict=True)
    ]
    return df


@functools.lru_cache(maxsize=8)
def _corollary_cached(problem, sgd, conv) -> dict:
    from qlinreg.theory.corollary import corollary_4_2

    try:
        table = corollary_4_2(problem, sgd, convention=conv)
    except ValueError:  # the full-precision bound's hypothesis fails: no condition
        return {}
    return {(r, k): float(e) for r, k, e in zip(table["role"], table["kind"], table["eps_max"],
                                                strict=True)}  # fmt: skip


def _corollary(problem, sgd, conv) -> dict:
    """``{(role, kind): ε*}`` of Corollary 4.2 (cached per setting)."""
    return _corollary_cached(problem, sgd, conv)


# ---- output -------------------------------------------------------------------------------


def write_advice(advice: Advice, out: Path, *, command: str | None = None) -> list[Path]:
    """``advice.json``, ``advice.csv`` (candidates), ``joint.csv``, ``batches.csv``,
    ``verification.csv``, ``pareto.png`` and ``summary.md`` into ``out``."""
    from qlinreg.files import prepare_dir, write_atomic
    from qlinreg.plot import plot_pareto, save

    out = prepare_dir(out, "out")
    written = []

    def put(name, text):
        write_atomic(out / name, lambda p: Path(p).write_text(text))
        written.append(out / name)

    put("advice.json", json.dumps(advice.to_json(), indent=2, default=_json_default) + "\n")
    put("advice.csv", advice.candidates.to_csv(index=False))
    put("joint.csv", advice.joint.to_csv(index=False))
    put("batches.csv", advice.batches.to_csv(index=False))
    if len(advice.verification):
        put("verification.csv", advice.verification.to_csv(index=False))
    written += save(plot_pareto(advice), out / "pareto")
    put("summary.md", summary_markdown(advice, command))
    return written


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def summary_markdown(advice: Advice, command: str | None = None) -> str:
    """A short Markdown summary: the recommendation, the command line to copy, per role the
    reason in the paper's terms, the verification and the notes."""
    b, rec = advice.budget, advice.recommended
    conv = b.convention
    lines = [
        "# qlinreg advise",
        "",
        f"Budget: penalty ≤ {advice.budget_abs:.4g} ({conv} inputs, horizon {b.horizon}"
        + (f"; {b.value:g} × the full-precision risk {advice.full_risk:.4g}" if b.relative else "")
        + ").",
        "",
        f"**Recommended** (predicted penalty {rec['penalty']:.4g}, "
        f"{rec['cost_fraction']:.1%} of the all-FP32 bits per step):",
        "",
        "```bash",
        "qlinreg run "
        + " ".join(f"-q {shlex.quote(q)}" for q in rec["quant"])
        + (f" {command}" if command else ""),
        "```",
        "",
        "| role | format | why (the paper's terms) |",
        "|---|---|---|",
    ]
    cands = advice.candidates
    chosen = {q.split("=")[0]: q for q in rec["quant"]}
    for role in ROLES:
        if role not in chosen:
            lines.append(f"| {role} | fp32 | {_verdict_reason(role, NoQuant(), 'none')} |")
            continue
        row = cands[cands["quant"] == chosen[role]].iloc[0]
        kind = "additive" if row["error_model"] == "additive" else "multiplicative"
        how = ("its own moments" if row["prediction"] == "exact" else "estimated moments"
               if row["prediction"] == "estimated" else "a surrogate")  # fmt: skip
        lines.append(
            f"| {role} | {chosen[role].split('=', 1)[1]} | {row['error_model']} error "
            f"(ε = {row['surrogate_eps']:.3g}; predicted from {how}): "
            f"{_verdict_reason(role, None, kind)} |"
        )
    ver = advice.verification
    if len(ver):
        lines += ["", "| scheme | predicted | Monte Carlo (± SE) | within budget | agrees |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for _, v in ver.iterrows():
            lines.append(
                f"| {v['scheme']}: {v['quant']} | {v['predicted']:.4g} | {v['penalty']:.4g} ± "
                f"{v['penalty_se']:.2g} | {'yes' if v['within_budget'] else 'NO'} | "
                f"{'yes' if v['agrees'] else 'NO'} |"
            )
    if advice.notes:
        lines += ["", *[f"- {n}" for n in advice.notes]]
    return "\n".join(lines) + "\n"
