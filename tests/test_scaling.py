"""The precision-scaling fits and verdicts, on hand-built surfaces with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from qlinreg.experiments.scaling import (
    effective_size,
    fit_power_law,
    fit_saturation,
    fit_scaling,
    keeps_size,
    log_mean,
    shrinks_data,
    shrinks_size,
)


def test_power_law_fit_and_its_uncertainty():
    x = np.array([10.0, 20, 40, 80, 160])
    A, p, se_a, se_p = fit_power_law(x, 3.0 * x**-1.5)
    assert A == pytest.approx(3.0, rel=1e-12) and p == pytest.approx(1.5, rel=1e-12)
    assert se_p < 1e-10
    wiggle = np.array([1.05, 0.95, 1.05, 0.95, 1.05])
    _, p2, _, se2 = fit_power_law(x, 3.0 * x**-1.5 * wiggle)
    assert abs(p2 - 1.5) < 3 * se2 and se2 > 0.005  # the misfit shows in the error
    assert math.isnan(fit_power_law(x[:2], x[:2] ** -1.0)[3])


def test_effective_size_inverts_the_curve_and_continues_it():
    x = np.array([16.0, 32, 64, 128])
    y = 2.0 * x**-1.2
    for target in (2.0 * 50.0**-1.2, 2.0 * 8.0**-1.2, 2.0 * 400.0**-1.2):
        m = effective_size([target], x, y, 1.2)[0]
        assert m == pytest.approx((target / 2.0) ** (-1 / 1.2), rel=1e-9)


def test_saturation_and_log_mean():
    M = np.array([16.0, 32, 64, 128])
    sat, se = fit_saturation(M, M / (1 + M / 40.0))
    assert sat == pytest.approx(40.0, rel=1e-9) and se < 1e-9
    assert fit_saturation(M, M * 1.01)[0] == math.inf
    g, se = log_mean([2.0, 8.0])
    assert g == pytest.approx(4.0) and se == pytest.approx(
        math.log(4) / 2, rel=1e-9
    )  # sd log4/√2, over √2


def test_verdicts_either_side_of_their_thresholds():
    assert keeps_size([1.0, 0.95, 1.09]) and not keeps_size([1.0, 0.89])
    assert shrinks_size([0.95, 0.7, 0.3], [1e-4, 1e-3, 1e-2])
    assert not shrinks_size([0.95, 0.97, 0.3], [1e-4, 1e-3, 1e-2])  # not decreasing
    assert not shrinks_size([0.99, 0.95, 0.91], [1e-4, 1e-3, 1e-2])  # largest ε not < 0.9
    assert shrinks_size([0.3, 0.95], [1e-2, 1e-4])  # order of ε does not matter
    assert shrinks_data(0.9, 0.01) and not shrinks_data(0.9, 0.06)
    assert not shrinks_data(1.1, 0.01)
    assert shrinks_data(0.9, math.nan) and not shrinks_data(0.97, math.nan)


def _surface(M_eps: dict, n_eps: dict) -> pd.DataFrame:
    """R = A·M_eff^-p + C·(n N)^-q with known M_eff = M/(1 + M/M_ε) and n, floors included."""
    A, p, C, q = 1.3, 1.1, 2.0, 0.6
    rows = []
    for M in (16, 32, 64, 128):
        for model, eps in [("full precision", 0.0)] + [(m, e) for m in M_eps for e in M_eps[m]]:
            me = M if eps == 0 else M / (1 + M / M_eps[model][eps])
            n = 1.0 if eps == 0 else n_eps[model][eps]
            floor = A * me**-p
            for N in (100, 1000, 10_000, 100_000):
                risk = floor + C * (n * N) ** -q
                rows.append({"M": M, "model": model, "eps": eps, "step": N,
                             "exact_risk": risk, "exact_risk_clean": risk, "floor": floor,
                             "floor_clean": floor})  # fmt: skip
    return pd.DataFrame(rows)


def test_fit_scaling_recovers_a_known_surface():
    M_eps = {"additive": {1e-3: 100.0, 1e-2: 10.0}, "multiplicative": {1e-3: 1e12, 1e-2: 1e12}}
    n_eps = {"additive": {1e-3: 0.8, 1e-2: 0.5}, "multiplicative": {1e-3: 0.9, 1e-2: 0.7}}
    fit = fit_scaling(_surface(M_eps, n_eps), "clean")
    assert fit["law"]["p"] == pytest.approx(1.1, rel=1e-9)
    assert fit["law"]["q"] == pytest.approx(0.6, rel=1e-9)
    eff = fit["effective"].set_index(["model", "eps"])
    for model in M_eps:
        for eps, sat in M_eps[model].items():
            row = eff.loc[(model, eps)]
            assert row["n_eps"] == pytest.approx(n_eps[model][eps], rel=1e-9)
            assert row["M_eff_ratio"] == pytest.approx(1 / (1 + 128 / sat), rel=1e-9)
    assert eff.loc[("additive", 1e-2), "M_eps"] == pytest.approx(10.0, rel=1e-9)
    assert fit["kappa_M"][0] == pytest.approx(1.0, rel=1e-9)  # 100 → 10 over a decade of ε
