"""Closed forms for quantized data (SPEC §4): ``H^(q)``, ``w*^(q)``, ApproxErr, ``k*``.

For every idealized data quantizer the noise ``Q_d(x) − x`` is uncorrelated with ``x`` and has
a diagonal expected covariance ``diag(δ)``:

- none: ``δ = 0``; additive: ``δ_i = ε``; multiplicative (rank-one or elementwise):
  ``δ_i = ε·λ_i``.

Hence ``H^(q) = H + diag(δ)`` (a floor ``ε`` under the spectrum for additive, ``(1+ε)H`` for
multiplicative), ``E[Q_d(x) y] = H w*`` and ``w*^(q) = (H^(q))⁻¹ H w*``.

Risk on quantized inputs (the paper's convention) of a weight ``w``::

    R_q(w) = ½ E[(y − ⟨w, Q_d(x)⟩)²] − ½σ² = ½‖w − w*‖²_H + ½ Σ_i δ_i w_i²
           = ½‖w − w*^(q)‖²_{H^(q)} + ApproxErr,

with ``ApproxErr = ½ Σ_i λ_i δ_i/(λ_i + δ_i) w*_i²`` (for multiplicative data
``ε/(1+ε)·½‖w*‖²_H``). On clean inputs the best quantized predictor has risk
``½‖w*^(q) − w*‖²_H = ½ Σ_i λ_i (δ_i/(λ_i+δ_i))² w*_i²``.

Full covariances (a problem with a ``basis``, quantizers acting on the data's coordinates):
the noise covariance is ``D = add·I + (mult − rank1)·diag(H) + rank1·H``
(:func:`noise_covariance`). It commutes with ``H`` when the quantizer commutes with rotations
(none, additive, rank-one multiplicative: ``D = εI`` or ``εH``), and then every formula above
holds in the eigenbasis. Elementwise multiplicative noise gives ``H^(q) = H + ε·diag(H)``,
which does not: ``w*^(q) = (H^(q))⁻¹Hw*`` and ``ApproxErr = ½(‖w*‖²_H − ‖w*^(q)‖²_{H^(q)})``
are then computed with the matrices.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from qlinreg import prng
from qlinreg.problem import Problem, draw_features
from qlinreg.quantize.formats import NumberFormat
from qlinreg.quantize.idealized import (
    Additive,
    ErrorMoments,
    Idealized,
    MultiplicativeElementwise,
    error_moments,
)
from qlinreg.theory.row_moments import exact_data_quantizer, row_moments

__all__ = [
    "H_q",
    "approx_err",
    "approx_err_clean",
    "approx_err_floors",
    "data_noise_diag",
    "estimate_H_q",
    "H_q_matrix",
    "has_closed_form",
    "noise_covariance",
    "rotation_invariant",
    "data_noise",
    "k_star",
    "quantized_input_risk",
    "quantized_spectrum",
    "surrogate",
    "w_star_q",
]


def rotation_invariant(q) -> bool:
    """Whether an idealized quantizer's error law commutes with rotations of its input: none,
    Gaussian additive, rank-one multiplicative (either law: one scalar). Elementwise
    multiplicative, the uniform additive dither (its i.i.d. coordinates' fourth cumulants are
    not those of a rotated vector) and number formats do not."""
    if not isinstance(q, Idealized):
        return False
    m = error_moments(q)
    return m.kind in ("none", "multiplicative") or (m.kind == "additive" and m.law == "gaussian")


def _in_eigenbasis(problem: Problem, q) -> bool:
    return problem.basis is None or rotation_invariant(q)


def noise_matrix(H: np.ndarray, m: ErrorMoments) -> np.ndarray:
    """``D = add·I + (mult − rank1)·diag(H) + rank1·H``: the expected error covariance of a
    quantizer with moments ``m`` on ``x ~ N(0, H)`` (any basis; ``H`` a ``d × d`` matrix)."""
    H = np.asarray(H, np.float64)
    return m.add * np.eye(H.shape[0]) + (m.mult - m.rank1) * np.diag(np.diag(H)) + m.rank1 * H


def noise_covariance(q, problem: Problem) -> np.ndarray:
    """``D = E[(Q_d(x) − x)(Q_d(x) − x)ᵀ]`` (:func:`noise_matrix`) in the problem's
    coordinates (``d × d``), for an idealized data quantizer."""
    return noise_matrix(problem.covariance, error_moments(q, "data"))


def H_q_matrix(problem: Problem, q) -> np.ndarray:
    """``H^(q) = H + D`` as a matrix in the problem's coordinates (:func:`noise_covariance`)."""
    return problem.covariance + noise_covariance(q, problem)


