"""Every claim's verdict on small hand-built inputs: a case that meets the stated criterion holds,
one that violates it does not, with cases just either side of each numeric threshold.

Expected verdicts follow from the criterion text of each claim, not from running the recipes.
Pure pandas: no simulation, no exact recursion.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

from qlinreg.experiments.base import agreement_claim
from qlinreg.experiments.extensions import (
    ablation_claims,
    batch_claims,
    step_size_claims,
)
from qlinreg.experiments.formats import (
    _bits_claim,
    _fp_int_claims,
    _spectral_claims,
    _validation_claims,
)
from qlinreg.experiments.paper import q1_claims, q2_claims
from qlinreg.quantize import ROLES


def held(claims):
    return [c.held for c in claims]


# ------------------------------------------------------------------------------ agreement


def _agreement_frame(devs, *, exact=1.0, se=0.01, steps=None, clean_devs=None):
    """One row per deviation ``MC − exact``, in both conventions (clean: ``clean_devs``)."""
    devs = np.asarray(devs, float)
    clean = devs if clean_devs is None else np.asarray(clean_devs, float)
    return pd.DataFrame(
        {
            "step": np.full(devs.size, 1000) if steps is None else steps,
            "risk_mean": exact + devs,
            "risk_se": se,
            "exact_risk": exact,
            "risk_clean_mean": exact + clean,
            "risk_clean_se": se,
            "exact_risk_clean": exact,
        }
    )


def test_agreement_95_percent_threshold():
    # Tolerance at exact = 1, SE = 0.01: 3·0.01 + 1 % = 0.04.
    ok19 = agreement_claim("x", _agreement_frame([0.0] * 19 + [0.5]))
    assert held(ok19) == [True, True]
    assert [c.convention for c in ok19] == ["quantized", "clean"]
    assert "19 of 20" in ok19[0].measured
    ok18 = agreement_claim("x", _agreement_frame([0.0] * 18 + [0.5] * 2))
    assert held(ok18) == [False, False]
    assert "18 of 20" in ok18[0].measured


def test_agreement_tolerance_is_3_se_plus_1_percent():
    assert held(agreement_claim("x", _agreement_frame([0.039] * 20))) == [True, True]
    assert held(agreement_claim("x", _agreement_frame([-0.041] * 20))) == [False, False]
    # The SE part: SE = 0.1 gives 0.3 + 0.01.
    assert held(agreement_claim("x", _agreement_frame([0.305] * 20, se=0.1))) == [True, True]
    assert held(agreement_claim("x", _agreement_frame([0.315] * 20, se=0.1))) == [False, False]
    # The relative part scales with the exact risk: 1 % of 10 plus 3·0.01.
    assert held(agreement_claim("x", _agreement_frame([0.129] * 20, exact=10.0))) == [True] * 2
    assert held(agreement_claim("x", _agreement_frame([0.131] * 20, exact=10.0))) == [False] * 2


def test_agreement_conventions_are_judged_separately():
    df = _agreement_frame([0.0] * 20, clean_devs=[0.5] * 20)
    assert held(agreement_claim("x", df)) == [True, False]


def test_agreement_skips_early_steps_and_missing_values():
    steps = np.array([10] * 10 + [100] * 10)
    df = _agreement_frame([0.5] * 10 + [0.0] * 10, steps=steps)
    assert held(agreement_claim("x", df)) == [True, True]  # n < 100 left out
    assert "10 of 10" in agreement_claim("x", df)[0].measured
    assert held(agreement_claim("x", df, min_step=1)) == [False, False]  # 10 of 20
    assert "n ≥ 1" in agreement_claim("x", df, min_step=1)[0].criterion
    # Rows without a Monte Carlo value (theory only) do not count.
    df = _agreement_frame([0.0] * 5 + [0.5] * 5)
    df.loc[5:, ["risk_mean", "risk_clean_mean"]] = np.nan
    claims = agreement_claim("x", df)
    assert held(claims) == [True, True] and "5 of 5" in claims[0].measured


def test_agreement_without_data_gives_no_claim():
    df = _agreement_frame([0.0] * 3)
    assert agreement_claim("x", df.drop(columns=["risk_mean", "risk_clean_mean"])) == []
    only_quantized = df.drop(columns=["risk_clean_mean", "risk_clean_se", "exact_risk_clean"])
    assert [c.convention for c in agreement_claim("x", only_quantized)] == ["quantized"]
    df[["risk_mean", "risk_clean_mean"]] = np.nan
    assert agreement_claim("x", df) == []


# ------------------------------------------------------------------------------ Q1, Q2

EPS = (1e-3, 5e-3, 1e-2)


def _q1_frame(add, mul, *, add_clean=None, mul_clean=None, fp=1.0):
    """Exact risks at steps 10 and 100 for d = 200; penalties ``add``/``mul`` over ``EPS`` at
    the last step, nonsense at step 10 (only the last step may count)."""
    add_clean = add if add_clean is None else add_clean
    mul_clean = mul if mul_clean is None else mul_clean
    rows = []
    for model, pen, pen_clean in (("additive", add, add_clean), ("multiplicative", mul, mul_clean)):
        for eps, p, pc in zip((0.0, *EPS), (0.0, *pen), (0.0, *pen_clean), strict=True):
            rows.append(dict(step=100, model=model, eps=eps, d=200,
                             exact_risk=fp + p, exact_risk_clean=fp + pc))  # fmt: skip
            bad = 50.0 * (model == "multiplicative") * (eps > 0)
            rows.append(dict(step=10, model=model, eps=eps, d=200,
                             exact_risk=3.0 + bad, exact_risk_clean=3.0 + bad))  # fmt: skip
    return pd.DataFrame(rows)


def test_q1_multiplicative_below_quarter_of_additive():
    add = (0.1, 0.5, 1.0)
    claims = q1_claims(_q1_frame(add, (0.0, 0.1, 0.24)))
    assert [c.convention for c in claims] == ["quantized"] * 2 + ["clean"] * 2
    assert held(claims) == [True, True, True, True]
    assert "N=100" in claims[0].measured and "mult/add at ε=0.01: 0.240" in claims[0].measured
    assert held(q1_claims(_q1_frame(add, (0.0, 0.1, 0.26))))[::2] == [False, False]
    # Only ε = 0.01 is compared: a large multiplicative penalty at smaller ε does not matter.
    assert held(q1_claims(_q1_frame(add, (0.9, 0.9, 0.2))))[::2] == [True, True]
    # Decided per convention.
    claims = q1_claims(_q1_frame(add, (0.0, 0.1, 0.2), mul_clean=(0.0, 0.1, 0.3)))
    assert held(claims)[::2] == [True, False]


def test_q1_additive_positive_and_increasing():
    mul = (0.0, 0.0, 0.01)
    claims = q1_claims(_q1_frame((0.1, 0.5, 1.0), mul))
    assert held(claims)[1::2] == [True, True]
    assert "eps=0.001: 0.1" in claims[1].measured
    for add in ((0.1, 0.5, 0.4), (0.1, 0.1, 1.0), (-0.1, 0.5, 1.0), (0.0, 0.5, 1.0)):
        assert held(q1_claims(_q1_frame(add, mul)))[1::2] == [False, False], add
    claims = q1_claims(_q1_frame((0.1, 0.5, 1.0), mul, add_clean=(0.1, 0.6, 0.5)))
    assert held(claims)[1::2] == [True, False]


DIMS = (50, 100, 200, 400)


def _q2_frame(add, mul):
    """Penalties over ``DIMS`` at ε = 0.01 on top of a full-precision risk that depends on d
    (penalties are taken against the full-precision risk at the same d)."""
    rows = []
    for d, pa, pm in zip(DIMS, add, mul, strict=True):
        fp = 1.0 + d / 100
        rows.append(dict(model="additive", eps=0.0, d=d, exact_risk=fp, exact_risk_clean=fp))
        for model, p in (("additive", pa), ("multiplicative", pm)):
            rows.append(dict(model=model, eps=0.01, d=d, exact_risk=fp + p,
                             exact_risk_clean=fp + p))  # fmt: skip
    return pd.DataFrame(rows).assign(step=300)


def test_q2_additive_increasing_in_d():
    mul = (0.1,) * 4
    claims = q2_claims(_q2_frame((0.1, 0.2, 0.3, 0.4), mul))
    assert [c.convention for c in claims] == ["quantized"] * 2 + ["clean"] * 2
    assert held(claims)[::2] == [True, True]
    assert "d=400 / d=50: 4.00" in claims[0].measured and "N=300" in claims[0].measured
    for add in ((0.1, 0.2, 0.3, 0.25), (0.1, 0.2, 0.15, 0.4)):
        assert held(q2_claims(_q2_frame(add, mul)))[::2] == [False, False], add


def test_q2_multiplicative_ratio_below_1_1():
    add = (0.1, 0.2, 0.3, 0.4)
    claims = q2_claims(_q2_frame(add, (0.1, 0.1, 0.1, 0.109)))
    assert held(claims)[1::2] == [True, True]
    assert "d=400 / d=50: 1.090" in claims[1].measured
    assert held(q2_claims(_q2_frame(add, (0.1, 0.1, 0.1, 0.111))))[1::2] == [False, False]
    # Only the end points count: a bump in between does not matter.
    assert held(q2_claims(_q2_frame(add, (0.1, 0.5, 0.1, 0.1))))[1::2] == [True, True]


# ------------------------------------------------------------------------------ batch size

BATCHES = (1, 4, 16, 64)


def _batch_fin(slopes, *, order=None):
    """Final-step exact risks: full precision ``1 + 1/B``; each model's penalty is ``0.1·B^s``
    at the two largest B (slope ``s`` there) and an arbitrary 5.0 at the others."""
    rows = [dict(model="none", B=B, exact_risk=1 + 1 / B) for B in BATCHES]
    for model, s in slopes.items():
        for B in BATCHES:
            pen = 0.1 * B**s if B >= 16 else 5.0
            rows.append(dict(model=model, B=B, exact_risk=1 + 1 / B + pen))
    fin = pd.DataFrame(rows).assign(role="activations+grads")
    return fin if order is None else fin.iloc[order].reset_index(drop=True)


GOOD_SLOPES = {"additive": -1.0, "multiplicative": 0.0, "multiplicative_elementwise": -1.0}


def test_batch_slopes_meet_criteria():
    claims = batch_claims(_batch_fin(GOOD_SLOPES), 200)
    assert held(claims) == [True, True, True]
    assert "N=200" in claims[0].measured
    assert "log-log slope over the two largest B: -1.00" in claims[0].measured
    assert [c.criterion for c in claims] == [
        "slope in [−1.2, −0.8]", "slope > −0.3 (a floor)", "slope in [−1.2, −0.8]"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("slope", "ok"), [(-0.79, False), (-0.81, True), (-1.19, True), (-1.21, False)]
)
def test_batch_divided_by_b_boundaries(slope, ok):
    for i, model in ((0, "additive"), (2, "multiplicative_elementwise")):
        claims = batch_claims(_batch_fin({**GOOD_SLOPES, model: slope}), 200)
        expected = [True, True, True]
        expected[i] = ok
        assert held(claims) == expected, model


@pytest.mark.parametrize(("slope", "ok"), [(-0.29, True), (-0.31, False), (0.5, True)])
def test_batch_floor_boundary(slope, ok):
    claims = batch_claims(_batch_fin({**GOOD_SLOPES, "multiplicative": slope}), 200)
    assert held(claims) == [True, ok, True]


def test_batch_row_order_and_sign():
    # Rows in any order: "the two largest B" are still 16 and 64.
    rng = np.random.default_rng(0)
    fin = _batch_fin(GOOD_SLOPES, order=rng.permutation(4 * len(BATCHES)))
    assert held(batch_claims(fin, 200)) == [True, True, True]
    # A negative penalty has no log-log slope: not evidence of 1/B.
    fin = _batch_fin(GOOD_SLOPES)
    fin.loc[(fin["model"] == "additive") & (fin["B"] == 64), "exact_risk"] = 0.5
    with np.errstate(invalid="ignore"):
        assert held(batch_claims(fin, 200))[0] is False


# ------------------------------------------------------------------------------ role ablation

ABL_B = (1, 16, 256, 1024)
N, N10 = 1000, 100
DIVIDED = {("additive", r) for r in ("labels", "activations", "grads")}


def _ablation_pen(**overrides) -> pd.Series:
    """Penalties that meet every criterion: additive label/activation/gradient ∝ 1/B, all else
    flat in B; at B = 1 the data penalty is the same at N and N/10, every other one 10× larger
    at N/10. ``overrides``: ``{"model-role-B-step": value}``."""
    index, values = [], []
    for m, r, B, step in itertools.product(("additive", "multiplicative"), ROLES, ABL_B, (N10, N)):
        base = 1 / B if (m, r) in DIVIDED else 1.0
        values.append(base * (1 if r == "data" or step == N else 10))
        index.append((m, r, B, step))
    pen = pd.Series(values, index=pd.MultiIndex.from_tuples(index))
    for key, v in overrides.items():
        m, r, B, step = key.split("-")
        pen[(m, r, int(B), int(step))] = v
    return pen


def test_ablation_all_criteria_met():
    claims = ablation_claims(_ablation_pen(), ABL_B, N, N10)
    assert held(claims) == [True] * 5
    assert "exact penalty B=16 / B=1 at N=1000" in claims[0].measured
    assert "exact penalty B=1024 / B=256 at N=1000" in claims[1].measured
    assert "data ratio > 0.8" in claims[4].criterion


@pytest.mark.parametrize(("factor", "ok"), [(2.1, False), (1.9, True), (0.51, True), (0.49, False)])
@pytest.mark.parametrize("role", ["labels", "activations", "grads"])
def test_ablation_divided_by_b_within_factor_2(role, factor, ok):
    pen = _ablation_pen(**{f"additive-{role}-16-{N}": factor / 16})
    assert held(ablation_claims(pen, ABL_B, N, N10)) == [ok, True, True, True, True]


@pytest.mark.parametrize(("ratio", "ok"), [(0.69, False), (0.71, True)])
@pytest.mark.parametrize(
    ("k", "key"),
    [(1, "additive-params"), (2, "multiplicative-activations"), (3, "multiplicative-grads")],
)
def test_ablation_floor_above_0_7(k, key, ratio, ok):
    pen = _ablation_pen(**{f"{key}-1024-{N}": ratio})  # the B = 256 penalty is 1
    expected = [True] * 5
    expected[k] = ok
    assert held(ablation_claims(pen, ABL_B, N, N10)) == expected


def test_ablation_unjudged_floor_is_only_shown():
    # Additive activations are in the floor text but judged by the 1/B claim only.
    claims = ablation_claims(_ablation_pen(), ABL_B, N, N10)
    assert "addi-activations: 0.250" in claims[1].measured


@pytest.mark.parametrize(
    ("key", "ratio", "ok"),
    [
        ("additive-data", 0.79, False),
        ("multiplicative-data", 0.79, False),
        ("multiplicative-data", 0.81, True),
        ("multiplicative-params", 0.81, False),
        ("additive-labels", 0.81, False),
        ("additive-grads", 0.79, True),
    ],
)
def test_ablation_only_data_persists(key, ratio, ok):
    m, r = key.split("-")
    at_n = _ablation_pen()[(m, r, 1, N)]
    pen = _ablation_pen(**{f"{key}-1-{N10}": at_n / ratio})  # penalty at N / at N/10 = ratio
    assert held(ablation_claims(pen, ABL_B, N, N10)) == [True, True, True, True, ok]


# ------------------------------------------------------------------------------ step size

GMAX = {"full precision": 1.0, "additive ε=0.01": 0.5, "multiplicative ε=0.1": 0.25}


def _curve(gmax=GMAX):
    return pd.DataFrame(
        [dict(scheme=s, lr=f * g, gamma_max=g) for s, g in gmax.items() for f in (0.1, 0.5)]
    )


def _mc(runs, gmax=GMAX):
    """``runs``: (scheme, γ/γ_max, diverged)."""
    return pd.DataFrame(
        [
            dict(scheme=s, lr=f * gmax[s], gamma_max=gmax[s],
                 status="diverged at step 7" if div else "ok")
            for s, f, div in runs
        ]
    )  # fmt: skip


CLEAR = [(s, f, f >= 2) for s in GMAX for f in (0.1, 0.9, 2.0, 3.0)]


def test_step_size_divergence_matches_stability_limit():
    claims = step_size_claims(_curve(), _mc(CLEAR))
    assert held(claims) == [True, True]  # no Monte Carlo risk columns: no agreement claim
    assert "full precision: 1.000" in claims[0].measured
    assert "full precision γ=2" in claims[0].measured and "γ=0.9" not in claims[0].measured
    assert "additive ε=0.01: γ_max/γ_max(FP) = 0.500" in claims[1].measured


@pytest.mark.parametrize(
    ("run", "ok"),
    [
        (("full precision", 0.9, True), False),  # diverges at γ = 0.9 γ_max
        (("additive ε=0.01", 0.9, True), False),
        (("multiplicative ε=0.1", 2.0, False), False),  # survives at γ = 2 γ_max
        (("full precision", 0.95, True), True),  # between 0.9 and 2: not judged
        (("full precision", 1.9, False), True),
    ],
)
def test_step_size_divergence_boundaries(run, ok):
    runs = [r for r in CLEAR if r[:2] != run[:2]] + [run]
    assert held(step_size_claims(_curve(), _mc(runs)))[0] is ok


def test_step_size_quantized_gamma_max_lower():
    assert held(step_size_claims(_curve(), _mc(CLEAR)))[1] is True
    for g in (1.0, 1.2):
        gmax = {**GMAX, "multiplicative ε=0.1": g}
        runs = [(s, f, f >= 2) for s in gmax for f in (0.1, 2.0)]
        assert held(step_size_claims(_curve(gmax), _mc(runs, gmax)))[1] is False


def test_step_size_agreement_on_small_steps_only():
    mc = _mc([("full precision", f, div) for f, div in ((0.1, False), (0.5, False), (0.8, False),
                                                         (0.2, True))])  # fmt: skip
    # Only the first two runs (ok, γ ≤ γ_max/2) are checked; the others are far off.
    mc = mc.assign(step=200, exact_risk=1.0, risk_se=0.01, risk_mean=[1.0, 1.01, 9.0, 9.0])
    claims = step_size_claims(_curve(), mc)
    assert len(claims) == 3 and claims[2].convention == "quantized"
    assert claims[2].held and "2 of 2" in claims[2].measured
    mc.loc[1, "risk_mean"] = 9.0  # γ = γ_max/2 exactly is checked
    assert step_size_claims(_curve(), mc)[2].held is False


# ------------------------------------------------------------------------------ FP vs INT

FP_DIMS = (16, 32, 64, 128, 256)
FORMATS = ("int8", "fp8_e4m3", "fp8_e5m2")
PAPER = {  # format → (model, bits, ε); the rule: FP m = 3 beats INT8 from d = 32, m = 2 from 64
    "int8": ("additive", 8, 2.0**-16),
    "fp8_e4m3": ("multiplicative", 3, 2.0**-6),
    "fp8_e5m2": ("multiplicative", 2, 2.0**-4),
}
# Penalties at N over FP_DIMS (INT8 flat at 1): FP crosses below INT8 at d = 32√2 (m = 3) and
# 64√2 (m = 2), within a factor √2 of the rule.
AT_N = {
    "int8": [1.0] * 5,
    "fp8_e4m3": [1.5, 1.25, 0.75, 0.5, 0.5],
    "fp8_e5m2": [1.5, 1.5, 1.25, 0.75, 0.5],
}


def _floor(cross: int, d_max: int = 256) -> np.ndarray:
    """A real-format floor for every d = 1..d_max: 2 up to ``cross``, then 0.5 (INT8's is 1)."""
    return np.where(np.arange(1, d_max + 1) <= cross, 2.0, 0.5)


FLOORS = {"int8": np.ones(256), "fp8_e4m3": _floor(40), "fp8_e5m2": _floor(80)}


def _fp_int(at_n=None, at_n_clean=None, floors=None, paired=None, bits_ratio=None, models=None):
    """Inputs of ``_fp_int_claims``. Defaults meet every criterion; the clean convention copies
    the quantized one unless given. ``bits_ratio``: measured / paper ε at d = 256 per format;
    ``models``: measured model at d = 256 per format."""
    at_n = {**AT_N, **(at_n or {})}
    at_n_clean = {**at_n, **(at_n_clean or {})}
    bits_ratio = {f: 1.0 for f in FORMATS} | (bits_ratio or {})
    models = {f: PAPER[f][0] for f in FORMATS} | (models or {})
    rows = []
    for f in FORMATS:
        model, bits, eps = PAPER[f]
        for i, d in enumerate(FP_DIMS):
            measured = bits_ratio[f] * eps if d == 256 else eps
            rows.append(
                dict(
                    format=f, paper_model=model, paper_bits=bits, paper_eps=eps, d=d,
                    step=300, trials=16, penalty=at_n[f][i], penalty_clean=at_n_clean[f][i],
                    penalty_se=0.0, penalty_clean_se=0.0, penalty_surrogate=at_n[f][i],
                    penalty_surrogate_clean=at_n_clean[f][i],
                    measured_model=models[f] if d == 256 else model,
                    eps_energy_additive=measured, eps_energy_relative=measured,
                    eps_multiplicative=2 * measured,
                )
            )  # fmt: skip
    floors = {**FLOORS, **(floors or {})}
    real_floors = {f: (v, v) for f, v in floors.items()}
    cfg = {"dims": FP_DIMS, "steps": 300, "formats": FORMATS}
    return pd.DataFrame(rows), real_floors, paired or {}, cfg


def fp_int_held(**kw):
    """Verdicts as {(convention, setting, claim): held}; setting "N" or "inf", claim "overtakes"
    or "rule"."""
    claims = _fp_int_claims(*_fp_int(**kw))
    keys = itertools.product(("quantized", "clean"), ("N", "inf"), ("overtakes", "rule"))
    out = dict(zip(keys, held(claims[:8]), strict=True))
    return out, claims


def test_fp_int_all_criteria_met():
    verdicts, claims = fp_int_held()
    assert all(verdicts.values()) and len(claims) == 9  # 8 + bits (no Monte Carlo: no check)
    assert claims[-1].held
    assert [c.convention for c in claims[:8]] == ["quantized"] * 4 + ["clean"] * 4
    assert "rule: d ≥ 32" in claims[0].measured and "rule: d ≥ 64" in claims[0].measured
    assert "crossover at d ≈ 45" in claims[0].measured  # 32·√2
    assert "crossover at d ≈ 91" in claims[0].measured  # 64·√2
    assert "FP/INT penalty 1.5 at d=16, 0.5 at d=256" in claims[0].measured
    assert "from d = 32–64 on" in claims[0].criterion


@pytest.mark.parametrize(("last", "ok"), [(0.99, True), (1.01, False)])
def test_fp_int_overtakes_at_largest_d(last, ok):
    pen = [1.5, 1.5, 1.25, 1.1, last]  # m = 2 above INT8 until at most the last d
    verdicts, _ = fp_int_held(at_n={"fp8_e5m2": pen}, at_n_clean={"fp8_e5m2": AT_N["fp8_e5m2"]})
    assert verdicts["quantized", "N", "overtakes"] is ok
    assert verdicts["clean", "N", "overtakes"] is True
    assert verdicts["quantized", "inf", "overtakes"] is True


@pytest.mark.parametrize(
    ("pen", "ok"),
    [
        # rule d = 32 for m = 3: the crossover must lie in [16, 64] and above the first d
        ([2.0, 2.0, 0.95, 0.5, 0.5], True),  # 32·2^(1/1.05) ≈ 62: factor 1.93
        ([1.5, 1.5, 1.05, 0.0, 0.0], False),  # 64·2^(0.05/1.05) ≈ 66: factor 2.07
        ([1.5, 1.05, 0.0, 0.0, 0.0], True),  # ≈ 33
        ([1.5, 0.5, 0.5, 0.5, 0.5], True),  # 16√2 ≈ 23: factor 0.71
        ([0.5, 0.5, 0.5, 0.5, 0.5], False),  # below INT8 everywhere: no crossover seen
        ([1.5, 1.5, 1.5, 1.5, 1.5], False),  # never below INT8
    ],
)
def test_fp_int_crossover_within_factor_2_of_rule(pen, ok):
    verdicts, _ = fp_int_held(at_n={"fp8_e4m3": pen})
    assert verdicts["quantized", "N", "rule"] is ok
    assert verdicts["quantized", "inf", "rule"] is True


@pytest.mark.parametrize(
    ("pen", "ok"),
    [  # rule d = 64 for m = 2
        ([1.5, 1.05, 0.0, 0.0, 0.0], True),  # 32·2^(0.05/1.05) ≈ 33: factor 0.52
        ([2.0, 0.95, 0.5, 0.5, 0.5], False),  # 16·2^(1/1.05) ≈ 31: factor 0.48
    ],
)
def test_fp_int_crossover_lower_boundary(pen, ok):
    verdicts, _ = fp_int_held(at_n={"fp8_e5m2": pen})
    assert verdicts["quantized", "N", "rule"] is ok


@pytest.mark.parametrize(("cross", "ok"), [(60, True), (70, False), (17, True), (15, False)])
def test_fp_int_crossover_of_the_floors(cross, ok):
    # On the fine d grid (every d) a floor stepping down after ``cross`` crosses INT8's at
    # cross·((cross + 1)/cross)^(2/3), between cross + 0.5 and cross + 0.7.
    verdicts, claims = fp_int_held(floors={"fp8_e4m3": _floor(cross)})
    assert verdicts["quantized", "inf", "rule"] is ok
    assert verdicts["clean", "inf", "rule"] is ok
    assert verdicts["quantized", "N", "rule"] is True
    assert f"crossover at d ≈ {cross + 1}" in claims[2].measured


def test_fp_int_conventions_are_judged_separately():
    worse = {"fp8_e4m3": [1.5, 1.5, 1.5, 1.5, 1.5]}
    verdicts, _ = fp_int_held(at_n_clean=worse)
    assert verdicts["quantized", "N", "overtakes"] and verdicts["quantized", "N", "rule"]
    assert not verdicts["clean", "N", "overtakes"] and not verdicts["clean", "N", "rule"]


def test_surrogate_validation_3_se_plus_10_percent():
    df, *_ = _fp_int()  # exact surrogate penalty of int8 at d = 16: 1.0; tolerance 0.13
    inside = {("int8", 16): {"quantized": (1.12, 0.01), "clean": (0.88, 0.01)}}
    claims = _validation_claims(df, inside)[:2]  # the surrogate's, then the exact risk's
    assert held(claims) == [True, True]
    assert "int8 d=16: Monte Carlo 1.12±0.01 vs surrogate 1 (additive)" in claims[0].measured
    assert "outside: none" in claims[0].measured and "16 trials" in claims[0].measured
    outside = {("int8", 16): {"quantized": (1.14, 0.01), "clean": (0.86, 0.01)}}
    claims = _validation_claims(df, outside)[:2]
    assert held(claims) == [False, False] and "outside: int8 d=16" in claims[0].measured
    mixed = {
        ("int8", 16): {"quantized": (1.0, 0.01), "clean": (1.0, 0.01)},
        ("fp8_e4m3", 16): {"quantized": (1.5, 0.2), "clean": (2.3, 0.2)},  # tolerance 0.75
    }
    assert held(_validation_claims(df, mixed)[:2]) == [True, False]
    assert _validation_claims(df, {}) == []
    # The recipe's claim list carries them, the surrogate's then the exact risk's.
    claims = _fp_int_claims(*_fp_int(paired=inside))
    assert len(claims) == 13 and held(claims[8:10]) == [True, True]


def test_exact_risk_validation_3_se_of_both_errors():
    df, *_ = _fp_int()  # exact penalty of int8 at d = 16: 1.0, no sampling error
    inside = {("int8", 16): {"quantized": (1.029, 0.01), "clean": (0.971, 0.01)}}
    claims = _validation_claims(df, inside)[2:]
    assert held(claims) == [True, True]
    assert "int8 d=16: Monte Carlo 1.03±0.01 vs exact 1;" in claims[0].measured
    outside = {("int8", 16): {"quantized": (1.031, 0.01), "clean": (0.969, 0.01)}}
    assert held(_validation_claims(df, outside)[2:]) == [False, False]
    # A moment-estimated penalty adds its SE: 3·(0.01 ⊕ 0.02) ≈ 0.067.
    est = df.assign(penalty_se=np.where(df["format"] == "int8", 0.02, 0.0))
    claims = _validation_claims(
        est, {("int8", 16): {"quantized": (1.06, 0.01), "clean": (1, 0.01)}}
    )
    assert claims[2].held and "±0.02 (moment-estimated)" in claims[2].measured
    claims = _validation_claims(
        est, {("int8", 16): {"quantized": (1.07, 0.01), "clean": (1, 0.01)}}
    )
    assert not claims[2].held
    # No exact risk there (a shared scale beyond the estimated range): outside.
    none = df.assign(penalty=np.where(df["format"] == "int8", np.nan, df["penalty"]))
    assert not _validation_claims(none, inside)[2].held


@pytest.mark.parametrize(
    ("fmt", "ratio", "ok"),
    [("int8", 3.9, True), ("int8", 4.1, False), ("fp8_e4m3", 1 / 3.9, True),
     ("fp8_e4m3", 1 / 4.1, False), ("fp8_e5m2", 4.1, False)],
)  # fmt: skip
def test_bits_claim_factor_4(fmt, ratio, ok):
    df, *_ = _fp_int(bits_ratio={fmt: ratio})
    claim = _bits_claim(df, FP_DIMS)
    assert claim.held is ok
    assert "features at d=256" in claim.measured  # the d closest to 200 in log
    assert f"ratio {ratio:.3g}" in claim.measured


def test_bits_claim_needs_the_paper_model():
    df, *_ = _fp_int(models={"fp8_e4m3": "additive"})
    assert _bits_claim(df, FP_DIMS).held is False
    df, *_ = _fp_int(models={"int8": "multiplicative"})
    assert _bits_claim(df, FP_DIMS).held is False
    # Only d = 256 is looked at.
    df, *_ = _fp_int()
    df.loc[df["d"] == 128, "measured_model"] = "additive"
    assert _bits_claim(df, FP_DIMS).held is True


# ------------------------------------------------------------------------------ spectrum

SPEC_D, SPEC_EPS = 200, 0.01


def _spectral(z_add=0.0, z_mul=0.0, fits=None):
    """Closed form and estimate of λ^(q) for the idealized models at ε = 0.01 (estimate off by
    ``z`` SE at i = 50 only), and rows for the real formats in ``fits``."""
    lam = np.arange(1, SPEC_D + 1) ** -2.0
    se = 0.1 * lam
    frames = []

    def add(quantizer, model, method, lam_q, eps=SPEC_EPS):
        frames.append(
            pd.DataFrame(
                dict(
                    quantizer=quantizer,
                    model=model,
                    eps=eps,
                    method=method,
                    index=np.arange(1, SPEC_D + 1),
                    **{"lambda": lam},
                    lambda_q=lam_q,
                    lambda_q_se=se,
                    ratio=lam_q / lam,
                )
            )  # fmt: skip
        )

    for model, closed, z in (("additive", lam + SPEC_EPS, z_add),
                             ("multiplicative", (1 + SPEC_EPS) * lam, z_mul)):  # fmt: skip
        add(model, model, "closed form", closed)
        off = np.zeros(SPEC_D)
        off[49] = z
        add(model, model, "estimate", closed + off * se)
    for fmt in fits or {}:
        add(fmt, "format", "estimate", 1.05 * lam, eps=3e-4)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(("z", "ok"), [(3.9, True), (-3.9, True), (4.1, False), (-4.1, False)])
def test_spectrum_matches_closed_form_within_4_se(z, ok):
    claims = _spectral_claims(_spectral(z_add=z), {})
    assert held(claims) == [ok, True]
    assert f"max |estimate − closed form| = {abs(z):.2f} SE" in claims[0].measured
    claims = _spectral_claims(_spectral(z_mul=z), {})
    assert held(claims) == [True, ok]


@pytest.mark.parametrize(
    ("fmt", "fit", "ok"),
    [
        ("int8", {"additive": 0.49, "multiplicative": 1.0}, True),
        ("int8", {"additive": 0.51, "multiplicative": 1.0}, False),
        ("int8", {"additive": 1.0, "multiplicative": 0.1}, False),
        ("fp8_e4m3", {"additive": 1.0, "multiplicative": 0.49}, True),
        ("fp8_e4m3", {"additive": 1.0, "multiplicative": 0.51}, False),
        ("fp8_e5m2", {"additive": 0.1, "multiplicative": 1.0}, False),
    ],
)
def test_real_format_closer_to_paper_model_by_factor_2(fmt, fit, ok):
    fits = {fmt: fit}
    claims = _spectral_claims(_spectral(fits=fits), fits)
    assert held(claims) == [True, True, ok]
    expected = "additive" if fmt == "int8" else "multiplicative"
    assert f"like the {expected} model" in claims[2].claim
    assert f"additive model {fit['additive']:.3g}" in claims[2].measured
    assert "1.05, 1.05, 1.05, 1.05" in claims[2].measured  # λ̂^(q)/λ̂ at i = 1, 10, 100, 200


# ------------------------------------------------------------------- long run and large d


def _long_frame(scale_add: float, scale_mul: float):
    """Long-horizon rows (d = 4, ε = 0.01): each penalty = floor × scale (FP risk 0.001)."""
    from qlinreg.problem import make_problem
    from qlinreg.quantize import Additive, Multiplicative
    from qlinreg.theory import approx_err, approx_err_clean

    p, rows = make_problem(4), []
    for model, cls, scale in (
        ("additive", Additive, scale_add),
        ("multiplicative", Multiplicative, scale_mul),
    ):
        q = cls(0.01)
        rows.append({"model": model, "eps": 0.01, "d": 4, "step": 10**8, "horizon": "long",
                     "exact_risk": 1e-3 + scale * approx_err(p, q),
                     "exact_risk_clean": 1e-3 + scale * approx_err_clean(p, q)})  # fmt: skip
    rows.append({"model": "additive", "eps": 0.0, "d": 4, "step": 10**8, "horizon": "long",
                 "exact_risk": 1e-3, "exact_risk_clean": 1e-3})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("add", "mul", "ok"),
    [(1.0, 1.0, True), (1.09, 0.91, True), (1.11, 1.0, False), (1.0, 0.89, False)],
)
def test_long_run_penalty_within_10_percent_of_approx_err(add, mul, ok):
    from qlinreg.experiments.paper import long_run_claims

    claims = long_run_claims(_long_frame(add, mul), "paper_q1")
    assert [c.convention for c in claims] == ["quantized", "clean"] and held(claims) == [ok, ok]


