"""A user's data as the arrays of the linear-regression model (SPEC §1).

Rows ``X`` (``n × d``) and labels ``y`` (``n``) come from a file (:func:`load_table`: ``.npz``,
``.csv``, ``.parquet``) or a data set bundled with scikit-learn (:func:`load_sklearn`); they may
be standardized (:func:`standardize`) and lifted to random features (:func:`random_features`).
:func:`fit_gaussian` fits the Gaussian model ``x ~ N(0, Σ)``, ``y = ⟨w*, x⟩ + ξ`` to them, and
:func:`load_data` is the one entry point of the CLI. Everything is NumPy ``float64``, pure and
deterministic; every bad input raises a one-line :class:`ValueError`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg

__all__ = [
    "EXTENSIONS",
    "MAX_FEATURES",
    "SKLEARN_DATASETS",
    "DataSet",
    "GaussianFit",
    "fit_gaussian",
    "load_data",
    "load_sklearn",
    "load_table",
    "random_features",
    "standardize",
]

EXTENSIONS = (".csv", ".npz", ".parquet")
SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "linnerud", "wine")
MAX_FEATURES = 10_000  # largest D of random features
MAX_CONDITION = 1e10  # largest condition number of Σ fitted without a ridge
_CHUNK_ELEMENTS = 2**20  # entries of random features computed at once (8 MiB of float64)
_FEATURES_RE = re.compile(r"(relu|rff):([0-9]+)")
_FEATURES_GRAMMAR = f"'relu:D' or 'rff:D' with D an integer in [1, {MAX_FEATURES}]"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}"


def _list(names) -> str:
    return ", ".join(repr(str(n)) for n in names)


def _nonfinite_counts(A: np.ndarray) -> dict[int, int]:
    """``{column: how many NaN or inf}`` of the columns of ``A`` that have any."""
    bad = np.sum(~np.isfinite(A), axis=0)
    return {int(j): int(bad[j]) for j in np.flatnonzero(bad)}


def _check_arrays(where: str, X: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """The checks every source shares: sizes, then finiteness (columns named by ``names``)."""
    n, d = X.shape
    if n < 2:
        raise ValueError(f"{where} has {n} row(s); at least 2 are needed")
    if d < 1:
        raise ValueError(f"{where} has 0 feature columns; at least 1 is needed")
    parts = [f"{c} in column {names[j]!r}" for j, c in _nonfinite_counts(X).items()]
    y_bad = int(np.sum(~np.isfinite(y)))
    if y_bad:
        parts.append(f"{y_bad} in the target")
    if parts:
        raise ValueError(f"{where} has non-finite values (NaN or inf): {', '.join(parts)}")


def _load_npz(where: str, p: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with np.load(p, allow_pickle=False) as f:
            have = sorted(f.files)
            missing = [k for k in ("X", "y") if k not in have]
            if missing:
                raise ValueError(
                    f"{where} must hold arrays 'X' and 'y'; missing {_list(missing)} "
                    f"(it has: {_list(have) or 'no arrays'})"
                )
            X, y = f["X"], f["y"]
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where} cannot be read as .npz ({_one_line(exc)})") from None
    except Exception as exc:  # the parser's own errors (BadZipFile, OSError, EOFError, ...)
        raise ValueError(f"{where} cannot be read as .npz ({_one_line(exc)})") from None
    for key, a in (("X", X), ("y", y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"{where}: array {key} must be numeric, got dtype {a.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be 2-D (n × d), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D (n,) or one column (n × 1), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: X has {X.shape[0]} rows but y has {y.shape[0]}")
    return X.astype(np.float64), y.astype(np.float64), [f"x{j}" for j in range(X.shape[1])]


def _load_frame(where: str, p: Path, ext: str, target: str | None):
    import pandas as pd

    try:
        if ext == ".csv":
            df = pd.read_csv(p)
        else:
            df = pd.read_parquet(p, engine="pyarrow")
    except Exception as exc:  # pandas / pyarrow parser errors, decoding errors, empty files
        raise ValueError(f"{where} cannot be read as {ext} ({_one_line(exc)})") from None
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if not columns:
        raise ValueError(f"{where} has no columns")
    if target is None:
        target = columns[-1]
    elif target not in columns:
        raise ValueError(f"{where} has no target column {target!r} (available: {_list(columns)})")
    if len(df) < 2:
        raise ValueError(f"{where} has {len(df)} row(s); at least 2 are needed")
    features = [c for c in columns if c != target]
    if not features:
        raise ValueError(
            f"{where} has 0 feature columns besides the target {target!r}; at least 1 is needed"
        )
    bad = [
        c
        for c in columns
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
        or pd.api.types.is_complex_dtype(df[c])
    ]
    if bad:
        raise ValueError(f"{where} has non-numeric columns: {_list(bad)}")
    X = df[features].to_numpy(dtype=np.float64)
    y = df[target].to_numpy(dtype=np.float64)
    return X, y, features


def load_table(
    path: str | os.PathLike, target: str | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, y, feature_names)`` of a data file: ``X`` is ``n × d``, ``y`` has length ``n``.

    * ``.npz``: arrays ``X`` (2-D) and ``y`` (1-D, or 2-D with one column); the features are
      named ``x0 … x{d-1}``; ``target`` does not apply.
    * ``.csv`` / ``.parquet`` (pandas; parquet through pyarrow): the column ``target`` (default:
      the last column) is ``y``, every other column a feature, in the table's order.

    A missing or unreadable file, an unknown extension, missing arrays or columns, wrong shapes,
    non-numeric columns, NaN or inf values, fewer than 2 rows or no feature column raise a
    one-line :class:`ValueError` that names the file.
    """
    if target is not None and not isinstance(target, str):
        raise ValueError(f"target must be a column name (a string), got {target!r}")
    p = Path(path)
    where = f"data file {str(path)!r}"
    if not p.is_file():
        raise ValueError(f"{where} not found" + (" (it is a directory)" if p.is_dir() else ""))
    ext = p.suffix.lower()
    if ext not in EXTENSIONS:
        raise ValueError(
            f"{where} has unknown extension {p.suffix or '(none)'!r} "
            f"(allowed: {', '.join(EXTENSIONS)})"
        )
    if ext == ".npz":
        if target is not None:
            raise ValueError(
                f"{where}: target applies to .csv and .parquet tables only (.npz holds y)"
            )
        X, y, names = _load_npz(where, p)
    else:
        X, y, names = _load_frame(where, p, ext, target)
    _check_arrays(where, X, y, names)
    return X, y, names


