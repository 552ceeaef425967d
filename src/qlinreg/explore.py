"""``qlinreg explore``: an interactive page of the exact risk, served locally by Bokeh.

A thin view on the library. Every change of a control re-validates the whole setting (the
same checks as ``qlinreg run``: :class:`~qlinreg.config.RunConfig`; nothing from the page is
evaluated), then recomputes:

- risk vs ``N``: :func:`qlinreg.exact_risk` of the chosen scheme and of full precision, and
  :func:`qlinreg.bound` (unit constants, Polyak average; only where it is valid);
- the penalty (quantized minus full-precision exact risk) vs ``N``;
- the spectrum of ``H`` against ``H^(q)`` (:func:`qlinreg.theory.H_q`);
- the stability limit ``γ_max`` (largest γ whose second-moment recursion is stable).

A number format on the data or labels on a fixed grid (FP without scaling, INT with a fixed
scale) enters the exact risk with its own moments (docs/theory.md §14); every other format
through its measured idealized surrogate (:func:`qlinreg.advise.role_samples`,
:func:`~qlinreg.advise.measure_roles`, :func:`~qlinreg.advise.surrogate_for`), which also gives
the spectrum, ``γ_max`` and the bound; Monte Carlo (a button) runs the real formats through
:func:`qlinreg.pipeline.run`, with progress and cancel; the advisor (a button) runs
:class:`qlinreg.advise.Advisor` (cached per problem and SGD setting). The page's URL encodes
the setting (the same names as ``qlinreg run`` options), so a view can be shared.

BokehJS is served by the Bokeh server from the installed package (no CDN): the page works
offline. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import functools
import html
import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from urllib.parse import urlencode

import numpy as np

from qlinreg.quantize.scheme import ROLES

__all__ = [
    "FORMATS",
    "MAX_DIM",
    "MAX_MC_WORK",
    "Setting",
    "parse_number",
    "Views",
    "checkpoints",
    "compute",
    "make_server",
    "serve",
]

IDEALIZED = ("none", "additive", "multiplicative", "multiplicative_elementwise")
FORMATS = (
    "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "mxfp8_e4m3",
    "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8", "int16", "int8", "int4",
)  # fmt: skip
"""Number formats offered per role (in the exact risk with their own moments on data and labels
where exact, else through their measured surrogates)."""
ROUNDINGS = ("stochastic", "nearest_even", "nearest_away", "toward_zero")
ADVISOR_MENU = ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp4_e2m1", "mxfp8_e4m3",
                "mxfp4", "int8", "int4")  # fmt: skip
"""The advisor's candidate formats on the page (stochastic rounding): a shorter menu than
``qlinreg advise``'s, so that its measurement takes seconds."""

MAX_DIM = 100_000
"""Largest d on the page: the exact risk holds a few d × checkpoints arrays and takes about
2 s at d = 10⁵; beyond, use ``qlinreg theory``."""
MAX_STEPS = 10**12
"""Largest N: the closed-form exact risk costs the same at any N (checked to 10¹²)."""
MAX_BATCH_VALUES = 10**7
"""Largest B·d with a number format or Monte Carlo: batches of B × d values are held in memory
(the surrogate's pilot holds at least 8)."""
MAX_MC_WORK = 2 * 10**9
"""Largest trials·N·B·d of one Monte Carlo run (about a minute on 2 CPU cores)."""
MAX_TRIALS = 1024
MAX_STEPPED = 10**8
"""Largest N·d for which an unstable setting's (growing) exact risk is still stepped."""
MAX_TEXT = 64
"""Longest value accepted for any field of the page or URL."""

