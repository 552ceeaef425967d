"""``qlinreg explore``: input validation and limits (no browser), then the page itself in a real
headless Chromium driven by Selenium (one server and one browser for the whole module)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pytest

import qlinreg as ql
from qlinreg.explore import (
    FORMATS,
    MAX_DIM,
    MAX_MC_WORK,
    Setting,
    _format_names,
    _Jobs,
    _split_quantizer,
    check_monte_carlo,
    compute,
)

ROOT = Path(__file__).resolve().parents[1]

# ---- validation, limits, background jobs (no browser) -----------------------------------------


def test_setting_round_trips_through_its_query():
    s = Setting(dim=37, decay=1.5, steps=5000, batch=4, lr=0.05, average="tail",
                convention="clean", data="additive:0.001",
                params="fp8_e4m3:nearest_even")  # fmt: skip
    assert Setting.parse(dict(parse_qsl(s.query()))) == s
    assert Setting.parse({"steps": "1e4", "lr": ".2"}) == Setting(steps=10_000, lr=0.2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dim": "abc"}, "dim must be a number"),
        ({"dim": "__import__('os')"}, "dim must be a number"),
        ({"lr": "nan"}, "lr must be a number"),
        ({"lr": "1e999"}, "lr must be a finite number"),
        ({"steps": "10.5"}, "steps must be an integer"),
        ({"dim": "-3"}, "dim"),
        ({"lr": "-0.1"}, "lr"),
        ({"noise": "-1"}, "noise"),
        ({"batch": "0"}, "batch"),
        ({"spectrum": "cubic"}, "spectrum must be one of power_law, exponential"),
        ({"evil": "1"}, "unknown parameter(s) 'evil'"),
        ({"data": "additive:abc"}, "data: expected none, KIND:EPS"),
        ({"data": "additive:-0.1"}, "data: additive quantizer: eps must be a finite number"),
        ({"params": "fp8_e4m3::scale=0.1"}, "params: expected none"),
        ({"grads": "int8:sideways"}, "grads: expected none"),
        ({"dim": str(MAX_DIM + 1)}, f"up to d = {MAX_DIM}"),
        ({"steps": "1e13"}, "steps (N) must be ≤"),
        ({"trials": "0"}, "trials must be an integer in [1, 1024]"),
        ({"dim": "100000", "batch": "1000", "data": "int8"}, "batch × dim"),
        ({"dim": "1" * 70}, "at most 64 characters"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values, message):
    with pytest.raises(ValueError) as err:
        Setting.parse(values)
    assert message in str(err.value)


def test_controls_read_back_every_quantizer_text():
    assert _split_quantizer("additive:0.001") == ("additive", -3.0, FORMATS[2], "stochastic")
    assert _split_quantizer("int8:nearest_even")[::2] == ("format", "int8")
    assert _split_quantizer("int8:nearest_even")[3] == "nearest_even"
    assert _split_quantizer("none")[0] == "none"
    # The advisor names formats by their labels: each maps back to a name on the page.
    names = _format_names()
    assert names["fp8_e4m3fn"] == "fp8_e4m3" and set(names.values()) == set(FORMATS)


def test_monte_carlo_size_is_capped():
    s = Setting(dim=10_000, steps=1_000_000, trials=32)
    with pytest.raises(ValueError, match="trials·N·B·d"):
        check_monte_carlo(s)
    assert s.trials * s.steps * s.dim > MAX_MC_WORK
    spec = check_monte_carlo(Setting(dim=20, steps=100, trials=16, params="int8"))
    assert spec.trials == 16 and spec.sgd.steps == 100


def test_background_jobs_are_capped():
    jobs, release, started = _Jobs(2), threading.Event(), []

    def job(i):
        started.append(i)
        release.wait(10)

    assert jobs.submit(job, 1) and jobs.submit(job, 2)
    assert not jobs.submit(job, 3)  # refused, not queued
    release.set()
    deadline = time.monotonic() + 10
    while not jobs.submit(job, 4):  # the slots are given back as the jobs end
        assert time.monotonic() < deadline
        time.sleep(0.01)
    jobs.pool.shutdown(wait=True)
    assert sorted(started) == [1, 2, 4]


def test_compute_matches_the_library_and_masks_an_unstable_setting():
    s = Setting(dim=30, steps=3000, data="multiplicative:0.01", grads="additive:0.1", batch=2)
    v = compute(s)
    problem = ql.make_problem(30)
    scheme = ql.Scheme(data=ql.Multiplicative(0.01), grads=ql.Additive(0.1))
    sgd = ql.SGDConfig(0.1, 3000, batch=2)
    want = ql.exact_risk(problem, scheme, sgd, [3000])
    assert v.steps[-1] == 3000
    np.testing.assert_allclose(v.risk[-1], want.exact_risk[-1], rtol=1e-9)
    np.testing.assert_allclose(v.full[-1], ql.exact_risk(problem, None, sgd, [3000]).exact_risk[-1],
                               rtol=1e-9)  # fmt: skip
    assert 0.1 < v.gamma_max and v.radius < 1 and np.isfinite(v.bound).all()
    high = compute(Setting(dim=30, steps=3000, lr=1.5 * v.gamma_max))
    assert high.radius > 1 and "above the stability limit" in high.notes[0]


def test_formats_on_a_fixed_grid_use_their_own_moments_others_their_surrogates():
    """Unscaled FP8 on the data has exact moments (docs/theory.md §14): the page shows that
    exact risk, not its surrogate's (which misses it severalfold at N = 10⁴); INT8 with a
    per-row scale (shared scale) keeps its surrogate; labels take the role's default scaling."""
    sgd = ql.SGDConfig(0.1, 10_000)
    problem = ql.make_problem(128)
    fp8 = compute(Setting(dim=128, steps=10_000, data="fp8_e4m3"))
    own = ql.exact_risk(problem, ql.Scheme.parse(["data=fp8_e4m3"]), sgd, [10_000])
    np.testing.assert_allclose(fp8.risk[-1], own.exact_risk[-1], rtol=1e-9)
    assert "own moments" in fp8.surrogates["data"]
    sur = ql.exact_risk(problem, ql.Scheme.parse(["data=fp8_e4m3"]), sgd, [10_000], surrogate=True)
    assert own.exact_risk[-1] - sur.exact_risk[-1] > 5e-4  # penalties 0.00113 vs 0.00025
    int8 = compute(Setting(dim=64, steps=2000, data="int8"))
    assert "own moments" not in int8.surrogates["data"]
    labels = compute(Setting(dim=64, steps=2000, labels="int8"))  # delayed at B = 1: quantized
    assert labels.risk[-1] > labels.full[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--port", "70000"], "port must be an integer in [0, 65535]"),
     (["--max-jobs", "0"], "max_jobs must be")],
)  # fmt: skip
def test_explore_command_refuses_bad_options(args, message):
    from typer.testing import CliRunner

    from qlinreg.cli import app

    res = CliRunner().invoke(app, ["explore", *args])
    assert res.exit_code == 2 and message in res.output


