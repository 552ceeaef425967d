"""Number formats inside the engine: probe-based quantized-input risk, saturation counts,
low-precision weight storage."""

from dataclasses import dataclass
from functools import partial

import jax
import numpy as np
import pytest
from scipy.stats import norm

import qlinreg as ql
from qlinreg import prng
from qlinreg.quantize import FloatFormat, IntFormat, parse_quantizer

PROBLEM = ql.make_problem(6, decay=1.0, noise=0.5)


@partial(jax.tree_util.register_dataclass, data_fields=["inner"], meta_fields=[])
@dataclass(frozen=True)
class Opaque:
    """An idealized quantizer the theory does not recognise: forces the probe estimate."""

    inner: ql.Additive

    def __call__(self, key, u):
        return self.inner(key, u)


def test_probe_risk_agrees_with_closed_form():
    sgd = ql.SGDConfig(lr=0.2, steps=200)
    kw = {"trials": 2000, "seed": 3, "checkpoints": [20, 200], "literal": True}
    closed = ql.simulate(PROBLEM, ql.Scheme(data=ql.Additive(0.1)), sgd, **kw).summary()
    probed = ql.simulate(PROBLEM, ql.Scheme(data=Opaque(ql.Additive(0.1))), sgd, **kw).summary()
    # Same trials (same keys), so the iterates agree (to float32 rounding: the two programs
    # fuse differently); the probe estimate is unbiased and its extra noise is inside its SE:
    # 4 SE of the difference, computed conservatively.
    np.testing.assert_allclose(closed["risk_clean_mean"], probed["risk_clean_mean"], rtol=1e-5)
    diff = np.abs(closed["risk_mean"] - probed["risk_mean"])
    assert np.all(diff <= 4 * np.hypot(closed["risk_se"], probed["risk_se"]))
    assert np.all(probed["risk_se"] > closed["risk_se"])  # the probes' noise is counted


def test_saturation_and_underflow_are_reported():
    scheme = ql.Scheme.parse(["data=int8:nearest_even", "grads=fp8_e4m3", "params=fp4_e2m1"])
    res = ql.simulate(PROBLEM, scheme, ql.SGDConfig(lr=0.2, steps=100), trials=4)
    assert set(res.saturation) == {"data", "grads", "params"}
    assert res.saturation["data"][0] == 0.0  # absmax INT scaling never saturates
    df = res.to_frame()
    for role in res.saturation:
        sat, under = res.saturation[role]
        assert np.all(df[f"saturated_{role}"] == sat) and np.all(df[f"underflow_{role}"] == under)


# (format, problem, γ, largest finite magnitude M, smallest nonzero magnitude a): INT4 with a
# fixed scale s = 0.05 (codes k·s, |k| ≤ 7: M = 0.35, a = s) on PROBLEM's data; FP4 E2M1
# (M = 6, subnormal spacing a = 0.5) on data 16 times as wide, so both fractions are sizeable.
WIDE = ql.Problem(spectrum=16 * PROBLEM.spectrum, w_star=PROBLEM.w_star, noise=PROBLEM.noise)
SAT_CASES = {
    "int4-fixed": (IntFormat(4, scaling="fixed", scale=0.05), PROBLEM, 0.2, 0.35, 0.05),
    "fp4_e2m1": (FloatFormat.preset("fp4_e2m1"), WIDE, 0.005, 6.0, 0.5),
}


