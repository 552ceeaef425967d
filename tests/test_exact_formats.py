"""Exact risk with real number formats on data and labels (docs/theory.md §14): quadrature
moments against sampling, the exact risk against the engine's Monte Carlo with the real format,
fp32 against full precision, moment-estimated shared scales against Monte Carlo."""

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import qlinreg as ql
from qlinreg import prng
from qlinreg.algorithm import AVERAGES
from qlinreg.cli import app
from qlinreg.quantize import parse_quantizer
from qlinreg.theory import exact as ex
from qlinreg.theory import exact_risk
from qlinreg.theory.format_moments import scalar_grid
from qlinreg.theory.row_moments import row_moments
from qlinreg.theory.sampled_moments import (
    GROUPS,
    _quantize_batches,
    conditional_powers,
    sample_moments,
)

# ------------------------------------------------------------- quadrature against sampling

# (format, σ, what the case covers). Statistics: f(x, x̃) − f(x, x) for x̃², x x̃, x̃⁴, x x̃³,
# x² x̃², i.e. RowMoments' h − λ, c − λ, a4 − 3λ², b4 − 3λ², c4 − 3λ² (error moments and their
# conversion at once), from 2^19 float64 samples rounded by the format itself.
QUAD_CASES = [
    ("fp8_e4m3", 1.0, "normal range"),
    ("fp8_e4m3", 1e-3, "entirely subnormal: 13σ < 2^-6"),
    ("fp8_e5m2", 3e-6, "entirely subnormal: 13σ < 2^-14"),
    ("fp6_e2m3", 3.0, "saturates: max 7.5 = 2.5σ"),
    ("fp4_e2m1", 1.0, "coarse grid"),
    ("fp4_e2m1:nearest_even", 2.0, "round-to-nearest, saturates at 3σ"),
    ("int8::scale=0.02", 1.0, "INT fixed scale, saturates at 2.54σ"),
    ("int4:toward_zero:scale=0.1", 0.3, "toward zero"),
]
SAMPLES = 1 << 19


@pytest.mark.parametrize(
    ("name", "sigma", "what"), QUAD_CASES, ids=[c[0] + f"-{c[1]:g}" for c in QUAD_CASES]
)
def test_quadrature_row_moments_match_sampling(name, sigma, what):
    """Tolerance 4 SE (40 comparisons: a false alarm has probability ≈ 0.3 %; seeds fixed)."""
    q = parse_quantizer(name)
    g = scalar_grid(q)
    if "subnormal" in what:
        assert 13 * sigma < 2.0**q.grid.emin
    if "saturates" in what:
        assert g.top < 3.1 * sigma
    rm = row_moments(q, np.array([sigma * sigma]))
    lam = sigma * sigma
    with jax.enable_x64(True):
        x = sigma * prng.normal(
            prng.key(QUAD_CASES.index((name, sigma, what))), (SAMPLES,), jnp.float64
        )
        xq = np.asarray(jax.jit(q)(prng.key(99), x))
    x = np.asarray(x)
    stats = {
        "h": (xq**2 - x**2, rm.h - lam),
        "c": (x * xq - x**2, rm.c - lam),
        "a4": (xq**4 - x**4, rm.a4 - 3 * lam * lam),
        "b4": (x * xq**3 - x**4, rm.b4 - 3 * lam * lam),
        "c4": (x**2 * xq**2 - x**4, rm.c4 - 3 * lam * lam),
    }
    for key, (sample, exact) in stats.items():
        mean, se = sample.mean(), sample.std(ddof=1) / np.sqrt(SAMPLES)
        assert abs(mean - exact[0]) <= 4 * se, (key, mean, exact[0], se)
    assert rm.delta[0] > 0


def test_fp32_equals_full_precision():
    """fp32's grid is fine enough that the risk with fp32 data and labels is full precision's
    to 1e-9 (every average, both conventions, with other roles quantized)."""
    problem = ql.make_problem(30, noise=0.5)
    sgd = ql.SGDConfig(0.1, 10_000, batch=3)
    others = ["grads=multiplicative:0.1", "activations=additive:0.01"]
    ref = exact_risk(problem, ql.Scheme.parse(others), sgd)
    for roles in (["data=fp32"], ["labels=fp32"], ["data=fp32", "labels=fp32"]):
        res = exact_risk(problem, ql.Scheme.parse(roles + others), sgd)
        assert res.moments == "exact"
        for avg in AVERAGES:
            np.testing.assert_allclose(res.risk[avg], ref.risk[avg], rtol=1e-9)
            np.testing.assert_allclose(res.risk_clean[avg], ref.risk_clean[avg], rtol=1e-9)


