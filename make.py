#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python ≥ 3.11 and pip.

    python3 make.py reproduce   # the main job: the paper's headline figures into results/
    python3 make.py test        # lint (ruff check, ruff format --check), then the test suite

Each command creates ``.venv`` next to this file (once), installs qlinreg with its test
extras into it (again only when ``pyproject.toml`` changed), then runs. Extra arguments are
passed on (``python3 make.py test -k engine``, ``python3 make.py reproduce --only paper_q2``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".qlinreg-installed"


def _sh(*cmd: str | Path) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure_env() -> None:
    """Create the virtual environment and install qlinreg[test] when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036  (this script may run under any python3)
        sys.exit(f"qlinreg needs Python ≥ 3.11; this is {sys.version.split()[0]}")
    if not PY.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != want:
        _sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _sh(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("reproduce", "test"):
        print(__doc__)
        return 2
    ensure_env()
    cmd, rest = argv[0], argv[1:]
    if cmd == "reproduce":
        args = rest or ["--quick"]
        return subprocess.run([str(BIN / "qlinreg"), "reproduce", *args], cwd=ROOT).returncode
    paths = ["src", "tests", "benchmarks", "make.py"]
    for lint in (["check", "-q"], ["format", "--check", "-q"]):
        code = subprocess.run([str(BIN / "ruff"), *lint, *paths], cwd=ROOT).returncode
        if code:
            print(f"ruff {lint[0]} failed: run .venv/bin/ruff {lint[0]} {' '.join(paths)}")
            return code
    return subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
