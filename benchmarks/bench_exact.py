"""Cost of the exact risk vs Monte Carlo at equal precision, and exact_risk at N = 10^6, d = 1000.

Paper setting: d = 200, λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, N = 10^4, Polyak average,
quantized-input risk, the Q1 schemes. Monte Carlo (``qlinreg.simulate``, float32, shortcuts on)
reaches a standard error of 1 % with ``T = (sd / (0.01·mean))²`` trials, ``sd`` the per-trial
standard deviation in a pilot run, for three targets: the risk at ``N``; every point of the
curve (what ``exact_risk`` returns, at the cost shown); the penalty at ``N`` (risk minus the
full-precision risk; paired runs sharing seeds, which favours Monte Carlo). Its time is the
pilot's warm time per trial × ``T``. The exact risk has no sampling error. Times are warm
(compilation excluded), best of ``--repeat``.

    python benchmarks/bench_exact.py [--pilot T] [--repeat R] [--big-steps N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import qlinreg as ql
from qlinreg import Additive, Multiplicative, Scheme
from qlinreg.theory import exact_risk

CASES = {
    "full precision": Scheme(),
    "all additive 1e-3": Scheme.all(Additive(1e-3)),
    "all multiplicative 1e-3": Scheme.all(Multiplicative(1e-3)),
    "all additive 1e-2": Scheme.all(Additive(1e-2)),
    "all multiplicative 1e-2": Scheme.all(Multiplicative(1e-2)),
}


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def trials_for(values: np.ndarray) -> int:
    """Trials for SE ≤ 1 % of |mean|, from per-trial values (last axis), worst row."""
    mean, sd = np.abs(values.mean(-1)), values.std(-1, ddof=1)
    keep = mean > 0
    return max(1, int(np.ceil(np.max((sd[keep] / (0.01 * mean[keep])) ** 2))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pilot", type=int, default=200, help="Monte Carlo pilot trials")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--big-steps", type=int, default=1_000_000)
    ap.add_argument("--big-dim", type=int, default=1000)
    args = ap.parse_args()
    N = args.steps
    problem = ql.make_problem(200)
    sgd = ql.SGDConfig(lr=0.1, steps=N)
    ck = ql.geometric_checkpoints(N)

    print(
        f"paper setting: d = 200, N = {N}, γ = 0.1, B = 1, {len(ck)} checkpoints; MC trials for "
        f"SE ≤ 1 % of: the risk at N, every point of the risk curve, the penalty at N "
        f"(risk − full-precision risk, paired runs); pilot of {args.pilot} trials"
    )
    head = (
        f"{'case':<24} {'risk(N)':>8} {'exact':>8} {'MC/trial':>9} {'trials: N':>9} "
        f"{'curve':>6} {'penalty':>8} {'speed-up: N':>11} {'curve':>7} {'penalty':>8}"
    )
    print(head)
    print("-" * len(head))
    fp_risk = None
    for name, scheme in CASES.items():
        timed(lambda s=scheme: exact_risk(problem, s, sgd, ck), 1)  # compile
        t_ex, ex = timed(lambda s=scheme: exact_risk(problem, s, sgd, ck), args.repeat)

        def pilot(s=scheme):
            return ql.simulate(problem, s, sgd, trials=args.pilot, seed=1, checkpoints=ck)

        pilot()  # compile
        t_pilot, mc = timed(pilot, 1)
        per_trial = t_pilot / args.pilot
        n_end, n_curve = trials_for(mc.risk[-1]), trials_for(mc.risk[1:])  # step 1: no noise
        if fp_risk is None:
            fp_risk, n_pen = mc.risk, 0
        else:
            n_pen = trials_for(mc.risk[-1] - fp_risk[-1])
        pen = f"{n_pen:8d}" if n_pen else f"{'—':>8}"
        pen_x = f"{n_pen * per_trial / t_ex:7.0f}×" if n_pen else f"{'—':>8}"
        print(
            f"{name:<24} {ex.exact_risk[-1]:8.5f} {t_ex * 1e3:6.1f}ms {per_trial * 1e3:7.1f}ms "
            f"{n_end:9d} {n_curve:6d} {pen} {n_end * per_trial / t_ex:10.0f}× "
            f"{n_curve * per_trial / t_ex:6.0f}× {pen_x}"
        )

    big = ql.make_problem(args.big_dim)
    big_sgd = ql.SGDConfig(lr=0.1, steps=args.big_steps)
    scheme = Scheme.all(Additive(0.01))
    t_cold, _ = timed(lambda: exact_risk(big, scheme, big_sgd), 1)
    t_big, res = timed(lambda: exact_risk(big, scheme, big_sgd), args.repeat)
    print(
        f"\nexact_risk, d = {args.big_dim}, N = {args.big_steps:.0e}, all additive 0.01, "
        f"{len(res.steps)} checkpoints: {t_big:.2f} s warm ({t_cold:.2f} s cold); "
        f"{t_big / args.big_steps / args.big_dim * 1e9:.1f} ns per step·coordinate"
    )


if __name__ == "__main__":
    main()
