"""Full covariances and data coordinates: the model, the engine, the theory's dispatch.

Statistical checks use fixed seeds and 4 standard errors (of the Monte Carlo mean, or of the
difference of two independent Monte Carlo means).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import qlinreg
from qlinreg.algorithm import SGDConfig
from qlinreg.problem import Problem, Samples, make_problem
from qlinreg.quantize.idealized import Additive, Multiplicative, MultiplicativeElementwise
from qlinreg.quantize.scheme import Scheme
from qlinreg.theory.exact import in_eigenbasis
from qlinreg.theory.quantized_data import H_q, approx_err, quantized_spectrum, w_star_q

D = 6


def _rotation(d: int, seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture(scope="module")
def pair():
    """A diagonal problem and the same Gaussian in rotated coordinates."""
    diag = make_problem(D)
    Q = _rotation(D)
    rotated = Problem.from_covariance(Q @ np.diag(diag.spectrum) @ Q.T, Q @ diag.w_star, 1.0)
    return diag, rotated


def test_from_covariance_recovers_the_model(pair):
    diag, rotated = pair
    np.testing.assert_allclose(rotated.spectrum, diag.spectrum, rtol=1e-12)
    np.testing.assert_allclose(rotated.eigen().covariance, np.diag(diag.spectrum), atol=1e-12)
    w = np.random.default_rng(1).standard_normal(D)
    direct = 0.5 * (w - rotated.w_star) @ rotated.covariance @ (w - rotated.w_star)
    assert rotated.excess_risk(w) == pytest.approx(direct, rel=1e-12)
    assert not rotated.diagonal and diag.diagonal
    assert rotated.describe()["coordinates"] == "data"


@pytest.mark.parametrize(
    ("H", "message"),
    [
        (np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive semidefinite"),
        (np.array([[1.0, 1.0], [1.0, 1.0]]), "singular"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "finite"),
        (np.ones((2, 3)), "square"),
    ],
)
def test_from_covariance_refuses_bad_matrices(H, message):
    with pytest.raises(ValueError, match=message):
        Problem.from_covariance(H, np.ones(2))


def test_from_covariance_checks_w_star():
    with pytest.raises(ValueError, match="w_star must have shape"):
        Problem.from_covariance(np.eye(3), np.ones(2))


def test_quantized_covariance_in_data_coordinates(pair):
    """``H^(q) = H + ε·diag(H)`` for elementwise noise (eigenvalues differ from ``(1+ε)λ``);
    ``(1+ε)H`` and ``H + εI`` for the rotation-invariant kinds; ``w*^(q)``, ApproxErr from the
    matrices, computed here independently."""
    _, p = pair
    H, eps = p.covariance, 0.4
    Hq = H + eps * np.diag(np.diag(H))
    q = MultiplicativeElementwise(eps)
    np.testing.assert_allclose(H_q(p, q), np.linalg.eigvalsh(Hq)[::-1], rtol=1e-12)
    u = np.linalg.solve(Hq, H @ p.w_star)
    np.testing.assert_allclose(w_star_q(p, q), u, rtol=1e-10)
    ae = 0.5 * (p.w_star @ H @ p.w_star - u @ Hq @ u)
    assert approx_err(p, q) == pytest.approx(ae, rel=1e-10)
    assert not np.allclose(H_q(p, q), (1 + eps) * p.spectrum, rtol=1e-3)
    np.testing.assert_allclose(H_q(p, Multiplicative(eps)), (1 + eps) * p.spectrum, rtol=1e-12)
    u_add = np.linalg.solve(H + eps * np.eye(D), H @ p.w_star)
    np.testing.assert_allclose(w_star_q(p, Additive(eps)), u_add, rtol=1e-10)


def test_spectrum_table_of_a_full_covariance(pair):
    _, p = pair
    df = quantized_spectrum(p, MultiplicativeElementwise(0.4), samples=40_000, seed=2)
    np.testing.assert_allclose(df["lambda_q_eigenbasis"], 1.4 * p.spectrum, rtol=1e-12)
    # Sample eigenvalues of 40 000 rows: relative SE ≈ sqrt(2/n) ≈ 0.7 %; 5 % is > 4 SE.
    np.testing.assert_allclose(df["lambda_q_eig"], df["lambda_q"], rtol=0.05)


SCHEMES_INVARIANT = {
    "additive": Scheme.all(Additive(0.05)),
    "multiplicative": Scheme.all(Multiplicative(0.2)),
}
SCHEMES_ELEMENTWISE = {
    "data": Scheme(data=MultiplicativeElementwise(0.5)),
    "params": Scheme(params=MultiplicativeElementwise(0.5)),
}


@pytest.mark.parametrize("name", SCHEMES_INVARIANT)
def test_rotation_invariant_schemes_have_the_diagonal_exact_risk(pair, name):
    diag, rotated = pair
    scheme, sgd = SCHEMES_INVARIANT[name], SGDConfig(0.3, 300, batch=2)
    assert in_eigenbasis(rotated, scheme)
    a, b = qlinreg.exact_risk(diag, scheme, sgd), qlinreg.exact_risk(rotated, scheme, sgd)
    for avg in ("polyak", "tail", "last"):
        np.testing.assert_allclose(b.risk[avg], a.risk[avg], rtol=1e-10)
        np.testing.assert_allclose(b.risk_clean[avg], a.risk_clean[avg], rtol=1e-10)
    assert b.config["coordinates"] == "data"


def _within(sim, exact, k=4.0):
    s = sim.summary()
    for mean, se, ex in (
        (s["risk_mean"], s["risk_se"], exact.exact_risk),
        (s["risk_clean_mean"], s["risk_clean_se"], exact.exact_risk_clean),
    ):
        z = np.abs(mean - ex) / se
        assert np.all(z < k), (mean, ex, se)


@pytest.mark.parametrize("name", [*SCHEMES_INVARIANT, *SCHEMES_ELEMENTWISE])
def test_rotated_problem_monte_carlo_matches_its_exact_risk(pair, name):
    """In the data's coordinates the engine agrees with the exact risk (eigenbasis for the
    rotation-invariant schemes, the full-matrix recursion for elementwise ones)."""
    _, rotated = pair
    scheme = {**SCHEMES_INVARIANT, **SCHEMES_ELEMENTWISE}[name]
    sgd = SGDConfig(0.3, 200, batch=2)
    ck = np.array([50, 100, 200])
    sim = qlinreg.simulate(rotated, scheme, sgd, trials=2000, seed=5, checkpoints=ck)
    _within(sim, qlinreg.exact_risk(rotated, scheme, sgd, ck))


@pytest.mark.parametrize("name", SCHEMES_ELEMENTWISE)
def test_elementwise_schemes_depend_on_the_basis(pair, name):
    diag, rotated = pair
    scheme, sgd = SCHEMES_ELEMENTWISE[name], SGDConfig(0.3, 200, batch=2)
    assert not in_eigenbasis(rotated, scheme)
    a, b = qlinreg.exact_risk(diag, scheme, sgd), qlinreg.exact_risk(rotated, scheme, sgd)
    assert abs(b.exact_risk[-1] / a.exact_risk[-1] - 1) > 0.02  # exact values: 1e-9 is noise


def test_dense_engine_does_not_depend_on_chunking(pair):
    _, rotated = pair
    scheme, sgd = Scheme(data=MultiplicativeElementwise(0.3)), SGDConfig(0.3, 100)
    a = qlinreg.simulate(rotated, scheme, sgd, trials=40, seed=3)
    b = qlinreg.simulate(rotated, scheme, sgd, trials=40, seed=3, trial_chunk=16, step_chunk=32)
    np.testing.assert_array_equal(a.risk, b.risk)


def _data(n=400, d=4, seed=0):
    """Non-Gaussian rows (centred exponentials: heavy right tail) and a linear target."""
    rng = np.random.default_rng(seed)
    X = rng.exponential(size=(n, d)) - 1.0
    X[:, 1] += 0.5 * X[:, 0]
    y = X @ np.arange(1.0, d + 1) + 0.5 * rng.standard_normal(n)
    return X, y


def test_empirical_mode_matches_numpy_resampling():
    """The engine resampling the rows agrees with a plain NumPy resampling loop
    (``tests/reference.py``) within 4 SE of the difference of the two means."""
    from reference import np_sgd_dense

    X, y = _data()
    p = Problem.from_data(X, y, empirical=True)
    assert p.data_mode == "empirical" and isinstance(p.samples, Samples)
    scheme = Scheme(data=MultiplicativeElementwise(0.2), activations=Additive(0.05))
    sgd, ck, trials = SGDConfig(0.05, 200, batch=2), np.array([50, 200]), 2000
    sim = qlinreg.simulate(p, scheme, sgd, trials=trials, seed=11, checkpoints=ck)
    quant = {"data": ("multiplicative_elementwise", 0.2), "activations": ("additive", 0.05)}
    ref = np_sgd_dense(
        p.factor, p.w_star, p.noise, 0.05, 200, 2, trials, quant, ck, seed=4, rows=(X, y)
    )
    s = sim.summary()
    pairs = (
        (s["risk_clean_mean"], s["risk_clean_se"], ref[0]),
        (s["risk_mean"], s["risk_se"], ref[1]),
    )
    for mc, mc_se, r in pairs:
        se = np.sqrt(mc_se**2 + r.var(axis=1, ddof=1) / r.shape[1])
        assert np.all(np.abs(mc - r.mean(axis=1)) < 4 * se), (mc, r.mean(axis=1), se)


def test_empirical_mode_differs_from_gaussian_on_heavy_tails():
    """The same Σ, w*, σ²: resampling skewed rows is not the Gaussian (4th moments differ) —
    a real difference, measured: elementwise data noise with a large step."""
    X, y = _data(n=2000)
    X = X**3 / 10  # cubes of centred exponentials: far heavier tails than a Gaussian
    emp = Problem.from_data(X, y, empirical=True)
    gau = Problem.from_data(X, y)
    np.testing.assert_allclose(emp.covariance, gau.covariance)
    lr = 1.0 / np.max(np.sum(X**2, axis=1))  # γ‖x‖² ≤ 1 on every row: no divergence
    sgd = SGDConfig(lr, 400, average="last")
    a = qlinreg.simulate(emp, None, sgd, trials=2000, seed=1).summary()
    b = qlinreg.simulate(gau, None, sgd, trials=2000, seed=1).summary()
    diff = abs(a["risk_clean_mean"][-1] - b["risk_clean_mean"][-1])
    se = math.hypot(a["risk_clean_se"][-1], b["risk_clean_se"][-1])
    assert diff > 4 * se


def test_from_data_fits_the_gaussian_model():
    X, y = _data(n=5000)
    p = Problem.from_data(X, y)
    Sigma = X.T @ X / len(X)
    np.testing.assert_allclose(p.covariance, Sigma, rtol=1e-10, atol=1e-12)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(p.w_star, w, rtol=1e-8)
    assert p.noise == pytest.approx(np.mean((y - X @ w) ** 2), rel=1e-8)


def test_from_data_recovers_a_known_gaussian():
    """Rows from N(0, Σ) with y = ⟨w*, x⟩ + N(0, σ²): Σ̂, ŵ*, σ̂² within 4.5 SE, with the
    Gaussian SEs var Σ̂_ij = (Σ_ii Σ_jj + Σ_ij²)/n, SE(ŵ_i) = √(σ²(Σ⁻¹)_ii/n),
    SE(σ̂²) = σ²√(2/n)."""
    rng, n, d, s2 = np.random.default_rng(3), 40_000, 4, 0.5
    A = rng.standard_normal((d, d))
    Sigma = A @ A.T / d + 0.2 * np.eye(d)
    w = rng.standard_normal(d)
    X = rng.standard_normal((n, d)) @ np.linalg.cholesky(Sigma).T
    y = X @ w + np.sqrt(s2) * rng.standard_normal(n)
    p = Problem.from_data(X, y)
    se_S = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / n)
    assert np.all(np.abs(p.covariance - Sigma) < 4.5 * se_S)
    se_w = np.sqrt(s2 * np.diag(np.linalg.inv(Sigma)) / n)
    assert np.all(np.abs(p.w_star - w) < 4.5 * se_w)
    assert abs(p.noise - s2) < 4.5 * s2 * np.sqrt(2 / n)
    centred = Problem.from_data(X + 3.0, y + 2.0, center=True)
    np.testing.assert_allclose(centred.w_star, p.w_star, atol=5 * se_w.max())


def test_uniform_dither_takes_the_full_matrix_path(pair):
    """A uniform additive dither's fourth cumulant sits on the data's coordinates: not
    rotation invariant, so a rotated problem gets the full-matrix recursion, whose value
    differs from the eigenbasis one only through that O(ε²) term."""
    diag, rotated = pair
    scheme, sgd = Scheme(data=Additive(0.3, noise="uniform")), SGDConfig(0.3, 100, batch=1)
    assert not in_eigenbasis(rotated, scheme)
    assert in_eigenbasis(rotated, Scheme(data=Additive(0.3)))
    a, b = qlinreg.exact_risk(diag, scheme, sgd), qlinreg.exact_risk(rotated, scheme, sgd)
    gap = abs(b.exact_risk[-1] / a.exact_risk[-1] - 1)
    assert 1e-9 < gap < 0.05
