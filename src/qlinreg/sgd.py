"""Quantized one-pass mini-batch SGD (SPEC §2) and its Monte Carlo engine.

For ``t = 1 … N``, with a fresh batch ``X_t ∈ R^{B×d}``, ``y_t = X_t w* + ξ_t``::

    w_t = w_{t-1} + (γ/B) · Q_d(X_t)ᵀ · Q_o( Q_l(y_t) − Q_a( Q_d(X_t) · Q_p(w_{t-1}) ) )

``Q_d(X_t)`` is drawn once per step and used twice; stored weights stay in full precision.
The engine runs many independent trials at once (``vmap``) and the steps with ``lax.scan``,
in chunks of steps so that progress is shown and nothing finished is lost on interruption.
Randomness: trial ``k`` has key ``derive(key(seed), k)`` and each step ``t`` and role ``r``
draws from ``derive(trial key, t, r)``, so a trial's path does not depend on how many trials
run or how they are chunked. Blocks of up to 32 steps draw everything that does not depend on
``w`` at once — features, labels, ``Q_d``, ``Q_l``, the unit noise of idealized quantizers and
the stochastic-rounding words of number formats (``q.draw``) — before the sequential updates
apply it (``q.apply``); a format with delayed scaling keeps its amax history in the state
(``docs/engine.md``).

Shortcuts exact in distribution (SPEC §6), used unless ``literal=True``:

- additive Gaussian ``Q_d``: ``Q_d(x) ~ N(0, H^(q))`` is drawn directly and
  ``y | Q_d(x) ~ N(⟨w*^(q), Q_d(x)⟩, σ² + 2·ApproxErr)`` (``(Q_d(x), y)`` is jointly Gaussian);
- ``B = 1`` with additive or elementwise-multiplicative Gaussian ``Q_p``: ``Q_d(x)ᵀ(Q_p(w) − w)``
  given ``Q_d(x)`` is ``N(0, ε_p‖Q_d(x) ⊙ s‖²)`` with ``s = 1`` or ``s = w``: one normal, not ``d``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from qlinreg import prng
from qlinreg.algorithm import (
    Average,
    SGDConfig,
    check_checkpoints,
    check_run,
    geometric_checkpoints,
    positive_int,
    run_config,
)
from qlinreg.interrupt import interrupt_flag
from qlinreg.problem import Problem, draw_features
from qlinreg.quantize.formats import NumberFormat, windowed_refs
from qlinreg.quantize.idealized import NoQuant, error_moments
from qlinreg.quantize.scheme import ROLES, Scheme
from qlinreg.theory.quantized_data import (
    H_q,
    approx_err,
    data_noise,
    data_noise_diag,
    has_closed_form,
    quantized_input_risk,
    w_star_q,
)

__all__ = [
    "DivergenceError",
    "SGDConfig",
    "SimResult",
    "check_simulation",
    "geometric_checkpoints",
    "simulate",
]


# Stream labels of the per-step keys: the raw features and label noise, then the five roles.
_FEATURES, _LABEL_NOISE = 0, 1
_ROLE_ID = {role: 2 + i for i, role in enumerate(ROLES)}
_STORAGE = 2 + len(ROLES)  # stochastic rounding of stored weights
_N_STREAMS = _STORAGE + 1
_PROBE = 0x9B0BE  # label of the per-checkpoint probe keys (quantized-input risk of formats)
_PROBES = 64  # probe rows per trial and checkpoint (at least; a whole number of batches)
_TRIAL_TAG = 0x7121A1  # second label of the seed → trial derivation
_TRIAL_QUANTUM = 16  # trial batches are padded to a multiple of this (see _rowsum)

# A trial has diverged when ‖w_t‖² exceeds this multiple of 1 + ‖w*‖² + ‖w_0‖², or is not finite.
DIVERGENCE_FACTOR = 1e6
MAX_STEPS = 2**31 - 1  # step counters are 32-bit (keys are derived from the step number)
# Work per compiled chunk (trials × B × d × steps): ~0.1–1 s on a 2-core CPU, so an interrupt
# takes effect and finished checkpoints reach the caller about that often.
_CHUNK_WORK = 1 << 26
_CHUNK_STEPS = 1 << 10  # at most this many steps per chunk (cheap problems report as often)
# Formats' stochastic-rounding words are drawn per block ahead of the sequential loop (the same
# numbers as drawing them inside it, which tests compare by switching this off).
_PREDRAW = True


@dataclass(frozen=True)
class Divergence:
    """Where SGD blew up: the first step at which a trial's iterate was non-finite or exploded."""

    step: int
    trials: tuple[int, ...]
    lr: float
    trace_H_q: float

    @property
    def message(self) -> str:
        ratio = self.lr * self.trace_H_q
        shown = ", ".join(map(str, self.trials[:5])) + (" …" if len(self.trials) > 5 else "")
        return (
            f"SGD diverged at step {self.step} (trial {shown}): the iterate became non-finite "
            f"or ‖w‖² exceeded {DIVERGENCE_FACTOR:g}·(1 + ‖w*‖² + ‖w_0‖²). "
            f"Step size γ = {self.lr:g} is {ratio:.3g} × 1/tr(H^(q)) "
            f"(tr(H^(q)) = {self.trace_H_q:.4g}); constant-step SGD on Gaussian data is stable "
            f"for γ·tr(H^(q)) below about 1, and quantization noise lowers that limit. "
            f"Try lr ≤ {0.5 / self.trace_H_q:.3g}."
        )