def test_bound_is_drawn_only_where_its_hypotheses_hold():
    """γ = 0.1 with additive ε = 0.01 on every role breaks the bound's step-size hypothesis at
    d = 200 (γ·α·tr H^(q) ≥ 1, :func:`qlinreg.theory.bounds.hypotheses`): the explorer hides
    the bound and says why; at γ = 0.02 it holds and the bound is drawn."""
    from qlinreg.theory import bound

    kw = {q: "additive:0.01" for q in ("data", "labels", "params", "activations", "grads")}
    bad = compute(Setting(dim=200, steps=1000, lr=0.1, **kw))
    good = compute(Setting(dim=200, steps=1000, lr=0.02, **kw))
    problem = ql.make_problem(200)
    scheme = ql.Scheme.all(ql.Additive(0.01))
    ref = bound(problem, scheme, ql.SGDConfig(0.1, 1000), bad.steps)
    assert not ref["bound_valid"].any()
    assert np.isnan(bad.bound).all() and any("hypotheses fail" in n for n in bad.notes)
    assert np.isfinite(good.bound).all() and not any("hypotheses" in n for n in good.notes)


# ---- the page, in headless Chromium ------------------------------------------------------------

CHROME = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
         "--disable-background-networking --disable-component-update --disable-sync "
         "--disable-dev-shm-usage --window-size=1500,1200").split()  # fmt: skip
