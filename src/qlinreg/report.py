"""Self-contained HTML report of ``qlinreg reproduce``: a summary first (per experiment, the
claims that held and a headline number), then one section per recipe with its figure, its
claims beside it in both risk conventions and a plain-language reading, then what did not hold.

Figures are embedded (PNG as data URIs; the interactive risk-vs-N views carry BokehJS inline),
so ``index.html`` opens offline; the tables it links to (Parquet, CSV) sit next to it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

__all__ = [
    "READINGS",
    "Claim",
    "Section",
    "bound_note",
    "claims_frame",
    "curves_figure",
    "summary",
    "write_report",
]


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


@dataclass(frozen=True)
class Section:
    """One recipe's part of the report: its ``name``, one-line ``description``, figure files
    (PNG embedded; others ignored), table files (linked, relative to the report) and notes
    (e.g. :func:`bound_note`: how many bound points lie outside the bound's hypotheses)."""

    name: str
    description: str
    figures: Sequence[Path] = ()
    tables: Sequence[Path] = ()
    notes: Sequence[str] = ()


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in claims], columns=[f for f in Claim.__annotations__])


READINGS: dict[str, str] = {
    "paper_q1": "All five roles are quantized with the same ε. Additive (INT-like) noise lifts the "
    "whole curve and leaves a floor; multiplicative (FP-like) noise of the same ε follows the "
    "full-precision curve and only approaches its small ApproxErr floor late. Read the gap "
    "between each curve and full precision at the same N: that is the penalty the claims test.",
    "paper_q2": "The dimension d changes at a fixed ε. Additive noise adds ε to every one of the d "
    "eigenvalues, so its cost grows with d; multiplicative noise keeps the spectrum's shape and "
    "its cost should not depend on d. With λ_i = i⁻² the additive growth saturates at these d, "
    "which is why the large-d recipe continues the question.",
    "large_d": "Exact risk only, d up to 10⁶. The additive floor under the spectrum raises tr "
    "H^(q) with d, so a fixed step size becomes unstable; at a step size that stays stable the "
    "additive penalty keeps growing with d while the multiplicative one stays flat.",
    "batch_scaling": "Only activations and output gradients are quantized, so the batch size B "
    "is the knob: additive errors are averaged over the batch like label noise (the penalty "
    "falls as 1/B); rank-one multiplicative errors scale with the signal and need not shrink.",
    "target_ablation": "Each role is quantized alone, so the bars show which tensor is "
    "expensive to quantize and whether a larger batch helps it. Parameter noise is amplified by "
    "tr(H) whatever B; data noise changes the problem itself (H^(q), ApproxErr).",
    "fp_vs_int": "Real 8-bit formats on the data: their ε is measured on the features, then the "
    "exact risk of their idealized stand-ins is compared over d with the paper's rule "
    "m ≥ b − (a/2)·log₂ d for when a floating-point format beats an integer one.",
    "spectral_distortion": "The spectrum of the quantized features H^(q) against H. Additive "
    "noise puts a floor ε under every eigenvalue (small directions become noise); "
    "multiplicative noise scales the spectrum and keeps its shape.",
    "step_size": "Risk against the step size γ at a fixed N. Quantization lowers the largest "
    "stable γ; beyond it the expected risk grows without bound and the simulation diverges.",
    "real_data": "Real features instead of the synthetic Gaussian: the quantizers act in the "
    "data's own coordinates. The exact Gaussian theory is checked against resampled rows, and "
    "the paper's orderings are re-tested at equal error energy.",
    "advisor": "The advisor picks the cheapest format per role within a budget on the penalty, "
    "predicted from measured ε and the exact risk, then checks its pick by Monte Carlo with "
    "the real formats.",
}
"""A short plain-language reading of each recipe's figure (what to look at); the numbers are
in the claims beside it."""


HEADLINE_CHARS = 160
"""Longest headline shown in the summary (the full text is in the recipe's section)."""


