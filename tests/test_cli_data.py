"""``qlinreg run`` on a user's data and on a given covariance: tables, both data modes, the
exact curve where one exists, and every bad file as one line ``error: …`` (exit 2, nothing
written)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qlinreg.cli import app

runner = CliRunner()
FAST = ["--steps", "200", "--trials", "8", "--lr", "0.02", "--no-progress"]


def _csv(tmp_path, n=200, d=4):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(d)])
    df["price"] = X @ np.arange(1, d + 1) + rng.standard_normal(n)
    df["extra"] = rng.standard_normal(n)  # the last column: not the target unless asked
    path = tmp_path / "houses.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mode", ["gaussian", "empirical"])
def test_run_on_a_table_in_both_modes(tmp_path, mode):
    path, out = _csv(tmp_path), tmp_path / "r"
    args = ["run", "--data", str(path), "--target", "price", "--data-mode", mode]
    res = runner.invoke(app, [*args, *FAST, "-q", "data=multiplicative_elementwise:0.1",
                              "--exact", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["dim"] == 5).all() and (df["data_mode"] == mode).all()
    assert (df["coordinates"] == "data").all() and (df["data"] == "houses.csv").all()
    assert df["exact_risk"].notna().all() and df["risk_mean"].notna().all()


def test_run_on_a_shipped_data_set_with_random_features(tmp_path):
    out = tmp_path / "r"
    args = ["run", "--data", "sklearn:diabetes", "--features", "relu:32", "--ridge", "1e-6"]
    res = runner.invoke(app, [*args, *FAST, "--data-mode", "empirical", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["dim"] == 32).all() and df["data"].iloc[0] == "sklearn:diabetes+relu:32"


def test_run_on_a_given_covariance(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    np.save(tmp_path / "H.npy", A @ A.T / 5 + 0.1 * np.eye(5))
    np.save(tmp_path / "w.npy", rng.standard_normal(5))
    out = tmp_path / "r"
    args = ["run", "--covariance", str(tmp_path / "H.npy"), "--w-star", str(tmp_path / "w.npy")]
    res = runner.invoke(app, [*args, *FAST, "--exact", "--bound", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["dim"] == 5).all() and df["bound"].notna().all()


def _bad_npz(tmp_path, **arrays):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    return p


BAD = {
    "missing": (lambda t: t / "nope.csv", "not found"),
    "extension": (lambda t: (t / "x.txt").write_text("1") and t / "x.txt", "extension"),
    "no y": (lambda t: _bad_npz(t, X=np.ones((5, 2))), "y"),
    "lengths": (lambda t: _bad_npz(t, X=np.ones((5, 2)), y=np.ones(4)), "5"),
    "nan": (lambda t: _bad_npz(t, X=np.full((5, 2), np.nan), y=np.ones(5)), "NaN"),
    "text column": (
        lambda t: (t / "s.csv").write_text("a,b,y\n1,x,2\n3,y,4\n5,z,6\n") and t / "s.csv",
        "non-numeric",
    ),
    "n < d": (
        lambda t: _bad_npz(t, X=np.random.default_rng(0).standard_normal((3, 6)), y=np.ones(3)),
        "ridge",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_data_files_are_one_line_errors(tmp_path, case):
    build, message = BAD[case]
    path = build(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", "--data", str(path), *FAST, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0] and "Traceback" not in res.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-mode", "empirical"], "give data"),
        (["--features", "relu:8"], "needs data"),
        (["--data", "sklearn:nope"], "'nope' is unknown"),
        (["--data", "sklearn:iris", "--features", "relu:0"], "features"),
        (["--covariance", "H.npy", "--data", "sklearn:iris"], "not both"),
        (["--w-star", "w.npy"], "w_star"),
    ],
)
def test_bad_data_options_are_one_line_errors(tmp_path, args, message):
    res = runner.invoke(app, ["run", *args, *FAST, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_exact_refused_where_no_curve_exists(tmp_path):
    """Elementwise data noise on a full covariance with d > 512: no exact curve, said so."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((600, 600)) / 30
    np.save(tmp_path / "H.npy", A @ A.T + np.eye(600))
    args = ["run", "--covariance", str(tmp_path / "H.npy"), "-q",
            "data=multiplicative_elementwise:0.1", "--exact", *FAST]  # fmt: skip
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no exact risk for d = 600 > 512" in res.stderr, res.stderr


def test_spectrum_of_data_shows_H_q_in_data_coordinates(tmp_path):
    out = tmp_path / "s"
    res = runner.invoke(app, ["spectrum", "--data", "sklearn:diabetes", "-q",
                              "multiplicative_elementwise:0.2", "--samples", "2000",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "spectrum.parquet")
    assert {"lambda_q", "lambda_q_eigenbasis", "lambda_q_eig"} <= set(df.columns)
    assert not np.allclose(df["lambda_q"], df["lambda_q_eigenbasis"])
