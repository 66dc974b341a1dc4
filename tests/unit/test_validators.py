"""Tests for engine/validators.py: checks, normalization, messages, JSON forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import EddyError, ErrorCode
from engine.ids import encode_id
from engine.validators import ValidationError, pagination_opts, v

CHANNEL_ID = encode_id(3, bytes(range(16)))
USER_ID = encode_id(4, bytes(range(16)))
TABLES = {3: "channels", 4: "users"}


def resolve(table_number):
    return TABLES.get(table_number)


def fails(validator, value, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validator.check(value, **kwargs)
    return caught.value


@pytest.mark.parametrize("validator, good, bad", [
    (v.string(), "hi", b"hi"),
    (v.boolean(), True, 1),
    (v.null(), None, False),
    (v.bytes(), b"\x00", "x"),
    (v.int64(), 7, 7.0),
    (v.int64(), -(2**63), True),
    (v.number(), 1.5, "1.5"),
    (v.float64(), float("inf"), None),
    (v.number(), 2.0, True),
    (v.array(v.string()), ["a", "b"], ("a", "b")),
    (v.literal("a"), "a", "b"),
    (v.literal(True), True, 1),
    (v.literal(1), 1, True),
])
def test_leaf_validators_accept_and_reject(validator, good, bad):
    """Each leaf validator accepts its own type and rejects close look-alikes (bool is not int)."""
    assert validator.check(good) == good
    assert type(validator.check(good)) is type(good)
    fails(validator, bad)


def test_int64_rejects_out_of_range():
    """v.int64() rejects Python ints that do not fit in 64 bits."""
    fails(v.int64(), 2**63)


def test_number_turns_ints_into_floats():
    """v.number() and v.float64() accept a Python int and return it as a float."""
    assert type(v.number().check(3)) is float
    assert v.float64().check(-2) == -2.0
    assert v.object({"n": v.number()}).check({"n": 1}) == {"n": 1.0}
    assert v.array(v.number()).check([1, 2.5]) == [1.0, 2.5]
    fails(v.number(), 10**400)


def test_number_literal_accepts_int_but_int64_literal_refuses_float():
    """v.literal(1.0) accepts 1 (returned as 1.0); v.literal(1) is int64 and refuses 1.0."""
    assert v.literal(1.0).check(1) == 1.0
    assert type(v.literal(1.0).check(1)) is float
    fails(v.literal(1), 1.0)


def test_union_prefers_exact_matches_over_coercion():
    """A union keeps an int an int64 when a member takes it exactly, whatever the order."""
    assert type(v.union(v.number(), v.int64()).check(5)) is int
    assert type(v.union(v.int64(), v.number()).check(5)) is int
    assert type(v.union(v.string(), v.number()).check(5)) is float
    assert v.union(v.string(), v.null()).check(None) is None


def test_union_failure_names_the_union():
    """A value matching no member reports the whole union as expected."""
    error = fails(v.object({"x": v.union(v.string(), v.null())}), {"x": 3})
    assert error.code == ErrorCode.INVALID_ARGS
    assert str(error) == ("Value does not match validator. Path: .x. Expected: "
                          "v.union(v.string(), v.null()). Got: 3 (int64)")


def test_message_names_path_expected_and_actual():
    """A mismatch names the field path, the validator and the value with its type."""
    validator = v.object({"channel": v.id("channels")})
    error = fails(validator, {"channel": 5.0})
    assert str(error) == ('Value does not match validator. Path: .channel. '
                          'Expected: v.id("channels"). Got: 5 (float64)')
    assert (error.path, error.expected, error.got) == (".channel", 'v.id("channels")',
                                                       "5 (float64)")


def test_nested_paths_use_dots_and_brackets():
    """Paths reach through objects, arrays and records: .a[1].b, and odd keys are bracketed."""
    validator = v.object({"a": v.array(v.object({"b": v.string()}))})
    assert fails(validator, {"a": [{"b": "x"}, {"b": 1}]}).path == ".a[1].b"
    record = v.record(v.string(), v.number())
    assert fails(record, {"ok": 1, "my-key": "x"}).path == '["my-key"]'


def test_top_level_mismatch_has_no_path():
    """A mismatch at the top level leaves the path out of the message."""
    error = fails(v.string(), 3)
    assert str(error) == "Value does not match validator. Expected: v.string(). Got: 3 (int64)"


def test_non_values_are_named_by_python_type():
    """A Python object that is not an Eddy value is reported by its Python type."""
    assert fails(v.string(), {1, 2}).got.endswith("(Python set)")


def test_code_is_the_callers():
    """check(code=...) sets the error code of an ordinary mismatch."""
    assert fails(v.string(), 1, code=ErrorCode.INVALID_RETURN).code == ErrorCode.INVALID_RETURN
    assert fails(v.string(), 1, code=ErrorCode.SCHEMA_VIOLATION).code == ErrorCode.SCHEMA_VIOLATION


def test_object_rejects_extra_and_missing_fields():
    """v.object rejects unknown fields and missing required ones, naming the field."""
    validator = v.object({"a": v.string(), "b": v.optional(v.number())})
    assert validator.check({"a": "x"}) == {"a": "x"}
    extra = fails(validator, {"a": "x", "zzz": 1})
    assert extra.path == ".zzz" and '"zzz"' in str(extra)
    missing = fails(validator, {"b": 1})
    assert missing.path == ".a" and 'missing the required field "a"' in str(missing)
    fails(validator, ["a"])


def test_optional_field_rejects_none():
    """An optional field may be absent but None is null, not absent."""
    fails(v.object({"a": v.optional(v.string())}), {"a": None})


def test_id_checks_decoding_and_table():
    """v.id: a non-id string is INVALID_ID; another table's id is WRONG_TABLE_ID when resolvable."""
    validator = v.id("channels")
    assert validator.check(CHANNEL_ID) == CHANNEL_ID
    assert validator.check(USER_ID) == USER_ID  # No resolver: only the encoding is checked.
    assert validator.check(CHANNEL_ID, resolve_table=resolve) == CHANNEL_ID
    assert fails(validator, "not-an-id").code == ErrorCode.INVALID_ID
    wrong = fails(v.object({"c": validator}), {"c": USER_ID}, resolve_table=resolve)
    assert wrong.code == ErrorCode.WRONG_TABLE_ID
    assert str(wrong).startswith('Value does not match validator. Path: .c. Expected: '
                                 'v.id("channels"). Got: "')
    assert '(id of table "users")' in str(wrong)
    unknown = fails(validator, encode_id(99, bytes(16)), resolve_table=resolve)
    assert unknown.code == ErrorCode.WRONG_TABLE_ID
    assert fails(validator, 5).code == ErrorCode.INVALID_ARGS


