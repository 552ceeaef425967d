"""The exact expected risk against Monte Carlo and against independent closed forms."""

import dataclasses

import numpy as np
import pytest

import qlinreg as ql
from qlinreg import Additive, Multiplicative, MultiplicativeElementwise, NoQuant, Scheme
from qlinreg.algorithm import AVERAGES
from qlinreg.quantize import ROLES
from qlinreg.theory import (
    H_q,
    approx_err,
    approx_err_clean,
    exact_risk,
    second_moment_radius,
    w_star_q,
)
from qlinreg.theory.exact import _recursion

KINDS = (Additive, Multiplicative, MultiplicativeElementwise)


# --------------------------------------------------------------------------- Monte Carlo

D, N, TRIALS, LR = 6, 100, 12_000, 0.1
CKPTS = np.array([5, 25, 100])
PROBLEM = ql.make_problem(D, decay=1.0, noise=0.5)


def latin(j: int, eps: float, noise: str = "gaussian") -> Scheme:
    """Kind ``(j + i) mod 3`` on role ``i``: the three squares put every kind on every role."""
    return Scheme(**{r: KINDS[(j + i) % 3](eps, noise) for i, r in enumerate(ROLES)})


# (id, scheme, batch, average): every kind on every role at B = 1 and B = 4, both noise laws,
# all three iterate choices, and each data kind alone with a large ε and uniform noise (where
# the noise law's 4th moment moves the risk by 10–30 %). One compile per case, so few cases.
MC_CASES = [
    *[(f"latin{j}-B1", latin(j, 0.2), 1, "polyak") for j in range(3)],
    ("latin0-B4-uniform-last", latin(0, 0.2, "uniform"), 4, "last"),
    ("latin1-B4-uniform-tail", latin(1, 0.2, "uniform"), 4, "tail"),
    ("latin2-B4-uniform", latin(2, 0.2, "uniform"), 4, "polyak"),
    ("data-additive-uniform", Scheme(data=Additive(1.0, "uniform")), 1, "polyak"),
    ("data-multiplicative-uniform", Scheme(data=Multiplicative(0.5, "uniform")), 1, "polyak"),
    ("data-elementwise-uniform", Scheme(data=MultiplicativeElementwise(1.0, "uniform")), 1, "last"),
]


@pytest.mark.parametrize(
    ("name", "scheme", "batch", "average"), MC_CASES, ids=[c[0] for c in MC_CASES]
)
def test_exact_matches_monte_carlo(name, scheme, batch, average):
    """Compared: the excess over the deterministic ApproxErr (the part SGD controls), at 3
    checkpoints, both conventions: 9 cases × 3 × 2 = 54 comparisons. Tolerance 3 SE + 1 %
    of the value; with SE ≈ 0.3–2 % of the value that is ≥ 3.5 SE, so the chance of a false
    alarm is ≈ 54 × 4.7e-4 ≈ 2.5 % at worst (seeds are fixed: the outcome is deterministic)."""
    sgd = ql.SGDConfig(lr=LR, steps=N, batch=batch, average=average)
    seed = 1 + [c[0] for c in MC_CASES].index(name)  # distinct seeds: independent MC errors
    mc = ql.simulate(PROBLEM, scheme, sgd, trials=TRIALS, seed=seed, checkpoints=CKPTS).summary()
    ex = exact_risk(PROBLEM, scheme, sgd, CKPTS)
    assert ex.stable
    for risk, mean, se, ae in (
        (ex.exact_risk, mc["risk_mean"], mc["risk_se"], approx_err(PROBLEM, scheme.data)),
        (
            ex.exact_risk_clean,
            mc["risk_clean_mean"],
            mc["risk_clean_se"],
            approx_err_clean(PROBLEM, scheme.data),
        ),
    ):
        np.testing.assert_array_less(np.abs(risk - mean), 3 * se + 0.01 * (risk - ae))


# ------------------------------------------------------------------------ one step, exactly
# One step from a fixed w_0 needs no recursion: E[(w_1 − w*^(q))²] by brute-force sampling of
# a single batch is cheap to pin down to ~0.3 %, which tests every term of the second-moment
# map (second-order cross terms included) and the claim that only diag E[v vᵀ] matters.


def np_quantize(rng, q, u):
    """Idealized quantizer of SPEC §3 in NumPy, either noise law; the last axis is the vector."""
    if isinstance(q, NoQuant) or q.eps == 0:
        return u

    def noise(shape):
        if q.noise == "gaussian":
            return rng.standard_normal(shape)
        return rng.uniform(-np.sqrt(3), np.sqrt(3), shape)

    s = np.sqrt(q.eps)
    if isinstance(q, Additive):
        return u + s * noise(u.shape)
    if isinstance(q, Multiplicative):
        return u * (1 + s * noise(u.shape[:-1] + (1,)))
    return u * (1 + s * noise(u.shape))


