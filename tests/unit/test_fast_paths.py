"""The fast paths of the write path agree with the full checks they stand in for.

Document checks (`Schema.check_document`), argument checks
(`functions.check_flat_args`) and id generation take shortcuts for the common
case; each test here draws inputs near and across the edges of those
shortcuts and proves the answer, or the error, is the full path's.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import limits, values
from engine.catalog import Catalog
from engine.errors import EddyError
from engine.functions import check_flat_args, mutation, validate_args
from engine.ids import encode_id, encode_ids, ids_per_encode_max
from engine.schema import define_schema, define_table
from engine.transaction import Transaction, _ids_prefix
from engine.validators import v
from engine.world import split_seed

FIELDS = {
    "key": v.string(),
    "group": v.optional(v.string()),
    "score": v.number(),
    "n": v.optional(v.int64()),
    "flag": v.optional(v.boolean()),
    "blob": v.optional(v.bytes()),
    "nothing": v.optional(v.null()),
    "tags": v.optional(v.array(v.string())),
}

SCHEMA = define_schema({"items": define_table(FIELDS), "loose": define_table({"x": v.any()})})

names = st.sampled_from(["key", "group", "score", "n", "flag", "blob", "nothing", "tags",
                         "extra", "_id", "$bad", "x" * (limits.field_name_chars_max + 1)])
scalars = st.one_of(
    st.text(max_size=8), st.sampled_from(["é", "\ud800", "a" * 20]),
    st.floats(allow_nan=True), st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, -(2**63), 2**63]), st.booleans(), st.none(),
    st.binary(max_size=4), st.lists(st.text(max_size=3), max_size=2), st.tuples(st.integers()))
documents = st.dictionaries(names, scalars, max_size=8)


def full_document_check(table: str, fields):
    """What `check_document` must agree with: the two checks it replaces, in order."""
    size = values.check_document_fields(fields)
    return SCHEMA.validate_document(table, fields, None), size


def outcome(check, *args):
    try:
        return "ok", check(*args)
    except EddyError as error:
        return "error", (error.code, error.message, error.details)


@settings(max_examples=400)
@given(documents, st.sampled_from(["items", "loose"]))
def test_check_document_agrees_with_the_full_checks(fields, table):
    """Same normalized fields and size, or the same error, as values + schema checks."""
    assert outcome(SCHEMA.check_document, table, fields) == outcome(full_document_check,
                                                                    table, fields)


def test_check_document_takes_the_fast_path_for_flat_documents():
    """A flat document of the right types comes back as is, with the full check's size."""
    fields = {"key": "k", "score": 1.5, "n": 3, "flag": True, "blob": b"ab", "nothing": None}
    checked, size = SCHEMA.check_document("items", fields)
    assert checked is fields
    assert size == values.check_document_fields(fields)


def test_check_document_refuses_oversized_flat_documents():
    """A flat document over the size limit gets the full check's error."""
    fields = {"key": "k" * limits.document_bytes_max, "score": 1.0}
    assert outcome(SCHEMA.check_document, "items", fields) == outcome(full_document_check,
                                                                      "items", fields)
    assert outcome(SCHEMA.check_document, "items", fields)[0] == "error"


@mutation(args=FIELDS)
async def _flat(ctx, **args):
    return None


@settings(max_examples=400)
@given(st.dictionaries(names, scalars, max_size=8))
def test_check_flat_args_agrees_with_the_full_checks(args):
    """When the fast path answers, the full checks accept the same args and agree."""
    fast = check_flat_args(_flat, args)
    if fast is None:
        return
    assert fast is not args
    assert values.check_value(args) <= limits.value_bytes_max
    assert fast == validate_args(_flat, args)


def test_check_flat_args_declines_what_needs_the_full_checks():
    """Coercions, nested values and bad strings are left to the full checks."""
    assert check_flat_args(_flat, {"key": "k", "score": 1}) is None  # int -> float
    assert check_flat_args(_flat, {"key": "k", "score": 1.0, "tags": []}) is None
    assert check_flat_args(_flat, {"key": "\ud800", "score": 1.0}) is None
    assert check_flat_args(_flat, {"score": 1.0}) is None  # missing "key"
    assert check_flat_args(_flat, {"key": "k", "score": 1.0}) == {"key": "k", "score": 1.0}


@given(st.integers(-(2**70), 2**70))
def test_ids_prefix_is_split_seed(seed):
    """The ids' prefix is split_seed(seed, "ids"), whose output logged commits depend on."""
    assert _ids_prefix(seed) == split_seed(seed, "ids").to_bytes(8, "big")


def test_new_ids_from_a_seed_are_pinned():
    """A seed gives the ids it gave before the fast id path (re-runs of old logs match)."""
    txn = Transaction(Catalog(), 0, writable=True, seed=20261125, now_ms=1.5)
    assert [txn.insert("notes", {"n": i}) for i in range(3)] == [
        "j571tb3bpkxgax2wqtz6ghg8ak1eghzs", "j572cb0gydrgasyebw7hj7x6wcy3x26v",
        "j578xjwzs464yh2tas75eq3fwf6gy7m9"]
    txn = Transaction(Catalog(), 0, writable=True, seed=-7, now_ms=1.5)
    assert [txn.insert("notes", {"n": i}) for i in range(2)] == [
        "j57cyjjwkrb9f5pam5xbbwxq4xf95419", "j57dz9vhy1ps94rfqsnzjxvvh2r21n9y"]


