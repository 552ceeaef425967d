"""Engine speed on the paper's setting vs a plain NumPy loop of the same update.

Setting: d = 200, λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, 100 trials, N = 10^4, float32.
Cases: full precision, all-additive ε = 0.01, all-multiplicative ε = 0.01. The NumPy loop is
``tests/reference.py`` (Python loop over steps, NumPy over trials, the literal update). Also
printed: the random-number floor — time to draw the N·trials·d feature normals alone.

Dense rows (a full covariance, features ``x = L z`` in the data's coordinates, the quantizer
acting on them): the paper's spectrum rotated by a random orthogonal matrix at d = 200 and
1000, against ``reference.np_sgd_dense`` with a Cholesky factor (``--dense-steps`` steps,
``--dense-trials`` trials); the diagonal problem of the same d is the "previous path".

    python benchmarks/bench_engine.py [--steps N] [--trials T] [--repeat R] [--no-dense]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import qlinreg as ql  # noqa: E402
from qlinreg import prng  # noqa: E402
from reference import np_sgd, np_sgd_dense  # noqa: E402

ROLES = ("data", "labels", "params", "activations", "grads")
CASES = {
    "full precision": {},
    "all additive 0.01": {r: ("additive", 0.01) for r in ROLES},
    "all multiplicative 0.01": {r: ("multiplicative", 0.01) for r in ROLES},
}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dense-steps", type=int, default=1000)
    ap.add_argument("--dense-trials", type=int, default=32)
    ap.add_argument("--no-dense", action="store_true")
    args = ap.parse_args()
    if not args.no_dense:
        dense_rows(args.dense_steps, args.dense_trials, args.repeat)
    N, T, d = args.steps, args.trials, args.dim
    problem = ql.make_problem(d)
    sgd = ql.SGDConfig(lr=0.1, steps=N)
    ck = ql.geometric_checkpoints(N)

    # Random-number floor: the feature normals alone (N·T·d), NumPy vs the engine's generator.
    rng = np.random.default_rng(0)
    t_np_rng = best_of(lambda: [rng.standard_normal((T, d), dtype=np.float32) for _ in range(N)], 1)
    keys = prng.derive(prng.key(0), np.arange(T, dtype=np.uint32))
    per_block = 32
    draw = jax.jit(lambda k, t: prng.normal(prng.derive(k[None], t[:, None]), (d,)).sum())
    ts = np.arange(per_block, dtype=np.uint32)
    draw(keys, ts).block_until_ready()
    t_jax_rng = best_of(
        lambda: [draw(keys, ts + i).block_until_ready() for i in range(0, N, per_block)], 2
    )
    print(f"paper setting: d={d}, B=1, trials={T}, N={N}, float32; {jax.devices()[0].platform}")
    print(
        f"random-number floor (N·T·d = {N * T * d:.2e} normals): NumPy {t_np_rng:.2f} s "
        f"({N * T * d / t_np_rng / 1e6:.0f} M/s), qlinreg.prng {t_jax_rng:.2f} s "
        f"({N * T * d / t_jax_rng / 1e6:.0f} M/s)\n"
    )
    cols = ("numpy loop", "qlinreg", "speed-up", "literal", "speed-up")
    header = f"{'case':26s} {cols[0]:>11s}" + "".join(f" {c:>9s}" for c in cols[1:])
    print(header)
    print("-" * len(header))
    for name, quant in CASES.items():
        scheme = ql.Scheme.parse([f"{r}={k}:{e}" for r, (k, e) in quant.items()])
        t_np = best_of(
            lambda q=quant: np_sgd(
                problem.spectrum, problem.w_star, 1.0, 0.1, N, 1, T, q, ck, dtype=np.float32
            ),
            1,
        )
        row = [t_np]
        for literal in (False, True):
            run = lambda s=scheme, lit=literal: ql.simulate(  # noqa: E731
                problem, s, sgd, trials=T, seed=0, checkpoints=ck, literal=lit
            )
            run()  # compile
            row.append(best_of(run, args.repeat))
        print(
            f"{name:26s} {row[0]:10.2f}s {row[1]:8.2f}s {row[0] / row[1]:8.1f}× "
            f"{row[2]:8.2f}s {row[0] / row[2]:8.1f}×"
        )


def dense_rows(N: int, T: int, repeat: int) -> None:
    """Engine with a full covariance vs the NumPy loop with a Cholesky factor, and vs the
    diagonal fast path of the same spectrum."""
    print(f"dense covariance (x = L z, data coordinates): B=1, trials={T}, N={N}, float32")
    cols = ("numpy loop", "qlinreg", "speed-up", "diagonal", "dense/diag")
    header = f"{'case':34s} {cols[0]:>11s}" + "".join(f" {c:>10s}" for c in cols[1:])
    print(header)
    print("-" * len(header))
    for d in (200, 1000):
        diag = ql.make_problem(d)
        q, r = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))
        Q = q * np.sign(np.diag(r))
        dense = ql.Problem.from_covariance(Q @ np.diag(diag.spectrum) @ Q.T, Q @ diag.w_star)
        L = np.linalg.cholesky(dense.covariance + 1e-12 * np.eye(d))
        sgd, ck = ql.SGDConfig(lr=0.1, steps=N), ql.geometric_checkpoints(N)
        for name, quant in (("full precision", {}),
                            ("data elementwise 0.01", {"data": ("multiplicative_elementwise",
                                                                0.01)})):  # fmt: skip
            scheme = ql.Scheme.parse([f"{k}={kind}:{e}" for k, (kind, e) in quant.items()])
            ref = functools.partial(np_sgd_dense, L, dense.w_star, 1.0, 0.1, N, 1, T, quant, ck)
            t_np = best_of(ref, 1)
            times = []
            for p in (dense, diag):
                run = functools.partial(
                    ql.simulate, p, scheme, sgd, trials=T, seed=0, checkpoints=ck
                )
                run()
                times.append(best_of(run, repeat))
            print(
                f"{f'd={d} {name}':34s} {t_np:10.2f}s {times[0]:9.2f}s {t_np / times[0]:9.1f}× "
                f"{times[1]:9.2f}s {times[0] / times[1]:9.1f}×"
            )
    print()


if __name__ == "__main__":
    main()
