"""Self-contained HTML report: each claim of the paper, the number we measured, whether it held."""

from __future__ import annotations

import base64
import html
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

__all__ = ["Claim", "bound_note", "claims_frame", "write_report"]


@dataclass(frozen=True)
class Claim:
    """One checked statement.

    Attributes:
        experiment: recipe that measured it.
        claim: the paper's statement (SPEC §4–5), in words.
        convention: risk convention the number refers to (``quantized``, ``clean`` or ``—``).
        measured: the measured number(s), as text a reader can check against the tables.
        held: whether the measurement supports the claim.
        criterion: the test applied to decide ``held``.
    """

    experiment: str
    claim: str
    convention: str
    measured: str
    held: bool
    criterion: str


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in claims])


def bound_note(df: pd.DataFrame) -> str:
    """How many of a table's bound points lie outside the bound's hypotheses, and why (the
    distinct ``bound_reason`` lines); empty when the table has no bound."""
    if "bound" not in df or "bound_valid" not in df:
        return ""
    has = df[df["bound"].notna()]
    if has.empty:
        return ""
    outside = has[~has["bound_valid"].astype(bool)]
    text = f"Bound: {len(outside)} of {len(has)} points lie outside its hypotheses"
    if outside.empty:
        return text + " (all inside)."
    reasons = outside["bound_reason"].drop_duplicates()
    shown = "; ".join(reasons.iloc[:3]) + (
        f"; … ({len(reasons)} settings)" if len(reasons) > 3 else ""
    )
    return f"{text} (drawn grey and dotted, not a bound): {shown}."


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f3f3f3} .yes{color:#1a7f37;font-weight:600} .no{color:#c62828;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0} code{background:#f6f6f6;padding:0 3px}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(
    out: str | Path,
    claims: list[Claim],
    sections: list[tuple[str, str, list[Path]]],
    *,
    title: str = "qlinreg: reproducing Zhang, Su & Zou (ICLR 2026)",
    note: str = "",
) -> Path:
    """Write ``OUT/index.html``: the claims table, then one section per experiment.

    ``sections`` holds ``(name, description, [png paths], [notes])``; images are embedded, so
    the file stands alone.
    """
    out = Path(out)
    row = "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class='{}'>{}</td><td>{}</td></tr>"
    rows = "".join(
        row.format(
            html.escape(c.experiment),
            html.escape(c.claim),
            html.escape(c.convention),
            html.escape(c.measured),
            "yes" if c.held else "no",
            "held" if c.held else "did not hold",
            html.escape(c.criterion),
        )
        for c in claims
    )
    held = sum(c.held for c in claims)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(note)}</p>" if note else "",
        f"<h2>Claims ({held} of {len(claims)} held)</h2>",
        "<table><tr><th>experiment</th><th>claim</th><th>convention</th><th>measured</th>"
        f"<th>verdict</th><th>criterion</th></tr>{rows}</table>",
    ]
    for name, description, pngs, notes in sections:
        body.append(f"<h2 id='{html.escape(name)}'>{html.escape(name)}</h2>")
        body.append(f"<p>{html.escape(description)}</p>")
        body += [f"<p>{html.escape(n)}</p>" for n in notes if n]
        body += [_img(p) for p in pngs if p.suffix == ".png" and p.exists()]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
