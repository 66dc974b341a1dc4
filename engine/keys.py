"""Index keys: an order-preserving, prefix-free byte encoding of values.

An index key is the concatenation of `encode_key` of each indexed value
(docs/internals.md "Index keys"). Two promises hold for any values `a`, `b`:

1. Order: `compare(a, b)` equals the comparison of `encode_key(a)` with
   `encode_key(b)` as byte strings, so a sorted key-value store sorts
   documents in index order and ranges of values are ranges of bytes.
2. Prefix-free: no encoding is a proper prefix of another, so the values of
   a concatenated key can be read back one after another, and all keys that
   start with a given encoded prefix form the byte range
   `[prefix, prefix_successor(prefix))`.

The order is Convex's (convex-backend `crates/value/src/sorting.rs`):
undefined < null < int64 < float64 < boolean < string < bytes < array <
object. The layout follows FoundationDB's tuple layer, like Convex's, but
with its own tag numbers and fixed-width integers (the bytes need not match
Convex's: they never leave the node). Each value is one tag byte and a body:

====  ==========  =========================================================
tag   type        body
====  ==========  =========================================================
0x01  undefined   none (`UNDEFINED`: a field missing from a document)
0x02  null        none
0x03  int64       8 bytes big-endian of `n + 2**63` (sign bit flipped)
0x04  float64     8 bytes big-endian of the IEEE bits, transformed for total
                  order: a negative float has every bit flipped, any other
                  float has only its sign bit set
0x05  false       none
0x06  true        none
0x07  string      UTF-8, each 0x00 written 0x00 0xFF, then 0x00 0x00
0x08  bytes       the bytes, escaped and terminated like a string
0x09  array       each element's encoding, then 0x00
0x0A  object      for each field in ascending order of name: the name
                  encoded as a string (tag included), then the value's
                  encoding; then 0x00
====  ==========  =========================================================

Decisions other modules rely on:

- Floats follow IEEE 754 totalOrder, as Convex's `f64::total_cmp` does:
  -NaN < -Infinity < ... < -0.0 < 0.0 < ... < Infinity < NaN. `-0.0` and
  `0.0` are different keys, and NaNs with different payloads are different
  keys. An int64 and a float64 never compare equal (`1 < 0.5`): coerce first.
- Objects compare by their fields sorted by name, as Convex's objects do
  (they are sorted maps): `{"b": 1, "a": 2}` and `{"a": 2, "b": 1}` have the
  same key, matching Python's dict equality. `decode_index_key` returns
  objects with their fields in name order.
- Strings compare by Unicode code point, which is UTF-8 byte order.

Every tag and every element starts with a byte of at least 0x01, so the 0x00
that ends an array or object sorts before any further element, which makes
a shorter array or object sort first, as it should.
"""

from __future__ import annotations

import operator
import struct
from itertools import repeat
from typing import Any

from engine.errors import EddyError, ErrorCode

__all__ = [
    "UNDEFINED",
    "encode_key",
    "encode_keys",
    "encode_index_key",
    "decode_index_key",
    "prefix_successor",
    "compare",
]