def test_a_failed_insert_does_not_move_the_ids():
    """An insert refused by its checks draws no id, so the next insert's id is unchanged."""
    schema = define_schema({"notes": define_table({"n": v.int64()})})
    plain = Transaction(Catalog(), 0, writable=True, seed=5, now_ms=1.0, schema=schema)
    failing = Transaction(Catalog(), 0, writable=True, seed=5, now_ms=1.0, schema=schema)
    with pytest.raises(EddyError):
        failing.insert("notes", {"n": "not an int"})
    assert failing.insert("notes", {"n": 1}) == plain.insert("notes", {"n": 1})


def reference_ids(seed: int, tables: list[int]) -> list[str]:
    """The ids a transaction's inserts get, one by one from the definition:
    the k-th is blake2b(split_seed(seed, "ids") || k), in its table."""
    prefix = split_seed(seed, "ids").to_bytes(8, "big")
    return [encode_id(number, hashlib.blake2b(prefix + k.to_bytes(4, "big"),
                                              digest_size=16).digest())
            for k, number in enumerate(tables, start=1)]


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["a", "b", "fail"]), max_size=120)
       | st.lists(st.sampled_from(["a", "a", "a", "a", "b", "fail"]), min_size=250, max_size=400),
       st.integers(0, 2**64))
def test_ids_drawn_ahead_are_the_ids_one_by_one(steps, seed):
    """Blocks of ids drawn ahead and encoded together give each insert the id it
    would get alone, across table switches and failed inserts."""
    schema = define_schema({"a": define_table({"n": v.int64()}),
                            "b": define_table({"n": v.int64()})})
    catalog = Catalog()
    txn = Transaction(catalog, 0, writable=True, seed=seed, now_ms=1.0, schema=schema)
    made, tables = [], []
    for step in steps:
        if step == "fail":
            with pytest.raises(EddyError):
                txn.insert("a", {"n": "not an int"})
            continue
        made.append(txn.insert(step, {"n": 1}))
        tables.append(catalog.numbers[step])
    assert made == reference_ids(seed, tables)


@given(st.integers(1, 2**32 - 1) | st.integers(1, 20_000),
       st.lists(st.binary(min_size=16, max_size=16), max_size=ids_per_encode_max))
def test_encode_ids_is_encode_id_of_each(table_number, internal_ids):
    """encode_ids of a block equals encode_id of each internal id."""
    assert encode_ids(table_number, internal_ids) == [
        encode_id(table_number, internal_id) for internal_id in internal_ids]


def test_encode_ids_refuses_an_internal_id_of_another_length():
    """A block with an internal id of 15 or 17 bytes is refused, even when the
    lengths add up to whole ids."""
    with pytest.raises(ValueError):
        encode_ids(5, [bytes(15), bytes(17), bytes(16)])


ITEM = v.object({"key": v.string(), "n": v.optional(v.int64()), "score": v.number()})


@mutation(args={"items": v.array(ITEM), "tag": v.optional(v.string())})
async def _batch(ctx, items, tag=None):
    return None


item_dicts = st.dictionaries(st.sampled_from(["key", "n", "score", "extra", "$x"]), scalars,
                             max_size=4)
batch_args = st.dictionaries(
    st.sampled_from(["items", "tag", "other"]),
    st.one_of(scalars, st.lists(st.one_of(item_dicts, scalars), max_size=4)), max_size=3)


@settings(max_examples=400)
@given(batch_args)
def test_check_flat_args_with_arrays_agrees_with_the_full_checks(args):
    """Arrays of flat objects: when the fast path answers, the full checks agree,
    down to fresh dicts and lists."""
    fast = check_flat_args(_batch, args)
    if fast is None:
        return
    assert values.check_value(args) <= limits.value_bytes_max
    assert fast == validate_args(_batch, args)
    assert all(copy is not original for copy, original in zip(fast["items"], args["items"]))
    assert fast["items"] is not args["items"]


def test_check_flat_args_takes_arrays_of_flat_objects():
    """A batch of flat documents takes the fast path; a bad element sends it to the full one."""
    items = [{"key": "a", "score": 1.0}, {"key": "b", "n": 2, "score": 0.5}]
    assert check_flat_args(_batch, {"items": items}) == {"items": items}
    assert check_flat_args(_batch, {"items": items + [{"key": "c", "score": 1}]}) is None
    assert check_flat_args(_batch, {"tag": "t"}) is None  # "items" is required


def test_a_run_of_inserts_still_meets_the_deadline():
    """Inserts read the clock at the first insert and every
    `inserts_per_deadline_check`th after it: a function past its deadline
    fails within that many inserts, and at once if it had not inserted yet."""
    from engine import transaction as transaction_module
    from engine.errors import ErrorCode

    now = [0]

    def check_deadline():
        if now[0] > 100:
            raise EddyError(ErrorCode.TIMEOUT, "too long")

    schema = define_schema({"a": define_table({"n": v.int64()})})
    txn = Transaction(Catalog(), 0, writable=True, schema=schema, check_deadline=check_deadline)
    txn.insert("a", {"n": 1})
    now[0] = 200
    inserted = 0
    with pytest.raises(EddyError) as caught:
        for _ in range(transaction_module.inserts_per_deadline_check + 1):
            txn.insert("a", {"n": 1})
            inserted += 1
    assert caught.value.code is ErrorCode.TIMEOUT
    assert inserted < transaction_module.inserts_per_deadline_check
    late = Transaction(Catalog(), 0, writable=True, schema=schema, check_deadline=check_deadline)
    with pytest.raises(EddyError):
        late.insert("a", {"n": 1})
