"""Grids of runs: Cartesian products of :class:`~qlinreg.config.RunConfig` fields.

A sweep file (TOML) has a ``[base]`` table of fixed fields and a ``[grid]`` table whose values
are lists; every combination is one *cell*, run by the one pipeline
(:func:`qlinreg.pipeline.run`). Each finished cell is written atomically as its own Parquet
file ``STORE/cells/<digest>.parquet``, where ``<digest>`` hashes the cell's full config
(numbers normalised: ``lr = 1`` and ``lr = 1.0`` are one cell), so the store is a Parquet
dataset that

- a rerun of the same sweep skips (finished cells are not recomputed; a diverged cell is
  finished: its table says ``status = diverged``, with the checkpoints before it);
- an interrupted sweep keeps (Ctrl-C or SIGTERM stop it after the chunk of steps in flight;
  the interrupted cell is *not* stored, so a rerun computes it whole and the store equals
  that of an uninterrupted sweep, cell for cell);
- does not depend on worker count or order: each cell's seed is derived from its digest.

Executors: in-process (default), a local Dask cluster (``executor="dask"``), or an existing
Dask scheduler (``scheduler="tcp://host:port"``). Results are gathered to the submitting
process, which alone writes the store: workers need no shared file system. Connecting to a
scheduler trusts it and its workers: Dask's protocol exchanges pickled Python objects.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qlinreg.config import RunConfig, load_toml
from qlinreg.files import prepare_dir, write_atomic
from qlinreg.interrupt import interrupt_flag

__all__ = [
    "EXECUTORS",
    "Sweep",
    "SweepResult",
    "load_sweep",
    "read_store",
    "run_cell",
    "run_sweep",
]

EXECUTORS = ("local", "dask")
_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx|inproc)://)?[\w.\-\[\]:]+:\d{1,5}$")
_CONNECT_TIMEOUT = "10s"


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
        if "out" in {*self.base, *self.grid}:
            raise ValueError("out is not a sweep field: each cell goes to the store (--store)")
        # Every cell is built (and so validated) once, before any work starts.
        keys, cells = list(self.grid), {}
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            values = {**self.base, **dict(zip(keys, combo, strict=True))}
            cfg = RunConfig.from_dict(values, source="sweep")
            cells.setdefault(cfg.digest(), cfg)
        object.__setattr__(self, "_cells", tuple(cells.values()))

    def configs(self) -> list[RunConfig]:
        """One config per cell, duplicates (the same normalised config twice) removed."""
        return list(self._cells)


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep TOML file with ``[base]`` and ``[grid]`` tables."""
    data = load_toml(path)
    extra = sorted(set(data) - {"base", "grid"})
    if extra:
        raise ValueError(
            f"sweep file {str(path)!r}: unknown key(s) {extra}; a sweep file has only a [base] "
            "table of fields and a [grid] table of lists"
        )
    for table in ("base", "grid"):
        if not isinstance(data.get(table, {}), dict):
            raise ValueError(f"sweep file {str(path)!r}: {table} must be a table ([{table}])")
    if not data.get("base") and not data.get("grid"):
        raise ValueError(
            f"sweep file {str(path)!r} defines no cells: give a [grid] table of lists "
            "(and a [base] table of fixed fields)"
        )
    return Sweep(base=dict(data.get("base", {})), grid=dict(data.get("grid", {})))


def cell_seed(digest: str) -> int:
    """The cell's simulation seed: the first 8 bytes of its config digest."""
    return int(digest[:16], 16) % 2**63


def run_cell(config: dict[str, Any]) -> pd.DataFrame:
    """Run one cell through the pipeline: its table with ``cfg_*`` columns, ``digest`` and
    ``status`` (``ok``, ``diverged`` or ``interrupted``)."""
    from qlinreg.pipeline import run

    cfg = RunConfig.from_dict(config, source="sweep")
    digest = cfg.digest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown once per sweep by run_sweep
        df = run(cfg.spec(seed=cell_seed(digest))).frame
    for k, v in cfg.to_dict().items():
        df[f"cfg_{k}"] = ";".join(v) if isinstance(v, list | tuple) else v
    df["digest"] = digest
    return df


