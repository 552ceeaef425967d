"""The closed-form exact risk (cost independent of N) against the O(N·d) stepping of the same
recursion, on every kind × role × B, averages and conventions, near the stability limit, on
a spectrum spanning 12 decades, with step-size schedules; and the schedule in Monte Carlo."""

import numpy as np
import pytest

import qlinreg as ql
from qlinreg.algorithm import AVERAGES
from qlinreg.experiments.extensions import gamma_max
from qlinreg.quantize import ROLES, Additive, Multiplicative, MultiplicativeElementwise, Scheme
from qlinreg.theory import closed_form, exact
from qlinreg.theory.exact import _recursion

PROBLEM = ql.make_problem(8, decay=1.0, noise=0.5)
KINDS = (Additive, Multiplicative, MultiplicativeElementwise)
TOL = 1e-9


def _worst(problem, scheme, sgd, checkpoints=None) -> float:
    """Largest relative difference, closed form vs stepping, over checkpoints, averages and
    both conventions."""
    a = ql.exact_risk(problem, scheme, sgd, checkpoints, method="step")
    b = ql.exact_risk(problem, scheme, sgd, checkpoints, method="closed")
    worst = 0.0
    for avg in AVERAGES:
        for x, y in ((a.risk[avg], b.risk[avg]), (a.risk_clean[avg], b.risk_clean[avg])):
            assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
            worst = max(worst, float(np.max(np.abs(x - y) / np.abs(x))))
    return worst


def test_talbot_rule_approximates_exp_uniformly():
    # [z^n] 1/(1 − μz) = μ^n: the rule is a rational approximation of e^{−x} on x ≥ 0.
    s, ds = closed_form._nodes(closed_form.N_NODES)
    x = np.geomspace(1e-12, 1e6, 300)
    approx = np.array([(np.exp(s) * ds / (s + xi)).imag.sum() / s.size for xi in x])
    assert np.max(np.abs(approx - np.exp(-x))) < 1e-12


@pytest.mark.parametrize("B", [1, 4, 32])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_each_kind_on_each_role_matches_stepping(kind, B):
    sgd = ql.SGDConfig(0.2, 20_000, batch=B)
    for role in ROLES:
        scheme = Scheme(**{role: kind(0.05)})
        assert _worst(PROBLEM, scheme, sgd) < TOL, role


@pytest.mark.parametrize("B", [1, 4, 32])
def test_all_roles_at_once_long_run_and_full_precision(B):
    sgd = ql.SGDConfig(0.2, 100_000, batch=B)
    mixed = Scheme(*(KINDS[i % 3](0.02 * (i + 1), "uniform" if i % 2 else "gaussian")
                     for i in range(5)))  # fmt: skip
    assert _worst(PROBLEM, mixed, sgd) < TOL
    assert _worst(PROBLEM, None, sgd) < TOL
    zero = ql.exact_risk(PROBLEM, Scheme.all(Multiplicative(0.0)), sgd)
    full = ql.exact_risk(PROBLEM, None, sgd)
    for avg in AVERAGES:
        np.testing.assert_allclose(zero.risk[avg], full.risk[avg], rtol=1e-13)


@pytest.mark.parametrize("B", [1, 4, 32])
@pytest.mark.parametrize(
    "scheme", [Scheme(), Scheme.all(Additive(0.01)), Scheme.all(Multiplicative(0.02))],
    ids=["fp", "additive", "multiplicative"],
)  # fmt: skip
def test_within_five_percent_of_the_stability_limit(scheme, B):
    lr = 0.95 * gamma_max(PROBLEM, scheme, batch=B)
    sgd = ql.SGDConfig(lr, 20_000, batch=B)
    assert exact.second_moment_radius(PROBLEM, scheme, sgd) < 1
    assert _worst(PROBLEM, scheme, sgd) < TOL


def test_the_second_contour_carries_negative_eigenvalues(monkeypatch):
    # B large and γ near 2/λ_1: a_1 = 1 − γλ_1 ≈ −0.9, so z = 1/a_1 < 0 is a pole of the
    # generating function; the contour around Im s = π is what picks it up.
    problem = ql.make_problem(3, decay=1.0, noise=0.5)
    sgd = ql.SGDConfig(1.9, 300, batch=4096, average="last")
    rec, _ = _recursion(problem, Scheme(), sgd)
    assert rec.a.min() < -0.85 and exact.second_moment_radius(problem, None, sgd) < 1
    assert _worst(problem, None, sgd, [65, 80, 300]) < TOL
    real = closed_form.contour_functionals
    monkeypatch.setattr(exact, "contour_functionals", lambda *a: real(*a[:5], False))
    assert _worst(problem, None, sgd, [65, 80, 300]) > 1e-6


