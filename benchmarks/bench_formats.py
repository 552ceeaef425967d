"""Throughput of the number-format quantizers (SPEC §3, §6) against ml_dtypes casts.

Quantizes 10^7 float32 values (a 78125 × 128 array: the last axis is the vector, four MX blocks
of 32) with FP8 E4M3, INT8 (per-vector absmax) and MXFP8 E4M3, each with stochastic and
round-to-nearest-even rounding, jitted, after a warm-up, best of 3 with ``block_until_ready``.
The baselines, timed in the same process: the ``ml_dtypes`` cast round trip
``x.astype(float8_e4m3fn).astype(float32)`` (round-to-nearest-even only, no randomness), and
for INT8 a NumPy per-vector absmax round trip. Ratios are against the ml_dtypes round trip.

Then the engine on the paper's setting (d = 200, λ_i = i^-2, B = 1, γ = 0.1, 100 trials,
N = 10^4): all five roles in a real format against the idealized model the paper maps it to.

Run: ``.venv/bin/python benchmarks/bench_formats.py [--n 10000000] [--repeat 3] [--steps N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import ml_dtypes
import numpy as np

import qlinreg as ql
from qlinreg import prng
from qlinreg.quantize.formats import FloatFormat, IntFormat, MXFormat


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_int8_round_trip(x: np.ndarray) -> np.ndarray:
    scale = np.abs(x).max(axis=-1, keepdims=True) / 127
    scale[scale == 0] = 1
    return np.rint(x / scale).astype(np.int8).astype(np.float32) * scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="values (rounded to rows of 128)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10_000, help="SGD steps of the engine timing")
    args = ap.parse_args()
    rows = max(1, args.n // 128)
    x_np = np.random.default_rng(0).standard_normal((rows, 128)).astype(np.float32)
    x = jax.device_put(x_np)
    n = x_np.size
    key = prng.key(0)

    baseline = best_time(
        lambda: x_np.astype(ml_dtypes.float8_e4m3fn).astype(np.float32), args.repeat
    )
    results = [("ml_dtypes float8_e4m3fn cast round trip", "nearest_even", baseline)]
    results.append(
        (
            "numpy int8 per-vector round trip",
            "nearest_even",
            best_time(lambda: numpy_int8_round_trip(x_np), args.repeat),
        )
    )
    formats = {
        "fp8_e4m3fn": lambda r: FloatFormat.preset("fp8_e4m3fn", rounding=r),
        "int8 (per-vector absmax)": lambda r: IntFormat(8, rounding=r),
        "mxfp8_e4m3": lambda r: MXFormat("fp8_e4m3", rounding=r),
    }
    for name, make in formats.items():
        for rounding in ("stochastic", "nearest_even"):
            f = jax.jit(make(rounding))
            results.append((name, rounding, best_time(lambda f=f: f(key, x), args.repeat)))

    print(f"{n:,} float32 values, {jax.devices()[0].platform}, best of {args.repeat}")
    print(f"{'quantizer':42s} {'rounding':13s} {'M elem/s':>9s} {'vs ml_dtypes':>13s}")
    for name, rounding, t in results:
        print(f"{name:42s} {rounding:13s} {n / t / 1e6:9.1f} {baseline / t:12.2f}x")
    engine(args.steps, args.repeat)


def engine(steps: int, repeat: int) -> None:
    """simulate() with every role in a real format vs its idealized surrogate (paper setting)."""
    problem = ql.make_problem(200)
    sgd = ql.SGDConfig(0.1, steps)
    pairs = [
        ("all=int8", "all=additive:1.5e-5"),
        ("all=fp8_e4m3", "all=multiplicative:0.0156"),
        ("all=mxfp8_e4m3", "all=multiplicative:0.0156"),
        ("all=int8:nearest_even", "all=additive:1.5e-5"),
    ]
    print(f"\nengine, paper setting (d=200, B=1, 100 trials, N={steps}), seconds after compile")
    print(
        f"{'real format':26s} {'time':>7s} {'idealized surrogate':28s} {'time':>7s} {'ratio':>6s}"
    )
    for real, ideal in pairs:
        t = []
        for spec in (real, ideal):
            scheme = ql.Scheme.parse([spec])
            run = lambda s=scheme: ql.simulate(problem, s, sgd, trials=100)  # noqa: E731
            run()
            t.append(min(timeit(run) for _ in range(repeat)))
        print(f"{real:26s} {t[0]:6.2f}s {ideal:28s} {t[1]:6.2f}s {t[0] / t[1]:5.1f}x")


def timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
