"""Cost of the exact risk: closed form vs stepping over N and d, and vs Monte Carlo.

Part 1 (``--part closed``): ``exact_risk`` with 40 checkpoints, all five roles
multiplicative ε = 0.01 (stable at any d), λ_i = i^-2, γ = 0.1, B = 1: the closed form
(``method="closed"``) at d = 10^4 for N = 10^3 … 10^12 next to the O(N·d) stepping
(``method="step"``) where N·d ≤ ``--max-step-work``, and at N = 10^9 for d = 10^3 … 10^6.

Paper setting: d = 200, λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, N = 10^4, Polyak average,
quantized-input risk, the Q1 schemes. Monte Carlo (``qlinreg.simulate``, float32, shortcuts on)
reaches a standard error of 1 % with ``T = (sd / (0.01·mean))²`` trials, ``sd`` the per-trial
standard deviation in a pilot run, for three targets: the risk at ``N``; every point of the
curve (what ``exact_risk`` returns, at the cost shown); the penalty at ``N`` (risk minus the
full-precision risk; paired runs sharing seeds, which favours Monte Carlo). Its time is the
pilot's warm time per trial × ``T``. The exact risk has no sampling error. Times are warm
(compilation excluded), best of ``--repeat``.

Part 2 (``--part mc``): the exact risk vs Monte Carlo at equal precision (below).

    python benchmarks/bench_exact.py [--part closed|mc|both] [--max-dim D] [--pilot T] …
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


def closed_vs_step(args) -> None:
    scheme = Scheme.all(Multiplicative(0.01))

    def curve(d: int, N: int, method: str) -> tuple[float, float]:
        problem = ql.make_problem(d)
        ck = np.unique(np.geomspace(1, N, 40).astype(np.int64))
        sgd = ql.SGDConfig(0.1, N)
        exact_risk(problem, scheme, ql.SGDConfig(0.1, 200), [100, 200], method=method)  # compile
        t, res = timed(lambda: exact_risk(problem, scheme, sgd, ck, method=method), args.repeat)
        return t, float(res.exact_risk[-1])

    print("closed form vs stepping, 40 checkpoints, all multiplicative 0.01, γ = 0.1, B = 1")
    head = f"{'d':>8} {'N':>8} {'closed':>9} {'stepping':>9} {'ratio':>8} {'risk(N)':>10}"
    head += f" {'|Δ|/risk':>9}"
    print(head)
    print("-" * len(head))
    rows = [(10**4, 10**k) for k in (3, 6, 9, 12)]
    rows += [(10**k, 10**9) for k in range(3, 7) if 10**k <= args.max_dim and k != 4]
    for d, N in rows:
        t_c, r_c = curve(d, N, "closed")
        if N * d <= args.max_step_work:
            t_s, r_s = curve(d, N, "step")
            step = f"{t_s:8.2f}s {t_s / t_c:7.1f}× {r_c:10.6g} {abs(r_c - r_s) / r_s:9.1e}"
        else:
            step = f"{'—':>9} {'—':>8} {r_c:10.6g} {'—':>9}"
        print(f"{d:8.0e} {N:8.0e} {t_c:8.2f}s {step}")


def monte_carlo(args) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("closed", "mc", "both"), default="both")
    ap.add_argument("--pilot", type=int, default=200, help="Monte Carlo pilot trials")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10_000, help="N of the Monte Carlo part")
    ap.add_argument("--max-dim", type=int, default=10**6, help="largest d of the closed part")
    ap.add_argument(
        "--max-step-work",
        type=float,
        default=1.1e10,
        help="stepping only where N·d is at most this",
    )
    args = ap.parse_args()
    if args.part in ("closed", "both"):
        closed_vs_step(args)
    if args.part in ("mc", "both"):
        print()
        monte_carlo(args)


if __name__ == "__main__":
    main()
