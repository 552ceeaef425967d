"""The advisor: cost model, measurement and surrogates, the search's verdict logic, the
inverse problem against an independent root finder, the joint prediction against
``exact_risk``, Monte Carlo verification within budget on two settings, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from typer.testing import CliRunner

import qlinreg
from qlinreg import SGDConfig, make_problem
from qlinreg.advise import (
    Budget,
    _joint_search,
    _pareto,
    _parse_candidate,
    _prediction,
    advise,
    agrees,
    bits_per_value,
    max_epsilon,
    measure_roles,
    role_samples,
    surrogate_for,
)
from qlinreg.cli import app
from qlinreg.quantize import Additive, MultiplicativeElementwise, Scheme, parse_quantizer

runner = CliRunner()
MENU = ["fp8_e4m3", "fp4_e2m1", "mxfp4", "int8", "int4"]
# fixed grids only: data and labels predicted from exact moments (fast); shared scales below
FIXED = ["bf16", "fp8_e4m3", "fp6_e2m3", "fp4_e2m1", "int8:scale=0.02"]


# ---- cost -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "bits"),
    [
        ("fp8_e4m3", (1, 200), 8),
        ("bf16", (200,), 16),
        ("fp4_e2m1", (4,), 4),
        ("mxfp4", (1, 200), 4 + 8 / 32),
        ("mxint8", (8,), 8 + 8 / 8),  # a block cannot be longer than the vector
        ("int8", (1, 200), 8 + 32 / 200),  # one FP32 scale per vector
        ("int8:tensor", (4, 50), 8 + 32 / 200),  # one scale per step's tensor
        ("int4:scale=0.1", (200,), 4),  # a fixed scale is not stored
        ("none", (200,), 32),
        ("nvfp4", (1, 200), 4 + 8 / 16 + 32 / 200),  # E4M3 per 16, FP32 per tensor
        ("nvfp4::block32", (2, 200), 4 + 8 / 32 + 32 / 400),
        ("int8::delayed", (1,), 8 + 32),  # one scale per step's tensor, here one label
        ("int8::block50", (4, 200), 8 + 32 / 50),
        ("fp8_e4m3::vector", (4, 200), 8 + 8 / 200),  # a power-of-two exponent per vector
        ("fp8_e4m3::tensor", (4, 200), 8 + 8 / 800),
        ("fp8_e4m3fnuz", (200,), 8),
        ("mxfp4::block16", (1, 200), 4 + 8 / 16),
    ],
)
def test_bits_per_value(text, shape, bits):
    assert bits_per_value(parse_quantizer(text), shape) == pytest.approx(bits)


def test_menu_entries_take_their_roles_defaults():
    """``-q labels=int8`` gets delayed scaling (a one-element vector at B = 1): the advisor
    measures and costs that format, with a nonzero error, where a per-vector scale would be
    exact and was flagged."""
    p, sgd = make_problem(20), SGDConfig(0.1, 400)
    s = role_samples(p, sgd, seed=1)
    q = _parse_candidate("int8", "labels")
    assert q.scaling == "delayed" and _parse_candidate("int8", "data").scaling == "block"
    m = measure_roles(q, {"labels": s["labels"]}, seed=2)["labels"]
    assert m.estimate.eps_additive > 0
    exact = measure_roles(parse_quantizer("int8"), {"labels": s["labels"]}, seed=2)["labels"]
    assert exact.estimate.eps_additive == 0
    assert _prediction(q, "labels", p) == "surrogate"  # no exact recursion with delayed scales


# ---- measurement and surrogates -------------------------------------------------------------


def test_role_samples_have_the_laws_of_the_model():
    """Labels ~ N(0, ‖w*‖²_H + σ²); the pilot starts at w_0 = 0; the output gradient is the
    label minus the activation, so with w_0 = 0 at the first record it is the label's law."""
    p, sgd = make_problem(30), SGDConfig(0.1, 500, batch=4)
    s = role_samples(p, sgd, seed=3)
    assert s["data"].shape[1:] == (4, 30) and s["labels"].shape[1:] == (4,)
    assert s["params"].shape[1:] == (30,) and s["activations"].shape[1:] == (4,)
    var = float(np.sum(p.spectrum * p.w_star**2) + p.noise)
    y = s["labels"].ravel()
    se = var * math.sqrt(2 / y.size)  # SE of a sample variance of a Gaussian
    assert abs(y.var() - var) < 4 * se
    np.testing.assert_array_equal(s["params"][0], 0.0)
    np.testing.assert_array_equal(s["activations"][:8], 0.0)
    # feature variances: λ_i per coordinate
    X = s["data"].reshape(-1, 30)
    se_x = p.spectrum * math.sqrt(2 / X.shape[0])
    assert np.all(np.abs(X.var(axis=0) - p.spectrum) < 4.5 * se_x)


