"""Grids of runs: Cartesian products of :class:`~qlinreg.config.RunConfig` fields.

A sweep file (TOML) has a ``[base]`` table of fixed fields and a ``[grid]`` table whose values
are lists; every combination is one *cell*. Each finished cell is written atomically as its
own Parquet file ``STORE/cells/<digest>.parquet``, where ``<digest>`` hashes the cell's full
config, so the store is a Parquet dataset that

- a rerun of the same sweep skips (finished cells are not recomputed),
- a killed sweep keeps (a cell is either fully written or absent, never duplicated),
- does not depend on worker count or order: each cell's seed is derived from its digest.

Executors: in-process (default), a local Dask cluster (``executor="dask"``), or an existing
Dask scheduler (``scheduler="tcp://host:port"``). Results are gathered to the submitting
process, which alone writes the store: workers need no shared file system.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qlinreg.config import RunConfig, load_toml

__all__ = ["Sweep", "load_sweep", "read_store", "run_cell", "run_sweep"]


@dataclass(frozen=True)
class Sweep:
    """The cells of a sweep: fixed ``base`` fields and ``grid`` lists (Cartesian product)."""

    base: dict[str, Any]
    grid: dict[str, list]

    def __post_init__(self) -> None:
        for k, v in self.grid.items():
            if not isinstance(v, list) or not v:
                raise ValueError(f"grid.{k} must be a non-empty list of values, got {v!r}")
        overlap = sorted(set(self.base) & set(self.grid))
        if overlap:
            raise ValueError(f"fields {overlap} appear in both [base] and [grid]; keep one")
        for cfg in self.configs():  # validate every cell before any work starts
            cfg.digest()

    def configs(self) -> list[RunConfig]:
        keys = list(self.grid)
        return [
            RunConfig.from_dict(
                {**self.base, **dict(zip(keys, combo, strict=True))}, source="sweep"
            )
            for combo in itertools.product(*(self.grid[k] for k in keys))
        ]


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep TOML file with ``[base]`` and ``[grid]`` tables."""
    data = load_toml(path)
    extra = sorted(set(data) - {"base", "grid"})
    if extra:
        raise ValueError(f"unknown sweep table(s) {extra}; allowed: base, grid")
    return Sweep(base=dict(data.get("base", {})), grid=dict(data.get("grid", {})))


def cell_seed(digest: str) -> int:
    """The cell's simulation seed: the first 8 bytes of its config digest."""
    return int(digest[:16], 16) % 2**63


def run_cell(config: dict[str, Any]) -> pd.DataFrame:
    """Run one cell (Monte Carlo) and return its tidy table with ``digest`` and ``status``."""
    from qlinreg.sgd import DivergenceError, simulate

    cfg = RunConfig.from_dict(config, source="sweep")
    digest = cfg.digest()
    kwargs = cfg.simulate_kwargs()
    kwargs["seed"] = cell_seed(digest)
    status = "ok"
    try:
        res = simulate(cfg.problem(), cfg.scheme(), cfg.sgd(), **kwargs)
    except DivergenceError as exc:
        res, status = exc.result, f"diverged at step {exc.divergence.step}"
    df = res.to_frame()
    for k, v in cfg.to_dict().items():
        col = f"cfg_{k}"
        df[col] = ";".join(v) if isinstance(v, list) else v
    df["digest"], df["status"] = digest, status
    return df


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_store(store: str | Path) -> pd.DataFrame:
    """All finished cells of a store as one table (empty if none)."""
    files = sorted((Path(store) / "cells").glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def run_sweep(
    sweep: Sweep,
    store: str | Path,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    on_done: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every unfinished cell of ``sweep`` into ``store``; return the whole store's table.

    Args:
        executor: ``"local"`` (in this process) or ``"dask"`` (a ``LocalCluster`` with
            ``workers`` processes unless ``scheduler`` names a running one).
        scheduler: address of a Dask scheduler, e.g. ``tcp://host:8786`` (implies Dask).
        on_done: called with each cell's digest once it is written.
    """
    if executor not in ("local", "dask"):
        raise ValueError(f"executor must be 'local' or 'dask', got {executor!r}")
    cells = Path(store) / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    todo = {}
    for cfg in sweep.configs():
        digest = cfg.digest()
        if not (cells / f"{digest}.parquet").exists():
            todo[digest] = cfg.to_dict()
    total = len(sweep.configs())

    def finish(df: pd.DataFrame) -> None:
        digest = str(df["digest"].iloc[0])
        _write_atomic(df, cells / f"{digest}.parquet")
        if on_done is not None:
            on_done(digest)

    with _Bar(progress, total, total - len(todo)) as bar:
        if executor == "local" and scheduler is None:
            for cfg in todo.values():
                finish(run_cell(cfg))
                bar.advance()
        else:
            _run_dask(todo.values(), scheduler, workers, finish, bar)
    return read_store(store)


def _run_dask(configs: Iterable[dict], scheduler, workers, finish, bar) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True
        )
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(run_cell, cfg, pure=False) for cfg in configs]
            for fut in as_completed(futures):
                finish(fut.result())
                bar.advance()
    finally:
        if cluster is not None:
            cluster.close()


class _Bar:
    """Cells done / total with ETA (rich), or nothing."""

    def __init__(self, show: bool, total: int, done: int):
        self.show, self.total, self.done = show, total, done

    def __enter__(self):
        if self.show:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeRemainingColumn,
            )

            self.p = Progress(
                "cells", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
            )
            self.p.__enter__()
            self.task = self.p.add_task("cells", total=self.total, completed=self.done)
        return self

    def advance(self) -> None:
        if self.show:
            self.p.advance(self.task)

    def __exit__(self, *exc):
        if self.show:
            self.p.__exit__(*exc)
        return False