# ------------------------------------------------------- exact risk against Monte Carlo

# Two spectra: λ_i = 4/i (coarse formats' saturation and rounding dominate), and a steep one
# whose last coordinates are entirely in E4M3's subnormal range (λ = 1e-6, σ = 1e-3).
SPECTRA = {
    "power": ql.Problem(4.0 / np.arange(1, 7), np.ones(6), noise=0.5),
    "steep": ql.Problem(np.array([2.0, 0.5, 0.1, 1e-2, 1e-6, 1e-6]), np.ones(6), noise=0.5),
}
N, TRIALS, CKPTS = 500, 1000, [10, 100, 500]
# (spectrum, scheme, B): biased data (saturating FP4 and RTN FP6), subnormal data (E4M3 on the
# steep spectrum) with saturating INT4 labels (biased: the fixed point moves), unbiased FP8
# labels with RTN data (the 2-D data × label integral); batch sizes 1 and 2.
MC_CASES = [
    ("power", "data=fp4_e2m1", 2),
    ("steep", "data=fp8_e4m3 labels=int4::scale=0.5", 1),
    ("power", "data=fp6_e2m3:nearest_even labels=fp8_e4m3", 2),
]


@lru_cache(maxsize=4)
def _full_precision(spectrum: str, batch: int):
    sgd = ql.SGDConfig(0.05, N, batch=batch)
    mc = ql.simulate(SPECTRA[spectrum], None, sgd, trials=TRIALS, seed=5, checkpoints=CKPTS)
    return mc, exact_risk(SPECTRA[spectrum], None, sgd, CKPTS)


@pytest.mark.parametrize(
    ("spectrum", "spec", "batch"), MC_CASES, ids=[f"{c[0]}-{c[1]}-B{c[2]}" for c in MC_CASES]
)
def test_exact_risk_with_formats_matches_monte_carlo(spectrum, spec, batch):
    """The real format in the engine (1000 trials) against the exact risk, both conventions at
    3 checkpoints: the risk within 4 SE, and the penalty (format minus full precision, paired
    trials: same features and label noise) within 4 SE of the paired difference."""
    problem, scheme = SPECTRA[spectrum], ql.Scheme.parse(spec.split())
    sgd = ql.SGDConfig(0.05, N, batch=batch)
    res = exact_risk(problem, scheme, sgd, CKPTS)
    assert res.moments == "exact"
    mc = ql.simulate(problem, scheme, sgd, trials=TRIALS, seed=5, checkpoints=CKPTS)
    base_mc, base = _full_precision(spectrum, batch)
    summary = mc.summary()
    for conv, exact, exact0, trials, trials0 in (
        ("", res.exact_risk, base.exact_risk, mc.risk, base_mc.risk),
        ("_clean", res.exact_risk_clean, base.exact_risk_clean, mc.risk_clean, base_mc.risk_clean),
    ):
        np.testing.assert_array_less(
            np.abs(exact - summary[f"risk{conv}_mean"]), 4 * summary[f"risk{conv}_se"]
        )
        diff = trials - trials0
        se = diff.std(1, ddof=1) / np.sqrt(TRIALS)
        np.testing.assert_array_less(np.abs(exact - exact0 - diff.mean(1)), 4 * se)
    assert res.exact_risk[-1] - base.exact_risk[-1] > 10 * se[-1]  # the format matters here


def test_closed_form_and_stepping_agree_with_formats():
    problem = ql.make_problem(12, decay=1.0, noise=0.5)
    for spec in (
        "data=fp8_e4m3:nearest_even",
        "labels=int4::scale=0.5",
        "data=fp8_e4m3 labels=fp4_e2m1",
    ):
        scheme = ql.Scheme.parse(spec.split())
        sgd = ql.SGDConfig(0.1, 5000, batch=2)
        a = exact_risk(problem, scheme, sgd, method="closed")
        b = exact_risk(problem, scheme, sgd, method="step")
        for avg in AVERAGES:
            np.testing.assert_allclose(a.risk[avg], b.risk[avg], rtol=1e-9)
            np.testing.assert_allclose(a.risk_clean[avg], b.risk_clean[avg], rtol=1e-9)


