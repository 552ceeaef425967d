"""Quantizers: the paper's idealized error models and a per-role :class:`Scheme`."""

from qlinreg.quantize.idealized import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
)
from qlinreg.quantize.scheme import ROLES, Quantizer, Scheme, parse_quantizer, register_kind

__all__ = [
    "ROLES",
    "Additive",
    "Multiplicative",
    "MultiplicativeElementwise",
    "NoQuant",
    "Quantizer",
    "Scheme",
    "parse_quantizer",
    "register_kind",
]
