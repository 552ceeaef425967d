"""The dense exact risk (full covariance H) against independent routes: index-by-index sums and
Monte Carlo for its fourth-moment operators, the diagonal theory for diagonal (and, with
rotation-invariant quantizers, rotated) H, and a plain NumPy simulation of SGD."""

import itertools
import warnings
from collections import Counter

import jax
import numpy as np
import pytest

import qlinreg as ql
from qlinreg.problem import Problem
from qlinreg.quantize.idealized import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
    error_moments,
)
from qlinreg.quantize.scheme import Scheme, parse_quantizer
from qlinreg.theory.dense import (
    _FAMILY,
    _J,
    _K,
    _L,
    DENSE_MAX_DIM,
    _row_constants,
    dense_exact_risk,
    dense_H_q,
    rotation_invariant,
)
from qlinreg.theory.exact import exact_risk, second_moment_radius
from reference import np_sgd_dense

AVERAGES = ("polyak", "tail", "last")
MU4 = {"gaussian": 3.0, "uniform": 9.0 / 5.0}


def random_covariance(rng, d: int) -> np.ndarray:
    """A well-conditioned dense SPD matrix with strong off-diagonal entries."""
    A = rng.standard_normal((d, d))
    return A @ A.T / d + 0.2 * np.eye(d)


