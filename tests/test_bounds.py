"""The paper's bounds (unit constants), the estimated spectrum of H^(q) and the FP-vs-INT rule."""

import math
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
    fourth_moment_alpha,
    fp_beats_int,
    fp_int_threshold,
    hypotheses,
    noise_terms,
    path_sup,
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


def zou_bound(lam, w_star, noise, lr, n, w0=None, alpha=3.0):
    """Zou et al. (2021, Thm 2.1) with unit outer constants, by plain loops: EffectiveBias +
    EffectiveVar, the latter with its bias-induced term and the 1/(1 − γα tr H) factor."""
    w0 = np.zeros(len(lam)) if w0 is None else w0
    order = np.argsort(-lam)
    lam, v = lam[order], (w0 - w_star)[order]
    k = sum(1 for x in lam if x >= 1 / (n * lr))
    slack = 1 - lr * alpha * sum(lam)
    dim = k / n + n * lr**2 * sum(x * x for x in lam[k:])
    bias = (
        sum(math.exp(-2 * n * lr * lam[i]) * v[i] ** 2 / lam[i] for i in range(k)) / (lr * n) ** 2
    )
    bias += sum(lam[i] * v[i] ** 2 for i in range(k, len(lam)))
    head = sum(v[i] ** 2 for i in range(k))
    tail = sum(lam[i] * v[i] ** 2 for i in range(k, len(lam)))
    var = 2 * alpha * (head + n * lr * tail) / (n * lr * slack) * dim + noise / slack * dim
    return var + bias


def test_full_precision_bound_is_zou_et_al():
    rng = np.random.default_rng(1)
    problem = ql.Problem(rng.uniform(1e-3, 1.0, 30), rng.standard_normal(30), noise=0.7)
    w0 = rng.standard_normal(30)
    lr = 0.9 / (3 * problem.trace_H)  # inside the hypothesis γ < 1/(3 tr H)
    sgd = ql.SGDConfig(lr=lr, steps=5000, batch=1, w0=w0)
    df = bound(problem, None, sgd, [10, 100, 5000])
    ref = [zou_bound(problem.spectrum, problem.w_star, 0.7, lr, n, w0) for n in (10, 100, 5000)]
    np.testing.assert_allclose(df["bound"], ref, rtol=1e-12)
    parts = df["bound_var"] + df["bound_var_bias"] + df["bound_bias"]
    np.testing.assert_allclose(parts, df["bound"])
    assert (df["bound_var_bias"] > 0).all() and df["bound_valid"].all()
    assert (df["theorem"] == "Zou et al. Thm 2.1").all() and (df["constants"] == "unit").all()


def test_hypothesis_flag_flips_at_the_stated_step_size():
    """γ < 1/(α·tr H^(q)): α = 3 for Gaussian rows at B = 1 (additive data: tr H^(q) = tr H +
    dε); 3·E s⁴/(1+ε)² for multiplicative data; (α + B − 1)/B with B rows."""
    problem = ql.make_problem(200)
    cases = [
        (Scheme.all(Additive(0.01)), 1, 3.0 * (problem.trace_H + 200 * 0.01)),
        (Scheme(data=Additive(0.01)), 4, (3.0 + 3) / 4 * (problem.trace_H + 2.0)),
        (
            Scheme(data=Multiplicative(0.05)),
            1,
            3 * (1 + 6 * 0.05 + 3 * 0.05**2) / 1.05**2 * 1.05 * problem.trace_H,
        ),
        (
            Scheme(data=MultiplicativeElementwise(0.05, "uniform"), grads=Multiplicative(0.1)),
            2,
            (3 * (1 + 0.3 + 1.8 * 0.05**2) / 1.05**2 * 1.1 + 1.1) / 2 * 1.05 * problem.trace_H,
        ),
    ]
    for scheme, B, alpha_tr in cases:
        probe = ql.SGDConfig(lr=1e-3, steps=100, batch=B)
        lr_max = hypotheses(problem, scheme, probe).lr_max  # the γ the flag states
        assert lr_max == pytest.approx(1.0 / alpha_tr, rel=1e-12)
        inside = ql.SGDConfig(lr=float(np.nextafter(lr_max, 0)), steps=100, batch=B)
        at = ql.SGDConfig(lr=lr_max, steps=100, batch=B)
        assert hypotheses(problem, scheme, inside).valid
        hyp = hypotheses(problem, scheme, at)
        assert not hyp.valid and hyp.reason.startswith("fails: γ")
        b = bound(problem, scheme, at, [10, 100])
        assert not b["bound_valid"].any() and b["bound_reason"].str.startswith("fails").all()
        assert bound(problem, scheme, inside, [10, 100])["bound_valid"].all()


