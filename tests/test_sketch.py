"""The follow-up's sketched model: the exact reduction, its exact risk against Monte Carlo
(the engine on the reduction and the literal sketched update), and the options."""

import numpy as np
import pytest
from typer.testing import CliRunner

import qlinreg as ql
from qlinreg import Additive, Multiplicative, MultiplicativeElementwise, Scheme
from qlinreg.cli import app
from qlinreg.config import RunConfig
from qlinreg.pipeline import RunSpec, run
from qlinreg.sketch import Sketch, simulate_sketched, sketched_model
from qlinreg.sweep import Sweep

CKPTS = [30, 100, 300]


def _problem(d=12):
    rng = np.random.default_rng(5)
    return ql.Problem(np.arange(1, d + 1.0) ** -1.5, rng.standard_normal(d), noise=0.3)


def test_identity_sketch_reproduces_the_unsketched_exact_risk():
    """M = d, S = I: the reduction is the problem itself (no approximation error), in its
    eigenbasis route for rotation-invariant schemes and the full-matrix one for elementwise."""
    problem = _problem(8)
    sgd = ql.SGDConfig(lr=0.2, steps=500, batch=2)
    for scheme in (Scheme.all(Additive(0.01)), Scheme.all(Multiplicative(0.05)),
                   Scheme(data=MultiplicativeElementwise(0.1), grads=Additive(0.02))):  # fmt: skip
        spec = RunSpec(problem, scheme, sgd, trials=0, exact=True, sketch=Sketch(np.eye(8)))
        assert spec.offset == pytest.approx(0.0, abs=1e-14)
        got = run(spec).frame
        ref = ql.exact_risk(problem, scheme, sgd, spec.checkpoints)
        np.testing.assert_allclose(got["exact_risk"], ref.exact_risk, rtol=1e-9)
        np.testing.assert_allclose(got["exact_risk_clean"], ref.exact_risk_clean, rtol=1e-9)


def test_reduction_from_its_definition():
    """H_s = S H Sᵀ, v* the H-least-squares fit of w* by Sᵀv (solved here by lstsq), the offset
    ½‖w* − Sᵀv*‖²_H, label noise σ² + 2·offset; in data coordinates too."""
    rng = np.random.default_rng(6)
    A = rng.standard_normal((10, 10))
    H = A @ A.T / 10 + 0.1 * np.eye(10)
    problem = ql.Problem.from_covariance(H, rng.standard_normal(10), noise=0.4)
    sk = Sketch(rng.standard_normal((4, 10)))
    model = sketched_model(problem, sk)
    root = np.linalg.cholesky(H).T  # ‖u‖²_H = ‖root u‖²
    v, *_ = np.linalg.lstsq(root @ sk.matrix.T, root @ problem.w_star, rcond=None)
    np.testing.assert_allclose(model.v_star, v, rtol=1e-9)
    r = problem.w_star - sk.matrix.T @ v
    assert model.approx == pytest.approx(0.5 * r @ H @ r, rel=1e-9)
    np.testing.assert_allclose(model.reduced.covariance, sk.matrix @ H @ sk.matrix.T, rtol=1e-9)
    np.testing.assert_allclose(model.reduced.w_star, v, rtol=1e-9)
    assert model.reduced.noise == pytest.approx(0.4 + 2 * model.approx, rel=1e-12)
    # the residual is uncorrelated with z = Sx: S H (w* − Sᵀv*) = 0
    np.testing.assert_allclose(sk.matrix @ H @ r, 0, atol=1e-10)


def _within(mc, exact, se, k=4.0):
    assert np.all(np.abs(mc - exact) <= k * se), (mc, exact, se)


@pytest.mark.parametrize(
    "scheme",
    [
        Scheme(data=Additive(0.05), params=Additive(0.01), grads=Multiplicative(0.1)),
        Scheme(data=Multiplicative(0.2), activations=Additive(0.05), labels=Multiplicative(0.1)),
    ],
    ids=["additive data", "multiplicative data"],
)
def test_sketched_exact_matches_monte_carlo(scheme):
    """Exact risk of the sketched model (reduction + offset) against two Monte Carlo routes
    within 4 SE, both conventions, 3 checkpoints: the engine on the reduction (the pipeline)
    and the literal update (x drawn, sketched, quantized). 2 × 12 comparisons at 4 SE."""
    problem = _problem()
    sgd = ql.SGDConfig(lr=0.15, steps=300, batch=2)
    sk = Sketch.gaussian(5, problem.d, seed=2)
    spec = RunSpec(problem, scheme, sgd, trials=1500, seed=1, checkpoints=CKPTS, exact=True,
                   sketch=sk)  # fmt: skip
    df = run(spec).frame
    lit = simulate_sketched(problem, sk, scheme, sgd, trials=1500, seed=7, checkpoints=CKPTS)
    summ = lit.summary()
    for conv, (mean, se) in {"": ("risk_mean", "risk_se"),
                              "_clean": ("risk_clean_mean", "risk_clean_se")}.items():  # fmt: skip
        exact = df[f"exact_risk{conv}"].to_numpy()
        _within(df[mean].to_numpy(), exact, df[se].to_numpy())
        _within(summ[mean], exact, summ[se])
    assert (df["sketch_approx"] > 0).all() and (df["sketch_dim"] == 5).all()
    assert (df["exact_risk_clean"] > df["sketch_approx"]).all()


