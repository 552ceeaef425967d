"""Rounding in long runs: the engine's path against a float64 replay of its own random numbers.

``simulate(dtype="float32")`` and ``simulate(dtype="float64")`` on one seed do not follow one
path: a float64 normal takes two 32-bit words per value and a float32 normal one
(``prng._symmetric_unit``), so only the first value of each draw is shared and the two runs
differ by sampling, not rounding. To isolate rounding, each dtype's run is compared with a
float64 NumPy replay of the normals that run draws (keys as in ``docs/engine.md``). The replay
is a literal SGD loop, so the float64 case is also a path-by-path check of the update.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qlinreg as ql
from qlinreg import prng
from qlinreg.sgd import _FEATURES, _LABEL_NOISE, _TRIAL_TAG

D, N, TRIALS, LR = 8, 50_000, 16, 0.1
PROBLEM = ql.make_problem(D, decay=1.0, noise=0.5)
CKPTS = np.array([10, 100, 1_000, 10_000, 50_000])


def _replay(dtype: str, seed: int) -> np.ndarray:
    """Clean risk of the Polyak average at ``CKPTS`` ``(K, TRIALS)``: full-precision SGD in
    float64 on the normals the engine draws in ``dtype`` (trial ``k``: ``derive(key(seed), k,
    TAG)``; step ``t``: ``derive(trial key, t, stream)``), written from SPEC §2."""
    with jax.enable_x64(dtype == "float64"):
        trial = prng.derive(prng.key(seed), jnp.arange(TRIALS, dtype=jnp.uint32), _TRIAL_TAG)
        t = jnp.arange(1, N + 1, dtype=jnp.uint32)
        step = lambda s: prng.derive(trial[:, None], t[None, :], s)  # noqa: E731
        z = np.asarray(prng.normal(step(_FEATURES), (D,), dtype), np.float64)
        xi = np.asarray(prng.normal(step(_LABEL_NOISE), (1,), dtype), np.float64)[..., 0]
    lam, w_star = PROBLEM.spectrum, PROBLEM.w_star
    X = np.sqrt(lam) * z  # (trials, N, d)
    y = X @ w_star + np.sqrt(PROBLEM.noise) * xi
    w, S, out = np.zeros((TRIALS, D)), np.zeros((TRIALS, D)), []
    for n in range(1, N + 1):
        x = X[:, n - 1]
        S += w  # Σ_{t<n} w_t
        w = w + LR * (y[:, n - 1] - np.sum(x * w, axis=1))[:, None] * x
        if n in CKPTS:
            out.append(PROBLEM.excess_risk(S / n))
    return np.array(out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_run_matches_float64_replay_of_its_draws(dtype):
    res = ql.simulate(
        PROBLEM,
        None,
        ql.SGDConfig(lr=LR, steps=N),
        trials=TRIALS,
        seed=3,
        checkpoints=CKPTS,
        dtype=dtype,
    )
    ref = _replay(dtype, seed=3)
    # Compare distances ‖w̄_n − w*‖_H = √(2·risk): |‖a‖ − ‖b‖| ≤ ‖a − b‖_H, so τ_n bounds the
    # rounding error of w̄_n itself; u = unit roundoff of `dtype` (2^-24 float32, 2^-53 float64).
    # (1) Running sum S_n = Σ w_t: each add rounds by ≤ u·|S_t| ≈ u·t·|w*_i|. The iterate's
    #     noise (≈ √(γσ²/2) ≈ 0.16) dwarfs ulp(S), so the errors are unbiased, nearly
    #     independent, variance ≤ (u·t·w*_i)²/3: std of the error of S_n/n ≤ u·√n/3·|w*_i|.
    #     6 such SDs: 2u·√n·‖w*‖_H. (Were they systematic: u·n/2·‖w*‖_H, 2.5e-3 at n = 5·10⁴,
    #     50× this tolerance and a quarter of the distance itself, 1e-2.)
    # (2) Each update rounds w_t, x, y and the residual (relative u); SGD damps an error in
    #     coordinate i at rate γλ_i per step, so the iterates' error settles at
    #     ~u·‖w*‖_H/√(γλ_d), passed on to w̄_n; allow twice that (measured: < 0.1 of it).
    u = np.finfo(dtype).eps / 2
    norm_w = np.sqrt(np.sum(PROBLEM.spectrum * PROBLEM.w_star**2))
    tau = u * norm_w * (2 * np.sqrt(CKPTS) + 2 / np.sqrt(LR * PROBLEM.spectrum[-1]))
    gap = np.abs(np.sqrt(2 * res.risk_clean) - np.sqrt(2 * ref))
    assert np.all(gap <= tau[:, None])
