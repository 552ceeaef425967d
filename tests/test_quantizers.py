"""Idealized quantizers (SPEC §3): unbiased, with the stated conditional covariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qlinreg import prng
from qlinreg.quantize import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
    Scheme,
    parse_quantizer,
)

U = np.array([1.5, -0.5, 0.25, 2.0])
M = 200_000  # samples of Q(u) for each quantizer


def _errors(q, u=U, m=M):
    keys = prng.derive(prng.key(123), jnp.arange(m, dtype=jnp.uint32))
    out = jax.jit(jax.vmap(q, in_axes=(0, None)))(keys, jnp.asarray(u, jnp.float64))
    return np.asarray(out, dtype=np.float64) - u


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


CASES = [
    (Additive(0.04), lambda e: e * np.eye(4)),
    (Additive(0.04, "uniform"), lambda e: e * np.eye(4)),
    (Multiplicative(0.04), lambda e: e * np.outer(U, U)),
    (Multiplicative(0.04, "uniform"), lambda e: e * np.outer(U, U)),
    (MultiplicativeElementwise(0.04), lambda e: e * np.diag(U**2)),
    (MultiplicativeElementwise(0.04, "uniform"), lambda e: e * np.diag(U**2)),
]


@pytest.mark.parametrize(("q", "cov"), CASES, ids=lambda c: getattr(c, "label", ""))
def test_mean_and_covariance(q, cov):
    e = _errors(q)
    # Mean: each coordinate within 4.5 SE of 0 (SE from the sample itself).
    se_mean = e.std(axis=0, ddof=1) / np.sqrt(M)
    assert np.all(np.abs(e.mean(axis=0)) <= 4.5 * se_mean + 1e-15)
    # Covariance: each of the 16 entries E[e_i e_j] within 4.5 SE of the stated value, SE from
    # the sample's products (valid for Gaussian and uniform noise alike).
    prod = e[:, :, None] * e[:, None, :]
    emp = prod.mean(axis=0)
    se = prod.std(axis=0, ddof=1) / np.sqrt(M)
    expected = cov(q.eps)
    assert np.all(np.abs(emp - expected) <= 4.5 * se + 1e-12), (emp, expected)


def test_multiplicative_shares_one_scale_per_row():
    X = jnp.asarray(np.arange(1.0, 13.0).reshape(3, 4))
    Xq = np.asarray(Multiplicative(0.1)(prng.key(1), X))
    ratio = Xq / np.asarray(X)
    assert np.allclose(ratio, ratio[:, :1])  # one scale per row (the paper's vector)
    assert len(np.unique(np.round(ratio[:, 0], 12))) == 3  # independent across rows
    elem = np.asarray(MultiplicativeElementwise(0.1)(prng.key(1), X)) / np.asarray(X)
    assert len(np.unique(np.round(elem, 12))) == 12


@pytest.mark.parametrize(
    "q",
    [Additive(0.0), Additive(0.0, "uniform"), Multiplicative(0.0), MultiplicativeElementwise(0.0)],
)
def test_zero_eps_is_identity_bit_for_bit(q):
    u = jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)), jnp.float32)
    out = jax.jit(q)(prng.key(9), u)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(u))
    assert np.asarray(NoQuant()(prng.key(9), u)) is not None


def test_eps_is_traced_not_static():
    traces = []

    def f(q, u):
        traces.append(1)
        return q(prng.key(0), u)

    g = jax.jit(f)
    for eps in (0.1, 0.2, 0.3):
        g(Additive(eps), jnp.ones(3))
    assert len(traces) == 1


def test_parse_and_scheme():
    assert parse_quantizer("additive:0.01") == Additive(0.01)
    assert parse_quantizer("multiplicative:1e-3:uniform") == Multiplicative(1e-3, "uniform")
    assert parse_quantizer("none") == NoQuant()
    s = Scheme.parse(["all=additive:0.01", "params=multiplicative_elementwise:0.02"])
    assert s.data == Additive(0.01) and s.grads == Additive(0.01)
    assert s.params == MultiplicativeElementwise(0.02)
    assert Scheme.all(Multiplicative(0.1)).labels_by_role()["activations"] == "multiplicative:0.1"
