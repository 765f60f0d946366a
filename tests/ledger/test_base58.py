"""``base58_decode`` (computed in lanes, ledger/codec.py) against the definition: Horner's rule,
one digit at a time, and the leading ``1``s as zero bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykoii.keys import Keypair, signer_key
from pykoii.ledger.codec import BASE58_ALPHABET, base58_decode, base58_encode


def definition(text: str) -> bytes:
    for char in text:
        if char not in BASE58_ALPHABET:
            raise ValueError(f"{char!r} is not a base58 character (accepted: {BASE58_ALPHABET})")
    number = 0
    for char in text:
        number = number * 58 + BASE58_ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


_BASE58 = st.text(st.sampled_from(BASE58_ALPHABET), max_size=300)


@settings(max_examples=500)
@given(st.text(st.sampled_from("1"), max_size=4), _BASE58)
def test_decoding_is_the_definition(ones: str, text: str) -> None:
    assert base58_decode(ones + text) == definition(ones + text)


@given(st.binary(max_size=100))
def test_decoding_inverts_encoding(data: bytes) -> None:
    assert base58_decode(base58_encode(data)) == data


@given(_BASE58, st.text(min_size=1, max_size=3), _BASE58)
def test_a_character_outside_the_alphabet_is_named_as_the_definition_names_it(
    before: str, bad: str, after: str
) -> None:
    text = before + bad + after
    try:
        expected = definition(text)
    except ValueError as error:
        with pytest.raises(ValueError) as raised:
            base58_decode(text)
        assert str(raised.value) == str(error)
    else:
        assert base58_decode(text) == expected


@pytest.mark.parametrize(
    "length", [0, 1, 2, 3, 31, 32, 33, 43, 44, 45, 63, 64, 65, 86, 87, 88, 128, 129, 255, 256, 257, 600, 3000]
)
def test_every_length_around_a_power_of_two_of_digits(length: int) -> None:
    for text in ("z" * length, "1" * length, ("2" + "z" * length)[:length], ("1" + "zA3" * length)[:length]):
        assert base58_decode(text) == definition(text)


def test_signer_keys_are_the_decoded_public_keys() -> None:
    keys = [Keypair.from_seed(bytes([i]) * 32) for i in range(20)]
    for _ in range(2):
        assert [signer_key(k.public_key) for k in keys] == [bytes(k.signing_key.verify_key) for k in keys]
