"""Named experiment recipes (SPEC §5): each writes a tidy table and figures into a folder."""

from qlinreg.experiments import extensions as _extensions  # noqa: F401  (registers recipes)
from qlinreg.experiments import formats as _formats  # noqa: F401  (registers recipes)
from qlinreg.experiments import paper as _paper  # noqa: F401  (registers recipes)
from qlinreg.experiments.base import RECIPES, Recipe, run_recipe

# The report's order: the paper's experiments first, then the extensions.
ORDER = (
    "paper_q1",
    "paper_q2",
    "batch_scaling",
    "target_ablation",
    "fp_vs_int",
    "spectral_distortion",
    "step_size",
)
RECIPES.update({name: RECIPES.pop(name) for name in (*ORDER, *sorted(set(RECIPES) - set(ORDER)))})

__all__ = ["ORDER", "RECIPES", "Recipe", "run_recipe"]
