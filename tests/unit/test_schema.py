"""Tests for engine/schema.py: declarations, their limits, document checks, lookups."""

from __future__ import annotations

import pytest

from engine import limits
from engine.errors import EddyError, ErrorCode
from engine.ids import encode_id
from engine.schema import define_schema, define_table
from engine.validators import ValidationError, v

CHANNEL_ID = encode_id(1, bytes(16))
USER_ID = encode_id(2, bytes(16))


def resolve(table_number):
    return {1: "channels", 2: "users"}.get(table_number)


def chat_schema(**options):
    return define_schema({
        "channels": define_table({"name": v.string()}).index("by_name", ["name"]),
        "messages": define_table({
            "channel": v.id("channels"),
            "body": v.string(),
            "author": v.object({"name": v.string(), "age": v.optional(v.number())}),
            "tags": v.optional(v.array(v.string())),
        })
        .index("by_channel", ["channel"])
        .index("by_author_name", ["author.name", "channel"])
        .search_index("search_body", search_field="body", filter_fields=["channel"])
        .vector_index("by_tags", vector_field="tags", dimensions=3),
    }, **options)


def invalid(build) -> EddyError:
    with pytest.raises(EddyError) as caught:
        build()
    assert caught.value.code == ErrorCode.SCHEMA_INVALID
    return caught.value


def test_declarations_are_stored():
    """Tables keep their indexes of every kind, and define_schema names them."""
    schema = chat_schema()
    messages = schema.tables["messages"]
    assert messages.name == "messages"
    assert messages.indexes == {"by_channel": ["channel"],
                                "by_author_name": ["author.name", "channel"]}
    assert messages.search_indexes["search_body"].filter_fields == ("channel",)
    assert messages.vector_indexes["by_tags"].dimensions == 3
    assert set(schema.tables) == {"channels", "messages"}


def test_define_table_accepts_object_and_union_validators():
    """define_table takes a dict, a v.object or a union of objects, and nothing else."""
    define_table(v.object({"a": v.string()})).index("by_a", ["a"])
    union = define_table(v.union(v.object({"kind": v.literal("a"), "x": v.number()}),
                                 v.object({"kind": v.literal("b"), "y": v.string()})))
    union.index("by_x", ["x"]).index("by_y", ["y"])
    invalid(lambda: define_table(v.string()))
    invalid(lambda: define_table(v.union(v.object({}), v.null())))


def test_index_fields_include_system_suffix():
    """index_fields appends _creationTime and _id; the built-in indexes are known everywhere."""
    schema = chat_schema()
    assert schema.index_fields("messages", "by_channel") == ["channel", "_creationTime", "_id"]
    assert schema.index_fields("messages", "by_id") == ["_id"]
    assert schema.index_fields("unknown", "by_creation_time") == ["_creationTime", "_id"]
    for table, index in [("messages", "nope"), ("unknown", "by_channel"),
                         ("messages", "search_body")]:
        with pytest.raises(EddyError) as caught:
            schema.index_fields(table, index)
        assert caught.value.code == ErrorCode.INDEX_NOT_FOUND


@pytest.mark.parametrize("build, words", [
    (lambda t: t.index("by id", ["a"]), "identifier"),
    (lambda t: t.index("by_id", ["a"]), "reserved"),
    (lambda t: t.index("by_creation_time", ["a"]), "reserved"),
    (lambda t: t.index("_mine", ["a"]), "reserved"),
    (lambda t: t.index("x", ["a"]).index("x", ["b"]), "twice"),
    (lambda t: t.index("x", ["a"]).search_index("x", search_field="b"), "twice"),
    (lambda t: t.index("x", []), "non-empty"),
    (lambda t: t.index("x", "a"), "non-empty"),
    (lambda t: t.index("x", ["a", "a"]), "twice"),
    (lambda t: t.index("x", ["_creationTime"]), "_"),
    (lambda t: t.index("x", ["missing"]), "not a field"),
    (lambda t: t.index("x", ["a.deeper"]), "not a field"),
    (lambda t: t.search_index("s", search_field="nope"), "not a field"),
    (lambda t: t.search_index("s", search_field="b", filter_fields=["zz"]), "not a field"),
    (lambda t: t.vector_index("x", vector_field="v", dimensions=1), "dimensions"),
    (lambda t: t.vector_index("x", vector_field="v", dimensions=4097), "dimensions"),
    (lambda t: t.vector_index("x", vector_field="v", dimensions=3.0), "dimensions"),
])
def test_bad_index_declarations_are_rejected(build, words):
    """Bad index names and fields raise SCHEMA_INVALID with a message saying what is wrong."""
    table = define_table({"a": v.string(), "b": v.string(), "v": v.array(v.float64())})
    assert words in invalid(lambda: build(table)).message