def one_step_moments(problem, scheme, lr, batch, w0, samples, rng):
    """Mean and SE of ``(w_1 − w*^(q))²`` over ``samples`` independent first steps."""
    d = problem.d
    X = np.sqrt(problem.spectrum) * rng.standard_normal((samples, batch, d))
    y = X @ problem.w_star + np.sqrt(problem.noise) * rng.standard_normal((samples, batch))
    Xq = np_quantize(rng, scheme.data, X)
    wq = np_quantize(rng, scheme.params, np.broadcast_to(w0, (samples, d)))
    a = np_quantize(rng, scheme.activations, np.einsum("nbd,nd->nb", Xq, wq))
    g = np_quantize(rng, scheme.grads, np_quantize(rng, scheme.labels, y) - a)
    w1 = w0 + lr / batch * np.einsum("nb,nbd->nd", g, Xq)
    v2 = (w1 - w_star_q(problem, scheme.data)) ** 2
    return v2.mean(0), v2.std(0, ddof=1) / np.sqrt(samples)


def one_step_schemes(count, seed=0):
    """Targeted schemes (large second-order terms: data 4th moments, ``ε_a·ε_p``, ``ε_d·ε_l``)
    then fixed pseudo-random ones: each role none/additive/rank-one/elementwise, either law."""
    out = [
        (Scheme(data=Additive(0.8, "uniform")), 3),
        (Scheme(data=Multiplicative(0.5, "uniform"), labels=Multiplicative(0.8)), 1),
        (Scheme(data=MultiplicativeElementwise(0.8), labels=Additive(0.8)), 1),
        (
            Scheme(
                params=Additive(0.8), activations=Multiplicative(0.8), grads=Multiplicative(0.5)
            ),
            3,
        ),
    ]
    rng = np.random.default_rng(seed)
    kinds = (None, *KINDS)
    for _ in range(count):
        roles = {}
        for r in ROLES:
            kind = kinds[rng.integers(4)]
            law = ("gaussian", "uniform")[rng.integers(2)]
            if kind is not None:
                roles[r] = kind(float(rng.uniform(0.2, 0.8)), law)
        out.append((Scheme(**roles), int(rng.choice([1, 3]))))
    return out


def test_one_step_second_moment_matches_sampling():
    """Each of 16 schemes from two starts (at ``w*^(q)``, where only the noise constant ``c``
    acts, and away from it): 128 comparisons at 4 SE + 0.2 %, false-alarm chance < 1 %."""
    problem = ql.Problem([1.0, 0.6, 0.3, 0.1], [1.0, -0.5, 2.0, 1.5], noise=0.3)
    rng = np.random.default_rng(7)
    for scheme, batch in one_step_schemes(12):
        u = w_star_q(problem, scheme.data)
        for w0 in (u, np.array([0.5, 1.0, -1.0, 0.0])):
            sgd = ql.SGDConfig(lr=0.3, steps=1, batch=batch, w0=w0)
            rec, _ = _recursion(problem, scheme, sgd)
            m0, p0 = rec.m0, rec.m0**2
            p1 = rec.alpha * p0 + rec.k @ (rec.h.T @ p0) + rec.nu * m0 + rec.omega @ (rec.g.T @ m0)
            p1 = p1 + rec.c
            mean, se = one_step_moments(problem, scheme, 0.3, batch, w0, 100_000, rng)
            assert np.all(np.abs(p1 - mean) <= 4 * se + 2e-3 * p1), scheme.labels_by_role()


# ------------------------------------------------------------------ independent closed forms


