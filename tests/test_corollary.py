"""Corollary 4.2's conditions (unit constants) and the exact risk's verdict on them."""

import math

import numpy as np
import pytest

import qlinreg as ql
from qlinreg import Additive, Scheme
from qlinreg.theory import bound
from qlinreg.theory.corollary import (
    VERDICTS,
    _threshold,
    condition_verdict,
    corollary_4_2,
    corollary_4_2_exact,
)


def _fp_parts(problem, sgd, n):
    """Full-precision bound R0, the factor 1/(1 − 3γ tr H) and D = k*/N + Nγ²Σ_{i>k*}λ_i², from
    the definitions (w_0 = 0, B rows: α = (3 + B − 1)/B)."""
    lam = np.sort(problem.spectrum)[::-1]
    lr, B = sgd.lr, sgd.batch
    alpha = (3 + B - 1) / B
    c = 1 / (1 - lr * alpha * lam.sum())
    k = int(np.sum(lam >= 1 / (n * lr)))
    D = k / n + n * lr**2 * np.sum(lam[k:] ** 2)
    r0 = bound(problem, None, sgd, [n], sup="endpoints")["bound"].iloc[0]
    return r0, c, D, alpha


@pytest.mark.parametrize("batch", [1, 4])
def test_additive_noise_roles_have_the_closed_form(batch):
    """Additive labels, activations, grads add ε/B to σ_G² and additive params α_B·ε·tr H: the
    bound is linear in ε, so ε* = (factor − 1)·R0/(c·D·slope) exactly."""
    problem = ql.make_problem(60, noise=0.5)
    n = 5000
    sgd = ql.SGDConfig(lr=0.1, steps=n, batch=batch)
    r0, c, D, alpha = _fp_parts(problem, sgd, n)
    df = corollary_4_2(problem, sgd, kinds=["additive"], factor=2.0)
    got = df.set_index("role")["eps_max"]
    for role in ("labels", "activations", "grads"):
        assert got[role] == pytest.approx(r0 * batch / (c * D), rel=1e-9), role
    alpha_B = 3 / batch + 1 - 1 / batch
    assert got["params"] == pytest.approx(r0 / (c * D * alpha_B * problem.trace_H), rel=1e-9)
    assert (df.set_index("role").loc[["labels", "params"], "binding"] == "variance").all()


def test_data_condition_stays_inside_the_hypothesis():
    """Additive data noise raises tr H^(q) = tr H + dε; the hypothesis γ < 1/(3·tr H^(q)) fails
    at ε_h = (1/(3γ) − tr H)/d, where 1/(1 − 3γ tr H^(q)) diverges: ε* lies below ε_h."""
    problem = ql.make_problem(200)
    sgd = ql.SGDConfig(lr=0.19, steps=20)
    row = corollary_4_2(problem, sgd, roles=["data"], kinds=["additive"]).iloc[0]
    eps_h = (1 / (3 * 0.19) - problem.trace_H) / 200
    assert 0 < row["eps_max"] < eps_h and row["binding"] == "variance"


def test_threshold_is_where_the_bound_crosses():
    """Just below ε* the bound is within ×2 of full precision and the hypothesis holds; just
    above it is not (the public bound, data quantized, both error models)."""
    problem = ql.make_problem(100)
    sgd = ql.SGDConfig(lr=0.1, steps=10_000)
    df = corollary_4_2(problem, sgd, roles=["data"])
    r0 = bound(problem, None, sgd, [10_000], sup="endpoints")["bound"].iloc[0]
    for r in df.itertuples():
        kind = {"additive": ql.Additive, "multiplicative": ql.Multiplicative}[r.kind]

        def ratio(eps, kind=kind):
            b = bound(problem, Scheme(data=kind(eps)), sgd, [10_000], sup="endpoints").iloc[0]
            return b["bound"] / r0, b["bound_valid"]

        below, above = ratio(r.eps_max * (1 - 1e-6)), ratio(r.eps_max * (1 + 1e-6))
        assert below[1] and below[0] <= 2
        assert not above[1] or above[0] > 2


def test_condition_verdict_either_side_of_the_factor():
    assert condition_verdict(1.9, 2.1) == "sufficient and necessary"
    assert condition_verdict(1.9, 1.99) == "sufficient, not necessary"
    assert condition_verdict(2.1, 5.0) == "necessary, not sufficient"
    assert condition_verdict(2.1, 1.5) == "neither"
    assert condition_verdict(2.0, 2.0) == "sufficient, not necessary"  # ≤ factor is a match
    assert condition_verdict(1.4, 1.6, factor=1.5) == "sufficient and necessary"
    assert set(VERDICTS) == {condition_verdict(a, b) for a, b in ((1, 3), (1, 1), (3, 3), (3, 1))}


def test_exact_verdict_columns():
    """The exact ratios are the exact Polyak risks (computed here independently) over full
    precision's, and the verdict follows from them."""
    problem = ql.make_problem(50)
    sgd = ql.SGDConfig(lr=0.1, steps=3000)
    cond = corollary_4_2(problem, sgd, roles=["data", "labels"], kinds=["additive"])
    df = corollary_4_2_exact(problem, sgd, cond)
    fp = ql.exact_risk(problem, None, sgd, [3000]).exact_risk[0]
    for r in df.itertuples():
        scheme = Scheme(**{r.role: Additive(4 * r.eps_max)})
        beyond = ql.exact_risk(problem, scheme, sgd, [3000]).exact_risk[0] / fp
        assert r.ratio_beyond == pytest.approx(beyond, rel=1e-12)
        assert r.verdict == condition_verdict(r.ratio_at, r.ratio_beyond, 2.0)
    assert (df["ratio_at"] >= 1).all()


def test_corollary_validation():
    problem = ql.make_problem(20)
    sgd = ql.SGDConfig(lr=0.1, steps=100)
    with pytest.raises(ValueError, match="factor"):
        corollary_4_2(problem, sgd, factor=1.0)
    with pytest.raises(ValueError, match="role"):
        corollary_4_2(problem, sgd, roles=["weights"])
    with pytest.raises(ValueError, match="kind"):
        corollary_4_2(problem, sgd, kinds=["int8"])
    with pytest.raises(ValueError, match="full-precision bound"):
        corollary_4_2(problem, ql.SGDConfig(lr=1.0, steps=100))


def test_threshold_search_on_hand_built_predicates():
    """The scan-and-bisect search: a crossing at 0.37, none (∞), and failure from the start."""

    def at(eps):
        return (eps, 0.0, 0.0, 0.0, True)

    eps, hi = _threshold(at, lambda r: r[0] <= 0.37)
    assert eps == pytest.approx(0.37, rel=1e-9) and hi[0] > 0.37
    assert _threshold(at, lambda r: True) == (math.inf, None)
    assert _threshold(at, lambda r: False)[0] == 0.0
