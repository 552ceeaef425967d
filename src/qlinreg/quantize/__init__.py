"""Quantizers: the paper's idealized error models and a per-role :class:`Scheme`."""

# Importing the formats registers their names (int8, fp8_e4m3, mxfp4, ...) for parsing.
from qlinreg.quantize.formats import (
    FORMAT_NAMES,
    FloatFormat,
    IntFormat,
    MXFormat,
    NumberFormat,
    NVFP4Format,
    with_rounding,
)
from qlinreg.quantize.idealized import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
)
from qlinreg.quantize.measure import EpsilonEstimate, formats_table, measure_epsilon
from qlinreg.quantize.scheme import ROLES, Quantizer, Scheme, parse_quantizer, register_kind

__all__ = [
    "FORMAT_NAMES",
    "ROLES",
    "EpsilonEstimate",
    "FloatFormat",
    "IntFormat",
    "MXFormat",
    "NVFP4Format",
    "NumberFormat",
    "formats_table",
    "measure_epsilon",
    "with_rounding",
    "Additive",
    "Multiplicative",
    "MultiplicativeElementwise",
    "NoQuant",
    "Quantizer",
    "Scheme",
    "parse_quantizer",
    "register_kind",
]
