"""``qlinreg run`` end to end: files, columns, config files, errors without tracebacks."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from qlinreg.cli import app

runner = CliRunner()
SMALL = ["--dim", "8", "--steps", "300", "--trials", "8", "--decay", "1", "--lr", "0.1"]
COLUMNS = ["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]


def test_run_writes_tables_and_figure(tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(
        app, ["run", *SMALL, "--quant", "all=additive:0.01", "-q", "params=none", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert list(df.columns[:5]) == COLUMNS
    assert df["step"].iloc[-1] == 300 and df["quant_params"].iloc[0] == "none"
    assert df["quant_data"].iloc[0] == "additive:0.01"
    assert pd.read_csv(out / "risk.csv").shape == df.shape
    assert (out / "risk.png").stat().st_size > 10_000
    assert "risk_mean" in res.output


def test_config_file_with_cli_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "dim = 8\nsteps = 300\ntrials = 8\ndecay = 1.0\nlr = 0.1\nbatch = 2\n"
        f'quant = ["data=multiplicative:0.05"]\nout = "{tmp_path / "from_file"}"\n'
    )
    res = runner.invoke(app, ["run", "--config", str(cfg), "--steps", "200"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "from_file" / "risk.parquet")
    assert df["step"].iloc[-1] == 200 and df["batch"].iloc[0] == 2
    assert df["quant_data"].iloc[0] == "multiplicative:0.05"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", "0"], "dim (d) must be an integer ≥ 1"),
        (["--batch", "0"], "batch (B) must be an integer ≥ 1"),
        (["--lr", "-0.1"], "lr (γ) must be a finite number > 0"),
        (["--steps", "0"], "steps (N) must be an integer ≥ 1"),
        (["--trials", "0"], "trials must be an integer ≥ 1"),
        (["--quant", "data=additive:-1"], "eps must be a finite number ≥ 0"),
        (["--quant", "bias=additive:0.1"], "unknown role 'bias'"),
        (["--quant", "data=float:0.1"], "unknown quantizer kind 'float'"),
        (["--quant", "data-additive"], "malformed quantization spec"),
    ],
)
def test_bad_options_exit_nonzero_without_traceback(args, message):
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("dim = 8\nlearning_rate = 0.1\n")
    res = runner.invoke(app, ["run", "--config", str(cfg)])
    assert res.exit_code == 2 and "unknown config key(s) 'learning_rate'" in res.output
    assert "allowed:" in res.output


def test_divergence_exits_nonzero_and_keeps_finished_checkpoints(tmp_path):
    out = tmp_path / "div"
    res = runner.invoke(app, ["run", *SMALL, "--lr", "4", "--out", str(out)])
    assert res.exit_code == 3
    assert "SGD diverged at step" in res.output and "tr(H^(q))" in res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert df[COLUMNS].notna().all().all()


def test_run_with_exact_and_bound_columns(tmp_path):
    out = tmp_path / "theory"
    res = runner.invoke(
        app,
        ["run", *SMALL, "-q", "all=multiplicative:0.02", "--exact", "--bound", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    for col in ("exact_risk", "exact_risk_clean", "bound", "bound_clean", "bound_var"):
        assert df[col].notna().all(), col
    assert (df["bound"] >= df["exact_risk"]).all()


def test_exact_rejects_number_formats(tmp_path):
    res = runner.invoke(app, ["run", *SMALL, "-q", "data=int8", "--exact", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "idealized quantizer" in res.output


def test_spectrum_command(tmp_path):
    res = runner.invoke(
        app, ["spectrum", "--dim", "20", "--samples", "2000", "-q", "additive:0.01", "-q", "int8",
              "--out", str(tmp_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "spectrum.parquet")
    assert set(df["quantizer"]) == {"additive:0.01", "int8"} and df["lambda_q_est"].notna().all()
    assert (tmp_path / "spectrum.png").exists()
    res = runner.invoke(app, ["spectrum", "--samples", "0"])
    assert res.exit_code == 2 and "samples must be" in res.output
