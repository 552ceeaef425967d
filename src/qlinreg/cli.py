"""Command line: ``qlinreg run | theory | advise | reproduce | explore | sweep | spectrum |
formats``.

Thin: parse, hand the values to the library (which validates them), print. Every user mistake
— a bad option, a bad value, a bad file — is one line ``error: …`` on stderr with exit
status 2, before any work and with nothing written. Exit status 3: a run diverged (its
finished checkpoints are written); 130: interrupted (Ctrl-C or SIGTERM; what finished is
written).
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import typer
from typer.core import TyperGroup

from qlinreg.experiments import ORDER

# The choices below repeat the library's Literals (qlinreg.quantize.rounding and others import
# jax; `qlinreg --help` should not): tests/test_cli.py checks that each copy agrees.
Spectrum = Literal["power_law", "exponential"]
DataMode = Literal["gaussian", "empirical"]
SketchQuantize = Literal["after", "before"]
Average = Literal["polyak", "tail", "last"]
DType = Literal["float32", "float64"]
Executor = Literal["local", "dask"]
Rounding = Literal[
    "stochastic",
    "nearest_even",
    "nearest_away",
    "toward_zero",
    "toward_positive",
    "toward_negative",
    "to_odd",
]
Recipe = Enum("Recipe", {name: name for name in ORDER}, type=str)
Convention = Literal["quantized", "clean"]
Horizon = Literal["N", "inf"]
Solve = Literal["eps"]
ROLES = ("data", "labels", "params", "activations", "grads")


class _OneLineErrors(TyperGroup):
    """Usage errors as one line ``error: COMMAND: message`` (exit 2), no usage block or box."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's (vendored click's) usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()
            else:
                where = getattr(getattr(exc, "ctx", None), "command_path", "qlinreg")
                typer.echo(f"error: {where}: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Learning under quantization in high-dimensional linear regression.",
    pretty_exceptions_enable=False,
)

QUANT_HELP = (
    "ROLE=QUANTIZER, repeatable, each role once (all= first, then overrides). Roles: data "
    "labels params activations grads all. Idealized: none, additive:EPS, multiplicative:EPS, "
    "multiplicative_elementwise:EPS (append :uniform for uniform instead of Gaussian noise). "
    "Formats: FORMAT[:ROUNDING][:OPTION]... with int2…int16, fp32 bf16 fp16 fp8_e4m3 fp8_e5m2 "
    "fp8_e4m3fnuz fp8_e5m2fnuz fp6_e3m2 fp6_e2m3 fp4_e2m1, mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 "
    "mxfp6_e2m3 mxfp4 mxint8 (scale rule floor|ceil|rceil|even), nvfp4; options blockN, "
    "tensor, vector, delayed[=K], srbits=K (docs/formats.md)."
)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _checked(fn, *args, **kwargs):
    """``fn(...)``, turning the library's validation errors into one-line CLI errors."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, ConnectionError) as exc:
        _fail(str(exc))


def _show_warnings(notes) -> None:
    for note in notes:
        typer.echo(f"warning: {note}", err=True)


def _bound_warnings(df) -> list[str]:
    """One line when the table's bound lies outside its hypotheses (then it is not a bound)."""
    if "bound_valid" not in df or df["bound_valid"].astype(bool).all():
        return []
    reason = df.loc[~df["bound_valid"].astype(bool), "bound_reason"].iloc[0]
    return [f"the bound's hypothesis {reason}: its columns are not a bound (bound_valid = false)"]


def _corollary(spec, out_dir: Path) -> list[str]:
    """Print Corollary 4.2's conditions for the run's problem, N, B and γ, with the exact
    risk's verdict; write them to OUT/corollary_4_2.csv (a warning when they do not apply)."""
    from rich.console import Console
    from rich.table import Table

    from qlinreg.files import write_atomic
    from qlinreg.theory.corollary import corollary_4_2, corollary_4_2_exact

    problem = spec.model  # with a sketch: its exact reduction (the offset does not depend on ε)
    try:
        df = corollary_4_2_exact(problem, spec.sgd, corollary_4_2(problem, spec.sgd))
    except ValueError as exc:
        _show_warnings([f"Corollary 4.2 not evaluated: {exc}"])
        return []
    n = int(df["steps"].iloc[0])
    table = Table(
        title=f"Corollary 4.2 (reconstructed, unit constants), N = {n}: each role alone, ε* = "
        f"the largest ε keeping the bound within ×2 of full precision's; exact risk ÷ full "
        f"precision's at ε* and 4ε*",
        title_justify="left",
    )
    for c in ("role", "kind", "ε*", "binding", "exact ×, at ε*", "at 4ε*", "verdict"):
        table.add_column(
            c, justify="left" if c in ("role", "kind", "binding", "verdict") else "right"
        )
    for r in df.itertuples():
        table.add_row(r.role, r.kind, f"{r.eps_max:.3g}", r.binding, f"{r.ratio_at:.3g}",
                      f"{r.ratio_beyond:.3g}", r.verdict)  # fmt: skip
    Console(stderr=False, width=max(Console().width, 120)).print(table)
    path = out_dir / "corollary_4_2.csv"
    write_atomic(path, lambda p: df.to_csv(p, index=False))
    return [str(path)]