def test_fourth_moment_alpha_against_the_operator():
    """``E[x̃x̃ᵀAx̃x̃ᵀ] ≼ α·tr(H̃A)·H̃`` with the operator of the full-matrix recursion (an
    independent route): never above α for random PSD ``A``, and reached along the top
    eigenvector (α is the least constant)."""
    from qlinreg.theory.dense import _FAMILY, _K, _row_constants

    rng = np.random.default_rng(4)
    lam = np.sort(rng.uniform(0.05, 1.0, 6))[::-1]
    H = np.diag(lam)
    elementwise = (MultiplicativeElementwise(0.2), MultiplicativeElementwise(0.2, "uniform"))
    for q in (
        NoQuant(),
        Additive(0.2),
        Additive(0.2, "uniform"),
        Multiplicative(0.2),
        *elementwise,
    ):
        e = q.moments()
        c = _row_constants(H, e)
        Ht = np.asarray(c["Ht"])
        root = np.linalg.inv(np.linalg.cholesky(Ht))
        alpha = fourth_moment_alpha(q)

        def ratio(A, Ht=Ht, root=root, c=c, e=e):
            with jax.enable_x64(True):
                K = np.asarray(_K(_FAMILY[e.kind], c, A))
            return np.linalg.eigvalsh(root @ K @ root.T).max() / np.sum(Ht * A)

        for _ in range(20):
            G = rng.standard_normal((6, 3))
            assert ratio(G @ G.T) <= alpha * (1 + 1e-12), q
        top = np.zeros((6, 6))
        top[0, 0] = 1.0
        if e.law != "uniform" or e.kind != "additive":
            assert ratio(top) == pytest.approx(alpha, rel=1e-9), q


def test_bound_terms_match_their_definitions():
    """Every term on a small case, from plain loops written from the definitions: k*, D,
    VarErr, the bias-induced term, BiasErr with exp(−NγH^(q)), ApproxErr, σ_G²."""
    rng = np.random.default_rng(2)
    problem = ql.Problem(rng.uniform(0.01, 1.0, 12), rng.standard_normal(12), noise=0.4)
    scheme = Scheme(data=Multiplicative(0.1), labels=Additive(0.05), grads=Additive(0.02))
    B, lr, n = 2, 0.04, 400  # inside the hypothesis (γα tr H^(q) ≈ 0.56)
    sgd = ql.SGDConfig(lr=lr, steps=n, batch=B)
    row = bound(problem, scheme, sgd, [n]).iloc[0]
    lam, ws = problem.spectrum, problem.w_star
    h, u = 1.1 * lam, ws / 1.1
    ae = 0.5 * 0.1 / 1.1 * float(lam @ ws**2)
    s2 = (0.4 + 2 * ae + 0.05 + 0.02) / B  # additive labels and grads add ε/B each
    alpha = (3 * (1 + 0.6 + 3 * 0.01) / 1.21 + (B - 1)) / B
    slack = 1 - lr * alpha * h.sum()
    assert row["bound_valid"] and 0 < slack < 1
    order = np.argsort(-h)
    hs, v = h[order], -u[order]
    k = int(np.sum(hs >= 1 / (n * lr)))
    dim = k / n + n * lr**2 * np.sum(hs[k:] ** 2)
    assert row["k_star"] == k and row["sigma_G2"] == pytest.approx(s2, rel=1e-12)
    assert row["alpha"] == pytest.approx(alpha, rel=1e-12)
    assert row["bound_var"] == pytest.approx(s2 * dim / slack, rel=1e-12)
    tail = np.sum(hs[k:] * v[k:] ** 2)
    vb = 2 * alpha * (np.sum(v[:k] ** 2) + n * lr * tail) / (n * lr * slack) * dim
    assert row["bound_var_bias"] == pytest.approx(vb, rel=1e-12)
    head = np.sum(np.exp(-2 * n * lr * hs[:k]) * v[:k] ** 2 / hs[:k]) / (n * lr) ** 2
    assert row["bound_bias"] == pytest.approx(head + tail, rel=1e-12)
    assert row["bound_approx"] == pytest.approx(ae, rel=1e-12)


def test_sigma_G2_carries_the_residual_of_the_best_quantized_predictor():
    """Additive Gaussian data quantization *is* unquantized SGD on (H^(q), w*^(q)) with label
    noise σ² + 2·ApproxErr (docs/theory.md §8): its bound's SGD terms equal that problem's."""
    problem = ql.make_problem(40, noise=0.3)
    scheme = Scheme(data=Additive(0.02))
    sgd = ql.SGDConfig(lr=0.05, steps=10_000)
    ae = approx_err(problem, scheme.data)
    twin = ql.Problem(H_q(problem, scheme.data), w_star_q(problem, scheme.data), 0.3 + 2 * ae)
    a, b = (
        bound(problem, scheme, sgd, [10, 1000, 10_000]),
        bound(twin, None, sgd, [10, 1000, 10_000]),
    )
    for col in ("bound_var", "bound_var_bias", "bound_bias", "sigma_G2", "k_star"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-12, err_msg=col)