def _large_d_frame(add_pen, add_floor, mul_pen, radius=(0.99, 1.01), clean=None):
    dims = [10**k for k in range(2, 2 + len(add_pen))]
    rows = []
    for source in ("w* = 1", "w*_i = i^-1"):
        for i, d in enumerate(dims):
            r = radius[0] if i == 0 else radius[1] if i == len(dims) - 1 else 0.995
            for scheme, pen, floor in (("additive", add_pen[i], add_floor[i]),
                                       ("multiplicative", mul_pen[i], 0.001)):  # fmt: skip
                cp = pen if clean is None else clean[i]
                rows.append({"source": source, "d": d, "scheme": scheme, "step": 10**6,
                             "radius_at_0.1": r, "penalty": pen, "penalty_clean": cp,
                             "approx_err": floor, "approx_err_clean": floor})  # fmt: skip
    return pd.DataFrame(rows)


def test_large_d_verdicts():
    from qlinreg.experiments.large_d import large_d_claims

    grows = [0.07, 0.08, 0.1, 0.15]  # ×2.14
    good = large_d_claims(_large_d_frame(grows, [0.07, 0.075, 0.076, 0.076], [8e-3] * 4))
    assert all(held(good)) and len(good) == 9
    assert "unstable from d = 10000" in good[0].measured
    stable = large_d_claims(_large_d_frame(grows, [0.07] * 4, [8e-3] * 4, radius=(0.99, 0.999)))
    assert not stable[0].held
    weak = large_d_claims(_large_d_frame([0.07, 0.08, 0.1, 0.139], [0.07] * 4, [8e-3] * 4))
    assert held(weak)[1] is False  # ×1.99 < 2
    bumpy = large_d_claims(_large_d_frame([0.07, 0.2, 0.1, 0.3], [0.07] * 4, [8e-3] * 4))
    assert held(bumpy)[1] is False  # not increasing
    floor_grows = large_d_claims(_large_d_frame(grows, [0.07, 0.08, 0.085, 0.0841], [8e-3] * 4))
    assert held(floor_grows)[1] is False  # ApproxErr ×1.201 > 1.2
    mult = large_d_claims(_large_d_frame(grows, [0.07] * 4, [8e-3, 8.7e-3, 8.79e-3, 8e-3]))
    assert held(mult)[2] is True  # max/min 1.099
    mult = large_d_claims(_large_d_frame(grows, [0.07] * 4, [8e-3, 8.7e-3, 8.81e-3, 8e-3]))
    assert held(mult)[2] is False  # 1.101
    clean = large_d_claims(
        _large_d_frame(grows, [0.07] * 4, [8e-3] * 4, clean=[0.03, 0.02, 0.04, 0.05])
    )
    assert held(clean)[1] is True and held(clean)[3] is False  # conventions judged apart