def _print_table(df, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]
    cols += ["exact_risk", "exact_risk_se", "exact_risk_clean", "exact_risk_clean_se"]
    cols += ["bound", "bound_clean"]
    estimated = "exact_moments" in df and (df["exact_moments"] == "estimated").any()
    hidden = () if estimated else ("exact_risk_se", "exact_risk_clean_se")
    cols = [c for c in cols if c in df and df[c].notna().any() and c not in hidden]
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="right")
    rows = (
        df
        if len(df) <= 12
        else df.iloc[sorted({*range(0, len(df), max(1, len(df) // 10)), len(df) - 1})]
    )
    for _, r in rows.iterrows():
        table.add_row(*(f"{int(r[c])}" if c == "step" else f"{r[c]:.4g}" for c in cols))
    Console(stderr=False).print(table)


_MOMENTS_NOTES = {
    "surrogate": "exact_risk: number formats replaced by idealized surrogates (one measured ε "
    "each): an approximation, not the format's exact risk",
    "estimated": "exact_risk: moment-estimated (a shared scale couples the coordinates: row "
    "moments estimated from sampled rows; ±exact_risk_se is their sampling error)",
}


def _moments_note(df) -> None:
    if "exact_moments" in df:
        note = _MOMENTS_NOTES.get(str(df["exact_moments"].iloc[0]))
        if note:
            typer.echo(note)


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file with the same fields as these options."),
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Dimension d.")] = None,
    spectrum: Annotated[
        Spectrum | None, typer.Option(help="λ_i = i^-decay, or exp(-decay·(i−1)).")
    ] = None,
    decay: Annotated[
        float | None, typer.Option(help="Spectrum exponent a (or exponential rate).")
    ] = None,
    w_star: Annotated[
        str | None,
        typer.Option(
            "--w-star",
            help="w* = ones, power_law (i^-source) or gaussian (N(0, I) from seed); with "
            "--covariance also a .npy file.",
        ),
    ] = None,
    source: Annotated[float | None, typer.Option(help="Exponent b of a power-law w*.")] = None,
    noise: Annotated[float | None, typer.Option(help="Label-noise variance σ².")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size B.")] = None,
    lr: Annotated[float | None, typer.Option(help="Step size γ.")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of SGD steps N.")] = None,
    average: Annotated[Average | None, typer.Option(help="Iterate reported.")] = None,
    trials: Annotated[
        int | None, typer.Option(help="Independent Monte Carlo runs (0: theory only).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Root seed, in [0, 2^64).")] = None,
    dtype: Annotated[DType | None, typer.Option(help="Precision of the simulation.")] = None,
    literal: Annotated[
        bool | None,
        typer.Option(
            "--literal/--fast",
            help="Follow the update verbatim (no exact-in-distribution shortcuts).",
        ),
    ] = None,
    quant: Annotated[list[str] | None, typer.Option("--quant", "-q", help=QUANT_HELP)] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--store-weights",
            help="Store w_t in a number format after each update, e.g. bf16:nearest_even.",
        ),
    ] = None,
    exact: Annotated[
        bool | None,
        typer.Option(
            "--exact",
            help="Add the exact expected risk: idealized quantizers, and number formats on "
            "data (FP unscaled, INT fixed scale: exact; docs/theory.md §14).",
        ),
    ] = None,
    surrogate: Annotated[
        bool | None,
        typer.Option(
            "--surrogate",
            help="With --exact (or theory): replace number formats by idealized surrogates (one "
            "measured ε each) instead of their exact moments; the only theory for formats on "
            "params, activations, grads (an approximation).",
        ),
    ] = None,
    bound: Annotated[
        bool | None,
        typer.Option("--bound", help="Add the paper's bound (unit constants; Polyak average)."),
    ] = None,
    schedule: Annotated[
        list[str] | None,
        typer.Option(help="STEP:LR, repeatable: step size LR from update STEP on."),
    ] = None,
    step_decay: Annotated[
        float | None,
        typer.Option(help="Multiply γ by this factor every --decay-every steps (in (0, 1))."),
    ] = None,
    decay_every: Annotated[
        int | None, typer.Option(help="Steps between decays (default ⌈N / log2 N⌉).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Your data: a .npz (arrays X, y), .csv or .parquet file, or sklearn:NAME "
            "(diabetes, digits, breast_cancer, iris, wine, linnerud). Σ = XᵀX/n, w* = least "
            "squares, σ² = its mean squared residual; d is the data's."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column of a .csv/.parquet file (default: last).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="Random features of the data: relu:D or rff:D (D ≤ 10⁴, seeded)."),
    ] = None,
    data_mode: Annotated[
        DataMode | None,
        typer.Option(
            help="gaussian: x ~ N(0, Σ), y = ⟨w*, x⟩ + N(0, σ²); empirical: rows of the data "
            "resampled (the real distribution; risk ½‖w − w*‖²_Σ)."
        ),
    ] = None,
    standardize: Annotated[
        bool | None,
        typer.Option("--standardize/--raw", help="Standardize the data's columns (default)."),
    ] = None,
    center: Annotated[
        bool | None, typer.Option("--center", help="Subtract the column means of X and y.")
    ] = None,
    ridge: Annotated[
        float | None,
        typer.Option(help="Ridge λ of the fit (needed when Σ is singular, e.g. n < d)."),
    ] = None,
    covariance: Annotated[
        str | None,
        typer.Option(help="A given Gaussian: H as a d × d .npy file (with --w-star W.npy)."),
    ] = None,
    sketch: Annotated[
        str | None,
        typer.Option(
            help="The follow-up's sketched model ⟨v, Sx⟩: M (a seeded Gaussian M × d sketch, "
            "entries N(0, 1/M)) or a .npy file of S (M × d). Risks against the full model w*."
        ),
    ] = None,
    sketch_seed: Annotated[
        int | None, typer.Option(help="Seed of the Gaussian sketch (default 0).")
    ] = None,
    sketch_quantize: Annotated[
        SketchQuantize | None,
        typer.Option(
            help="after: quantize the sketched features Q_d(Sx) (default; exact theory); "
            "before: S·Q_d(x) (Monte Carlo only, except none/rank-one multiplicative data)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/run).")] = None,
    corollary: Annotated[
        bool | None,
        typer.Option(
            "--corollary/--no-corollary",
            help="Also print Corollary 4.2's ε conditions per role (unit constants, at N) with "
            "the exact risk's verdict, and write OUT/corollary_4_2.csv (default: on for "
            "theory, off for run).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Simulate quantized SGD; write OUT/risk.parquet, OUT/risk.csv and OUT/risk.png.

    The tables are rewritten as checkpoints complete, with status = interrupted and the step
    reached until the run ends (ok), diverges (exit 3) or is interrupted (exit 130). With
    --data or --covariance every quantizer acts on the data's own coordinates.
    """
    _run_command(locals(), theory=False)


@app.command(
    "theory",
    help="Exact expected risk only (no Monte Carlo), at any N: OUT/theory.parquet, "
    "OUT/theory.csv, OUT/theory.png. The options of run; --bound adds the bound (its "
    "hypotheses checked: bound_valid). Also prints Corollary 4.2's ε conditions with the exact "
    "risk's verdict (OUT/corollary_4_2.csv; --no-corollary skips it). Cost does not grow with "
    "N (closed form, docs/theory.md §9).",
)
@functools.wraps(run)
def theory(**options) -> None:
    _run_command(options, theory=True)


_MONTE_CARLO_ONLY = {"trials": "--trials", "dtype": "--dtype", "literal": "--literal/--fast"}


def _run_command(options: dict, *, theory: bool) -> None:
    """``qlinreg run`` (Monte Carlo, plus theory with --exact/--bound) or ``qlinreg theory``."""
    from qlinreg.config import run_options
    from qlinreg.files import prepare_dir
    from qlinreg.pipeline import QuantizationWarning
    from qlinreg.pipeline import run as run_pipeline

    given = dict(options)
    config, progress = given.pop("config"), given.pop("progress")
    corollary = given.pop("corollary")
    corollary = theory if corollary is None else corollary
    given["quant"] = given["quant"] or None
    given["schedule"] = given["schedule"] or None
    given["out"] = None if given["out"] is None else str(given["out"])
    if theory:
        for key, flag in _MONTE_CARLO_ONLY.items():
            if given[key] is not None:
                _fail(f"theory: {flag} does not apply (no Monte Carlo); use qlinreg run")
        given.update(trials=0, exact=True)
    default_out = "results/theory" if theory else "results/run"
    cfg, out_dir = _checked(run_options, config, given, default_out)
    spec = _checked(cfg.spec)
    _checked(prepare_dir, out_dir, "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationWarning)  # printed below, once
        result = run_pipeline(
            spec, out=out_dir, progress=progress and sys.stderr.isatty(),
            stem="theory" if theory else "risk",
        )  # fmt: skip
    _show_warnings(result.warnings)
    if result.status == "diverged":
        typer.echo(f"error: {result.message}", err=True)
    elif result.status == "interrupted":
        typer.echo(f"interrupted at step {result.reached} of {cfg.steps}: kept the "
                   "checkpoints that finished (status = interrupted)", err=True)  # fmt: skip
    if len(result.frame):
        _print_table(result.frame, spec.title)
        _moments_note(result.frame)
    _show_warnings(_bound_warnings(result.frame))
    written = [str(p) for p in result.written]
    if corollary and result.status == "ok":
        written += _corollary(spec, out_dir)
    typer.echo(f"wrote {', '.join(written)}")
    raise typer.Exit(result.exit_code)


# ``qlinreg advise``: the problem and SGD options of ``run`` (so a new problem option reaches it
# too), without those that describe one run's quantizers, Monte Carlo or output.
_NOT_ADVISE = {
    "quant", "storage", "exact", "bound", "surrogate", "trials", "dtype", "literal", "out"
}  # fmt: skip


def _advise_options(
    budget: Annotated[
        float,
        typer.Option(help="Penalty allowed: quantized minus full-precision risk (> 0)."),
    ],
    relative: Annotated[
        bool, typer.Option("--relative", help="The budget is × the full-precision risk.")
    ] = False,
    convention: Annotated[
        Convention, typer.Option(help="Risk convention of the budget (inputs quantized or not).")
    ] = "quantized",
    horizon: Annotated[
        Horizon, typer.Option(help="The penalty at N, or its floor as N → ∞ (inf).")
    ] = "N",
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help="A role that may be quantized: data labels params activations grads "
            "(repeatable; default all).",
        ),
    ] = None,
    menu: Annotated[
        list[str] | None,
        typer.Option(
            help="Candidate formats, comma-separated, for every role or ROLE=f1,f2 (repeatable; "
            "default fp32 bf16 fp16, FP8/FP6/FP4, MX, nvfp4, int8 int4; INT and NVFP4 take "
            "their role's default scaling, delayed on labels, activations and gradients)."
        ),
    ] = None,
    rounding: Annotated[
        list[str] | None,
        typer.Option(
            help="Rounding tried for a format given without one: stochastic nearest_even "
            "nearest_away toward_zero toward_positive toward_negative to_odd (repeatable; "
            "default the first two)."
        ),
    ] = None,
    cost_weights: Annotated[
        list[str] | None,
        typer.Option("--cost-weights", help="ROLE=W: weight of a role's bits (repeatable)."),
    ] = None,
    trials: Annotated[
        int, typer.Option(help="Monte Carlo trials verifying the advice (0: none).")
    ] = 32,
    allow_flagged: Annotated[
        bool,
        typer.Option(
            "--allow-flagged",
            help="Also recommend candidates whose surrogate is "
            "known to fail (saturation, underflow, one-element scale groups).",
        ),
    ] = False,  # fmt: skip
    solve: Annotated[
        Solve | None,
        typer.Option(help="eps: also the largest ε per role and idealized kind within budget."),
    ] = None,
    max_batch: Annotated[
        int, typer.Option(help="Largest batch size of the batch-size table.")
    ] = 1024,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/advise"),
) -> None:
    pass


def advise(**options) -> None:
    """Which tensor to quantize, to which format, at what cost: predicted, then verified.

    Measures each candidate format on the tensors its role carries, predicts each penalty with
    the exact risk, finds the cheapest scheme within the budget (bits per value × values per
    step) and checks it by Monte Carlo with the real formats. Writes OUT/advice.json,
    advice.csv, joint.csv, batches.csv, verification.csv, pareto.png, summary.md (and
    max_eps.csv with --solve eps).
    """
    from qlinreg.advise import Budget, max_epsilon, write_advice
    from qlinreg.advise import advise as run_advice
    from qlinreg.config import run_options
    from qlinreg.files import prepare_dir, write_atomic

    own = set(inspect.signature(_advise_options).parameters)
    adv = {k: v for k, v in options.items() if k in own}
    given = {k: v for k, v in options.items() if k not in own}
    config, _ = given.pop("config"), given.pop("progress")
    given["schedule"] = given["schedule"] or None
    given.update(trials=0, exact=True)
    cfg, _ = _checked(run_options, config, given, "results/advise")
    problem, sgd, offset = _checked(_advise_setting, cfg)
    budget = _checked(Budget, adv["budget"], adv["relative"], adv["convention"], adv["horizon"])
    menu = _checked(_parse_menu, adv["menu"])
    weights = _checked(_parse_weights, adv["cost_weights"])
    out = adv["out"]
    _checked(prepare_dir, out, "out")
    kw = {"roles": adv["role"] or None, "menu": menu, "roundings": adv["rounding"] or None}
    kw = {k: v for k, v in kw.items() if v is not None}
    say = (lambda m: typer.echo(f"  {m}", err=True)) if sys.stderr.isatty() else None
    result = _checked(
        run_advice, problem, sgd, budget, cost_weights=weights, trials=adv["trials"],
        seed=cfg.seed, allow_flagged=adv["allow_flagged"], max_batch=adv["max_batch"],
        risk_offset=offset, progress=say, **kw,
    )  # fmt: skip
    written = write_advice(result, out)
    _print_advice(result)
    if adv["solve"] == "eps":
        table = _checked(max_epsilon, problem, sgd, budget, roles=kw.get("roles", ROLES))
        write_atomic(out / "max_eps.csv", lambda p: table.to_csv(p, index=False))
        written.append(out / "max_eps.csv")
        _print_max_eps(table)
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")


def _advise_setting(cfg):
    """``(problem, sgd, risk offset)`` of a run configuration for the advisor: the run's model
    (:attr:`qlinreg.RunSpec.model`; with a sketch, the sketched model's exact reduction) and
    what its risks miss (the sketch's approximation error). Quantizing before the sketch has
    no exact risk to predict with."""
    spec = cfg.spec()
    if spec.before:
        raise ValueError(
            "advise: quantizing x before the sketch (sketch_quantize = before) has no exact "
            "risk for number formats; use sketch_quantize = after"
        )
    return spec.model, spec.sgd, spec.offset


def _signature(base, own, drop) -> inspect.Signature:
    """``base``'s parameters minus ``drop``, then ``own``'s; required ones first."""
    params = [p for n, p in inspect.signature(base, eval_str=True).parameters.items()
              if n not in drop]  # fmt: skip
    params += inspect.signature(own, eval_str=True).parameters.values()
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    return inspect.Signature(sorted(params, key=lambda p: p.default is not p.empty))


advise.__signature__ = _signature(run, _advise_options, _NOT_ADVISE)
app.command("advise")(advise)


def _parse_menu(items):
    """``--menu`` values: ``f1,f2`` for every role or ``ROLE=f1,f2``."""
    if not items:
        return None
    every, per_role = [], {}
    for item in items:
        role, sep, names = item.partition("=")
        target = per_role.setdefault(role.strip(), []) if sep else every
        names = names if sep else item
        target += [n.strip() for n in names.split(",") if n.strip()]
    if not per_role:
        return every
    return {r: per_role.get(r, every) for r in {*per_role, *(ROLES if every else ())}}


def _parse_weights(items):
    out = {}
    for item in items or ():
        role, sep, w = item.partition("=")
        try:
            out[role.strip()] = float(w)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"cost weights: give ROLE=W (e.g. data=2), got {item!r}")
    return out


def _print_advice(a) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    b = a.budget
    title = (f"advice: penalty ≤ {a.budget_abs:.3g} ({b.convention} inputs, horizon {b.horizon}); "
             f"full-precision risk {a.full_risk:.4g}")  # fmt: skip
    t = Table(title=title, title_justify="left")
    for c in ("role", "format", "bits/value", "predicted by", "penalty alone"):
        t.add_column(c, justify="left" if c in ("role", "format") else "right",
                     no_wrap=c == "format")  # fmt: skip
    cands = a.candidates
    chosen = {q.split("=")[0]: q for q in a.recommended["quant"]}
    for role in ROLES:
        if role not in chosen:
            t.add_row(role, "fp32", "32", "—", "0")
            continue
        r = cands[cands["quant"] == chosen[role]].iloc[0]
        how = r["prediction"]
        if how == "surrogate":
            how = f"{r['error_model'][:4]}. ε {r['surrogate_eps']:.2g}"
        pen = f"{r['predicted_penalty']:.3g}"
        if r["predicted_se"] > 0:
            pen += f" ± {r['predicted_se']:.1g}"
        t.add_row(role, chosen[role].split("=", 1)[1], f"{r['bits_per_value']:.3g}", how, pen)
    console.print(t)
    rec = a.recommended
    typer.echo(f"joint: predicted penalty {rec['penalty']:.4g}, {rec['bits_per_step']:.4g} "
               f"bits/step = {rec['cost_fraction']:.1%} of all-FP32")  # fmt: skip
    for _, v in a.verification.iterrows():
        if v["status"] != "ok":
            typer.echo(f"{v['scheme']}: Monte Carlo did not finish: {v['status']}")
            continue
        typer.echo(
            f"{v['scheme']}: Monte Carlo penalty {v['penalty']:.4g} ± {v['penalty_se']:.2g} "
            f"(predicted {v['predicted']:.4g}): "
            f"{'within budget' if v['within_budget'] else 'OVER BUDGET'}, "
            f"{'agrees' if v['agrees'] else 'DISAGREES with the prediction'}"
        )
    for n in a.notes:
        typer.echo(f"note: {n}")
    typer.echo("run it: qlinreg run " + " ".join(f"-q {q}" for q in rec["quant"]))


def _print_max_eps(table) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="largest ε within budget (penalty of one role alone); Corollary 4.2's ε* "
              "(unit constants, bound within ×2 of full precision; reconstructed)",
              title_justify="left")  # fmt: skip
    for c in ("role", "kind", "convention", "max ε", "Cor. 4.2 ε*"):
        t.add_column(c, justify="left" if "ε" not in c else "right")
    for _, r in table.iterrows():
        eps = "> 1" if r["max_eps"] != r["max_eps"] else f"{r['max_eps']:.3g}"
        t.add_row(r["role"], r["kind"], r["convention"], eps, f"{r['corollary_4_2_eps']:.3g}")
    Console().print(t)


@app.command()
def reproduce(
    quick: Annotated[
        bool,
        typer.Option(
            help="Small sizes, PNG figures only; without --only, the paper's headline "
            "experiments (paper_q1 paper_q2 batch_scaling target_ablation fp_vs_int "
            "spectral_distortion step_size corollary_4_2), about a minute on 2 cores."
        ),
    ] = False,
    only: Annotated[
        list[Recipe] | None, typer.Option(help="Run only these experiments (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results"),
) -> None:
    """Run the paper's experiments into OUT: tables, PNG/SVG figures and OUT/index.html."""
    from qlinreg.experiments import HEADLINE, RECIPES, run_recipe
    from qlinreg.files import prepare_dir
    from qlinreg.report import Section, claims_frame, write_report

    names = [r.value for r in only] if only else list(HEADLINE if quick else RECIPES)
    _checked(prepare_dir, out, "out")
    claims, sections, stopped = [], [], None
    for name in names:
        typer.echo(f"{name}: {RECIPES[name].description}")
        try:
            written = run_recipe(name, out, size="quick" if quick else "full")
        except KeyboardInterrupt:
            stopped = name
            break
        for p in written["tables"] + written["figures"]:
            typer.echo(f"  wrote {p}")
        for c in written["claims"]:
            typer.echo(f"  [{'held' if c.held else 'DID NOT HOLD'}] ({c.convention}) {c.claim}")
        for note in written["notes"]:
            typer.echo(f"  {note}")
        claims += written["claims"]
        sections.append(
            Section(name, RECIPES[name].description, written["figures"], written["tables"],
                    written["notes"])
        )  # fmt: skip
    claims_frame(claims).to_csv(out / "claims.csv", index=False)
    size = "quick sizes (--quick)" if quick else "full sizes"
    note = f"Generated by qlinreg reproduce, {size}."
    if stopped:
        done = ", ".join(s.name for s in sections) or "none"
        note += f" Interrupted during {stopped}: only these recipes finished: {done}."
    report = write_report(out, claims, sections, note=note)
    typer.echo(f"wrote {out / 'claims.csv'} and {report}")
    if stopped:
        typer.echo(f"interrupted during {stopped}: the report holds the recipes that finished",
                   err=True)  # fmt: skip
        raise typer.Exit(130)


@app.command()
def explore(
    host: Annotated[
        str, typer.Option(help="Address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 5006,
    max_jobs: Annotated[
        int,
        typer.Option(help="Background jobs (Monte Carlo, advisor) at once, all pages together."),
    ] = 2,
) -> None:
    """Interactive page of the exact risk: move d, the spectrum, w*, σ², N, B, γ, the average
    and each role's quantizer (ε on a log slider, or a number format through its measured
    surrogate) and watch risk vs N, the penalty, the bound, H vs H^(q) and the advice; run
    Monte Carlo for the current setting. The URL encodes the setting. Offline: BokehJS is
    served from the installed package (docs/explore.md).
    """
    from qlinreg.explore import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: listening on {host}: anyone who can reach it can use the page "
            "(and start Monte Carlo runs, up to --max-jobs at once)",
            err=True,
        )
    _checked(serve, host, port, max_jobs=max_jobs, say=typer.echo)


@app.command()
def spectrum(
    quant: Annotated[
        list[str] | None,
        typer.Option("--quant", "-q", help="Data quantizer(s) KIND[:ARGS], repeatable."),
    ] = None,
    dim: Annotated[int, typer.Option(help="Dimension d.")] = 200,
    spectrum: Annotated[Spectrum, typer.Option(help="Spectrum of H.")] = "power_law",
    decay: Annotated[float, typer.Option(help="Spectrum exponent a (or rate).")] = 2.0,
    samples: Annotated[int, typer.Option(help="Quantized samples for the estimate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the samples, in [0, 2^64).")] = 0,
    data: Annotated[
        str | None, typer.Option(help="A data set, as for qlinreg run (its Σ = XᵀX/n).")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Random features of the data: relu:D or rff:D.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target column of a table.")] = None,
    ridge: Annotated[float | None, typer.Option(help="Ridge λ of the fit.")] = None,
    covariance: Annotated[str | None, typer.Option(help="H as a d × d .npy file.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/spectrum"),
) -> None:
    """Spectrum of H against that of H^(q) (closed form and estimated from quantized samples).

    With --data or --covariance the quantizers act on the data's coordinates: elementwise
    noise then gives H^(q) = Σ + ε·diag(Σ), drawn against (1+ε)·Σ (quantized in the
    eigenbasis, the paper's setting).
    """
    import pandas as pd

    from qlinreg import prng
    from qlinreg.algorithm import positive_int
    from qlinreg.config import RunConfig
    from qlinreg.files import prepare_dir
    from qlinreg.plot import plot_spectrum, save
    from qlinreg.quantize import parse_quantizer
    from qlinreg.theory import quantized_spectrum

    specs = quant or ["additive:0.001", "multiplicative:0.01", "int8", "fp8_e4m3"]
    given = {"data": data, "features": features, "target": target, "ridge": ridge}
    given["covariance"] = covariance
    given = {k: v for k, v in given.items() if v is not None}
    cfg = _checked(RunConfig, dim=dim, spectrum=spectrum, decay=decay, **given)
    problem = _checked(cfg.problem)
    qs = [_checked(parse_quantizer, s) for s in specs]
    _checked(positive_int, "samples", samples, low=2)
    _checked(prng.key, seed)
    _checked(prepare_dir, out, "out")
    frames = []
    for spec, q in zip(specs, qs, strict=True):
        df = quantized_spectrum(problem, q, samples=samples, seed=seed)
        df["quantizer"] = spec
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.to_parquet(out / "spectrum.parquet", index=False)
    df.to_csv(out / "spectrum.csv", index=False)
    name = problem.name or f"{spectrum} decay {decay:g}"
    save(plot_spectrum(df, title=f"{name}, d={problem.d}"), out / "spectrum.png")
    typer.echo(f"wrote {out}/spectrum.parquet, spectrum.csv, spectrum.png")


def _formats_lines(df, title: str) -> list[str]:
    """The ``qlinreg formats`` table as plain text lines of at most 80 characters."""

    def num(v) -> str:
        return "—" if v != v else f"{v:.3g}"  # NaN → —

    short = {"additive": "add", "multiplicative": "mul", "exact": "exact"}
    head = ("format", "paper ε", "ε add", "ε mult", "fit", "satur.", "underfl.", "blk sat")
    widths = (16, 12, 8, 8, 5, 8, 8, 8)
    rows = [head]
    for _, r in df.iterrows():
        paper = f"{short[r['paper_model']]} {num(r['paper_eps'])}"
        rows.append((
            r["format"], paper, num(r["eps_additive"]), num(r["eps_multiplicative"]),
            short.get(r["measured_model"], r["measured_model"]), num(r["saturated"]),
            num(r["underflow"]), num(r["blocks_saturated"]),
        ))  # fmt: skip
    lines = [title]
    for i, row in enumerate(rows):
        tail = zip(row[1:], widths[1:], strict=True)
        cells = [f"{row[0]:<{widths[0]}}"] + [f"{c:>{w}}" for c, w in tail]
        lines.append(" ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    lines += [
        "paper: the paper's model and ε (INT b bits: add 2^-2b; FP m mantissa bits:",
        "mul 2^-2m); ε add = mean (Q(u)−u)², ε mult = mean ((Q(u)−u)/u)²; fit: the model",
        "that fits the errors better; satur./underfl.: fractions of entries saturated /",
        "flushed to 0; blk sat: MX blocks whose maximum saturates. --out: all columns.",
    ]
    return lines


@app.command()
def formats(
    role: Annotated[
        Literal["data", "labels"], typer.Option(help="Features or labels of the paper's data.")
    ] = "data",
    rounding: Annotated[Rounding, typer.Option(help="Rounding mode of every format.")] = (
        "stochastic"
    ),
    dim: Annotated[int, typer.Option(help="Dimension d of the paper's features.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
) -> None:
    """Measured ε (additive and multiplicative) of the named formats on the paper's data.

    Next to the paper's rough mapping (INT b bits ≈ 2^(−2b), FP m mantissa bits ≈ 2^(−2m)),
    with the fractions of saturated and underflowed entries (and, for MX, of block maxima);
    fits in 80 columns. --out writes every column (fit slope, bias, ...) as CSV.
    """
    from qlinreg.files import prepare_file
    from qlinreg.quantize import formats_table

    if out is not None:
        _checked(prepare_file, out, "out")
    df = _checked(formats_table, rounding=rounding, role=role, dim=dim)
    title = f"measured ε on the paper's {role} (d = {dim}, {rounding} rounding)"
    typer.echo("\n".join(_formats_lines(df, title)))
    if out is not None:
        df.to_csv(out, index=False)
        typer.echo(f"wrote {out}")


@app.command()
def sweep(
    grid: Annotated[
        Path, typer.Argument(help="TOML file: a base table of fields, a grid table of lists.")
    ],
    store: Annotated[Path, typer.Option(help="Parquet store folder.")] = Path("results/sweep"),
    executor: Annotated[
        Executor, typer.Option(help="This process, or a Dask cluster (local or --scheduler).")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, e.g. tcp://host:8786 (trusted: see README)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes of a local Dask cluster (≥ 1).")
    ] = None,
) -> None:
    """Run every cell of a grid into a resumable Parquet store (finished cells are skipped).

    Exit 3 if a cell diverged (listed; it is stored, with status = diverged), 130 if
    interrupted (finished cells are kept; the cell in flight is not stored).
    """
    from qlinreg.sweep import check_executor, load_sweep, run_sweep

    spec = _checked(load_sweep, grid)
    _checked(check_executor, executor, scheduler, workers)
    n = len(spec.configs())
    typer.echo(f"{n} cells → {store}/cells/")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _checked(
            run_sweep, spec, store, executor=executor, scheduler=scheduler, workers=workers,
            progress=sys.stderr.isatty(),
        )  # fmt: skip
    _show_warnings(dict.fromkeys(str(w.message) for w in caught))
    typer.echo(f"{len(res.finished)} of {res.cells} cells of this sweep are in the store")
    for digest in res.diverged:
        step = res.frame.loc[res.frame["digest"] == digest, "reached"].iloc[0]
        typer.echo(f"  cell {digest}: diverged after step {step}", err=True)
    if res.interrupted:
        typer.echo(f"interrupted: {res.cells - len(res.finished)} cells left; rerun to finish "
                   "them (finished cells are skipped)", err=True)  # fmt: skip
    raise typer.Exit(res.exit_code)