def test_unknown_index_field_lists_the_table_fields():
    """An index on a field the table lacks says so and lists the fields it has."""
    table = define_table(v.union(v.object({"a": v.string()}), v.object({"b": v.number()})))
    message = invalid(lambda: table.index("by_c", ["c"])).message
    assert 'define_table(...): index "by_c" field "c" is not a field' in message
    assert '(its fields: "a", "b")' in message


def test_index_limits():
    """32 indexes, 16 fields per index, 4 search and 4 vector indexes, 16 filter fields."""
    fields = {f"f{i}": v.number() for i in range(40)}
    table = define_table(fields)
    for i in range(limits.indexes_per_table_max):
        table.index(f"i{i}", [f"f{i}"])
    invalid(lambda: table.index("one_more", ["f0"]))
    invalid(lambda: define_table(fields).index("wide", [f"f{i}" for i in range(17)]))
    define_table(fields).index("widest", [f"f{i}" for i in range(16)])
    searchable = define_table(fields)
    for i in range(4):
        searchable.search_index(f"s{i}", search_field=f"f{i}")
        searchable.vector_index(f"v{i}", vector_field=f"f{i}", dimensions=2)
    invalid(lambda: searchable.search_index("s4", search_field="f4"))
    invalid(lambda: searchable.vector_index("v4", vector_field="f4", dimensions=2))
    invalid(lambda: define_table(fields).search_index(
        "s", search_field="f0", filter_fields=[f"f{i}" for i in range(1, 18)]))


def test_any_and_records_reach_anywhere():
    """An index may reach into v.any() and records, whose fields are not declared."""
    define_table({"data": v.any()}).index("by_deep", ["data.x.y"])
    define_table({"m": v.record(v.string(), v.number())}).index("by_key", ["m.k"])


@pytest.mark.parametrize("tables", [
    {"_system": define_table({})},
    {"has space": define_table({})},
    {"x" * 65: define_table({})},
    {"ok": {"a": v.string()}},
])
def test_bad_tables_are_rejected(tables):
    """Table names are identifiers not starting with _, and values are define_table(...)."""
    invalid(lambda: define_schema(tables))


def test_table_fields_may_not_start_with_underscore():
    """A table's top-level fields never start with _ (system fields are Eddy's)."""
    invalid(lambda: define_table({"_id": v.string()}))


def test_validate_document_normalizes_and_passes_system_fields():
    """A matching document comes back normalized; _id and _creationTime pass through."""
    schema = chat_schema()
    document = {"_id": "x", "_creationTime": 1.5, "channel": CHANNEL_ID, "body": "hi",
                "author": {"name": "a", "age": 30}}
    checked = schema.validate_document("messages", document, resolve_table=resolve)
    assert checked["author"]["age"] == 30.0 and type(checked["author"]["age"]) is float
    assert checked["_id"] == "x" and checked["_creationTime"] == 1.5


def test_validate_document_names_table_and_path():
    """A violation is SCHEMA_VIOLATION naming the table, field path, expected and actual type."""
    schema = chat_schema()
    with pytest.raises(ValidationError) as caught:
        schema.validate_document("messages", {"channel": CHANNEL_ID, "body": 5,
                                              "author": {"name": "a"}})
    error = caught.value
    assert error.code == ErrorCode.SCHEMA_VIOLATION
    assert str(error) == ('Document in table "messages" does not match the schema: Value '
                          "does not match validator. Path: .body. Expected: v.string(). "
                          "Got: 5 (int64)")


