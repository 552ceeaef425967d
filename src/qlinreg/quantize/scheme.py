"""A :class:`Scheme` assigns one quantizer to each of the five roles of SPEC §2.

Roles: ``data`` (``Q_d``), ``labels`` (``Q_l``), ``params`` (``Q_p``), ``activations``
(``Q_a``) and ``grads`` (``Q_o``, output gradients). Text form, shared by the CLI and config
files: ``ROLE=KIND[:EPS[:NOISE]]`` with ``ROLE`` one of the five or ``all``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from functools import partial

import jax

from qlinreg.quantize.idealized import (
    Additive,
    Multiplicative,
    MultiplicativeElementwise,
    NoQuant,
)

__all__ = ["ROLES", "Quantizer", "Scheme", "parse_quantizer", "register_kind", "role_shape"]

ROLES = ("data", "labels", "params", "activations", "grads")


def role_shape(role: str, batch: int, d: int) -> tuple[int, ...]:
    """Shape of the tensor a role carries in one step (SPEC §2): ``X_t`` is ``B × d``, ``w`` is
    ``d``; labels, activations and output gradients are ``B``-vectors."""
    return {"data": (batch, d), "params": (d,)}.get(role, (batch,))


Quantizer = Callable[[jax.Array, jax.Array], jax.Array]
"""A quantizer: a pytree (its tunable numbers as leaves, the rest static) called as
``q(key, u)`` with a ``uint32[2]`` :mod:`qlinreg.prng` key; the last axis of ``u`` is the
paper's vector."""

# name → parser of the text after "KIND:" (None when there is none) and the role (None: any).
_KINDS: dict[str, Callable[[str | None, str | None], Quantizer]] = {}


def register_kind(name: str, parse: Callable[[str | None, str | None], Quantizer]) -> None:
    """Make ``ROLE=name[:ARGS]`` parse with ``parse(ARGS, ROLE)`` (used by number formats; the
    role lets a format pick a role's default, e.g. delayed scaling for length-``B`` vectors)."""
    _KINDS[name] = parse


def _parse_eps(kind: str, text: str | None) -> float:
    if text is None or text == "":
        raise ValueError(f"quantizer kind {kind!r} needs an ε: write {kind}:EPS, e.g. {kind}:0.01")
    try:
        eps = float(text)
    except ValueError:
        raise ValueError(f"{kind} quantizer: eps must be a number ≥ 0, got {text!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{kind} quantizer: eps must be a finite number ≥ 0, got {text!r}")
    return eps


def _scaled(cls) -> Callable[[str | None, str | None], Quantizer]:
    def parse(args: str | None, role: str | None = None) -> Quantizer:
        eps_text, _, noise = (args or "").partition(":")
        return cls(_parse_eps(cls.kind, eps_text), noise or "gaussian")

    return parse


def _none(args: str | None, role: str | None = None) -> Quantizer:
    if args not in (None, "", "0"):
        raise ValueError(f"quantizer kind 'none' takes no arguments, got 'none:{args}'")
    return NoQuant()


register_kind("none", _none)
for _cls in (Additive, Multiplicative, MultiplicativeElementwise):
    register_kind(_cls.kind, _scaled(_cls))


def parse_quantizer(text: str, role: str | None = None) -> Quantizer:
    """``KIND[:ARGS]`` → quantizer, e.g. ``additive:0.01`` or ``multiplicative:1e-3:uniform``.

    ``role`` (one of :data:`ROLES`, or ``None``) selects a format's default for that role: an
    INT or NVFP4 format without a scaling option gets delayed scaling on labels, activations
    and output gradients (their vectors have ``B`` entries; at ``B = 1`` an absmax scale of
    the vector itself would represent it exactly), its per-vector scale elsewhere."""
    kind, sep, args = text.strip().partition(":")
    if kind not in _KINDS:
        raise ValueError(f"unknown quantizer kind {kind!r}; allowed: {', '.join(sorted(_KINDS))}")
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    return _KINDS[kind](args if sep else None, role)


@partial(jax.tree_util.register_dataclass, data_fields=list(ROLES), meta_fields=[])
@dataclass(frozen=True)
class Scheme:
    """One quantizer per role; unquantized (``none``) by default."""

    data: Quantizer = NoQuant()
    labels: Quantizer = NoQuant()
    params: Quantizer = NoQuant()
    activations: Quantizer = NoQuant()
    grads: Quantizer = NoQuant()

    def __post_init__(self) -> None:
        for f in fields(self):
            if not callable(getattr(self, f.name)):
                raise TypeError(
                    f"Scheme.{f.name} must be a quantizer, got {getattr(self, f.name)!r}"
                )

    @classmethod
    def all(cls, q: Quantizer) -> Scheme:
        """The same quantizer on all five roles."""
        return cls(*(q,) * len(ROLES))

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Scheme:
        """Build from ``ROLE=KIND[:ARGS]`` strings: each role at most once; ``all=`` at most
        once and first, the roles after it overriding it (``all=int8 params=none``)."""
        scheme, seen = cls(), {}
        for spec in specs:
            if not isinstance(spec, str):
                raise ValueError(
                    f"quant: each entry must be a 'ROLE=KIND:EPS' string, got {spec!r}"
                )
            role, eq, qtext = spec.partition("=")
            role = role.strip()
            if not eq or not qtext.strip():
                raise ValueError(
                    f"malformed quantization spec {spec!r}: expected ROLE=KIND[:EPS], "
                    f"e.g. data=additive:0.01 (roles: {', '.join(ROLES)}, all)"
                )
            if role != "all" and role not in ROLES:
                raise ValueError(
                    f"unknown role {role!r} in {spec!r}; allowed: {', '.join(ROLES)}, all"
                )
            if role in seen:
                raise ValueError(
                    f"quant: role {role!r} is given twice ({seen[role]!r} and {spec!r}); "
                    "give each role once"
                )
            if role == "all" and seen:
                before = ", ".join(map(repr, seen.values()))
                raise ValueError(f"quant: {spec!r} must come first: it would override {before}")
            seen[role] = spec
            if role == "all":
                scheme = cls(**{r: parse_quantizer(qtext, r) for r in ROLES})
            else:
                scheme = replace(scheme, **{role: parse_quantizer(qtext, role)})
        return scheme

    def items(self) -> list[tuple[str, Quantizer]]:
        return [(r, getattr(self, r)) for r in ROLES]

    def labels_by_role(self) -> dict[str, str]:
        """``{role: "kind:eps"}`` for tables and plot titles."""
        return {r: getattr(q, "label", type(q).__name__) for r, q in self.items()}

    def describe(self) -> str:
        """Short text: ``full precision``, ``all=KIND:EPS`` or the quantized roles."""
        labels = self.labels_by_role()
        values = set(labels.values())
        if values == {"none"}:
            return "full precision"
        if len(values) == 1:
            return f"all={values.pop()}"
        return ", ".join(f"{r}={lab}" for r, lab in labels.items() if lab != "none")
