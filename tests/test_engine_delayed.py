"""Formats in the engine: delayed scaling (the amax history of earlier steps only), the role
defaults that quantize one-element vectors, and the draw/apply speed path (bit-identical to
drawing the stochastic-rounding words inside the sequential loop)."""

import numpy as np
import pytest

import qlinreg as ql
from qlinreg import sgd as sgd_module
from qlinreg.pipeline import RunSpec

PROBLEM = ql.make_problem(4, decay=1.0, noise=0.5)


def expected_record_fraction(k: int, steps: int) -> tuple[float, float]:
    """For i.i.d. continuous ``|u_t|``: the mean over ``t = 1 … N`` of
    ``P(|u_t| > max(|u_{t−k}|, …, |u_{t−1}|))`` (0 at ``t = 1``, no history), and a bound on
    the variance of one trial's fraction. ``I_t`` depends on ``u_{t−k} … u_t`` only, so
    ``Var Σ I_t ≤ (2k + 1)·Σ Var I_t`` (Cauchy–Schwarz on the ``2k + 1`` overlapping lags)."""
    p = np.array([0.0] + [1 / (min(t - 1, k) + 1) for t in range(2, steps + 1)])
    return float(p.mean()), float((2 * k + 1) * np.sum(p * (1 - p)) / steps**2)


CASES = {
    # roles quantized with delayed scaling, whose inputs are i.i.d. over steps when γ ≈ 0 and
    # w_0 = 1: labels y_t, activations ⟨x_t, w_0⟩ (unquantized data), data rows (d = 1: one
    # entry per tensor), residuals; (specs, k, d)
    "labels+activations": (["labels=int8:delayed=2", "activations=int8:delayed=2"], 2, 4),
    "data": (["data=int8:nearest_even:delayed=3"], 3, 1),
    "grads": (["grads=int4:delayed=1"], 1, 4),
}


@pytest.mark.parametrize("case", CASES)
def test_delayed_scale_uses_only_earlier_steps(case):
    """An INT value saturates iff it exceeds the largest amax of the previous k steps. With i.i.d.
    inputs that is a record over a window, of known probability: a reference that peeked at the
    current step would never saturate, a longer or shorter window would shift the fraction by
    more than the tolerance (5 SE from the variance bound)."""
    specs, k, d = CASES[case]
    steps, trials = 128, 512
    problem = ql.make_problem(d, decay=1.0, noise=0.5)
    sgd = ql.SGDConfig(lr=1e-30, steps=steps, w0=np.ones(d))
    res = ql.simulate(problem, ql.Scheme.parse(specs), sgd, trials=trials, seed=5)
    mean, var = expected_record_fraction(k, steps)
    tol = 5 * np.sqrt(var / trials)
    # the test resolves its alternatives: peeking (fraction 0) and windows of k ± 1 lie more
    # than 2 tolerances away, so a result within tol of `mean` excludes them
    others = [0.0] + [expected_record_fraction(j, steps)[0] for j in (k - 1, k + 1) if j >= 1]
    assert all(abs(mean - o) > 2 * tol for o in others)
    for spec in specs:
        role = spec.split("=")[0]
        sat = res.saturation[role][0]
        assert abs(sat - mean) <= tol, (role, sat, mean, tol)


SPEED_PATH = [
    "data=nvfp4",
    "labels=int8",  # role default: delayed
    "params=mxfp4:rceil:srbits=4",
    "activations=fp8_e4m3:delayed=5:saturate",
    "grads=int4:block1",
]


@pytest.mark.parametrize("batch", [1, 3])
def test_predrawn_words_are_bit_identical_to_drawing_in_the_loop(monkeypatch, batch):
    scheme = ql.Scheme.parse(SPEED_PATH)
    storage = ql.quantize.parse_quantizer("bf16")
    sgd = ql.SGDConfig(lr=0.05, steps=70, batch=batch, storage=storage)
    kw = {"trials": 5, "seed": 9, "checkpoints": [7, 70]}
    fast = ql.simulate(PROBLEM, scheme, sgd, **kw)
    monkeypatch.setattr(sgd_module, "_PREDRAW", False)
    slow = ql.simulate(PROBLEM, scheme, sgd, **kw)
    assert np.array_equal(fast.risk, slow.risk) and np.array_equal(fast.risk_clean, slow.risk_clean)
    assert fast.saturation == slow.saturation
    assert fast.saturation["labels"][0] > 0  # the delayed label scale does saturate


