"""qlinreg: learning under quantization in high-dimensional linear regression.

Simulates one-pass mini-batch SGD with quantized data, labels, parameters, activations and
output gradients (Zhang, Su, Zou, ICLR 2026), computes its excess risk, and compares with the
paper's theory.
"""

from qlinreg.pipeline import RunResult, RunSpec, run
from qlinreg.problem import Problem, make_problem
from qlinreg.quantize import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
    Scheme,
    parse_quantizer,
)
from qlinreg.sgd import DivergenceError, SGDConfig, SimResult, geometric_checkpoints, simulate
from qlinreg.sketch import Sketch, simulate_sketched, sketched_model
from qlinreg.theory import bound, corollary_4_2, exact_risk, quantized_spectrum

__all__ = [
    "Additive",
    "DivergenceError",
    "Multiplicative",
    "MultiplicativeElementwise",
    "NoQuant",
    "Problem",
    "RunResult",
    "RunSpec",
    "SGDConfig",
    "Scheme",
    "SimResult",
    "Sketch",
    "bound",
    "corollary_4_2",
    "exact_risk",
    "geometric_checkpoints",
    "make_problem",
    "parse_quantizer",
    "quantized_spectrum",
    "run",
    "simulate",
    "simulate_sketched",
    "sketched_model",
]

__version__ = "0.1.0"