@pytest.mark.parametrize("role", ["labels", "params", "data"])
def test_surrogate_recovers_an_idealized_additive_error(role):
    """Measuring an idealized quantizer gives it back: additive ε on a role is measured as
    additive with ε within sampling error (``ε`` is matched in the norm the risk sees, which
    for additive noise is ε itself)."""
    p, sgd = make_problem(20), SGDConfig(0.1, 300, batch=2)
    s = role_samples(p, sgd, seed=1)
    eps = 0.01
    m = measure_roles(Additive(eps), {role: s[role]}, seed=5)[role]
    sur = surrogate_for(role, m, p)
    assert isinstance(sur, Additive) and m.estimate.model == "additive"
    if role == "params":  # ε̂ = Σ λ_i δ̂_i / Σ λ_i, each δ̂_i a mean of K squared N(0, ε)
        K = s[role].shape[0]
        se = eps * math.sqrt(2 * np.sum(p.spectrum**2) / K) / p.spectrum.sum()
    else:  # ε̂ = mean of every squared N(0, ε) error
        se = eps * math.sqrt(2 / s[role].size)
    assert abs(sur.eps - eps) < 4 * se


def test_surrogate_of_elementwise_multiplicative_params_is_energy_matched():
    """Elementwise multiplicative error on the parameters: ε recovered in the H-weighted norm
    (``Σ H_ii δ_i / Σ H_ii E w_i²``), within sampling error of the ζ draws."""
    p, sgd = make_problem(20), SGDConfig(0.1, 2000)
    s = role_samples(p, sgd, seed=2)
    eps = 0.02
    m = measure_roles(MultiplicativeElementwise(eps), {"params": s["params"]}, seed=9)["params"]
    sur = surrogate_for("params", m, p)
    assert isinstance(sur, MultiplicativeElementwise) and m.estimate.model == "multiplicative"
    assert sur.eps == pytest.approx(eps, rel=0.2)  # ~60 records × 20 coordinates, ζ² has CV √2


# ---- search verdict logic ------------------------------------------------------------------


def _opt(role, quant, bits, pen):
    return ({"role": role, "quant": quant, "bits_per_step": bits, "predicted_penalty": pen}, None)


def test_pareto_keeps_only_undominated_options():
    opts = [_opt("a", "x", 10, 0.5), _opt("a", "y", 20, 0.1), _opt("a", "z", 15, 0.6),
            _opt("a", "", 32, 0.0), _opt("a", "w", 20, 0.2)]  # fmt: skip
    front = [o[0]["quant"] for o in _pareto(opts)]
    assert front == ["x", "y", ""]


class _FakePenalties:
    """Joint penalty = ``factor ×`` the sum of penalties alone (schemes carry them as ε)."""

    def __init__(self, factor):
        self.factor, self.calls = factor, 0

    def penalty(self, scheme, conv):
        self.calls += 1
        return self.factor * sum(float(getattr(q, "eps", 0.0)) for _, q in scheme.items())