_CHOICES = {
    "spectrum": ("power_law", "exponential"),
    "w_star": ("ones", "power_law", "gaussian"),
    "average": ("polyak", "tail", "last"),
    "convention": ("quantized", "clean"),
}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Setting:
    """One view of the page: the problem, SGD, the quantizer per role (``none``,
    ``KIND:EPS`` or ``FORMAT[:ROUNDING]``), the convention shown and Monte Carlo's size. Field
    names are those of ``qlinreg run`` (and of the page's URL)."""

    dim: int = 200
    spectrum: str = "power_law"
    decay: float = 2.0
    w_star: str = "ones"
    source: float = 1.0
    noise: float = 1.0
    steps: int = 10_000
    batch: int = 1
    lr: float = 0.1
    average: str = "polyak"
    convention: str = "quantized"
    trials: int = 32
    seed: int = 0
    data: str = "none"
    labels: str = "none"
    params: str = "none"
    activations: str = "none"
    grads: str = "none"

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> Setting:
        """The setting of text ``values`` (a URL's query or the page's controls; missing keys
        keep their defaults). Raises ``ValueError`` naming the field: unknown keys, text that
        is not a plain decimal number, values out of range (:meth:`check`)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}"
            )
        kw = {}
        for name, text in values.items():
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise ValueError(f"{name}: give at most {MAX_TEXT} characters")
            text = text.strip()
            kind = known[name].type
            if kind in ("int", "float"):
                kw[name] = parse_number(name, text, integer=kind == "int")
            elif name in _CHOICES:
                if text not in _CHOICES[name]:
                    raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}, "
                                     f"got {text!r}")  # fmt: skip
                kw[name] = text
            else:
                kw[name] = _quantizer_text(name, text)
        setting = cls(**kw)
        setting.check()
        return setting

    def query(self) -> str:
        """The URL query of this setting (every field, in order)."""
        return urlencode({f.name: _text(getattr(self, f.name)) for f in fields(self)})

    def quant(self, *, formats: bool = True) -> list[str]:
        """``ROLE=QUANTIZER`` for the quantized roles (``formats=False``: idealized only)."""
        out = []
        for role in ROLES:
            text = getattr(self, role)
            if text != "none" and (formats or text.split(":")[0] in IDEALIZED):
                out.append(f"{role}={text}")
        return out

    def formats(self) -> dict[str, str]:
        """``{role: FORMAT[:ROUNDING]}`` of the roles carrying a number format."""
        return {r: getattr(self, r) for r in ROLES if getattr(self, r).split(":")[0] in FORMATS}

    def config(self, *, monte_carlo: bool = False):
        """The :class:`~qlinreg.config.RunConfig` of this setting: its construction runs every
        check of ``qlinreg run`` (``monte_carlo``: a Monte Carlo run with the real formats;
        otherwise the exact risk of the idealized roles, number formats checked by parsing)."""
        from qlinreg.config import RunConfig

        common = dict(
            dim=self.dim, spectrum=self.spectrum, decay=self.decay, w_star=self.w_star,
            source=self.source, noise=self.noise, steps=self.steps, batch=self.batch,
            lr=self.lr, average=self.average, seed=self.seed,
        )  # fmt: skip
        if monte_carlo:
            return RunConfig(**common, quant=tuple(self.quant()), trials=self.trials)
        return RunConfig(**common, quant=tuple(self.quant(formats=False)), trials=0, exact=True)

    def check(self) -> None:
        """The page's own limits (memory and time), then :meth:`config`'s checks."""
        if isinstance(self.dim, int) and self.dim > MAX_DIM:
            raise ValueError(
                f"dim: the explorer computes up to d = {MAX_DIM} (memory and time); got "
                f"{self.dim}. Use qlinreg theory for larger d"
            )
        if isinstance(self.steps, int) and self.steps > MAX_STEPS:
            raise ValueError(f"steps (N) must be ≤ {MAX_STEPS:.0e} here, got {self.steps}")
        if not 1 <= self.trials <= MAX_TRIALS:
            raise ValueError(f"trials must be an integer in [1, {MAX_TRIALS}], got {self.trials}")
        if self.formats() and self.batch * self.dim > MAX_BATCH_VALUES:
            raise ValueError(
                f"batch × dim = {self.batch * self.dim} exceeds {MAX_BATCH_VALUES:.0e}: a number "
                "format's surrogate is measured on batches of B × d values held in memory"
            )
        self.config()

    def problem_key(self) -> tuple:
        return (self.dim, self.spectrum, self.decay, self.w_star, self.source, self.noise,
                self.seed)  # fmt: skip

    def sgd_key(self) -> tuple:
        return (self.steps, self.batch, self.lr, self.average)

    def run_key(self) -> tuple:
        """What the advisor's answer depends on: the problem and SGD (not the quantizers)."""
        return (*self.problem_key(), *self.sgd_key())


def parse_number(name: str, text: str, *, integer: bool = False) -> float | int:
    """A plain decimal number (``12``, ``0.1``, ``1e-3``; no ``nan``, ``inf``, hex or
    expressions), an integral one if ``integer``; ``ValueError`` naming ``name`` otherwise."""
    text = text.strip()
    if len(text) > MAX_TEXT or not _NUMBER.fullmatch(text):
        raise ValueError(f"{name} must be a number, got {text[:MAX_TEXT]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {text!r}")
    if integer:
        if not (value.is_integer() and abs(value) < 2**64):
            raise ValueError(f"{name} must be an integer, got {text!r}")
        return int(value)
    return value


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _quantizer_text(role: str, text: str) -> str:
    """``none``, ``KIND:EPS`` or ``FORMAT[:ROUNDING]`` (what the page's controls express),
    checked by the library's parser."""
    from qlinreg.quantize import parse_quantizer

    kind, sep, rest = text.partition(":")
    ok = (
        (kind == "none" and not sep)
        or (kind in IDEALIZED[1:] and bool(_NUMBER.fullmatch(rest)))
        or (kind in FORMATS and (not sep or rest in ROUNDINGS))
    )
    if not ok:
        raise ValueError(
            f"{role}: expected none, KIND:EPS (KIND one of {', '.join(IDEALIZED[1:])}) or "
            f"FORMAT[:ROUNDING] (FORMAT one of {', '.join(FORMATS)}; ROUNDING one of "
            f"{', '.join(ROUNDINGS)}), got {text!r}"
        )
    try:
        parse_quantizer(text)
    except ValueError as exc:
        raise ValueError(f"{role}: {exc}") from None
    return text


