"""Threefry-2x32-20 against Random123's known answers and JAX; the normal transform's moments."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from qlinreg import prng

# Random123 kat_vectors, threefry2x32 with 20 rounds: (key, counter) -> output.
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_threefry_known_answers():
    for (k0, k1), (x0, x1), expected in KAT:
        out = prng.threefry2x32(k0, k1, x0, x1)
        assert tuple(int(v) for v in out) == expected


def test_threefry_matches_jax_on_random_inputs():
    rng = np.random.default_rng(3)
    for _ in range(5):
        k = rng.integers(0, 2**32, 2, dtype=np.uint32)
        x = rng.integers(0, 2**32, 64, dtype=np.uint32)
        ours = prng.threefry2x32(k[0], k[1], x[:32], x[32:])
        theirs = threefry_2x32(jnp.asarray(k), jnp.asarray(x))
        np.testing.assert_array_equal(np.concatenate([np.asarray(o) for o in ours]), theirs)


def test_draws_depend_only_on_key():
    keys = prng.derive(prng.key(7), jnp.arange(5, dtype=jnp.uint32))
    batched = np.asarray(prng.normal(keys, (3, 4)))
    for i in range(5):
        np.testing.assert_array_equal(batched[i], prng.normal(keys[i], (3, 4)))
    assert len(np.unique(batched)) == batched.size


def test_normal_moments_within_standard_error():
    # 2^20 draws: SE of the mean is 1e-3, of the variance sqrt(2)·1e-3, of E z^4 sqrt(96)·1e-3.
    n = 1 << 20
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            z = np.asarray(prng.normal(prng.key(11), (n,), dtype), dtype=np.float64)
            assert prng.normal(prng.key(1), (2,), dtype).dtype == dtype
        assert np.all(np.isfinite(z))
        assert abs(z.mean()) < 4 * 1e-3
        assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
        assert abs(np.mean(z**4) - 3) < 4 * np.sqrt(96 / n)


def test_uniform_symmetric_is_symmetric_grid():
    u = np.asarray(prng.uniform_symmetric(prng.key(5), (1 << 18,)), dtype=np.float64)
    assert u.min() > -1 and u.max() < 1
    n = u.size
    assert abs(u.mean()) < 4 * np.sqrt(1 / 3 / n)
    # Var(u²) = E u^4 − 1/9 = 1/5 − 1/9.
    assert abs(np.mean(u**2) - 1 / 3) < 4 * np.sqrt((1 / 5 - 1 / 9) / n)
