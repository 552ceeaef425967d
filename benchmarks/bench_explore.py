"""How fast ``qlinreg explore`` answers a moved control at d = 1000 (the issue: well under a
second on 2 cores).

Three columns per control, medians over alternating values:

- ``library``: the two exact risks the page needs (the setting and full precision, at the
  page's checkpoints: :func:`qlinreg.exact_risk`), the floor any page would pay;
- ``compute``: the page's whole recomputation (:func:`qlinreg.explore.compute`: validation,
  exact risks, bound, γ_max, spectrum);
- ``browser``: the round trip in headless Chromium, from setting the control's value in the page
  to the server's new numbers shown (websocket, recomputation, redraw).

    python benchmarks/bench_explore.py [--dim 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import qlinreg as ql  # noqa: E402
from explorer_browser import explorer_in_chromium  # noqa: E402  (benchmarks/)
from qlinreg.explore import Setting, checkpoints, compute  # noqa: E402

# label → (control on the page, setting field, two values to alternate between: the first
# differs from the page's start, ε = 0.01 and the defaults)
CONTROLS = {
    "eps_data (log₁₀ ε slider)": ("eps_data", "data", (-3.0, -2.0)),
    "lr (γ)": ("lr", "lr", ("0.05", "0.1")),
    "batch (B)": ("batch", "batch", ("4", "1")),
    "steps (N)": ("steps", "steps", ("100000", "10000")),
    "decay (a)": ("decay", "decay", ("1.5", "2.0")),
    "convention": ("convention", "convention", ("clean", "quantized")),
}


def field_value(field: str, value) -> object:
    if field == "data":
        return f"additive:{10.0**value:.4g}"
    return Setting.parse({field: value}).__getattribute__(field)


def median_ms(fn, repeat: int) -> float:
    """Median time of ``fn(k)``, ``k = 0 … repeat − 1``, in ms."""
    times = []
    for k in range(repeat):
        t = time.perf_counter()
        fn(k)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def library(setting: Setting) -> None:
    """The two exact risks a page needs for ``setting``."""
    cfg = setting.config()
    p, scheme, sgd = cfg.problem(), cfg.scheme(), cfg.sgd()
    ck = checkpoints(sgd.steps)
    ql.exact_risk(p, scheme, sgd, ck)
    ql.exact_risk(p, None, sgd, ck)


def in_process(dim: int, repeat: int) -> dict[str, tuple[float, float]]:
    base = Setting(dim=dim, data="additive:0.01")
    compute(base)  # compile
    out = {}
    for label, (_, field, values) in CONTROLS.items():
        settings = [Setting(**{**base.__dict__, field: field_value(field, v)}) for v in values]
        for s in settings:
            compute(s)
        out[label] = (
            median_ms(lambda k, ss=settings: library(ss[k % 2]), repeat),
            median_ms(lambda k, ss=settings: compute(ss[k % 2]), repeat),
        )
    return out


def in_browser(dim: int, repeat: int) -> dict[str, float]:
    m = "const m = n => Bokeh.documents[0].get_model_by_name(n); "
    with explorer_in_chromium("--window-size=1500,1200") as (driver, url):
        driver.get(f"{url}?dim={dim}&data=additive:0.01")
        while not driver.execute_script(
            "return window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.documents[0].get_model_by_name('readout').text"
        ):
            time.sleep(0.05)
        out = {}
        for label, (name, _, values) in CONTROLS.items():
            times = []
            for k in range(repeat + 1):  # the first of each is a warm-up
                value = values[k % 2]
                literal = repr(value) if isinstance(value, str) else str(value)
                before = driver.execute_script(m + "return m('readout').text")
                t = time.perf_counter()
                driver.execute_script(m + f"m('{name}').value = {literal}")
                while driver.execute_script(m + "return m('readout').text") == before:
                    if time.perf_counter() - t > 60:
                        raise SystemExit(f"{label}: no answer from the page in 60 s")
                    time.sleep(0.002)
                if k:
                    times.append(time.perf_counter() - t)
            out[label] = 1e3 * statistics.median(times)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    local = in_process(args.dim, args.repeat)
    browser = in_browser(args.dim, args.repeat)
    print(f"qlinreg explore, d = {args.dim}, N = 10⁴ (10⁵ when N moves), additive data ε; "
          f"medians of {args.repeat}, in ms")  # fmt: skip
    print(f"{'control':28s} {'library':>9s} {'compute':>9s} {'browser':>9s}")
    for label, (lib, comp) in local.items():
        print(f"{label:28s} {lib:9.0f} {comp:9.0f} {browser[label]:9.0f}")


if __name__ == "__main__":
    main()