START = "dim=40&steps=2000"


@pytest.fixture(scope="module")
def server():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlinreg", "explore", "--port", "0", "--max-jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    url = None
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        url = m and m.group(1)
    if url is None:
        proc.kill()
        pytest.fail(f"qlinreg explore did not start: {proc.stdout.read()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    if CHROME is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (.ci/run installs them: "
                    "apt-get install -y chromium chromium-driver)")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    profile = tempfile.mkdtemp(prefix="qlinreg-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.binary_location = CHROME
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def js(driver, expr: str):
    return driver.execute_script(f"const m = n => Bokeh.documents[0].get_model_by_name(n); "
                                 f"return {expr};")  # fmt: skip


def wait_for(driver, expr: str, timeout: float = 60.0):
    """Poll ``expr`` (JavaScript, with ``m(name)`` the Bokeh model of that name) until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = js(driver, expr)
        except Exception:  # noqa: BLE001  (the page is still loading)
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {expr}")


BOKEH = "window.Bokeh && Bokeh.documents.length > 0"
READY = BOKEH + " && m('readout') && m('readout').text"
LAST_RISK = "(a => a[a.length - 1])(Array.from(m('exact_source').data.risk))"


def load(driver, url: str, ready: str = READY):
    driver.get(url)
    return wait_for(driver, ready)


def change(driver, name: str, value, *, until: str | None = None) -> None:
    """Set a control's value in the page (as the user moving it does) and wait for the server's
    answer: the readout changes, or ``until`` holds."""
    before = js(driver, "m('readout').text + '|' + m('error').text")
    literal = repr(value) if isinstance(value, str) else str(value)
    js(driver, f"(m('{name}').value = {literal}, true)")
    wait_for(driver, until or f"m('readout').text + '|' + m('error').text !== {before!r}")


def severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_loads_offline_without_console_errors(server, browser):
    page = urllib.request.urlopen(server + "?" + START, timeout=30).read().decode()
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page)
    assert scripts, "BokehJS is loaded from script files"
    for src in scripts:  # every script from this server (no CDN)
        assert src.startswith(server.rstrip("/")) or src.startswith("/"), src
    load(browser, server + "?" + START)
    assert "exact risk" in js(browser, "m('readout').text")
    assert js(browser, "m('error').visible") is False
    assert severe(browser) == []
    # Everything the page fetched (scripts, styles, the websocket's handshake) is this server's.
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert fetched and all(u.startswith(server.rstrip("/")) for u in fetched), fetched


def expected_risk(dim, steps, scheme, lr=0.1, batch=1):
    problem = ql.make_problem(dim)
    sgd = ql.SGDConfig(lr, steps, batch=batch)
    return float(ql.exact_risk(problem, scheme, sgd, [steps]).exact_risk[-1])


def test_moving_a_control_plots_the_exact_risk(server, browser):
    load(browser, server + "?" + START)
    fp = js(browser, LAST_RISK)
    np.testing.assert_allclose(fp, expected_risk(40, 2000, None), rtol=1e-9)
    change(browser, "kind_data", "additive")  # ε slider at its default, 10^-2
    change(browser, "eps_data", -2.5)
    # The page rounds ε to 4 significant digits and says which in its URL: 10^-2.5 → 0.003162.
    shown = dict(parse_qsl(urlparse(browser.current_url).query))["data"]
    assert shown == "additive:0.003162"
    got = js(browser, LAST_RISK)
    want = expected_risk(40, 2000, ql.Scheme(data=ql.Additive(0.003162)))
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got > fp * 1.01  # the quantized risk, not full precision's
    change(browser, "batch", "4")
    want = expected_risk(40, 2000, ql.Scheme(data=ql.Additive(0.003162)), batch=4)
    np.testing.assert_allclose(js(browser, LAST_RISK), want, rtol=1e-9)
    assert severe(browser) == []


def test_url_round_trips_the_setting(server, browser):
    load(browser, server + "?" + START)
    change(browser, "kind_params", "multiplicative")
    change(browser, "eps_params", -1.5)
    change(browser, "lr", "0.05")
    change(browser, "convention", "clean")
    url = browser.current_url
    query = dict(parse_qsl(urlparse(url).query))
    assert query["params"] == f"multiplicative:{10**-1.5:.4g}" and query["lr"] == "0.05"
    assert query["convention"] == "clean" and query["dim"] == "40"
    risk = js(browser, LAST_RISK)
    load(browser, url)  # a fresh page at the shared URL
    assert js(browser, "m('kind_params').value") == "multiplicative"
    assert abs(js(browser, "m('eps_params').value") - np.log10(float(query["params"][15:]))) < 1e-9
    assert (
        js(browser, "m('lr').value") == "0.05" and js(browser, "m('convention').value") == "clean"
    )
    assert js(browser, LAST_RISK) == risk
    assert dict(parse_qsl(urlparse(browser.current_url).query)) == query


def test_bad_value_shows_an_error_instead_of_the_plots(server, browser):
    load(browser, server + "?" + START)
    change(browser, "dim", "-3", until="m('error').visible")
    assert "dim" in js(browser, "m('error').text")
    assert js(browser, "m('plots').visible") is False
    change(browser, "dim", "<b>1</b>", until="m('error').text.includes('&lt;b&gt;')")
    change(browser, "dim", "40", until="!m('error').visible")
    assert js(browser, "m('plots').visible") is True
    # A bad shared URL: the same message, no plot.
    text = load(browser, server + "?dim=10&lr=abc", ready=BOKEH + " && m('error').text")
    assert "lr must be a number" in text and js(browser, "m('plots').visible") is False
    assert severe(browser) == []


# Bokeh renders every widget inside nested shadow roots: search them all.
FIND = """
const find = (root, sel) => {
  const hit = root.querySelector(sel);
  if (hit) return hit;
  for (const e of root.querySelectorAll('*'))
    if (e.shadowRoot) { const r = find(e.shadowRoot, sel); if (r) return r; }
  return null;
};
const host = find(document, arguments[0]);
return host && host.shadowRoot.querySelector('button');
"""


def click(driver, css: str) -> None:
    """Click the button of the Bokeh widget with CSS class ``css`` (a real mouse click)."""
    button = driver.execute_script(FIND, css)
    assert button is not None, css
    button.click()


def test_monte_carlo_adds_a_band_and_can_be_cancelled(server, browser):
    load(browser, server + "?dim=20&steps=1000&trials=64&data=additive:0.01")
    exact = js(browser, LAST_RISK)
    click(browser, ".mc-run")
    wait_for(browser, "m('mc_status').text.includes('ok:')", timeout=180)
    band = js(browser, "['step','mean','lo','hi'].map(k => Array.from(m('mc_source').data[k]))")
    step, mean, lo, hi = map(np.asarray, band)
    assert len(step) > 5 and step[-1] == 1000
    assert np.all(lo <= mean) and np.all(mean <= hi)
    assert np.all((lo < hi)[step > 1])  # a band (at step 1 every trial's w_0 = 0: no spread)
    se = hi[-1] - mean[-1]
    assert abs(mean[-1] - exact) <= 4 * se, (mean[-1], exact, se)  # 64 trials, fixed seed
    # A long run: cancel it once it has made progress; the band and the button come back.
    change(browser, "steps", "1000000")
    click(browser, ".mc-run")
    wait_for(browser, "m('mc_status').text.includes('running')", timeout=180)
    click(browser, ".mc-cancel")
    wait_for(browser, "m('mc_status').text.includes('cancelled') && !m('mc_run').disabled")
    assert js(browser, "m('mc_source').data.step.length") > 0
    assert severe(browser) == []