def checkpoints(steps: int) -> np.ndarray:
    """Steps reported: ~10 per decade (:func:`~qlinreg.geometric_checkpoints`) and every 5 % of
    ``N`` (Monte Carlo's progress and cancellation points)."""
    from qlinreg.algorithm import geometric_checkpoints

    even = np.ceil(np.arange(1, 21) * (steps / 20)).astype(np.int64)
    return np.unique(np.concatenate([geometric_checkpoints(steps), even[even >= 1]]))


# ---- the numbers ------------------------------------------------------------------------------


@dataclass
class Views:
    """What the page shows for one :class:`Setting` (arrays over ``steps``)."""

    steps: np.ndarray
    risk: np.ndarray
    full: np.ndarray
    bound: np.ndarray
    index: np.ndarray
    lam: np.ndarray
    lam_q: np.ndarray
    gamma_max: float
    radius: float
    surrogates: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def penalty(self) -> np.ndarray:
        return self.risk - self.full


class _Cache:
    """Thread-safe least-recently-used cache of expensive, setting-keyed values."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make: Callable[[], object]):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_SAMPLES = _Cache(4)  # role tensors of the pilot, per (problem, B, γ, N)
_SURROGATES = _Cache(256)  # idealized stand-in, per (problem, sgd, role, format)
_ADVISORS = _Cache(2)  # Advisor (measurement of the menu), per (problem, sgd)


def _surrogate(setting: Setting, problem, sgd, role: str, text: str):
    """The measured idealized stand-in of format ``text`` on ``role`` (cached)."""
    from qlinreg.advise import measure_roles, role_samples, surrogate_for
    from qlinreg.quantize import parse_quantizer

    def make():
        samples = _SAMPLES.get(
            (setting.problem_key(), setting.batch, setting.lr, min(setting.steps, 20_000)),
            lambda: role_samples(problem, sgd, seed=setting.seed),
        )
        q = parse_quantizer(text, role)  # the role's default scaling, as the Monte Carlo's
        m = measure_roles(q, {role: samples[role]}, seed=setting.seed)
        return surrogate_for(role, m[role], problem)

    return _SURROGATES.get((setting.problem_key(), setting.sgd_key(), role, text), make)


def _own_moments(setting: Setting, problem, scheme):
    """``scheme`` with the formats on data and labels put back where their own moments are
    exact (a fixed grid: FP without scaling, INT with a fixed scale; docs/theory.md §14), as
    ``qlinreg advise`` predicts them; otherwise ``scheme`` itself (its surrogates: shared
    scales would need seconds of sampling)."""
    from qlinreg.advise import _prediction
    from qlinreg.quantize import parse_quantizer
    from qlinreg.theory.exact import has_exact_moments

    own = {}
    for role, text in setting.formats().items():
        q = parse_quantizer(text, role)
        if _prediction(q, role, problem) == "exact":
            own[role] = q
    if not own:
        return scheme
    mixed = replace(scheme, **own)
    return mixed if has_exact_moments(problem, mixed) else scheme


def _downsample(d: int, points: int = 400) -> np.ndarray:
    """0-based indices of about ``points`` eigenvalues, evenly spaced on a log scale."""
    return np.unique(np.geomspace(1, d, min(d, points)).round().astype(np.int64)) - 1


def compute(setting: Setting) -> Views:
    """The exact risk, full precision, the bound, the spectrum and γ_max of ``setting`` (the
    roles with a number format through their surrogates)."""
    from qlinreg.experiments.extensions import gamma_max
    from qlinreg.quantize import Scheme
    from qlinreg.theory import H_q, bound, exact_risk, second_moment_radius

    cfg = setting.config()
    problem, sgd = cfg.problem(), cfg.sgd()
    theory = dict(cfg.scheme().items())
    surrogates = {}
    for role, text in setting.formats().items():
        theory[role] = _surrogate(setting, problem, sgd, role, text)
        surrogates[role] = f"{text} → {theory[role].label} (measured)"
    scheme = Scheme(**theory)
    own = _own_moments(setting, problem, scheme)
    if own is not scheme:
        for role in ("data", "labels"):
            if getattr(own, role) is not getattr(scheme, role):
                surrogates[role] += "; exact risk from its own moments"
    ck = checkpoints(setting.steps)
    notes = []
    radius = second_moment_radius(problem, scheme, sgd)
    gmax = gamma_max(problem, scheme, setting.batch)
    stable = radius < 1
    nan = np.full(len(ck), np.nan)
    if stable or setting.steps * setting.dim <= MAX_STEPPED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # instability: noted below
            ex = exact_risk(problem, own, sgd, ck)
            fp = exact_risk(problem, None, sgd, ck)
        conv = "exact_risk" if setting.convention == "quantized" else "exact_risk_clean"
        risk, full = getattr(ex, conv).copy(), getattr(fp, conv).copy()
    else:
        risk = full = nan
    if not stable:
        notes.append(
            f"γ = {setting.lr:g} is above the stability limit γ_max = {gmax:.4g}: the expected "
            "risk grows without bound"
            + ("" if np.isfinite(risk).any() else f" (not computed: N·d > {MAX_STEPPED:.0e})")
        )
    for a in (risk, full):
        a[~np.isfinite(a)] = np.nan  # overflowed (unstable): not drawn
    b = nan.copy()
    if setting.average != "polyak":
        notes.append(f"bound: stated for the Polyak average, not {setting.average}")
    else:
        frame = bound(problem, scheme, sgd, ck, convention=setting.convention)
        b = frame["bound"].to_numpy(np.float64).copy()
        b[~np.isfinite(b)] = np.nan
        invalid = ~frame["bound_valid"].to_numpy(bool)
        b[invalid] = np.nan
        if invalid.any():
            reasons = "; ".join(dict.fromkeys(frame.loc[invalid, "bound_reason"].astype(str)))
            notes.append(
                f"bound: its hypotheses fail at {int(invalid.sum())} of {len(b)} N ({reasons})"
            )
    idx = _downsample(setting.dim)
    lam_q = np.asarray(H_q(problem, scheme.data), np.float64)
    return Views(
        steps=ck, risk=risk, full=full, bound=b, index=idx + 1, lam=problem.spectrum[idx],
        lam_q=lam_q[idx], gamma_max=gmax, radius=radius, surrogates=surrogates, notes=notes,
    )  # fmt: skip


def check_monte_carlo(setting: Setting):
    """The :class:`~qlinreg.pipeline.RunSpec` of a Monte Carlo run of ``setting`` (real formats,
    the page's checkpoints), after the page's limit on its size."""
    work = setting.trials * setting.steps * setting.batch * setting.dim
    if work > MAX_MC_WORK:
        raise ValueError(
            f"Monte Carlo: trials·N·B·d = {work:.3g} exceeds {MAX_MC_WORK:.0e} (about a minute "
            "on 2 cores); lower trials, N, B or d, or use qlinreg run"
        )
    if setting.batch * setting.dim > MAX_BATCH_VALUES:
        raise ValueError(f"Monte Carlo: batch × dim must be ≤ {MAX_BATCH_VALUES:.0e}")
    from qlinreg.pipeline import RunSpec

    cfg = setting.config(monte_carlo=True)
    return RunSpec(
        cfg.problem(), cfg.scheme(), cfg.sgd(), trials=setting.trials, seed=setting.seed,
        checkpoints=checkpoints(setting.steps),
    )  # fmt: skip


# ---- the page ---------------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised from the Monte Carlo progress callback to stop a cancelled run."""


class _Jobs:
    """Background work of every session (Monte Carlo runs, advisor measurements): at most
    ``limit`` at a time across the server; more are refused, not queued."""

    def __init__(self, limit: int):
        self.limit = limit
        self.slots = threading.BoundedSemaphore(limit)
        self.pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="qlinreg-explore")
        self.running: set[threading.Event] = set()  # cancel flags of the Monte Carlo runs

    def cancel_all(self) -> None:
        """Stop every Monte Carlo run at its next checkpoint (the server is stopping)."""
        for flag in list(self.running):
            flag.set()

    def submit(self, fn, *args) -> bool:
        if not self.slots.acquire(blocking=False):
            return False

        def run():
            try:
                fn(*args)
            finally:
                self.slots.release()

        self.pool.submit(run)
        return True