# -- real_data --------------------------------------------------------------------------------


def _real_data_inputs(add=0.02, mul=0.01, elt=0.015, i8=1e-5, f8=8e-5, se=1e-4, emp_scale=1.0):
    """Final rows (Gaussian: exact risks; empirical: Monte Carlo) and paired penalties."""
    import pandas as pd

    base, n = 0.2, 100
    models = {"none": 0.0, "additive": add, "multiplicative": mul,
              "multiplicative_elementwise": elt, "int8": np.nan, "fp8_e4m3": np.nan}  # fmt: skip
    rows, pens = [], []
    for mode in ("gaussian", "empirical"):
        for model, p in models.items():
            exact = base + p if mode == "gaussian" else np.nan
            mc = (base + (0 if np.isnan(p) else p)) * (emp_scale if mode == "empirical" else 1)
            rows.append(dict(mode=mode, check="data", model=model, B=1, step=n,
                             risk_mean=mc, risk_se=1e-3, exact_risk=exact))  # fmt: skip
            if model != "none":
                q = {"int8": i8, "fp8_e4m3": f8}.get(model, p)
                pens.append((mode, "data", model, 1, q, se, q, se))
        for B in (1, 4, 16):
            for model, p in (("none", 0.0), ("additive", 0.004 / B)):
                exact = base + p if mode == "gaussian" else np.nan
                rows.append(dict(mode=mode, check="batch", model=model, B=B, step=n,
                                 risk_mean=base + p, risk_se=1e-3, exact_risk=exact))  # fmt: skip
            pens.append((mode, "batch", "additive", B, 0.004 / B, se, 0.004 / B, se))
    cols = ["mode", "check", "model", "B", "penalty", "penalty_se"]
    pen = pd.DataFrame(pens, columns=[*cols, "penalty_clean", "penalty_clean_se"])
    return pd.DataFrame(rows), pen