def data_noise(q, problem: Problem) -> tuple[np.ndarray, float]:
    """``(δ, ε_rank1)`` with ``D = diag(δ) + ε_rank1·H`` (:func:`noise_covariance`):
    ``δ = add + (mult − rank1)·diag(H)`` in the problem's coordinates, so that
    ``½wᵀDw = ½Σ δ_i w_i² + ½ε_rank1·‖w‖²_H``."""
    m = error_moments(q, "data")
    h = np.diag(problem.covariance) if problem.basis is not None else problem.spectrum
    return m.add + (m.mult - m.rank1) * h, float(m.rank1)


def has_closed_form(q) -> bool:
    """Whether :func:`data_noise_diag` knows ``q`` (the idealized quantizers)."""
    return isinstance(q, Idealized)


def data_noise_diag(q, spectrum: np.ndarray) -> np.ndarray:
    """``δ``: diagonal of ``E[(Q_d(x) − x)(Q_d(x) − x)ᵀ]`` for ``x ~ N(0, diag(spectrum))``:
    ``ε_add + ε_mult·λ_i`` (:meth:`~qlinreg.quantize.idealized.ErrorMoments.noise_diag`)."""
    lam = np.asarray(spectrum, dtype=np.float64)
    return np.broadcast_to(error_moments(q, "data").noise_diag(lam), lam.shape).copy()


def _format_moments(problem: Problem, q):
    """Exact row moments of a number format on a diagonal problem, else ``None``."""
    if isinstance(q, NumberFormat) and problem.basis is None and exact_data_quantizer(q):
        return row_moments(q, problem.spectrum)
    return None


def H_q(problem: Problem, q) -> np.ndarray:
    """Eigenvalues ``λ^(q)`` of ``H^(q) = E[Q_d(x) Q_d(x)ᵀ] = H + diag(δ)``: in the order of
    ``problem.spectrum`` when ``D`` commutes with ``H``, else those of :func:`H_q_matrix`,
    descending; ``E x̃_i²`` for an elementwise number format on a diagonal problem."""
    rm = _format_moments(problem, q)
    if rm is not None:
        return rm.h.copy()
    if _in_eigenbasis(problem, q):
        return problem.spectrum + data_noise_diag(q, problem.spectrum)
    return np.linalg.eigvalsh(H_q_matrix(problem, q))[::-1].copy()


def w_star_q(problem: Problem, q) -> np.ndarray:
    """Best predictor on quantized inputs ``w*^(q) = (H^(q))⁻¹ E[Q_d(x) y]`` (``= (H^(q))⁻¹ H w*``
    for unbiased data), in the problem's coordinates."""
    rm = _format_moments(problem, q)
    if rm is not None:
        return rm.c / rm.h * problem.w_star
    if problem.basis is None:
        return problem.spectrum / H_q(problem, q) * problem.w_star
    if rotation_invariant(q):
        return problem.basis @ w_star_q(problem.eigen(), q)
    H = problem.covariance
    return np.linalg.solve(H_q_matrix(problem, q), H @ problem.w_star)