@pytest.mark.parametrize("name", SAT_CASES)
def test_data_saturation_and_underflow_fractions_match_their_laws(name):
    fmt, problem, lr, M, a = SAT_CASES[name]
    trials, steps = 16, 300
    sgd = ql.SGDConfig(lr=lr, steps=steps)
    sat, under = ql.simulate(problem, ql.Scheme(data=fmt), sgd, trials=trials).saturation["data"]
    # x_i ~ N(0, λ_i). Saturated: |x_i| > M (out_of_range: strictly above the largest finite
    # magnitude, on the unrounded value x/s for the INT scale; the threshold itself has
    # probability 0). Underflow: |x_i| < a is rounded stochastically to 0 with probability
    # 1 − |x_i|/a, so P = P(|x| < a) − E[|x|; |x| < a]/a, where
    # E[|x|; |x| < a] = σ√(2/π)(1 − exp(−a²/2σ²)).
    sd = np.sqrt(problem.spectrum)
    p_sat = 2 * norm.sf(M / sd)
    p_under = (2 * norm.cdf(a / sd) - 1) - sd / a * np.sqrt(2 / np.pi) * (
        1 - np.exp(-(a**2) / (2 * sd**2))
    )
    # Reported: mean over steps, trials and the d coordinates of independent indicators
    # (fresh x and fresh rounding bits at every step), so Var = Σ_i p_i(1 − p_i) / (T·N·d²).
    n = trials * steps * problem.d**2
    for got, p in ((sat, p_sat), (under, p_under)):
        assert p.mean() > 0.01  # both fractions are far from 0: the check has power
        assert abs(got - p.mean()) <= 4 * np.sqrt(np.sum(p * (1 - p)) / n)


def test_stochastic_rounding_of_stored_weights_avoids_stagnation():
    # With γ small, updates fall below half a bf16 ulp near w* = 1: round-to-nearest stalls,
    # stochastic rounding keeps the iterate unbiased.
    problem = ql.make_problem(4, decay=1.0, noise=0.1)
    kw = {"trials": 64, "seed": 0, "checkpoints": [20_000]}
    risk = {
        mode: ql.simulate(
            problem,
            None,
            ql.SGDConfig(0.003, 20_000, storage=parse_quantizer(f"bf16:{mode}")),
            **kw,
        ).summary()
        for mode in ("nearest_even", "stochastic")
    }
    full = ql.simulate(problem, None, ql.SGDConfig(0.003, 20_000), **kw).summary()
    stoch, near = risk["stochastic"], risk["nearest_even"]
    assert near["risk_clean_mean"][0] > 2 * full["risk_clean_mean"][0]
    assert abs(stoch["risk_clean_mean"][0] - full["risk_clean_mean"][0]) < 4 * np.hypot(
        stoch["risk_clean_se"][0], full["risk_clean_se"][0]
    )


def test_tensor_scaled_probes_are_quantized_in_batches_like_training():
    # At B = 1 a per-tensor scale over one row is the per-vector scale: same run, same probes.
    sgd = ql.SGDConfig(lr=0.1, steps=50)
    kw = {"trials": 8, "seed": 2}
    tensor = ql.simulate(PROBLEM, ql.Scheme.parse(["data=int4::tensor"]), sgd, **kw)
    vector = ql.simulate(PROBLEM, ql.Scheme.parse(["data=int4"]), sgd, **kw)
    np.testing.assert_array_equal(tensor.risk, vector.risk)
    # At B = 4, with w0 = w* and a negligible step, the probe estimates R_q(w*) =
    # ½E⟨w*, x − Q(x)⟩² with Q scaling each 4-row tensor; checked against a direct estimate,
    # which differs clearly from the one with 64 rows per tensor (the old, biased grouping).
    problem = ql.make_problem(16, decay=1.0)
    q = parse_quantizer("int4::tensor")
    sgd = ql.SGDConfig(lr=1e-9, steps=1, batch=4, w0=problem.w_star)
    res = ql.simulate(problem, ql.Scheme(data=q), sgd, trials=256, seed=3)
    got, got_se = res.summary()["risk_mean"][-1], res.summary()["risk_se"][-1]

    def direct(rows: int, tensors: int):
        X = problem.features(prng.key(9), rows * tensors).reshape(tensors, rows, problem.d)
        keys = prng.derive(prng.key(10), np.arange(tensors, dtype=np.uint32))
        e = np.asarray((X - jax.vmap(q)(keys, X)) @ problem.w_star, np.float64).ravel()
        r = 0.5 * e**2
        return r.mean(), r.std(ddof=1) / np.sqrt(r.size)

    want, want_se = direct(4, 20_000)
    joint, joint_se = direct(64, 1250)
    assert abs(got - want) <= 4 * np.hypot(got_se, want_se)
    assert abs(got - joint) > 8 * np.hypot(got_se, joint_se)
