"""Unit tests for engine/ids.py: Convex ID v6 encoding and strict decoding."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import EddyError, ErrorCode
from engine.ids import decode_id, encode_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

table_numbers = st.integers(1, (1 << 32) - 1) | st.integers(1, 300)
internal_ids = st.binary(min_size=16, max_size=16)


def convex_stability_internal_id() -> bytes:
    """The internal id of convex-backend's `test_document_id_stability`: 251**k mod 256."""
    out = [251]
    for _ in range(15):
        out.append(out[-1] * 251 % 256)
    return bytes(out)


def reference_base32(data: bytes) -> str:
    """Base32 done the slow, obvious way: 5 bits at a time from the most significant."""
    bits = "".join(f"{byte:08b}" for byte in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ALPHABET[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def reference_fletcher16(data: bytes) -> int:
    """Fletcher-16 with modulus 256, byte by byte as RFC 1145 writes it."""
    c0 = c1 = 0
    for byte in data:
        c0 = (c0 + byte) % 256
        c1 = (c1 + c0) % 256
    return c1 << 8 | c0


def reference_vint(number: int) -> bytes:
    """LEB128 of an unsigned number."""
    out = []
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def reference_encode(table_number: int, internal_id: bytes) -> str:
    """ID v6 straight from its description in PROTOCOL.md section 7."""
    body = reference_vint(table_number) + internal_id
    return reference_base32(body + reference_fletcher16(body).to_bytes(2, "little"))


def assert_invalid(text) -> None:
    with pytest.raises(EddyError) as caught:
        decode_id(text)
    assert caught.value.code is ErrorCode.INVALID_ID


def test_matches_convex_stability_vector():
    """encode_id reproduces the id pinned by Convex's own stability test."""
    internal_id = convex_stability_internal_id()
    assert encode_id(1017, internal_id) == "z43zp6c3e75gkmz1kfwj6mbbx5sw281h"
    assert decode_id("z43zp6c3e75gkmz1kfwj6mbbx5sw281h") == (1017, internal_id)


def test_decodes_convex_sorting_test_id():
    """An id from convex-backend's sorting tests decodes and re-encodes to itself."""
    text = "074wwt1x3qmwz35bvscy44eq2yngrt8"
    table_number, internal_id = decode_id(text)
    assert table_number == 1
    assert encode_id(table_number, internal_id) == text


def test_rejects_convex_regression_string():
    """The string Convex's regression test feeds its decoder is not an id."""
    assert_invalid("sssswsgggggggggsgcsssfafffsffks")


@given(table_numbers, internal_ids)
def test_matches_reference_encoder(table_number, internal_id):
    """The fast encoder agrees with a slow encoder written from the spec."""
    assert encode_id(table_number, internal_id) == reference_encode(table_number, internal_id)


@given(table_numbers, internal_ids)
def test_round_trips(table_number, internal_id):
    """decode_id(encode_id(t, i)) == (t, i), and the length follows the table number."""
    text = encode_id(table_number, internal_id)
    assert decode_id(text) == (table_number, internal_id)
    expected_length = {1: 31, 2: 32, 3: 34, 4: 36, 5: 37}[len(reference_vint(table_number))]
    assert len(text) == expected_length


@given(st.integers(1, 1000), internal_ids, internal_ids)
def test_string_order_is_internal_id_order(table_number, first, second):
    """Within one table, ids sort as strings exactly as internal ids sort as bytes."""
    a, b = encode_id(table_number, first), encode_id(table_number, second)
    assert (a < b) == (first < second)
    assert (a == b) == (first == second)


@given(st.text(alphabet=ALPHABET + "ilouA=", min_size=0, max_size=40))
def test_decode_accepts_exactly_canonical_strings(text):
    """A string decodes if and only if encode_id would write exactly that string."""
    try:
        table_number, internal_id = decode_id(text)
    except EddyError as error:
        assert error.code is ErrorCode.INVALID_ID
        return
    assert encode_id(table_number, internal_id) == text


@given(st.binary(min_size=19, max_size=23))
def test_decode_of_arbitrary_bytes_is_canonical_or_refused(data):
    """Base32 of random bytes of id length is either a canonical id or refused."""
    text = reference_base32(data)
    try:
        table_number, internal_id = decode_id(text)
    except EddyError as error:
        assert error.code is ErrorCode.INVALID_ID
        return
    assert encode_id(table_number, internal_id) == text


@given(table_numbers, internal_ids, st.data())
def test_any_single_character_change_is_refused_or_decodes_differently(
    table_number, internal_id, data
):
    """Changing one character never yields another spelling of the same id."""
    text = encode_id(table_number, internal_id)
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != text[position]))
    changed = text[:position] + replacement + text[position + 1:]
    try:
        decoded = decode_id(changed)
    except EddyError:
        return
    assert decoded != (table_number, internal_id)


def test_rejects_malformed_strings():
    """Wrong length, characters, case, footer, trailing bits and table 0 are refused."""
    text = encode_id(5, bytes(range(16)))
    assert_invalid(text[:-1])
    assert_invalid(text + "0")
    assert_invalid(text.upper())
    assert_invalid(text[:10] + "i" + text[11:])
    assert_invalid(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])
    assert_invalid("")
    assert_invalid("z" * 37)
    assert_invalid("0" * 1000)
    assert_invalid(None)
    assert_invalid(b"0" * 31)


def test_rejects_nonzero_trailing_bits():
    """A 31-character id uses 152 of its 155 bits; the other 3 must be zero."""
    text = encode_id(5, bytes(range(16)))
    last = ALPHABET.index(text[-1])
    assert last & 0b111 == 0
    assert_invalid(text[:-1] + ALPHABET[last | 1])


def test_rejects_table_number_zero():
    """Table number 0 is refused even with a correct footer."""
    body = b"\x00" + bytes(range(16))
    assert_invalid(reference_base32(body + reference_fletcher16(body).to_bytes(2, "little")))


def test_rejects_redundant_vint_byte():
    """Table 1 written as the two-byte vint 0x81 0x00 is not canonical."""
    body = b"\x81\x00" + bytes(range(16))
    assert_invalid(reference_base32(body + reference_fletcher16(body).to_bytes(2, "little")))


def test_rejects_table_number_over_32_bits():
    """A vint that needs more than five bytes is refused."""
    body = b"\xff\xff\xff\xff\xff\x01" + bytes(range(16))
    text = reference_base32(body + reference_fletcher16(body).to_bytes(2, "little"))
    assert_invalid(text[:37])
    body = b"\xff\xff\xff\xff\x7f" + bytes(range(16))  # 35 bits: too big for 32
    assert_invalid(reference_base32(body + reference_fletcher16(body).to_bytes(2, "little")))
    assert decode_id(encode_id((1 << 32) - 1, bytes(16))) == ((1 << 32) - 1, bytes(16))


def test_base32_matches_rfc4648_bit_order():
    """Our base32 is RFC 4648's with Convex's alphabet swapped in."""
    data = bytes(range(19))
    rfc = base64.b32encode(data).decode().rstrip("=")
    swapped = rfc.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET))
    assert swapped == reference_base32(data)


@pytest.mark.parametrize("table_number, internal_id", [(0, bytes(16)), (1 << 32, bytes(16)),
                                                       (1, bytes(15)), (1, bytes(17))])
def test_encode_refuses_out_of_range_arguments(table_number, internal_id):
    """encode_id refuses table numbers outside 1..2**32-1 and internal ids not 16 bytes."""
    with pytest.raises(ValueError):
        encode_id(table_number, internal_id)
