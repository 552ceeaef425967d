"""The report (``results/index.html``): its summary counts equal ``claims.csv``, every claim
appears beside its recipe's figure in its convention, and what did not hold is listed."""

from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from qlinreg.report import Claim, Section, claims_frame, curves_figure, summary, write_report


class _Page(HTMLParser):
    """The parts of the report the tests read: summary rows (their data attributes), the
    failed-claims list items, section ids, embedded images and links."""

    def __init__(self):
        super().__init__()
        self.rows, self.failed, self.ids, self.images, self.links = [], 0, [], 0, []
        self.scripts = []
        self._in_failed = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "exp":
            self.rows.append((a["data-experiment"], int(a["data-held"]), int(a["data-total"])))
        if tag == "ul" and a.get("class") == "failed":
            self._in_failed = True
        if tag == "li" and self._in_failed:
            self.failed += 1
        if tag == "h2" and "id" in a:
            self.ids.append(a["id"])
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1
        if tag == "script" and "src" in a:
            self.scripts.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "ul":
            self._in_failed = False


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_summary(out: Path) -> pd.DataFrame:
    """The summary rows of ``OUT/index.html`` against counts taken from ``OUT/claims.csv`` by
    pandas (an independent route); returns the CSV."""
    claims = pd.read_csv(out / "claims.csv")
    page = parse(out / "index.html")
    want = claims.groupby("experiment", sort=False)["held"].agg(["sum", "size"])
    got = pd.DataFrame(page.rows, columns=["experiment", "sum", "size"]).set_index("experiment")
    assert list(got.index) == list(want.index)
    assert (got["sum"] == want["sum"]).all() and (got["size"] == want["size"]).all()
    assert page.failed == int((~claims["held"]).sum())
    return claims


def _claims() -> list[Claim]:
    c = []
    for conv, held in (("quantized", True), ("clean", False)):
        c.append(Claim("alpha", "Additive risk grows with ε.", conv, f"ratio {conv} 1.5", held,
                       "ratio > 1"))  # fmt: skip
    c.append(Claim("alpha", "Second statement.", "—", "value 3", True, "value > 2"))
    c.append(Claim("beta", "Only claim of beta.", "clean", "x = 0.1", False, "x > 1"))
    return c


def test_summary_counts_equal_claims_csv(tmp_path):
    claims = _claims()
    claims_frame(claims).to_csv(tmp_path / "claims.csv", index=False)
    fig, ax = plt.subplots()
    ax.plot([1, 2], [1, 2])
    fig.savefig(tmp_path / "alpha.png")
    plt.close(fig)
    tables = [tmp_path / "alpha.parquet", tmp_path / "alpha.csv"]
    _curves().to_parquet(tables[0])
    sections = [Section("alpha", "first recipe", [tmp_path / "alpha.png"], tables),
                Section("beta", "second recipe", [], [tmp_path / "beta.csv"])]  # fmt: skip
    path = write_report(tmp_path, claims, sections, note="hand-built")
    df = check_summary(tmp_path)
    assert len(df) == 4
    page = parse(path)
    assert page.rows == [("alpha", 2, 3), ("beta", 0, 1)]
    assert page.ids[-1] == "failed" and {"alpha", "beta"} <= set(page.ids)
    assert page.images == 1
    assert {"alpha.parquet", "alpha.csv", "beta.csv", "claims.csv"} <= set(page.links)
    text = path.read_text(encoding="utf-8")
    # Each convention's measured value sits in its own row, after the recipe's section heading.
    alpha, beta = text.index("id='alpha'"), text.index("id='beta'")
    for measured in ("ratio quantized 1.5", "ratio clean 1.5", "value 3"):
        assert alpha < text.index(measured, alpha) < beta
    assert "quantized inputs" in text and "clean inputs" in text
    # alpha's table has curves: an interactive view, its BokehJS inline (offline, one file).
    assert page.scripts == [] and text.count('class="bk-root"') + text.count("data-root-id") >= 1
    assert "interactive view" in text[alpha:beta] and "interactive view" not in text[beta:]
    (tmp_path / "plain").mkdir()
    plain = write_report(tmp_path / "plain", claims, sections, interactive=False)
    assert "interactive view" not in plain.read_text(encoding="utf-8")


def _curves() -> pd.DataFrame:
    """Two risk-vs-N curves (schemes A and B) and a two-point stretch that is not a curve."""
    steps = [1, 10, 100, 1000, 10000]
    parts = []
    for k, scheme in enumerate("AB"):
        exact = [1.0 / (n + k) for n in steps]
        clean = [0.5 / (n + k) for n in steps]
        parts.append(pd.DataFrame({"step": steps, "scheme": scheme, "dim": 200,
                                   "exact_risk": exact, "exact_risk_clean": clean}))  # fmt: skip
    parts.append(pd.DataFrame({"step": [1, 2], "scheme": "C", "dim": 200, "exact_risk": [1.0, 0.9],
                               "exact_risk_clean": [0.4, 0.3]}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_curves_figure_labels_each_curve_and_carries_both_conventions():
    from bokeh.models import ColumnDataSource

    table = _curves()
    layout = curves_figure(table, "t")
    sources = [s for s in layout.select({"type": ColumnDataSource}) if "label" in s.data]
    assert sorted(s.data["label"][0] for s in sources) == ["scheme=A", "scheme=B"]
    for src in sources:
        want = table[table["scheme"] == src.data["label"][0][-1]]
        assert list(src.data["exact_q"]) == list(want["exact_risk"])
        assert list(src.data["exact_c"]) == list(want["exact_risk_clean"])
        assert list(src.data["exact"]) == list(want["exact_risk"])  # quantized shown first
    assert curves_figure(pd.DataFrame({"index": [1, 2], "lambda": [1.0, 0.5]})) is None


def test_headline_is_first_claim_in_quantized_convention():
    df = claims_frame(_claims())
    s = summary(df)
    assert s.loc[0, "measured"] == "ratio quantized 1.5"
    assert s.loc[1, "measured"] == "x = 0.1"  # only a clean-input value: that one
    long = claims_frame([Claim("g", "c", "quantized", "word " * 100, True, "k")])
    assert len(summary(long).loc[0, "measured"]) <= 160