def test_validate_document_checks_id_tables():
    """An id of another table in a v.id field is WRONG_TABLE_ID when ids can be resolved."""
    schema = chat_schema()
    document = {"channel": USER_ID, "body": "x", "author": {"name": "a"}}
    schema.validate_document("messages", document)
    with pytest.raises(EddyError) as caught:
        schema.validate_document("messages", document, resolve_table=resolve)
    assert caught.value.code == ErrorCode.WRONG_TABLE_ID
    assert 'table "messages"' in caught.value.message


def test_unknown_tables_and_disabled_validation():
    """A table outside the schema is a violation, unless schema_validation=False turns checks off."""
    with pytest.raises(EddyError) as caught:
        chat_schema().validate_document("other", {"a": 1})
    assert caught.value.code == ErrorCode.SCHEMA_VIOLATION
    loose = chat_schema(schema_validation=False)
    assert loose.validate_document("other", {"a": 1}) == {"a": 1}
    assert loose.validate_document("messages", {"body": 1}) == {"body": 1}
    assert chat_schema().validate_document("_storage", {"sha256": "x"}) == {"sha256": "x"}


def test_field_validator_lookup():
    """field_validator follows dotted paths, unwraps optional, knows system fields."""
    schema = chat_schema()
    assert schema.field_validator("messages", "channel") == v.id("channels")
    assert schema.field_validator("messages", "author.age") == v.number()
    assert schema.field_validator("messages", "tags") == v.array(v.string())
    assert schema.field_validator("messages", "_creationTime") == v.number()
    assert schema.field_validator("messages", "_id") == v.id("messages")
    assert schema.field_validator("messages", "nope") is None
    assert schema.field_validator("nope", "x") is None


def test_field_validator_in_unions():
    """Across a union of objects, one shared validator comes back as is, differing ones as a union."""
    schema = define_schema({"t": define_table(v.union(
        v.object({"k": v.literal("a"), "x": v.number(), "same": v.string()}),
        v.object({"k": v.literal("b"), "x": v.string(), "same": v.string()})))})
    assert schema.field_validator("t", "same") == v.string()
    assert schema.field_validator("t", "x") == v.union(v.number(), v.string())


def test_coerce_index_value_follows_the_field():
    """An int becomes a float where the field takes numbers, stays an int where it takes int64."""
    schema = define_schema({"t": define_table({
        "n": v.number(), "maybe": v.optional(v.union(v.number(), v.null())),
        "i": v.int64(), "either": v.union(v.int64(), v.number()), "s": v.string()})})
    assert type(schema.coerce_index_value("t", "n", 3)) is float
    assert type(schema.coerce_index_value("t", "maybe", 3)) is float
    assert type(schema.coerce_index_value("t", "i", 3)) is int
    assert type(schema.coerce_index_value("t", "either", 3)) is int
    assert type(schema.coerce_index_value("t", "s", 3)) is int
    assert type(schema.coerce_index_value("t", "unknown", 3)) is int
    assert schema.coerce_index_value("t", "n", True) is True
    assert schema.coerce_index_value("t", "n", "x") == "x"


def test_validator_kind_names_the_type():
    """Validators carry a short kind, with number and float64 spelled as written."""
    assert (v.number().kind, v.float64().kind, v.int64().kind) == ("number", "float64", "int64")
    assert (v.id("t").kind, v.optional(v.string()).kind) == ("id", "optional")


def test_fingerprint_is_stable_and_sensitive():
    """Equal schemas share a fingerprint; any declaration change alters it."""
    assert chat_schema().fingerprint() == chat_schema().fingerprint()
    assert chat_schema().fingerprint() != chat_schema(schema_validation=False).fingerprint()
    changed = chat_schema()
    changed.tables["channels"].index("by_name_2", ["name"])
    assert changed.fingerprint() != chat_schema().fingerprint()


def test_to_json_shape():
    """to_json lists tables sorted with indexes and document types in Convex's shape."""
    data = chat_schema().to_json()
    assert [t["tableName"] for t in data["tables"]] == ["channels", "messages"]
    channels = data["tables"][0]
    assert channels["indexes"] == [{"indexDescriptor": "by_name", "fields": ["name"]}]
    assert channels["documentType"]["type"] == "object"
    assert data["tables"][1]["vectorIndexes"] == [
        {"indexDescriptor": "by_tags", "vectorField": "tags", "dimensions": 3,
         "filterFields": []}]
    assert data["schemaValidation"] is True
