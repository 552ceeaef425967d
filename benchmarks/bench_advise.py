"""Time of one ``qlinreg advise`` on the paper setting with the default menu, by phase.

Paper setting: d = 200, λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, N = 10^4; budget 10 % of
the full-precision risk (clean inputs), default menu (16 formats × stochastic and
nearest-even rounding on 5 roles: 150 candidates), 32 verification trials. Phases from the
advisor's progress messages: pilot run, measurement + exact penalties alone, joint search,
Monte Carlo verification (full precision, the recommendation and its runner-up, real
formats). Cold: a fresh process compiles everything once, which is what a user waits for.

The measurement is compared with the previous path in the same process: one compiled call per
role × format (now: one per format and vector length, roles with equal vector lengths
stacked).

    python benchmarks/bench_advise.py [--trials T] [--dim D] [--steps N]
"""

from __future__ import annotations

import argparse
import time

from qlinreg import SGDConfig, make_problem
from qlinreg.advise import DEFAULT_MENU, Advisor, Budget, measure_roles, role_samples
from qlinreg.quantize import parse_quantizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10_000)
    args = ap.parse_args()
    problem, sgd = make_problem(args.dim), SGDConfig(0.1, args.steps)

    marks = []

    def mark(msg):
        marks.append((time.perf_counter(), msg.split(":")[0]))

    t0 = time.perf_counter()
    adv = Advisor(problem, sgd, progress=mark)
    t1 = time.perf_counter()
    mark("joint search")
    advice = adv.advise(Budget(0.1, relative=True, convention="clean"), trials=args.trials)
    t2 = time.perf_counter()
    times = [m[0] for m in marks] + [t2]
    phases = {
        "pilot run": marks[1][0] - t0,
        "measurement + penalties alone": t1 - marks[1][0],
        "joint search + batch table": next(t for t, m in marks[3:] if m == "verification")
        - times[2],
        "verification (Monte Carlo)": t2 - next(t for t, m in marks if m == "verification"),
    }
    total = t2 - t0
    print(f"advise, paper setting d={args.dim}, N={args.steps}, default menu "
          f"({len(adv.rows)} candidates), {args.trials} verification trials")  # fmt: skip
    print(f"{'phase':34s} {'seconds':>8s} {'share':>6s}")
    for name, sec in phases.items():
        print(f"{name:34s} {sec:8.1f} {sec / total:6.0%}")
    print(f"{'total':34s} {total:8.1f}")
    print(f"recommended: {' '.join(advice.recommended['quant'])}")
    v = advice.verification
    for _, r in v.iterrows():
        print(f"  {r['scheme']}: predicted {r['predicted']:.3g}, Monte Carlo {r['penalty']:.3g}"
              f" ± {r['penalty_se']:.2g}")  # fmt: skip

    # measurement: grouped (as advise does) vs one call per role × format
    samples = role_samples(problem, sgd, seed=0)
    qs = [parse_quantizer(f"{n}:stochastic") for n in DEFAULT_MENU if n != "fp32"]
    t = time.perf_counter()
    for i, q in enumerate(qs):
        measure_roles(q, samples, seed=i)
    grouped = time.perf_counter() - t
    t = time.perf_counter()
    for i, q in enumerate(qs):
        for role, u in samples.items():
            measure_roles(q, {role: u}, seed=i)
    per_role = time.perf_counter() - t
    print(f"\nmeasurement of {len(qs)} formats (stochastic) on 5 roles, each call compiled:")
    print(f"  one call per role × format (previous): {per_role:6.1f} s")
    print(f"  stacked by vector length (advise):     {grouped:6.1f} s  ({per_role / grouped:.1f}×)")


if __name__ == "__main__":
    main()