def test_spectrum_spanning_twelve_decades():
    problem = ql.Problem(np.geomspace(1, 1e-12, 25), np.ones(25), noise=1.0)
    for scheme in (None, Scheme.all(Additive(0.01)), Scheme(data=Multiplicative(0.05))):
        assert _worst(problem, scheme, ql.SGDConfig(0.3, 100_000, batch=4)) < TOL


def test_noiseless_problem_started_at_its_optimum_stays_at_zero():
    problem = ql.make_problem(10, noise=0.0)
    sgd = ql.SGDConfig(0.1, 10**12, w0=problem.w_star)
    res = ql.exact_risk(problem, Scheme(grads=Multiplicative(0.1)), sgd)
    for avg in AVERAGES:
        assert np.all(res.risk[avg] == 0) and np.all(res.risk_clean[avg] == 0)


def test_large_n_approaches_the_stationary_floor():
    # Independent route to the N → ∞ limit: for the last iterate, p_∞ solves the fixed point
    # p = α⊙p + k⟨h, p⟩ + c (the mean has died out), a d×d linear system.
    scheme = Scheme.all(Multiplicative(0.05))
    sgd = ql.SGDConfig(0.2, 10**12, average="last")
    rec, dm = _recursion(PROBLEM, scheme, sgd)
    A = np.diag(rec.alpha) + rec.k @ rec.h.T
    p_inf = np.linalg.solve(np.eye(PROBLEM.d) - A, rec.c)
    floor = 0.5 * dm.h @ p_inf + ql.theory.approx_err(PROBLEM, scheme.data)
    res = ql.exact_risk(PROBLEM, scheme, sgd, [10**12])
    assert res.risk["last"][-1] == pytest.approx(floor, rel=1e-10)


@pytest.mark.parametrize("B", [1, 4])
def test_schedules_match_stepping(B):
    scheme = Scheme(data=Multiplicative(0.05), grads=Additive(0.02))
    decay = ql.SGDConfig.step_decay(0.3, 20_000, batch=B)
    assert len(decay.schedule) >= 10
    assert _worst(PROBLEM, scheme, decay) < TOL
    custom = ql.SGDConfig(0.3, 20_000, batch=B, schedule=((50, 0.1), (90, 0.25), (5000, 0.05)))
    assert _worst(PROBLEM, scheme, custom) < TOL


def test_monte_carlo_follows_the_schedule():
    scheme = Scheme.all(Multiplicative(0.05))
    sgd = ql.SGDConfig(0.3, 2000, schedule=((200, 0.1), (1000, 0.02)))
    ck = [100, 300, 1000, 2000]
    mc = ql.simulate(PROBLEM, scheme, sgd, trials=4000, seed=1, checkpoints=ck).summary()
    ex = ql.exact_risk(PROBLEM, scheme, sgd, ck)
    assert np.all(np.abs(mc["risk_mean"] - ex.exact_risk) <= 4 * mc["risk_se"])
    constant = ql.exact_risk(PROBLEM, scheme, sgd.with_lr(0.3), ck)
    gap = np.abs(mc["risk_mean"] - constant.exact_risk)[-1]
    assert gap > 8 * mc["risk_se"][-1]  # the schedule changes the answer: the test has power


def test_unstable_runs_are_marked_not_nan():
    sgd = ql.SGDConfig(3.0, 2000)
    with pytest.warns(RuntimeWarning, match="unstable"):
        res = ql.exact_risk(PROBLEM, None, sgd)
    assert not res.stable
    for avg in AVERAGES:
        assert not np.isnan(res.risk[avg]).any() and np.isinf(res.risk[avg][-1])
    with pytest.raises(ValueError, match="needs a stable recursion"):
        ql.exact_risk(PROBLEM, None, sgd, method="closed")
    with pytest.raises(ValueError, match="grows geometrically and would need"):
        ql.exact_risk(PROBLEM, None, ql.SGDConfig(3.0, 10**12))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ql.SGDConfig(0.1, 100, schedule=((50, 0.1), (40, 0.2))), "must increase"),
        (lambda: ql.SGDConfig(0.1, 100, schedule=((500, 0.1),)), "lie in"),
        (lambda: ql.SGDConfig(0.1, 100, schedule=((50, 0.0),)), "finite number > 0"),
        (lambda: ql.SGDConfig(0.1, 100, schedule=((1, 0.1),)), "must be an integer ≥ 2"),
        (lambda: ql.SGDConfig.step_decay(0.1, 100, factor=1.5), r"factor must be a number in"),
        (lambda: ql.exact_risk(PROBLEM, None, ql.SGDConfig(0.1, 10), [20]), "checkpoints must lie"),
        (lambda: ql.exact_risk(PROBLEM, None, ql.SGDConfig(0.1, 10), method="fast"), "method"),
    ],
)
def test_bad_schedules_and_checkpoints(build, match):
    with pytest.raises(ValueError, match=match):
        build()
