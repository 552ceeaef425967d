"""The follow-up's sketched model (SPEC §8; Zhang, Tang, Liang, Zou, ICML 2026,
arXiv 2602.19241): predictor ``⟨v, S x⟩`` with a sketch ``S ∈ R^{M×d}``, SGD on ``v ∈ R^M``.

**Exact reduction** (docs/theory.md §11). For ``x ~ N(0, H)`` and a fixed ``S``, ``z = Sx`` is
Gaussian with covariance ``H_s = S H Sᵀ``; with ``v* = H_s⁻¹ S H w*`` the residual
``y − ⟨v*, z⟩ = ⟨w* − Sᵀv*, x⟩ + ξ`` is jointly Gaussian with ``z`` and uncorrelated with it,
hence independent. So ``(z, y)`` has the law of the Gaussian model ``(H_s, v*, σ² +
‖w* − Sᵀv*‖²_H)`` (:func:`sketched_model`), and SGD on ``v`` with the data quantizer acting on
``z``'s coordinates (``quantize="after"``, the default) *is* quantized SGD on that model. The
risk against the full model is that model's risk plus a constant, the sketch's approximation
error ``½‖w* − Sᵀv*‖²_H``, in both conventions:

- clean: ``½‖Sᵀv − w*‖²_H = ½‖v − v*‖²_{H_s} + ½‖w* − Sᵀv*‖²_H`` (the cross term vanishes:
  ``Sᵀv*`` is the ``H``-projection of ``w*`` onto the range of ``Sᵀ``);
- quantized inputs: ``½E(y − ⟨v, Q_d(z)⟩)² − ½σ²`` = the reduced model's quantized-input risk
  (its label noise ``σ² + ‖w* − Sᵀv*‖²_H``) plus the same constant.

``quantize="before"`` quantizes ``x`` and then sketches (``z̃ = S·Q_d(x)``): a different model.
It equals "after" in law for no data quantization and for rank-one multiplicative data
(``S(sx) = s·Sx``), so the exact theory applies there; for additive, elementwise and number
formats it does not (the data error ``S·e`` is correlated across ``z``'s coordinates and, for
elementwise errors, with the residual), and only Monte Carlo (:func:`simulate_sketched`,
the literal update) covers it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from qlinreg import prng
from qlinreg.algorithm import SGDConfig, check_run, positive_int, run_config
from qlinreg.problem import Problem
from qlinreg.quantize.idealized import error_moments
from qlinreg.quantize.scheme import Scheme

__all__ = [
    "QUANTIZE",
    "Sketch",
    "SketchedModel",
    "exact_before",
    "simulate_sketched",
    "sketched_model",
]

Where = Literal["after", "before"]
QUANTIZE = ("after", "before")


@dataclass(frozen=True, eq=False)
class Sketch:
    """A sketch ``S`` (``M × d``, finite) and where the data quantizer acts.

    Attributes:
        matrix: ``S``.
        quantize: ``"after"`` (``Q_d(Sx)``, default: the exact reduction holds) or
            ``"before"`` (``S·Q_d(x)``; Monte Carlo only unless the data quantizer is none or
            rank-one multiplicative).
        label: how it was made (tables): ``gaussian:M:seed`` or the file name.
    """

    matrix: np.ndarray
    quantize: Where = "after"
    label: str = ""

    def __post_init__(self) -> None:
        try:
            S = np.array(self.matrix, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("sketch must be an array of numbers (M × d)") from None
        if S.ndim != 2 or min(S.shape) < 1:
            raise ValueError(f"sketch must be a 2-D array (M × d), got shape {S.shape}")
        if not np.all(np.isfinite(S)):
            raise ValueError("sketch must be finite")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"sketch_quantize must be 'after' or 'before', got {self.quantize!r}")
        S.setflags(write=False)
        object.__setattr__(self, "matrix", S)
        object.__setattr__(self, "label", self.label or f"matrix:{S.shape[0]}x{S.shape[1]}")

    @property
    def M(self) -> int:
        """The sketched dimension ``M``."""
        return int(self.matrix.shape[0])

    @classmethod
    def gaussian(cls, M: int, d: int, seed: int = 0, quantize: Where = "after") -> Sketch:
        """Entries i.i.d. ``N(0, 1/M)`` from ``numpy.random.default_rng(seed)``, row by row, so
        the sketches of one seed are nested: ``S_M`` is the first ``M`` rows of ``S_{M'}``
        (``M ≤ M'``) times ``√(M'/M)``."""
        M, d = positive_int("sketch (M)", M), positive_int("dim (d)", d)
        if not 0 <= positive_int("sketch_seed", seed, low=0) < 2**64:
            raise ValueError(f"sketch_seed must be an integer in [0, 2^64), got {seed!r}")
        S = np.random.default_rng(seed).standard_normal((M, d)) / math.sqrt(M)
        return cls(S, quantize, f"gaussian:{M}:{seed}")

    @classmethod
    def load(cls, path: str | Path, quantize: Where = "after") -> Sketch:
        """A user matrix ``S`` from a ``.npy`` file (``M × d``)."""
        p = Path(path)
        if p.suffix != ".npy":
            raise ValueError(f"sketch file {str(path)!r} must be a .npy array (numpy.save)")
        if not p.is_file():
            raise ValueError(f"sketch file {str(path)!r} does not exist")
        try:
            S = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"sketch file {str(path)!r} cannot be read: {exc}") from None
        return cls(S, quantize, p.name)


@dataclass(frozen=True, eq=False)
class SketchedModel:
    """The exact reduction of a sketched problem (module docstring).

    Attributes:
        problem: the original model (``x ∈ R^d``).
        sketch: ``S``.
        reduced: the Gaussian model of ``(z, y)``: ``H_s = S H Sᵀ``, ``v*``, noise
            ``σ² + ‖w* − Sᵀv*‖²_H``, in ``z``'s coordinates (where the data quantizer acts).
        v_star: ``v* = H_s⁻¹ S H w*``.
        approx: the sketch's approximation error ``½‖w* − Sᵀv*‖²_H``, added to both risks.
    """

    problem: Problem
    sketch: Sketch
    reduced: Problem
    v_star: np.ndarray
    approx: float = field(default=0.0)


def sketched_model(problem: Problem, sketch: Sketch) -> SketchedModel:
    """The reduced Gaussian model of ``(Sx, y)`` and the sketch's approximation error.

    Needs Gaussian features (no empirical data rows) and ``H_s = S H Sᵀ`` positive definite
    (``M ≤ d`` and ``S`` of full row rank)."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a qlinreg.Problem, got {type(problem).__name__}")
    if not isinstance(sketch, Sketch):
        raise TypeError(f"sketch must be a qlinreg.sketch.Sketch, got {type(sketch).__name__}")
    S = sketch.matrix
    if S.shape[1] != problem.d:
        raise ValueError(f"sketch must have d = {problem.d} columns, got shape {S.shape}")
    if problem.samples is not None:
        raise ValueError(
            "sketch: the sketched model reduces exactly for Gaussian features only; use "
            "data_mode 'gaussian'"
        )
    SU = S if problem.basis is None else S @ problem.basis  # S in the eigenbasis of H
    lam = problem.spectrum
    Hs = (SU * lam) @ SU.T
    Hs = 0.5 * (Hs + Hs.T)
    w = problem.to_eigen(problem.w_star)
    try:
        v = np.linalg.solve(Hs, SU @ (lam * w))
    except np.linalg.LinAlgError:
        v = None
    if v is None or np.linalg.eigvalsh(Hs)[0] <= 1e-10 * np.abs(Hs).max():
        raise ValueError(
            f"sketch: S H Sᵀ is singular (M = {sketch.M}, d = {problem.d}): a sketch needs "
            "M ≤ d rows of full rank"
        )
    r = w - SU.T @ v  # w* − Sᵀv* in the eigenbasis
    approx = 0.5 * float(lam @ (r * r))
    name = f"{problem.name + ', ' if problem.name else ''}sketch {sketch.label}"
    try:
        reduced = Problem.from_covariance(Hs, v, problem.noise + 2 * approx, name=name)
    except ValueError as exc:
        raise ValueError(f"sketch: {exc}") from None
    return SketchedModel(problem, sketch, reduced, v, approx)


