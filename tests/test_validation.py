"""Bad input is rejected up front with a message naming the field and the allowed range."""

import numpy as np
import pytest

import qlinreg as ql
from qlinreg import sgd as engine
from qlinreg.config import RunConfig

P = ql.make_problem(4)
SGD = ql.SGDConfig(lr=0.1, steps=10)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ql.make_problem(0), r"dim \(d\) must be an integer ≥ 1"),
        (lambda: ql.make_problem(3, decay=-1), r"decay \(a\) must be > 0"),
        (lambda: ql.make_problem(3, spectrum="flat"), "spectrum must be"),
        (lambda: ql.make_problem(3, w_star="zeros"), "w_star must be"),
        (lambda: ql.make_problem(3, noise=-0.1), r"noise \(σ²\) must be ≥ 0"),
        (lambda: ql.Problem(np.array([1.0, 0.0]), np.ones(2)), "spectrum must be finite and > 0"),
        (lambda: ql.Problem(np.ones(2), np.ones(3)), "w_star must have length dim = 2"),
        (lambda: ql.Additive(-0.1), "eps must be a finite number ≥ 0"),
        (lambda: ql.Multiplicative(float("nan")), "eps must be a finite number ≥ 0"),
        (lambda: ql.Additive(0.1, "laplace"), "noise must be one of"),
        (lambda: ql.SGDConfig(lr=0, steps=10), r"lr \(γ\) must be a finite number > 0"),
        (lambda: ql.SGDConfig(lr=-1, steps=10), r"lr \(γ\) must be a finite number > 0"),
        (lambda: ql.SGDConfig(lr=0.1, steps=0), r"steps \(N\) must be an integer ≥ 1"),
        (lambda: ql.SGDConfig(lr=0.1, steps=10, batch=0), r"batch \(B\) must be an integer ≥ 1"),
        (lambda: ql.SGDConfig(lr=0.1, steps=10, average="mean"), "average must be one of"),
        (lambda: ql.simulate(P, None, SGD, trials=0), "trials must be an integer ≥ 1"),
        (lambda: ql.simulate(P, None, SGD, seed=-1), "seed must be an integer ≥ 0"),
        (lambda: ql.simulate(P, None, SGD, dtype="float16"), "dtype must be"),
        (lambda: ql.simulate(P, None, SGD, checkpoints=[0, 5]), "checkpoints must lie in"),
        (lambda: ql.simulate(P, None, SGD, checkpoints=[20]), "checkpoints must lie in"),
        (lambda: ql.simulate(P, None, ql.SGDConfig(0.1, 10, w0=np.ones(3))), "w0 must have"),
        (lambda: ql.Scheme.parse(["weights=additive:0.1"]), "unknown role 'weights'"),
        (lambda: ql.Scheme.parse(["data=int1"]), "unknown quantizer kind 'int1'"),
        (lambda: ql.Scheme.parse(["data=int8:round_up"]), "unknown option 'round_up'.*a rounding"),
        (lambda: ql.Scheme.parse(["data=int8:scale=-1"]), "scale must be a finite number > 0"),
        (lambda: ql.Scheme.parse(["data=int8:nearest_even:toward_zero"]), "more than one rounding"),
        (lambda: ql.Scheme.parse(["data=additive:0.1", "data=int8"]), "'data' is given twice"),
        (lambda: ql.Scheme.parse(["data=int8", "all=int4"]), "'all=int4' must come first"),
        (lambda: ql.make_problem(200, decay=1e6), r"decay = 1e\+06 with dim = 200.*i = 2"),
        (lambda: ql.make_problem(2000, spectrum="exponential", decay=1.0), "underflow to 0"),
        (lambda: ql.simulate(P, None, SGD, seed=2**64), r"seed must be an integer in \[0, 2\^64\)"),
        (
            lambda: ql.simulate(P, None, ql.SGDConfig(0.1, 2**40)),
            r"steps \(N\) must be ≤ 2147483647",
        ),
        (lambda: ql.Scheme.parse(["data=additive"]), "needs an ε"),
        (lambda: ql.Scheme.parse(["data=additive:x"]), "eps must be a number"),
        (lambda: ql.Scheme.parse(["data:additive:0.1"]), "malformed quantization spec"),
        (lambda: RunConfig.from_dict({"dimension": 3}), "unknown config key"),
        (lambda: RunConfig(trials=-1), "trials must be"),
        (lambda: RunConfig(trials=0), "trials = 0 computes nothing"),
        (lambda: RunConfig(lr="0.1"), "lr must be a number, got '0.1' .a quoted string"),
        (lambda: RunConfig(lr=True), "lr must be a number, got True"),
        (lambda: RunConfig(noise=True), "noise must be a number, got True"),
        (lambda: RunConfig(dim=8.0), "dim must be an integer, got 8.0"),
        (lambda: RunConfig(exact="no"), "exact must be true or false"),
        (lambda: RunConfig(quant=[1]), "quant must be a list of"),
        (lambda: RunConfig(exact=True, storage="bf16"), "does not model weight storage"),
        (lambda: RunConfig(bound=True, average="tail"), "bound is stated for the Polyak"),
        (lambda: RunConfig(exact=True, quant=["params=int8"]), "Monte Carlo only"),
        (lambda: RunConfig(surrogate=True), "give exact too"),
        (lambda: RunConfig(bound=True, quant=["data=fp8_e4m3"]), "needs an idealized quantizer"),
    ],
)
def test_bad_input_is_rejected_before_any_compilation(build, match):
    before = engine._chunk_fn.cache_info().misses
    with pytest.raises(ValueError, match=match):
        build()
    assert engine._chunk_fn.cache_info().misses == before
