"""Command line (``qlinreg run | reproduce | sweep``). Thin: parse, validate, call the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Learning under quantization in high-dimensional linear regression.",
    pretty_exceptions_enable=False,
)

# Keys a TOML config may hold besides the RunConfig fields.
_CLI_KEYS = ("out", "exact", "bound")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _print_table(df, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = ["step", "risk_mean", "risk_se", "risk_clean_mean", "risk_clean_se"]
    cols += [c for c in ("exact_risk", "exact_risk_clean", "bound", "bound_clean") if c in df]
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
    Console().print(table)


def _write(df, out: Path, title: str) -> None:
    from qlinreg.plot import plot_risk, save

    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "risk.parquet", index=False)
    df.to_csv(out / "risk.csv", index=False)
    save(plot_risk(df, title=title), out / "risk.png")


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file with the same fields as these options."),
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Dimension d.")] = None,
    spectrum: Annotated[
        str | None, typer.Option(help="power_law (λ_i = i^-decay) or exponential.")
    ] = None,
    decay: Annotated[
        float | None, typer.Option(help="Spectrum exponent a (or exponential rate).")
    ] = None,
    w_star: Annotated[
        str | None, typer.Option("--w-star", help="ones, power_law (i^-source) or gaussian.")
    ] = None,
    source: Annotated[float | None, typer.Option(help="Exponent b of a power-law w*.")] = None,
    noise: Annotated[float | None, typer.Option(help="Label-noise variance σ².")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size B.")] = None,
    lr: Annotated[float | None, typer.Option(help="Step size γ.")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of SGD steps N.")] = None,
    average: Annotated[str | None, typer.Option(help="polyak, tail or last.")] = None,
    trials: Annotated[int | None, typer.Option(help="Independent Monte Carlo runs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Root seed.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or float64.")] = None,
    literal: Annotated[
        bool | None,
        typer.Option(
            "--literal/--fast",
            help="Follow the update verbatim (no exact-in-distribution shortcuts).",
        ),
    ] = None,
    quant: Annotated[
        list[str] | None,
        typer.Option(
            "--quant",
            "-q",
            help="ROLE=KIND:EPS, repeatable; roles data labels params activations grads all.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--store-weights",
            help="Store w_t in a number format after each update, e.g. bf16:nearest_even.",
        ),
    ] = None,
    exact: Annotated[
        bool | None,
        typer.Option("--exact", help="Add the exact expected risk (idealized quantizers)."),
    ] = None,
    bound: Annotated[
        bool | None, typer.Option("--bound", help="Add the paper's bound (unit constants).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/run).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Simulate quantized SGD; write OUT/risk.parquet, OUT/risk.csv and OUT/risk.png."""
    from qlinreg.config import RunConfig, load_toml
    from qlinreg.sgd import DivergenceError, simulate

    given = {
        "dim": dim, "spectrum": spectrum, "decay": decay, "w_star": w_star, "source": source,
        "noise": noise, "batch": batch, "lr": lr, "steps": steps, "average": average,
        "trials": trials, "seed": seed, "dtype": dtype, "literal": literal,
        "quant": quant or None, "storage": storage,
    }  # fmt: skip
    try:
        values = load_toml(config) if config is not None else {}
        cli_only = {k: values.pop(k) for k in _CLI_KEYS if k in values}
        values.update({k: v for k, v in given.items() if v is not None})
        cfg = RunConfig.from_dict(values, source="config" if config else "option")
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    out_dir = Path(out or cli_only.get("out") or "results/run")
    exact = bool(exact if exact is not None else cli_only.get("exact", False))
    bound = bool(bound if bound is not None else cli_only.get("bound", False))
    scheme = cfg.scheme()
    theory = None
    if exact or bound:
        from qlinreg.theory.curves import theory_columns

        try:
            theory = theory_columns(
                cfg.problem(), scheme, cfg.sgd(), cfg.checkpoints(), exact=exact, bound=bound
            )
        except (ValueError, TypeError) as exc:
            _fail(str(exc))
    title = f"d={cfg.dim}, B={cfg.batch}, γ={cfg.lr:g}, {scheme.describe()}"
    code = 0
    try:
        result = simulate(
            cfg.problem(), scheme, cfg.sgd(), progress=progress and sys.stderr.isatty(),
            **cfg.simulate_kwargs(),
        )  # fmt: skip
    except DivergenceError as exc:
        result, code = exc.result, 3
        typer.echo(f"error: {exc}", err=True)
    if result.interrupted:
        typer.echo("interrupted: writing the checkpoints that finished", err=True)
        code = 130
    df = result.to_frame()
    if theory is not None:
        df = df.merge(theory, on="step", how="left")
    if len(df):
        _write(df, out_dir, title)
        _print_table(df, title)
        typer.echo(f"wrote {out_dir}/risk.parquet, risk.csv, risk.png")
    raise typer.Exit(code)


