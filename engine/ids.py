"""Document ids in Convex's "ID v6" format (PROTOCOL.md section 7).

An id names a document: the number of its table and a 16-byte internal id.
Its text is built in two steps (convex-backend `crates/value/src/id_v6.rs`):

1. Bytes: `vint(table_number) || internal_id || footer`.
   - `vint` is LEB128: 7 bits per byte, least significant group first, the
     high bit set on every byte but the last. Table numbers are 1 to 2**32-1,
     so 1 to 5 bytes.
   - `footer` is the Fletcher-16 checksum (modulus 256) of the bytes before
     it, XOR the format version 0, stored little-endian: `c0 = sum(bytes)`,
     `c1 = sum of the running sums`, footer = `c1 << 8 | c0`.
2. Text: base32 with the alphabet `0123456789abcdefghjkmnpqrstvwxyz`,
   big-endian bit order, no padding. 19 to 23 bytes give 31 to 37 characters
   (31 for table numbers below 128, 32 below 16,384).

That base32 is RFC 4648's with another alphabet: both cut the bit string
into 5-bit groups from the most significant bit of the first byte, and both
pad the last group with zero bits. So `base64.b32decode` after a translation
of the alphabet reads Convex's text, and because both alphabets list their
characters in ascending order, ids of one table (same length, same prefix)
sort as strings exactly as their internal ids sort as bytes.

Decoding is strict: a string is an id only if it is exactly what
`encode_id` would write for the numbers it decodes to. That rejects the
non-canonical strings Convex's own decoder lets through (nonzero trailing
bits, a redundant vint byte, an extra character).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from itertools import repeat
from typing import Callable

from engine.errors import EddyError, ErrorCode

__all__ = ["encode_id", "encode_ids", "decode_id", "INTERNAL_ID_BYTES"]

INTERNAL_ID_BYTES = 16
TABLE_NUMBER_MAX = (1 << 32) - 1
_VERSION = 0

ID_CHARS_MIN = 31  # 1-byte table number + 16 + 2 = 19 bytes.
ID_CHARS_MAX = 37  # 5-byte table number + 16 + 2 = 23 bytes.

_RFC4648_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CONVEX_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Decoding uses base64.b32decode after translating the alphabet;
# bytes.translate, unlike str.translate, is a plain table lookup in C.
_TO_RFC4648 = bytes.maketrans(_CONVEX_ALPHABET.encode(), _RFC4648_ALPHABET.encode())

# Length and alphabet in one C-level check, before any decoding work, so a
# long or garbage string fails fast.
_ID_PATTERN = re.compile(r"[0-9a-hjkmnp-tv-z]{%d,%d}" % (ID_CHARS_MIN, ID_CHARS_MAX))

# The last character of an id carries `5 * chars - 8 * bytes` bits past the
# end of the data; a canonical id has them all zero.
_CHAR_VALUES = {char: value for value, char in enumerate(_CONVEX_ALPHABET)}
_TRAILING_MASKS = [(1 << (5 * length - 8 * (5 * length // 8))) - 1
                   for length in range(ID_CHARS_MAX + 1)]

# b32decode wants padding to a multiple of 8 characters.
_PADDING = [b"=" * (-length % 8) for length in range(ID_CHARS_MAX + 1)]


def encode_id(table_number: int, internal_id: bytes) -> str:
    """Encodes a document id as Convex ID v6 text.

    Args:
        table_number: the table's number, 1 to 2**32-1.
        internal_id: the document's 16-byte internal id.

    Returns:
        The id's text, 31 to 37 characters.

    Raises:
        ValueError: if the table number or internal id is out of range (a bug
            in the caller: both come from the node, never from a client).
    """
    prefix = _prefixes.get(table_number) or _prefix(_checked_table(table_number))
    if len(internal_id) != INTERNAL_ID_BYTES:
        raise ValueError(
            f"Cannot make an id from table {table_number!r} and "
            f"{len(internal_id)}-byte internal id"
        )
    vint, char_count, stages = prefix
    body = vint + internal_id
    checksum = zlib.adler32(body)  # `_footer`, inlined: this runs once per insert
    data = body + bytes(((checksum - 1) & 0xFF ^ _VERSION, ((checksum >> 16) - len(body)) & 0xFF))
    # Base32 without a Python loop over characters: spread the 5-bit groups
    # of the number into one byte each (see `_spread_stages`), then map bytes
    # 0..31 to the alphabet with one `bytes.translate`.
    number = int.from_bytes(data, "big") << (5 * char_count - 8 * len(data))
    for low_mask, high_mask, shift in stages:
        number = (number & low_mask) | ((number & high_mask) << shift)
    return number.to_bytes(char_count, "big").translate(_TO_ALPHABET).decode("ascii")


def encode_ids(table_number: int, internal_ids: list[bytes]) -> list[str]:
    """`encode_id` of each internal id, all of one table, in one go.

    Every step works on the whole block in C: the ids' bytes go into one
    int, one lane each (one `join`), their footers into the lanes' last two
    bytes (one Adler-32 per id, `map`ped, then two slice assignments), the
    lanes are spread into characters together (see `_spread_stages`: the
    mask operations cost about the same for 128 ids as for one), and one
    regular expression cuts the text into ids.

    Args:
        table_number: the table's number, 1 to 2**32-1.
        internal_ids: 16-byte internal ids, at most `ids_per_encode_max`.

    Returns:
        Their ids' text, in order.

    Raises:
        ValueError: as `encode_id`.
    """
    count = len(internal_ids)
    if count <= 1:
        return [encode_id(table_number, internal_id) for internal_id in internal_ids]
    assert count <= ids_per_encode_max, "too many ids for one encode_ids call"
    vint, char_count, _ = _prefixes.get(table_number) or _prefix(_checked_table(table_number))
    lane_bytes = 32 if char_count <= 32 else 64
    body_bytes = len(vint) + INTERNAL_ID_BYTES
    # Each lane: zeros, the vint, the internal id, the footer (zeros here,
    # filled in below), so `head` and `_FOOTER_ROOM + head` join the ids.
    head = bytes(lane_bytes - body_bytes - 2) + vint
    if set(map(len, internal_ids)) != _INTERNAL_ID_LENGTHS:
        raise ValueError("Cannot make an id from an internal id that is not "
                         f"{INTERNAL_ID_BYTES} bytes")
    lanes = b"".join([head, (_FOOTER_ROOM + head).join(internal_ids), _FOOTER_ROOM])
    # `_footer` of every body: the low bytes of each Adler-32's two halves
    # (bytes 0 and 2 of it little-endian) less 1 and less the body's length.
    # (Adler-32 of the body is Adler-32 of the internal id continued from
    # the vint's: no body bytes made per id.)
    checksums = struct.pack(f"<{count}I",
                            *map(zlib.adler32, internal_ids, repeat(zlib.adler32(vint))))
    footers = bytearray(count * lane_bytes)
    footers[lane_bytes - 2::lane_bytes] = checksums[0::4].translate(_FOOTER_LOW)
    footers[lane_bytes - 1::lane_bytes] = checksums[2::4].translate(_FOOTER_HIGH[body_bytes])
    number = (int.from_bytes(lanes, "big") | int.from_bytes(footers, "big")) \
        << (5 * char_count - 8 * (body_bytes + 2))
    for low_mask, high_mask, shift in _block_stages(lane_bytes, count):
        number = (number & low_mask) | ((number & high_mask) << shift)
    text = number.to_bytes(count * lane_bytes, "big").translate(_TO_ALPHABET).decode("ascii")
    return _split_lanes(lane_bytes, char_count)(text)


# Ids one `encode_ids` call takes: the cost per id stops falling at about
# 128 (0.46 us at 32, 0.35 at 128, 0.33 at 256, with 2-byte vints); each
# mask operation then works on an int of 32,768 or 65,536 bits.
ids_per_encode_max = 128
_block_stage_cache: dict[tuple[int, int], tuple] = {}
_FOOTER_ROOM = bytes(2)
_INTERNAL_ID_LENGTHS = {INTERNAL_ID_BYTES}
# bytes.translate tables: a checksum's low byte to the footer's first byte
# (less 1, XOR the version), and, by body length, its high half's low byte
# to the footer's second byte (less the length).
_FOOTER_LOW = bytes(((byte - 1) & 0xFF) ^ _VERSION for byte in range(256))
_FOOTER_HIGH = {length: bytes((byte - length) & 0xFF for byte in range(256))
                for length in range(INTERNAL_ID_BYTES + 1, INTERNAL_ID_BYTES + 6)}
_lane_splitters: dict[tuple[int, int], Callable[[str], list[str]]] = {}


def _split_lanes(lane_bytes: int, char_count: int) -> Callable[[str], list[str]]:
    """A function cutting spread text into ids: the last `char_count`
    characters of each `lane_bytes`-character lane."""
    split = _lane_splitters.get((lane_bytes, char_count))
    if split is None:
        skip = lane_bytes - char_count
        pattern = f".{{{skip}}}(.{{{char_count}}})" if skip else f".{{{char_count}}}"
        split = _lane_splitters[lane_bytes, char_count] = re.compile(pattern, re.DOTALL).findall
    return split


def _block_stages(lane_bytes: int, count: int) -> tuple:
    """`_spread_stages` for `count` lanes of `lane_bytes`, rounded up to a
    power of two (lanes past the ids are zero, which the masks leave zero)."""
    lane_count = 1 << (count - 1).bit_length()
    stages = _block_stage_cache.get((lane_bytes, lane_count))
    if stages is None:
        stages = _block_stage_cache[lane_bytes, lane_count] = _spread_stages(8 * lane_bytes,
                                                                             lane_count)
    return stages


def decode_id(text: str) -> tuple[int, bytes]:
    """Decodes Convex ID v6 text into its table number and internal id.

    Args:
        text: the candidate id, as received.

    Returns:
        `(table_number, internal_id)`.

    Raises:
        EddyError: INVALID_ID if `text` is not a string that `encode_id`
            would write: wrong length or characters, a bad footer, table
            number 0, a vint that does not fit 32 bits or has a redundant
            byte, nonzero trailing bits.
    """
    if type(text) is not str or _ID_PATTERN.fullmatch(text) is None:
        raise _invalid(text, "wrong length or characters")
    try:
        data = base64.b32decode(text.encode("ascii").translate(_TO_RFC4648) + _PADDING[len(text)])
    except binascii.Error:
        raise _invalid(text, "impossible length") from None
    table_number = 0
    for position in range(5):
        byte = data[position]
        table_number |= (byte & 0x7F) << (7 * position)
        if byte < 0x80:
            break
    else:
        raise _invalid(text, "table number is too large")
    if byte == 0 and position > 0:
        raise _invalid(text, "table number has a redundant byte")
    internal_start = position + 1
    if len(data) != internal_start + INTERNAL_ID_BYTES + 2:
        raise _invalid(text, "wrong length for its table number")
    if table_number == 0 or table_number > TABLE_NUMBER_MAX:
        raise _invalid(text, "table number out of range")
    if _CHAR_VALUES[text[-1]] & _TRAILING_MASKS[len(text)]:
        raise _invalid(text, "trailing bits are not zero")
    if data[-2:] != _footer(data[:-2]):
        raise _invalid(text, "checksum mismatch")
    return table_number, data[internal_start:-2]


# bytes.translate table from the values 0..31 to the alphabet's characters.
_TO_ALPHABET = bytes.maketrans(bytes(range(32)), _CONVEX_ALPHABET.encode())


def _spread_stages(lane_bits: int, lane_count: int = 1) -> tuple[tuple[int, int, int], ...]:
    """Masks that spread `lane_bits // 8` 5-bit groups, packed at the bottom
    of each of `lane_count` lanes of `lane_bits` bits, into one byte each.

    Each stage halves the lanes: in every lane of L bits holding W bits at
    its bottom, the upper W/2 bits move up to the bottom of the lane's upper
    half (`(x & low) | ((x & high) << shift)`). From lanes of 5 * n bits in
    8 * n bits (n a power of two) down to lanes of 8 bits holding 5 bits.
    """
    stages = []
    total_bits = lane_bits * lane_count
    lane, width = lane_bits, lane_bits // 8 * 5
    while lane > 8:
        half_lane, half_width = lane // 2, width // 2
        low = sum(((1 << half_width) - 1) << start for start in range(0, total_bits, lane))
        stages.append((low, low << half_width, half_lane - half_width))
        lane, width = half_lane, half_width
    return tuple(stages)


# 32 characters fit the common ids (table numbers up to 16,383); up to 64
# cover the rest.
_SPREAD_32 = _spread_stages(256)
_SPREAD_64 = _spread_stages(512)


def _checked_table(table_number: int) -> int:
    if type(table_number) is not int or not 1 <= table_number <= TABLE_NUMBER_MAX:
        raise ValueError(f"Cannot make an id from table {table_number!r}")
    return table_number


def _prefix(table_number: int) -> tuple[bytes, int, tuple]:
    """What `encode_id` needs of a table, worked out once per table number:
    the vint, the id's character count and the spreading stages for it."""
    vint = _vint(table_number)
    data_bytes = len(vint) + INTERNAL_ID_BYTES + 2
    char_count = (8 * data_bytes + 4) // 5
    prefix = (vint, char_count, _SPREAD_32 if char_count <= 32 else _SPREAD_64)
    if len(_prefixes) < vint_cache_max:
        _prefixes[table_number] = prefix
    return prefix