def exact_before(scheme: Scheme) -> bool:
    """Whether quantizing ``x`` before the sketch has the exact theory: the data quantizer is
    none or rank-one multiplicative (then ``S·Q_d(x) = Q_d(Sx)`` in law)."""
    try:
        kind = error_moments(scheme.data, "data").kind
    except TypeError:
        return False
    return kind in ("none", "multiplicative")


# ------------------------------------------------------------------- the literal Monte Carlo

_FEATURES, _NOISE = 0, 1
_ROLE = {"data": 2, "labels": 3, "params": 4, "activations": 5, "grads": 6}
_STREAMS = 7
_PROBE, _PROBES = 7, 64


@functools.partial(jax.jit, static_argnames=("B", "before", "dtype"))
def _advance(v, S_run, keys, t0, n, lr, scheme, c, *, B: int, before: bool, dtype: str):
    """Steps ``t0+1 … t0+n`` (step size ``lr``) for a batch of trials (vmapped)."""
    dt = jnp.dtype(dtype)

    def one(v, S_run, key):
        def body(i, carry):
            v, S_run = carry
            kt = prng.derive(key, (t0 + i + 1).astype(jnp.uint32))
            k = prng.derive(kt, jnp.arange(_STREAMS, dtype=jnp.uint32))  # one vectorised draw
            z = prng.normal(k[_FEATURES], (B, c["sqrt_lam"].shape[0]), dt)
            X = (z * c["sqrt_lam"]) @ c["basis_T"]
            y = X @ c["w_star"] + c["sqrt_noise"] * prng.normal(k[_NOISE], (B,), dt)
            kd = k[_ROLE["data"]]
            Zq = scheme.data(kd, X) @ c["S_T"] if before else scheme.data(kd, X @ c["S_T"])
            yq = scheme.labels(k[_ROLE["labels"]], y)
            vq = scheme.params(k[_ROLE["params"]], v)
            a = scheme.activations(k[_ROLE["activations"]], Zq @ vq)
            g = scheme.grads(k[_ROLE["grads"]], yq - a)
            return v + (lr / B) * (Zq.T @ g), S_run + v

        return jax.lax.fori_loop(0, n, body, (v, S_run))

    return jax.vmap(one)(v, S_run, keys)