def _approx_terms(spectrum, w_star, delta) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate ApproxErr terms for data noise ``δ``: quantized inputs
    ``½ λ_i w*_i² δ_i/(λ_i+δ_i)``, clean inputs ``½ λ_i w*_i² (δ_i/(λ_i+δ_i))²``."""
    lam, w2, delta = (np.asarray(a, np.float64) for a in (spectrum, np.square(w_star), delta))
    shrink = delta / (lam + delta)
    quantized = 0.5 * lam * w2 * shrink
    return quantized, quantized * shrink


def approx_err(problem: Problem, q) -> float:
    """ApproxErr in the quantized-input convention: ``R_q(w*^(q))``."""
    rm = _format_moments(problem, q)
    if rm is not None:
        return float(0.5 * np.sum(problem.w_star**2 * (rm.lam - rm.c / rm.h * rm.c)))
    if not _in_eigenbasis(problem, q):
        u, ws = w_star_q(problem, q), problem.w_star
        gap = ws @ problem.covariance @ ws - u @ H_q_matrix(problem, q) @ u
        return float(0.5 * gap)
    problem = problem.eigen()
    delta = data_noise_diag(q, problem.spectrum)
    return float(_approx_terms(problem.spectrum, problem.w_star, delta)[0].sum())


def approx_err_clean(problem: Problem, q) -> float:
    """ApproxErr in the clean-input convention: ``½‖w*^(q) − w*‖²_H``."""
    if _format_moments(problem, q) is not None or not _in_eigenbasis(problem, q):
        return float(problem.excess_risk(w_star_q(problem, q)))
    problem = problem.eigen()
    delta = data_noise_diag(q, problem.spectrum)
    return float(_approx_terms(problem.spectrum, problem.w_star, delta)[1].sum())


def approx_err_floors(spectrum, w_star, delta) -> tuple[np.ndarray, np.ndarray]:
    """ApproxErr — the ``N → ∞`` risk — for per-coordinate data noise ``δ`` (e.g. a real
    format's measured error variance), for every leading dimension: element ``d − 1`` is the
    ApproxErr of the first ``d`` coordinates, quantized and clean conventions. Exact when the
    noise is unbiased and uncorrelated across coordinates (``H^(q) = H + diag(δ)``)."""
    quantized, clean = _approx_terms(spectrum, w_star, delta)
    return np.cumsum(quantized), np.cumsum(clean)


def surrogate(model: str, delta, problem: Problem):
    """Idealized stand-in for a number format on ``problem``'s data, with the measured error
    energy ``Σ δ_i``: ``Additive(mean δ)``, or ``MultiplicativeElementwise(Σ δ / tr H)`` if
    ``model`` (what :func:`~qlinreg.quantize.measure_epsilon` prefers) is multiplicative.
    Both reproduce ``tr H^(q)``."""
    delta = np.asarray(delta, np.float64)
    if model == "multiplicative":
        return MultiplicativeElementwise(float(delta.sum()) / problem.trace_H)
    return Additive(float(delta.mean()))


def quantized_input_risk(w, spectrum, w_star, delta, rowsum=None):
    """``R_q(w) = ½‖w − w*‖²_H + ½ Σ δ_i w_i²`` over the last axis; NumPy or JAX arrays.

    ``rowsum`` replaces the sum over the last axis (the engine passes a fixed-order one).
    """
    rowsum = rowsum or (lambda a: a.sum(-1))
    v = w - w_star
    return 0.5 * (rowsum(spectrum * v * v) + rowsum(delta * w * w))


def k_star(problem: Problem, q, steps: int, lr: float) -> int:
    """Effective dimension ``k* = max{k : λ_k^(q) ≥ 1/(Nγ)}`` (0 if no eigenvalue qualifies)."""
    lam_q = np.sort(H_q(problem, q))[::-1]
    return int(np.sum(lam_q >= 1.0 / (steps * lr)))


def _sample_moments(key, sqrt_lam, q, rows: int, full: bool):
    """Sums of ``x̃_i²``, ``x̃_i⁴`` (and ``x̃ x̃ᵀ`` if ``full``) over ``rows`` quantized samples."""
    k_x, k_q = prng.derive(key, 0), prng.derive(key, 1)
    xq = q(k_q, draw_features(k_x, sqrt_lam, (rows, sqrt_lam.size), jnp.float32))
    sq = xq * xq
    gram = xq.T @ xq if full else jnp.zeros((0, 0), xq.dtype)
    return sq.sum(0), (sq * sq).sum(0), gram


def estimate_H_q(
    problem: Problem, q, *, samples: int, seed: int = 0, eigenvalues: bool = False
) -> dict[str, np.ndarray]:
    """Monte Carlo estimate of ``H^(q) = E[Q_d(x) Q_d(x)ᵀ]`` from quantized samples.

    Draws ``x ~ N(0, H)`` and applies the data quantizer ``q`` (any quantizer, number formats
    included) with :mod:`qlinreg.prng` keys derived from ``seed``. Returns ``"diag"`` (the
    estimate of ``λ^(q)_i = E[x̃_i²]`` in the eigenbasis of ``H``), ``"diag_se"`` (its standard
    error) and, if ``eigenvalues``, ``"eigenvalues"`` of the sample second-moment matrix
    (descending; O(samples·d²) work).
    """
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 2:
        raise ValueError(f"samples must be an integer ≥ 2, got {samples!r}")
    d = problem.d
    rows = int(min(samples, max(1, (1 << 22) // d)))
    if not problem.diagonal:
        raise ValueError(
            "estimate_H_q draws in the eigenbasis: for a full covariance use H_q_matrix "
            "(idealized quantizers) or measure the format on problem.features"
        )
    sqrt_lam = jnp.asarray(np.sqrt(problem.spectrum), jnp.float32)
    s1, s2 = np.zeros(d), np.zeros(d)
    gram = np.zeros((d, d)) if eigenvalues else None
    root, done, chunk = prng.key(seed), 0, 0
    while done < samples:
        n = min(rows, samples - done)
        a, b, g = _sample_moments(prng.derive(root, chunk), sqrt_lam, q, n, eigenvalues)
        s1 += np.asarray(a, np.float64)
        s2 += np.asarray(b, np.float64)
        if eigenvalues:
            gram += np.asarray(g, np.float64)
        done, chunk = done + n, chunk + 1
    mean = s1 / samples
    var = np.maximum(s2 / samples - mean**2, 0.0) * samples / (samples - 1)
    out = {"diag": mean, "diag_se": np.sqrt(var / samples)}
    if eigenvalues:
        out["eigenvalues"] = np.linalg.eigvalsh(gram / samples)[::-1].copy()
    return out


def quantized_spectrum(
    problem: Problem, q, *, samples: int = 0, seed: int = 0, eigenvalues: bool = False
) -> pd.DataFrame:
    """The spectrum of ``H^(q)``: closed form and, with ``samples > 0``, estimated.

    Columns: ``index`` (1-based), ``lambda`` (``λ_i``), ``lambda_q`` (closed form
    ``λ_i + δ_i``; NaN for quantizers without one), then with samples ``lambda_q_est``,
    ``lambda_q_se`` (:func:`estimate_H_q`) and, if ``eigenvalues``, ``lambda_q_eig`` (sorted
    eigenvalues of the sample matrix, which differ from the diagonal when a real format's
    error is correlated across coordinates).

    For a full covariance (quantizers acting on the data's coordinates) ``lambda_q`` holds the
    eigenvalues of :func:`H_q_matrix` (descending), ``lambda_q_eigenbasis`` what they would be
    were the data quantized in the eigenbasis (the paper's diagonal setting; they differ for
    elementwise noise, ``H + ε·diag(H)`` against ``(1+ε)·H``), and with samples
    ``lambda_q_eig`` the eigenvalues of the sample second moment of quantized rows.
    """
    df = pd.DataFrame({"index": np.arange(1, problem.d + 1), "lambda": problem.spectrum})
    df["lambda_q"] = H_q(problem, q) if has_closed_form(q) else np.nan
    if not problem.diagonal:
        if has_closed_form(q):
            df["lambda_q_eigenbasis"] = np.sort(H_q(problem.eigen(), q))[::-1]
        if samples:
            df["lambda_q_eig"] = _sample_eigenvalues(problem, q, samples, seed)
        return df
    if samples:
        est = estimate_H_q(problem, q, samples=samples, seed=seed, eigenvalues=eigenvalues)
        df["lambda_q_est"], df["lambda_q_se"] = est["diag"], est["diag_se"]
        if eigenvalues:
            df["lambda_q_eig"] = est["eigenvalues"]
    return df


def _sample_eigenvalues(problem: Problem, q, samples: int, seed: int) -> np.ndarray:
    """Descending eigenvalues of ``(1/n)Σ x̃x̃ᵀ`` over ``samples`` quantized rows of ``problem``
    (its own coordinates; empirical rows when it carries data)."""
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 2:
        raise ValueError(f"samples must be an integer ≥ 2, got {samples!r}")
    d, root = problem.d, prng.key(seed)
    rows = int(min(samples, max(1, (1 << 22) // d)))
    gram, done, chunk = np.zeros((d, d)), 0, 0
    while done < samples:
        n = min(rows, samples - done)
        k = prng.derive(root, chunk)
        x = problem.features(prng.derive(k, 0), n)
        xq = np.asarray(q(prng.derive(k, 1), x), np.float64)
        gram += xq.T @ xq
        done, chunk = done + n, chunk + 1
    return np.linalg.eigvalsh(gram / samples)[::-1].copy()
