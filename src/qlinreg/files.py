"""Output folders and files: checked before any work, written atomically.

Every command that writes checks its output folder first (:func:`prepare_dir`), so an
unwritable ``--out`` fails in a second with one clear line instead of after the computation;
every table is written to a temporary file in the same folder and renamed over the target
(:func:`write_atomic`), so a reader (or a killed run) sees the old file or the new one, never
half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["prepare_dir", "prepare_file", "write_atomic"]


def prepare_dir(path: str | Path, option: str = "out") -> Path:
    """Create the folder ``path`` if needed and check that it can be written.

    Raises ``ValueError`` naming ``option`` when ``path`` is a file, lies under a file, or
    cannot be created or written.
    """
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"{option} must be a folder path (text), got {path!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {str(p)!r} is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".qlinreg-write-test-")
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(
            f"{option} {str(p)!r} cannot be a folder: a part of that path is a file"
        ) from None
    except OSError as exc:
        raise ValueError(
            f"{option} {str(p)!r} is not a writable folder ({exc.strerror or exc})"
        ) from None
    return p


def prepare_file(path: str | Path, option: str = "out") -> Path:
    """Check that the file ``path`` can be written (its folder is created if needed)."""
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"{option} must be a file path (text), got {path!r}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {str(p)!r} is a folder; give a file name, e.g. {p}/table.csv")
    prepare_dir(p.parent, option)
    return p


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
