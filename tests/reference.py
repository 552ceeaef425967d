"""Plain NumPy reference of quantized SGD (SPEC §2), written from the spec, not from the engine.

A Python loop over steps, NumPy over trials, NumPy's own generator. It follows the update
literally (no shortcut) and is what the engine is checked against statistically, and what
``benchmarks/bench_engine.py`` times the engine against.
"""

from __future__ import annotations

import numpy as np


def np_quantize(rng: np.random.Generator, kind: str, eps: float, u: np.ndarray) -> np.ndarray:
    """Idealized quantizer of SPEC §3 on ``u`` (trials × … × vector), the last axis the vector."""
    if kind == "none" or eps == 0:
        return u
    s = np.sqrt(eps)
    if kind == "additive":
        return u + s * rng.standard_normal(u.shape, dtype=u.dtype)
    if kind == "multiplicative":
        return u * (1 + s * rng.standard_normal(u.shape[:-1] + (1,), dtype=u.dtype))
    if kind == "multiplicative_elementwise":
        return u * (1 + s * rng.standard_normal(u.shape, dtype=u.dtype))
    raise ValueError(kind)


def np_sgd(
    spectrum: np.ndarray,
    w_star: np.ndarray,
    noise: float,
    lr: float,
    steps: int,
    batch: int,
    trials: int,
    quant: dict[str, tuple[str, float]],
    checkpoints: np.ndarray,
    seed: int = 0,
    average: str = "polyak",
    dtype=np.float64,
):
    """Risks ``(clean, quantized-input)`` of the averaged (or last) iterate, ``(K, trials)`` each.

    ``quant`` maps role → (kind, ε); missing roles are unquantized. The quantized-input risk is
    evaluated by the same closed form as the engine's (SPEC §4, ``δ`` from the data quantizer).
    ``average`` at checkpoint ``n`` (``docs/engine.md``): ``polyak`` ``(1/n) Σ_{t=0}^{n-1} w_t``,
    ``tail`` the mean of ``w_s … w_{n-1}`` with ``s = ⌊n/2⌋`` (from the stored iterates),
    ``last`` ``w_n``.
    """
    if average not in ("polyak", "tail", "last"):
        raise ValueError(f"average must be 'polyak', 'tail' or 'last', got {average!r}")
    rng = np.random.default_rng(seed)
    lam = np.asarray(spectrum, dtype)
    ws = np.asarray(w_star, dtype)
    sq = np.sqrt(lam)
    d = lam.size
    q = {
        r: quant.get(r, ("none", 0.0)) for r in ("data", "labels", "params", "activations", "grads")
    }
    dk, de = q["data"]
    delta = {"none": 0 * lam, "additive": de + 0 * lam}.get(dk, de * lam)
    w = np.zeros((trials, d), dtype)
    S = np.zeros_like(w)
    history = [w] if average == "tail" else None  # w_0, w_1, …: history[t] is w_t
    ck = set(int(c) for c in checkpoints)
    out_c, out_q = [], []
    for t in range(1, steps + 1):
        X = sq * rng.standard_normal((trials, batch, d), dtype=dtype)
        y = X @ ws + np.sqrt(noise) * rng.standard_normal((trials, batch), dtype=dtype)
        Xq = np_quantize(rng, *q["data"], X)
        yq = np_quantize(rng, *q["labels"], y)
        wq = np_quantize(rng, *q["params"], w)
        a = np_quantize(rng, *q["activations"], np.einsum("tbd,td->tb", Xq, wq))
        g = np_quantize(rng, *q["grads"], yq - a)
        S += w
        w = w + (lr / batch) * np.einsum("tb,tbd->td", g, Xq)
        if history is not None:
            history.append(w)
        if t in ck:
            if average == "polyak":
                it = S / t
            elif average == "tail":
                it = np.mean(history[t // 2 : t], axis=0)
            else:
                it = w
            v = it - ws
            clean = 0.5 * np.sum(lam * v * v, axis=1)
            out_c.append(clean)
            out_q.append(clean + 0.5 * np.sum(delta * it * it, axis=1))
    return np.array(out_c), np.array(out_q)


def np_sgd_dense(
    L: np.ndarray | None,
    w_star: np.ndarray,
    noise: float,
    lr: float,
    steps: int,
    batch: int,
    trials: int,
    quant: dict[str, tuple[str, float]],
    checkpoints: np.ndarray,
    seed: int = 0,
    average: str = "polyak",
    rows: tuple[np.ndarray, np.ndarray] | None = None,
):
    """:func:`np_sgd` with a full covariance, quantizers acting on the given coordinates.

    Features ``x = z Lᵀ`` (``z ~ N(0, I)``, so ``H = L Lᵀ``) and ``y = ⟨w*, x⟩ + ξ``; or, with
    ``rows = (X, y)``, each sample a row of ``X`` with its label, drawn uniformly with
    replacement (``H = Σ = XᵀX/n``, ``w_star`` the least-squares fit, ``noise`` unused).
    Returns per-trial risks ``(clean, quantized-input)`` at the checkpoints, ``(K, trials)``
    each: ``½(w − w*)ᵀH(w − w*)`` and that plus ``½wᵀDw``, ``D`` the data quantizer's error
    covariance (``εI`` additive, ``εH`` rank-one, ``ε·Diag(diag H)`` elementwise).
    """
    if average not in ("polyak", "tail", "last"):
        raise ValueError(f"average must be 'polyak', 'tail' or 'last', got {average!r}")
    rng = np.random.default_rng(seed)
    ws = np.asarray(w_star, np.float64)
    d = ws.size
    if rows is None:
        L = np.asarray(L, np.float64)
        H = L @ L.T
    else:
        Xr, yr = (np.asarray(a, np.float64) for a in rows)
        H = Xr.T @ Xr / Xr.shape[0]
    q = {
        r: quant.get(r, ("none", 0.0)) for r in ("data", "labels", "params", "activations", "grads")
    }
    dk, de = q["data"]
    D = {
        "none": np.zeros((d, d)),
        "additive": de * np.eye(d),
        "multiplicative": de * H,
        "multiplicative_elementwise": de * np.diag(np.diag(H)),
    }[dk]
    w = np.zeros((trials, d))
    S = np.zeros_like(w)
    history = [w] if average == "tail" else None
    ck = set(int(c) for c in checkpoints)
    out_c, out_q = [], []
    for t in range(1, steps + 1):
        if rows is None:
            X = rng.standard_normal((trials, batch, d)) @ L.T
            y = X @ ws + np.sqrt(noise) * rng.standard_normal((trials, batch))
        else:
            idx = rng.integers(0, Xr.shape[0], size=(trials, batch))
            X, y = Xr[idx], yr[idx]
        Xq = np_quantize(rng, *q["data"], X)
        yq = np_quantize(rng, *q["labels"], y)
        wq = np_quantize(rng, *q["params"], w)
        a = np_quantize(rng, *q["activations"], np.einsum("tbd,td->tb", Xq, wq))
        g = np_quantize(rng, *q["grads"], yq - a)
        S += w
        w = w + (lr / batch) * np.einsum("tb,tbd->td", g, Xq)
        if history is not None:
            history.append(w)
        if t in ck:
            if average == "polyak":
                it = S / t
            elif average == "tail":
                it = np.mean(history[t // 2 : t], axis=0)
            else:
                it = w
            v = it - ws
            clean = 0.5 * np.einsum("ti,ij,tj->t", v, H, v)
            out_c.append(clean)
            out_q.append(clean + 0.5 * np.einsum("ti,ij,tj->t", it, D, it))
    return np.array(out_c), np.array(out_q)
