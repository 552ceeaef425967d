"""Number formats inside the engine: probe-based quantized-input risk, saturation counts,
low-precision weight storage."""

from dataclasses import dataclass
from functools import partial

import jax
import numpy as np

import qlinreg as ql
from qlinreg.quantize import IntFormat, parse_quantizer

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
    assert 0 <= res.saturation["params"][1] <= 1
    df = res.to_frame()
    assert {"saturated_data", "underflow_data", "saturated_grads"} <= set(df.columns)
    fixed = ql.Scheme(data=IntFormat(4, scaling="fixed", scale=0.05))  # max 7·0.05 = 0.35
    sat = ql.simulate(PROBLEM, fixed, ql.SGDConfig(lr=0.2, steps=100), trials=4).saturation
    # P(|x_1| > 0.35) for λ_1 = 1 is 0.73; the other coordinates have smaller variance.
    assert 0.2 < sat["data"][0] < 0.8


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
