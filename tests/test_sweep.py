"""Sweeps: Cartesian grids, resumable Parquet store, interruption, Dask with a worker killed."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from qlinreg.sweep import Sweep, check_executor, load_sweep, read_store, run_sweep

BASE = {"dim": 4, "decay": 1.0, "steps": 60, "trials": 8, "lr": 0.2}
GRID = {"quant": [["all=additive:0.05"], ["all=multiplicative:0.05"]], "batch": [1, 2, 3]}


def _sorted(df):
    return df.sort_values(["digest", "step"]).reset_index(drop=True)


def test_serial_sweep_resumes_without_recomputing(tmp_path):
    sweep = Sweep(BASE, GRID)
    done = []
    first = run_sweep(sweep, tmp_path, on_done=done.append)
    assert len(done) == 6 and len(first.finished) == 6 and first.exit_code == 0
    df = first.frame
    assert (df["status"] == "ok").all() and np.isfinite(df["risk_mean"]).all()
    os.remove(next((tmp_path / "cells").glob("*.parquet")))  # as if killed before this cell
    second = run_sweep(sweep, tmp_path)
    assert len(second.ran) == 1  # only the missing cell ran
    pd.testing.assert_frame_equal(_sorted(df), _sorted(second.frame))


def test_sweep_file_and_validation(tmp_path):
    f = tmp_path / "grid.toml"
    f.write_text("[base]\ndim = 4\nsteps = 20\n[grid]\nbatch = [1, 2]\nlr = [0.1, 0.2]\n")
    assert len(load_sweep(f).configs()) == 4
    with pytest.raises(ValueError, match="grid.batch must be a non-empty list"):
        Sweep({"dim": 4}, {"batch": []})
    with pytest.raises(ValueError, match="unknown sweep key"):
        Sweep({"dimension": 4}, {"batch": [1]})
    with pytest.raises(ValueError, match=r"batch \(B\) must be an integer ≥ 1"):
        Sweep({"dim": 4}, {"batch": [1, 0]})
    # Numbers are normalised before hashing: lr = 1 and lr = 1.0 are one cell, one seed.
    assert len(Sweep({"dim": 4}, {"lr": [1, 1.0, 0.5]}).configs()) == 2
    f.write_text("")
    with pytest.raises(ValueError, match="defines no cells"):
        load_sweep(f)


@pytest.mark.parametrize(
    ("executor", "scheduler", "workers", "match"),
    [
        ("bogus", None, None, "executor must be one of local, dask"),
        ("dask", None, 0, "workers must be an integer ≥ 1"),
        ("dask", None, True, "workers must be an integer ≥ 1"),
        ("local", None, 2, "workers needs executor 'dask'"),
        ("dask", "notanaddress", None, "scheduler must be a Dask address"),
        ("dask", "tcp://h:1", 2, "a scheduler has its own workers"),
    ],
)
def test_executor_options_are_checked(executor, scheduler, workers, match):
    with pytest.raises(ValueError, match=match):
        check_executor(executor, scheduler, workers)
    check_executor("dask", "tcp://10.0.0.1:8786", None)
    check_executor("dask", None, 2)


def test_divergent_cell_is_recorded_not_lost(tmp_path):
    base = {k: v for k, v in BASE.items() if k != "lr"}
    res = run_sweep(Sweep({**base, "steps": 300}, {"lr": [0.2, 5.0]}), tmp_path)
    status = res.frame.groupby("cfg_lr")["status"].first()
    assert status[0.2] == "ok" and status[5.0] == "diverged"
    assert len(res.diverged) == 1 and res.exit_code == 3
    assert np.isfinite(res.frame["risk_mean"]).all()
    assert len(run_sweep(Sweep({**base, "steps": 300}, {"lr": [0.2, 5.0]}), tmp_path).ran) == 0


def test_stray_and_corrupt_files_in_the_store(tmp_path):
    sweep = Sweep(BASE, {"batch": [1, 2]})
    first = run_sweep(sweep, tmp_path)
    cells = tmp_path / "cells"
    (cells / "notes.txt").write_text("mine")
    (cells / "stray.parquet").write_text("not parquet")
    victim = cells / f"{first.finished[0]}.parquet"
    victim.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="not a readable Parquet cell"):
        again = run_sweep(sweep, tmp_path)
    assert again.ran == (first.finished[0],)  # the corrupt cell is recomputed, nothing else
    pd.testing.assert_frame_equal(_sorted(first.frame), _sorted(again.frame))
    with pytest.warns(UserWarning, match="skipping .*stray.parquet"):
        assert read_store(tmp_path)["digest"].nunique() == 2


def test_interrupted_sweep_stores_only_finished_cells_and_resumes_identically(tmp_path):
    """SIGINT after the first cell: exit 130, every stored cell complete; the resumed store
    equals an uninterrupted one cell for cell."""
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "[base]\ndim = 256\nsteps = 40000\ntrials = 16\nlr = 0.1\n"
        '[grid]\nquant = [["all=additive:0.001"], ["all=additive:0.002"], ["all=additive:0.003"]]\n'
    )
    cmd = [sys.executable, "-m", "qlinreg", "sweep", str(grid), "--store"]
    store = tmp_path / "interrupted"
    proc = subprocess.Popen([*cmd, str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cells = store / "cells"
    deadline = time.monotonic() + 300
    while not (cells.is_dir() and any(cells.glob("*.parquet"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err.decode()
    stored = read_store(store)
    assert 1 <= stored["digest"].nunique() < 3  # stopped early, kept the first
    assert (stored["status"] == "ok").all() and (stored["reached"] == 40000).all()
    assert stored.groupby("digest")["step"].max().eq(40000).all()
    assert subprocess.run([*cmd, str(store)], capture_output=True).returncode == 0
    whole = tmp_path / "whole"
    assert subprocess.run([*cmd, str(whole)], capture_output=True).returncode == 0
    pd.testing.assert_frame_equal(_sorted(read_store(store)), _sorted(read_store(whole)))


def test_dask_sweep_with_killed_worker_matches_serial(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    sweep = Sweep(BASE, GRID)
    serial = run_sweep(sweep, tmp_path / "serial").frame
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        killed = []

        def kill_one(_digest):
            if not killed:
                addr = sorted(client.scheduler_info()["workers"])[0]
                killed.append(addr)
                try:
                    client.run(os._exit, 1, workers=[addr])
                except Exception:  # the worker dies mid-call, by design
                    pass

        try:
            run_sweep(
                sweep, tmp_path / "dask", scheduler=cluster.scheduler_address, on_done=kill_one
            )
        except Exception:  # a lost worker may fail the first pass; the rerun must complete it
            pass
        assert killed
        final = run_sweep(sweep, tmp_path / "dask", scheduler=cluster.scheduler_address).frame
    assert final["digest"].nunique() == 6
    assert not final.duplicated(["digest", "step"]).any()
    pd.testing.assert_frame_equal(_sorted(serial), _sorted(final))
    assert read_store(tmp_path / "dask").shape == serial.shape