def load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, y, feature_names)`` of a data set bundled inside scikit-learn (no download):
    ``diabetes`` (442 × 10), ``digits`` (1797 × 64), ``breast_cancer`` (569 × 30), ``iris``
    (150 × 4), ``wine`` (178 × 13) or ``linnerud`` (20 × 3). Class labels become float targets.
    ``linnerud`` has three targets (Weight, Waist, Pulse): ``y`` is the first, Weight.
    """
    if name not in SKLEARN_DATASETS:
        raise ValueError(
            f"sklearn data set {name!r} is unknown (allowed: {', '.join(SKLEARN_DATASETS)})"
        )
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, 0]
    return X, y, [str(c) for c in bunch.feature_names]


def _read_X(X, name: str = "X") -> np.ndarray:
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (n × d, n, d ≥ 1), got shape {A.shape}")
    bad = _nonfinite_counts(A)
    if bad:
        raise ValueError(
            f"{name} must be finite: {sum(bad.values())} NaN or inf in columns {list(bad)}"
        )
    return A


def standardize(X) -> tuple[np.ndarray, np.ndarray]:
    """``(X_std, kept)``: the columns of ``X`` shifted to mean 0 and scaled to variance 1
    (population variance, ``ddof = 0``). Constant columns (``max == min``, e.g. the blank
    pixels of ``digits``) are dropped; ``kept`` are the indices of the remaining columns."""
    A = _read_X(X)
    kept = np.flatnonzero(A.max(axis=0) > A.min(axis=0))
    if kept.size == 0:
        raise ValueError(f"X has no non-constant column (all {A.shape[1]} are constant)")
    A = A[:, kept]
    A = A - A.mean(axis=0)
    return A / np.sqrt(np.mean(A * A, axis=0)), kept


def _parse_features(spec) -> tuple[str, int]:
    m = _FEATURES_RE.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"features must be {_FEATURES_GRAMMAR}, got {spec!r}")
    D = int(m.group(2))
    if not 1 <= D <= MAX_FEATURES:
        raise ValueError(f"features D must be in [1, {MAX_FEATURES}], got {spec!r}")
    return m.group(1), D


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
    return int(seed)


def random_features(X, spec: str, seed: int = 0) -> np.ndarray:
    """Random features ``φ(x) ∈ ℝ^D`` of the rows of ``X`` (``n × d_in``), ``n × D``.

    ``spec`` is ``"relu:D"`` or ``"rff:D"``, ``1 ≤ D ≤ 10 000``:

    * ReLU: ``φ(x) = √(2/D)·max(0, Wx + b)``, ``W_kj ~ N(0, 1/d_in)``, ``b_k ~ N(0, 1)``. Then
      ``E_W‖φ(x)‖² = 1 + ‖x‖²/d_in``: 2 on average for standardized columns, whatever D and
      ``d_in``.
    * RFF: ``φ(x) = √(2/D)·cos(Wx + b)``, ``W_kj ~ N(0, 1/ℓ²)`` with bandwidth ``ℓ = √d_in``,
      ``b_k ~ U(0, 2π)``: ``E_W⟨φ(x), φ(x')⟩ = exp(−‖x − x'‖²/(2ℓ²))`` (the Gaussian kernel),
      ``‖φ(x)‖² = 1`` on average and every entry is at most ``√(2/D)`` in size.

    ``W`` then ``b`` are drawn from ``np.random.default_rng(seed)``: the same seed gives the
    same features. Rows are processed in chunks, so memory beyond the output stays bounded.
    """
    kind, D = _parse_features(spec)
    seed = _check_seed(seed)
    A = _read_X(X)
    n, d_in = A.shape
    rng = np.random.default_rng(seed)
    scale = 1.0 / math.sqrt(d_in)  # ReLU: std 1/√d_in; RFF: 1/ℓ with ℓ = √d_in
    W = rng.standard_normal((d_in, D)) * scale
    b = rng.standard_normal(D) if kind == "relu" else rng.uniform(0.0, 2.0 * np.pi, D)
    out = np.empty((n, D), dtype=np.float64)
    c = math.sqrt(2.0 / D)
    step = max(1, _CHUNK_ELEMENTS // D)
    for i in range(0, n, step):
        block = out[i : i + step]
        np.matmul(A[i : i + step], W, out=block)
        block += b
        if kind == "relu":
            np.maximum(block, 0.0, out=block)
        else:
            np.cos(block, out=block)
        block *= c
    return out


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


@dataclass(frozen=True, eq=False)
class GaussianFit:
    """The Gaussian model fitted to data (:func:`fit_gaussian`).

    Attributes:
        covariance: ``Σ = XᵀX/n`` (``d × d``, exactly symmetric; without the ridge).
        w_star: ``w* = (Σ + ridge·I)⁻¹ Xᵀy/n``.
        noise: ``σ²``, the mean squared residual ``mean((y − X w*)²)``.
        n: rows; rank: numerical rank of ``Σ``; condition: ``λ_max/λ_min`` of ``Σ``
            (``inf`` when singular); ridge: the ridge used; centered: whether ``X`` and ``y``
            were centered first.
    """

    covariance: np.ndarray
    w_star: np.ndarray
    noise: float
    n: int
    rank: int
    condition: float
    ridge: float
    centered: bool

    @property
    def d(self) -> int:
        return int(self.w_star.shape[0])


def _check_ridge(ridge) -> float:
    try:
        r = float(ridge)
    except (TypeError, ValueError):
        raise ValueError(f"ridge must be a finite number ≥ 0, got {ridge!r}") from None
    if isinstance(ridge, bool) or not math.isfinite(r) or r < 0:
        raise ValueError(f"ridge must be a finite number ≥ 0, got {ridge!r}")
    return r


def fit_gaussian(X, y, *, center: bool = False, ridge: float = 0.0) -> GaussianFit:
    """Fit the model of SPEC §1 to rows ``X`` (``n × d``) and labels ``y`` (``n``).

    ``Σ = XᵀX/n`` (the second moment: no centering unless ``center``, which first subtracts the
    column means of ``X`` and the mean of ``y``), ``w* = (Σ + ridge·I)⁻¹ Xᵀy/n`` (a Cholesky
    solve) and ``σ² = mean((y − X w*)²)``. Without a ridge, a singular or ill-conditioned ``Σ``
    (``n < d``, numerical rank ``< d`` or condition number ``> 1e10``) is refused with a
    suggested ridge of ``1e-6·tr(Σ)/d``; ``ridge`` must be finite and ``≥ 0``.
    """
    A = _read_X(X)
    n, d = A.shape
    try:
        b = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("y must be an array of numbers") from None
    if b.ndim == 2 and b.shape[1] == 1:
        b = b[:, 0]
    if b.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"y must be finite ({int(np.sum(~np.isfinite(b)))} entries are not)")
    r = _check_ridge(ridge)
    if center:
        A, b = A - A.mean(axis=0), b - b.mean()
    S = A.T @ A / n
    S = 0.5 * (S + S.T)
    lam = np.linalg.eigvalsh(S)
    lam_max = float(lam[-1])
    rank = int(np.sum(lam > lam_max * d * np.finfo(np.float64).eps)) if lam_max > 0 else 0
    condition = lam_max / float(lam[0]) if lam[0] > 0 else math.inf
    tr = float(np.trace(S))
    advice = f"pass a ridge, e.g. ridge={(1e-6 * tr / d if tr > 0 else 1e-6):.1g} (1e-6·tr(Σ)/d)"
    if r == 0.0:
        sizes = f"n = {n}, d = {d}"
        if n < d:
            raise ValueError(
                f"Σ = XᵀX/n is singular: fewer rows than features ({sizes}, rank {rank}); {advice}"
            )
        if rank < d:
            raise ValueError(
                f"Σ = XᵀX/n is singular: numerical rank {rank} < d ({sizes}); {advice}"
            )
        if condition > MAX_CONDITION:
            raise ValueError(
                f"Σ = XᵀX/n is ill-conditioned: condition number {condition:.3g} > "
                f"{MAX_CONDITION:.0e} ({sizes}); {advice}"
            )
    try:
        w = scipy.linalg.solve(S + r * np.eye(d), A.T @ b / n, assume_a="pos")
    except np.linalg.LinAlgError:
        raise ValueError(
            f"Σ + ridge·I is not numerically positive definite (ridge = {r:g}); "
            f"increase ridge, e.g. ridge={max(1e-6 * tr / d, 1e-6):.1g}"
        ) from None
    resid = b - A @ w
    _freeze(S, w)
    return GaussianFit(
        covariance=S,
        w_star=w,
        noise=float(np.mean(resid * resid)),
        n=n,
        rank=rank,
        condition=condition,
        ridge=r,
        centered=bool(center),
    )


@dataclass(frozen=True, eq=False)
class DataSet:
    """Rows ``X`` (``n × d``) and labels ``y`` ready for the model (:func:`load_data`).

    Attributes:
        X, y: ``float64`` arrays (read-only).
        name: a short label, e.g. ``"sklearn:diabetes+relu:2000"`` or ``"houses.csv"``.
        feature_names: the names of the columns of ``X``; ``None`` after random features.
        n, d: rows and columns of ``X``.
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    feature_names: list[str] | None = None
    n: int = field(init=False)
    d: int = field(init=False)

    def __post_init__(self) -> None:
        X = _read_X(self.X)
        y = np.array(self.y, dtype=np.float64)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
        names = self.feature_names
        if names is not None:
            names = [str(c) for c in names]
            if len(names) != X.shape[1]:
                raise ValueError(f"feature_names must have {X.shape[1]} names, got {len(names)}")
        X = X.copy() if X is self.X else X
        _freeze(X, y)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "n", int(X.shape[0]))
        object.__setattr__(self, "d", int(X.shape[1]))


