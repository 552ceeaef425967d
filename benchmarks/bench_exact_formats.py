"""Cost of the exact risk with real formats on the data, against Monte Carlo at equal precision.

Paper setting: λ_i = i^-2, w* = 1, σ² = 1, γ = 0.1, B = 1, N = 10^4, Polyak average; the format
on the data only. For each format and d: the time of ``exact_risk`` (cold: the format's moments
computed — quadrature for elementwise grids, sampled rows for shared scales — and warm: moments
cached, which only the quadrature route does), its standard error (0 when exact; the
jackknife's when estimated), and Monte Carlo (``qlinreg.simulate``, float32) at equal
precision: the paired penalty (format minus full precision, same seeds) needs
``T = (sd / target)²`` trials, ``sd`` the per-trial sd of the paired difference in a pilot run
and ``target`` the estimated route's SE, or 1 % of the penalty when exact. Monte Carlo time =
warm time per paired trial (two runs) × T. Times are wall-clock on a shared machine (noisy):
read the ratios.

    python benchmarks/bench_exact_formats.py [--dims 64 256] [--pilot 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import qlinreg as ql
from qlinreg.theory import exact_risk
from qlinreg.theory.format_moments import _cached

FORMATS = ("fp8_e4m3", "fp8_e5m2", "int8", "fp8_e4m3::tensor")
N = 10_000


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--pilot", type=int, default=32)
    args = ap.parse_args()
    sgd = ql.SGDConfig(0.1, N)
    print("| d | format | moments | exact: cold s | warm s | penalty ± SE | Monte Carlo: T "
          "trials | time s | ratio MC / exact (cold) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for d in args.dims:
        problem = ql.make_problem(d)
        full = exact_risk(problem, None, sgd, [N]).exact_risk[0]
        base = ql.simulate(problem, None, sgd, trials=args.pilot, seed=3, checkpoints=[N])
        for name in FORMATS:
            scheme = ql.Scheme.parse([f"data={name}"])
            _cached.cache_clear()
            res, cold = _timed(lambda p=problem, s=scheme: exact_risk(p, s, sgd, [N]))
            _, warm = _timed(lambda p=problem, s=scheme: exact_risk(p, s, sgd, [N]))
            pen, se = res.exact_risk[0] - full, res.risk_se["polyak"][0]
            ql.simulate(problem, scheme, sgd, trials=2, seed=9, checkpoints=[N])  # compile
            mc, t_mc = _timed(
                lambda p=problem, s=scheme: ql.simulate(
                    p, s, sgd, trials=args.pilot, seed=3, checkpoints=[N]
                )
            )
            sd = float(np.std(mc.risk[-1] - base.risk[-1], ddof=1))
            target = se if se > 0 else 0.01 * abs(pen)
            T = int(np.ceil((sd / target) ** 2))
            t_per_trial = 2 * t_mc / args.pilot  # the full-precision run of the pair costs alike
            print(
                f"| {d} | {name} | {res.moments} | {cold:.2f} | {warm:.2f} | {pen:.3g} ± "
                f"{se:.1g} | {T} | {T * t_per_trial:.0f} | {T * t_per_trial / cold:.0f}× |"
            )


if __name__ == "__main__":
    main()
