"""Named experiment recipes (SPEC §5): each writes a tidy table and figures into a folder."""

from qlinreg.experiments import extensions as _extensions  # noqa: F401  (registers recipes)
from qlinreg.experiments import paper as _paper  # noqa: F401  (registers recipes)
from qlinreg.experiments.base import RECIPES, Recipe, run_recipe

__all__ = ["RECIPES", "Recipe", "run_recipe"]
