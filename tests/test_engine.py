"""The Monte Carlo engine against the plain NumPy reference, and its reproducibility."""

import numpy as np
import pytest

import qlinreg as ql
from qlinreg import Additive, Multiplicative, MultiplicativeElementwise, Scheme
from reference import np_sgd

D, N, TRIALS = 6, 200, 3000
CKPTS = np.array([10, 50, 200])
PROBLEM = ql.make_problem(D, decay=1.0, noise=0.5)

# (name, {role: (kind, eps)}, batch): every kind on every role, B > 1, mixed schemes.
CONFIGS = [
    ("full", {}, 1),
    ("all-additive", {r: ("additive", 0.05) for r in ql.quantize.ROLES}, 1),
    ("all-multiplicative", {r: ("multiplicative", 0.05) for r in ql.quantize.ROLES}, 1),
    ("all-additive-B4", {r: ("additive", 0.05) for r in ql.quantize.ROLES}, 4),
    (
        "all-elementwise-B4",
        {r: ("multiplicative_elementwise", 0.05) for r in ql.quantize.ROLES},
        4,
    ),
    (
        "mixed-B2",
        {
            "data": ("multiplicative", 0.1),
            "labels": ("additive", 0.1),
            "params": ("multiplicative_elementwise", 0.1),
            "activations": ("multiplicative", 0.1),
            "grads": ("additive", 0.1),
        },
        2,
    ),
]


def _scheme(quant):
    return Scheme.parse([f"{r}={k}:{e}" for r, (k, e) in quant.items()])


def _agree(a_mean, a_se, b_mean, b_se, k=4.0):
    """|a − b| ≤ k·√(se_a² + se_b²): 4 SE per comparison; with ~50 comparisons here the chance
    of a false alarm is < 0.5 % (and the seeds are fixed, so the outcome is deterministic)."""
    return np.abs(a_mean - b_mean) <= k * np.hypot(a_se, b_se)