@app.command()
def reproduce(
    quick: Annotated[
        bool, typer.Option(help="Small sizes, PNG figures only (under a minute on 2 cores).")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these experiments (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results"),
) -> None:
    """Run the paper's experiments into OUT: tables, PNG/SVG figures and OUT/index.html."""
    from qlinreg.experiments import RECIPES, run_recipe
    from qlinreg.report import claims_frame, write_report

    names = list(only) if only else list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        _fail(f"unknown experiment(s) {', '.join(unknown)}; allowed: {', '.join(RECIPES)}")
    claims, sections = [], []
    for name in names:
        typer.echo(f"{name}: {RECIPES[name].description}")
        written = run_recipe(name, out, size="quick" if quick else "full")
        for p in written["tables"] + written["figures"]:
            typer.echo(f"  wrote {p}")
        for c in written["claims"]:
            typer.echo(f"  [{'held' if c.held else 'DID NOT HOLD'}] ({c.convention}) {c.claim}")
        claims += written["claims"]
        sections.append((name, RECIPES[name].description, written["figures"]))
    claims_frame(claims).to_csv(out / "claims.csv", index=False)
    size = "quick sizes (--quick)" if quick else "full sizes"
    report = write_report(out, claims, sections, note=f"Generated by qlinreg reproduce, {size}.")
    typer.echo(f"wrote {out / 'claims.csv'} and {report}")


@app.command()
def spectrum(
    quant: Annotated[
        list[str] | None,
        typer.Option("--quant", "-q", help="Data quantizer(s) KIND[:ARGS], repeatable."),
    ] = None,
    dim: Annotated[int, typer.Option(help="Dimension d.")] = 200,
    spectrum: Annotated[str, typer.Option(help="power_law or exponential.")] = "power_law",
    decay: Annotated[float, typer.Option(help="Spectrum exponent a (or rate).")] = 2.0,
    samples: Annotated[int, typer.Option(help="Quantized samples for the estimate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/spectrum"),
) -> None:
    """Spectrum of H against that of H^(q) (closed form and estimated from quantized samples)."""
    import pandas as pd

    from qlinreg.plot import plot_spectrum, save
    from qlinreg.problem import make_problem
    from qlinreg.quantize import parse_quantizer
    from qlinreg.theory import quantized_spectrum

    specs = quant or ["additive:0.001", "multiplicative:0.01", "int8", "fp8_e4m3"]
    try:
        problem = make_problem(dim, spectrum=spectrum, decay=decay)
        qs = [parse_quantizer(s) for s in specs]
        if samples < 1:
            raise ValueError(f"samples must be an integer ≥ 1, got {samples}")
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    frames = []
    for spec, q in zip(specs, qs, strict=True):
        df = quantized_spectrum(problem, q, samples=samples, seed=seed)
        df["quantizer"] = spec
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "spectrum.parquet", index=False)
    df.to_csv(out / "spectrum.csv", index=False)
    save(plot_spectrum(df, title=f"d={dim}, {spectrum} decay {decay:g}"), out / "spectrum.png")
    typer.echo(f"wrote {out}/spectrum.parquet, spectrum.csv, spectrum.png")


@app.command()
def formats(
    role: Annotated[str, typer.Option(help="data (features) or labels.")] = "data",
    rounding: Annotated[str, typer.Option(help="Rounding mode of every format.")] = "stochastic",
    dim: Annotated[int, typer.Option(help="Dimension d of the paper's features.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
) -> None:
    """Measured ε (additive and multiplicative) of the named formats on the paper's data.

    Next to the paper's rough mapping (INT b bits ≈ 2^(−2b), FP m mantissa bits ≈ 2^(−2m));
    --out writes every column (fit slope, bias, ...) as CSV.
    """
    from rich.console import Console
    from rich.table import Table

    from qlinreg.quantize import formats_table

    try:
        df = formats_table(rounding=rounding, role=role, dim=dim)
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    cols = [
        "format", "paper_model", "paper_eps", "eps_additive", "eps_multiplicative",
        "measured_model", "saturated", "underflow",
    ]  # fmt: skip
    table = Table(title=f"measured ε on the paper's {role} (d = {dim}, {rounding} rounding)")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for _, r in df[cols].iterrows():
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r))
    Console().print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
        typer.echo(f"wrote {out}")


@app.command()
def sweep(
    grid: Annotated[Path, typer.Argument(help="TOML file with [base] fields and [grid] lists.")],
    store: Annotated[Path, typer.Option(help="Parquet store folder.")] = Path("results/sweep"),
    executor: Annotated[str, typer.Option(help="local (this process) or dask.")] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local Dask cluster size.")] = None,
) -> None:
    """Run every cell of a grid into a resumable Parquet store (finished cells are skipped)."""
    from qlinreg.sweep import load_sweep, run_sweep

    try:
        spec = load_sweep(grid)
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    n = len(spec.configs())
    typer.echo(f"{n} cells → {store}/cells/")
    df = run_sweep(
        spec, store, executor=executor, scheduler=scheduler, workers=workers,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    bad = df.loc[df["status"] != "ok", ["digest", "status"]].drop_duplicates() if len(df) else df
    typer.echo(f"{df['digest'].nunique() if len(df) else 0} of {n} cells in the store")
    for _, r in bad.iterrows():
        typer.echo(f"  cell {r['digest']}: {r['status']}")


def main() -> None:  # pragma: no cover - console entry point
    app()
