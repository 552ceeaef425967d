"""Theory: closed forms on quantized data, exact expected risk, the paper's bounds."""

from qlinreg.theory.bounds import (
    bound,
    fp_beats_int,
    fp_int_threshold,
    noise_terms,
    polynomial_decay_rates,
    sigma_G2,
    theorem,
)
from qlinreg.theory.exact import ExactResult, exact_risk, second_moment_radius
from qlinreg.theory.quantized_data import (
    H_q,
    approx_err,
    approx_err_clean,
    approx_err_floors,
    data_noise_diag,
    estimate_H_q,
    has_closed_form,
    k_star,
    quantized_input_risk,
    quantized_spectrum,
    surrogate,
    w_star_q,
)

__all__ = [
    "ExactResult",
    "H_q",
    "approx_err",
    "approx_err_clean",
    "approx_err_floors",
    "bound",
    "data_noise_diag",
    "estimate_H_q",
    "exact_risk",
    "fp_beats_int",
    "fp_int_threshold",
    "has_closed_form",
    "k_star",
    "noise_terms",
    "polynomial_decay_rates",
    "quantized_input_risk",
    "quantized_spectrum",
    "second_moment_radius",
    "sigma_G2",
    "surrogate",
    "theorem",
    "w_star_q",
]