def _readable(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception:  # noqa: BLE001  (any unreadable file is simply not a finished cell)
        return False
    return True


def read_store(store: str | Path, digests: set[str] | None = None) -> pd.DataFrame:
    """The finished cells of a store (only ``digests`` if given) as one table; files that are
    not readable Parquet are skipped with a warning."""
    frames = []
    for f in sorted((Path(store) / "cells").glob("*.parquet")):
        if digests is not None and f.stem not in digests:
            continue
        try:
            frames.append(pd.read_parquet(f))
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"skipping {f}: not a readable Parquet cell ({exc})", stacklevel=2)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes:
        frame: the sweep's finished cells (not other sweeps' cells sharing the store).
        cells: number of distinct cells in the sweep.
        finished: digests of its cells in the store (ran now or before).
        diverged: digests of its finished cells whose run diverged.
        interrupted: the sweep was stopped before every cell finished.
        ran: digests of the cells computed by this call.
    """

    frame: pd.DataFrame
    cells: int
    finished: tuple[str, ...]
    diverged: tuple[str, ...] = ()
    interrupted: bool = False
    ran: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 3 if self.diverged else 0


def check_executor(executor: str, scheduler: str | None, workers: int | None) -> None:
    """Validate the executor options before any work (``ValueError`` naming the option)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not _ADDRESS.match(scheduler):
            raise ValueError(
                f"scheduler must be a Dask address PROTOCOL://HOST:PORT, e.g. "
                f"tcp://127.0.0.1:8786, got {scheduler!r}"
            )
        if workers is not None:
            raise ValueError("workers sizes a local Dask cluster; a scheduler has its own workers")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer ≥ 1, got {workers!r}")
        if executor != "dask":
            raise ValueError("workers needs executor 'dask' (the local executor is one process)")


def run_sweep(
    sweep: Sweep,
    store: str | Path,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    on_done: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every unfinished cell of ``sweep`` into ``store``.

    Args:
        executor: ``"local"`` (in this process) or ``"dask"`` (a ``LocalCluster`` with
            ``workers`` processes unless ``scheduler`` names a running one).
        scheduler: address of a Dask scheduler, e.g. ``tcp://host:8786`` (implies Dask).
        on_done: called with each cell's digest once it is written.

    Ctrl-C or SIGTERM stop the sweep: finished cells stay, the cell in flight is not stored.
    """
    check_executor(executor, scheduler, workers)
    cells = prepare_dir(Path(store), "store") / "cells"
    cells.mkdir(exist_ok=True)
    configs = {cfg.digest(): cfg for cfg in sweep.configs()}
    for note in dict.fromkeys(n for cfg in configs.values() for n in cfg.spec().warnings()):
        warnings.warn(note, stacklevel=2)
    todo = {}
    for digest, cfg in configs.items():
        path = cells / f"{digest}.parquet"
        if path.exists() and not _readable(path):
            warnings.warn(f"{path} is not a readable Parquet cell: recomputing it", stacklevel=2)
        elif path.exists():
            continue
        todo[digest] = cfg.to_dict()
    ran: list[str] = []

    def finish(df: pd.DataFrame) -> bool:
        """Store a finished cell; False (and nothing stored) for an interrupted one."""
        if df.empty or (df["status"] == "interrupted").any():
            return False
        digest = str(df["digest"].iloc[0])
        write_atomic(cells / f"{digest}.parquet", lambda p: df.to_parquet(p, index=False))
        ran.append(digest)
        if on_done is not None:
            on_done(digest)
        return True

    with _Bar(progress, len(configs), len(configs) - len(todo)) as bar:
        if executor == "local" and scheduler is None:
            interrupted = _run_local(todo.values(), finish, bar)
        else:
            interrupted = _run_dask(list(todo.values()), scheduler, workers, finish, bar)
    frame = read_store(store, set(configs))
    finished = tuple(sorted(set(frame["digest"]))) if len(frame) else ()
    diverged = (
        tuple(sorted(set(frame.loc[frame["status"] == "diverged", "digest"]))) if len(frame) else ()
    )
    return SweepResult(frame, len(configs), finished, diverged, interrupted, tuple(ran))


def _run_local(configs, finish, bar) -> bool:
    with interrupt_flag() as flag:
        for cfg in configs:
            if flag.is_set() or not finish(run_cell(cfg)):
                return True
            bar.advance()
    return False


def _run_dask(configs: list[dict], scheduler, workers, finish, bar) -> bool:
    try:
        from dask.distributed import Client, LocalCluster, wait
    except ImportError:
        raise ValueError(
            "the dask executor needs Dask: pip install 'qlinreg[dask]' (or dask[distributed])"
        ) from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
    try:
        try:
            client = Client(scheduler or cluster, timeout=_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"could not connect to the Dask scheduler at {scheduler} within "
                f"{_CONNECT_TIMEOUT} ({exc})"
            ) from None
        with client, interrupt_flag() as flag:
            pending = {client.submit(run_cell, cfg, pure=False) for cfg in configs}
            while pending:
                if flag.is_set():
                    client.cancel(list(pending))
                    return True
                try:  # poll, so that a signal is seen within half a second
                    done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for fut in done:
                    if not finish(fut.result()):
                        client.cancel(list(pending))
                        return True
                    bar.advance()
    finally:
        if cluster is not None:
            cluster.close()
    return False


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
