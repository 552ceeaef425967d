"""A plain NumPy loop of quantized SGD with real number formats: the baseline of
``bench_formats.py``.

The literal update of SPEC §2 (a Python loop over steps, NumPy over trials, NumPy's own
generator), each role quantized as qlinreg's text defaults do: ``ml_dtypes`` round-to-nearest
casts give a value's neighbours on the format's grid (the cast and the next or previous code),
and NumPy uniforms pick one with the stochastic-rounding probability. Formats: ``int8``
(absmax per vector; delayed, the max of the last 16 steps' amax, on labels, activations and
output gradients), ``fp8_e4m3`` (no scale, saturating), ``mxfp8_e4m3`` (OCP floor scale per
block of 32) and ``nvfp4`` (FP32 tensor scale — delayed on the length-B roles — E4M3 block
scales per 16, E2M1 elements). Written for speed comparisons, from the definitions in
``docs/formats.md``, not from the engine.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

ROLES = ("data", "labels", "params", "activations", "grads")
B_ROLES = ("labels", "activations", "grads")
HISTORY = 16
E4M3, E2M1 = ml_dtypes.float8_e4m3fn, ml_dtypes.float4_e2m1fn
F32 = np.float32


def sr_on_grid(a: np.ndarray, dt, u: np.ndarray) -> np.ndarray:
    """Stochastic rounding of magnitudes ``0 ≤ a ≤ max`` onto the grid of the ml_dtypes type
    ``dt``: the round-to-nearest cast and its neighbour code bracket ``a``."""
    q = a.astype(dt)
    code = q.view(np.uint8)
    lo_code = np.where(q.astype(F32) > a, code - np.uint8(1), code)
    lo = lo_code.view(dt).astype(F32)
    on = lo == a
    hi = np.where(on, lo, (lo_code + np.uint8(1)).view(dt).astype(F32))
    p = np.where(on, F32(0), (a - lo) / np.where(on, F32(1), hi - lo))
    return np.where(u < p, hi, lo)


class Quantizer:
    """One role's format, with the amax history of delayed scaling (trials × 16)."""

    def __init__(self, name: str, role: str, trials: int, rng: np.random.Generator):
        self.name, self.rng = name, rng
        self.delayed = role in B_ROLES and name in ("int8", "nvfp4")
        self.hist = np.zeros((trials, HISTORY), F32)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The tensor amax per trial: the delayed reference, or the current one."""
        current = np.abs(x.reshape(x.shape[0], -1)).max(axis=1)
        if not self.delayed:
            return current
        ref = self.hist.max(axis=1)
        self.hist = np.concatenate([self.hist[:, 1:], current[:, None]], axis=1)
        return np.where(ref > 0, ref, current)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = self.rng.random(x.shape, dtype=F32)
        a, sign = np.abs(x), np.sign(x)
        if self.name == "int8":
            if self.delayed:
                amax = self.reference(x).reshape(-1, *([1] * (x.ndim - 1)))
            else:
                amax = a.max(axis=-1, keepdims=True)
            scale = np.where(amax > 0, amax / F32(127), F32(1))
            k = np.minimum(a / scale, F32(127))
            fl = np.floor(k)
            return sign * (fl + (u < k - fl)) * scale
        if self.name == "fp8_e4m3":
            return sign * sr_on_grid(np.minimum(a, F32(448)), E4M3, u)
        if self.name == "mxfp8_e4m3":
            n = x.shape[-1]
            blk = -(-n // 32) * 32
            pad = np.pad(a, [(0, 0)] * (x.ndim - 1) + [(0, blk - n)]).reshape(*x.shape[:-1], -1, 32)
            amax = pad.max(axis=-1, keepdims=True)
            e = np.floor(np.log2(np.where(amax > 0, amax, 1)))
            X = np.exp2(np.clip(e - 8, -127, 127)).astype(F32)
            upad = np.pad(u, [(0, 0)] * (x.ndim - 1) + [(0, blk - n)]).reshape(pad.shape)
            y = sr_on_grid(np.minimum(pad / X, F32(448)), E4M3, upad) * X
            return sign * y.reshape(*x.shape[:-1], -1)[..., :n]
        if self.name == "nvfp4":
            s = self.reference(x) / F32(6 * 448)
            s = np.maximum(s, np.finfo(F32).tiny).reshape(-1, *([1] * x.ndim))
            n = x.shape[-1]
            blk = -(-n // 16) * 16
            pad = np.pad(a, [(0, 0)] * (x.ndim - 1) + [(0, blk - n)]).reshape(*x.shape[:-1], -1, 16)
            b = np.minimum(pad.max(axis=-1, keepdims=True) / F32(6) / s, F32(448))
            total = b.astype(E4M3).astype(F32) * s
            ok = total > 0
            upad = np.pad(u, [(0, 0)] * (x.ndim - 1) + [(0, blk - n)]).reshape(pad.shape)
            y = np.minimum(pad / np.where(ok, total, 1), F32(6))
            y = np.where(ok, sr_on_grid(y, E2M1, upad) * total, F32(0))
            return sign * y.reshape(*x.shape[:-1], -1)[..., :n]
        raise ValueError(f"unknown format {self.name!r}")


def np_sgd_formats(spectrum, w_star, noise, lr, steps, batch, trials, fmt, seed=0):
    """Clean-input risk ``½‖w̄_N − w*‖²_H`` per trial of SGD with every role in ``fmt``."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(spectrum, F32)
    ws = np.asarray(w_star, F32)
    sq = np.sqrt(lam)
    d = lam.size
    Q = {r: Quantizer(fmt, r, trials, rng) for r in ROLES}
    w = np.zeros((trials, d), F32)
    S = np.zeros_like(w)
    for _ in range(steps):
        X = sq * rng.standard_normal((trials, batch, d), dtype=F32)
        y = X @ ws + F32(np.sqrt(noise)) * rng.standard_normal((trials, batch), dtype=F32)
        Xq, yq, wq = Q["data"](X), Q["labels"](y), Q["params"](w)
        a = Q["activations"](np.einsum("tbd,td->tb", Xq, wq))
        g = Q["grads"](yq - a)
        S += w
        w = w + F32(lr / batch) * np.einsum("tb,tbd->td", g, Xq)
    wbar = S / steps
    return 0.5 * np.sum(lam * (wbar - ws) ** 2, axis=1)