def _headline(group: pd.DataFrame) -> tuple[str, str]:
    """``(claim, measured)`` of an experiment's headline: its first claim (recipes list the
    paper's statement first), in the quantized-input convention where it has one; the measured
    text up to its first ``;``, at most :data:`HEADLINE_CHARS` characters."""
    first = group[group["claim"] == group["claim"].iloc[0]]
    pick = first[first["convention"] == "quantized"]
    row = (pick if len(pick) else first).iloc[0]
    text = str(row["measured"]).split(";")[0].strip()
    if len(text) > HEADLINE_CHARS:
        text = text[: HEADLINE_CHARS - 1].rsplit(" ", 1)[0] + " …"
    return str(row["claim"]), text


def summary(claims: pd.DataFrame) -> pd.DataFrame:
    """Per experiment (in report order): ``held``, ``total`` and the headline ``claim`` and
    ``measured`` value (:func:`_headline`)."""
    rows = []
    for name, g in claims.groupby("experiment", sort=False):
        claim, measured = _headline(g)
        rows.append((name, int(g["held"].sum()), len(g), claim, measured))
    return pd.DataFrame(rows, columns=["experiment", "held", "total", "claim", "measured"])


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
body{font-family:system-ui,sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2em} .note{color:#555}
table{border-collapse:collapse;font-size:14px} th,td{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left} th{background:#f5f5f5}
.yes{color:#1a7f37;font-weight:600} .no{color:#c62828;font-weight:600}
.bar{display:inline-block;width:90px;height:10px;background:#f1c7c7;vertical-align:middle;
margin-right:6px} .bar span{display:block;height:100%;background:#4caf50}
.recipe{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1.2em;
align-items:start} @media (max-width:900px){.recipe{grid-template-columns:1fr}}
.recipe img{max-width:100%;border:1px solid #eee}
.claim{border:1px solid #e3e3e3;border-radius:6px;padding:.5em .7em;margin-bottom:.7em}
.claim p{margin:.1em 0 .4em 0;font-weight:500} .claim table{width:100%;font-size:13px}
.crit{color:#555;font-size:12px;margin-top:.3em} .reading{background:#f7f9fc;border-left:4px
solid #7aa7e0;padding:.5em .8em;margin:.6em 0} .links a{margin-right:1em}
details{margin:.6em 0} summary{cursor:pointer;color:#1f5fae} .held{white-space:nowrap}
"""

_CONVENTION_NAMES = {"quantized": "quantized inputs", "clean": "clean inputs", "—": "—"}


def _e(text) -> str:
    return html.escape(str(text))


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'


def _verdict(held: bool) -> str:
    return f"<span class='{'yes' if held else 'no'}'>{'held' if held else 'did not hold'}</span>"


def _claim_cards(group: pd.DataFrame) -> str:
    """One card per statement: a row per risk convention (verdict, measured), the criterion
    once when every convention shares it."""
    cards = []
    for text, g in group.groupby("claim", sort=False):
        rows = "".join(
            f"<tr><td>{_e(_CONVENTION_NAMES.get(r.convention, r.convention))}</td>"
            f"<td>{_verdict(bool(r.held))}</td><td>{_e(r.measured)}</td></tr>"
            + ("" if g["criterion"].nunique() == 1 else
               f"<tr><td></td><td colspan='2' class='crit'>criterion: {_e(r.criterion)}</td></tr>")
            for r in g.itertuples()
        )  # fmt: skip
        crit = (
            f"<div class='crit'>criterion: {_e(g['criterion'].iloc[0])}</div>"
            if g["criterion"].nunique() == 1
            else ""
        )
        cards.append(
            f"<div class='claim'><p>{_e(text)}</p><table><tr><th>convention</th><th>verdict</th>"
            f"<th>measured</th></tr>{rows}</table>{crit}</div>"
        )
    return "".join(cards)


def _summary_table(table: pd.DataFrame) -> str:
    rows = []
    for r in table.itertuples():
        width = 100 * r.held / r.total if r.total else 0
        rows.append(
            f"<tr class='exp' data-experiment='{_e(r.experiment)}' data-held='{r.held}' "
            f"data-total='{r.total}'><td><a href='#{_e(r.experiment)}'>{_e(r.experiment)}</a>"
            f"</td><td class='held'><span class='bar'><span style='width:{width:.0f}%'>"
            "</span></span>"
            f"{r.held} / {r.total}</td><td>{_e(r.measured)}<div class='crit'>{_e(r.claim)}"
            "</div></td></tr>"
        )
    return (
        "<table id='summary'><tr><th>experiment</th><th>claims held</th><th>headline (first "
        f"claim, quantized inputs)</th></tr>{''.join(rows)}</table>"
    )


def _failures(claims: pd.DataFrame) -> str:
    failed = claims[~claims["held"].astype(bool)]
    if failed.empty:
        return "<p>Every claim held.</p>"
    items = "".join(
        f"<li><a href='#{_e(r.experiment)}'>{_e(r.experiment)}</a> "
        f"({_e(_CONVENTION_NAMES.get(r.convention, r.convention))}): {_e(r.claim)}<br>"
        f"<b>measured</b> {_e(r.measured)}<br><b>needed</b> {_e(r.criterion)}</li>"
        for r in failed.itertuples()
    )
    return (
        "<p>Each claim below was tested on the exact expected risk where one exists (no sampling "
        "noise): the measured value did not meet the criterion beside it. The recipe's section "
        f"shows the figure behind it.</p><ul class='failed'>{items}</ul>"
    )


_NOT_LABELS = ("step", "risk", "exact_risk", "bound", "k_star", "sigma_G2", "penalty", "floor",
               "saturated_", "underflow_", "reached", "status", "trials", "approx_err", "radius",
               "trace_H_q", "theorem", "gamma_max")  # fmt: skip
MAX_CURVES = 40
"""An interactive view draws at most this many curves (the first ones of the table)."""


def curves_figure(table: pd.DataFrame, title: str = ""):
    """An interactive Bokeh view of a recipe's risk-vs-N table, or ``None`` if it has no curves.

    A curve is a stretch of increasing ``step`` with at least 4 points: the exact risk as a
    line and the Monte Carlo mean as points where there are, labelled by the configuration
    columns that differ between curves; hover shows each value, a toggle switches the risk
    convention (quantized / clean inputs), the legend hides curves."""
    if "step" not in table or not ({"exact_risk", "risk_mean"} & set(table.columns)):
        return None
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool, RadioButtonGroup
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    run = (table["step"].diff().fillna(-1) <= 0).cumsum()
    curves = [g for _, g in table.groupby(run, sort=False) if len(g) >= 4][:MAX_CURVES]
    if not curves:
        return None
    firsts = pd.DataFrame([g.iloc[0] for g in curves]).astype(str)
    candidates = [
        c for c in sorted(table.columns, key=lambda c: c != "scheme")
        if not c.startswith(_NOT_LABELS) and all(g[c].nunique(dropna=False) == 1 for g in curves)
    ]  # fmt: skip
    labels_from, distinct = [], 1
    for c in candidates:  # greedily, the columns that tell more curves apart
        n = len(firsts[[*labels_from, c]].drop_duplicates())
        if n > distinct:
            labels_from, distinct = [*labels_from, c], n
    fig = figure(title=title, x_axis_type="log", y_axis_type="log", width=760, height=420,
                 x_axis_label="step N", y_axis_label="excess risk",
                 tools="pan,wheel_zoom,box_zoom,reset,save")  # fmt: skip
    sources = []
    for i, g in enumerate(curves):
        label = ", ".join(f"{c}={g[c].iloc[0]}" for c in labels_from) or f"curve {i + 1}"
        color = Category10_10[i % 10]
        data = {"step": g["step"].to_numpy(float), "label": [label] * len(g)}
        for key, (q, c) in {"exact": ("exact_risk", "exact_risk_clean"),
                            "mc": ("risk_mean", "risk_clean_mean")}.items():  # fmt: skip
            for suffix, col in (("q", q), ("c", c)):
                values = g[col].to_numpy(float) if col in g else [float("nan")] * len(g)
                data[f"{key}_{suffix}"] = values
            data[key] = data[f"{key}_q"]
        src = ColumnDataSource(data)
        sources.append(src)
        if "exact_risk" in g and g["exact_risk"].notna().any():
            fig.line("step", "exact", source=src, color=color, line_width=2, legend_label=label)
        if "risk_mean" in g and g["risk_mean"].notna().any():
            fig.scatter("step", "mc", source=src, color=color, size=5, legend_label=label)
    tips = [("", "@label"), ("N", "@step{0,0}"), ("exact", "@exact{0.0000e}"),
            ("Monte Carlo", "@mc{0.0000e}")]  # fmt: skip
    fig.add_tools(HoverTool(tooltips=tips))
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "9px"
    fig.legend.location = "bottom_left"
    toggle = RadioButtonGroup(labels=["quantized inputs", "clean inputs"], active=0)
    toggle.js_on_change("active", CustomJS(args={"sources": sources}, code="""
        const s = cb_obj.active === 0 ? "q" : "c";
        for (const src of sources) {
            src.data.exact = src.data["exact_" + s];
            src.data.mc = src.data["mc_" + s];
            src.change.emit();
        }"""))  # fmt: skip
    return column(toggle, fig)


def _section(sec: Section, group: pd.DataFrame, out: Path, interactive: str = "") -> str:
    held, total = int(group["held"].sum()), len(group)
    figures = "".join(_img(p) for p in sec.figures if p.suffix == ".png" and p.exists())
    links = " ".join(
        f"<a href='{_e(p.relative_to(out) if p.is_relative_to(out) else p)}'>{_e(p.name)}</a>"
        for p in sec.tables
    )
    reading = READINGS.get(sec.name, "")
    verdict = f"{held} of {total} claims held." if total else "No claims checked."
    interactive = (
        "<details><summary>interactive view (zoom, hover values, convention toggle, click the "
        f"legend to hide a curve)</summary>{interactive}</details>"
        if interactive
        else ""
    )
    return (
        f"<h2 id='{_e(sec.name)}'>{_e(sec.name)}</h2><p>{_e(sec.description)}</p>"
        + "".join(f"<p class='note'>{_e(n)}</p>" for n in sec.notes if n)
        + f"<div class='recipe'><div>{figures}{interactive}<div class='reading'>"
        f"{_e(reading)} <b>{verdict}</b></div><div class='links'>tables: {links}</div></div>"
        f"<div>{_claim_cards(group)}</div></div>"
    )


def _interactive(sections: Sequence[Section]) -> tuple[dict[str, str], str]:
    """``({section name: its figure's div}, head markup)``: the figures of
    :func:`curves_figure`, embedded with one script and BokehJS inline."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    figs = {}
    for sec in sections:
        table = next((p for p in sec.tables if p.suffix == ".parquet" and p.exists()), None)
        fig = None if table is None else curves_figure(pd.read_parquet(table), sec.name)
        if fig is not None:
            figs[sec.name] = fig
    if not figs:
        return {}, ""
    script, divs = components(figs)
    bokehjs = Resources(mode="inline", components=["bokeh", "bokeh-widgets"])
    return divs, bokehjs.render() + script


def write_report(
    out: str | Path,
    claims: list[Claim],
    sections: Sequence[Section],
    *,
    title: str = "qlinreg: reproducing Zhang, Su & Zou (ICLR 2026)",
    note: str = "",
    interactive: bool = True,
) -> Path:
    """Write ``OUT/index.html``: summary, one section per recipe, what did not hold.

    Images are embedded, so the file stands alone. With ``interactive``, each section whose
    Parquet table holds risk-vs-N curves also gets :func:`curves_figure`, BokehJS inline (the
    page stays one file that opens offline). Returns the path written.
    """
    out = Path(out)
    views, head = _interactive(sections) if interactive else ({}, "")
    frame = claims_frame(claims)
    table = summary(frame)
    held = int(frame["held"].sum()) if len(frame) else 0
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{_e(note)}</p>" if note else "",
        f"<h2 id='summary-title'>Summary: {held} of {len(frame)} claims held</h2>",
        _summary_table(table),
        "<p>All claims: <a href='claims.csv'>claims.csv</a>. Claims are decided "
        "on the exact expected risk where it exists; each recipe also checks Monte Carlo "
        "against it.</p>",
    ]
    for sec in sections:
        group = frame[frame["experiment"] == sec.name]
        body.append(_section(sec, group, out, views.get(sec.name, "")))
    body += ["<h2 id='failed'>What did not hold, and why</h2>", _failures(frame)]
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style>{head}</head><body>{''.join(body)}</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