_CONTROL_HELP = {
    "dim": "d (≤ 100000)",
    "decay": "exponent a / rate",
    "source": "w* exponent b",
    "noise": "σ² (label noise)",
    "steps": "N (steps, ≤ 1e12)",
    "batch": "B (batch size)",
    "lr": "γ (step size)",
    "trials": "Monte Carlo trials",
    "seed": "seed",
}


def _esc(text) -> str:
    return html.escape(str(text))


class _Page:
    """One browser session: controls, plots, and the callbacks between them."""

    def __init__(self, doc, jobs: _Jobs):
        from bokeh.events import DocumentReady
        from bokeh.layouts import column, row
        from bokeh.models import (
            Button,
            ColumnDataSource,
            CustomJS,
            Div,
            HoverTool,
            Select,
            Slider,
            TextInput,
        )
        from bokeh.plotting import figure

        self.doc, self.jobs = doc, jobs
        self.muted = False
        self.mc_cancel: threading.Event | None = None
        self.mc_frame = None
        self.setting: Setting | None = None
        request = doc.session_context.request if doc.session_context else None
        args = request.arguments if request is not None else {}
        self.raw = {f.name: _text(f.default) for f in fields(Setting)}
        self.url_error = ""
        for key, values in args.items():
            if key == "bokeh-session-id":
                continue
            self.raw[key] = values[-1].decode("utf-8", "replace")[: MAX_TEXT + 1]

        self.inputs = {}
        for name, label in _CONTROL_HELP.items():
            w = TextInput(title=label, value=self.raw.get(name, ""), name=name, width=170)
            w.on_change("value", functools.partial(self.on_field, name))
            self.inputs[name] = w
        for name, options in _CHOICES.items():
            value = self.raw.get(name)
            w = Select(title=name.replace("_", " "), options=list(options), name=name,
                       value=value if value in options else options[0], width=170)  # fmt: skip
            w.on_change("value", functools.partial(self.on_field, name))
            self.inputs[name] = w
        self.gamma_div = Div(name="gamma_max", text="", width=350)
        self.role_widgets = {}
        role_rows = []
        for role in ROLES:
            kind, eps, fmt, rnd = _split_quantizer(self.raw.get(role, "none"))
            k = Select(title=role, options=[*IDEALIZED, "format"], value=kind, width=170,
                       name=f"kind_{role}")  # fmt: skip
            s = Slider(start=min(-8.0, eps), end=max(0.0, eps), value=eps, step=0.05,
                       title="log₁₀ ε", width=170, name=f"eps_{role}")  # fmt: skip
            f = Select(title="format", options=list(FORMATS), value=fmt, width=110,
                       name=f"format_{role}")  # fmt: skip
            r = Select(title="rounding", options=list(ROUNDINGS), value=rnd, width=110,
                       name=f"rounding_{role}")  # fmt: skip
            note = Div(text="", name=f"surrogate_{role}", width=350)
            for w in (k, s, f, r):
                w.on_change("value", functools.partial(self.on_role, role))
            self.role_widgets[role] = (k, s, f, r, note)
            role_rows.append(column(row(k, s, f, r), note))
            self._show_role(role)

        self.error = Div(name="error", text="", visible=False, width=900,
                         styles={"color": "#b00020", "font-weight": "600"})  # fmt: skip
        self.readout = Div(name="readout", text="", width=900)
        self.notes = Div(name="notes", text="", width=900, styles={"color": "#8a5a00"})
        self.query = Div(name="query", text="", visible=False)
        self.query.js_on_change("text", CustomJS(args={"q": self.query}, code=_URL_JS))
        doc.js_on_event(DocumentReady, CustomJS(args={"q": self.query}, code=_URL_JS))

        self.exact = ColumnDataSource(
            {k: [] for k in ("step", "risk", "full", "bound", "penalty")}, name="exact_source"
        )
        self.mc = ColumnDataSource({k: [] for k in ("step", "mean", "lo", "hi")}, name="mc_source")
        self.spec = ColumnDataSource({"index": [], "lam": [], "lam_q": []}, name="spectrum_source")
        tools = "pan,wheel_zoom,box_zoom,reset,save"
        risk = figure(title="excess risk vs N", x_axis_type="log", y_axis_type="log",
                      width=520, height=380, tools=tools, name="risk_plot",
                      x_axis_label="step N", y_axis_label="excess risk")  # fmt: skip
        risk.varea("step", "lo", "hi", source=self.mc, fill_alpha=0.25, color="#d62728",
                   legend_label="Monte Carlo ± 1 SE")  # fmt: skip
        risk.scatter("step", "mean", source=self.mc, size=4, color="#d62728")
        risk.line("step", "full", source=self.exact, line_dash="dashed", color="#555555",
                  line_width=2, legend_label="full precision (exact)")  # fmt: skip
        risk.line("step", "bound", source=self.exact, line_dash="dotted", color="#2ca02c",
                  line_width=2, legend_label="bound (unit constants)")  # fmt: skip
        line = risk.line("step", "risk", source=self.exact, color="#1f77b4", line_width=3,
                         legend_label="exact risk")  # fmt: skip
        risk.add_tools(HoverTool(renderers=[line], tooltips=[
            ("N", "@step{0,0}"), ("exact", "@risk{0.0000e}"), ("full precision", "@full{0.0000e}"),
            ("bound", "@bound{0.0000e}")]))  # fmt: skip
        risk.legend.location = "bottom_left"
        risk.legend.click_policy = "hide"
        pen = figure(title="penalty: quantized − full precision (exact)", x_axis_type="log",
                     width=520, height=380, tools=tools, name="penalty_plot",
                     x_axis_label="step N", y_axis_label="penalty")  # fmt: skip
        pl = pen.line("step", "penalty", source=self.exact, color="#9467bd", line_width=3)
        pen.add_tools(
            HoverTool(
                renderers=[pl], tooltips=[("N", "@step{0,0}"), ("penalty", "@penalty{0.0000e}")]
            )
        )
        sp = figure(title="spectrum: H vs H^(q)", x_axis_type="log", y_axis_type="log",
                    width=520, height=330, tools=tools, name="spectrum_plot",
                    x_axis_label="index i", y_axis_label="eigenvalue")  # fmt: skip
        sp.line("index", "lam", source=self.spec, color="#555555", line_width=2, legend_label="λ_i")
        sp.line("index", "lam_q", source=self.spec, color="#ff7f0e", line_width=3,
                legend_label="λ^(q)_i")  # fmt: skip
        sp.legend.location = "bottom_left"

        self.mc_button = Button(label="Run Monte Carlo", button_type="primary", name="mc_run",
                                css_classes=["mc-run"], width=150)  # fmt: skip
        self.mc_stop = Button(label="Cancel", name="mc_cancel", css_classes=["mc-cancel"],
                              disabled=True, width=90)  # fmt: skip
        self.mc_status = Div(name="mc_status", text="", width=500)
        self.mc_button.on_click(self.start_mc)
        self.mc_stop.on_click(self.cancel_mc)
        self.budget = TextInput(title="budget (× full-precision risk)", value="0.1",
                                name="budget", width=200)  # fmt: skip
        self.advise_button = Button(label="Advise", name="advise", css_classes=["advise"],
                                    width=90)  # fmt: skip
        self.apply_button = Button(label="Apply advice", name="apply_advice", disabled=True,
                                   width=120)  # fmt: skip
        self.advice_div = Div(name="advice", text="", width=500)
        self.advice: list[str] = []
        self.advise_button.on_click(self.start_advice)
        self.apply_button.on_click(self.apply_advice)

        i = self.inputs
        controls = column(
            Div(text="<b>problem</b>"), row(i["dim"], i["spectrum"]), row(i["decay"], i["noise"]),
            row(i["w_star"], i["source"]), Div(text="<b>SGD</b>"), row(i["steps"], i["batch"]),
            row(i["lr"], i["average"]), self.gamma_div, Div(text="<b>quantizers per role</b>"),
            *role_rows, Div(text="<b>view</b>"), row(i["convention"], i["seed"]),
        )  # fmt: skip
        self.plots = column(
            row(risk, column(pen)), row(sp, column(
                Div(text="<b>Monte Carlo</b> (real formats, this setting)"),
                row(i["trials"], self.mc_button, self.mc_stop), self.mc_status,
                Div(text="<b>advisor</b> (cheapest formats within the budget, exact prediction)"),
                row(self.budget, self.advise_button, self.apply_button), self.advice_div)),
            name="plots",
        )  # fmt: skip
        doc.add_root(row(controls, column(self.error, self.readout, self.notes, self.plots),
                         self.query))  # fmt: skip
        doc.title = "qlinreg explore"
        doc.on_session_destroyed(lambda _ctx: self.mc_cancel and self.mc_cancel.set())
        self.refresh()

    # -- controls → setting ---------------------------------------------------------------

    def _show_role(self, role: str) -> None:
        k, s, f, r, _ = self.role_widgets[role]
        s.visible = k.value in IDEALIZED[1:]
        f.visible = r.visible = k.value == "format"

    def on_field(self, name: str, _attr, _old, new) -> None:
        self.raw[name] = str(new)
        if not self.muted:
            self.refresh(keep_mc=name == "convention")

    def on_role(self, role: str, _attr, _old, _new) -> None:
        k, s, f, r, _ = self.role_widgets[role]
        self._show_role(role)
        if k.value == "none":
            self.raw[role] = "none"
        elif k.value == "format":
            self.raw[role] = f.value if r.value == "stochastic" else f"{f.value}:{r.value}"
        else:
            self.raw[role] = f"{k.value}:{10.0**s.value:.4g}"
        if not self.muted:
            self.refresh()

    def refresh(self, keep_mc: bool = False) -> None:
        """Validate the controls' values, recompute, redraw; an invalid value shows its error
        instead of the plots."""
        self.query.text = urlencode(self.raw)
        if not keep_mc:
            self.cancel_mc()
            self.mc.data = {k: [] for k in self.mc.data}
            self.mc_frame = None
        try:
            setting = Setting.parse(self.raw)
            views = compute(setting)
        except (ValueError, TypeError) as exc:
            self.setting = None
            self.error.text = f"error: {_esc(exc)}"
            self.error.visible, self.plots.visible = True, False
            self.readout.text = self.notes.text = ""
            return
        old, self.setting = self.setting, setting
        if old is None or old.run_key() != setting.run_key():
            self.advice_div.text, self.advice = "", []
            self.apply_button.disabled = True
        self.error.visible, self.plots.visible = False, True
        self.error.text = ""
        self.exact.data = {
            "step": views.steps.astype(np.float64), "risk": views.risk, "full": views.full,
            "bound": views.bound, "penalty": views.penalty,
        }  # fmt: skip
        self.spec.data = {"index": views.index.astype(np.float64), "lam": views.lam,
                          "lam_q": views.lam_q}  # fmt: skip
        self.gamma_div.text = (
            f"stability limit γ_max = {views.gamma_max:.4g} (γ/γ_max = "
            f"{setting.lr / views.gamma_max:.3g}; spectral radius ρ of the second-moment "
            f"recursion: 1 − ρ = {1 - views.radius:.3g})"
        )
        for role in ROLES:
            self.role_widgets[role][4].text = _esc(views.surrogates.get(role, ""))
        n = setting.steps
        self.readout.text = (
            f"at N = {n:,}: exact risk <b>{views.risk[-1]:.6g}</b>, full precision "
            f"{views.full[-1]:.6g}, penalty {views.penalty[-1]:.4g} ({setting.convention} inputs)"
        )
        self.notes.text = "<br>".join(_esc(t) for t in views.notes)
        if self.mc_frame is not None:
            self._draw_mc(self.mc_frame)

    # -- Monte Carlo ------------------------------------------------------------------------

    def start_mc(self) -> None:
        if self.setting is None or self.mc_cancel is not None:
            return
        try:
            spec = check_monte_carlo(self.setting)
        except (ValueError, TypeError) as exc:
            self.mc_status.text = f"<span style='color:#b00020'>{_esc(exc)}</span>"
            return
        cancel = threading.Event()
        if not self.jobs.submit(self._run_mc, spec, cancel):
            self.mc_status.text = (
                f"refused: {self.jobs.limit} background jobs are already running on this "
                "server; wait for one to finish or cancel it"
            )
            return
        self.mc_cancel = cancel
        self.mc_button.disabled, self.mc_stop.disabled = True, False
        self.mc_status.text = _progress(0, spec.trials, spec.sgd.steps, "compiling")

    def cancel_mc(self) -> None:
        if self.mc_cancel is not None:
            self.mc_cancel.set()
            self.mc_status.text = "cancelled"
        self.mc_cancel = None
        self.mc_button.disabled, self.mc_stop.disabled = False, True

    def _run_mc(self, spec, cancel: threading.Event) -> None:
        """Background thread: the run pipeline, its partial tables pushed to the page."""
        from qlinreg.pipeline import run

        def partial(df) -> None:
            if cancel.is_set():
                raise _Cancelled
            self._push(self._mc_update, cancel, df, "running")

        self.jobs.running.add(cancel)
        try:
            res = run(spec, on_checkpoint=partial)
        except _Cancelled:
            return
        except Exception as exc:  # noqa: BLE001  (shown on the page; the server goes on)
            self._push(self._mc_failed, cancel, f"Monte Carlo failed: {exc}")
            return
        finally:
            self.jobs.running.discard(cancel)
        self._push(self._mc_update, cancel, res.frame, res.status)

    def _push(self, fn, cancel, *args) -> None:
        self.doc.add_next_tick_callback(functools.partial(fn, cancel, *args))

    def _mc_failed(self, cancel, message: str) -> None:
        if cancel is self.mc_cancel:
            self.cancel_mc()
            self.mc_status.text = f"<span style='color:#b00020'>{_esc(message)}</span>"

    def _mc_update(self, cancel, df, status: str) -> None:
        if cancel is not self.mc_cancel:  # cancelled, or the setting changed since
            return
        self.mc_frame = df
        self._draw_mc(df)
        reached, n = int(df["reached"].iloc[0]), int(self.setting.steps)
        self.mc_status.text = _progress(reached, int(df["trials"].iloc[0]), n, status)
        if status != "running":
            self.mc_cancel = None
            self.mc_button.disabled, self.mc_stop.disabled = False, True

    def _draw_mc(self, df) -> None:
        mean, se = ("risk_mean", "risk_se") if self.raw["convention"] == "quantized" else (
            "risk_clean_mean", "risk_clean_se")  # fmt: skip
        done = df[df[mean].notna()]
        m, s = done[mean].to_numpy(np.float64), done[se].fillna(0).to_numpy(np.float64)
        self.mc.data = {"step": done["step"].to_numpy(np.float64), "mean": m,
                        "lo": np.maximum(m - s, m * 1e-3), "hi": m + s}  # fmt: skip

    # -- advisor ----------------------------------------------------------------------------

    def start_advice(self) -> None:
        if self.setting is None:
            return
        try:
            from qlinreg.advise import Budget

            value = parse_number("budget", self.budget.value)
            budget = Budget(value, relative=True, convention=self.setting.convention)
        except ValueError as exc:
            self.advice_div.text = f"<span style='color:#b00020'>budget: {_esc(exc)}</span>"
            return
        setting = self.setting
        if not self.jobs.submit(self._run_advice, setting, budget):
            self.advice_div.text = f"refused: {self.jobs.limit} background jobs already running"
            return
        self.advise_button.disabled = True
        self.advice_div.text = "measuring the menu's formats on this setting's tensors…"

    def _run_advice(self, setting: Setting, budget) -> None:
        from qlinreg.advise import Advisor

        try:
            cfg = setting.config()
            advisor = _ADVISORS.get(
                setting.run_key(),
                lambda: Advisor(cfg.problem(), cfg.sgd(), menu=ADVISOR_MENU,
                                roundings=("stochastic",), seed=setting.seed),
            )  # fmt: skip
            advice = advisor.advise(budget, trials=0)
        except Exception as exc:  # noqa: BLE001  (shown on the page)
            self._push_advice(setting, f"<span style='color:#b00020'>{_esc(exc)}</span>", [])
            return
        self._push_advice(setting, _advice_html(advice), advice.quant)

    def _push_advice(self, setting, text: str, quant: list[str]) -> None:
        def show():
            self.advise_button.disabled = False
            if self.setting is None or self.setting.run_key() != setting.run_key():
                return  # the setting changed meanwhile: this advice is for another one
            self.advice_div.text, self.advice = text, quant
            self.apply_button.disabled = not quant

        self.doc.add_next_tick_callback(show)

    def apply_advice(self) -> None:
        chosen = dict(q.split("=", 1) for q in self.advice)
        self.muted = True
        try:
            for role in ROLES:
                k, _, f, r, _ = self.role_widgets[role]
                name, _, rounding = chosen.get(role, "none").partition(":")
                name = _format_names().get(name, name)
                if name in FORMATS:
                    k.value, f.value, r.value = "format", name, rounding or "stochastic"
                else:
                    k.value = "none"
        finally:
            self.muted = False
        self.refresh()