def random_orthogonal(rng, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


# ------------------------------------------------- fourth moments of one quantized feature row
# 𝒦(M) = E[x̃x̃ᵀ(x̃ᵀMx̃)], ℒ(a, b) = E[x̃x̃ᵀ(xᵀa)(x̃ᵀb)], 𝒥(a) = E[x̃x̃ᵀ(xᵀa)²], x ~ N(0, H).

OPERATOR_CASES = [
    (NoQuant(), "none"),
    *[(cls(eps, law), f"{cls.kind}-{law}") for cls, eps in (
        (Additive, 0.4), (Multiplicative, 0.5), (MultiplicativeElementwise, 0.6),
    ) for law in ("gaussian", "uniform")],
]  # fmt: skip


def operators(q, H, M, a, b):
    """``(𝒦(M), ℒ(a, b), 𝒥(a))`` from :mod:`qlinreg.theory.dense`."""
    e = error_moments(q, "data")
    with jax.enable_x64(True):
        c = _row_constants(H, e)
        fam = _FAMILY[e.kind]
        return tuple(np.asarray(x) for x in (_K(fam, c, M), _L(fam, c, a, b), _J(fam, c, a)))


def s_moment(power: int, eps: float, mu4: float) -> float:
    """``E[s^power]`` for ``s = 1 + √ε ζ`` (ζ symmetric, unit variance, ``E ζ⁴ = mu4``)."""
    return {0: 1.0, 1: 1.0, 2: 1 + eps, 3: 1 + 3 * eps, 4: 1 + 6 * eps + mu4 * eps * eps}[power]


def brute_moment(kind: str, eps: float, mu4: float, H, idx, quantized) -> float:
    """``E[Π_f u_f]`` over four factors ``u_f = x_{idx_f}`` or ``x̃_{idx_f}`` (``quantized[f]``),
    written index by index: multiplicative kinds condition on the scales (Isserlis on ``x``
    times the scales' joint moment), additive sums Gaussian pairings of covariance
    ``H_ij + ε δ_ij [both quantized]`` plus the dither's fourth cumulant."""
    i, j, k, m = idx

    def pairings(cov):
        return cov(0, 1) * cov(2, 3) + cov(0, 2) * cov(1, 3) + cov(0, 3) * cov(1, 2)

    if kind == "additive":

        def cov(f, g):
            both = quantized[f] and quantized[g] and idx[f] == idx[g]
            return H[idx[f], idx[g]] + (eps if both else 0.0)

        fourth = (mu4 - 3) * eps * eps if all(quantized) and i == j == k == m else 0.0
        return pairings(cov) + fourth
    x_part = pairings(lambda f, g: H[idx[f], idx[g]])
    if kind == "none":
        return x_part
    if kind == "multiplicative":  # one scale for the row
        return s_moment(sum(quantized), eps, mu4) * x_part
    counts = Counter(t for t, qd in zip(idx, quantized, strict=True) if qd)
    return float(np.prod([s_moment(n, eps, mu4) for n in counts.values()])) * x_part


def brute_operators(q, H, M, a, b):
    e = error_moments(q, "data")
    d, eps, mu4, kind = H.shape[0], e.eps, e.mu4, e.kind
    K, Lm, J = np.zeros((d, d)), np.zeros((d, d)), np.zeros((d, d))
    for i, j, k, n in itertools.product(range(d), repeat=4):
        ijkn = (i, j, k, n)
        K[i, j] += brute_moment(kind, eps, mu4, H, ijkn, (1, 1, 1, 1)) * M[k, n]
        Lm[i, j] += brute_moment(kind, eps, mu4, H, ijkn, (1, 1, 0, 1)) * a[k] * b[n]
        J[i, j] += brute_moment(kind, eps, mu4, H, ijkn, (1, 1, 0, 0)) * a[k] * a[n]
    return K, Lm, J


def sym(rng, d: int) -> np.ndarray:
    A = rng.standard_normal((d, d))
    return A + A.T


@pytest.mark.parametrize(("q", "name"), OPERATOR_CASES, ids=[c[1] for c in OPERATOR_CASES])
def test_operators_match_index_sums(q, name):
    """Every term of 𝒦, ℒ, 𝒥 against the sum over all index tuples (d = 4), to rounding."""
    rng = np.random.default_rng(11)
    d = 4
    H = random_covariance(rng, d)
    M, a, b = sym(rng, d), rng.standard_normal(d), rng.standard_normal(d)
    for got, want in zip(operators(q, H, M, a, b), brute_operators(q, H, M, a, b), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def sample_row(rng, q, H, n: int):
    """``n`` draws of ``(x, x̃)`` with NumPy's generator, the noise law as ``q``'s."""
    e = error_moments(q, "data")
    x = rng.standard_normal((n, H.shape[0])) @ np.linalg.cholesky(H).T
    if e.kind == "none":
        return x, x

    def unit(shape):
        if e.law == "gaussian":
            return rng.standard_normal(shape)
        return rng.uniform(-np.sqrt(3), np.sqrt(3), shape)

    root = np.sqrt(e.eps)
    if e.kind == "additive":
        return x, x + root * unit(x.shape)
    if e.kind == "multiplicative":
        return x, x * (1 + root * unit((n, 1)))
    return x, x * (1 + root * unit(x.shape))


@pytest.mark.parametrize(("q", "name"), OPERATOR_CASES, ids=[c[1] for c in OPERATOR_CASES])
def test_operators_match_monte_carlo(q, name):
    """𝒦, ℒ, 𝒥 entrywise against 10⁶ sampled rows (d = 3) within 5 standard errors
    (27 entries per case: a false alarm has probability ~10⁻⁵)."""
    rng = np.random.default_rng(5 + [c[1] for c in OPERATOR_CASES].index(name))
    d, n = 3, 1_000_000
    H = random_covariance(rng, d)
    M, a, b = sym(rng, d), rng.standard_normal(d), rng.standard_normal(d)
    x, xq = sample_row(rng, q, H, n)
    outer = xq[:, :, None] * xq[:, None, :]
    weights = (np.einsum("ni,ij,nj->n", xq, M, xq), (x @ a) * (xq @ b), (x @ a) ** 2)
    for got, wt in zip(operators(q, H, M, a, b), weights, strict=True):
        samples = (outer * wt[:, None, None]).reshape(n, -1)
        mean, se = samples.mean(0), samples.std(0) / np.sqrt(n)
        assert np.all(np.abs(got.reshape(-1) - mean) < 5 * se), (got.reshape(-1) - mean) / se


# ------------------------------------------------------------ diagonal H: the diagonal theory

D6, N40 = 6, 40
CKPTS = np.array([1, 2, 7, 15, 16, 23, 31, 40])
DATA = {
    "none": NoQuant(),
    "additive": Additive(0.3),
    "additive-uniform": Additive(0.3, "uniform"),
    "multiplicative": Multiplicative(0.3),
    "multiplicative-uniform": Multiplicative(0.3, "uniform"),
    "elementwise": MultiplicativeElementwise(0.4),
    "elementwise-uniform": MultiplicativeElementwise(0.4, "uniform"),
}
OTHERS = (Additive(0.1), Multiplicative(0.15), MultiplicativeElementwise(0.2))
PARAMS = (NoQuant(), Additive(0.05), Multiplicative(0.2), MultiplicativeElementwise(0.2))


def mixed_scheme(data, params, j: int) -> Scheme:
    """Labels, activations, grads cycle through additive / rank-one / elementwise with ``j``."""
    lab, act, out = (OTHERS[(j + i) % 3] for i in range(3))
    return Scheme(data=data, params=params, labels=lab, activations=act, grads=out)


DIAG_CASES = [
    (f"{dn}-{type(p).__name__}-B{B}", mixed_scheme(dq, p, i + j + B), B)
    for i, (dn, dq) in enumerate(DATA.items())
    for j, p in enumerate(PARAMS)
    for B in (1, 3)
]


@pytest.mark.parametrize(("name", "scheme", "batch"), DIAG_CASES, ids=[c[0] for c in DIAG_CASES])
def test_diagonal_matches_exact(name, scheme, batch):
    """Diagonal H given as a dense matrix: equal to the diagonal theory (stepped), both
    conventions, all averages, through a step-size schedule (7 data × 4 params × 2 B)."""
    rng = np.random.default_rng(3)
    lam, ws = rng.uniform(0.1, 1.0, D6), rng.standard_normal(D6)
    sgd = ql.SGDConfig(lr=0.1, steps=N40, batch=batch, schedule=((16, 0.06), (31, 0.03)))
    ref = exact_risk(Problem(spectrum=lam, w_star=ws, noise=0.5), scheme, sgd, CKPTS, method="step")
    risk, clean, _, stable = dense_exact_risk(np.diag(lam), ws, 0.5, scheme, sgd, CKPTS)
    assert stable and ref.stable
    for avg in AVERAGES:
        np.testing.assert_allclose(risk[avg], ref.risk[avg], rtol=1e-9)
        np.testing.assert_allclose(clean[avg], ref.risk_clean[avg], rtol=1e-9)


def test_radius_matches_diagonal_theory():
    """The power-iteration estimate against the exact radius of the diagonal recursion, well
    inside and just beyond the stability limit (it is an estimate: 1e-3); the warning."""
    rng = np.random.default_rng(4)
    lam, ws = np.geomspace(1, 0.1, D6), rng.standard_normal(D6)
    scheme = mixed_scheme(MultiplicativeElementwise(0.4), Multiplicative(0.2), 0)
    problem = Problem(spectrum=lam, w_star=ws, noise=0.5)
    for lr in (0.05, 0.2, 0.3):
        sgd = ql.SGDConfig(lr=lr, steps=5)
        want = second_moment_radius(problem, scheme, sgd)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, _, radius, stable = dense_exact_risk(np.diag(lam), ws, 0.5, scheme, sgd, [5])
        assert abs(radius - want) < 1e-3 * want
        assert stable == (want < 1)
        assert any("unstable" in str(w.message) for w in caught) == (want >= 1)


# ------------------------------------------------- rotated H: invariance and its failure

ROT_CKPTS = np.array([3, 10, 25, 40])


def rotated(seed: int):
    rng = np.random.default_rng(seed)
    lam, ws = rng.uniform(0.2, 2.0, D6), rng.standard_normal(D6)
    Q = random_orthogonal(rng, D6)
    return lam, ws, Q, (Q * lam) @ Q.T, Q @ ws


INVARIANT = [
    Scheme(),
    Scheme(data=Additive(0.3), params=Multiplicative(0.2), labels=MultiplicativeElementwise(0.2)),
    Scheme(
        data=Multiplicative(0.3, "uniform"),
        params=Additive(0.05),
        activations=MultiplicativeElementwise(0.2),
        grads=Multiplicative(0.1),
    ),
    mixed_scheme(Multiplicative(0.2), Multiplicative(0.1), 1),
]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k", range(len(INVARIANT)))
def test_rotation_invariant_schemes(k, batch):
    """H = Q diag(λ) Qᵀ, w* → Qw*: with data and params none / additive / rank-one (the batch
    roles may be anything) the risk is the diagonal theory's for (λ, w*)."""
    lam, ws, _, H, ws_rot = rotated(7)
    sgd = ql.SGDConfig(lr=0.1, steps=N40, batch=batch)
    ref = exact_risk(Problem(lam, ws, 0.5), INVARIANT[k], sgd, ROT_CKPTS, method="step")
    risk, clean, _, _ = dense_exact_risk(H, ws_rot, 0.5, INVARIANT[k], sgd, ROT_CKPTS)
    for avg in AVERAGES:
        np.testing.assert_allclose(risk[avg], ref.risk[avg], rtol=1e-9)
        np.testing.assert_allclose(clean[avg], ref.risk_clean[avg], rtol=1e-9)


@pytest.mark.parametrize(
    "scheme",
    [Scheme(data=MultiplicativeElementwise(0.5)), Scheme(params=MultiplicativeElementwise(1.0))],
    ids=["data", "params"],
)
def test_elementwise_is_not_rotation_invariant(scheme):
    """Elementwise data (or params) in rotated coordinates: > 1 % away from the eigenbasis."""
    lam, ws, _, H, ws_rot = rotated(7)
    sgd = ql.SGDConfig(lr=0.1, steps=N40)
    ref = exact_risk(Problem(lam, ws, 0.5), scheme, sgd, ROT_CKPTS, method="step")
    risk, clean, _, _ = dense_exact_risk(H, ws_rot, 0.5, scheme, sgd, ROT_CKPTS)
    for avg in AVERAGES:
        assert np.max(np.abs(risk[avg] / ref.risk[avg] - 1)) > 0.01
        assert np.max(np.abs(clean[avg] / ref.risk_clean[avg] - 1)) > 0.01


# --------------------------------------------------------------------- against Monte Carlo

MC_CASES = [
    ("polyak-B1", 1, "polyak", {}),
    ("last-B3", 3, "last", {"labels": ("multiplicative", 0.2), "grads": ("multiplicative", 0.2)}),
    ("tail-B2", 2, "tail", {"activations": ("additive", 0.1), "labels": ("additive", 0.1)}),
    (
        "polyak-B3",
        3,
        "polyak",
        {
            "labels": ("multiplicative_elementwise", 0.2),
            "activations": ("multiplicative", 0.2),
            "grads": ("multiplicative_elementwise", 0.3),
        },
    ),
]
MC_TRIALS = 20_000

SCHEME_OF = {
    "additive": Additive,
    "multiplicative": Multiplicative,
    "multiplicative_elementwise": MultiplicativeElementwise,
}


@pytest.mark.parametrize(
    ("name", "batch", "average", "extra"), MC_CASES, ids=[c[0] for c in MC_CASES]
)
def test_dense_matches_monte_carlo(name, batch, average, extra):
    """Rotated H (d = 5), elementwise data (ε = 0.3) and params (ε = 0.2), other roles as
    given; 20 000 NumPy trials (SE ≈ 0.2–0.5 % of the risk), N = 50: the exact risk is within
    4 SE at each checkpoint, both conventions (8 comparisons per case). The eigenbasis theory,
    wrong here, misses by 5–400 SE at the later checkpoints."""
    rng = np.random.default_rng(21)
    d = 5
    H = random_covariance(rng, d)
    ws = rng.standard_normal(d)
    quant = {
        "data": ("multiplicative_elementwise", 0.3),
        "params": ("multiplicative_elementwise", 0.2),
        **extra,
    }
    scheme = Scheme(**{r: SCHEME_OF[k](e) for r, (k, e) in quant.items()})
    ck = np.array([5, 15, 30, 50])
    lr, noise = 0.04, 0.3
    seed = 100 + [c[0] for c in MC_CASES].index(name)
    mc_clean, mc_quant = np_sgd_dense(
        np.linalg.cholesky(H), ws, noise, lr, 50, batch, MC_TRIALS, quant, ck, seed, average
    )
    sgd = ql.SGDConfig(lr=lr, steps=50, batch=batch, average=average)
    risk, clean, _, stable = dense_exact_risk(H, ws, noise, scheme, sgd, ck)
    assert stable
    for exact, mc in ((risk[average], mc_quant), (clean[average], mc_clean)):
        se = mc.std(axis=1) / np.sqrt(mc.shape[1])
        np.testing.assert_array_less(np.abs(exact - mc.mean(axis=1)), 4 * se)


def test_reference_rows_mode_one_step():
    """The reference's resampling mode: one step from w_0 = 0 at B = 1 has the exact risk
    E R(γ y_i x_i) averaged over the rows (4 SE)."""
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((7, 3)), rng.standard_normal(7)
    Sigma = X.T @ X / 7
    ws = np.linalg.lstsq(X, y, rcond=None)[0]
    lr = 0.3
    w1 = lr * y[:, None] * X
    want = np.mean([0.5 * (w - ws) @ Sigma @ (w - ws) for w in w1])
    clean, quant = np_sgd_dense(None, ws, 0.0, lr, 1, 1, 4000, {}, [1], 2, "last", rows=(X, y))
    assert abs(clean.mean() - want) < 4 * clean.std() / np.sqrt(4000)
    np.testing.assert_array_equal(clean, quant)


# ------------------------------------------------------------------------ helpers and errors


def test_dense_H_q_and_rotation_invariance():
    rng = np.random.default_rng(1)
    H = random_covariance(rng, 4)
    h = np.diag(np.diag(H))
    np.testing.assert_allclose(dense_H_q(H, NoQuant()), H)
    np.testing.assert_allclose(dense_H_q(H, Additive(0.3)), H + 0.3 * np.eye(4))
    np.testing.assert_allclose(dense_H_q(H, Multiplicative(0.3)), 1.3 * H)
    np.testing.assert_allclose(dense_H_q(H, MultiplicativeElementwise(0.3)), H + 0.3 * h)
    assert rotation_invariant(NoQuant()) and rotation_invariant(Additive(0.1))
    assert rotation_invariant(Multiplicative(0.1, "uniform"))
    assert not rotation_invariant(MultiplicativeElementwise(0.1))


def test_input_errors():
    sgd = ql.SGDConfig(lr=0.1, steps=3)
    ws = np.zeros(DENSE_MAX_DIM + 1)
    with pytest.raises(ValueError, match="DENSE_MAX_DIM = 512"):
        dense_exact_risk(np.eye(DENSE_MAX_DIM + 1), ws, 0.1, None, sgd)
    with pytest.raises(ValueError, match="symmetric"):
        dense_exact_risk(np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), 0.1, None, sgd)
    with pytest.raises(ValueError, match="length"):
        dense_exact_risk(np.eye(2), np.zeros(3), 0.1, None, sgd)
    fmt = parse_quantizer("bf16")
    with pytest.raises(TypeError, match="idealized quantizer .* on params"):
        dense_exact_risk(np.eye(2), np.zeros(2), 0.1, Scheme(params=fmt), sgd)
    stored = ql.SGDConfig(lr=0.1, steps=3, storage=fmt)
    with pytest.raises(TypeError, match="weight storage"):
        dense_exact_risk(np.eye(2), np.zeros(2), 0.1, None, stored)
