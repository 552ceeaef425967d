"""Named experiment recipes (SPEC §5): each writes a tidy table and figures into a folder.

The recipe modules (and matplotlib) load on first use of :data:`RECIPES`, :class:`Recipe` or
:func:`run_recipe`, so that :data:`ORDER` is cheap to import (the CLI lists it in ``--help``).
"""

# The report's order: the paper's experiments first, then the extensions.
ORDER = (
    "paper_q1",
    "paper_q2",
    "large_d",
    "batch_scaling",
    "target_ablation",
    "fp_vs_int",
    "spectral_distortion",
    "format_choices",
    "step_size",
    "real_data",
    "corollary_4_2",
    "precision_scaling",
    "advisor",
)

# ``reproduce --quick`` without ``--only``: the paper's experiments (SPEC §5: Q1, Q2, batch
# and step sizes, each target alone; Corollaries 4.2 and 4.3), under a minute on 2 cores.
HEADLINE = (
    "paper_q1",
    "paper_q2",
    "batch_scaling",
    "target_ablation",
    "fp_vs_int",
    "spectral_distortion",
    "step_size",
    "corollary_4_2",
)

__all__ = ["HEADLINE", "ORDER", "RECIPES", "Recipe", "run_recipe"]


def __getattr__(name: str):
    if name not in ("RECIPES", "Recipe", "run_recipe"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from qlinreg.experiments import advisor as _advisor  # noqa: F401  (registers recipes)
    from qlinreg.experiments import base
    from qlinreg.experiments import corollary as _corollary  # noqa: F401  (registers recipes)
    from qlinreg.experiments import extensions as _extensions  # noqa: F401  (registers recipes)
    from qlinreg.experiments import format_choices as _choices  # noqa: F401  (registers recipes)
    from qlinreg.experiments import formats as _formats  # noqa: F401  (registers recipes)
    from qlinreg.experiments import large_d as _large_d  # noqa: F401  (registers recipes)
    from qlinreg.experiments import paper as _paper  # noqa: F401  (registers recipes)
    from qlinreg.experiments import real_data as _real_data  # noqa: F401  (registers recipes)
    from qlinreg.experiments import scaling as _scaling  # noqa: F401  (registers recipes)

    rest = sorted(set(base.RECIPES) - set(ORDER))
    base.RECIPES.update({n: base.RECIPES.pop(n) for n in (*ORDER, *rest) if n in base.RECIPES})
    globals().update(RECIPES=base.RECIPES, Recipe=base.Recipe, run_recipe=base.run_recipe)
    return globals()[name]
