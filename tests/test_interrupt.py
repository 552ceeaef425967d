"""Interruption keeps what finished and says so: in the engine (SIGINT delivered between two
chunks of steps), and for ``qlinreg run`` interrupted by SIGINT, SIGTERM or SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import qlinreg as ql
from qlinreg.pipeline import RunSpec, run

PROBLEM = ql.make_problem(8, decay=1.0)
SGD = ql.SGDConfig(lr=0.2, steps=640)


def _interrupt_after(n_calls: int):
    calls = []

    def callback(partial):
        calls.append(partial)
        if len(calls) == n_calls:
            os.kill(os.getpid(), signal.SIGINT)  # handled between chunks: no exception here

    return calls, callback


def test_sigint_between_chunks_keeps_every_finished_checkpoint_bit_for_bit():
    scheme = ql.Scheme.all(ql.Additive(0.01))
    kw = {"trials": 20, "seed": 3, "trial_chunk": 16, "step_chunk": 64}
    whole = ql.simulate(PROBLEM, scheme, SGD, **kw)
    calls, callback = _interrupt_after(2)
    part = ql.simulate(PROBLEM, scheme, SGD, on_checkpoint=callback, **kw)
    assert part.interrupted and part.reached == 128  # two chunks of 64 steps, all 20 trials
    assert part.steps.max() <= 128 and set(part.steps) == set(whole.steps[whole.steps <= 128])
    n = len(part.steps)
    np.testing.assert_array_equal(part.risk, whole.risk[:n])
    np.testing.assert_array_equal(part.risk_clean, whole.risk_clean[:n])
    assert all(c.interrupted for c in calls) and calls[0].reached == 64
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_pipeline_marks_an_interrupted_run_and_never_claims_it(tmp_path):
    calls, callback = _interrupt_after(1)
    spec = RunSpec(PROBLEM, None, ql.SGDConfig(0.2, 40_000), trials=16, exact=True)
    # The pipeline passes its own writer to simulate; interrupt from its per-checkpoint hook.
    res = run(spec, out=tmp_path, on_checkpoint=callback)
    assert res.status == "interrupted" and res.exit_code == 130 and 0 < res.reached < 40_000
    df = pd.read_parquet(tmp_path / "risk.parquet")
    assert (df["status"] == "interrupted").all() and (df["reached"] == res.reached).all()
    assert df.loc[df["step"] <= res.reached, "risk_mean"].notna().all()
    assert df.loc[df["step"] > res.reached, "risk_mean"].isna().all()  # not simulated
    assert df["exact_risk"].notna().all()  # the theory is complete
    from qlinreg.experiments.base import finished

    with pytest.raises(KeyboardInterrupt):
        finished(res)


CMD = [sys.executable, "-m", "qlinreg", "run", "--dim", "256", "--steps", "400000",
       "--trials", "16", "--no-progress", "--out"]  # fmt: skip


def _start_and_wait_for_table(out):
    proc = subprocess.Popen([*CMD, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / "risk.parquet").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def _check_table(df):
    """A partial table: every checkpoint up to ``reached``, complete, marked interrupted."""
    reached = int(df["reached"].iloc[0])
    assert (df["status"] == "interrupted").all() and 0 < reached < 400_000
    assert df[["risk_mean", "risk_se", "risk_clean_mean"]].notna().all().all()
    expected = ql.geometric_checkpoints(400_000)
    assert list(df["step"]) == list(expected[expected <= reached])  # every finished one
    return reached


def _check_partial(out, *, running: bool = False):
    """Both tables are valid partial tables. They are rewritten one after the other, so they
    must agree only once the run has stopped by itself (not while running, or if killed)."""
    reached = _check_table(pd.read_parquet(out / "risk.parquet"))
    csv_reached = _check_table(pd.read_csv(out / "risk.csv"))
    if not running:
        assert csv_reached == reached
    return reached


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_interrupted_writes_finished_checkpoints_and_exits_130(tmp_path, sig):
    proc = _start_and_wait_for_table(tmp_path)
    first = _check_partial(tmp_path, running=True)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "interrupted at step" in err.decode()
    assert _check_partial(tmp_path) >= first
    assert (tmp_path / "risk.png").exists()


def test_run_killed_keeps_the_last_finished_chunk(tmp_path):
    proc = _start_and_wait_for_table(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _check_partial(tmp_path, running=True)