def test_real_data_claims_verdicts():
    from qlinreg.experiments.real_data import real_data_claims

    df, pen = _real_data_inputs()
    claims = real_data_claims(df, pen, (2.0, 1.7), 100)
    held = {c.claim[:30] + c.measured[:8]: c.held for c in claims}
    assert all(c.held for c in claims if "additive data quantization" in c.claim)
    assert all(c.held for c in claims if "Elementwise" in c.claim)
    # 1/B scaling: slope −1 in both modes (penalties ≫ SE)
    assert all(c.held for c in claims if "divided by B" in c.claim)
    # int8 cheaper than fp8 here: the FP8 claim does not hold
    assert not any(c.held for c in claims if "FP8" in c.claim)
    gauss = [c for c in claims if "predicts the risk" in c.claim]
    assert len(gauss) == 1 and gauss[0].held, held
    # flipped inputs flip the verdicts
    df, pen = _real_data_inputs(add=0.01, mul=0.02, elt=0.005, i8=1e-3, f8=1e-5)
    claims = real_data_claims(df, pen, (2.0, 1.7), 100)
    assert not any(c.held for c in claims if "additive data quantization" in c.claim)
    assert not any(c.held for c in claims if "Elementwise" in c.claim)
    assert all(c.held for c in claims if "FP8" in c.claim)


