"""Sweeps: Cartesian grids, resumable Parquet store, Dask with a worker killed mid-way."""

import os

import numpy as np
import pandas as pd
import pytest

from qlinreg.sweep import Sweep, load_sweep, read_store, run_sweep

BASE = {"dim": 4, "decay": 1.0, "steps": 60, "trials": 8, "lr": 0.2}
GRID = {"quant": [["all=additive:0.05"], ["all=multiplicative:0.05"]], "batch": [1, 2, 3]}


def _sorted(df):
    return df.sort_values(["digest", "step"]).reset_index(drop=True)


def test_serial_sweep_resumes_without_recomputing(tmp_path):
    sweep = Sweep(BASE, GRID)
    done = []
    first = run_sweep(sweep, tmp_path, on_done=done.append)
    assert len(done) == 6 and first["digest"].nunique() == 6
    assert (first["status"] == "ok").all() and np.isfinite(first["risk_mean"]).all()
    os.remove(next((tmp_path / "cells").glob("*.parquet")))  # as if killed before this cell
    again = []
    second = run_sweep(sweep, tmp_path, on_done=again.append)
    assert len(again) == 1  # only the missing cell ran
    pd.testing.assert_frame_equal(_sorted(first), _sorted(second))


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


def test_divergent_cell_is_recorded_not_lost(tmp_path):
    base = {k: v for k, v in BASE.items() if k != "lr"}
    df = run_sweep(Sweep({**base, "steps": 300}, {"lr": [0.2, 5.0]}), tmp_path)
    status = df.groupby("cfg_lr")["status"].first()
    assert status[0.2] == "ok" and status[5.0].startswith("diverged at step")
    assert np.isfinite(df["risk_mean"]).all()


def test_dask_sweep_with_killed_worker_matches_serial(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    sweep = Sweep(BASE, GRID)
    serial = run_sweep(sweep, tmp_path / "serial")
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
        final = run_sweep(sweep, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert final["digest"].nunique() == 6
    assert not final.duplicated(["digest", "step"]).any()
    pd.testing.assert_frame_equal(_sorted(serial), _sorted(final))
    assert read_store(tmp_path / "dask").shape == serial.shape
