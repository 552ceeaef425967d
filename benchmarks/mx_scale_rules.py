"""How often MX block maxima saturate under each scale rule and block size (docs/formats.md).

For MXFP8 E4M3 and MXFP4 with blocks of 16, 32 and 64 and the rules floor (OCP v1.0), ceil,
even and rceil (round-to-nearest-even elements): the fraction of nonzero blocks whose maximum
saturates, the fraction of saturated entries and the relative error energy
``Σ(Q(x) − x)²/Σx²`` on the paper's features (4000 rows ``x ~ N(0, diag(i^-2))``, d = 256),
and the block fraction on standard normal rows. Prints a Markdown table; takes seconds.

Run: ``python benchmarks/mx_scale_rules.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import qlinreg as ql
from qlinreg import prng
from qlinreg.quantize.formats import MXFormat


def main() -> None:
    X = ql.make_problem(256).features(prng.key(1), 4000)
    G = prng.normal(prng.key(2), (4000, 256))
    print(
        "| element | block | rule | paper's features: blocks saturated | entries saturated "
        "| error energy | N(0,1) rows: blocks saturated |"
    )
    print("|---|---|---|---|---|---|---|")
    for el in ("fp8_e4m3", "fp4_e2m1"):
        for bs in (16, 32, 64):
            for rule in ("floor", "ceil", "even", "rceil"):
                q = MXFormat(el, block_size=bs, scale_rule=rule, rounding="nearest_even")
                bx = float(jax.jit(q.block_max_saturated)(X))
                bg = float(jax.jit(q.block_max_saturated)(G))
                Xq = jax.jit(q)(prng.key(0), X)
                sat = float(jnp.mean(jax.jit(q.saturated)(X)))
                rel = float(jnp.sum((Xq - X) ** 2) / jnp.sum(X**2))
                print(f"| {el} | {bs} | {rule} | {bx:.3f} | {sat:.4f} | {rel:.3g} | {bg:.3f} |")


if __name__ == "__main__":
    main()