# ------------------------------------------------------------- moment-estimated shared scales


def test_estimated_moments_agree_with_exact_ones():
    """The sampled route on a format that also has exact moments: the estimated risk within 4
    jackknife SE of the exact one (a check of the estimator and of its stated error)."""
    problem = ql.make_problem(8, decay=1.0, noise=0.5)
    sgd = ql.SGDConfig(0.1, 1000, batch=3)
    scheme = ql.Scheme.parse(["data=fp4_e2m1", "labels=fp8_e4m3"])
    ckpts = np.array(CKPTS)

    def risks(dm, r):
        return ex._diagonal_risks(problem, dm, r, sgd, ckpts, "auto")

    plan = ex._moment_plan(problem, scheme, 3, samples=GROUPS, seed=0)
    assert plan.moments == "exact"
    exact = risks(plan.dm, plan.r)
    full = risks(ex._moment_plan(problem, ql.Scheme(), 3, samples=GROUPS, seed=0).dm, plan.r)
    sm = sample_moments(problem, scheme.data, scheme.labels, 3, samples=1 << 15, seed=4)
    est = [risks(ex._data_moments_sampled(problem, sm.moments(g), sm.pairs), plan.r)
           for g in (None, *range(GROUPS))]  # fmt: skip
    for k in (0, 1):
        se = ex._jackknife([e[k]["polyak"] for e in est[1:]])
        assert np.all(np.abs(est[0][k]["polyak"] - exact[k]["polyak"]) <= 4 * se)
        assert np.all(se < 0.25 * (exact[k]["polyak"] - full[k]["polyak"]))  # informative


@pytest.mark.parametrize("name", ["int8", "fp4_e2m1::tensor", "mxint8:block8:nearest_even"])
def test_conditional_powers_are_the_rounding_moments(name):
    """Rao–Blackwell step of the estimated route: ``E[Q(U)^k | U]`` from the grid neighbours at
    each group's scale against 400 roundings by the format itself, per power ``k``: the summed
    difference over all entries within 4 SE (one z per power; scales per row, per tensor of 4
    rows, per block of 8)."""
    q = parse_quantizer(name)
    with jax.enable_x64(True):
        U = 1.5 * prng.normal(prng.key(0), (3, 4, 64), jnp.float64)
        mu = conditional_powers(q, prng.key(1), U)
        keys = prng.derive(prng.key(2), jnp.arange(400, dtype=jnp.uint32))
        draws = np.asarray(jax.jit(jax.vmap(lambda k: _quantize_batches(q, k, U)))(keys))
    for k in range(4):
        powers = draws ** (k + 1)
        diff = powers.mean(0) - mu[k]
        se = np.sqrt(np.sum(powers.var(0, ddof=1) / 400)) + 1e-12 * np.abs(mu[k]).sum()
        assert abs(diff.sum()) <= 4 * se, (k, diff.sum(), se)
        assert np.abs(diff).max() < 0.05 * np.abs(mu[k]).max()


# (scheme, B): per-vector INT absmax, and per-tensor FP scaling, whose scale is shared by the
# batch's B = 2 rows (two-row moments).
EST_CASES = [("data=int4", 2), ("data=fp4_e2m1::tensor", 2)]


@pytest.mark.parametrize(("spec", "batch"), EST_CASES, ids=[f"{c[0]}-B{c[1]}" for c in EST_CASES])
def test_moment_estimated_risk_matches_monte_carlo(spec, batch):
    """Within 4 × (Monte Carlo SE ⊕ the stated jackknife SE), risk and paired penalty."""
    problem, scheme = SPECTRA["power"], ql.Scheme.parse(spec.split())
    sgd = ql.SGDConfig(0.05, N, batch=batch)
    res = exact_risk(problem, scheme, sgd, CKPTS, seed=1)
    assert res.moments == "estimated" and np.all(res.risk_se["polyak"] > 0)
    assert res.to_frame()["exact_moments"].eq("estimated").all()
    mc = ql.simulate(problem, scheme, sgd, trials=TRIALS, seed=5, checkpoints=CKPTS)
    mc0, base = _full_precision("power", batch)
    summary = mc.summary()
    for conv, exact, se_est, exact0, trials, trials0 in (
        ("", res.exact_risk, res.risk_se["polyak"], base.exact_risk, mc.risk, mc0.risk),
        ("_clean", res.exact_risk_clean, res.risk_clean_se["polyak"], base.exact_risk_clean,
         mc.risk_clean, mc0.risk_clean),
    ):  # fmt: skip
        tol = 4 * np.hypot(summary[f"risk{conv}_se"], se_est)
        np.testing.assert_array_less(np.abs(exact - summary[f"risk{conv}_mean"]), tol)
        diff = trials - trials0
        tol = 4 * np.hypot(diff.std(1, ddof=1) / np.sqrt(TRIALS), se_est)
        np.testing.assert_array_less(np.abs(exact - exact0 - diff.mean(1)), tol)


