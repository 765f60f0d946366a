"""Canonical bytes, hashes, base58, and the plain (JSON) form of ledger values.

Canonical JSON is the one byte form every signature and hash is taken over: keys sorted, no spaces,
UTF-8 without escaping non-ASCII characters, integers only. Two machines that hold equal values
produce equal bytes, so they compute equal transaction ids, beacons and state roots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import orjson

T = TypeVar("T")

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {char: index for index, char in enumerate(BASE58_ALPHABET)}
_BASE58_DIGITS = bytes(_BASE58_INDEX.get(chr(byte), 255) for byte in range(256))
"""``bytes.translate`` table: an ASCII byte to its base58 digit, 255 outside the alphabet."""
ADDRESS_PATTERN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
"""What ``is_address`` matches (whole text): 32 to 44 base58 characters."""


_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def canonical_bytes(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value``: sorted keys, compact, UTF-8.

    The definition is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()``. For what ledger values hold (dicts with string keys, lists,
    strings, integers below 2**64, booleans, None) orjson with sorted keys writes exactly those bytes,
    several times faster (a round's beacon covers every submission); anything else (other key types,
    bigger integers, subclasses, a lone surrogate) makes orjson refuse and ``json`` does the work, so
    the result never differs (tests/ledger/test_codec.py compares both on random text).

    >>> canonical_bytes({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    digest = _SHA256.copy()  # a copy skips looking up the algorithm (every transaction id is one)
    digest.update(data)
    return digest.hexdigest()


_SHA256 = hashlib.sha256()


def base58_encode(data: bytes) -> str:
    """Encode bytes in Bitcoin's base58 alphabet, as Solana and Koii write public keys."""
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, remainder = divmod(number, 58)
        chars.append(BASE58_ALPHABET[remainder])
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(chars))


def base58_decode(text: str) -> bytes:
    """Decode base58 text; raises ``ValueError`` naming the first character outside the alphabet."""
    if not isinstance(text, str):
        raise TypeError(f"base58 text must be a string, got {type(text).__name__}")
    digits = text.encode("ascii", "replace").translate(_BASE58_DIGITS)  # a non-ASCII char: "?" -> 255
    if 255 in digits:
        char = next(char for char in text if char not in _BASE58_INDEX)
        raise ValueError(f"{char!r} is not a base58 character (accepted: {BASE58_ALPHABET})")
    number = _digits_value(digits)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_ones = len(text) - len(text.lstrip("1"))
    return b"\0" * leading_ones + body


def _digits_value(digits: bytes) -> int:
    """The number whose base58 digits (most significant first) are ``digits``' bytes.

    By definition ``sum(d * 58**k)``, computed Horner's way: ``n = n * 58 + d`` per digit, about
    60 ns a digit in Python (5 µs for a signature's 88). Here in lanes instead, a few big-integer
    operations per level: ``int.from_bytes`` puts each digit in an 8-bit lane; one level joins each
    pair of lanes ``(high, low)`` into one lane twice as wide holding ``high * 58**w + low`` (it
    fits: ``58**(2w) < 2**(16w)``), until one lane is left: 7 levels for 88 digits (digits are
    padded on the left with zeros, which change nothing). The same number for every input
    (tests/ledger/test_base58.py compares it with Horner's)."""
    number = int.from_bytes(digits, "big")
    for width, mask, power in _lane_masks(max(len(digits) - 1, 1).bit_length()):
        number = ((number >> width) & mask) * power + (number & mask)
    return number


def _lane_masks(levels: int) -> tuple[tuple[int, int, int], ...]:
    """Per level of ``_digits_value`` over ``2**levels`` digits: the lane width in bits, the mask
    of the low lane of every pair, and ``58**(digits per lane)``. Kept for up to 256 digits
    (signatures and keys); a longer text's are built for it (each mask by doubling)."""
    if levels < len(_SMALL_LANE_MASKS):
        return _SMALL_LANE_MASKS[levels]
    total, power, out = 8 << levels, 58, []
    for level in range(levels):
        width = 8 << level
        mask, span = (1 << width) - 1, 2 * width
        while span < total:
            mask |= mask << span
            span *= 2
        out.append((width, mask, power))
        power *= power
    return tuple(out)


