"""Quantized one-pass mini-batch SGD (SPEC §2) and its Monte Carlo engine.

For ``t = 1 … N``, with a fresh batch ``X_t ∈ R^{B×d}``, ``y_t = X_t w* + ξ_t``::

    w_t = w_{t-1} + (γ/B) · Q_d(X_t)ᵀ · Q_o( Q_l(y_t) − Q_a( Q_d(X_t) · Q_p(w_{t-1}) ) )

``Q_d(X_t)`` is drawn once per step and used twice; stored weights stay in full precision.
The engine runs many independent trials at once (``vmap``) and the steps with ``lax.scan``,
in chunks of steps so that progress is shown and nothing finished is lost on interruption.
Randomness: trial ``k`` has key ``derive(key(seed), k)`` and each step ``t`` and role ``r``
draws from ``derive(trial key, t, r)``, so a trial's path does not depend on how many trials
run or how they are chunked.

Shortcuts exact in distribution (SPEC §6), used unless ``literal=True``:

- additive Gaussian ``Q_d``: ``Q_d(x) ~ N(0, H^(q))`` is drawn directly and
  ``y | Q_d(x) ~ N(⟨w*^(q), Q_d(x)⟩, σ² + 2·ApproxErr)`` (``(Q_d(x), y)`` is jointly Gaussian);
- ``B = 1`` with additive or elementwise-multiplicative Gaussian ``Q_p``: ``Q_d(x)ᵀ(Q_p(w) − w)``
  given ``Q_d(x)`` is ``N(0, ε_p‖Q_d(x) ⊙ s‖²)`` with ``s = 1`` or ``s = w``: one normal, not ``d``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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
from qlinreg.problem import Problem
from qlinreg.quantize.idealized import Additive, MultiplicativeElementwise, NoQuant
from qlinreg.quantize.scheme import ROLES, Scheme
from qlinreg.theory.quantized_data import (
    H_q,
    approx_err,
    data_noise_diag,
    has_closed_form,
    quantized_input_risk,
    w_star_q,
)

__all__ = [
    "DivergenceError",
    "SGDConfig",
    "SimResult",
    "geometric_checkpoints",
    "simulate",
]


# Stream labels of the per-step keys: the raw features and label noise, then the five roles.
_FEATURES, _LABEL_NOISE = 0, 1
_ROLE_ID = {role: 2 + i for i, role in enumerate(ROLES)}
_STORAGE = 2 + len(ROLES)  # stochastic rounding of stored weights
_N_STREAMS = _STORAGE + 1
_PROBE = 0x9B0BE  # label of the per-checkpoint probe keys (quantized-input risk of formats)
_PROBES = 64  # probe rows per trial and checkpoint
_TRIAL_TAG = 0x7121A1  # second label of the seed → trial derivation
_TRIAL_QUANTUM = 16  # trial batches are padded to a multiple of this (see _rowsum)

# A trial has diverged when ‖w_t‖² exceeds this multiple of 1 + ‖w*‖² + ‖w_0‖², or is not finite.
DIVERGENCE_FACTOR = 1e6


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


def _is_gaussian(q, *kinds) -> bool:
    return isinstance(q, kinds) and q.noise == "gaussian"


@dataclass(frozen=True)
class _Static:
    """What the compiled chunk function depends on structurally (everything else is traced)."""

    d: int
    batch: int
    dtype: str
    fast_data: bool
    fast_params: bool
    average: Average
    probe_risk: bool  # the data quantizer has no closed-form δ: estimate R_q on fresh probes
    stats_roles: tuple[str, ...]  # roles quantized by a number format (saturation counts)
    storage: bool  # w_t is stored in a number format after each update


def _rowsum(x: jax.Array) -> jax.Array:
    """Sum over the last axis in a fixed pairwise order (elementwise adds of halves).

    XLA's own reductions pick their order by the shape of the whole batch, so a trial's numbers
    would change in the last bit with the number of trials; this order does not (together with
    trial batches padded to a multiple of :data:`_TRIAL_QUANTUM`).
    """
    n = x.shape[-1]
    p = 1 << max(0, (n - 1).bit_length())
    if p != n:
        x = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (p - n,), x.dtype)], axis=-1)
    while x.shape[-1] > 1:
        h = x.shape[-1] // 2
        x = x[..., :h] + x[..., h:]
    return x[..., 0]


_IN_LOOP_ROLES = ("params", "activations", "grads")  # quantized inputs depend on w


def _predraw(q, key, shape, dt):
    """Unit noise of ``q`` drawn ahead of the sequential loop, or None (drawn inside it)."""
    return q.draw(key, shape, dt) if hasattr(q, "draw") else None


def _quantize(q, key, u, noise):
    return q(key, u) if noise is None else q.apply(u, noise)


def _draw_batch(st: _Static, keys, scheme: Scheme, c):
    """Everything random of one step for one trial that does not depend on ``w``.

    Returns ``(Q_d(X_t), Q_l(y_t), noise, stats)``: ``noise`` holds the pre-drawn unit noise of
    the parameter, activation and output-gradient quantizers, ``stats`` the saturated and
    underflow fractions of number-format data and label quantizers. A whole block of steps is
    drawn in one vectorised pass: large draws are several times cheaper per number than
    per-step ones.
    """
    B, d, dt = st.batch, st.d, jnp.dtype(st.dtype)
    if st.fast_data:
        Xq = c["sqrt_lam_q"] * prng.normal(keys[_FEATURES], (B, d), dt)
        y = _rowsum(Xq * c["w_star_q"]) + c["y_sd_q"] * prng.normal(keys[_LABEL_NOISE], (B,), dt)
    else:
        X = c["sqrt_lam"] * prng.normal(keys[_FEATURES], (B, d), dt)
        y = _rowsum(X * c["w_star"]) + c["sqrt_noise"] * prng.normal(keys[_LABEL_NOISE], (B,), dt)
        Xq = scheme.data(keys[_ROLE_ID["data"]], X)
    yq = scheme.labels(keys[_ROLE_ID["labels"]], y)
    stats = {}
    if "data" in st.stats_roles:
        stats["data"] = jnp.stack(scheme.data.stats(X, Xq))
    if "labels" in st.stats_roles:
        stats["labels"] = jnp.stack(scheme.labels.stats(y, yq))
    kp = keys[_ROLE_ID["params"]]
    noise = {
        "params": prng.normal(kp, (B,), dt)
        if st.fast_params
        else _predraw(scheme.params, kp, (d,), dt),
        "activations": _predraw(scheme.activations, keys[_ROLE_ID["activations"]], (B,), dt),
        "grads": _predraw(scheme.grads, keys[_ROLE_ID["grads"]], (B,), dt),
    }
    return Xq, yq, noise, stats


def _update(st: _Static, keys, w, Xq, yq, noise, scheme: Scheme, storage, c):
    """``w + (γ/B)·Q_d(X)ᵀ Q_o(Q_l(y) − Q_a(Q_d(X) Q_p(w)))`` (SPEC §2) for one trial.

    Returns the new weights (stored through ``storage`` when set) and the saturated and
    underflow fractions of number-format parameter, activation and gradient quantizers.
    """
    B, dt = st.batch, jnp.dtype(st.dtype)
    stats = {}
    if st.fast_params:
        s = Xq if isinstance(scheme.params, Additive) else Xq * w
        norm = jnp.sqrt(_rowsum(s * s))
        a0 = _rowsum(Xq * w) + jnp.sqrt(scheme.params.eps.astype(dt)) * norm * noise["params"]
    else:
        wq = _quantize(scheme.params, keys[_ROLE_ID["params"]], w, noise["params"])
        if "params" in st.stats_roles:
            stats["params"] = jnp.stack(scheme.params.stats(w, wq))
        a0 = _rowsum(Xq * wq)
    a = _quantize(scheme.activations, keys[_ROLE_ID["activations"]], a0, noise["activations"])
    r = yq - a
    g = _quantize(scheme.grads, keys[_ROLE_ID["grads"]], r, noise["grads"])
    if "activations" in st.stats_roles:
        stats["activations"] = jnp.stack(scheme.activations.stats(a0, a))
    if "grads" in st.stats_roles:
        stats["grads"] = jnp.stack(scheme.grads.stats(r, g))
    w_new = w + (c["lr"] / B) * _rowsum((g[:, None] * Xq).T)
    if st.storage:
        w_new = storage(keys[_STORAGE], w_new)
    return w_new, stats


def _probe_risk(st: _Static, key, it, scheme: Scheme, c):
    """Unbiased estimate of ``R_q(w̄) = ½E[(⟨w*, x⟩ − ⟨w̄, Q_d(x)⟩)²]`` on fresh probes.

    For data quantizers without a closed-form ``δ`` (number formats): ``_PROBES`` fresh rows
    ``x ~ N(0, H)``, quantized by ``Q_d``, per trial and checkpoint. The estimate's noise is
    independent across trials, so it is part of the reported standard error.
    """
    dt = jnp.dtype(st.dtype)
    X = c["sqrt_lam"] * prng.normal(key, (_PROBES, st.d), dt)
    Xq = scheme.data(prng.derive(key, 1), X)
    e = _rowsum(X * c["w_star"]) - _rowsum(Xq * it)
    return 0.5 * _rowsum(e * e) / _PROBES


def _risks(st: _Static, it, probe_keys, scheme: Scheme, c):
    """Both risk conventions of iterates ``it`` (trials × d): ``[..., (quantized, clean)]``."""
    clean = 0.5 * _rowsum(c["lam"] * (it - c["w_star"]) ** 2)
    if st.probe_risk:
        quant = jax.vmap(_probe_risk, (None, 0, 0, None, None))(st, probe_keys, it, scheme, c)
    else:
        quant = quantized_input_risk(it, c["lam"], c["w_star"], c["delta"], rowsum=_rowsum)
    return jnp.stack([quant, clean], axis=-1)


@functools.lru_cache(maxsize=64)
def _chunk_fn(st: _Static, block: int):
    """Jitted run of a chunk of steps for a batch of trials (cached per structure).

    An outer scan walks blocks of ``block`` steps: each block's batches are drawn at once
    (random-number generation is the floor, and large draws are several times cheaper per
    number than per-step ones); an inner scan then applies the sequential updates.
    """
    draw = jax.vmap(jax.vmap(functools.partial(_draw_batch, st), (0, None, None)), (0, None, None))
    update = jax.vmap(functools.partial(_update, st), in_axes=(0, 0, 0, 0, 0, None, None, None))
    streams = jnp.arange(_N_STREAMS, dtype=jnp.uint32)
    roles = {r: i for i, r in enumerate(ROLES)}

    def run_chunk(state, trial_keys, xs, scheme, storage, c):
        def add_stats(acc, stats, active):
            for r, v in stats.items():
                acc = acc.at[:, roles[r]].add(jnp.where(active, v, 0))
            return acc

        def step(carry, x):
            w, S, snaps, rec, div_at, acc = carry
            t, active, ck, sn, keys, Xq, yq, noise, data_stats = x
            w_new, stats = update(keys, w, Xq, yq, noise, scheme, storage, c)
            acc = add_stats(add_stats(acc, data_stats, active), stats, active)
            nrm = _rowsum(w_new * w_new)
            bad = (~jnp.isfinite(nrm) | (nrm > c["limit"])) & active
            div_at = jnp.where(bad & (div_at == 0), t, div_at)
            keep = (div_at > 0) | ~active
            S = jnp.where(active, S + w, S)
            w = jnp.where(keep[:, None], w, w_new)
            if st.average == "tail":
                snaps = jax.lax.cond(sn >= 0, lambda s: s.at[sn].set(S), lambda s: s, snaps)

            def record(r):
                if st.average == "polyak":
                    it = S / c["n_ck"][ck]
                elif st.average == "last":
                    it = w
                else:
                    it = (S - snaps[c["snap_of"][ck]]) / (c["n_ck"][ck] - c["starts"][ck])
                probe_keys = prng.derive(trial_keys, t.astype(jnp.uint32), _PROBE)
                return r.at[ck].set(_risks(st, it, probe_keys, scheme, c))

            rec = jax.lax.cond(ck >= 0, record, lambda r: r, rec)
            return (w, S, snaps, rec, div_at, acc), None

        def block_body(carry, xb):
            t = xb[0]
            keys = prng.derive(
                trial_keys[None, :, None, :],
                t.astype(jnp.uint32)[:, None, None],
                streams[None, None, :],
            )
            Xq, yq, noise, data_stats = draw(keys, scheme, c)
            return jax.lax.scan(step, carry, (*xb, keys, Xq, yq, noise, data_stats))[0], None

        blocks = jax.tree_util.tree_map(lambda a: a.reshape(-1, block, *a.shape[1:]), xs)
        return jax.lax.scan(block_body, state, blocks)[0]

    return jax.jit(run_chunk)


class _Engine:
    """Runs the cached chunk function for one (problem, scheme, sgd, dtype, checkpoints)."""

    def __init__(self, problem, scheme, sgd, dtype, literal, checkpoints, step_chunk):
        self.problem, self.scheme, self.sgd = problem, _canonical(scheme), sgd
        self.dtype = jnp.dtype(dtype)
        self.static = _Static(
            d=problem.d,
            batch=sgd.batch,
            dtype=str(self.dtype),
            fast_data=not literal and _is_gaussian(self.scheme.data, Additive),
            fast_params=not literal
            and sgd.batch == 1
            and _is_gaussian(self.scheme.params, Additive, MultiplicativeElementwise),
            average=sgd.average,
            probe_risk=not has_closed_form(self.scheme.data),
            stats_roles=tuple(r for r, q in self.scheme.items() if hasattr(q, "stats")),
            storage=sgd.storage is not None,
        )
        self.ckpts = checkpoints
        self.L = step_chunk
        # Tail averaging needs the running sum S_s at s = ⌊n/2⌋ for every checkpoint n.
        starts = checkpoints // 2
        self.snap_steps, snap_of = np.unique(starts, return_inverse=True)
        lam = problem.spectrum
        self.w0 = sgd.initial(problem.d)
        # δ: closed form for idealized data quantizers; unused (probes) otherwise.
        delta = (
            np.zeros_like(lam) if self.static.probe_risk else data_noise_diag(self.scheme.data, lam)
        )
        c = {
            "lam": lam,
            "sqrt_lam": np.sqrt(lam),
            "w_star": problem.w_star,
            "sqrt_noise": np.sqrt(np.float64(problem.noise)),
            "delta": delta,
            "lr": sgd.lr,
            "limit": DIVERGENCE_FACTOR * (1 + np.sum(problem.w_star**2) + np.sum(self.w0**2)),
            "n_ck": checkpoints,
            "starts": starts,
        }
        if self.static.fast_data:
            c["sqrt_lam_q"] = np.sqrt(H_q(problem, self.scheme.data))
            c["w_star_q"] = w_star_q(problem, self.scheme.data)
            c["y_sd_q"] = np.sqrt(problem.noise + 2 * approx_err(problem, self.scheme.data))
        self.consts = {k: jnp.asarray(v, self.dtype) for k, v in c.items()}
        self.consts["snap_of"] = jnp.asarray(snap_of, jnp.int32)
        as_dtype = functools.partial(jax.tree_util.tree_map, lambda v: jnp.asarray(v, self.dtype))
        self.scheme = as_dtype(self.scheme)
        self.storage = as_dtype(sgd.storage)

    def run(self, trial_ids: np.ndarray, seed: int, on_chunk=None):
        """Run all steps for the trials ``trial_ids``.

        Returns ``(rec, div_at, done, interrupted, stats)``: risks ``(K, T, 2)``, the step at
        which each trial diverged (0 if none), the last step completed, whether the run was
        interrupted, and per trial and role the saturated and underflow fractions summed
        over steps ``(T, 5, 2)``.
        """
        T, d, N = len(trial_ids), self.problem.d, self.sgd.steps
        K = len(self.ckpts)
        # Steps per pre-drawn block: up to 32, keeping a block's draws near 2^20 numbers.
        block = 1 << max(0, min(5, int(math.log2(max(1, (1 << 20) // (T * self.sgd.batch * d))))))
        L = -(-self.L // block) * block
        chunk = _chunk_fn(self.static, block)
        trial_keys = prng.derive(prng.key(seed), jnp.asarray(trial_ids, jnp.uint32), _TRIAL_TAG)
        tail = self.static.average == "tail"
        state = (
            jnp.broadcast_to(jnp.asarray(self.w0, self.dtype), (T, d)),
            jnp.zeros((T, d), self.dtype),
            jnp.zeros((len(self.snap_steps) if tail else 1, T, d), self.dtype),
            jnp.full((K, T, 2), jnp.nan, self.dtype),
            jnp.zeros((T,), jnp.int32),
            jnp.zeros((T, len(ROLES), 2), self.dtype),
        )
        ck_of_step = np.full(N + L + 1, -1, np.int32)
        ck_of_step[self.ckpts] = np.arange(K)
        sn_of_step = np.full(N + L + 1, -1, np.int32)
        if tail:
            pos = self.snap_steps > 0
            sn_of_step[self.snap_steps[pos]] = np.nonzero(pos)[0]
        done, interrupted = 0, False
        try:
            for start in range(1, N + 1, L):
                t = np.arange(start, start + L)
                xs = (
                    jnp.asarray(t, jnp.int32),
                    jnp.asarray(t <= N),
                    jnp.asarray(ck_of_step[t]),
                    jnp.asarray(sn_of_step[t]),
                )
                new_state = chunk(state, trial_keys, xs, self.scheme, self.storage, self.consts)
                jax.block_until_ready(new_state)
                state, done = new_state, min(start + L - 1, N)
                if on_chunk is not None:
                    on_chunk(min(L, N - start + 1))
                if np.asarray(state[4]).any():
                    break
        except KeyboardInterrupt:
            interrupted = True
        rec = np.asarray(state[3], dtype=np.float64)
        return rec, np.asarray(state[4]), done, interrupted, np.asarray(state[5], np.float64)


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

    Returns:
        A :class:`SimResult`. Raises :class:`DivergenceError` (carrying the partial result) if a
        trial diverges; on ``KeyboardInterrupt`` returns what finished with ``interrupted=True``.
    """
    scheme = check_run(problem, scheme, sgd)
    trials = positive_int("trials", trials)
    seed = positive_int("seed", seed, low=0)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    sgd.initial(problem.d)
    ckpts = check_checkpoints(checkpoints, sgd.steps)
    work = sgd.batch * problem.d
    tc = positive_int("trial_chunk", trial_chunk) if trial_chunk else max(1, (1 << 20) // work)
    tc = -(-min(tc, trials) // _TRIAL_QUANTUM) * _TRIAL_QUANTUM
    sc = positive_int("step_chunk", step_chunk) if step_chunk else min(sgd.steps, 1000)
    with jax.enable_x64(dtype == "float64"):
        return _simulate(
            problem, scheme, sgd, trials, seed, ckpts, dtype, literal, tc, sc, progress
        )


def _simulate(problem, scheme, sgd, trials, seed, ckpts, dtype, literal, tc, sc, progress):
    engine = _Engine(problem, scheme, sgd, dtype, literal, ckpts, sc)
    config = {
        **run_config(problem, scheme, sgd),
        "seed": seed,
        "dtype": dtype,
        "literal": literal,
        "storage": getattr(sgd.storage, "label", "none"),
    }
    recs, divs, sats = [], [], []
    reached = sgd.steps
    interrupted = False
    with _progress(progress) as bar:
        task = bar.add_task("simulate", total=trials * sgd.steps) if progress else None
        for lo in range(0, trials, tc):
            ids = np.arange(lo, lo + tc)  # padded: trials ≥ `trials` are run and dropped
            n_real = min(tc, trials - lo)
            adv = (lambda n, k=n_real: bar.advance(task, n * k)) if progress else None
            rec, div, done, interrupted, sat = engine.run(ids, seed, adv)
            rec, div, sat = rec[:, :n_real], div[:n_real], sat[:n_real] / max(done, 1)
            if done == 0:
                break
            recs.append(rec)
            divs.append(div)
            sats.append(sat)
            reached = min(reached, done)
            if div.any() or interrupted:
                break
    if not recs:
        empty = np.zeros((0, 0))
        return SimResult(ckpts[:0], empty, empty, config, None, interrupted=True)
    rec = np.concatenate(recs, axis=1)
    div = np.concatenate(divs)
    sat = np.concatenate(sats).mean(axis=0)
    saturation = {
        r: (float(sat[i, 0]), float(sat[i, 1]))
        for i, r in enumerate(ROLES)
        if r in engine.static.stats_roles
    }
    divergence = None
    keep = ckpts <= reached
    if div.any():
        first = int(div[div > 0].min())
        divergence = Divergence(
            step=first,
            trials=tuple(int(i) for i in np.nonzero(div == first)[0]),
            lr=sgd.lr,
            trace_H_q=_trace_H_q(problem, scheme),
        )
        keep = ckpts < first
    result = SimResult(
        steps=ckpts[keep],
        risk=rec[keep, :, 0],
        risk_clean=rec[keep, :, 1],
        config=config,
        divergence=divergence,
        interrupted=interrupted,
        saturation=saturation,
    )
    if divergence is not None:
        raise DivergenceError(divergence, result)
    return result


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