def _fronts(n_roles, costs=(4, 8, 32), pens=(0.3, 0.1, 0.0)):
    roles = ["data", "labels", "params", "activations", "grads"][:n_roles]
    fronts = {}
    for r in roles:
        fronts[r] = [
            ({"quant": f"{r}=c{c}" if c != 32 else "", "bits_per_step": c,
              "predicted_penalty": p}, Additive(p))
            for c, p in zip(costs, pens, strict=True)
        ]  # fmt: skip
    return fronts


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_joint_search_exhaustive_finds_the_cheapest_within_budget(factor):
    """Two roles, 9 combinations (all checked): the cheapest whose joint penalty fits."""
    budget = 0.35
    joint = _joint_search(_fronts(2), _FakePenalties(factor), "quantized", budget, 64.0)
    assert joint["checked"].all()
    fits = joint[joint["penalty"] <= budget].sort_values(["bits_per_step", "penalty"])
    best = fits.iloc[0]
    # factor 1: 0.3 + 0.0 (cost 36) is beaten by 0.1 + 0.1 (cost 16); factor 1.5: 0.3 > 0.35/1.5
    expect = (16, 0.2) if factor == 1.0 else (16, 0.3)
    assert (best["bits_per_step"], best["penalty"]) == pytest.approx(expect)


def _cheapest_fit(joint, factor, budget):
    """The cheapest combination whose fake joint penalty (factor × its sum) fits."""
    fit = joint[factor * joint["penalty_additive"] <= budget + 1e-12]
    return fit["bits_per_step"].min()


@pytest.mark.parametrize(("factor", "budget"), [(1.0, 0.3), (1.0, 2.0), (0.6, 0.3)])
def test_joint_search_shortlist_finds_the_cheapest_fit(factor, budget):
    """4⁵ = 1024 combinations (more than EXHAUSTIVE): pass 1 checks, in order of cost, those
    whose sum of penalties alone fits, until two fit; pass 2 those whose sum is within
    SLACK × budget and that are cheaper than the second fit (a sub-additive joint penalty,
    factor 0.6). The cheapest fitting combination of all 1024 is found, with ≤ 64 checks."""
    fronts = _fronts(5, costs=(2, 4, 8, 32), pens=(0.5, 0.2, 0.05, 0.0))
    pen = _FakePenalties(factor)
    joint = _joint_search(fronts, pen, "quantized", budget, 160.0)
    checked = joint[joint["checked"]]
    assert len(checked) == pen.calls <= 64
    np.testing.assert_allclose(checked["penalty"], factor * checked["penalty_additive"])
    fits = checked[checked["penalty"] <= budget]
    assert len(fits) >= 2
    assert fits["bits_per_step"].min() == _cheapest_fit(joint, factor, budget)


def test_joint_search_falls_back_to_a_greedy_descent():
    """Strongly super-additive joint penalties (3 × the sum): too few of the cheapest
    combinations whose sum fits really fit within 64 checks; the greedy descent from
    all-FP32 then returns a fitting scheme, each of its steps checked."""
    fronts = _fronts(5, costs=(2, 4, 8, 32), pens=(0.5, 0.2, 0.05, 0.0))
    pen = _FakePenalties(3.0)
    joint = _joint_search(fronts, pen, "quantized", 0.31, 160.0)
    checked = joint[joint["checked"]]
    fits = checked[checked["penalty"] <= 0.31]
    assert joint.loc[joint["bits_per_step"] == 160, "checked"].all()  # the descent's start
    np.testing.assert_allclose(checked["penalty"], 3 * checked["penalty_additive"])
    # two roles at c8 (3·0.1 = 0.3) and the rest FP32 is the cheapest fit of all
    assert fits["bits_per_step"].min() == _cheapest_fit(joint, 3.0, 0.31) == 2 * 8 + 3 * 32


@pytest.mark.parametrize(
    ("pred", "meas", "se", "ok"),
    [(1.0, 1.27, 0.06, True), (1.0, 1.29, 0.06, False), (1.0, 0.76, 0.05, True),
     (1.0, 0.7, 0.05, False), (0.0, 0.0, 0.0, True), (0.0, 1e-3, 3e-4, False)],
)  # fmt: skip
def test_agreement_verdict(pred, meas, se, ok):
    """Within 3 SE + 10 % of the prediction, either side of the threshold."""
    assert agrees(pred, meas, se) is ok


# ---- the inverse problem -------------------------------------------------------------------