@functools.cache
def _format_names() -> dict[str, str]:
    """The page's name of each format from the name in its label (``fp8_e4m3fn`` →
    ``fp8_e4m3``)."""
    from qlinreg.quantize import parse_quantizer

    return {parse_quantizer(f).label.split(":")[0]: f for f in FORMATS}


_URL_JS = "window.history.replaceState(null, '', window.location.pathname + '?' + q.text)"


def _split_quantizer(text: str) -> tuple[str, float, str, str]:
    """Controls of one role from its text: ``(kind, log₁₀ ε, format, rounding)`` (defaults
    where the text does not say; a bad text is reported by :meth:`Setting.parse`)."""
    kind, _, rest = text.partition(":")
    eps = -2.0
    if kind in IDEALIZED[1:] and _NUMBER.fullmatch(rest) and 0 < float(rest) < math.inf:
        eps = math.log10(float(rest))
    if kind in FORMATS:
        return "format", eps, kind, rest if rest in ROUNDINGS else "stochastic"
    return (kind if kind in IDEALIZED else "none"), eps, FORMATS[2], "stochastic"


def _progress(done: int, trials: int, steps: int, status: str) -> str:
    frac = done / steps if steps else 0.0
    return (
        f"<progress value='{frac:.4f}' max='1' style='width:200px'></progress> "
        f"{status}: step {done:,} of {steps:,} ({trials} trials)"
    )