def _footer(body: bytes) -> bytes:
    """Fletcher-16 (modulus 256) of `body` XOR the version, little-endian.

    Adler-32 keeps the same two sums, starting the first at 1 and reducing
    modulo 65,521 (zlib's C loop instead of a Python one): its low half is
    1 + sum(body) and its high half len(body) + the sum of the running sums
    of the bytes. For at most `_ADLER_EXACT_BYTES` bytes neither sum reaches
    the modulus, so both are exact before the final modulo 256.
    """
    assert len(body) <= _ADLER_EXACT_BYTES, "body too long for an exact Adler-32"
    checksum = zlib.adler32(body)
    c0 = (checksum & 0xFFFF) - 1
    c1 = (checksum >> 16) - len(body)
    return bytes(((c0 & 0xFF) ^ _VERSION, c1 & 0xFF))


# The longest body (a 5-byte vint and an internal id) is 21 bytes: its running
# sums total at most 255 * (21 * 22 / 2) + 21 = 58,926 < 65,521.
_ADLER_EXACT_BYTES = 21


# Table numbers whose `_prefix` is remembered: a node has a few tables, each
# inserted into over and over (the default table numbers need two bytes).
vint_cache_max = 1024
_prefixes: dict[int, tuple[bytes, int, tuple]] = {}


def _vint(number: int) -> bytes:
    """LEB128: 7 bits at a time, least significant first, high bit = more."""
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _invalid(text: object, reason: str) -> EddyError:
    shown = text[:64] if isinstance(text, str) else type(text).__name__
    return EddyError(ErrorCode.INVALID_ID, f"Invalid id {shown!r}: {reason}", id=shown)