def test_max_eps_matches_an_independent_root_of_the_closed_form():
    """Horizon ∞, additive data error: the penalty is ApproxErr(ε) = ½Σ λ_i w*_i² ε/(λ_i + ε)
    (quantized inputs) and ½Σ λ_i w*_i² (ε/(λ_i + ε))² (clean), increasing in ε. The solver's
    largest ε matches scipy's root of these formulas, written here from SPEC §4, to 1 %."""
    p = make_problem(50)
    lam, w2 = p.spectrum, p.w_star**2
    laws = {
        "quantized": lambda e: 0.5 * np.sum(lam * w2 * e / (lam + e)),
        "clean": lambda e: 0.5 * np.sum(lam * w2 * (e / (lam + e)) ** 2),
    }
    budget = Budget(0.05, horizon="inf")
    table = max_epsilon(p, SGDConfig(0.1, 1000), budget, roles=["data"], kinds=["additive"])
    for _, row in table.iterrows():
        law = laws[row["convention"]]
        root = brentq(lambda le, law=law: law(10.0**le) - 0.05, -12, 0)
        assert row["max_eps"] == pytest.approx(10.0**root, rel=0.01)


def test_max_eps_at_N_matches_bisection_on_exact_risk():
    """At horizon N the solver's ε has the budget's penalty (checked with exact_risk directly)
    and ε(1 + 2 %) exceeds it: the largest ε, to the solver's precision."""
    p, sgd = make_problem(30), SGDConfig(0.1, 2000)
    full = qlinreg.exact_risk(p, Scheme(), sgd, [2000]).exact_risk[-1]
    table = max_epsilon(p, sgd, Budget(2e-4), roles=["params"], kinds=["additive"],
                        conventions=["quantized"])  # fmt: skip
    eps = float(table["max_eps"].iloc[0])

    def penalty(e):
        return qlinreg.exact_risk(p, Scheme(params=Additive(e)), sgd, [2000]).exact_risk[-1] - full

    assert penalty(eps) <= 2e-4 < penalty(eps * 1.02)


# ---- the whole advice ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_advice():
    p, sgd = make_problem(50), SGDConfig(0.1, 2000)
    return p, sgd, advise(p, sgd, Budget(0.1, relative=True), menu=FIXED, trials=64, seed=1)


def test_joint_prediction_is_the_exact_risk_of_the_recommended_scheme(paper_advice):
    """The recommendation's predicted penalty is exact_risk(scheme) − exact_risk(full), the
    scheme rebuilt here from advice.csv: the format itself where the prediction used its own
    moments (data and labels), its idealized surrogate elsewhere."""
    from qlinreg.advise import ADVISE_SAMPLES

    p, sgd, a = paper_advice
    cands = a.candidates.set_index("quant")
    roles = {}
    for q in a.recommended["quant"]:
        row = cands.loc[q]
        eps = row["surrogate_eps"]
        if row["prediction"] in ("exact", "estimated"):
            roles[row["role"]] = parse_quantizer(q.split("=", 1)[1])
        elif row["surrogate"].startswith("additive"):
            roles[row["role"]] = Additive(eps)
        else:
            roles[row["role"]] = MultiplicativeElementwise(eps)
    assert any(cands.loc[q, "prediction"] == "exact" for q in a.recommended["quant"])
    kw = {"samples": ADVISE_SAMPLES, "seed": 1}
    risk = qlinreg.exact_risk(p, Scheme(**roles), sgd, [sgd.steps], **kw).exact_risk[-1]
    full = qlinreg.exact_risk(p, Scheme(), sgd, [sgd.steps]).exact_risk[-1]
    assert a.recommended["penalty"] == pytest.approx(risk - full, rel=1e-6)
    assert a.full_risk == pytest.approx(full, rel=1e-9)


def test_recommendation_is_within_budget_and_cheapest_of_the_checked(paper_advice):
    _, _, a = paper_advice
    rec = a.recommended
    assert rec["penalty"] <= a.budget_abs
    checked = a.joint[a.joint["checked"] & (a.joint["penalty"] <= a.budget_abs)]
    assert rec["bits_per_step"] == checked["bits_per_step"].min()
    assert rec["cost_fraction"] < 1  # something is quantized
    # no flagged candidate is recommended
    flagged = set(a.candidates.loc[a.candidates["flags"] != "", "quant"])
    assert not flagged & set(rec["quant"])


