"""Moment-estimated row moments for quantizers whose scale is shared by several entries
(per-vector or per-block absmax INT, per-tensor FP/INT, MX): docs/theory.md §14.

A scale computed from a group of entries couples them: ``E[x̃_i² x̃_j²] ≠ E x̃_i² E x̃_j²``, and
with a per-tensor scale two rows of a batch are no longer independent. The diagonal recursion
still closes (the quantizers are sign-symmetric per coordinate) but needs full ``d × d``
matrices of one row, ``A_ik = E[x̃_i² x̃_k²]`` and ``M_ik = E[x̃_i² ỹ x̃_k]``, the vectors
``E x̃_i²``, ``E x_i x̃_i``, ``E[x̃_i ỹ]``, ``E[x̃_i² ỹ²]`` and, when rows are coupled, moments of
two rows of one batch. They are estimated from sampled batches quantized exactly as the engine
quantizes them (``B`` rows of data, the ``B`` labels, one key each), with the clean data as a
control variate: ``E f(x̃, ỹ) = E f(x, y) + mean(f(x̃, ỹ) − f(x, y))``, the first term a
Gaussian moment in closed form, so the sampling error scales with the quantization error, not
with the moment. The rows are split into ``G`` groups; the risk's standard error is the
delete-one-group jackknife's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from qlinreg import prng
from qlinreg.problem import Problem, draw_features
from qlinreg.quantize.formats import FloatFormat, IntFormat, MXFormat, NumberFormat
from qlinreg.quantize.idealized import Idealized
from qlinreg.theory.format_moments import scalar_grid

__all__ = [
    "DEFAULT_SAMPLES",
    "GROUPS",
    "SAMPLED_MAX_DIM",
    "SampledMoments",
    "conditional_powers",
    "couples_rows",
    "sample_moments",
]

DEFAULT_SAMPLES = 1 << 15  # rows
GROUPS = 10  # jackknife groups
SAMPLED_MAX_DIM = 512  # d × d moments and an O(N·d²) recursion
_CHUNK = 1 << 21  # entries quantized per call


def couples_rows(q) -> bool:
    """Whether the data quantizer ``q`` on a ``B × d`` batch makes rows depend on each other: a
    per-tensor scale, or a block axis across rows. Unknown quantizers: assumed to."""
    if isinstance(q, Idealized) or (isinstance(q, NumberFormat) and scalar_grid(q) is not None):
        return False
    if isinstance(q, FloatFormat):
        return q.scaling == "tensor"
    if isinstance(q, IntFormat | MXFormat):
        return getattr(q, "scaling", "block") == "tensor" or q.axis not in (-1,)
    return True


@dataclass(frozen=True)
class SampledMoments:
    """Exact clean moments and per-group sums of (quantized − clean) statistics.

    Keys: ``h`` (``x̃_i²``), ``c`` (``x_i x̃_i``), ``ell`` (``x̃_i ỹ``), ``A`` (``x̃_i² x̃_k²``),
    ``M`` (``x̃_i² ỹ x̃_k``), ``gy`` (``x̃_i² ỹ²``), ``gyc`` (``x̃_i² y²``) per row, and per
    ordered pair of rows of a batch (when ``pairs``) ``Pxx`` (``x̃_{b,i}² x̃_{b',i}²``), ``Pxy``
    (``x̃_{b,i} ỹ_b x̃_{b',i}²``), ``Pyy`` (``x̃_{b,i} ỹ_b x̃_{b',i} ỹ_{b'}``), ``Pcl`` (the same
    with clean ``y``).
    """

    clean: dict[str, np.ndarray]
    sums: dict[str, np.ndarray]  # leading axis: group
    rows: np.ndarray  # rows per group
    pair_count: np.ndarray  # ordered pairs of distinct rows per group
    pairs: bool

    def moments(self, drop: int | None = None) -> dict[str, np.ndarray]:
        """The estimates from every group but ``drop``."""
        keep = np.ones(len(self.rows), bool)
        if drop is not None:
            keep[drop] = False
        n, npairs = self.rows[keep].sum(), self.pair_count[keep].sum()
        out = {}
        for key, total in self.sums.items():
            count = npairs if key.startswith("P") else n
            out[key] = self.clean[key] + total[keep].sum(0) / count
        return out


def _clean(problem: Problem) -> dict[str, np.ndarray]:
    """Gaussian moments of ``(x, y)``, ``x ~ N(0, diag λ)``, ``y = ⟨w*, x⟩ + ξ`` (Isserlis)."""
    lam, ws = problem.spectrum, problem.w_star
    V = float(lam @ (ws * ws)) + problem.noise
    g = lam * ws
    return {
        "h": lam,
        "c": lam,
        "ell": g,
        "A": np.outer(lam, lam) + np.diag(2 * lam * lam),
        "M": np.outer(lam, g) + np.diag(2 * lam * g),
        "gy": lam * V + 2 * g * g,
        "gyc": lam * V + 2 * g * g,
        "Pxx": lam * lam,
        "Pxy": g * lam,
        "Pyy": g * g,
        "Pcl": g * g,
    }


def _quantize_batches(q, key, u: jax.Array) -> jax.Array:
    """``q`` on each batch ``u[k]`` with its own key (the engine's grouping)."""
    keys = prng.derive(key, jnp.arange(u.shape[0], dtype=jnp.uint32))
    return jax.vmap(q)(keys, u)


def _grid_scale(q, U: jax.Array):
    """How ``q`` scales each entry of the batches ``U`` (leading axis: batch): ``("exp", o)``
    (a power-of-two offset of ``q.grid``), ``("int", S)`` (an INT scale), or ``None`` when the
    conditional moments are not known in closed form (then the rounding is sampled)."""
    if isinstance(q, FloatFormat):
        if q.scaling == "none":
            return "exp", np.zeros(U.shape, np.int64)
        s = np.asarray(jax.vmap(q.scale_exponent)(U))
        return "exp", np.broadcast_to(s.reshape(s.shape + (1,) * (U.ndim - 1)), U.shape)
    if isinstance(q, MXFormat) and q.axis == -1:
        s = np.asarray(jax.vmap(q.scale_exponent)(U))
        return "exp", np.repeat(s, q.block_size, axis=-1)[..., : U.shape[-1]]
    if isinstance(q, IntFormat) and q.signed and q.symmetric:
        return "int", np.asarray(jax.vmap(q.scale_of)(U))
    return None


def conditional_powers(q, key, U: jax.Array) -> np.ndarray:
    """``E[Q(U)^k | U]``, ``k = 1 … 4`` (shape ``(4,) + U.shape``), for ``q`` applied to each
    batch ``U[b]``: exact from the two grid neighbours at the batch's scale for the known
    formats (module docstring), else the powers of one sampled rounding (``key``)."""
    x = np.asarray(U, np.float64)
    how = _grid_scale(q, U)
    if how is None:
        xq = np.asarray(_quantize_batches(q, key, U), np.float64)
        return np.stack([xq**k for k in range(1, 5)])
    kind, scale = how
    a = np.abs(x)
    if kind == "exp":
        g = q.grid
        m, top = g.man_bits, g.max_value
        a = np.ldexp(a, -scale)  # exact: a power-of-two offset
        e = np.frexp(a)[1] - 1  # floor(log2 a) for a > 0
        t = np.maximum(e, g.emin) - m if g.subnormals else np.where(e >= g.emin, e - m, g.emin)
        step = np.ldexp(1.0, t)
        overflow = g.overflow
    else:
        a = a / scale
        step, top, overflow = np.ones_like(a), float(q.qmax), "saturate"
    lo = np.floor(a / step) * step
    hi = lo + step
    saturated = a >= top
    if overflow != "saturate" and np.any(a > top):
        raise ValueError(
            f"{q.label}: sampled values exceed the largest finite magnitude and become "
            f"{overflow}: the expected risk is not finite; use a saturating format or a scale"
        )
    lo, hi = np.where(saturated, top, lo), np.where(saturated, top, np.minimum(hi, top))
    if q.rounding == "stochastic":
        p = np.where(hi > lo, (a - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    elif q.rounding == "toward_zero":
        p = np.zeros_like(a)
    else:  # nearest: ties have probability 0
        p = (a - lo > hi - a).astype(np.float64)
    back = (lambda v: np.ldexp(v, scale)) if kind == "exp" else (lambda v: v * scale)
    lo, hi, sign = back(lo), back(hi), np.sign(x)
    return np.stack([sign**k * ((1 - p) * lo**k + p * hi**k) for k in range(1, 5)])


@partial(jax.jit, static_argnames="shape")
def _draw(sqrt_lam, w_star, noise_sd, key, shape):
    """``nb`` batches (``shape = (nb, B, d)``) of rows and their labels, float64."""
    kx, kn = prng.derive(key, 0), prng.derive(key, 1)
    X = draw_features(kx, sqrt_lam, shape, jnp.float64)
    return X, X @ w_star + noise_sd * prng.normal(kn, shape[:2], jnp.float64)


def _chunk_sums(problem: Problem, data_q, label_q, batch: int, nb: int, key, pairs: bool):
    """Sums of (quantized − clean) statistics over ``nb`` batches of ``batch`` rows, from the
    rounding's conditional moments given the values (``mu`` for data, ``nu`` for labels)."""
    d = problem.d
    X, y = _draw(
        jnp.asarray(np.sqrt(problem.spectrum)), jnp.asarray(problem.w_star),
        jnp.sqrt(problem.noise), key, (nb, batch, d),
    )  # fmt: skip
    x, yv = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if isinstance(data_q, Idealized):
        mu = np.stack([x**k for k in range(1, 5)])
    else:
        mu = conditional_powers(data_q, prng.derive(key, 2), X)
    if isinstance(label_q, NumberFormat):
        nu = conditional_powers(label_q, prng.derive(key, 3), y)[:2]
    else:
        nu = np.stack([yv, yv * yv])
    x2, y2 = x * x, yv * yv
    Y1, Y2, Yc = nu[0][..., None], nu[1][..., None], yv[..., None]
    out = {
        "h": (mu[1] - x2).sum((0, 1)),
        "c": (x * mu[0] - x2).sum((0, 1)),
        "ell": (mu[0] * Y1 - x * Yc).sum((0, 1)),
        "gy": (mu[1] * Y2 - x2 * y2[..., None]).sum((0, 1)),
        "gyc": ((mu[1] - x2) * y2[..., None]).sum((0, 1)),
    }
    # Given the values, entries round independently: E[x̃_i² x̃_k²] = μ2_i μ2_k (i ≠ k), μ4 (i = k).
    f2, c2 = mu[1].reshape(-1, d), x2.reshape(-1, d)
    out["A"] = (f2 - c2).T @ f2 + c2.T @ (f2 - c2) + np.diag((mu[3] - mu[1] ** 2).sum((0, 1)))
    f1, c1 = mu[0].reshape(-1, d), x.reshape(-1, d)
    fy, cy = f2 * Y1.reshape(-1, 1), c2 * Yc.reshape(-1, 1)
    diag = ((mu[2] - mu[1] * mu[0]) * Y1).sum((0, 1))
    out["M"] = (fy - cy).T @ f1 + cy.T @ (f1 - c1) + np.diag(diag)
    if pairs:

        def cross(f, g):  # Σ_{b ≠ b'} f_b g_{b'} per coordinate
            return (f.sum(1) * g.sum(1) - (f * g).sum(1)).sum(0)

        xy_q, xy_c, xyc_q = mu[0] * Y1, x * Yc, mu[0] * Yc
        out["Pxx"] = cross(mu[1], mu[1]) - cross(x2, x2)
        out["Pxy"] = cross(xy_q, mu[1]) - cross(xy_c, x2)
        out["Pyy"] = cross(xy_q, xy_q) - cross(xy_c, xy_c)
        out["Pcl"] = cross(xyc_q, xyc_q) - cross(xy_c, xy_c)
    return out


def sample_moments(
    problem: Problem, data_q, label_q, batch: int, *, samples: int, seed: int
) -> SampledMoments:
    """Estimate the row moments of ``(Q_d(x), Q_l(y))`` on the diagonal ``problem`` from
    ``samples`` rows (rounded up to whole batches and :data:`GROUPS` equal groups), drawn and
    quantized with :mod:`qlinreg.prng` keys from ``seed``."""
    d = problem.d
    # a shared scale on labels runs across the batch's labels, i.e. across rows
    shared_labels = isinstance(label_q, NumberFormat) and scalar_grid(label_q) is None
    pairs = (couples_rows(data_q) or shared_labels) and batch > 1
    per_group = -(-samples // (GROUPS * batch))  # batches per group
    step = max(1, _CHUNK // (batch * d))
    root = prng.key(seed)
    sums = []
    with jax.enable_x64(True):
        for g in range(GROUPS):
            acc: dict = {}
            for c, start in enumerate(range(0, per_group, step)):
                nb = min(step, per_group - start)
                part = _chunk_sums(
                    problem, data_q, label_q, batch, nb, prng.derive(root, g, c), pairs
                )
                for k, v in part.items():
                    acc[k] = acc.get(k, 0) + v
            sums.append(acc)
    keys = sums[0].keys()
    stacked = {k: np.stack([s[k] for s in sums]) for k in keys}
    rows = np.full(GROUPS, per_group * batch, np.float64)
    pair_count = np.full(GROUPS, per_group * batch * (batch - 1), np.float64)
    return SampledMoments(_clean(problem), stacked, rows, pair_count, pairs)
