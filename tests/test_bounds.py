"""The paper's bounds (unit constants), the estimated spectrum of H^(q) and the FP-vs-INT rule."""

from dataclasses import dataclass

import jax
import numpy as np
import pytest

import qlinreg as ql
from qlinreg import Additive, Multiplicative, MultiplicativeElementwise, NoQuant, Scheme
from qlinreg.theory import (
    H_q,
    approx_err,
    approx_err_clean,
    bound,
    estimate_H_q,
    exact_risk,
    fp_beats_int,
    fp_int_threshold,
    noise_terms,
    polynomial_decay_rates,
    quantized_spectrum,
    sigma_G2,
    theorem,
    w_star_q,
)

# ------------------------------------------------------------------------- spectrum of H^(q)

QUANTIZERS = [
    NoQuant(),
    Additive(0.3),
    Additive(0.3, "uniform"),
    Multiplicative(0.3),
    Multiplicative(0.3, "uniform"),
    MultiplicativeElementwise(0.3),
    MultiplicativeElementwise(0.3, "uniform"),
]


@pytest.mark.parametrize("q", QUANTIZERS, ids=lambda q: q.label)
def test_estimated_H_q_matches_closed_form(q):
    """7 quantizers × 6 coordinates = 42 comparisons at 4 SE: false-alarm chance ≈ 0.3 %."""
    problem = ql.make_problem(6, decay=1.0)
    est = estimate_H_q(problem, q, samples=40_000, seed=3, eigenvalues=True)
    np.testing.assert_array_less(np.abs(est["diag"] - H_q(problem, q)), 4 * est["diag_se"])
    # H^(q) is diagonal for idealized quantizers: the sample matrix's eigenvalues are close.
    np.testing.assert_allclose(est["eigenvalues"], np.sort(est["diag"])[::-1], rtol=0.05)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Sign:
    """A biased 1-bit quantizer with no closed-form ``H^(q)``: ``Q(u) = sign(u)``."""

    def __call__(self, key, u):
        return jax.numpy.sign(u)


def test_quantized_spectrum_frame():
    problem = ql.make_problem(5)
    df = quantized_spectrum(problem, Additive(0.1), samples=1000)
    assert list(df.columns) == ["index", "lambda", "lambda_q", "lambda_q_est", "lambda_q_se"]
    np.testing.assert_allclose(df["lambda_q"], problem.spectrum + 0.1)
    sign = quantized_spectrum(problem, _Sign(), samples=1000)
    assert sign["lambda_q"].isna().all()
    np.testing.assert_allclose(sign["lambda_q_est"], 1.0)  # sign(x)² = 1
    assert list(quantized_spectrum(problem, NoQuant()).columns) == ["index", "lambda", "lambda_q"]
    with pytest.raises(ValueError, match="samples"):
        estimate_H_q(problem, NoQuant(), samples=1)


# ------------------------------------------------------------------------------- the bounds


def zou_bound(lam, w_star, noise, lr, n):
    """Zou et al.'s bound with unit constants, by a plain loop (full precision, ``w_0 = 0``)."""
    k = sum(1 for x in lam if x >= 1 / (n * lr))
    order = np.argsort(-lam)
    lam, w = lam[order], w_star[order]
    var = noise * (k / n + n * lr**2 * sum(x * x for x in lam[k:]))
    bias = sum(w[i] ** 2 / lam[i] for i in range(k)) / (lr * n) ** 2
    bias += sum(lam[i] * w[i] ** 2 for i in range(k, len(lam)))
    return var + bias


def test_full_precision_bound_is_zou_et_al():
    rng = np.random.default_rng(1)
    problem = ql.Problem(rng.uniform(1e-3, 1.0, 30), rng.standard_normal(30), noise=0.7)
    sgd = ql.SGDConfig(lr=0.2, steps=5000, batch=1)
    df = bound(problem, None, sgd, [10, 100, 5000])
    ref = [zou_bound(problem.spectrum, problem.w_star, 0.7, 0.2, n) for n in (10, 100, 5000)]
    np.testing.assert_allclose(df["bound"], ref, rtol=1e-12)
    np.testing.assert_allclose(df["bound_var"] + df["bound_bias"], df["bound"])
    assert (df["theorem"] == "Thm 4.1").all() and (df["constants"] == "unit").all()


def test_bound_columns_and_conventions():
    problem = ql.make_problem(50)
    scheme = Scheme.all(Multiplicative(0.01))
    sgd = ql.SGDConfig(lr=0.1, steps=1000)
    q = bound(problem, scheme, sgd)
    c = bound(problem, scheme, sgd, convention="clean")
    for col in ("step", "bound", "bound_var", "bound_bias", "bound_approx", "k_star", "sigma_G2"):
        assert col in q
    assert q["step"].iloc[-1] == 1000 and (q["theorem"] == "Thm 4.2").all()
    np.testing.assert_allclose(q["bound_approx"], approx_err(problem, scheme.data))
    np.testing.assert_allclose(c["bound_approx"], approx_err_clean(problem, scheme.data))
    # Multiplicative data: ApproxErr = ε/(1+ε)·½‖w*‖²_H (SPEC §4).
    np.testing.assert_allclose(q["bound_approx"], 0.01 / 1.01 * 0.5 * problem.trace_H)
    k = [ql.theory.k_star(problem, scheme.data, int(n), 0.1) for n in q["step"]]
    np.testing.assert_array_equal(q["k_star"], k)
    with pytest.raises(ValueError, match="convention"):
        bound(problem, scheme, sgd, convention="paper")


