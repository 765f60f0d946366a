"""Formatting for the pages: KOII amounts (1 KOII = 10^9 ROE), short keys, durations, windows.

Amounts live in ROE everywhere else in pykoii; this module and the templates are where they become
KOII for people. ``parse_koii`` is the way back for amounts typed into a form.

>>> koii(1_500_000_000)
'1.5 KOII'
>>> parse_koii("2.5")
2500000000
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2

from ..errors import InvalidRequestError

ROE_PER_KOII = 1_000_000_000
HERE = Path(__file__).parent


def koii(roe: Any, unit: bool = True) -> str:
    """ROE as KOII with up to nine decimals and thousands separators: ``12,000.25 KOII``."""
    try:
        value = Decimal(int(roe)) / ROE_PER_KOII
    except (TypeError, ValueError):
        return "—"
    text = f"{value:,.9f}".rstrip("0").rstrip(".")
    return f"{text} KOII" if unit else text


def parse_koii(text: str) -> int:
    """An amount typed in KOII → ROE; refuses negatives, zero and precision finer than 1 ROE."""
    try:
        amount = Decimal(text.strip().replace(",", "")) * ROE_PER_KOII
    except InvalidOperation:
        raise InvalidRequestError(f"{text!r} is not an amount in KOII (for example 5 or 2.5)") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        raise InvalidRequestError(f"{text!r} KOII must be more than 0 and no finer than 0.000000001 KOII")
    return int(amount)


def short(key: Any, size: int = 6) -> str:
    """``7xKXtg…Vq3p`` for a long public key or id; short strings are kept whole."""
    text = str(key or "")
    return text if len(text) <= 2 * size + 1 else f"{text[:size]}…{text[-4:]}"


def duration(ms: Any) -> str:
    """Milliseconds as people read them: ``850 ms``, ``12 s``, ``3 min 4 s``, ``2 h 5 min``."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def slots(count: Any, slot_ms: int) -> str:
    """``12 slots (4.8 s)``."""
    count = int(count)
    return f"{count} slot{'s' if count != 1 else ''} ({duration(count * slot_ms)})"


def clock(seconds: Any) -> str:
    """A Unix time shown as ``2026-12-01 09:04:07 UTC``."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(seconds)))


def plural(count: Any, word: str) -> str:
    """``1 node``, ``2 nodes``."""
    number = int(count or 0)
    return f"{number} {word}{'' if number == 1 else 's'}"


def clip(text: Any, limit: int = 64) -> str:
    """``text`` shortened to ``limit`` characters at a word boundary, with ``…`` when it was cut
    (the ledger keeps only the first 64 characters of a description, often mid-word)."""
    value = str(text or "")
    if len(value) < limit:
        return value
    head = value[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.-")
    return f"{head}…"


def make_environment() -> jinja2.Environment:
    """The Jinja environment of both sites, with the filters above."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(koii=koii, short=short, duration=duration, clock=clock, plural=plural, clip=clip)
    return env


ENV = make_environment()
STATIC = {
    "style.css": ("text/css; charset=utf-8", HERE / "static" / "style.css"),
    "live.js": ("text/javascript; charset=utf-8", HERE / "static" / "live.js"),
}
