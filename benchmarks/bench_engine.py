"""Engine speed on the paper's setting vs a plain NumPy loop of the same update.

Setting: d = 200, λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, 100 trials, N = 10^4, float32.
Cases: full precision, all-additive ε = 0.01, all-multiplicative ε = 0.01. The NumPy loop is
``tests/reference.py`` (Python loop over steps, NumPy over trials, the literal update). Also
printed: the random-number floor — time to draw the N·trials·d feature normals alone.

    python benchmarks/bench_engine.py [--steps N] [--trials T] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import qlinreg as ql  # noqa: E402
from qlinreg import prng  # noqa: E402
from reference import np_sgd  # noqa: E402

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
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