def test_verified_penalty_within_budget_paper_setting(paper_advice):
    _, _, a = paper_advice
    v = a.verification.set_index("scheme").loc["recommended"]
    assert v["status"] == "ok"
    assert v["penalty"] <= a.budget_abs + 3 * v["penalty_se"]


def test_verified_penalty_within_budget_on_a_data_set():
    """A shipped data set in its own coordinates (diabetes, d = 10, resampled rows, raw
    target). γ = 0.01: at 0.02 full-precision SGD itself diverges on these rows (max‖x‖² = 49
    against E‖x‖² = 10), which the Gaussian theory does not see."""
    from qlinreg.config import RunConfig

    cfg = RunConfig(data="sklearn:diabetes", data_mode="empirical", lr=0.01, steps=1000,
                    trials=0, exact=True)  # fmt: skip
    p, sgd = cfg.problem(), cfg.sgd()
    a = advise(p, sgd, Budget(0.05, relative=True, convention="clean"), menu=MENU, trials=64)
    v = a.verification.set_index("scheme").loc["recommended"]
    assert v["status"] == "ok"
    assert v["penalty"] <= a.budget_abs + 3 * v["penalty_se"]


def test_horizon_inf_penalty_is_the_data_floor():
    """As N → ∞ only the data quantizer leaves a penalty: ApproxErr of the format itself
    (exact moments of a fixed grid; the closed form at N = 10¹², whose Polyak variance left over
    is O(σ²·d/N)). Unbiased label rounding leaves none; parameter and activation errors' floors
    are exactly 0 (the idealized floor formula)."""
    from qlinreg.advise import N_INF

    p, sgd = make_problem(30), SGDConfig(0.1, 1000)
    a = advise(p, sgd, Budget(1e-3, horizon="inf"), menu=["fp8_e4m3", "fp4_e2m1"],
               roundings=["stochastic"], trials=0)  # fmt: skip
    c = a.candidates.set_index("quant")
    tiny = p.noise * p.d / N_INF
    assert (
        c.loc[c["role"].isin(["params", "activations", "grads"]), "predicted_penalty"] == 0
    ).all()
    # fp8 rounding of the labels is unbiased (no saturation at |y| ≤ 448): no floor. (E2M1
    # saturates at 6: its bias leaves a small floor, which the exact theory keeps.)
    assert abs(c.loc["labels=fp8_e4m3fn:stochastic", "predicted_penalty"]) < tiny
    for name in ("fp8_e4m3", "fp4_e2m1"):
        q = parse_quantizer(f"{name}:stochastic")
        row = c.loc[f"data={q.label}"]
        assert row["prediction"] == "exact"
        floor = qlinreg.theory.approx_err(p, q)
        assert abs(row["predicted_penalty"] - floor) < tiny + 1e-9 * floor


def test_shared_scale_format_on_data_is_moment_estimated():
    """A shared-scale format (MX: a scale per block of 32) on the data: its penalty comes from
    moments estimated from sampled rows, with a standard error, and equals exact_risk's
    recomputed with the same samples and seed."""
    from qlinreg.advise import ADVISE_SAMPLES

    p, sgd = make_problem(40), SGDConfig(0.1, 1000)
    a = advise(p, sgd, Budget(0.05), menu=["mxfp4"], roundings=["stochastic"],
               roles=["data"], trials=0, seed=2)  # fmt: skip
    row = a.candidates.set_index("quant").loc["data=mxfp4:stochastic"]
    assert row["prediction"] == "estimated" and row["predicted_se"] > 0
    q = parse_quantizer("mxfp4:stochastic")
    kw = {"samples": ADVISE_SAMPLES, "seed": 2}
    risk = qlinreg.exact_risk(p, Scheme(data=q), sgd, [1000], **kw).exact_risk[-1]
    full = qlinreg.exact_risk(p, Scheme(), sgd, [1000]).exact_risk[-1]
    assert row["predicted_penalty"] == pytest.approx(risk - full, rel=1e-9)


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": Budget(0.1), "menu": ["fp9_e4m4"]}, "fp9_e4m4"),
        ({"budget": Budget(0.1), "menu": ["additive:0.1"]}, "not a number format"),
        ({"budget": Budget(0.1), "roles": ["weights"]}, "roles must be"),
        ({"budget": Budget(0.1), "cost_weights": {"data": -1}}, "cost weights"),
        ({"budget": Budget(0.1), "roundings": ["up"]}, "rounding"),
        ({"budget": Budget(1e-12), "menu": ["fp4_e2m1"], "roles": ["data"]},
         "smallest predicted penalty is"),
    ],
)  # fmt: skip
def test_bad_advice_input(kwargs, message):
    p, sgd = make_problem(20), SGDConfig(0.1, 200)
    with pytest.raises(ValueError, match=message):
        advise(p, sgd, trials=0, **kwargs)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_budget_must_be_positive(value):
    with pytest.raises(ValueError, match="budget must be a finite number > 0"):
        Budget(value)


