"""Engine, exact risk and formats on whatever device JAX sees (a GPU with ``qlinreg[cuda]``).

Cases (``--size full``): the paper's setting (d = 200, λ_i = i^-2, B = 1, γ = 0.1) with 10^4
trials and N = 10^4 steps, and d = 10^4 with 1000 trials and N = 10^4, each in full precision,
all five roles multiplicative ε = 0.01, all five in int8 and in mxfp8_e4m3 (checkpoints only at
N), plus the exact risk (``exact_risk``, O(d) per checkpoint) at ~10 checkpoints per decade.
Prints a Markdown table: seconds after compile (best of ``--repeat``), trial-steps per second.
``--size tiny`` runs the same cases at d = 32, 16 trials, N = 100: a check that the script
works (on CPU: ``python benchmarks/bench_gpu.py --size tiny``).

Run on a GPU machine: ``pip install -e '.[cuda]'`` then
``python benchmarks/bench_gpu.py --size full`` (and ``JAX_PLATFORMS=cpu`` for the CPU row).
"""

from __future__ import annotations

import argparse

import jax

import qlinreg as ql
from bench_formats import best_time  # benchmarks/: warm-up, then the best of repeat

SIZES = {
    "tiny": [("paper setting", 32, 16, 100), ("large d", 32, 16, 100)],
    "full": [("paper setting", 200, 10_000, 10_000), ("large d", 10_000, 1000, 10_000)],
}
SCHEMES = {
    "full precision": [],
    "all multiplicative 0.01": ["all=multiplicative:0.01"],
    "all int8": ["all=int8"],
    "all mxfp8_e4m3": ["all=mxfp8_e4m3"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=tuple(SIZES), default="full")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}\n")
    print("| case | d | trials | N | scheme | seconds | trial-steps/s |")
    print("|---|---|---|---|---|---|---|")
    for case, d, trials, steps in SIZES[args.size]:
        problem = ql.make_problem(d)
        sgd = ql.SGDConfig(0.1, steps)  # tr H ≈ 1.64 for every d: γ·tr H ≈ 0.16
        for name, spec in SCHEMES.items():
            scheme = ql.Scheme.parse(spec) if spec else None

            def run(p=problem, s=scheme, g=sgd, n=trials, ck=(steps,)):
                return ql.simulate(p, s, g, trials=n, checkpoints=list(ck)).risk

            t = best_time(run, args.repeat)
            print(f"| {case} | {d} | {trials} | {steps} | {name} | {t:.3g} | "
                  f"{trials * steps / t:.3g} |", flush=True)  # fmt: skip
        ck = ql.geometric_checkpoints(steps)
        scheme = ql.Scheme.parse(["all=multiplicative:0.01"])

        def exact(p=problem, s=scheme, g=sgd, ck=ck):
            return ql.exact_risk(p, s, g, ck).exact_risk

        t = best_time(exact, args.repeat)
        print(f"| {case} | {d} | — | {steps} | exact risk, {len(ck)} checkpoints | {t:.3g} | — |")


if __name__ == "__main__":
    main()