def test_sup_of_the_second_moment_from_the_exact_recursion():
    """path_sup (closed form on a grid) against the exact recursion stepped at every step, and
    σ_G² of multiplicative parameter errors uses it (not the endpoints)."""
    problem = ql.make_problem(8, decay=1.0, noise=0.5)
    scheme = Scheme(params=Multiplicative(0.3), data=Additive(0.05))
    sgd = ql.SGDConfig(lr=0.2, steps=3000)
    steps = np.array([5, 300, 3000])
    sup_w, sup_v = path_sup(problem, scheme, sgd, steps)
    every = np.arange(1, 3001)
    ex = exact_risk(problem, scheme, sgd, every, method="step")
    h, u = H_q(problem, scheme.data), w_star_q(problem, scheme.data)
    hv = np.concatenate([[h @ u**2], 2 * (ex.risk["last"] - approx_err(problem, scheme.data))])
    m = np.outer((1 - 0.2 * h), np.ones(1)).ravel() ** np.arange(0, 3001)[:, None] * -u
    hw = h @ (u * u) + 2 * m @ (h * u) + hv
    for n, sw, sv in zip(steps, sup_w, sup_v, strict=True):
        assert sv == pytest.approx(hv[: n + 1].max(), rel=2e-3)
        assert sw == pytest.approx(hw[: n + 1].max(), rel=2e-3)
    row = bound(problem, scheme, sgd, [3000]).iloc[0]
    ref = noise_terms(problem, scheme, 1, sup_w=sup_w[-1], sup_v=sup_v[-1])["sigma_G2"]
    assert (
        row["sigma_G2"] == pytest.approx(ref, rel=1e-12) and row["sup_source"] == "exact recursion"
    )
    assert sup_w[-1] != pytest.approx(max(h @ u**2, 0.0), rel=1e-3)  # the SGD path, not GD's


def test_bound_columns_and_conventions():
    problem = ql.make_problem(50)
    scheme = Scheme.all(Multiplicative(0.01))
    sgd = ql.SGDConfig(lr=0.1, steps=1000)
    q = bound(problem, scheme, sgd)
    c = bound(problem, scheme, sgd, convention="clean")
    cols = ("step", "bound", "bound_var", "bound_var_bias", "bound_bias", "bound_approx", "k_star",
            "sigma_G2", "alpha", "bound_valid", "bound_reason")  # fmt: skip
    assert set(cols) <= set(q.columns)
    assert q["step"].iloc[-1] == 1000
    assert (q["theorem"] == "Thm 4.1, multiplicative (not Thm 4.2)").all()
    np.testing.assert_allclose(q["bound_approx"], approx_err(problem, scheme.data))
    np.testing.assert_allclose(c["bound_approx"], approx_err_clean(problem, scheme.data))
    np.testing.assert_allclose(q["bound"] - q["bound_approx"], c["bound"] - c["bound_approx"])
    # Multiplicative data: ApproxErr = ε/(1+ε)·½‖w*‖²_H (SPEC §4).
    np.testing.assert_allclose(q["bound_approx"], 0.01 / 1.01 * 0.5 * problem.trace_H)
    k = [ql.theory.k_star(problem, scheme.data, int(n), 0.1) for n in q["step"]]
    np.testing.assert_array_equal(q["k_star"], k)
    with pytest.raises(ValueError, match="convention"):
        bound(problem, scheme, sgd, convention="paper")
    with pytest.raises(ValueError, match="alpha_B"):
        bound(problem, scheme, sgd, alpha_B="loose")


def test_theorem_labels():
    assert theorem(Scheme()) == "Zou et al. Thm 2.1"
    assert theorem(Scheme.all(Additive(0.1))) == "Thm 4.1, additive (Cor 4.1)"
    mult = "Thm 4.1, multiplicative (not Thm 4.2)"
    assert theorem(Scheme(data=Multiplicative(0.1), grads=Multiplicative(0.2))) == mult
    assert theorem(Scheme(data=Additive(0.1), grads=Multiplicative(0.2))) == "Thm 4.1"
    assert theorem(Scheme.all(MultiplicativeElementwise(0.1))) == "Thm 4.1"
    assert theorem(Scheme(data=Additive(0.0), labels=Multiplicative(0.1))) == mult


