"""Screenshots for the docs: the explorer (docs/img/explore.png) and the report
(docs/img/report.png, from an existing ``results/index.html``), in headless Chromium.

    python benchmarks/screenshots.py [RESULTS_FOLDER]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from explorer_browser import ROOT, explorer_in_chromium

SETTING = ("dim=1000&steps=10000&trials=32&data=fp8_e4m3&params=additive:0.0001"
           "&activations=multiplicative:0.01")  # fmt: skip
M = "const m = n => Bokeh.documents[0].get_model_by_name(n); "
FIND = """
const find = (root, sel) => {
  const hit = root.querySelector(sel);
  if (hit) return hit;
  for (const e of root.querySelectorAll('*'))
    if (e.shadowRoot) { const r = find(e.shadowRoot, sel); if (r) return r; }
  return null;
};
return find(document, arguments[0]).shadowRoot.querySelector('button');
"""


def wait(driver, expr: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(M + f"return {expr}"):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {expr}")
        time.sleep(0.2)


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "results")
    out = ROOT / "docs" / "img"
    flags = ("--hide-scrollbars", "--window-size=1460,1040")
    with explorer_in_chromium(*flags, env={"JAX_PLATFORMS": "cpu"}) as (driver, url):
        driver.get(url + "?" + SETTING)
        wait(driver, "window.Bokeh && Bokeh.documents.length > 0 && m('readout').text")
        driver.execute_script(FIND, ".mc-run").click()
        wait(driver, "m('mc_status').text.includes('ok:')")
        driver.execute_script(FIND, ".advise").click()
        wait(driver, "m('advice').text.includes('joint predicted')")
        time.sleep(1)
        driver.save_screenshot(str(out / "explore.png"))
        if (results / "index.html").exists():
            driver.set_window_size(1400, 1500)
            driver.get((results / "index.html").resolve().as_uri())
            time.sleep(2)
            driver.execute_script("document.querySelector('details').open = true")
            driver.save_screenshot(str(out / "report.png"))
    report = (results / "index.html").exists()
    print(f"wrote {out / 'explore.png'}" + (f", {out / 'report.png'}" if report else ""))


if __name__ == "__main__":
    main()
