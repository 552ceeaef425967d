"""``qlinreg explore`` on a free port driven by headless Chromium (selenium), for the scripts
that need a real browser: ``bench_explore.py`` and ``screenshots.py``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
         "--disable-background-networking --disable-component-update --disable-sync "
         "--disable-dev-shm-usage").split()  # fmt: skip


@contextmanager
def explorer_in_chromium(*flags: str, env: dict | None = None) -> Iterator[tuple[object, str]]:
    """``(driver, url)``: a server started with ``python -m qlinreg explore --port 0`` (extra
    environment ``env``) and a Chromium with :data:`FLAGS` + ``flags`` and a throwaway profile;
    both stopped on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    cmd = [sys.executable, "-m", "qlinreg", "explore", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)  # fmt: skip
    url = None
    while url is None:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("qlinreg explore did not start")
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        url = found and found.group(1)
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    opts = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="qlinreg-browser-")
    for flag in (*FLAGS, *flags, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        yield driver, url
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