def test_record_checks_keys_and_values():
    """v.record checks every key and value; keys must be string-like validators."""
    validator = v.record(v.string(), v.int64())
    assert validator.check({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    fails(validator, {"a": "1"})
    ids = v.record(v.id("users"), v.boolean())
    assert ids.check({USER_ID: True}, resolve_table=resolve) == {USER_ID: True}
    fails(ids, {CHANNEL_ID: True}, resolve_table=resolve)
    with pytest.raises(EddyError):
        v.record(v.number(), v.string())


def test_any_accepts_everything():
    """v.any() returns whatever it is given."""
    value = {"a": [1, 2.0, None, b"x"]}
    assert v.any().check(value) is value


@pytest.mark.parametrize("validator, text", [
    (v.string(), "v.string()"),
    (v.number(), "v.number()"),
    (v.float64(), "v.float64()"),
    (v.id("channels"), 'v.id("channels")'),
    (v.literal("a"), 'v.literal("a")'),
    (v.literal(False), "v.literal(False)"),
    (v.array(v.int64()), "v.array(v.int64())"),
    (v.record(v.string(), v.any()), "v.record(v.string(), v.any())"),
    (v.union(v.null(), v.bytes()), "v.union(v.null(), v.bytes())"),
    (v.object({"a": v.optional(v.boolean())}), 'v.object({"a": v.optional(v.boolean())})'),
])
def test_describe_is_python_like(validator, text):
    """describe() (and repr) read like the Python that built the validator."""
    assert validator.describe() == text
    assert repr(validator) == text


def test_to_json_matches_convex():
    """to_json() gives Convex's validator JSON for every kind."""
    assert v.string().to_json() == {"type": "string"}
    assert v.float64().to_json() == {"type": "number"}
    assert v.int64().to_json() == {"type": "bigint"}
    assert v.id("t").to_json() == {"type": "id", "tableName": "t"}
    assert v.literal("x").to_json() == {"type": "literal", "value": "x"}
    assert v.literal(1).to_json() == {"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}
    assert v.array(v.null()).to_json() == {"type": "array", "value": {"type": "null"}}
    assert v.union(v.any(), v.bytes()).to_json() == {
        "type": "union", "value": [{"type": "any"}, {"type": "bytes"}]}
    assert v.record(v.string(), v.boolean()).to_json() == {
        "type": "record", "keys": {"type": "string"},
        "values": {"fieldType": {"type": "boolean"}, "optional": False}}
    assert v.object({"a": v.string(), "b": v.optional(v.number())}).to_json() == {
        "type": "object", "value": {
            "a": {"fieldType": {"type": "string"}, "optional": False},
            "b": {"fieldType": {"type": "number"}, "optional": True}}}


def test_validators_compare_by_value():
    """Two validators built the same way are equal."""
    assert v.object({"a": v.id("t")}) == v.object({"a": v.id("t")})
    assert v.object({"a": v.id("t")}) != v.object({"a": v.id("u")})


@pytest.mark.parametrize("build", [
    lambda: v.array("x"),
    lambda: v.array(v.string),
    lambda: v.object({"a": int}),
    lambda: v.object(["a"]),
    lambda: v.array(v.optional(v.string())),
    lambda: v.union(v.string(), v.optional(v.null())),
    lambda: v.optional(v.optional(v.string())),
    lambda: v.literal(None),
    lambda: v.literal(float("nan")),
    lambda: v.id(""),
])
def test_misuse_is_schema_invalid(build):
    """Building a validator wrongly raises SCHEMA_INVALID at load time."""
    with pytest.raises(EddyError) as caught:
        build()
    assert caught.value.code == ErrorCode.SCHEMA_INVALID


def test_pagination_opts_shape():
    """pagination_opts takes Convex's paginationOpts and rejects a missing cursor."""
    assert pagination_opts.check({"numItems": 10, "cursor": None}) == {
        "numItems": 10.0, "cursor": None}
    full = {"numItems": 5.0, "cursor": "c", "endCursor": None, "id": 3,
            "maximumRowsRead": 100, "maximumBytesRead": 1000}
    assert pagination_opts.check(full)["id"] == 3.0
    fails(pagination_opts, {"numItems": 10})
    fails(pagination_opts, {"numItems": 10, "cursor": None, "other": 1})


json_leaves = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                        st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text("abc", min_size=1), inner, max_size=3)),
    max_leaves=10)


@given(json_values)
def test_normalizing_is_idempotent(value):
    """Checking a normalized value again returns it unchanged (here through a number-heavy union)."""
    validator = v.union(v.number(), v.array(v.any()), v.record(v.string(), v.any()),
                        v.string(), v.boolean(), v.null())
    once = validator.check(value)
    assert validator.check(once) == once