def test_real_data_claims_need_resolution():
    """Penalties within 2 SE of 0 do not back the 1/B claim; resampled risks 20 % off the
    Gaussian exact ones fail the prediction claim."""
    from qlinreg.experiments.real_data import real_data_claims

    df, pen = _real_data_inputs(se=0.01)
    claims = real_data_claims(df, pen, (2.0, 1.7), 100)
    emp_b = [c for c in claims if "divided by B" in c.claim and "empirical" in c.claim]
    assert len(emp_b) == 1 and not emp_b[0].held and "not resolved" in emp_b[0].measured
    df, pen = _real_data_inputs(emp_scale=1.2)
    gauss = [c for c in real_data_claims(df, pen, (2.0, 1.7), 100) if "predicts" in c.claim]
    assert not gauss[0].held


def test_fp_int_at_n_uses_the_dims_where_every_format_has_an_exact_risk():
    # INT8's per-row scale has estimated moments up to some d only: beyond, NaN.
    df, floors, paired, cfg = _fp_int(at_n={"fp8_e4m3": [1.5, 1.25, 0.75, 0.5, 1.5]})
    # E4M3 back above INT8 at d = 256: it neither ends below INT8 nor crosses for good.
    assert held(_fp_int_claims(df, floors, paired, cfg)[:2]) == [False, False]
    df.loc[(df["format"] == "int8") & (df["d"] == 256), ["penalty", "penalty_clean"]] = np.nan
    claims = _fp_int_claims(df, floors, paired, cfg)
    assert held(claims[:2]) == [True, True]  # judged up to d = 128
    assert "d ≤ 128" in claims[0].claim and "0.5 at d=128" in claims[0].measured
