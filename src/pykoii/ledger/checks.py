"""The compiled form of ``decode_transaction``'s rules: one check function per instruction class.

``transactions._decode_checked`` is the definition of decoding: it checks each field against
``bounds.FIELDS`` and names the first problem. A signature worker decodes every transaction of a
round, so each class also gets one function, written as Python source once per class (as
``dataclasses`` writes an ``__init__``) from the same table: the fields' tests inline, no
per-field dispatch, no message built. It answers the transaction when every rule holds and
``None`` otherwise; then ``_decode_checked`` runs and raises the error it always raised. So a
transaction is accepted by both or by neither (tests/ledger/test_decode_checks.py compares them on
random and hostile objects), and every message comes from one place.

A class with a nested field (requirement tags, amounts, hashes) gets no compiled check: it is
always decoded by ``_decode_checked``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .bounds import FIELDS, MAX_INTEGER
from .codec import ADDRESS_PATTERN

if TYPE_CHECKING:
    from .transactions import Transaction

Checker = Callable[[dict[Any, Any]], "Transaction | None"]
"""A compiled check: a plain ``dict`` in, the transaction (without its ``tx_id``) or ``None`` out."""

HEX_HASH = re.compile(r"[0-9a-f]{64}")
"""A hex field's value: 64 lowercase hex characters."""


def valid_unicode(value: str) -> bool:
    """Whether ``value`` encodes to UTF-8 (holds no lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_compiled(data: dict[Any, Any]) -> None:
    """The check of a class with nested fields: always ``None`` (decoded field by field)."""
    return None


def compile_checker(cls: type, names: frozenset[str], required: tuple[str, ...]) -> Checker:
    """The check of ``cls``'s JSON object: every key in ``names`` or ``type``, every name of
    ``required`` present, each value of its bound's JSON type and range; fields left out take
    their defaults. Built without ``__init__`` (the frozen dataclass's own way of setting fields)."""
    env: dict[str, Any] = {
        "allowed": names | {"type"},
        "missing": dataclasses.MISSING,
        "new": object.__new__,
        "put": object.__setattr__,
        "cls": cls,
        "address": ADDRESS_PATTERN.fullmatch,
        "hexes": HEX_HASH.fullmatch,
        "unicode": valid_unicode,
    }
    lines = ["def check(data):", "    if not data.keys() <= allowed:", "        return None"]
    fields = dataclasses.fields(cls)
    for index, f in enumerate(fields):
        env[f"d{index}"] = f.default
        if f.name not in names:  # not sent (``tx_id``): its default, as ``__init__`` sets it
            if f.default is dataclasses.MISSING:
                return not_compiled
            lines.append(f"    v{index} = d{index}")
            continue
        test = _test(f.name, f"v{index}")
        optional = f.name not in required
        if test is None or (optional and f.default is dataclasses.MISSING) or not f.name.isidentifier():
            return not_compiled  # a nested field (its default is a factory)
        lines.append(f"    v{index} = data.get({f.name!r}, missing)")
        if not optional:
            lines.append(f"    if v{index} is missing or not ({test}):")
        else:
            lines += [
                f"    if v{index} is missing:",
                f"        v{index} = d{index}",
                f"    elif not ({test}):",
            ]
        lines.append("        return None")
    lines.append("    tx = new(cls)")
    lines += [f"    put(tx, {f.name!r}, v{index})" for index, f in enumerate(fields)]
    lines.append("    return tx")
    exec("\n".join(lines), env)  # noqa: S102 (identifiers and numbers from the class and FIELDS only)
    checker: Checker = env["check"]
    return checker


def _test(name: str, v: str) -> str | None:
    """The expression that holds when ``v`` is a value ``_decode_checked`` accepts for ``name``."""
    bound = FIELDS[name]
    if bound.kind == "integer":
        # as ``transactions._integer``: a handler owns a ``checked_by`` field's accepted range
        low, high = (-MAX_INTEGER - 1, MAX_INTEGER) if bound.checked_by else (bound.low, bound.high)
        return f"type({v}) is int and {low} <= {v} <= {high}"
    if bound.kind == "boolean":
        return f"type({v}) is bool"
    if bound.kind == "hex":
        empty = f" or {v} == ''" if bound.low == 0 else ""
        return f"type({v}) is str and (hexes({v}) is not None{empty})"
    if bound.kind == "address":
        return f"type({v}) is str and address({v}) is not None"
    if bound.kind == "string":
        size = "" if bound.checked_by else f" and {bound.low} <= len({v}) <= {bound.high}"
        return f"type({v}) is str{size} and ({v}.isascii() or unicode({v}))"
    return None