class _Undefined:
    """The type of `UNDEFINED`; there is only ever one instance."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"  # Pickle and copy keep the singleton.


UNDEFINED = _Undefined()
"""A field missing from a document; it sorts below every value, `None` included."""

_UNDEFINED_TAG = 0x01
_NULL_TAG = 0x02
_INT64_TAG = 0x03
_FLOAT64_TAG = 0x04
_FALSE_TAG = 0x05
_TRUE_TAG = 0x06
_STRING_TAG = 0x07
_BYTES_TAG = 0x08
_ARRAY_TAG = 0x09
_OBJECT_TAG = 0x0A

_UNDEFINED_KEY = bytes((_UNDEFINED_TAG,))
_NULL_KEY = bytes((_NULL_TAG,))
_FALSE_KEY = bytes((_FALSE_TAG,))
_TRUE_KEY = bytes((_TRUE_TAG,))
_STRING_PREFIX = bytes((_STRING_TAG,))
_BYTES_PREFIX = bytes((_BYTES_TAG,))
_ARRAY_PREFIX = bytes((_ARRAY_TAG,))
_OBJECT_PREFIX = bytes((_OBJECT_TAG,))
_END = b"\x00"
_STRING_END = b"\x00\x00"

_SIGN = 1 << 63
_ALL_BITS = (1 << 64) - 1
_TAGGED_U64 = struct.Struct(">BQ")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_I64 = struct.Struct(">q")


def encode_key(value: Any) -> bytes:
    """Encodes one value (or `UNDEFINED`) as an order-preserving key.

    Args:
        value: an Eddy value or `UNDEFINED`.

    Returns:
        The encoding; see the module docstring for the layout.

    Raises:
        EddyError: INVALID_VALUE for objects that are not values, ints out of
            the int64 range and strings that are not valid Unicode.
    """
    kind = type(value)
    if kind is str:
        try:
            if "\x00" not in value:
                # Nothing to escape (nearly every string): tag and end go on
                # as text, so one encode makes the whole key.
                return ("\x07" + value + "\x00\x00").encode()
            encoded = value.encode()
        except UnicodeEncodeError:
            raise EddyError(ErrorCode.INVALID_VALUE, "String is not valid Unicode") from None
        return _STRING_PREFIX + encoded.replace(b"\x00", b"\x00\xff") + _STRING_END
    if kind is float:
        bits = _U64.unpack(_F64.pack(value))[0]
        bits = bits ^ _ALL_BITS if bits & _SIGN else bits | _SIGN
        return _TAGGED_U64.pack(_FLOAT64_TAG, bits)
    if kind is int:
        if not -_SIGN <= value < _SIGN:
            raise EddyError(ErrorCode.INVALID_VALUE, f"Integer {value} does not fit in int64")
        return _TAGGED_U64.pack(_INT64_TAG, value + _SIGN)
    if value is None:
        return _NULL_KEY
    if kind is bool:
        return _TRUE_KEY if value else _FALSE_KEY
    if value is UNDEFINED:
        return _UNDEFINED_KEY
    if kind is bytes:
        return _BYTES_PREFIX + value.replace(b"\x00", b"\x00\xff") + _STRING_END
    if kind is list:
        return b"".join([_ARRAY_PREFIX, *map(encode_key, value), _END])
    if kind is dict:
        parts = [_OBJECT_PREFIX]
        for name in value:
            if type(name) is not str:
                raise EddyError(ErrorCode.INVALID_VALUE, f"Field name {name!r} is not a string")
        for name in sorted(value):
            parts.append(encode_key(name))
            parts.append(encode_key(value[name]))
        parts.append(_END)
        return b"".join(parts)
    raise EddyError(
        ErrorCode.INVALID_VALUE, f"A Python {kind.__name__} cannot be part of an index key"
    )


def encode_keys(values: list) -> list:
    """`encode_key` of each value, in order: the same bytes in fewer Python steps.

    A bulk load (engine/shard.py) encodes one field of thousands of documents
    at once, and such a field nearly always holds one type throughout. For
    strings, floats and ints a loop specialised to that type runs two to
    three times faster than calling `encode_key` per value; anything else, or
    a value the specialised loop cannot take, goes through `encode_key`, which
    also raises its errors.

    Args:
        values: Eddy values or `UNDEFINED`.

    Returns:
        The encodings, one per value.

    Raises:
        EddyError: INVALID_VALUE as `encode_key` does.
    """
    kinds = set(map(type, values))
    if len(kinds) == 1:
        encode_all = _ENCODERS_BY_TYPE.get(kinds.pop())
        encoded = None if encode_all is None else encode_all(values)
        if encoded is not None:
            return encoded
    return list(map(encode_key, values))


# Between two string keys in `_encode_strings`: the first one's end, a
# separator, the second one's tag.
_STRING_KEYS_JOINER = "\x00\x00\n\x07"


def _encode_strings(strings: list) -> list | None:
    # One join, one encode and one split for the whole list, the keys coming
    # out of the split. That needs no NUL in any string (NUL is escaped:
    # rare, left to encode_key) and no "\n" (the separator): counting NULs
    # in the joined text, where only the joiners put them, checks the one,
    # and the split's length the other (UTF-8 writes byte 0x0A only for "\n").
    joints = len(strings) - 1
    joined = _STRING_KEYS_JOINER.join(strings)
    if joined.count("\x00") != 2 * joints:
        return None
    try:
        encoded = ("\x07" + joined + "\x00\x00").encode().split(b"\n")
    except UnicodeEncodeError:
        return None
    return encoded if len(encoded) == len(strings) else None


def _encode_floats(floats: list) -> list:
    count = len(floats)
    bits = struct.unpack(f">{count}Q", struct.pack(f">{count}d", *floats))
    if max(bits) < _SIGN:
        # No sign bit anywhere (no negative float, -0.0 or -NaN): the
        # transform only sets the sign bit, and map() does that in C.
        return list(map(_TAGGED_U64.pack, repeat(_FLOAT64_TAG),
                        map(operator.or_, bits, repeat(_SIGN))))
    return [_TAGGED_U64.pack(_FLOAT64_TAG, b ^ _ALL_BITS if b & _SIGN else b | _SIGN)
            for b in bits]


def _encode_ints(ints: list) -> list | None:
    if min(ints) < -_SIGN or max(ints) >= _SIGN:
        return None
    return list(map(_TAGGED_U64.pack, repeat(_INT64_TAG), map(operator.add, ints, repeat(_SIGN))))


# Only exact types: a bool is not an int here, as in `encode_key`.
_ENCODERS_BY_TYPE = {str: _encode_strings, float: _encode_floats, int: _encode_ints}


def encode_index_key(values: list) -> bytes:
    """Encodes the values of one index entry as a single key.

    Args:
        values: the indexed values in index order, `UNDEFINED` for missing
            fields (an index entry ends with `_creationTime` and `_id`).

    Returns:
        The concatenation of `encode_key` of each value.

    Raises:
        EddyError: INVALID_VALUE as `encode_key` does.
    """
    return b"".join(map(encode_key, values))


def decode_index_key(data: bytes) -> list:
    """Decodes a key made by `encode_index_key` back into its values.

    Args:
        data: the key.

    Returns:
        The values; objects come back with fields in name order, missing
        fields as `UNDEFINED`.

    Raises:
        EddyError: CORRUPT_RECORD if `data` is not a well-formed key (callers
            reading keys from outside, such as cursors, map it to their own
            code).
    """
    values = []
    position = 0
    try:
        while position < len(data):
            value, position = _decode(data, position)
            values.append(value)
    except (IndexError, ValueError, struct.error, RecursionError):
        # IndexError and struct.error: truncated; ValueError: a string without
        # its end or not UTF-8; RecursionError: absurd nesting.
        raise _corrupt(data, "truncated, unterminated or not UTF-8") from None
    return values


def _decode(data: bytes, position: int) -> tuple[Any, int]:
    """Reads one value starting at `position`; returns it and the next position."""
    tag = data[position]
    position += 1
    if tag == _STRING_TAG:
        raw, position = _read_escaped(data, position)
        return raw.decode(), position
    if tag == _FLOAT64_TAG:
        bits = _U64.unpack_from(data, position)[0]
        bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL_BITS
        return _F64.unpack(_U64.pack(bits))[0], position + 8
    if tag == _INT64_TAG:
        return _U64.unpack_from(data, position)[0] - _SIGN, position + 8
    if tag == _NULL_TAG:
        return None, position
    if tag == _FALSE_TAG or tag == _TRUE_TAG:
        return tag == _TRUE_TAG, position
    if tag == _UNDEFINED_TAG:
        return UNDEFINED, position
    if tag == _BYTES_TAG:
        return _read_escaped(data, position)
    if tag == _ARRAY_TAG:
        items = []
        while data[position] != 0:
            item, position = _decode(data, position)
            items.append(item)
        return items, position + 1
    if tag == _OBJECT_TAG:
        return _decode_object(data, position)
    raise _corrupt(data, f"unknown tag 0x{tag:02x} at byte {position - 1}")


def _decode_object(data: bytes, position: int) -> tuple[dict, int]:
    fields: dict[str, Any] = {}
    previous = None
    while data[position] != 0:
        if data[position] != _STRING_TAG:
            raise _corrupt(data, f"object field name expected at byte {position}")
        raw, position = _read_escaped(data, position + 1)
        name = raw.decode()
        if previous is not None and name <= previous:
            raise _corrupt(data, f"object fields out of order at byte {position}")
        fields[name], position = _decode(data, position)
        previous = name
    return fields, position + 1


def _read_escaped(data: bytes, position: int) -> tuple[bytes, int]:
    """Reads an escaped string body ending in 0x00 0x00; returns it unescaped."""
    pieces = []
    while True:
        zero = data.index(0, position)
        pieces.append(data[position:zero])
        marker = data[zero + 1]
        if marker == 0x00:
            return b"\x00".join(pieces), zero + 2
        if marker != 0xFF:
            raise _corrupt(data, f"bad escape 0x00 0x{marker:02x} at byte {zero}")
        position = zero + 2


def _corrupt(data: bytes, reason: str) -> EddyError:
    return EddyError(ErrorCode.CORRUPT_RECORD, f"Malformed index key: {reason}", key=data.hex())


def prefix_successor(data: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with `data`.

    With prefix-free keys, `[data, prefix_successor(data))` is exactly the
    set of keys that begin with the encoded values in `data`.

    Args:
        data: a key prefix.

    Returns:
        `data` with trailing 0xFF bytes dropped and its last byte incremented,
        or None if there is no such string (`data` is empty or all 0xFF): the
        range is then unbounded above.
    """
    stripped = data.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


