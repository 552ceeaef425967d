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
        (lambda: ql.Scheme.parse(["data=int8:round_up"]), "unknown rounding 'round_up'"),
        (lambda: ql.Scheme.parse(["data=additive"]), "needs an ε"),
        (lambda: ql.Scheme.parse(["data=additive:x"]), "eps must be a number"),
        (lambda: ql.Scheme.parse(["data:additive:0.1"]), "malformed quantization spec"),
        (lambda: RunConfig.from_dict({"dimension": 3}), "unknown config key"),
        (lambda: RunConfig(trials=0), "trials must be"),
    ],
)
def test_bad_input_is_rejected_before_any_compilation(build, match):
    before = engine._chunk_fn.cache_info().misses
    with pytest.raises(ValueError, match=match):
        build()
    assert engine._chunk_fn.cache_info().misses == before