@pytest.mark.parametrize(("name", "quant", "batch"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_engine_matches_numpy_reference(name, quant, batch):
    sgd = ql.SGDConfig(lr=0.2, steps=N, batch=batch)
    res = ql.simulate(PROBLEM, _scheme(quant), sgd, trials=TRIALS, seed=1, checkpoints=CKPTS)
    clean, qrisk = np_sgd(
        PROBLEM.spectrum, PROBLEM.w_star, PROBLEM.noise, 0.2, N, batch, TRIALS, quant, CKPTS
    )
    se = lambda a: a.std(axis=1, ddof=1) / np.sqrt(TRIALS)  # noqa: E731
    s = res.summary()
    assert np.all(_agree(s["risk_clean_mean"], s["risk_clean_se"], clean.mean(1), se(clean)))
    assert np.all(_agree(s["risk_mean"], s["risk_se"], qrisk.mean(1), se(qrisk)))


def _summary(a):
    """Mean and standard error over trials of a ``(K, trials)`` array of risks."""
    return a.mean(axis=1), a.std(axis=1, ddof=1) / np.sqrt(a.shape[1])


# Odd checkpoints test the tail start s = ⌊n/2⌋ (rounded down: w_3 … w_6 at n = 7).
AVERAGE_CKPTS = np.array([7, 51, 200])
AVERAGE_CASES = [
    ("tail", "all-multiplicative"),
    ("tail", "mixed-B2"),
    ("last", "all-additive-B4"),
    ("last", "mixed-B2"),
]


@pytest.mark.parametrize(
    ("average", "name"), AVERAGE_CASES, ids=[f"{a}-{n}" for a, n in AVERAGE_CASES]
)
def test_tail_and_last_iterate_match_numpy_reference(average, name):
    quant, batch = next((q, b) for n, q, b in CONFIGS if n == name)
    sgd = ql.SGDConfig(lr=0.2, steps=N, batch=batch, average=average)
    res = ql.simulate(
        PROBLEM, _scheme(quant), sgd, trials=TRIALS, seed=7, checkpoints=AVERAGE_CKPTS
    )
    s = res.summary()

    def ref(avg):
        args = (PROBLEM.spectrum, PROBLEM.w_star, PROBLEM.noise, 0.2, N, batch, TRIALS, quant)
        return np_sgd(*args, AVERAGE_CKPTS, seed=8, average=avg)

    clean, qrisk = ref(average)
    assert np.all(_agree(s["risk_clean_mean"], s["risk_clean_se"], *_summary(clean)))
    assert np.all(_agree(s["risk_mean"], s["risk_se"], *_summary(qrisk)))
    # The comparison has the power to tell the averages apart: the reference's other two
    # averages are rejected at some checkpoint.
    for other in {"polyak", "tail", "last"} - {average}:
        o_clean, _ = ref(other)
        assert not np.all(_agree(s["risk_clean_mean"], s["risk_clean_se"], *_summary(o_clean)))


@pytest.mark.parametrize("batch", [1, 3])
def test_shortcuts_agree_with_literal_path(batch):
    scheme = (
        Scheme(data=Additive(0.1), params=Additive(0.1))
        if batch == 1
        else Scheme(data=Additive(0.1), params=MultiplicativeElementwise(0.1))
    )
    sgd = ql.SGDConfig(lr=0.2, steps=N, batch=batch)
    runs = [
        ql.simulate(PROBLEM, scheme, sgd, trials=TRIALS, seed=2, checkpoints=CKPTS, literal=lit)
        for lit in (False, True)
    ]
    a, b = (r.summary() for r in runs)
    for key in ("risk", "risk_clean"):
        assert np.all(_agree(a[f"{key}_mean"], a[f"{key}_se"], b[f"{key}_mean"], b[f"{key}_se"]))


def test_elementwise_params_shortcut_agrees_with_literal():
    scheme = Scheme(params=MultiplicativeElementwise(0.2))
    sgd = ql.SGDConfig(lr=0.2, steps=N)
    a, b = (
        ql.simulate(
            PROBLEM, scheme, sgd, trials=TRIALS, seed=3, checkpoints=CKPTS, literal=lit
        ).summary()
        for lit in (False, True)
    )
    assert np.all(_agree(a["risk_mean"], a["risk_se"], b["risk_mean"], b["risk_se"]))


def test_zero_eps_gives_unquantized_path_bit_for_bit():
    sgd = ql.SGDConfig(lr=0.2, steps=50)
    base = ql.simulate(PROBLEM, Scheme(), sgd, trials=8, seed=4)
    for q in (Additive(0.0), Multiplicative(0.0), MultiplicativeElementwise(0.0)):
        for literal in (False, True):
            r = ql.simulate(PROBLEM, Scheme.all(q), sgd, trials=8, seed=4, literal=literal)
            np.testing.assert_array_equal(r.risk, base.risk)
            np.testing.assert_array_equal(r.risk_clean, base.risk_clean)


@pytest.mark.parametrize("scheme", [Scheme(), Scheme.all(Multiplicative(0.05))], ids=["fp", "mult"])
def test_trial_paths_do_not_depend_on_trials_or_chunking(scheme):
    sgd = ql.SGDConfig(lr=0.2, steps=120, batch=2)
    small = ql.simulate(PROBLEM, scheme, sgd, trials=3, seed=5)
    big = ql.simulate(PROBLEM, scheme, sgd, trials=41, seed=5, trial_chunk=20, step_chunk=7)
    np.testing.assert_array_equal(small.steps, big.steps)
    np.testing.assert_array_equal(big.risk[:, :3], small.risk)
    np.testing.assert_array_equal(big.risk_clean[:, :3], small.risk_clean)
    again = ql.simulate(PROBLEM, scheme, sgd, trials=3, seed=5)
    np.testing.assert_array_equal(again.risk, small.risk)
    other = ql.simulate(PROBLEM, scheme, sgd, trials=3, seed=6)
    assert not np.array_equal(other.risk, small.risk)


def test_averages_and_float64():
    sgd = ql.SGDConfig(lr=0.2, steps=64)
    ck = np.array([1, 2, 3, 64])
    res = {
        avg: ql.simulate(
            PROBLEM,
            None,
            ql.SGDConfig(lr=0.2, steps=64, average=avg),
            trials=4,
            seed=0,
            checkpoints=ck,
            dtype="float64",
        )
        for avg in ("polyak", "tail", "last")
    }
    # w_0 = 0: the Polyak average at n = 1 is w_0; the tail average at n = 1 (start 0) too.
    r0 = PROBLEM.excess_risk(np.zeros(D))  # float64 on both sides: equal to rounding
    np.testing.assert_allclose(res["polyak"].risk_clean[0], r0, rtol=1e-12)
    np.testing.assert_allclose(res["tail"].risk_clean[0], r0, rtol=1e-12)
    # Tail at n = 2 averages w_1 only, which is the last iterate at n = 1.
    np.testing.assert_allclose(res["tail"].risk_clean[1], res["last"].risk_clean[0], rtol=1e-12)
    assert res["polyak"].config["dtype"] == "float64"
    assert ql.simulate(PROBLEM, None, sgd, trials=2).risk.dtype == np.float64  # tables are f64


def test_divergence_is_detected_and_reported():
    sgd = ql.SGDConfig(lr=3.0, steps=500)
    with pytest.raises(ql.DivergenceError) as info:
        ql.simulate(PROBLEM, Scheme(data=Additive(0.1)), sgd, trials=5, seed=0)
    err = info.value
    assert err.divergence.step > 1
    # Additive data noise: H^(q) = H + εI (SPEC §4), so tr H^(q) = tr H + d·ε.
    assert err.divergence.lr == 3.0
    np.testing.assert_allclose(err.divergence.trace_H_q, PROBLEM.spectrum.sum() + D * 0.1)
    assert "γ = 3" in str(err) and "tr(H^(q))" in str(err)
    partial = err.result
    assert np.all(partial.steps < err.divergence.step)
    assert np.all(np.isfinite(partial.risk)) and np.all(np.isfinite(partial.risk_clean))


def test_to_frame_columns():
    res = ql.simulate(PROBLEM, Scheme.all(Additive(0.01)), ql.SGDConfig(0.2, 30), trials=4)
    df = res.to_frame()
    for col in ("step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se", "quant_data"):
        assert col in df.columns
    assert df["step"].iloc[-1] == 30 and df["quant_data"].iloc[0] == "additive:0.01"
