"""Unit tests for engine/values.py: checks, sizes and the three encodings."""

from __future__ import annotations

import base64
import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import limits
from engine.errors import EddyError, ErrorCode
from engine.values import (
    check_document_fields,
    check_value,
    from_convex_json,
    pack,
    size_of,
    to_clean_json,
    to_convex_json,
    type_name,
    unpack,
)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

field_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12
).filter(lambda name: not name.startswith("$"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)

values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(field_names, children, max_size=5),
    max_leaves=25,
)


def same(a, b) -> bool:
    """Exact equality: types match, floats compare by bit pattern (NaN, -0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def nested(depth: int):
    """A value with `depth` levels of nesting: lists inside a list."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- type_name


@pytest.mark.parametrize(
    "value, name",
    [
        (None, "null"),
        (True, "boolean"),
        (0, "int64"),
        (0.0, "float64"),
        ("", "string"),
        (b"", "bytes"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_type_name_names_every_type(value, name):
    """type_name names each value type, telling bool from int."""
    assert type_name(value) == name


def test_type_name_rejects_non_values():
    """type_name refuses Python types that are not Eddy values."""
    with pytest.raises(EddyError) as caught:
        type_name((1, 2))
    assert caught.value.code is ErrorCode.INVALID_VALUE


# ---------------------------------------------------------------- sizes


def test_sizes_follow_convex_rules():
    """Scalars, strings, arrays and objects are sized as Convex sizes them."""
    assert size_of(None) == 1
    assert size_of(True) == 1
    assert size_of(7) == 9
    assert size_of(7.5) == 9
    assert size_of("abc") == 5
    assert size_of("é") == 4  # two UTF-8 bytes
    assert size_of(b"\x00\x01") == 4
    assert size_of([]) == 2
    assert size_of([1, "a"]) == 2 + 9 + 3
    assert size_of({"ab": None}) == 2 + 2 + 1 + 1


@given(values)
def test_check_value_returns_size_of(value):
    """check_value accepts generated values and returns exactly size_of."""
    assert check_value(value) == size_of(value)


# ---------------------------------------------------------------- check_value


@pytest.mark.parametrize(
    "value, path",
    [
        ({"messages": [{"body": "ok"}, {"body": "ok"}, {"body": "ok"}, {"body": (1,)}]},
         ".messages[3].body"),
        ([1, 2, 1 << 63], "[2]"),
        ({"a": {"$bad": 1}}, ".a.$bad"),
        ({"a": [set()]}, ".a[0]"),
        ({"x": "\ud800"}, ".x"),
    ],
)
def test_check_value_names_the_path(value, path):
    """An invalid nested value is reported with the path that leads to it."""
    with pytest.raises(EddyError) as caught:
        check_value(value)
    assert caught.value.code is ErrorCode.INVALID_VALUE
    assert caught.value.details["path"] == path
    assert path in caught.value.message


def test_check_value_prefixes_the_given_path():
    """The `path` argument is put in front of the path inside the value."""
    with pytest.raises(EddyError) as caught:
        check_value({"a": 1 << 64}, path=".args")
    assert caught.value.details["path"] == ".args.a"


@pytest.mark.parametrize(
    "name",
    ["$x", "tab\there", "caf\u00e9", "del\x7f", "x" * (limits.field_name_chars_max + 1), 3],
)
def test_check_value_rejects_bad_field_names(name):
    """Field names must be printable ASCII strings of at most 1,024 chars, no leading $."""
    with pytest.raises(EddyError) as caught:
        check_value({name: 1})
    assert caught.value.code is ErrorCode.INVALID_VALUE


def test_check_value_accepts_edge_field_names():
    """Spaces, `~`, a `$` after the first character and 1,024 chars are all allowed."""
    check_value({" ~a$": 1, "x" * limits.field_name_chars_max: 2, "_system": 3})


@pytest.mark.parametrize("value", [(1,), {1, 2}, object(), 1j, bytearray(b"x"), INT64_MIN - 1])
def test_check_value_rejects_non_values(value):
    """Tuples, sets, other objects and out-of-range ints are not values."""
    with pytest.raises(EddyError) as caught:
        check_value(value)
    assert caught.value.code is ErrorCode.INVALID_VALUE


def test_check_value_limits_array_length():
    """Arrays may hold 8,192 elements and no more."""
    check_value([None] * limits.array_elements_max)
    with pytest.raises(EddyError) as caught:
        check_value({"a": [None] * (limits.array_elements_max + 1)})
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED
    assert caught.value.details["path"] == ".a"


def test_check_value_limits_object_fields():
    """Objects may hold 1,024 fields and no more."""
    fields = {f"f{i}": i for i in range(limits.document_fields_max)}
    check_value(fields)
    fields["one_more"] = 0
    with pytest.raises(EddyError) as caught:
        check_value(fields)
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


def test_check_value_limits_nesting():
    """Nesting 64 is allowed, 65 is not."""
    check_value(nested(limits.value_depth_max))
    with pytest.raises(EddyError) as caught:
        check_value(nested(limits.value_depth_max + 1))
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


# ---------------------------------------------------------------- documents


def test_check_document_fields_limits_nesting():
    """A document (itself one level) may nest 16 levels, not 17."""
    check_document_fields({"a": nested(limits.document_depth_max - 1)})
    with pytest.raises(EddyError) as caught:
        check_document_fields({"a": nested(limits.document_depth_max)})
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


def test_check_document_fields_rejects_system_field_names():
    """Top-level user fields may not start with `_`; nested ones may."""
    assert check_document_fields({"a": {"_b": 1}}) == size_of({"a": {"_b": 1}})
    with pytest.raises(EddyError) as caught:
        check_document_fields({"_id": "x"})
    assert caught.value.code is ErrorCode.INVALID_VALUE


def test_check_document_fields_limits_size():
    """A document of exactly 1 MiB passes; one byte more fails."""
    overhead = size_of({"a": ""})
    check_document_fields({"a": "x" * (limits.document_bytes_max - overhead)})
    with pytest.raises(EddyError) as caught:
        check_document_fields({"a": "x" * (limits.document_bytes_max - overhead + 1)})
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED


def test_check_document_fields_requires_an_object():
    """A document is an object, not any other value."""
    with pytest.raises(EddyError) as caught:
        check_document_fields([1])
    assert caught.value.code is ErrorCode.INVALID_VALUE


# ---------------------------------------------------------------- Convex JSON


def test_convex_json_special_values_match_protocol():
    """The examples of PROTOCOL.md section 6 encode byte for byte."""
    assert to_convex_json(5) == {"$integer": "BQAAAAAAAAA="}
    assert to_convex_json(math.inf) == {"$float": "AAAAAAAA8H8="}
    assert to_convex_json(-0.0) == {"$float": "AAAAAAAAAIA="}
    assert to_convex_json(math.nan) == {"$float": "AAAAAAAA+H8="}
    assert to_convex_json(b"\x00\xff") == {"$bytes": "AP8="}


def test_convex_json_writes_floats_with_a_decimal_point():
    """Floats are emitted as floats, so json.dumps writes `2.0` not `2`."""
    text = json.dumps(to_convex_json({"a": 2.0, "b": [0.0, -1.5], "c": True, "d": None}))
    assert text == '{"a": 2.0, "b": [0.0, -1.5], "c": true, "d": null}'


def test_convex_json_reads_json_ints_as_floats():
    """Incoming JSON integers become float64, as in every Convex client."""
    value = from_convex_json(json.loads('{"n": 1, "m": [2, 3.5], "t": true}'))
    assert same(value, {"n": 1.0, "m": [2.0, 3.5], "t": True})


@given(values)
def test_convex_json_round_trips(value):
    """from_convex_json(json(to_convex_json(v))) gives back v exactly."""
    text = json.dumps(to_convex_json(value), allow_nan=False)
    assert same(from_convex_json(json.loads(text)), value)


@pytest.mark.parametrize(
    "obj",
    [
        {"$integer": "BQAAAAAAAA=="},  # 7 bytes
        {"$integer": "not base64!"},
        {"$integer": 5},
        {"$float": "AAAAAAAA8D8="},  # 1.0, an ordinary number
        {"$float": "AAAAAAAAAAA="},  # +0.0, an ordinary number
        {"$bytes": "A"},
        {"$set": []},
        {"$map": []},
        {"$other": 1},
        {"$integer": "BQAAAAAAAAA=", "x": 1},
        {"a": {"$bytes": None}},
    ],
)
def test_convex_json_rejects_malformed_specials(obj):
    """Malformed or removed special objects and stray `$` keys are refused."""
    with pytest.raises(EddyError) as caught:
        from_convex_json(obj)
    assert caught.value.code is ErrorCode.INVALID_VALUE


def test_convex_json_accepts_specials_from_other_clients():
    """NaN, -0.0 and int64 extremes sent by a client decode exactly."""
    assert math.isnan(from_convex_json({"$float": "AAAAAAAA+H8="}))
    assert same(from_convex_json({"$float": "AAAAAAAAAIA="}), -0.0)
    encoded = base64.b64encode(struct.pack("<q", INT64_MIN)).decode()
    assert from_convex_json({"$integer": encoded}) == INT64_MIN


def test_to_convex_json_rejects_non_values():
    """Encoding a tuple or an out-of-range int fails with INVALID_VALUE."""
    for bad in [(1,), 1 << 64]:
        with pytest.raises(EddyError) as caught:
            to_convex_json(bad)
        assert caught.value.code is ErrorCode.INVALID_VALUE


# ---------------------------------------------------------------- clean JSON


def test_clean_json_matches_convex_export():
    """The `json` format writes int64 as strings, bytes as base64, NaN as strings."""
    value = {"i": -7, "b": b"\x01\x02", "f": [math.nan, math.inf, -math.inf, 1.5],
             "s": "x", "n": None, "t": False}
    assert to_clean_json(value) == {
        "i": "-7", "b": "AQI=", "f": ["NaN", "Infinity", "-Infinity", 1.5],
        "s": "x", "n": None, "t": False,
    }


# ---------------------------------------------------------------- msgpack


@given(values)
def test_pack_round_trips_exactly(value):
    """unpack(pack(v)) is v with every type kept (int vs float, str vs bytes, list)."""
    assert same(unpack(pack(value)), value)


def test_unpack_rejects_malformed_data():
    """Truncated data, trailing bytes and non-string keys raise INVALID_VALUE."""
    for bad in [b"", b"\x92\x01", b"\x01\x02", b"\x81\x01\x02"]:
        with pytest.raises(EddyError) as caught:
            unpack(bad)
        assert caught.value.code is ErrorCode.INVALID_VALUE


def test_pack_recovers_after_a_failure():
    """A failed pack leaves the shared packer clean for the next call."""
    with pytest.raises(EddyError):
        pack([1, 2, 1 << 70])
    assert unpack(pack([1])) == [1]


@settings(max_examples=50)
@given(st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=5))
def test_pack_keeps_ints_as_ints(numbers):
    """Integers unpack as int, never float, across the whole int64 range."""
    assert all(type(n) is int for n in unpack(pack(numbers)))
