"""Idealized surrogates of number formats: one ε fitted to the format's measured error energy
(the comparison baseline of docs/theory.md §14; the approximation for iterate-dependent roles).

A format on a role is replaced by the idealized model that
:func:`~qlinreg.quantize.measure_epsilon` prefers on representative values of that role, with
the measured error energy: ``Additive(mean δ)`` or ``MultiplicativeElementwise(Σδ / Σu²)``
(:func:`~qlinreg.theory.quantized_data.surrogate` for the data: ``Σδ / tr H``). Representative
values, quantized in groups shaped as the engine quantizes them (``B`` rows of data, vectors of
``B`` labels, activations or output gradients, the whole ``w``):

- data: feature rows of the problem; ``δ_i`` exact (quadrature) for an elementwise format on a
  diagonal problem, else sampled;
- labels: ``y = ⟨w*, x⟩ + ξ``, i.e. ``N(0, ‖w*‖²_H + σ²)``;
- activations: ``⟨x, w*⟩`` (the converged iterate), ``N(0, ‖w*‖²_H)``;
- output gradients: the converged residual, ``N(0, σ²)``;
- parameters: ``w*`` itself (the converged iterate), rounded afresh in each sample.

For the last three the values depend on the iterate along the path, so the surrogate is an
approximation whatever the format: the exact risk of a format on those roles is Monte Carlo
only.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from qlinreg import prng
from qlinreg.problem import Problem
from qlinreg.quantize.formats import NumberFormat, quantize_steps
from qlinreg.quantize.idealized import Additive, MultiplicativeElementwise
from qlinreg.quantize.measure import measure_epsilon
from qlinreg.quantize.scheme import ROLES, Scheme
from qlinreg.theory.quantized_data import surrogate
from qlinreg.theory.row_moments import exact_data_quantizer, row_moments

__all__ = ["surrogate_scheme"]

_ENTRIES = 1 << 17  # values sampled per role


def _grouped(q, batch: int):
    """``q`` applied to groups of ``batch`` consecutive rows (axis 0) as one tensor each, with
    independent keys: the shape the engine quantizes (delayed scaling: the reference of the
    groups before, :func:`~qlinreg.quantize.formats.quantize_steps`)."""

    def apply(key, u):
        groups = u.reshape(-1, batch, *u.shape[1:])
        keys = prng.derive(key, jnp.arange(groups.shape[0], dtype=jnp.uint32))
        return quantize_steps(q, keys, groups)[0].reshape(u.shape)

    return jax.jit(apply)


def _values(role: str, problem: Problem, batch: int, key) -> np.ndarray:
    """Representative values of a role (see the module docstring), float32, groups along
    axis 0 (rows of data; vectors of ``batch`` for labels, activations and gradients)."""
    d = problem.d
    ws2 = float(np.sum(problem.spectrum * problem.to_eigen(problem.w_star) ** 2))
    if role == "data":
        rows = batch * max(8, -(-_ENTRIES // (d * batch)))
        return problem.features(key, rows)
    if role == "params":
        return jnp.broadcast_to(
            jnp.asarray(problem.w_star, jnp.float32), (max(8, _ENTRIES // d), d)
        )
    sd = {
        "labels": math.sqrt(ws2 + problem.noise),
        "activations": math.sqrt(ws2),
        "grads": math.sqrt(problem.noise),
    }[role]
    n = max(8, _ENTRIES // batch)
    return jnp.float32(sd) * prng.normal(key, (n, batch), jnp.float32)


def _surrogate(q: NumberFormat, role: str, problem: Problem, batch: int, seed: int):
    root = prng.key(seed)
    u = _values(role, problem, batch, prng.derive(root, 0))
    group = batch if role == "data" else 1
    apply = _grouped(q, group)
    key = prng.derive(root, 1)
    est = measure_epsilon(apply, u, key=key)
    uq = np.asarray(apply(key, u), np.float64)
    err2 = (uq - np.asarray(u, np.float64)) ** 2
    if role == "data":
        exact = problem.diagonal and exact_data_quantizer(q)
        delta = row_moments(q, problem.spectrum).delta if exact else err2.mean(0)
        return surrogate(est.model, delta, problem)
    energy = float(np.mean(np.asarray(u, np.float64) ** 2))
    if est.model == "multiplicative":
        return MultiplicativeElementwise(float(err2.mean()) / energy)
    return Additive(float(err2.mean()))


@lru_cache(maxsize=32)
def surrogate_scheme(problem: Problem, scheme: Scheme, batch: int, *, seed: int = 0) -> Scheme:
    """``scheme`` with every number format replaced by its idealized surrogate (module
    docstring); idealized quantizers are kept. ``batch``: the ``B`` of the run. Cached (a
    problem is keyed by identity)."""
    out = {}
    for i, role in enumerate(ROLES):
        q = getattr(scheme, role)
        out[role] = (
            _surrogate(q, role, problem, batch, seed + i) if isinstance(q, NumberFormat) else q
        )
    return Scheme(**out)
