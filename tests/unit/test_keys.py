"""Unit tests for engine/keys.py: order, prefix-freeness and round trips of index keys."""

from __future__ import annotations

import copy
import math
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import EddyError, ErrorCode
from engine.keys import (
    UNDEFINED,
    compare,
    decode_index_key,
    encode_index_key,
    encode_key,
    encode_keys,
    prefix_successor,
)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def float_from_bits(bits: int) -> float:
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]


# Every float64 bit pattern (all NaN payloads, both zeros), plus the usual suspects.
all_floats = st.integers(0, (1 << 64) - 1).map(float_from_bits) | st.floats()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.integers(-3, 3)
    | all_floats
    | st.text(alphabet="\x00\x01a\xffé\U0001f600", max_size=4)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.sampled_from([b"\x00", b"\x00\xff", b"\xff", b"\x00\x00"])
)

values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet="\x00ab", max_size=3), children, max_size=4),
    max_leaves=12,
)

key_values = values | st.just(UNDEFINED)


def sign(number: int) -> int:
    return (number > 0) - (number < 0)


def canonical(value):
    """`value` as decode returns it: objects with fields in name order."""
    if type(value) is dict:
        return {name: canonical(value[name]) for name in sorted(value)}
    if type(value) is list:
        return [canonical(item) for item in value]
    return value