def load_data(
    source: str,
    *,
    target: str | None = None,
    features: str | None = None,
    standardize_columns: bool = True,
    seed: int = 0,
) -> DataSet:
    """The data set named by ``source``: a file path (``.npz``, ``.csv``, ``.parquet``;
    :func:`load_table`) or ``"sklearn:NAME"`` (:func:`load_sklearn`).

    In order: load; standardize the columns of ``X`` (:func:`standardize`, dropping constant
    columns; files too, unless ``standardize_columns=False``); lift to random features when
    ``features`` is ``"relu:D"`` or ``"rff:D"`` (:func:`random_features` with ``seed``),
    computed from the standardized inputs. The target ``y`` is left as it is (not centered, not
    scaled): ``fit_gaussian(center=True)`` centers both.
    """
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source must be a file path or 'sklearn:NAME', got {source!r}")
    if source.startswith("sklearn:"):
        if target is not None:
            raise ValueError(f"target applies to .csv and .parquet tables, not {source!r}")
        X, y, names = load_sklearn(source.removeprefix("sklearn:"))
        name = source
    else:
        X, y, names = load_table(source, target)
        name = Path(source).name
    if standardize_columns:
        X, kept = standardize(X)
        names = [names[j] for j in kept]
    if features is not None:
        kind, D = _parse_features(features)
        X = random_features(X, features, seed)
        names = None
        name = f"{name}+{kind}:{D}"
    return DataSet(X=X, y=y, name=name, feature_names=names)