class DivergenceError(RuntimeError):
    """SGD diverged; ``.result`` holds every checkpoint reached before it (all trials finite)."""

    def __init__(self, divergence: Divergence, result: SimResult):
        super().__init__(divergence.message)
        self.divergence = divergence
        self.result = result


@dataclass(frozen=True, eq=False)
class SimResult:
    """Per-trial excess risk of the chosen iterate at each checkpoint, in both conventions.

    Attributes:
        steps: checkpoint steps ``n`` (ascending).
        risk: quantized-input risk ``½E[(y − ⟨w̄, Q_d(x)⟩)²] − ½σ²``, shape ``(len(steps), trials)``.
        risk_clean: clean-input risk ``½‖w̄ − w*‖²_H``, same shape.
        config: the run's parameters, flat, for tables.
        divergence: set when a trial diverged (the table then stops before it).
        interrupted: the run was stopped early; ``steps`` holds what finished.
        reached: the last step every trial completed (before any divergence).
        saturation: for each role quantized by a number format, the mean over steps and
            trials of ``(saturated fraction, underflow-to-zero fraction)`` of its values.
    """

    steps: np.ndarray
    risk: np.ndarray
    risk_clean: np.ndarray
    config: dict = field(default_factory=dict)
    divergence: Divergence | None = None
    interrupted: bool = False
    saturation: dict[str, tuple[float, float]] = field(default_factory=dict)
    reached: int = 0

    @property
    def trials(self) -> int:
        return int(self.risk.shape[1])

    @staticmethod
    def _mean_se(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = a.shape[1]
        se = a.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else np.full(a.shape[0], np.nan)
        return a.mean(axis=1), se

    def summary(self) -> dict[str, np.ndarray]:
        """Mean and standard error over trials of both risks."""
        m, s = self._mean_se(self.risk)
        mc, sc = self._mean_se(self.risk_clean)
        return {"risk_mean": m, "risk_se": s, "risk_clean_mean": mc, "risk_clean_se": sc}

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per checkpoint, the run's config repeated as columns."""
        df = pd.DataFrame({"step": self.steps, **self.summary()})
        df["trials"] = self.trials
        for k, v in self.config.items():
            df[k] = v
        for role, (sat, under) in self.saturation.items():
            df[f"saturated_{role}"], df[f"underflow_{role}"] = sat, under
        return df


def _trace_H_q(problem: Problem, scheme: Scheme) -> float:
    try:
        return float(H_q(problem, scheme.data).sum())
    except TypeError:
        return problem.trace_H


def _canonical(scheme: Scheme) -> Scheme:
    """Quantizers with ``eps == 0`` are full precision: run them as such (bit-for-bit)."""
    zero = {r: NoQuant() for r, q in scheme.items() if getattr(q, "eps", None) == 0}
    return replace(scheme, **zero) if zero else scheme


def _gaussian_kind(q) -> str:
    """The kind of an idealized quantizer with Gaussian noise, else ``""`` (no shortcut)."""
    try:
        m = error_moments(q)
    except TypeError:
        return ""
    return m.kind if m.law == "gaussian" else ""


@dataclass(frozen=True)
class _Static:
    """What the compiled chunk function depends on structurally (everything else is traced)."""

    d: int
    batch: int
    dtype: str
    coords: str  # "eigen" (H diagonal), "dense" (x = U(√λ ⊙ z)) or "empirical" (data rows)
    fast_data: bool  # additive Gaussian Q_d: draw Q_d(x) ~ N(0, H^(q)) directly
    fast_params: str  # B = 1, Gaussian additive or elementwise Q_p: its kind; "" otherwise
    average: Average
    probe_risk: bool  # the data quantizer has no closed-form δ: estimate R_q on fresh probes
    stats_roles: tuple[str, ...]  # roles quantized by a number format (saturation counts)
    storage: bool  # w_t is stored in a number format after each update
    delayed: tuple[tuple[str, int], ...] = ()  # (role, k): delayed scaling, amax history of k
    predraw: bool = True  # draw formats' stochastic-rounding words per block, ahead of the loop


def _rowsum(x: jax.Array) -> jax.Array:
    """Sum over the last axis in a fixed pairwise order (elementwise adds of halves).

    XLA's own reductions pick their order by the shape of the whole batch, so a trial's numbers
    would change in the last bit with the number of trials; this order does not (together with
    trial batches padded to a multiple of :data:`_TRIAL_QUANTUM`).
    """
    n = x.shape[-1]
    p = 1 << max(0, n.bit_length() - 1)  # the largest power of two ≤ n
    if p != n:  # fold the n − p trailing entries onto the first ones (not zero padding:
        # XLA rewrites slices of a padded array so that a fused producer runs twice, up to 10×
        # slower when the producer is a stochastic rounding)
        x = jnp.concatenate([x[..., : n - p] + x[..., p:], x[..., n - p : p]], axis=-1)
    while x.shape[-1] > 1:
        h = x.shape[-1] // 2
        x = x[..., :h] + x[..., h:]
    return x[..., 0]


class _State(NamedTuple):
    """What the scan carries for a batch of ``T`` trials."""

    w: jax.Array  # (T, d) the iterate w_t
    S: jax.Array  # (T, d) running sum Σ_{s<t} w_s
    snaps: jax.Array  # (n_starts or 1, T, d) S at the tail-average starts ⌊n/2⌋
    rec: jax.Array  # (K, T, 2) risks (quantized, clean) at the checkpoints; NaN until reached
    div_at: jax.Array  # (T,) the step at which the trial diverged; 0: it has not
    acc: jax.Array  # (T, 5, 2) per role: saturated and underflow fractions summed over steps
    hist: dict  # role → (T, k): max|u| of the role's last k tensors (oldest first), delayed roles


def _predraw(st: _Static, q, key, shape, dt):
    """Noise of ``q`` drawn ahead of the sequential loop (unit noise of an idealized quantizer,
    random words of a format's stochastic rounding), or None (drawn inside it, if at all)."""
    if not hasattr(q, "draw") or (not st.predraw and isinstance(q, NumberFormat)):
        return None
    return q.draw(key, shape, dt)


def _quantize(q, key, u, noise, amax=None, live=None):
    """``q(key, u)``, or with pre-drawn ``noise`` and a delayed-scaling reference ``amax``.

    A number format is computed inside ``lax.cond(live, …)`` (``live``: an always-true traced
    flag): XLA on CPU drops ``optimization_barrier`` and fuses the elementwise rounding into
    every consumer of its result (the update, the saturation counts), computing it up to three
    times; a conditional's result is a buffer, computed once (3–4× faster per step, measured
    on int8, fp8_e4m3 and nvfp4 parameters).
    """

    def quantized():
        if amax is not None:
            return q.apply(u, q.draw(key, u.shape, u.dtype) if noise is None else noise, amax)
        return q(key, u) if noise is None else q.apply(u, noise)

    if live is None or not isinstance(q, NumberFormat):
        return quantized()
    return jax.lax.cond(live, quantized, lambda: jnp.zeros(u.shape, u.dtype))


def _history_max(hist: jax.Array) -> jax.Array:
    """The delayed-scaling reference: the largest amax of the last ``k`` steps (axis −1)."""
    return jnp.max(hist, axis=-1)


def _gaussian(st: _Static, key, sqrt_lam, c, shape, dt):
    """Gaussian feature rows ``√λ ⊙ z`` in the eigenbasis, rotated to the data's coordinates
    (``· Uᵀ``) for a dense problem."""
    x = draw_features(key, sqrt_lam, shape, dt)
    return x if st.coords == "eigen" else x @ c["basis"].T


def _draw_inputs(st: _Static, keys, c):
    """The raw batch of one step for one trial: ``(X_t, y_t)``, or ``(Q_d(X_t), y_t)`` drawn
    directly under the additive-Gaussian data shortcut."""
    B, d, dt = st.batch, st.d, jnp.dtype(st.dtype)
    if st.fast_data:
        Xq = _gaussian(st, keys[_FEATURES], c["sqrt_lam_q"], c, (B, d), dt)
        y = _rowsum(Xq * c["w_star_q"]) + c["y_sd_q"] * prng.normal(keys[_LABEL_NOISE], (B,), dt)
        return Xq, y
    if st.coords == "empirical":  # rows of the data, uniformly with replacement
        idx = prng.index(keys[_FEATURES], (B,), c["rows"].shape[0])
        return c["rows"][idx], c["targets"][idx]
    X = _gaussian(st, keys[_FEATURES], c["sqrt_lam"], c, (B, d), dt)
    noise = c["sqrt_noise"] * prng.normal(keys[_LABEL_NOISE], (B,), dt)
    return X, _rowsum(X * c["w_star"]) + noise


def _draw_batch(st: _Static, keys, X, y, refs, scheme: Scheme, storage, live):
    """Everything random of one step for one trial that does not depend on ``w``.

    Returns ``(Q_d(X_t), Q_l(y_t), noise, stats)``: ``noise`` holds the pre-drawn noise of
    the parameter, activation, output-gradient and storage quantizers (unit noise of an
    idealized quantizer, random words of a format), ``stats`` the saturated and underflow
    fractions of number-format data and label quantizers; ``refs``: delayed-scaling references
    of data and labels. A whole block of steps is drawn in one vectorised pass: large draws
    are several times cheaper per number than per-step ones.
    """
    B, d, dt = st.batch, st.d, jnp.dtype(st.dtype)
    Xq = X if st.fast_data else _quantize(scheme.data, keys[_ROLE_ID["data"]], X, None,
                                          refs.get("data"), live)  # fmt: skip
    yq = _quantize(scheme.labels, keys[_ROLE_ID["labels"]], y, None, refs.get("labels"), live)
    stats = {}
    if "data" in st.stats_roles:
        stats["data"] = jnp.stack(scheme.data.stats(X, Xq, refs.get("data")))
    if "labels" in st.stats_roles:
        stats["labels"] = jnp.stack(scheme.labels.stats(y, yq, refs.get("labels")))
    kp = keys[_ROLE_ID["params"]]
    noise = {
        "params": prng.normal(kp, (B,), dt)
        if st.fast_params
        else _predraw(st, scheme.params, kp, (d,), dt),
        "activations": _predraw(st, scheme.activations, keys[_ROLE_ID["activations"]], (B,), dt),
        "grads": _predraw(st, scheme.grads, keys[_ROLE_ID["grads"]], (B,), dt),
        "storage": _predraw(st, storage, keys[_STORAGE], (d,), dt) if st.storage else None,
    }
    return Xq, yq, noise, stats


def _update(st: _Static, keys, w, Xq, yq, noise, hist, scheme: Scheme, storage, c, lr):
    """``w + (γ/B)·Q_d(X)ᵀ Q_o(Q_l(y) − Q_a(Q_d(X) Q_p(w)))`` (SPEC §2) for one trial.

    Returns the new weights (stored through ``storage`` when set), the saturated and
    underflow fractions of number-format parameter, activation and gradient quantizers, and
    the amax histories of their delayed-scaled roles, advanced by this step.
    """
    B, dt = st.batch, jnp.dtype(st.dtype)
    stats, hist = {}, dict(hist)

    def quantize(role, u):
        q, ref = getattr(scheme, role), None
        if role in hist:  # delayed scaling: the reference of the last k steps, then this one's
            ref = _history_max(hist[role])
            hist[role] = jnp.concatenate([hist[role][1:], q.amax(u)[None]])
        uq = _quantize(q, keys[_ROLE_ID[role]], u, noise[role], ref, c["live"])
        if role in st.stats_roles:
            stats[role] = jnp.stack(q.stats(u, uq, ref))
        return uq

    if st.fast_params:
        s = Xq if st.fast_params == "additive" else Xq * w
        norm = jnp.sqrt(_rowsum(s * s))
        a0 = _rowsum(Xq * w) + jnp.sqrt(scheme.params.eps.astype(dt)) * norm * noise["params"]
    else:
        a0 = _rowsum(Xq * quantize("params", w))
    r = yq - quantize("activations", a0)
    g = quantize("grads", r)
    w_new = w + (lr / B) * _rowsum((g[:, None] * Xq).T)
    if st.storage:
        w_new = _quantize(storage, keys[_STORAGE], w_new, noise["storage"], None, c["live"])
    return w_new, stats, hist


def _probe_risk(st: _Static, key, it, scheme: Scheme, c):
    """Unbiased estimate of ``R_q(w̄) = ½E[(⟨w*, x⟩ − ⟨w̄, Q_d(x)⟩)²]`` on fresh probes.

    For data quantizers without a closed-form ``δ`` (number formats): fresh rows
    ``x ~ N(0, H)`` per trial and checkpoint, quantized in groups of ``B`` rows as training
    quantizes a batch (a per-tensor scale sees the same tensor shape), at least
    :data:`_PROBES` rows. The estimate's noise is independent across trials, so it is part of
    the reported standard error.
    """
    dt = jnp.dtype(st.dtype)
    groups = -(-_PROBES // st.batch)
    if st.coords == "empirical":
        X = c["rows"][prng.index(prng.derive(key, 0), (groups, st.batch), c["rows"].shape[0])]
    else:
        X = _gaussian(st, prng.derive(key, 0), c["sqrt_lam"], c, (groups, st.batch, st.d), dt)
    keys = prng.derive(prng.derive(key, 1), jnp.arange(groups, dtype=jnp.uint32))
    Xq = jax.vmap(lambda k, x: _quantize(scheme.data, k, x, None, None, c["live"]))(keys, X)
    e = _rowsum(X * c["w_star"]) - _rowsum(Xq * it)
    return 0.5 * _rowsum(_rowsum(e * e)) / (groups * st.batch)


def _risks(st: _Static, it, probe_keys, scheme: Scheme, c):
    """Both risk conventions of iterates ``it`` (trials × d): ``[..., (quantized, clean)]``.

    In data coordinates ``‖v‖²_H = Σ λ (Uᵀv)²`` and the data noise covariance is
    ``diag(δ) + ε_rank1·H`` (:func:`~qlinreg.theory.quantized_data.data_noise`)."""
    if st.coords == "eigen":
        clean = 0.5 * _rowsum(c["lam"] * (it - c["w_star"]) ** 2)
    else:
        clean = 0.5 * _rowsum(c["lam"] * ((it - c["w_star"]) @ c["basis"]) ** 2)
    if st.probe_risk:
        quant = jax.vmap(_probe_risk, (None, 0, 0, None, None))(st, probe_keys, it, scheme, c)
    elif st.coords == "eigen":
        quant = quantized_input_risk(it, c["lam"], c["w_star"], c["delta"], rowsum=_rowsum)
    else:
        rank1 = c["rank1"] * _rowsum(c["lam"] * (it @ c["basis"]) ** 2)
        quant = clean + 0.5 * (_rowsum(c["delta"] * it * it) + rank1)
    return jnp.stack([quant, clean], axis=-1)


@functools.lru_cache(maxsize=64)
def _chunk_fn(st: _Static, block: int):
    """Jitted run of a chunk of steps for a batch of trials (cached per structure).

    An outer scan walks blocks of ``block`` steps: each block's batches are drawn at once
    (random-number generation is the floor, and large draws are several times cheaper per
    number than per-step ones); an inner scan then applies the sequential updates.
    """

    def over_steps_and_trials(fn, *axes):
        return jax.vmap(jax.vmap(fn, axes), axes)

    draw_inputs = over_steps_and_trials(functools.partial(_draw_inputs, st), 0, None)
    draw = over_steps_and_trials(functools.partial(_draw_batch, st), 0, 0, 0, 0, None, None, None)
    update = jax.vmap(
        functools.partial(_update, st), in_axes=(0, 0, 0, 0, 0, 0, None, None, None, None)
    )
    ahead = tuple((r, k) for r, k in st.delayed if r in ("data", "labels"))
    streams = jnp.arange(_N_STREAMS, dtype=jnp.uint32)
    roles = {r: i for i, r in enumerate(ROLES)}

    def run_chunk(state: _State, trial_keys, xs, scheme, storage, c) -> _State:
        def add_stats(acc, stats, active):
            for r, v in stats.items():
                acc = acc.at[:, roles[r]].add(jnp.where(active, v, 0))
            return acc

        def step(s: _State, x):
            t, active, ck, sn, lr, keys, Xq, yq, noise, data_stats = x
            loop_hist = {r: h for r, h in s.hist.items() if r not in ("data", "labels")}
            w_new, stats, loop_hist = update(
                keys, s.w, Xq, yq, noise, loop_hist, scheme, storage, c, lr
            )
            hist = {**s.hist, **loop_hist}
            acc = add_stats(add_stats(s.acc, data_stats, active), stats, active)
            nrm = _rowsum(w_new * w_new)
            bad = (~jnp.isfinite(nrm) | (nrm > c["limit"])) & active
            div_at = jnp.where(bad & (s.div_at == 0), t, s.div_at)
            keep = (div_at > 0) | ~active
            S = jnp.where(active, s.S + s.w, s.S)
            w = jnp.where(keep[:, None], s.w, w_new)
            snaps = s.snaps
            if st.average == "tail":
                snaps = jax.lax.cond(sn >= 0, lambda a: a.at[sn].set(S), lambda a: a, snaps)

            def record(r):
                if st.average == "polyak":
                    it = S / c["n_ck"][ck]
                elif st.average == "last":
                    it = w
                else:
                    it = (S - snaps[c["snap_of"][ck]]) / (c["n_ck"][ck] - c["starts"][ck])
                probe_keys = prng.derive(trial_keys, t.astype(jnp.uint32), _PROBE)
                return r.at[ck].set(_risks(st, it, probe_keys, scheme, c))

            rec = jax.lax.cond(ck >= 0, record, lambda r: r, s.rec)
            return _State(w, S, snaps, rec, div_at, acc, hist), None

        def block_body(state, xb):
            t = xb[0]
            keys = prng.derive(
                trial_keys[None, :, None, :],
                t.astype(jnp.uint32)[:, None, None],
                streams[None, None, :],
            )
            X, y = draw_inputs(keys, c)
            refs, hist = {}, dict(state.hist)
            for role, _ in ahead:  # delayed data/label scales: windows over earlier steps
                q, u = getattr(scheme, role), X if role == "data" else y
                amax = jax.vmap(jax.vmap(q.amax))(u)
                refs[role], hist[role] = windowed_refs(hist[role], amax)
            Xq, yq, noise, data_stats = draw(keys, X, y, refs, scheme, storage, c["live"])
            state = state._replace(hist=hist)
            return jax.lax.scan(step, state, (*xb, keys, Xq, yq, noise, data_stats))[0], None

        blocks = jax.tree_util.tree_map(lambda a: a.reshape(-1, block, *a.shape[1:]), xs)
        return jax.lax.scan(block_body, state, blocks)[0]

    return jax.jit(run_chunk)


def _work(problem: Problem, sgd: SGDConfig) -> int:
    """Multiply-adds per trial and step: ``B·d``, or ``B·d²`` with a dense feature factor."""
    return sgd.batch * problem.d * (1 if problem.diagonal or problem.samples else problem.d)


def _position(sorted_steps: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of each ``t`` in ``sorted_steps`` (ascending, unique), ``-1`` where absent."""
    i = np.minimum(np.searchsorted(sorted_steps, t), len(sorted_steps) - 1)
    return np.where(sorted_steps[i] == t, i, -1).astype(np.int32)


class _Engine:
    """Runs the cached chunk function for one (problem, scheme, sgd, dtype, checkpoints)."""

    def __init__(self, problem, scheme, sgd, dtype, literal, checkpoints, step_chunk, trial_chunk):
        self.problem, self.scheme, self.sgd = problem, _canonical(scheme), sgd
        self.given_scheme, self.literal = scheme, literal
        self.dtype = jnp.dtype(dtype)
        kinds = {r: _gaussian_kind(q) for r, q in self.scheme.items()}
        coords = "eigen" if problem.diagonal else "dense"
        coords = "empirical" if problem.samples is not None else coords
        self.static = _Static(
            d=problem.d,
            batch=sgd.batch,
            dtype=str(self.dtype),
            coords=coords,
            fast_data=not literal and kinds["data"] == "additive" and coords != "empirical",
            fast_params=kinds["params"]
            if not literal
            and sgd.batch == 1
            and kinds["params"] in ("additive", "multiplicative_elementwise")
            else "",
            average=sgd.average,
            probe_risk=not has_closed_form(self.scheme.data),
            stats_roles=tuple(r for r, q in self.scheme.items() if hasattr(q, "stats")),
            storage=sgd.storage is not None,
            delayed=tuple(
                (r, q.history) for r, q in self.scheme.items() if getattr(q, "history", 0) > 0
            ),
            predraw=_PREDRAW,
        )
        self.ckpts = checkpoints
        self.trial_chunk = trial_chunk
        # Steps per pre-drawn block: up to 32, keeping a block's draws near 2^20 numbers; steps
        # per chunk: a multiple of the block near _CHUNK_WORK (or the caller's step_chunk).
        work = trial_chunk * _work(problem, sgd)
        self.block = 1 << max(0, min(5, int(math.log2(max(1, (1 << 20) // work)))))
        L = step_chunk or min(sgd.steps, _CHUNK_STEPS, max(1, _CHUNK_WORK // work))
        self.L = -(-L // self.block) * self.block
        # Tail averaging needs the running sum S_s at s = ⌊n/2⌋ for every checkpoint n.
        starts = checkpoints // 2
        self.snap_steps, snap_of = np.unique(starts, return_inverse=True)
        lam = problem.spectrum
        self.w0 = sgd.initial(problem.d)
        # δ: closed form for idealized data quantizers; unused (probes) otherwise.
        delta, rank1 = np.zeros_like(lam), 0.0
        if not self.static.probe_risk and coords == "eigen":
            delta = data_noise_diag(self.scheme.data, lam)
        elif not self.static.probe_risk:
            delta, rank1 = data_noise(self.scheme.data, problem)
        c = {
            "lam": lam,
            "sqrt_lam": np.sqrt(lam),
            "w_star": problem.w_star,
            "sqrt_noise": np.sqrt(np.float64(problem.noise)),
            "delta": delta,
            "limit": DIVERGENCE_FACTOR * (1 + np.sum(problem.w_star**2) + np.sum(self.w0**2)),
            "n_ck": checkpoints,
            "starts": starts,
        }
        if coords != "eigen":
            c["basis"], c["rank1"] = problem.basis, rank1
        if coords == "empirical":
            c["rows"], c["targets"] = problem.samples.X, problem.samples.y
        if self.static.fast_data:
            c["sqrt_lam_q"] = np.sqrt(H_q(problem.eigen(), self.scheme.data))
            c["w_star_q"] = w_star_q(problem, self.scheme.data)
            c["y_sd_q"] = np.sqrt(problem.noise + 2 * approx_err(problem, self.scheme.data))
        self.consts = {k: jnp.asarray(v, self.dtype) for k, v in c.items()}
        self.consts["snap_of"] = jnp.asarray(snap_of, jnp.int32)
        self.consts["live"] = jnp.asarray(True)  # traced: see _quantize
        as_dtype = functools.partial(jax.tree_util.tree_map, lambda v: jnp.asarray(v, self.dtype))
        self.scheme = as_dtype(self.scheme)
        self.storage = as_dtype(sgd.storage)

    def initial_state(self, T: int) -> _State:
        d, K = self.problem.d, len(self.ckpts)
        n_snaps = len(self.snap_steps) if self.static.average == "tail" else 1
        return _State(
            w=jnp.broadcast_to(jnp.asarray(self.w0, self.dtype), (T, d)),
            S=jnp.zeros((T, d), self.dtype),
            snaps=jnp.zeros((n_snaps, T, d), self.dtype),
            rec=jnp.full((K, T, 2), jnp.nan, self.dtype),
            div_at=jnp.zeros((T,), jnp.int32),
            acc=jnp.zeros((T, len(ROLES), 2), self.dtype),
            hist={r: jnp.zeros((T, k), self.dtype) for r, k in self.static.delayed},
        )

    def chunk_inputs(self, start: int) -> tuple:
        """Per-step inputs of the chunk starting at step ``start``: the step, whether it is one
        of the ``N`` steps (the last chunk runs past ``N`` inactive), its checkpoint and
        tail-start indices (−1: none) and its step size (the schedule's)."""
        t = np.arange(start, start + self.L, dtype=np.int64)
        tail = self.static.average == "tail"
        return (
            jnp.asarray(t, jnp.int32),
            jnp.asarray(t <= self.sgd.steps),
            jnp.asarray(_position(self.ckpts, t)),
            jnp.asarray(_position(self.snap_steps, t) if tail else np.full(t.size, -1, np.int32)),
            jnp.asarray(self.sgd.lr_at(t), self.dtype),
        )

    def run(self, trials: int, seed: int, stop, on_chunk=None, advance=None):
        """Run every step for trials ``0 … trials−1``, in chunks of steps; each chunk advances
        every batch of trials before the next starts, so after each chunk all trials have
        reached the same step.

        ``stop()`` is checked between calls: when it turns true the chunk in flight is
        dropped for all trials (the result stays at the last chunk every trial finished).
        ``on_chunk(states, done)`` is called after each complete chunk, ``advance(n)`` after
        each batch with the number of trial-steps it ran. Returns ``(states, done,
        interrupted)``; the states' trial batches are padded to :data:`_TRIAL_QUANTUM`.
        """
        chunk = _chunk_fn(self.static, self.block)
        tc, N = self.trial_chunk, self.sgd.steps
        root = prng.key(seed)
        starts = range(0, trials, tc)
        keys = [
            prng.derive(root, jnp.arange(lo, lo + tc, dtype=jnp.uint32), _TRIAL_TAG)
            for lo in starts
        ]  # fmt: skip  (padded: trials ≥ `trials` run and are dropped)
        states = [self.initial_state(tc) for _ in starts]
        done, interrupted = 0, False
        try:
            for start in range(1, N + 1, self.L):
                xs = self.chunk_inputs(start)
                new = []
                for lo, k, state in zip(starts, keys, states, strict=True):
                    if stop():
                        break
                    nxt = chunk(state, k, xs, self.scheme, self.storage, self.consts)
                    jax.block_until_ready(nxt)
                    new.append(nxt)
                    if advance is not None:
                        advance(min(tc, trials - lo) * min(self.L, N - start + 1))
                if len(new) < len(states):
                    interrupted = True
                    break
                states, done = new, min(start + self.L - 1, N)
                if on_chunk is not None:
                    on_chunk(states, done)
                if any(np.asarray(s.div_at).any() for s in states):
                    break
        except KeyboardInterrupt:
            interrupted = True
        return states, done, interrupted


def check_simulation(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    *,
    trials: int = 100,
    seed: int = 0,
    checkpoints: Sequence[int] | None = None,
    dtype: str = "float32",
) -> tuple[Scheme, np.ndarray]:
    """Validate :func:`simulate`'s arguments (nothing is compiled); returns the scheme (``None``
    → full precision) and the checkpoints. Raises ``ValueError``/``TypeError`` naming the
    field."""
    scheme = check_run(problem, scheme, sgd)
    positive_int("trials", trials)
    if not 0 <= positive_int("seed", seed, low=0) < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if sgd.steps > MAX_STEPS:
        raise ValueError(
            f"steps (N) must be ≤ {MAX_STEPS} (2^31 − 1) for Monte Carlo (step counters are "
            f"32-bit), got {sgd.steps}; the exact risk (qlinreg.exact_risk) has no such limit"
        )
    sgd.initial(problem.d)
    return scheme, check_checkpoints(checkpoints, sgd.steps)


def simulate(
    problem: Problem,
    scheme: Scheme | None,
    sgd: SGDConfig,
    *,
    trials: int = 100,
    seed: int = 0,
    checkpoints: Sequence[int] | None = None,
    dtype: str = "float32",
    literal: bool = False,
    trial_chunk: int | None = None,
    step_chunk: int | None = None,
    progress: bool = False,
    on_checkpoint: Callable[[SimResult], None] | None = None,
) -> SimResult:
    """Monte Carlo excess risk of quantized SGD (SPEC §2), mean over ``trials`` runs.

    Args:
        problem: the statistical model.
        scheme: quantizer per role (``None``: full precision).
        sgd: step size, steps, batch size, averaging, ``w_0``.
        trials: independent runs (≥ 1).
        seed: root seed; trial ``k``'s path depends only on ``(seed, k)``.
        checkpoints: steps at which to record the risk (default: ~10 per decade, always ``N``).
        dtype: ``"float32"`` (default) or ``"float64"`` (run inside ``jax.enable_x64``).
        literal: follow the update verbatim, without the exact-in-distribution shortcuts.
        trial_chunk, step_chunk: batch sizes of the vectorised computation; results do not
            depend on them.
        progress: show a progress bar.
        on_checkpoint: called with the result so far (all trials, the checkpoints reached,
            ``interrupted=True``) each time a chunk of steps completes new checkpoints: a
            caller can store it, so that a killed run keeps what finished.

    Returns:
        A :class:`SimResult`. Raises :class:`DivergenceError` (carrying the partial result) if a
        trial diverges. Ctrl-C or SIGTERM (in the main thread) stop the run after the chunk of
        steps in flight, which is kept: the result then has ``interrupted=True`` and the
        checkpoints every trial reached; a second Ctrl-C stops at once.
    """
    scheme, ckpts = check_simulation(
        problem, scheme, sgd, trials=trials, seed=seed, checkpoints=checkpoints, dtype=dtype
    )
    work = _work(problem, sgd)
    tc = positive_int("trial_chunk", trial_chunk) if trial_chunk else max(1, (1 << 20) // work)
    tc = -(-min(tc, trials) // _TRIAL_QUANTUM) * _TRIAL_QUANTUM
    sc = positive_int("step_chunk", step_chunk) if step_chunk else None
    with jax.enable_x64(dtype == "float64"):
        engine = _Engine(problem, scheme, sgd, dtype, literal, ckpts, sc, tc)
        return _simulate(engine, trials, seed, progress, on_checkpoint)


def _simulate(engine: _Engine, trials: int, seed: int, progress: bool, on_checkpoint):
    problem, sgd, ckpts = engine.problem, engine.sgd, engine.ckpts
    config = {
        **run_config(problem, engine.given_scheme, sgd),
        "seed": seed,
        "dtype": engine.static.dtype,
        "literal": engine.literal,
        "storage": getattr(sgd.storage, "label", "none"),
    }
    reported = [0]

    def result(states: list[_State], done: int, interrupted: bool) -> SimResult:
        return _result(engine, config, states, done, trials, interrupted)

    def on_chunk(states, done):
        finished = int(np.searchsorted(ckpts, done, "right"))  # checkpoints ≤ done
        if on_checkpoint is not None and finished > reported[0]:
            reported[0] = finished
            partial = result(states, done, interrupted=True)
            if partial.divergence is None:
                on_checkpoint(partial)

    with _progress(progress) as bar, interrupt_flag() as flag:
        task = bar.add_task("simulate", total=trials * sgd.steps) if progress else None
        advance = (lambda n: bar.advance(task, n)) if progress else None
        states, done, interrupted = engine.run(trials, seed, flag.is_set, on_chunk, advance)
    res = result(states, done, interrupted)
    if res.divergence is not None:
        raise DivergenceError(res.divergence, res)
    return res


def _result(engine: _Engine, config: dict, states, done: int, trials: int, interrupted: bool):
    """The :class:`SimResult` of the states after ``done`` steps (checkpoints ``≤ done``, and
    before the first divergence)."""
    ckpts, sgd = engine.ckpts, engine.sgd
    if done == 0:
        empty = np.zeros((0, trials))
        return SimResult(ckpts[:0], empty, empty, config, None, interrupted=True, reached=0)
    rec = np.concatenate([np.asarray(s.rec, np.float64) for s in states], axis=1)[:, :trials]
    div = np.concatenate([np.asarray(s.div_at) for s in states])[:trials]
    sat = np.concatenate([np.asarray(s.acc, np.float64) for s in states])[:trials] / done
    sat = sat.mean(axis=0)
    saturation = {
        r: (float(sat[i, 0]), float(sat[i, 1]))
        for i, r in enumerate(ROLES)
        if r in engine.static.stats_roles
    }
    divergence = None
    keep = ckpts <= done
    if div.any():
        first = int(div[div > 0].min())
        divergence = Divergence(
            step=first,
            trials=tuple(int(i) for i in np.nonzero(div == first)[0]),
            lr=sgd.lr,
            trace_H_q=_trace_H_q(engine.problem, engine.given_scheme),
        )
        keep = ckpts < first
        done = min(done, first - 1)
    return SimResult(
        steps=ckpts[keep],
        risk=rec[keep, :, 0],
        risk_clean=rec[keep, :, 1],
        config=config,
        divergence=divergence,
        interrupted=interrupted,
        saturation=saturation,
        reached=done,
    )


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(show: bool):
    if not show:
        return _NoBar()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
