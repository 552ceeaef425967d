"""Theory: closed forms on quantized data, exact expected risk, the paper's bounds."""

from qlinreg.theory.quantized_data import (
    H_q,
    approx_err,
    approx_err_clean,
    data_noise_diag,
    has_closed_form,
    k_star,
    quantized_input_risk,
    w_star_q,
)

__all__ = [
    "H_q",
    "approx_err",
    "approx_err_clean",
    "data_noise_diag",
    "has_closed_form",
    "k_star",
    "quantized_input_risk",
    "w_star_q",
]
