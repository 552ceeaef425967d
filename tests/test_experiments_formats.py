"""The helpers of the number-format recipes (experiments/formats.py), checked against
independent routes: closed forms of the idealized models, the bounds module's FP-vs-INT rule,
quantizing rows one at a time, and ``estimate_H_q``."""

import jax.numpy as jnp
import numpy as np
import pytest

from qlinreg import prng
from qlinreg.experiments.formats import _crossover, rule_dim
from qlinreg.problem import make_problem
from qlinreg.quantize import Additive, MultiplicativeElementwise, parse_quantizer
from qlinreg.quantize.measure import error_variance, rowwise
from qlinreg.theory import (
    H_q,
    approx_err_floors,
    data_noise_diag,
    estimate_H_q,
    fp_beats_int,
    fp_int_threshold,
    quantized_input_risk,
    surrogate,
    w_star_q,
)


def features(dim: int, rows: int, seed: int):
    return make_problem(dim).features(prng.key(seed), rows)


@pytest.mark.parametrize("q", [Additive(0.003), MultiplicativeElementwise(0.02)])
def test_floors_are_the_risk_of_the_best_quantized_predictor(q):
    # Independent route: R_q and the clean risk of w*^(q) = (H^(q))⁻¹ H w*, evaluated directly.
    big = make_problem(50)
    delta = H_q(big, q) - big.spectrum
    quantized, clean = approx_err_floors(big.spectrum, big.w_star, delta)
    for d in (1, 7, 50):
        p = make_problem(d)
        u = w_star_q(p, q)
        r_q = quantized_input_risk(u, p.spectrum, p.w_star, data_noise_diag(q, p.spectrum))
        assert quantized[d - 1] == pytest.approx(float(r_q), rel=1e-12)
        assert clean[d - 1] == pytest.approx(float(p.excess_risk(u)), rel=1e-12)


def test_rule_dim_is_the_least_d_of_the_bounds_rule():
    for m, b in ((3, 8), (2, 8), (0, 4), (8, 8)):
        d = rule_dim(m, b)
        assert fp_beats_int(m, b, 2.0, d) and (d == 1 or not fp_beats_int(m, b, 2.0, d - 1))
        assert fp_int_threshold(b, 2.0, d) <= m
    assert (rule_dim(3, 8), rule_dim(2, 8)) == (32, 64)


def test_surrogates_keep_the_error_energy():
    problem = make_problem(30)
    delta = np.linspace(1e-5, 3e-4, 30)
    for model in ("additive", "multiplicative"):
        q = surrogate(model, delta, problem)
        assert H_q(problem, q).sum() == pytest.approx(problem.trace_H + delta.sum(), rel=1e-12)
    assert isinstance(surrogate("multiplicative", delta, problem), MultiplicativeElementwise)
    assert isinstance(surrogate("additive", delta, problem), Additive)


def test_rowwise_quantizes_each_row_alone():
    q = parse_quantizer("fp8_e4m3::tensor")
    X = features(40, 5, seed=3) * jnp.arange(1.0, 6.0)[:, None]  # rows of different scale
    key = prng.key(9)
    got = np.asarray(rowwise(q)(key, X))
    for r in range(X.shape[0]):
        alone = np.asarray(q(prng.derive(key, r), X[r : r + 1]))[0]
        np.testing.assert_array_equal(got[r], alone)
    assert not np.array_equal(got, np.asarray(q(key, X)))  # one scale for all rows differs
    plain = parse_quantizer("int8")
    assert rowwise(plain) is plain


@pytest.mark.parametrize("q", [Additive(1e-3), MultiplicativeElementwise(0.05)])
def test_error_variance_of_idealized_models(q):
    dim, rows = 12, 40_000
    problem = make_problem(dim)
    delta = error_variance(q, features(dim, rows, seed=5), seed=6)
    expected = H_q(problem, q) - problem.spectrum
    # Gaussian noise: the squared error has sd √2 times its mean.
    np.testing.assert_allclose(delta, expected, rtol=4 * np.sqrt(2 / rows))


def test_real_format_covariance_is_H_plus_diag_delta():
    """Stochastic rounding is unbiased and independent across entries: H^(q) = H + diag(δ)."""
    problem, q = make_problem(8), parse_quantizer("int3")
    delta = error_variance(q, features(8, 200_000, seed=7), seed=8)
    est = estimate_H_q(problem, q, samples=200_000, seed=9)
    z = (est["diag"] - problem.spectrum - delta) / est["diag_se"]
    assert np.abs(z).max() < 4.5
    assert (delta / problem.spectrum).max() > 0.1  # the check has power: δ is not negligible


def test_crossover():
    dims = np.array([10, 100, 1000])
    assert _crossover(dims, [3.0, 2.0, 1.0], [1.0, 1.5, 2.0]) == pytest.approx(
        np.exp(np.log(100) + 0.5 / 1.5 * np.log(10))
    )
    assert _crossover(dims, [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]) == 10
    assert _crossover(dims, [2.0, 0.5, 2.0], [1.0, 1.0, 1.0]) is None
