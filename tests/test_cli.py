"""The command line end to end: files, columns, config files, and every user mistake as one
line ``error: …`` with exit status 2, no traceback and nothing written."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import qlinreg as ql
import qlinreg.sweep
from qlinreg.cli import app

runner = CliRunner()
SMALL = ["--dim", "8", "--steps", "300", "--trials", "8", "--decay", "1", "--lr", "0.1"]
COLUMNS = ["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]


def test_cli_choices_agree_with_the_library():
    """The CLI repeats some Literals to stay jax-free at start-up; they must not drift."""
    from typing import get_args

    from qlinreg import algorithm, cli, problem
    from qlinreg.quantize import rounding

    assert get_args(cli.Rounding) == rounding.ROUNDINGS == get_args(rounding.Rounding)
    assert get_args(cli.Average) == get_args(algorithm.Average)
    assert get_args(cli.Spectrum) == get_args(problem.SpectrumKind)


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
    assert (df["status"] == "ok").all() and (df["reached"] == 300).all()
    assert pd.read_csv(out / "risk.csv").shape == df.shape
    assert (out / "risk.png").stat().st_size > 10_000
    assert "risk_mean" in res.output


def test_config_file_with_cli_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "dim = 8\nsteps = 300\ntrials = 8\ndecay = 1.0\nlr = 0.1\nbatch = 2\n"
        f'quant = ["data=multiplicative:0.05"]\nout = "{tmp_path / "from_file"}"\nexact = true\n'
    )
    res = runner.invoke(app, ["run", "--config", str(cfg), "--steps", "200"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "from_file" / "risk.parquet")
    assert df["step"].iloc[-1] == 200 and df["batch"].iloc[0] == 2
    assert df["quant_data"].iloc[0] == "multiplicative:0.05"
    assert df["exact_risk"].notna().all()


def test_divergence_exits_3_marks_the_table_and_keeps_finished_checkpoints(tmp_path):
    out = tmp_path / "div"
    out.mkdir()
    (out / "risk.png").write_bytes(b"from an earlier run")
    res = runner.invoke(app, ["run", *SMALL, "--lr", "4", "--out", str(out)])
    assert res.exit_code == 3
    assert "SGD diverged at step" in res.output and "tr(H^(q))" in res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["status"] == "diverged").all()
    assert df[COLUMNS].notna().all().all() and (df["step"] <= df["reached"]).all()
    assert df["reached"].iloc[0] < 300
    assert (out / "risk.png").read_bytes() != b"from an earlier run"  # replaced, not left


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


def test_theory_only_run(tmp_path):
    out = tmp_path / "t"
    res = runner.invoke(app, ["run", *SMALL, "--trials", "0", "--exact", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert df["risk_mean"].isna().all() and df["exact_risk"].notna().all()
    assert (df["trials"] == 0).all()


def test_theory_command_at_huge_n(tmp_path):
    out = tmp_path / "t"
    args = ["theory", "--dim", "50", "--steps", str(10**12), "-q", "all=multiplicative:0.01",
            "--bound", "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "theory.parquet")
    assert df["step"].max() == 10**12
    assert list(df["step"]) == list(ql.geometric_checkpoints(10**12))  # ~10 per decade
    assert df["exact_risk"].notna().all() and df["bound"].notna().all()
    assert df["risk_mean"].isna().all() and (df["trials"] == 0).all()
    assert (out / "theory.png").exists() and (out / "theory.csv").exists()


def test_schedule_options(tmp_path):
    out = tmp_path / "s"
    res = runner.invoke(
        app, ["run", *SMALL, "--schedule", "101:0.05", "--exact", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["lr_schedule"] == "101:0.05").all() and df["exact_risk"].notna().all()
    res = runner.invoke(app, ["run", *SMALL, "--step-decay", "0.5", "--exact", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (
        pd.read_parquet(out / "risk.parquet")["lr_schedule"].iloc[0].startswith("38:0.05;75:0.025;")
    )  # ⌈300/log2 300⌉ = 37


def test_store_weights_option(tmp_path):
    out = tmp_path / "w"
    res = runner.invoke(
        app, ["run", *SMALL, "--store-weights", "bf16:nearest_even", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out / "risk.parquet")
    assert (df["storage"] == "bf16:nearest_even").all() and df["risk_mean"].notna().all()


def test_exact_format_at_batch_one_warns(tmp_path):
    res = runner.invoke(app, ["run", *SMALL, "-q", "grads=int4:vector", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "warning: grads: int4:stochastic:vector leaves this role unquantized" in res.stderr
    assert "int4:delayed" in res.stderr  # the fix it suggests
    for ok in ("grads=int4::scale=0.5", "grads=int4"):  # a fixed scale; the role default
        res = runner.invoke(app, ["run", *SMALL, "-q", ok, "--out", str(tmp_path)])
        assert res.exit_code == 0 and "warning" not in res.stderr, ok


def test_spectrum_command(tmp_path):
    res = runner.invoke(
        app, ["spectrum", "--dim", "20", "--samples", "2000", "-q", "additive:0.01", "-q", "int8",
              "--out", str(tmp_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "spectrum.parquet")
    assert set(df["quantizer"]) == {"additive:0.01", "int8"} and df["lambda_q_est"].notna().all()
    assert (tmp_path / "spectrum.png").exists()


def test_formats_command(tmp_path):
    out = tmp_path / "eps.csv"
    res = runner.invoke(app, ["formats", "--dim", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    row = df.set_index("format").loc["int8"]
    assert row["paper_model"] == "additive" and row["measured_model"] == "additive"
    assert df.set_index("format").loc["fp8_e4m3", "paper_model"] == "multiplicative"
    assert "int8" in res.output and "measured" in res.output
    lines = res.output.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in res.output  # readable in 80 columns
    for name in ("nvfp4", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "mxfp4:rceil"):
        assert any(line.startswith(name + " ") for line in lines), name
    blocks = df.set_index("format")["blocks_saturated"]
    assert blocks["mxfp4:rceil"] == 0 and blocks["mxfp4"] > 0  # rceil never saturates a max


def test_sweep_command(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "[base]\ndim = 4\ndecay = 1.0\nsteps = 60\ntrials = 8\n[grid]\nnoise = [0.5, 1, 1.0]\n"
    )
    store = tmp_path / "store"
    res = runner.invoke(app, ["sweep", str(grid), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "2 cells" in res.output  # noise = 1 and noise = 1.0 are one cell
    assert "2 of 2 cells of this sweep are in the store" in res.output
    other = tmp_path / "other.toml"
    other.write_text("[base]\ndim = 4\ndecay = 1.0\nsteps = 60\ntrials = 8\n[grid]\nlr = [0.2]\n")
    res = runner.invoke(app, ["sweep", str(other), "--store", str(store)])
    assert "1 of 1 cells of this sweep are in the store" in res.output  # not 3 of 1
    diverging = tmp_path / "div.toml"
    diverging.write_text(
        "[base]\ndim = 4\ndecay = 1.0\nsteps = 300\ntrials = 8\n[grid]\nlr = [5.0]\n"
    )
    res = runner.invoke(app, ["sweep", str(diverging), "--store", str(store)])
    assert res.exit_code == 3 and "diverged after step" in res.stderr


# ------------------------------------------------------------------------------- bad input

FILE = "a_file"


def _toml(text: str):
    def make(d):
        (d / "c.toml").write_text(text.replace("{d}", str(d)))
        return ["run", "--config", str(d / "c.toml")]

    return make


def _file(name: str, data: bytes, *args: str):
    def make(d):
        (d / name).write_bytes(data)
        return [a.replace("{d}", str(d)) for a in args]

    return make


def _sweep(text: str, *extra: str):
    def make(d):
        (d / "g.toml").write_text(text)
        return ["sweep", str(d / "g.toml"), "--store", str(d / "out"), *extra]

    return make


def _args(*args: str):
    return lambda d: [a.replace("{d}", str(d)) for a in args]


GOOD_GRID = "[base]\ndim = 4\nsteps = 20\n[grid]\nlr = [0.1]\n"
BAD_INPUTS = [
    # (command builder, message fragment)
    (
        _args("run", "--steps", "1099511627776", "--out", "{d}/out"),
        "steps (N) must be ≤ 2147483647",
    ),
    (
        _args("run", "--seed", str(2**64), "--out", "{d}/out"),
        "seed must be an integer in [0, 2^64)",
    ),
    (_args("run", "--seed", "-1", "--out", "{d}/out"), "seed must be an integer ≥ 0"),
    (_args("run", "--decay", "1e6", "--out", "{d}/out"), "decay = 1e+06 with dim = 200"),
    (_args("run", "-q", "data=additive:0.1", "-q", "data=int8", "--out", "{d}/out"), "given twice"),
    (_args("run", "-q", "data=int8:scale=-1", "--out", "{d}/out"), "scale must be a finite number"),
    (
        _args("run", "-q", "grads=int8", "--exact", "--out", "{d}/out"),
        "Monte Carlo only",
    ),
    (_args("run", "--store-weights", "bf16", "--exact", "--out", "{d}/out"), "weight storage"),
    (_args("run", "--average", "tail", "--bound", "--out", "{d}/out"), "Polyak average"),
    (_args("run", "--trials", "0", "--out", "{d}/out"), "trials = 0 computes nothing"),
    (_args("run", "--dim", "0", "--out", "{d}/out"), "dim (d) must be an integer ≥ 1"),
    (_args("run", "--lr", "-0.1", "--out", "{d}/out"), "lr (γ) must be a finite number > 0"),
    (_args("run", "--quant", "bias=additive:0.1", "--out", "{d}/out"), "unknown role 'bias'"),
    (_args("run", "--quant", "data=float:0.1", "--out", "{d}/out"), "unknown quantizer kind"),
    (_args("run", "--average", "mean", "--out", "{d}/out"), "'mean' is not one of"),
    (_args("run", "--dim", "abc", "--out", "{d}/out"), "Invalid value for '--dim'"),
    (_args("run", "--schedule", "5:abc", "--out", "{d}/out"), "STEP must be an integer and LR"),
    (_args("run", "--schedule", "50000:0.1", "--out", "{d}/out"), "schedule steps must increase"),
    (_args("run", "--step-decay", "2", "--out", "{d}/out"), "factor must be a number in (0, 1)"),
    (_args("run", "--step-decay", "0.5", "--bound", "--out", "{d}/out"), "constant step size"),
    (_args("run", "--step-decay", "0.5", "--schedule", "9:0.1", "--out", "{d}/out"), "not both"),
    (_args("theory", "--trials", "5", "--out", "{d}/out"), "--trials does not apply"),
    (_args("theory", "--lr", "3", "--steps", str(10**12), "--out", "{d}/out"), "unstable"),
    (_args("run", "--out", f"{{d}}/{FILE}"), "is a file, not a folder"),
    (_args("run", "--out", f"{{d}}/{FILE}/sub"), "a part of that path is a file"),
    (_toml('lr = "0.1"\nout = "{d}/out"'), "lr must be a number, got '0.1'"),
    (_toml("lr = true"), "lr must be a number, got True"),
    (_toml("noise = true"), "noise must be a number, got True"),
    (_toml('exact = "no"'), "exact must be true or false"),
    (_toml("out = 5"), "out must be a folder path"),
    (_toml("learning_rate = 0.1"), "unknown config key(s) 'learning_rate'"),
    (_toml("dim = [1"), "is not valid TOML"),
    (lambda d: ["run", "--config", str(d)], "is a folder, not a TOML file"),
    (_file("b.toml", b"\xff\xfe\x00bin", "run", "-c", "{d}/b.toml"), "is not a text (UTF-8 TOML)"),
    (_args("spectrum", "--seed", "-1", "--out", "{d}/out"), "seed must be an integer in [0, 2^64)"),
    (_args("spectrum", "--seed", str(2**64), "--out", "{d}/out"), "seed must be an integer in"),
    (_args("spectrum", "--samples", "0", "--out", "{d}/out"), "samples must be an integer ≥ 2"),
    (_args("spectrum", "--out", f"{{d}}/{FILE}"), "is a file, not a folder"),
    (_args("formats", "--out", "{d}"), "is a folder; give a file name"),
    (_args("formats", "--out", f"{{d}}/{FILE}/eps.csv"), "is a file, not a folder"),
    (_args("formats", "--rounding", "up"), "Invalid value for '--rounding'"),
    (_args("reproduce", "--out", f"{{d}}/{FILE}"), "is a file, not a folder"),
    (_args("reproduce", "--only", "nope", "--out", "{d}/out"), "'nope' is not one of"),
    (_sweep(GOOD_GRID, "--executor", "bogus"), "Invalid value for '--executor'"),
    (_sweep(GOOD_GRID, "--scheduler", "notanaddress"), "scheduler must be a Dask address"),
    (_sweep(GOOD_GRID, "--executor", "dask", "--workers", "0"), "workers must be an integer ≥ 1"),
    (_sweep(GOOD_GRID, "--executor", "dask", "--workers", "-2"), "workers must be an integer ≥ 1"),
    (_sweep(GOOD_GRID, "--workers", "2"), "workers needs executor 'dask'"),
    (_sweep(""), "defines no cells"),
    (_sweep("[base]\ndim = 4\n[grid]\nlr = [true]\n"), "lr must be a number, got True"),
    (_sweep("[grid]\nlr = 0.1\n"), "grid.lr must be a non-empty list"),
    (_sweep("[base]\nout = 'x'\n[grid]\nlr = [0.1]\n"), "out is not a sweep field"),
    (lambda d: ["sweep", str(d / "none.toml"), "--store", str(d / "out")], "does not exist"),
    (
        _file("g.toml", GOOD_GRID.encode(), "sweep", "{d}/g.toml", "--store", f"{{d}}/{FILE}"),
        "is a file, not a folder",
    ),
]


@pytest.mark.parametrize(("build", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, build, message):
    (tmp_path / FILE).write_text("not a folder")
    args = build(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's sysfs (not writable)")
def test_unwritable_out_is_refused_before_any_work():
    res = runner.invoke(app, ["run", "--out", "/sys/qlinreg-test"])
    assert res.exit_code == 2 and "is not a writable folder" in res.stderr


def test_unreachable_scheduler_says_which_address(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(qlinreg.sweep, "_CONNECT_TIMEOUT", "1s")
    grid = tmp_path / "g.toml"
    grid.write_text(GOOD_GRID)
    args = ["sweep", str(grid), "--store", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:9"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "could not connect to the Dask scheduler at tcp://127.0.0.1:9" in res.stderr
    assert "Traceback" not in res.output
