"""``python -m qlinreg …`` is the ``qlinreg`` command."""

from qlinreg.cli import app

app(prog_name="qlinreg")