# ---------------------------------------------------------------- comparison

_TYPE_RANKS = {
    _Undefined: 0,
    type(None): 1,
    int: 2,
    float: 3,
    bool: 4,
    str: 5,
    bytes: 6,
    list: 7,
    dict: 8,
}


def compare(a: Any, b: Any) -> int:
    """Compares two values in Convex's total order (the order of their keys).

    Written directly over the values, not through `encode_key`, so each
    checks the other in the tests.

    Args:
        a: an Eddy value or `UNDEFINED`.
        b: an Eddy value or `UNDEFINED`.

    Returns:
        -1, 0 or 1 as `a` sorts before, with or after `b`.

    Raises:
        EddyError: INVALID_VALUE if either is not a value.
    """
    rank_a = _rank(a)
    rank_b = _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    kind = type(a)
    if kind is float:
        a, b = _float_total_order(a), _float_total_order(b)
    elif kind is list:
        return _compare_sequences(a, b)
    elif kind is dict:
        return _compare_sequences(
            sorted(a.items(), key=_field_name), sorted(b.items(), key=_field_name), pairs=True
        )
    elif a is None or a is UNDEFINED:
        return 0
    return (a > b) - (a < b)


_field_name = operator.itemgetter(0)


def _rank(value: Any) -> int:
    rank = _TYPE_RANKS.get(type(value))
    if rank is None:
        raise EddyError(
            ErrorCode.INVALID_VALUE, f"A Python {type(value).__name__} is not an Eddy value"
        )
    return rank


def _float_total_order(value: float) -> int:
    """IEEE totalOrder as a signed int, the way Rust's `f64::total_cmp` does it."""
    bits = _I64.unpack(_F64.pack(value))[0]
    return bits ^ 0x7FFF_FFFF_FFFF_FFFF if bits < 0 else bits


def _compare_sequences(a: list, b: list, pairs: bool = False) -> int:
    """Lexicographic comparison; with `pairs`, items are (field name, value)."""
    for item_a, item_b in zip(a, b):
        if pairs:
            if item_a[0] != item_b[0]:
                return -1 if item_a[0] < item_b[0] else 1
            result = compare(item_a[1], item_b[1])
        else:
            result = compare(item_a, item_b)
        if result:
            return result
    return (len(a) > len(b)) - (len(a) < len(b))