def test_theorem_labels():
    assert theorem(Scheme.all(Additive(0.1))) == "Cor 4.1"
    assert theorem(Scheme(data=Multiplicative(0.1), grads=Multiplicative(0.2))) == "Thm 4.2"
    assert theorem(Scheme(data=Additive(0.1), grads=Multiplicative(0.2))) == "Thm 4.1"
    assert theorem(Scheme.all(MultiplicativeElementwise(0.1))) == "Thm 4.1"
    assert theorem(Scheme(data=Additive(0.0), labels=Multiplicative(0.1))) == "Thm 4.2"


def test_sigma_G2_structure():
    """σ² and additive/elementwise errors shrink as 1/B; rank-one errors on batch vectors do
    not; parameter errors carry tr(H^(q)) and α_B ∈ [λ^(q)_1/tr(H^(q)), 1] (Cor 4.1, Thm 4.2)."""
    problem = ql.make_problem(20, noise=0.5)
    for B in (1, 8):
        assert sigma_G2(problem, Scheme(), B) == pytest.approx(0.5 / B)
        add = noise_terms(problem, Scheme(activations=Additive(0.1), grads=Additive(0.2)), B)
        assert add["sigma_G2"] == pytest.approx((0.5 + 0.3) / B)
    ws_q2 = problem.trace_H  # w* = 1: ‖w*‖²_H
    shared = [sigma_G2(problem, Scheme(activations=Multiplicative(0.1)), B) for B in (1, 8)]
    assert shared[1] - 0.5 / 8 == pytest.approx(shared[0] - 0.5) == pytest.approx(0.1 * ws_q2)
    elem_scheme = Scheme(activations=MultiplicativeElementwise(0.1))
    elem = [sigma_G2(problem, elem_scheme, B) for B in (1, 8)]
    assert elem[1] == pytest.approx(elem[0] / 8)
    params = [noise_terms(problem, Scheme(params=Additive(0.1)), B) for B in (1, 8, 10**9)]
    assert params[0]["alpha_B"] == 1 and params[0]["params"] == pytest.approx(0.1 * ws_q2)
    lam1_over_tr = problem.spectrum[0] / problem.trace_H
    assert params[1]["alpha_B"] == pytest.approx(1 / 8 + 7 / 8 * lam1_over_tr)
    assert params[2]["alpha_B"] == pytest.approx(lam1_over_tr)


def test_bound_orders_exact_risk_on_paper_settings():
    """Bounds hold up to constants: with constants 1 they stay within a factor 10 of the exact
    risk on the paper's Q1 settings at N = 10^4 (a sanity check, not a theorem)."""
    problem = ql.make_problem(200)
    sgd = ql.SGDConfig(lr=0.1, steps=10_000)
    for eps in (0.0, 1e-3, 1e-2):
        for kind in (Additive, Multiplicative):
            scheme = Scheme.all(kind(eps))
            ratio = (
                bound(problem, scheme, sgd, [10_000])["bound"].iloc[0]
                / exact_risk(problem, scheme, sgd, [10_000]).exact_risk[0]
            )
            assert 0.1 < ratio < 10, (kind, eps, ratio)


# ------------------------------------------------------------------------ Corollary 4.3


def test_polynomial_decay_additive_grows_with_d_multiplicative_does_not():
    """Corollary 4.3 at ε = 0.01 ≥ 1/(Nγ): additive VarErr = σ²d/N (k* = d) grows without bound;
    the multiplicative bound does not depend on d."""
    sgd = ql.SGDConfig(lr=0.1, steps=10_000)
    dims = np.array([50, 100, 200, 400, 800])
    add_var, mult = [], []
    for d in dims:
        problem = ql.make_problem(int(d))
        for kind in (Additive, Multiplicative):
            b = bound(problem, Scheme(data=kind(0.01)), sgd, [10_000]).iloc[0]
            r = polynomial_decay_rates(2.0, int(d), 10_000, 0.1, 0.01, kind.kind)["total"]
            assert 0.7 < r / b["bound"] < 1.5, (kind, d, r, b)  # the integral rates track it
            if kind is Additive:
                assert b["k_star"] == d
                add_var.append(b["bound_var"])
            else:
                mult.append(b["bound"])
    np.testing.assert_allclose(add_var, dims / 10_000, rtol=1e-12)
    assert np.all(np.diff(mult) > 0) and np.all(np.diff(np.diff(mult)) < 0)  # saturating
    limit = polynomial_decay_rates(2.0, 10**7, 10_000, 0.1, 0.01, "multiplicative")["total"]
    assert mult[-1] < limit < 1.1 * mult[-1]
    with pytest.raises(ValueError, match="decay"):
        polynomial_decay_rates(1.0, 10, 100, 0.1, 0.01, "additive")


def test_fp_int_rule():
    assert fp_int_threshold(8, 2.0, 256) == pytest.approx(0.0)
    assert fp_int_threshold(8, 2.0, 16) == pytest.approx(4.0)
    assert fp_beats_int(4, 8, 2.0, 16) and not fp_beats_int(3, 8, 2.0, 16)
    # The rule is ε_FP·λ_d ≤ ε_INT with ε_FP = 2^(−2m), ε_INT = 2^(−2b), λ_d = d^(−a).
    for m, b, d in ((3, 6, 10), (5, 6, 4), (2, 8, 1000)):
        assert fp_beats_int(m, b, 2.0, d) == (2.0 ** (-2 * m) * d**-2.0 <= 2.0 ** (-2 * b))


def test_bound_validation():
    problem = ql.make_problem(5)
    sgd = ql.SGDConfig(lr=0.1, steps=10)
    with pytest.raises(TypeError, match="idealized"):
        bound(problem, Scheme(grads=_Sign()), sgd)
    with pytest.raises(TypeError, match="Problem"):
        bound("problem", None, sgd)
    assert np.all(w_star_q(problem, NoQuant()) == problem.w_star)