def test_quantizing_before_the_sketch():
    """Rank-one multiplicative data: S·Q(x) = Q(Sx) in law, so the exact theory applies and the
    literal Monte Carlo matches it (4 SE); additive data before the sketch has no exact theory
    here (refused, one line) and runs by Monte Carlo."""
    problem = _problem()
    sgd = ql.SGDConfig(lr=0.15, steps=300, batch=1)
    before = Sketch.gaussian(5, problem.d, seed=2, quantize="before")
    scheme = Scheme(data=Multiplicative(0.3), grads=Additive(0.05))
    spec = RunSpec(problem, scheme, sgd, trials=1500, seed=3, checkpoints=CKPTS, exact=True,
                   sketch=before)  # fmt: skip
    df = run(spec).frame
    _within(df["risk_mean"].to_numpy(), df["exact_risk"].to_numpy(), df["risk_se"].to_numpy())
    _within(df["risk_clean_mean"].to_numpy(), df["exact_risk_clean"].to_numpy(),
            df["risk_clean_se"].to_numpy())  # fmt: skip
    additive = Scheme(data=Additive(0.05))
    with pytest.raises(ValueError, match="before the sketch"):
        RunSpec(problem, additive, sgd, trials=0, exact=True, sketch=before)
    mc = run(RunSpec(problem, additive, sgd, trials=200, seed=3, checkpoints=CKPTS, sketch=before))
    after = Sketch.gaussian(5, problem.d, seed=2)
    ex = run(RunSpec(problem, additive, sgd, trials=0, exact=True, checkpoints=CKPTS, sketch=after))
    assert mc.status == "ok" and np.isfinite(mc.frame["risk_mean"]).all()
    # S·e has covariance εSSᵀ, not εI: a different quantized-input risk from "after"
    assert abs(mc.frame["risk_mean"].iloc[-1] - ex.frame["exact_risk"].iloc[-1]) > 0.01


def test_sketch_options_and_validation(tmp_path):
    cfg = RunConfig(dim=20, sketch=8, trials=0, exact=True, steps=100)
    spec = cfg.spec()
    assert cfg.sketch == "8" and spec.sketch.M == 8 and spec.model.d == 8
    np.testing.assert_allclose(spec.sketch.matrix, Sketch.gaussian(8, 20).matrix)
    # nested Gaussian sketches: S_M = first M rows of S_M' times √(M'/M)
    big, small = Sketch.gaussian(16, 20, seed=3), Sketch.gaussian(8, 20, seed=3)
    np.testing.assert_allclose(small.matrix, big.matrix[:8] * np.sqrt(2))
    assert RunConfig(dim=20, sketch=8).digest() != RunConfig(dim=20, sketch=9).digest()
    path = tmp_path / "S.npy"
    np.save(path, np.eye(20)[:6])
    assert RunConfig(dim=20, sketch=str(path), trials=0, exact=True).spec().sketch.M == 6
    bad = {
        "sketch_quantize": {"dim": 20, "sketch_quantize": "before"},
        "singular": {"dim": 20, "sketch": 30},
        "sketch must be": {"dim": 20, "sketch": "S.txt"},
        "columns": {"dim": 10, "sketch": str(path)},
        "after' or 'before": {"dim": 20, "sketch": 5, "sketch_quantize": "during"},
    }
    for match, kw in bad.items():
        with pytest.raises(ValueError, match=match):
            RunConfig(trials=0, exact=True, **kw)
    sweep = Sweep(base={"dim": 20, "trials": 0, "exact": True, "steps": 50},
                  grid={"sketch": [4, 8]})  # fmt: skip
    assert [c.spec().model.d for c in sweep.configs()] == [4, 8]


def test_cli_sketch(tmp_path):
    runner = CliRunner()
    out = tmp_path / "th"
    res = runner.invoke(app, ["theory", "--dim", "30", "--sketch", "6", "--steps", "200",
                              "--no-corollary", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_parquet(out / "theory.parquet")
    assert (df["sketch_dim"] == 6).all() and (df["exact_risk_clean"] > df["sketch_approx"]).all()
    bad = runner.invoke(app, ["run", "--dim", "30", "--sketch", "40", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.startswith("error:") and "singular" in bad.output
    assert not (tmp_path / "x").exists()