def matrix_recursion(lam, w_star, noise, lr, batch, w0, steps):
    """Risk of unquantized SGD from the full-matrix second moment (no diagonal shortcut).

    ``P' = P − γ(HP + PH) + (γ²/B)(2HPH + tr(HP)H + σ²H) + γ²(B−1)/B·HPH`` (Gaussian fourth
    moments), ``E[v_t v_sᵀ] = (I − γH)^{t−s} P_s``; averages summed pair by pair.
    Returns ``{average: risks at n = 1 … steps}``.
    """
    H, d = np.diag(lam), len(lam)
    A = np.eye(d) - lr * H
    v0 = w0 - w_star
    P = [np.outer(v0, v0)]
    for _ in range(steps):
        Q = P[-1]
        HQH = H @ Q @ H
        P.append(
            Q
            - lr * (H @ Q + Q @ H)
            + lr**2 / batch * (2 * HQH + np.trace(H @ Q) * H + noise * H)
            + lr**2 * (batch - 1) / batch * HQH
        )
    pw = [np.linalg.matrix_power(A, k) for k in range(steps + 1)]

    def window(lo, hi):
        pairs = [(s, t) for s in range(lo, hi) for t in range(lo, hi)]
        C = sum(pw[t - s] @ P[s] if t >= s else P[t] @ pw[s - t].T for s, t in pairs)
        return 0.5 * np.trace(H @ C) / (hi - lo) ** 2

    return {
        "polyak": np.array([window(0, n) for n in range(1, steps + 1)]),
        "tail": np.array([window(n // 2, n) for n in range(1, steps + 1)]),
        "last": np.array([0.5 * np.trace(H @ P[n]) for n in range(1, steps + 1)]),
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_full_precision_equals_matrix_recursion(batch):
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.1, 1.0, 4)  # unsorted on purpose
    problem = ql.Problem(lam, rng.standard_normal(4), noise=0.3)
    w0 = rng.standard_normal(4)
    sgd = ql.SGDConfig(lr=0.3, steps=12, batch=batch, w0=w0)
    ex = exact_risk(problem, None, sgd, np.arange(1, 13))
    ref = matrix_recursion(lam, problem.w_star, 0.3, 0.3, batch, w0, 12)
    for avg in AVERAGES:
        np.testing.assert_allclose(ex.risk[avg], ref[avg], rtol=1e-12)
        np.testing.assert_allclose(ex.risk_clean[avg], ref[avg], rtol=1e-12)


def test_additive_gaussian_reduces_to_full_precision_model():
    """Additive Gaussian noise on data, labels, activations and output gradients: ``(Q_d(x), y)``
    is jointly Gaussian, so SGD is unquantized SGD on ``(H^(q), w*^(q))`` with label noise
    ``σ² + 2·ApproxErr + ε_l + ε_a + ε_o``; the quantized-input risk adds ApproxErr."""
    problem = ql.make_problem(5, decay=1.5, noise=0.4)
    eps = {"data": 0.2, "labels": 0.1, "activations": 0.05, "grads": 0.15}
    scheme = Scheme(**{r: Additive(e) for r, e in eps.items()})
    lam_q, ws_q = H_q(problem, scheme.data), w_star_q(problem, scheme.data)
    ae = approx_err(problem, scheme.data)
    noise = 0.4 + 2 * ae + eps["labels"] + eps["activations"] + eps["grads"]
    for batch in (1, 2):
        sgd = ql.SGDConfig(lr=0.2, steps=10, batch=batch)
        ex = exact_risk(problem, scheme, sgd, np.arange(1, 11))
        ref = matrix_recursion(lam_q, ws_q, noise, 0.2, batch, np.zeros(5), 10)
        for avg in AVERAGES:
            np.testing.assert_allclose(ex.risk[avg], ref[avg] + ae, rtol=1e-12)


@pytest.mark.parametrize(
    "scheme",
    [Scheme(), Scheme(grads=Multiplicative(0.3)), Scheme(grads=MultiplicativeElementwise(0.3))],
    ids=["full", "grads-multiplicative", "grads-elementwise"],
)
@pytest.mark.parametrize("batch", [1, 4])
def test_noiseless_start_at_optimum_stays_exactly_zero(scheme, batch):
    """σ = 0 and ``w_0 = w*``: the residual is 0, and so is every multiplicative gradient error."""
    problem = ql.make_problem(7, noise=0.0)
    sgd = ql.SGDConfig(lr=0.2, steps=500, batch=batch, w0=problem.w_star)
    ex = exact_risk(problem, scheme, sgd)
    for avg in AVERAGES:
        assert np.all(ex.risk[avg] == 0) and np.all(ex.risk_clean[avg] == 0)


def gd_risks(problem, scheme, lr, steps):
    """GD on the quantized population risk: ``v_t = (I − γH^(q))^t (w_0 − w*^(q))``, ``w_0 = 0``."""
    lam_q, ws_q = H_q(problem, scheme.data), w_star_q(problem, scheme.data)
    v = (1 - lr * lam_q)[None, :] ** np.arange(steps + 1)[:, None] * -ws_q  # w_0 = 0
    out = {}
    for avg, it in (
        ("polyak", v[:steps].mean(0)),
        ("tail", v[steps // 2 : steps].mean(0)),
        ("last", v[steps]),
    ):
        w = it + ws_q
        out[avg] = (
            0.5 * lam_q @ it**2 + approx_err(problem, scheme.data),
            problem.excess_risk(w),
        )
    return out


def test_large_batch_approaches_gradient_descent():
    """Errors independent across the batch average out as ``B → ∞``; rank-one multiplicative
    errors on batch vectors (here activations) do not (SPEC §4, Theorem 4.2)."""
    problem = ql.make_problem(8, noise=1.0)
    averaging = Scheme(
        data=Additive(0.05),
        labels=Additive(0.1),
        activations=MultiplicativeElementwise(0.1),
        grads=Additive(0.1),
    )
    steps = 300
    gd = gd_risks(problem, averaging, 0.3, steps)
    for avg in AVERAGES:
        sgd = ql.SGDConfig(lr=0.3, steps=steps, batch=10**9, average=avg)
        ex = exact_risk(problem, averaging, sgd, [steps])
        np.testing.assert_allclose(ex.exact_risk[0], gd[avg][0], rtol=1e-6)
        np.testing.assert_allclose(ex.exact_risk_clean[0], gd[avg][1], rtol=1e-6)
    shared = dataclasses.replace(averaging, activations=Multiplicative(0.1))
    gap = [
        exact_risk(problem, shared, ql.SGDConfig(lr=0.3, steps=steps, batch=b), [steps]).exact_risk[
            0
        ]
        - gd["polyak"][0]
        for b in (10**6, 10**9)
    ]
    assert gap[1] > 1e-3 * gd["polyak"][0]
    np.testing.assert_allclose(gap[1], gap[0], rtol=1e-3)  # does not shrink with B


# ---------------------------------------------------------------------------- behaviour


def test_zero_eps_equals_full_precision():
    problem = ql.make_problem(10)
    sgd = ql.SGDConfig(lr=0.2, steps=1000, batch=3)
    ref = exact_risk(problem, Scheme(), sgd)
    for kind in KINDS:
        ex = exact_risk(problem, Scheme.all(kind(0.0)), sgd)
        for avg in AVERAGES:
            np.testing.assert_allclose(ex.risk[avg], ref.risk[avg], rtol=1e-14)


def test_noise_law_enters_only_through_the_data_fourth_moment():
    problem = ql.make_problem(10, noise=0.5)
    sgd = ql.SGDConfig(lr=0.1, steps=2000, batch=2)
    for kind in KINDS:
        gauss = exact_risk(problem, Scheme.all(kind(0.3)), sgd).exact_risk
        others = dataclasses.replace(Scheme.all(kind(0.3, "uniform")), data=kind(0.3, "gaussian"))
        np.testing.assert_allclose(exact_risk(problem, others, sgd).exact_risk, gauss, rtol=1e-13)
        uniform = exact_risk(problem, Scheme.all(kind(0.3, "uniform")), sgd).exact_risk
        assert np.all(uniform[-5:] < gauss[-5:])  # lighter tails, smaller feature kurtosis


def test_radius_matches_eigenvalues_and_flags_instability():
    problem = ql.make_problem(12, decay=1.0)
    for lr, scheme in ((0.1, latin(0, 0.2)), (0.3, latin(1, 0.3)), (1.5, Scheme())):
        sgd = ql.SGDConfig(lr=lr, steps=10, batch=2)
        rec, _ = _recursion(problem, scheme, sgd)
        M = np.diag(rec.alpha) + rec.k @ rec.h.T
        expected = max(np.abs(np.linalg.eigvals(M)).max(), np.abs(rec.a).max())
        np.testing.assert_allclose(second_moment_radius(problem, scheme, sgd), expected, rtol=1e-9)
    with pytest.warns(RuntimeWarning, match="unstable"):
        ex = exact_risk(problem, Scheme(), ql.SGDConfig(lr=1.5, steps=200))
    assert not ex.stable and ex.exact_risk[-1] > 1e6


def test_frame_and_validation():
    problem = ql.make_problem(5)
    sgd = ql.SGDConfig(lr=0.1, steps=50, average="tail")
    ex = exact_risk(problem, Scheme(data=Additive(0.1)), sgd, [10, 50])
    df = ex.to_frame()
    assert list(df["step"]) == [10, 50]
    np.testing.assert_array_equal(df["exact_risk"], df["exact_risk_tail"])
    for col in ("exact_risk_clean", "exact_risk_last", "exact_risk_clean_polyak", "quant_data"):
        assert col in df
    with pytest.raises(TypeError, match="idealized"):
        exact_risk(problem, Scheme(params=lambda key, u: u), sgd)
    with pytest.raises(TypeError, match="SGDConfig"):
        exact_risk(problem, None, {"lr": 0.1})
    with pytest.raises(ValueError, match="checkpoints"):
        exact_risk(problem, None, sgd, [0, 60])
