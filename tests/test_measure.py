"""Measured ε (SPEC §3): the estimates against closed forms, and the model choice.

Closed forms used (independent of the code): an idealized quantizer's ε is its parameter;
stochastic rounding on an evenly spaced grid of step ``s`` with a uniformly distributed
fractional part has ``E[(Q(u)−u)²] = s²·E[f(1−f)] = s²/6`` and round-to-nearest ``s²/12``;
for FP stochastic rounding of log-uniform magnitudes the relative ε is a 1-D integral over one
binade, evaluated here by the midpoint rule. Tolerances are 5 standard errors as reported by the
estimate (the sample standard deviation of the squared errors over √n).
"""

import numpy as np
import pytest

from qlinreg import prng
from qlinreg.quantize import Additive, MultiplicativeElementwise
from qlinreg.quantize.formats import FloatFormat, IntFormat
from qlinreg.quantize.measure import formats_table, measure_epsilon

RNG = np.random.default_rng(11)
GAUSS = (RNG.standard_normal((400, 200)) * np.arange(1, 201) ** -1.0).astype(np.float32)


def _within(value: float, target: float, se: float) -> bool:
    return abs(value - target) <= 5 * se


def test_idealized_additive_and_multiplicative():
    a = measure_epsilon(Additive(1e-3), GAUSS, key=prng.key(1))
    assert _within(a.eps_additive, 1e-3, a.eps_additive_se)
    assert a.model == "additive" and abs(a.slope) < 0.1
    m = measure_epsilon(MultiplicativeElementwise(1e-2), GAUSS, key=prng.key(2))
    assert _within(m.eps_multiplicative, 1e-2, m.eps_multiplicative_se)
    assert m.model == "multiplicative" and abs(m.slope - 1) < 0.1


@pytest.mark.parametrize(("rounding", "factor"), [("stochastic", 1 / 6), ("nearest_even", 1 / 12)])
def test_int_fixed_scale_epsilon_is_step_squared_over_6_or_12(rounding, factor):
    s = 2.0**-6
    u = RNG.uniform(-1, 1, (200, 500)).astype(np.float32)  # 128 steps per unit: f ~ uniform
    est = measure_epsilon(IntFormat(16, scaling="fixed", scale=s, rounding=rounding), u)
    assert _within(est.eps_additive, factor * s**2, est.eps_additive_se)
    assert est.model == "additive"
    assert abs(est.bias) < 1e-3


def test_fp_stochastic_epsilon_matches_the_binade_integral():
    m = 2  # FP8 E5M2
    u = np.exp2(RNG.uniform(-4, 4, (200, 500))) * RNG.choice([-1, 1], (200, 500))
    est = measure_epsilon(FloatFormat.preset("fp8_e5m2"), u.astype(np.float32), key=prng.key(3))
    # E[(v − lo)(hi − v)/v²], v = 2^t, t ~ U[0, 1), grid spacing 2^-m on [1, 2).
    v = np.exp2((np.arange(1_000_000) + 0.5) / 1_000_000)
    lo = np.floor(v * 2**m) / 2**m
    expected = np.mean((v - lo) * (lo + 2.0**-m - v) / v**2)
    assert _within(est.eps_multiplicative, expected, est.eps_multiplicative_se)
    assert est.model == "multiplicative" and abs(est.slope - 1) < 0.1


def test_text_form_exact_and_errors():
    assert measure_epsilon("none", GAUSS).model == "exact"
    est = measure_epsilon("fp8_e4m3:nearest_even", GAUSS)
    assert est.n == GAUSS.size and est.eps_additive > 0
    with pytest.raises(ValueError, match="bins must be an integer ≥ 2"):
        measure_epsilon("int8", GAUSS, bins=1)
    with pytest.raises(TypeError, match="float32/float64"):
        measure_epsilon("int8", np.arange(6))


def test_formats_table():
    df = formats_table(["int8", "fp8_e4m3", "mxfp4"], rows=64)
    assert list(df["format"]) == ["int8", "fp8_e4m3", "mxfp4"]
    assert list(df["family"]) == ["int", "fp", "mx"]
    assert list(df["paper_model"]) == ["additive", "multiplicative", "multiplicative"]
    assert np.allclose(df["paper_eps"], [2.0**-16, 2.0**-6, 2.0**-2])
    assert set(df["measured_model"]) <= {"additive", "multiplicative"}
    assert (df["eps_additive"] > 0).all() and df["underflow"].between(0, 1).all()
    labels = formats_table(["bf16"], role="labels", rows=32, batch=8)
    assert labels["measured_model"].item() == "multiplicative"
    with pytest.raises(ValueError, match="role must be"):
        formats_table(["bf16"], role="params")