# ------------------------------------------------------------------------- errors, options


@pytest.mark.parametrize(
    ("problem", "spec", "match"),
    [
        (ql.make_problem(6), "params=fp8_e4m3", "Monte Carlo only"),
        (ql.make_problem(6), "grads=int8", "Monte Carlo only"),
        (ql.Problem(np.full(4, 1e6), np.ones(4)), "data=fp8_e4m3", "not finite"),
        (ql.make_problem(600), "data=int8", "d ≤ 512"),
        (ql.make_problem(6), "data=int8::scale=0.1:asymmetric", "symmetric"),
        (ql.make_problem(6), "labels=int8", "delayed scaling"),  # the labels' default at B = 1
        (ql.make_problem(6), "data=fp8_e4m3::delayed=4", "delayed scaling"),
        (
            ql.Problem.from_covariance(np.array([[1.0, 0.3], [0.3, 0.5]]), np.ones(2)),
            "data=fp8_e4m3",
            "full covariance",
        ),
    ],
)
def test_what_the_exact_risk_refuses(problem, spec, match):
    with pytest.raises(ValueError, match=match):
        exact_risk(problem, ql.Scheme.parse([spec]), ql.SGDConfig(0.05, 100))


def test_an_unknown_data_quantizer_is_not_assumed_symmetric():
    with pytest.raises(TypeError, match="idealized"):
        exact_risk(ql.make_problem(4), ql.Scheme(data=lambda key, u: u), ql.SGDConfig(0.1, 10))


def test_surrogate_option_keeps_idealized_roles_and_labels_itself():
    problem = ql.make_problem(16)
    sgd = ql.SGDConfig(0.1, 1000)
    ideal = ql.Scheme(data=ql.Additive(0.01))
    a = exact_risk(problem, ideal, sgd, surrogate=True)
    b = exact_risk(problem, ideal, sgd)
    np.testing.assert_array_equal(a.exact_risk, b.exact_risk)
    res = exact_risk(
        problem, ql.Scheme.parse(["data=fp8_e5m2", "params=int8"]), sgd, surrogate=True
    )
    assert res.moments == "surrogate" and np.isnan(res.risk_se["polyak"]).all()
    assert "params=additive" in res.config["surrogate"]


def test_cli_theory_says_when_moments_are_estimated(tmp_path):
    runner = CliRunner()
    args = ["theory", "--dim", "4", "--steps", "100", "-q", "data=int8"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "moment-estimated" in res.output and "exact_risk_se" in res.output
    res = runner.invoke(app, [*args, "--surrogate", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and "surrogates" in res.output


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp6_e2m3:nearest_even", "int4::scale=0.1"])
def test_quantized_data_closed_forms_for_formats(name):
    """``H_q``, ``w_star_q``, ``approx_err`` take elementwise formats (biased ones included: the
    best predictor is ``(c/h) ⊙ w*``), and they are the exact risk's limit as ``N → ∞``."""
    problem = ql.make_problem(12, decay=1.0)
    q = parse_quantizer(name)
    rm = row_moments(q, problem.spectrum)
    np.testing.assert_array_equal(ql.theory.H_q(problem, q), rm.h)
    np.testing.assert_allclose(ql.theory.w_star_q(problem, q), rm.c / rm.h * problem.w_star)
    res = exact_risk(problem, ql.Scheme(data=q), ql.SGDConfig(0.1, 10**12), [10**12])
    np.testing.assert_allclose(res.exact_risk[0], ql.theory.approx_err(problem, q), rtol=1e-6)
    clean = ql.theory.approx_err_clean(problem, q)
    np.testing.assert_allclose(res.exact_risk_clean[0], clean, rtol=1e-6, atol=1e-10)  # + O(1/N)