_SMALL_LANE_MASKS: tuple[tuple[tuple[int, int, int], ...], ...] = ()
_SMALL_LANE_MASKS = tuple(_lane_masks(levels) for levels in range(9))


def is_address(text: object) -> bool:
    """Whether ``text`` looks like a base58 public key (32–44 base58 characters)."""
    return isinstance(text, str) and ADDRESS_PATTERN.fullmatch(text) is not None


def derive_address(*parts: str) -> str:
    """A deterministic address-shaped id: base58 of SHA-256 over the parts joined by ``:``."""
    return base58_encode(hashlib.sha256(":".join(parts).encode()).digest())


_SCALARS = frozenset({str, int, bool, type(None)})
_PLAIN_OF: dict[type, Callable[[Any], dict[str, Any]]] = {}
"""Per dataclass: the function ``to_plain`` turns its instances with (fields are fixed per class)."""


def to_plain(value: Any) -> Any:
    """Turn ledger dataclasses, dicts and lists into JSON-ready values (dict keys become strings)."""
    cls = type(value)
    if cls in _SCALARS:
        return value
    plain_of = _PLAIN_OF.get(cls)
    if plain_of is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain_of = _PLAIN_OF[cls] = _plain_function(cls)
    if plain_of is not None:
        return plain_of(value)
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value


def _plain_function(cls: type) -> Callable[[Any], dict[str, Any]]:
    """``to_plain`` of an instance of ``cls``: its encoded fields in order, each through
    ``to_plain``, written as one dict display (``{"a": to_plain(v.a), ...}``, compiled once per
    class, as ``_field_dicts`` does): every receipt's events go through it."""
    items = []
    for field in dataclasses.fields(cls):
        if not field.metadata.get("encode", True):
            continue
        if not field.name.isidentifier():  # dataclass fields always are; never compile anything else
            raise TypeError(f"field name {field.name!r} of {cls.__name__} is not an identifier")
        items.append(f"{field.name!r}: _plain(v.{field.name})")
    function: Callable[[Any], dict[str, Any]] = eval(  # noqa: S307 (field names only, checked above)
        "lambda v: {" + ", ".join(items) + "}", {"_plain": to_plain}
    )
    return function


def from_plain(cls: type[T], data: Any) -> T:
    """Build a ledger dataclass from its plain form, the inverse of ``to_plain``.

    Raises ``ValueError`` naming the field path and the value when ``data`` does not fit ``cls``.
    """
    return typing.cast(T, _from_plain(cls, data, cls.__name__))


_INTEGER_KEY = re.compile(r"-?[0-9]+")