def same(a, b) -> bool:
    """Exact equality: types and field order match, floats compare by bits."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


# ---------------------------------------------------------------- order


@given(key_values, key_values)
def test_key_order_agrees_with_compare(a, b):
    """compare(a, b) is the byte order of encode_key(a) and encode_key(b)."""
    assert compare(a, b) == sign((encode_key(a) > encode_key(b)) - (encode_key(a) < encode_key(b)))


@given(key_values, key_values)
def test_compare_is_antisymmetric(a, b):
    """compare(a, b) == -compare(b, a), and 0 exactly when the keys are equal."""
    assert compare(a, b) == -compare(b, a)
    assert (compare(a, b) == 0) == (encode_key(a) == encode_key(b))


@given(st.lists(key_values, min_size=1, max_size=3), st.lists(key_values, min_size=1, max_size=3))
def test_index_key_order_is_lexicographic(a, b):
    """Concatenated keys sort as the value lists do, element by element."""
    expected = 0
    for x, y in zip(a, b):
        expected = compare(x, y)
        if expected:
            break
    else:
        expected = sign(len(a) - len(b))
    ka, kb = encode_index_key(a), encode_index_key(b)
    assert expected == sign((ka > kb) - (ka < kb))


def test_type_order_is_convex_order():
    """undefined < null < int64 < float64 < bool < str < bytes < array < object."""
    ordered = [UNDEFINED, None, INT64_MAX, -math.inf, False, "", b"", [], {}]
    keys = [encode_key(value) for value in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_float_order_is_ieee_total_order():
    """-NaN < -inf < -1 < -0.0 < 0.0 < tiny < 1 < inf < NaN, as Rust's total_cmp."""
    ordered = [-math.nan, -math.inf, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, math.inf, math.nan]
    keys = [encode_key(value) for value in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_float_order_matches_python_for_numbers(a, b):
    """For non-NaN floats other than zeros of opposite sign, key order is numeric order."""
    if a == b == 0.0:
        return
    assert (encode_key(a) < encode_key(b)) == (a < b)


@given(st.integers(INT64_MIN, INT64_MAX), st.integers(INT64_MIN, INT64_MAX))
def test_int_order_matches_python(a, b):
    """int64 keys sort numerically across the whole range."""
    assert (encode_key(a) < encode_key(b)) == (a < b)


@given(st.text(), st.text())
def test_string_order_is_code_point_order(a, b):
    """Strings sort by code point, as Python compares them."""
    assert (encode_key(a) < encode_key(b)) == (a < b)


def test_object_field_order_does_not_matter():
    """Objects are keyed by their fields in name order, as Python dicts compare equal."""
    assert encode_key({"b": 1, "a": 2}) == encode_key({"a": 2, "b": 1})
    assert compare({"b": 1, "a": 2}, {"a": 2, "b": 1}) == 0
    assert compare({"a": 1}, {"a": 1, "b": 0}) == -1
    assert compare({"a": 9}, {"b": 0}) == -1


def test_shorter_sorts_first():
    """A proper prefix sorts first: [] < [x], "a" < "a\\0", {} < {"": x}."""
    assert compare([], [UNDEFINED]) == -1
    assert compare("a", "a\x00") == -1
    assert compare(b"a", b"a\x00") == -1
    assert compare({}, {"": None}) == -1
    assert encode_key("a") < encode_key("a\x00") < encode_key("a\x01")


def test_int_and_float_are_never_equal():
    """Type order comes first: 1 (int64) < 0.5 (float64), and 1 != 1.0."""
    assert compare(1, 0.5) == -1
    assert compare(1, 1.0) == -1
    assert compare(True, 1) == 1


# ---------------------------------------------------------------- structure


@given(key_values, key_values)
def test_keys_are_prefix_free(a, b):
    """No encoding is a proper prefix of another."""
    ka, kb = encode_key(a), encode_key(b)
    if ka != kb:
        assert not ka.startswith(kb)
        assert not kb.startswith(ka)


@given(st.lists(key_values, max_size=4))
def test_decode_inverts_encode(items):
    """decode_index_key(encode_index_key(v)) is v exactly, fields in name order."""
    decoded = decode_index_key(encode_index_key(items))
    assert same(decoded, [canonical(item) for item in items])
    assert all(type(item) is type(original) for item, original in zip(decoded, items))


@given(st.binary(max_size=24))
def test_decode_of_arbitrary_bytes_is_canonical_or_refused(data):
    """Any byte string either decodes to values that encode back to it or is refused."""
    try:
        decoded = decode_index_key(data)
    except EddyError as error:
        assert error.code is ErrorCode.CORRUPT_RECORD
        return
    assert encode_index_key(decoded) == data


@pytest.mark.parametrize("data", [
    b"\x03\x00",  # truncated int64
    b"\x07ab\x00",  # string without its end
    b"\x07a\x00\x01",  # bad escape
    b"\x09\x02",  # array without its end
    b"\x0a\x02\x00",  # object field name that is not a string
    b"\x0a\x07b\x00\x00\x02\x07a\x00\x00\x02\x00",  # fields out of order
    b"\x0a\x07a\x00\x00\x02\x07a\x00\x00\x02\x00",  # duplicate field
    b"\x07\xff\x00\x00",  # not UTF-8
    b"\xff",  # unknown tag
    b"\x09" * 5000,  # absurd nesting
])
def test_decode_refuses_malformed_keys(data):
    """Truncated, unterminated, mis-escaped, unordered and unknown input is refused."""
    with pytest.raises(EddyError) as caught:
        decode_index_key(data)
    assert caught.value.code is ErrorCode.CORRUPT_RECORD


@pytest.mark.parametrize("value", [(1,), {1, 2}, object(), 1 << 63, INT64_MIN - 1, "\ud800",
                                   "a\x00\ud800", {1: "a"}, [1, (2,)]])
def test_encode_refuses_non_values(value):
    """Non-values, out-of-range ints and lone surrogates are refused."""
    with pytest.raises(EddyError) as caught:
        encode_key(value)
    assert caught.value.code is ErrorCode.INVALID_VALUE


def test_compare_refuses_non_values():
    """compare refuses objects that are not values."""
    with pytest.raises(EddyError):
        compare((1,), 1)


# ---------------------------------------------------------------- prefix_successor


@given(st.binary(max_size=4), st.binary(max_size=6))
def test_prefix_successor_bounds_exactly_the_strings_with_the_prefix(prefix, other):
    """x starts with p  iff  p <= x < prefix_successor(p) (None: no upper bound)."""
    successor = prefix_successor(prefix)
    in_range = prefix <= other and (successor is None or other < successor)
    assert other.startswith(prefix) == in_range
    extended = prefix + other
    assert successor is None or extended < successor


@given(st.binary(max_size=6))
def test_prefix_successor_is_the_smallest_bound(prefix):
    """The successor is above the prefix but is no extension of it, so nothing smaller works.

    With the iff property above, every string in [prefix, successor) extends the
    prefix; extensions have no maximum (prefix + 0xFF...), so any smaller bound
    would cut some off.
    """
    successor = prefix_successor(prefix)
    if successor is None:
        assert set(prefix) <= {0xFF}
        return
    assert successor > prefix
    assert not successor.startswith(prefix)


def test_prefix_successor_examples():
    """Trailing 0xFF bytes are dropped and the last byte is incremented."""
    assert prefix_successor(b"ab") == b"ac"
    assert prefix_successor(b"a\xff\xff") == b"b"
    assert prefix_successor(b"\xff") is None
    assert prefix_successor(b"") is None


@given(key_values, st.lists(key_values, max_size=2), st.lists(key_values, max_size=2))
def test_prefix_range_selects_keys_with_that_first_value(first, rest, others):
    """[encode(v), prefix_successor(encode(v))) holds exactly the keys whose first value is v."""
    lo = encode_key(first)
    hi = prefix_successor(lo)
    inside = encode_index_key([first, *rest])
    assert lo <= inside and (hi is None or inside < hi)
    if others:
        key = encode_index_key(others)
        selected = lo <= key and (hi is None or key < hi)
        assert selected == (encode_key(others[0]) == lo)


# ---------------------------------------------------------------- UNDEFINED


def test_undefined_is_a_singleton_with_a_repr():
    """UNDEFINED prints as UNDEFINED and survives copy and pickle as itself."""
    assert repr(UNDEFINED) == "UNDEFINED"
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED
    assert type(UNDEFINED)() is UNDEFINED
    assert compare(UNDEFINED, None) == -1


@given(st.one_of(st.lists(key_values, max_size=6), st.lists(st.text(max_size=6), max_size=6),
                 st.lists(all_floats, max_size=6),
                 st.lists(st.integers(INT64_MIN - 2, INT64_MAX + 2), max_size=6)))
def test_encode_keys_is_encode_key_of_each(items):
    """encode_keys gives encode_key's bytes for each value, or raises its error."""
    try:
        expected = [encode_key(item) for item in items]
    except EddyError as error:
        with pytest.raises(EddyError) as raised:
            encode_keys(items)
        assert raised.value.code == error.code
        return
    assert encode_keys(items) == expected


def test_encode_keys_falls_back_for_escapes_and_surrogates():
    """Strings with NUL bytes are escaped and lone surrogates refused, as encode_key does."""
    assert encode_keys(["a\x00b", "c"]) == [encode_key("a\x00b"), encode_key("c")]
    assert encode_keys(["a\nb", "", "\n"]) == [encode_key("a\nb"), encode_key(""), encode_key("\n")]
    assert encode_keys(["é", "\U0001f600"]) == [encode_key("é"), encode_key("\U0001f600")]
    with pytest.raises(EddyError):
        encode_keys(["ok", "\ud800"])


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from("\x00\x07"),
               max_size=8))
def test_string_keys_have_the_documented_layout(text):
    """A string's key is 0x07, its UTF-8 with each 0x00 written 0x00 0xFF, then 0x00 0x00."""
    assert encode_key(text) == b"\x07" + text.encode().replace(b"\x00", b"\x00\xff") + b"\x00\x00"