def test_sigma_G2_structure():
    """σ² and additive/elementwise errors shrink as 1/B; rank-one errors on batch vectors do
    not; parameter errors carry tr(H^(q)) with α_B = α/B + 1 − 1/B (standard: never below 1) or,
    as the named tighter option, 1/B + (1 − 1/B)·λ^(q)_1/tr(H^(q))."""
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
    lam1_over_tr = problem.spectrum[0] / problem.trace_H
    for B in (1, 8, 10**9):
        std = noise_terms(problem, Scheme(params=Additive(0.1)), B)
        spec = noise_terms(problem, Scheme(params=Additive(0.1)), B, alpha_B="spectral")
        assert std["alpha_B"] == pytest.approx(3 / B + 1 - 1 / B)
        assert std["params"] == pytest.approx(std["alpha_B"] * 0.1 * ws_q2)
        assert spec["alpha_B"] == pytest.approx(1 / B + (1 - 1 / B) * lam1_over_tr)
    data = noise_terms(problem, Scheme(data=Additive(0.1)), 1)
    assert data["approx_noise"] == pytest.approx(2 * approx_err(problem, Additive(0.1)))


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
    """Corollary 4.3 at ε = 0.01 ≥ 1/(Nγ): additive VarErr ∝ d/N (k* = d) grows without bound;
    the multiplicative bound does not depend on d."""
    lr = 0.03  # inside the hypothesis 3γ·tr H^(q) < 1 up to d = 800 (tr H^(q) = tr H + dε)
    sgd = ql.SGDConfig(lr=lr, steps=10_000)
    dims = np.array([50, 100, 200, 400, 800])
    add_var, mult, expected = [], [], []
    for d in dims:
        problem = ql.make_problem(int(d))
        for kind in (Additive, Multiplicative):
            # only the data quantized: σ_G² has no path sup, the endpoints are exact here
            b = bound(problem, Scheme(data=kind(0.01)), sgd, [10_000], sup="endpoints").iloc[0]
            assert b["bound_valid"], b["bound_reason"]
            r = polynomial_decay_rates(2.0, int(d), 10_000, lr, 0.01, kind.kind)["total"]
            assert 0.7 < r / b["bound"] < 1.5, (kind, d, r, b)  # the integral rates track it
            if kind is Additive:
                assert b["k_star"] == d
                add_var.append(b["bound_var"])
                lam = problem.spectrum
                ae = 0.5 * np.sum(lam * 0.01 / (lam + 0.01))
                expected.append((1 + 2 * ae) * d / 10_000 / (1 - 3 * lr * (lam.sum() + d * 0.01)))
            else:
                mult.append(b["bound"])
    np.testing.assert_allclose(add_var, expected, rtol=1e-12)  # σ_G² d/N / (1 − 3γ tr H^(q))
    assert np.all(np.diff(mult) > 0) and np.all(np.diff(np.diff(mult)) < 0)  # saturating
    rates = [polynomial_decay_rates(2.0, d, 10_000, lr, 0.01, "multiplicative")["total"]
             for d in (800, 10**7)]  # fmt: skip
    assert rates[0] < rates[1] < 1.1 * rates[0]  # the integral rates saturate in d
    with pytest.raises(ValueError, match="hypothesis"):
        polynomial_decay_rates(2.0, 10**4, 10_000, lr, 0.01, "additive")
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


def test_report_and_figure_mark_points_outside_the_hypothesis():
    """bound_note counts the invalid points (hand-built table); plot_risk greys them."""
    import pandas as pd

    from qlinreg.plot import plot_risk
    from qlinreg.report import bound_note

    df = pd.DataFrame({
        "step": [1, 10, 100, 1, 10, 100],
        "bound": [1.0, 0.5, 0.2, 2.0, 1.0, 0.4],
        "bound_valid": [True, True, True, False, False, False],
        "bound_reason": ["holds: …"] * 3 + ["fails: γ = 0.1 ≥ 1/(α·tr H^(q)) = 0.09"] * 3,
        "case": ["a"] * 3 + ["b"] * 3,
    })  # fmt: skip
    note = bound_note(df)
    assert note.startswith("Bound: 3 of 6 points lie outside") and "fails: γ = 0.1" in note
    assert bound_note(df[df["case"] == "a"]).endswith("(all inside).")
    assert bound_note(df.drop(columns="bound")) == ""
    ax = plot_risk(df, by="case")
    labels = ax.get_legend_handles_labels()[1] + [t.get_text() for t in ax.get_legend().texts]
    assert any("not a bound" in t for t in labels)
    grey = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert len(grey) == 1 and np.isnan(grey[0].get_ydata()[:3].astype(float)).sum() == 0
