"""Speed of the number formats (SPEC §3, §6): quantizer throughput, and the engine with real
formats against their idealized surrogates and against a plain NumPy loop.

1. Quantizer throughput: 10^7 float32 values (78125 × 128: four MX blocks of 32 per row), each
   format with stochastic and round-to-nearest-even rounding, jitted, best of ``--repeat``;
   baselines in the same process: the ``ml_dtypes`` cast round trip
   ``x.astype(float8_e4m3fn).astype(float32)`` (nearest only) and a NumPy INT8 round trip.
2. The engine on the paper's setting (d = 200, λ_i = i^-2, B = 1, γ = 0.1, 100 trials,
   N = ``--steps``), all five roles in int8, fp8_e4m3, mxfp8_e4m3 and nvfp4 (text defaults:
   delayed scales on labels, activations and gradients for int8 and nvfp4), against the
   idealized model the paper maps each to (int8 → additive 2^-16, FP → multiplicative
   2^-2m). Two timings each: checkpoints only at N, and the default ~10 per decade (a format
   has no closed-form quantized-input risk, so every checkpoint evaluates 64 probe rows per
   trial). Also: the speed-up of drawing stochastic-rounding words per block of steps ahead
   of the sequential loop over drawing them inside it (``sgd._PREDRAW``).
3. Rounding inside a sequential loop (``in_loop``): a scan of 2048 steps quantizing
   112 × 200 parameters per step (stochastic rounding, pre-drawn words, the saturation counts
   and a pairwise row sum as consumers), the rounding fused into its consumers against
   computed once inside ``lax.cond`` (``sgd._quantize``'s ``live`` flag).
4. The same update as a plain NumPy loop (``np_formats_loop.py``: Python over steps, NumPy
   over trials, ``ml_dtypes`` casts and NumPy stochastic rounding), timed on
   ``--numpy-steps`` steps and compared per step with the engine (checkpoints only at N).

Run: ``python benchmarks/bench_formats.py [--n 10000000] [--repeat 3] [--steps 10000]
[--numpy-steps 1000] [--skip-throughput]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_dtypes
import numpy as np

import qlinreg as ql
from qlinreg import prng
from qlinreg import sgd as sgd_module
from qlinreg.quantize.formats import FloatFormat, IntFormat, MXFormat, NVFP4Format

sys.path.insert(0, str(Path(__file__).resolve().parent))
from np_formats_loop import np_sgd_formats  # noqa: E402

PAIRS = {  # real format (all five roles) → its idealized surrogate (the paper's mapping)
    "int8": "additive:1.5e-5",
    "fp8_e4m3": "multiplicative:0.0156",
    "mxfp8_e4m3": "multiplicative:0.0156",
    "nvfp4": "multiplicative:0.25",
}


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


def throughput(n: int, repeat: int) -> None:
    rows = max(1, n // 128)
    x_np = np.random.default_rng(0).standard_normal((rows, 128)).astype(np.float32)
    x = jax.device_put(x_np)
    n = x_np.size
    key = prng.key(0)
    baseline = best_time(lambda: x_np.astype(ml_dtypes.float8_e4m3fn).astype(np.float32), repeat)
    results = [("ml_dtypes float8_e4m3fn cast round trip", "nearest_even", baseline)]
    results.append(("numpy int8 per-vector round trip", "nearest_even",
                    best_time(lambda: numpy_int8_round_trip(x_np), repeat)))  # fmt: skip
    formats = {
        "fp8_e4m3fn": lambda r: FloatFormat.preset("fp8_e4m3fn", rounding=r),
        "int8 (per-vector absmax)": lambda r: IntFormat(8, rounding=r),
        "mxfp8_e4m3": lambda r: MXFormat("fp8_e4m3", rounding=r),
        "nvfp4 (per row: one tensor)": lambda r: NVFP4Format(rounding=r),
    }
    for name, make in formats.items():
        for rounding in ("stochastic", "nearest_even"):
            q = make(rounding)
            f = jax.jit(jax.vmap(q, (None, 0))) if "nvfp4" in name else jax.jit(q)
            results.append((name, rounding, best_time(lambda f=f: f(key, x), repeat)))
    print(f"{n:,} float32 values, {jax.devices()[0].platform}, best of {repeat}")
    print(f"{'quantizer':42s} {'rounding':13s} {'M elem/s':>9s} {'vs ml_dtypes':>13s}")
    for name, rounding, t in results:
        print(f"{name:42s} {rounding:13s} {n / t / 1e6:9.1f} {baseline / t:12.2f}x")


def engine(steps: int, numpy_steps: int, repeat: int) -> None:
    """simulate() with every role in a real format vs its surrogate and vs the NumPy loop."""
    problem = ql.make_problem(200)
    sgd = ql.SGDConfig(0.1, steps)
    print(f"\nengine, paper setting (d=200, B=1, 100 trials, N={steps}), seconds after compile;")
    print("ckpt N: checkpoint only at N; ckpts: ~10 per decade (formats: probe rows at each)")
    cols = ("ckpt N", "surr.", "ratio", "ckpts", "surr.", "ratio", "numpy", "speed-up", "predraw")
    widths = (7, 6, 6, 7, 6, 6, 7, 8, 7)
    head = f"{'all five roles':16s} " + " ".join(
        f"{c:>{w}s}" for c, w in zip(cols, widths, strict=True)
    )
    print(head)
    print("-" * len(head))
    for real, ideal in PAIRS.items():
        row = {}
        for ck_name, ck in (("N", [steps]), ("default", None)):
            runs = {}
            for kind, spec in (("real", real), ("ideal", ideal)):
                scheme = ql.Scheme.parse([f"all={spec}"])
                runs[kind] = lambda s=scheme, ck=ck: ql.simulate(  # noqa: E731
                    problem, s, sgd, trials=100, checkpoints=ck
                )
                runs[kind]()  # compile
            times = {k: 1e9 for k in runs}
            for _ in range(repeat):  # interleaved: the machine's load hits both alike
                for k, f in runs.items():
                    times[k] = min(times[k], timeit(f))
            row[ck_name] = times
        # plain NumPy loop of the same update, per step, against the engine (checkpoint at N)
        t0 = time.perf_counter()
        np_sgd_formats(problem.spectrum, problem.w_star, 1.0, 0.1, numpy_steps, 1, 100, real)
        t_np = (time.perf_counter() - t0) / numpy_steps * steps
        # the speed path: words drawn per block ahead of the loop vs inside it
        scheme = ql.Scheme.parse([f"all={real}"])
        sgd_module._PREDRAW = False
        slow = lambda s=scheme: ql.simulate(problem, s, sgd, trials=100, checkpoints=[steps])  # noqa: E731
        slow()
        t_slow = min(timeit(slow) for _ in range(repeat))
        sgd_module._PREDRAW = True
        n, d = row["N"], row["default"]
        print(f"{real:16s} {n['real']:6.2f}s {n['ideal']:5.2f}s {n['real'] / n['ideal']:5.2f}x "
              f"{d['real']:6.2f}s {d['ideal']:5.2f}s {d['real'] / d['ideal']:5.2f}x "
              f"{t_np:6.1f}s {t_np / n['real']:7.1f}x {t_slow / n['real']:6.2f}x",
              flush=True)  # fmt: skip
    print(
        f"numpy: the NumPy loop's time per step on {numpy_steps} steps, times N; speed-up: "
        "numpy / engine (ckpt N); predraw: engine with words drawn in the loop / ahead"
    )


def in_loop(repeat: int) -> None:
    """µs per step of a scan that quantizes a 112 × 200 ``w`` per step: the rounding fused
    into its consumers (XLA duplicates it) vs computed once inside ``lax.cond``."""
    T, d, L = 112, 200, 2048
    w0 = jax.random.normal(jax.random.key(0), (T, d))
    X = jax.random.normal(jax.random.key(1), (T, d))
    live = jax.numpy.asarray(True)
    print(f"\nrounding inside a scan of {L} steps, {T} × {d} values per step (µs per step)")
    print(f"{'format':12s} {'fused':>8s} {'once':>8s} {'ratio':>6s}")
    for name in ("int8", "fp8_e4m3", "mxfp8_e4m3", "nvfp4"):
        q = ql.quantize.parse_quantizer(name)
        words = q.draw(prng.key(2), (L, T, d), jax.numpy.float32)

        def run(w, words, flag, q=q):
            def step(carry, wd):
                w, acc = carry
                wq = jax.vmap(lambda u, r: sgd_module._quantize(q, None, u, r, None, flag))(w, wd)
                stats = jax.numpy.stack(jax.vmap(q.stats)(w, wq), -1)
                a = sgd_module._rowsum(X * wq)
                return (w + 1e-3 * a[:, None] * X, acc + stats), None

            return jax.lax.scan(step, (w, jax.numpy.zeros((T, 2))), words)[0]

        fused = jax.jit(lambda w, wd, run=run: run(w, wd, None))
        once = jax.jit(lambda w, wd, f, run=run: run(w, wd, f))
        calls = {
            "fused": lambda fused=fused, words=words: jax.block_until_ready(fused(w0, words)),
            "once": lambda once=once, words=words: jax.block_until_ready(once(w0, words, live)),
        }
        t = {k: best_time(c, repeat) for k, c in calls.items()}
        f, o = t["fused"] / L * 1e6, t["once"] / L * 1e6
        print(f"{name:12s} {f:8.1f} {o:8.1f} {f / o:5.1f}x", flush=True)


def timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="values (rounded to rows of 128)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10_000, help="SGD steps of the engine timing")
    ap.add_argument("--numpy-steps", type=int, default=1000, help="steps of the NumPy loop")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if not args.skip_throughput:
        throughput(args.n, args.repeat)
        in_loop(args.repeat)
    engine(args.steps, args.numpy_steps, args.repeat)


if __name__ == "__main__":
    main()