def test_horizon_inf_needs_an_average():
    with pytest.raises(ValueError, match="horizon 'inf'"):
        advise(make_problem(10), SGDConfig(0.1, 100, average="last"), Budget(0.1, horizon="inf"))


# ---- the command -----------------------------------------------------------------------------

FAST = ["--dim", "30", "--steps", "1000", "--menu", "int8,fp8_e4m3,fp4_e2m1",
        "--rounding", "stochastic"]  # fmt: skip


def test_advise_command_writes_its_files(tmp_path):
    """Verification off (it is tested above): every file, the JSON keys, the CSV columns, the
    max-ε table, and the recommendation's quant strings run as ``qlinreg run`` options."""
    out = tmp_path / "adv"
    args = ["--solve", "eps", "--role", "data", "--role", "params", "--trials", "0"]
    res = runner.invoke(app, ["advise", "--budget", "0.05", "--relative", *FAST, *args,
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "advice.json").read_text())
    for key in ("quant", "predicted_penalty", "verified_penalty", "verified_se",
                "cost_bits_per_step", "budget"):  # fmt: skip
        assert key in doc
    assert doc["verified_penalty"] is None and doc["predicted_penalty"] <= doc["budget"]
    assert all(q.split("=")[0] in ("data", "params") for q in doc["quant"])
    cands = pd.read_csv(out / "advice.csv")
    want = {"format", "rounding", "eps_additive", "eps_multiplicative", "error_model",
            "predicted_penalty", "bits_per_value", "within_budget"}  # fmt: skip
    assert want <= set(cands.columns)
    assert set(cands["role"]) == {"data", "params"} and len(cands) == 6
    eps = pd.read_csv(out / "max_eps.csv")
    assert list(eps.columns[:4]) == ["role", "kind", "convention", "max_eps"]
    assert len(eps) == 2 * 2 * 2 and eps["corollary_4_2_eps"].notna().all()
    assert (out / "pareto.png").stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "qlinreg run -q" in summary and doc["quant"][0] in summary
    q = sum((["-q", s] for s in doc["quant"]), [])
    res = runner.invoke(app, ["run", "--dim", "30", "--steps", "50", "--trials", "2", *q,
                              "--no-progress", "--out", str(tmp_path / "r")])  # fmt: skip
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "budget must be a finite number > 0"),
        (["--budget", "-1"], "budget must be a finite number > 0"),
        (["--budget", "0.1", "--menu", "fp8_e9m9"], "fp8_e9m9"),
        (["--budget", "0.1", "--cost-weights", "data"], "ROLE=W"),
        (["--budget", "0.1", "--role", "weights"], "roles must be"),
        (["--budget", "0.1", "--dim", "0"], "dim"),
        (["--budget", "1e-12", "--menu", "fp4_e2m1", "--role", "data"],
         "smallest predicted penalty is"),
    ],
)  # fmt: skip
def test_advise_bad_input_is_one_line(tmp_path, args, message):
    out = tmp_path / "o"
    res = runner.invoke(app, ["advise", "--dim", "20", "--steps", "200", "--trials", "0",
                              *args, "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert not (out / "advice.json").exists()


# ---- the recipe's verdicts -----------------------------------------------------------------


def _row(penalty, se, predicted=1.0, budget_abs=1.0, status="ok"):
    return {"setting": "s", "budget": 0.1, "scheme": "recommended", "quant": "data=int8",
            "predicted": predicted, "penalty": penalty, "penalty_se": se,
            "budget_abs": budget_abs, "cost_fraction": 0.25, "status": status}  # fmt: skip


@pytest.mark.parametrize(
    ("row", "within", "agree"),
    [
        (_row(1.05, 0.02), True, True),  # over the budget by less than 3 SE; within 10 %
        (_row(1.07, 0.02), False, True),  # over by more than 3 SE; 0.07 ≤ 0.06 + 0.1
        (_row(1.17, 0.02), False, False),  # and beyond 3 SE + 10 % of the prediction
        (_row(0.5, 0.34), False, False),  # not resolved: 3 SE > budget
        (_row(0.5, 0.3), True, True),  # resolved (0.9 ≤ 1); |0.5 − 1| = 0.5 ≤ 0.9 + 0.1
        (_row(0.5, 0.1), True, False),  # resolved; |0.5 − 1| = 0.5 > 0.3 + 0.1
        (_row(float("nan"), float("nan"), status="diverged"), False, False),
    ],
)
def test_advisor_claim_verdicts(row, within, agree):
    from qlinreg.experiments.advisor import advisor_claims

    c_within, c_agree = advisor_claims(pd.DataFrame([row]))
    assert c_within.held is within and c_agree.held is agree
    assert ("not resolved" in c_within.measured) is (row["status"] == "ok" and 3 * row[
        "penalty_se"] > row["budget_abs"])  # fmt: skip


def test_advise_on_a_sketched_model(tmp_path):
    """With a sketch the advice runs on the sketched model's exact reduction: penalties are
    those of the reduced problem, and the full-precision risk reported (and a relative budget)
    includes the sketch's approximation error."""
    from qlinreg.sketch import Sketch, sketched_model

    out = tmp_path / "s"
    args = ["advise", "--budget", "0.5", "--relative", "--convention", "clean", "--dim", "40",
            "--sketch", "20", "--steps", "500", "--menu", "int8", "--rounding", "stochastic",
            "--role", "data", "--trials", "0", "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "advice.json").read_text())
    model = sketched_model(make_problem(40), Sketch.gaussian(20, 40, 0, "after"))
    sgd = SGDConfig(0.1, 500)
    reduced = qlinreg.exact_risk(model.reduced, Scheme(), sgd, [500]).exact_risk_clean[-1]
    assert doc["full_precision_risk"] == pytest.approx(reduced + model.approx, rel=1e-9)
    assert doc["budget"] == pytest.approx(0.5 * (reduced + model.approx), rel=1e-9)
    assert model.approx > 0.1 * reduced  # the offset matters in this check
    bad = runner.invoke(app, [*args[:-2], "--sketch-quantize", "before", "--out",
                              str(tmp_path / "b")])  # fmt: skip
    assert bad.exit_code == 2 and "before the sketch" in bad.stderr


def test_beyond_the_estimated_moments_dimension_the_advisor_falls_back_to_surrogates():
    """Moments are estimated for d ≤ 512 only: above, a shared-scale data format is predicted by
    its surrogate, and a joint scheme with biased data and biased labels (which would need
    estimated moments) by the surrogate theory, instead of the exact risk's refusal."""
    from qlinreg.advise import _Penalties

    p = make_problem(600)
    assert _prediction(parse_quantizer("int8"), "data", p) == "surrogate"
    assert _prediction(parse_quantizer("int8"), "data", make_problem(60)) == "estimated"
    assert _prediction(parse_quantizer("fp8_e4m3"), "data", p) == "exact"
    pen = _Penalties(p, SGDConfig(0.1, 200), "N")
    pair = Scheme.parse(["data=fp8_e4m3:nearest_even", "labels=fp8_e4m3:nearest_even"])
    with pytest.raises(ValueError, match="d ≤ 512"):
        qlinreg.exact_risk(p, pair, SGDConfig(0.1, 200), [200])
    assert pen.risks(pair)["moments"] == "surrogate"
    assert math.isfinite(pen.penalty(pair, "clean"))