@functools.partial(jax.jit, static_argnames=("B", "before", "dtype"))
def _probe_risk(vbar, keys, scheme, c, *, B: int, before: bool, dtype: str):
    """Unbiased estimate of ``½E(⟨w*, x⟩ − ⟨v̄, z̃⟩)²`` on fresh rows, in groups of ``B`` (a
    number-format data quantizer sees the tensor shape training gives it)."""
    dt = jnp.dtype(dtype)
    groups = -(-_PROBES // B)

    def one(v, key):
        gk = prng.derive(prng.derive(key, _PROBE), jnp.arange(groups, dtype=jnp.uint32))

        def group(k):
            z = prng.normal(prng.derive(k, 0), (B, c["sqrt_lam"].shape[0]), dt)
            X = (z * c["sqrt_lam"]) @ c["basis_T"]
            kd = prng.derive(k, 1)
            Zq = scheme.data(kd, X) @ c["S_T"] if before else scheme.data(kd, X @ c["S_T"])
            e = X @ c["w_star"] - Zq @ v
            return jnp.sum(e * e)

        return 0.5 * jnp.sum(jax.vmap(group)(gk)) / (groups * B)

    return jax.vmap(one)(vbar, keys)


def _trace(reduced: Problem, scheme: Scheme) -> float:
    """``tr H^(q)`` of the sketched features (``tr H_s`` for a number format)."""
    from qlinreg.theory.quantized_data import H_q

    try:
        return float(H_q(reduced.eigen(), scheme.data).sum())
    except TypeError:
        return reduced.trace_H


def simulate_sketched(
    problem: Problem,
    sketch: Sketch,
    scheme: Scheme | None,
    sgd: SGDConfig,
    *,
    trials: int = 100,
    seed: int = 0,
    checkpoints=None,
    dtype: str = "float32",
):
    """Monte Carlo of the sketched model by the literal update: draw ``x ~ N(0, H)``, sketch
    and quantize (``sketch.quantize``: ``Q_d(Sx)`` or ``S·Q_d(x)``), then the quantized SGD
    step of SPEC §2 on ``v ∈ R^M``. Risks against the full model, both conventions: clean
    ``½‖Sᵀv̄ − w*‖²_H``; on quantized inputs ``½E(y − ⟨v̄, z̃⟩)² − ½σ²`` — in closed form for
    idealized data quantizers (``+ ½v̄ᵀDv̄``, ``D`` the data error's covariance in ``z``'s
    coordinates: ``noise(H_s)`` after, ``S·noise(H)·Sᵀ`` before), on 64 fresh rows per trial and
    checkpoint for number formats.

    The reference path for the sketched model (the reduction of :func:`sketched_model`, run
    by :func:`qlinreg.simulate`, is tested against it) and the only one for
    ``quantize="before"``. Trial ``k`` depends only on ``(seed, k)``. Not chunked: no progress
    bar or interruption; a divergence raises :class:`~qlinreg.sgd.DivergenceError` with the
    checkpoints before it. Returns a :class:`~qlinreg.sgd.SimResult` (Polyak, tail or last
    iterate, as ``sgd.average``).
    """
    from qlinreg.sgd import Divergence, DivergenceError, SimResult, check_simulation
    from qlinreg.theory.quantized_data import noise_matrix

    model = sketched_model(problem, sketch)
    scheme, ckpts = check_simulation(
        model.reduced, scheme, sgd, trials=trials, seed=seed, checkpoints=checkpoints, dtype=dtype
    )
    check_run(problem, scheme, sgd)
    before = sketch.quantize == "before"
    S, B, d = sketch.matrix, sgd.batch, problem.d
    U = np.eye(d) if problem.basis is None else problem.basis
    try:
        m = error_moments(scheme.data, "data")
        Dx = noise_matrix(problem.covariance, m)
        D = S @ Dx @ S.T if before else noise_matrix(model.reduced.covariance, m)
    except TypeError:
        D = None  # a number format: probes
    with jax.enable_x64(dtype == "float64"):
        consts = {
            "sqrt_lam": np.sqrt(problem.spectrum), "basis_T": U.T, "w_star": problem.w_star,
            "sqrt_noise": math.sqrt(problem.noise), "S_T": S.T,
        }  # fmt: skip
        c = {k: jnp.asarray(v, dtype) for k, v in consts.items()}
        cast = functools.partial(jax.tree_util.tree_map, lambda x: jnp.asarray(x, dtype))
        q = cast(scheme)
        root = prng.key(seed)
        keys = prng.derive(root, jnp.arange(trials, dtype=jnp.uint32), 0x5CE7C)
        v0 = np.zeros(sketch.M) if sgd.w0 is None else np.asarray(sgd.w0, np.float64)
        if v0.shape != (sketch.M,):
            raise ValueError(f"w0 must have length M = {sketch.M} (the sketched model's v)")
        v = jnp.broadcast_to(jnp.asarray(v0, dtype), (trials, sketch.M))
        S_run = jnp.zeros((trials, sketch.M), dtype)
        starts = ckpts // 2
        bounds = [t - 1 for t, _ in sgd.schedule]
        record = np.unique(np.concatenate([ckpts, starts, bounds, [0]]))
        snaps = {0: np.zeros((trials, sketch.M))}
        risks = np.full((len(ckpts), trials, 2), np.nan)
        kw = {"B": B, "before": before, "dtype": dtype}
        t, reached, divergence = 0, 0, None
        for nxt in record[record > 0]:
            lr = jnp.asarray(float(sgd.lr_at(np.array([t + 1]))[0]), dtype)
            v, S_run = _advance(v, S_run, keys, jnp.int32(t), jnp.int32(nxt - t), lr, q, c, **kw)
            t = int(nxt)
            vn, Sn = np.asarray(v, np.float64), np.asarray(S_run, np.float64)
            bad = ~np.isfinite(vn).all(axis=1) | ~np.isfinite(Sn).all(axis=1)
            if bad.any():
                trials_bad = tuple(np.nonzero(bad)[0].tolist())
                divergence = Divergence(t, trials_bad, sgd.lr, _trace(model.reduced, scheme))
                break
            reached = t
            if t in set(starts.tolist()):
                snaps[t] = Sn
            for j in np.nonzero(ckpts == t)[0]:
                s0 = int(starts[j])
                vbar = {"polyak": Sn / t, "last": vn, "tail": (Sn - snaps[s0]) / (t - s0)}
                vbar = vbar[sgd.average]
                diff = vbar @ S @ U - problem.to_eigen(problem.w_star)
                clean = 0.5 * (diff * diff) @ problem.spectrum
                if D is not None:
                    quant = clean + 0.5 * np.einsum("ti,ij,tj->t", vbar, D, vbar)
                else:
                    pk = prng.derive(keys, jnp.uint32(t))
                    quant = np.asarray(
                        _probe_risk(jnp.asarray(vbar, dtype), pk, q, c, **kw), np.float64
                    )
                risks[j, :, 0], risks[j, :, 1] = quant, clean
    keep = ckpts <= reached
    config = {**run_config(problem, scheme, sgd), "seed": seed, "dtype": dtype, "literal": True}
    config.update(sketch=sketch.label, sketch_dim=sketch.M, sketch_quantize=sketch.quantize)
    result = SimResult(
        ckpts[keep], risks[keep, :, 0], risks[keep, :, 1], config, divergence, reached=reached
    )
    if divergence is not None:
        raise DivergenceError(divergence, replace(result, divergence=None))
    return result