def _advice_html(a) -> str:
    rec = a.recommended
    cands = a.candidates.set_index("quant")
    rows = "".join(
        f"<tr><td>{_esc(q.split('=')[0])}</td><td>{_esc(q.split('=', 1)[1])}</td>"
        f"<td>{cands.loc[q, 'bits_per_value']:.3g}</td><td>{_esc(cands.loc[q, 'surrogate'])}</td>"
        f"<td>{cands.loc[q, 'predicted_penalty']:.3g}</td></tr>"
        for q in rec["quant"]
    )
    return (
        f"<table><tr><th>role</th><th>format</th><th>bits</th><th>surrogate</th>"
        f"<th>penalty alone</th></tr>{rows}</table>"
        f"joint predicted penalty {rec['penalty']:.4g} ≤ budget {a.budget_abs:.4g} "
        f"({a.budget.convention} inputs); {rec['cost_fraction']:.1%} of all-FP32 bits per step. "
        "Roles not listed stay in FP32."
    )


# ---- the server -------------------------------------------------------------------------------


def make_server(host: str = "127.0.0.1", port: int = 5006, *, max_jobs: int = 2):
    """A Bokeh server with the explorer at ``/`` (not started). ``port = 0`` picks a free one
    (``server.port``). BokehJS is served from the installed package. ``max_jobs`` caps the
    background jobs (Monte Carlo runs, advisor measurements) of all sessions together."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from bokeh.settings import settings

    from qlinreg.algorithm import positive_int

    positive_int("max_jobs", max_jobs)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
    if port == 0:
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    settings.resources.set_value("server")  # BokehJS from this server, never a CDN
    jobs = _Jobs(max_jobs)
    app = Application(FunctionHandler(lambda doc: _Page(doc, jobs)))
    origins = [f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    server = Server({"/": app}, address=host, port=port, allow_websocket_origin=origins,
                    num_procs=1)  # fmt: skip
    server.qlinreg_jobs = jobs
    return server


def serve(host: str = "127.0.0.1", port: int = 5006, *, max_jobs: int = 2, say=print) -> None:
    """Start the explorer and serve until interrupted (Ctrl-C)."""
    try:
        server = make_server(host, port, max_jobs=max_jobs)
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    compute(Setting())  # compile the exact recursion before the first page asks for it
    server.start()
    shown = f"[{host}]" if ":" in host else host
    say(f"qlinreg explore: http://{shown}:{server.port}/  (Ctrl-C stops)")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.qlinreg_jobs.cancel_all()
        server.stop()