def _from_plain(annotation: Any, data: Any, path: str, key: bool = False) -> Any:
    origin = get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object, got {data!r}")
        hints = _hints(annotation)
        values = {}
        for field in dataclasses.fields(annotation):
            if not field.metadata.get("encode", True):
                continue
            if field.name in data:
                values[field.name] = _from_plain(hints[field.name], data[field.name], f"{path}.{field.name}")
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ValueError(f"{path}: missing field {field.name!r}")
        return annotation(**values)
    if origin is dict:
        key_type, value_type = get_args(annotation)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object, got {data!r}")
        return {
            _from_plain(key_type, name, path, key=True): _from_plain(value_type, item, f"{path}[{name}]")
            for name, item in data.items()
        }
    if origin is list:
        (item_type,) = get_args(annotation)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list, got {data!r}")
        return [_from_plain(item_type, item, f"{path}[{index}]") for index, item in enumerate(data)]
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if data is None:
            return None
        return _from_plain(options[0], data, path, key)
    supertype = getattr(annotation, "__supertype__", None)
    if supertype is not None:
        return _from_plain(supertype, data, path, key)
    if annotation is int:
        if key and isinstance(data, str) and _INTEGER_KEY.fullmatch(data):
            return int(data)  # JSON object keys such as round numbers are strings; values never are
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise ValueError(f"{path}: expected an integer, got {data!r}")
    if annotation is bool:
        if isinstance(data, bool):
            return data
        raise ValueError(f"{path}: expected true or false, got {data!r}")
    if annotation is str:
        if isinstance(data, str):
            return data
        raise ValueError(f"{path}: expected a string, got {data!r}")
    if annotation is Any:
        return data
    raise TypeError(f"{path}: no plain decoding for {annotation!r}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def plain_bytes(value: Any) -> bytes:
    """``canonical_bytes(to_plain(value))``, encoded straight from ``value`` (no plain copy).

    orjson walks the live dicts and lists itself and calls back into Python once per dataclass
    instance (``_fields_of``: its encoded fields, the keys of its integer-keyed dicts as strings).
    Whatever that walk cannot write exactly as ``to_plain`` would (a key that is not a ``str``
    where the annotation does not say ``int``, a subclass, a big integer...) makes orjson refuse,
    and the result is then ``canonical_bytes(to_plain(value))`` itself, so the bytes never differ
    (tests/ledger/test_codec.py compares both). On a 100,000-node state it takes about half the
    time of the copy and encoding together. It runs in one C call: ``value`` must not change
    meanwhile (the sequencer calls it between two passes).
    """
    try:
        return orjson.dumps(value, default=_fields_of, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included
        return canonical_bytes(to_plain(value))


_FIELD_DICTS: dict[type, Callable[[Any], dict[str, Any]]] = {}
"""Per dataclass: the function ``plain_bytes`` calls for its instances."""


def _fields_of(value: Any) -> dict[str, Any]:
    """orjson's ``default``: a dataclass instance as the dict of the fields ``to_plain`` writes,
    with the keys of the fields annotated ``dict[int, ...]`` as strings (``str(key)``, as
    ``to_plain``); anything else is refused (``TypeError``: ``plain_bytes`` falls back)."""
    cls = type(value)
    fields_of = _FIELD_DICTS.get(cls)
    if fields_of is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            raise TypeError(f"no plain form for {cls.__name__}")
        fields_of = _FIELD_DICTS[cls] = _field_dicts(cls)
    return fields_of(value)


def _field_dicts(cls: type) -> Callable[[Any], dict[str, Any]]:
    """The function that turns an instance of ``cls`` into its encoded fields, written as one dict
    display (``{"a": v.a, "b": _keys(v.b)}``, compiled once per class, as ``dataclasses`` writes
    its ``__init__``): about three times faster than building the dict field by field, and
    ``plain_bytes`` calls it for every proof of a round."""
    hints = _hints(cls)
    items = []
    for field in dataclasses.fields(cls):
        if not field.metadata.get("encode", True):
            continue
        name = field.name
        if not name.isidentifier():  # dataclass fields always are; never compile anything else
            raise TypeError(f"field name {name!r} of {cls.__name__} is not an identifier")
        value = f"_keys(v.{name})" if _integer_keyed(hints[name]) else f"v.{name}"
        items.append(f"{name!r}: {value}")
    function: Callable[[Any], dict[str, Any]] = eval(  # noqa: S307 (field names only, checked above)
        "lambda v: {" + ", ".join(items) + "}", {"_keys": _string_keys}
    )
    return function


def _string_keys(mapping: Any) -> Any:
    """A dict's keys as ``to_plain`` writes them (``str(key)``); anything else as it is."""
    if type(mapping) is dict:
        return {str(key): item for key, item in mapping.items()}
    return mapping


def _integer_keyed(annotation: Any) -> bool:
    """Whether ``annotation`` is ``dict[K, V]`` with ``K`` an ``int`` (or a NewType of it)."""
    if get_origin(annotation) is not dict:
        return False
    key = get_args(annotation)[0]
    while hasattr(key, "__supertype__"):
        key = key.__supertype__
    return key is int


def state_root(state: Any) -> str:
    """The hex SHA-256 over the canonical encoding of the whole ledger state (``plain_bytes``).

    Two ledgers that applied the same transactions at the same slots have the same root.
    """
    return sha256_hex(plain_bytes(state))