def test_delayed_histories_do_not_depend_on_chunks_or_trials():
    scheme = ql.Scheme.parse(["all=int4"])
    sgd = ql.SGDConfig(lr=0.05, steps=90)
    base = ql.simulate(PROBLEM, scheme, sgd, trials=20, seed=3, checkpoints=[90])
    for kw in ({"step_chunk": 32}, {"step_chunk": 7, "trial_chunk": 16}):
        other = ql.simulate(PROBLEM, scheme, sgd, trials=20, seed=3, checkpoints=[90], **kw)
        assert np.array_equal(base.risk, other.risk), kw
    first = ql.simulate(PROBLEM, scheme, sgd, trials=3, seed=3, checkpoints=[90])
    assert np.array_equal(base.risk[:, :3], first.risk)


def test_all_int4_at_batch_one_quantizes_every_role():
    """``all=int4`` at B = 1: with a per-vector scale the labels would be returned unchanged
    (the run equals the unquantized one bit for bit, and the pipeline warns); the role default,
    delayed scaling, quantizes them."""
    sgd = ql.SGDConfig(lr=0.1, steps=50)
    kw = {"trials": 4, "seed": 1, "checkpoints": [50]}
    none = ql.simulate(PROBLEM, None, sgd, **kw).risk
    vector = ql.Scheme.parse(["labels=int4:vector"])
    assert np.array_equal(ql.simulate(PROBLEM, vector, sgd, **kw).risk, none)
    default = ql.Scheme.parse(["labels=int4"])
    assert not np.array_equal(ql.simulate(PROBLEM, default, sgd, **kw).risk, none)
    warn = RunSpec(PROBLEM, vector, sgd, trials=4).warnings()
    assert len(warn) == 1 and warn[0].startswith("labels: int4:stochastic:vector")
    assert RunSpec(PROBLEM, ql.Scheme.parse(["all=int4"]), sgd, trials=4).warnings() == []
    nv = RunSpec(PROBLEM, ql.Scheme.parse(["grads=nvfp4:tensor"]), sgd, trials=4).warnings()
    assert len(nv) == 1 and nv[0].startswith("grads: nvfp4")


@pytest.mark.parametrize("spec", ["int4::delayed=3", "fp8_e4m3::delayed", "nvfp4::delayed=5"])
def test_quantize_steps_takes_the_reference_of_the_tensors_before(spec):
    """Outside the engine (the advisor, the surrogates), a delayed format on K exchangeable
    tensors takes as reference the largest max|u| of the ``history`` tensors before each one,
    cyclically; other scalings are each tensor's own call."""
    import jax

    from qlinreg import prng
    from qlinreg.quantize import parse_quantizer
    from qlinreg.quantize.formats import quantize_steps

    q = parse_quantizer(f"{spec}:nearest_even")
    rng = np.random.default_rng(0)
    u = (rng.normal(size=(7, 2, 16)) * rng.uniform(0.1, 3, size=(7, 1, 1))).astype(np.float32)
    keys = prng.derive(prng.key(0), np.arange(7, dtype=np.uint32))
    uq, ref = quantize_steps(q, keys, u)
    amax = np.abs(u).max(axis=(1, 2))
    k = q.history
    want = np.array([max(amax[(i - j) % 7] for j in range(1, k + 1)) for i in range(7)])
    np.testing.assert_array_equal(np.asarray(ref), want)
    for i in range(7):
        np.testing.assert_array_equal(np.asarray(uq[i]), np.asarray(q.apply(u[i], None, want[i])))
    plain = parse_quantizer(spec.split("::")[0] + ":nearest_even:tensor")
    uq, ref = quantize_steps(plain, keys, u)
    assert ref is None
    np.testing.assert_array_equal(np.asarray(uq), np.asarray(jax.vmap(plain)(keys, u)))
