"""The batch and generated forms of the flat document check answer exactly as
`values.flat_document_size` does, one document at a time.

`values.flat_documents_size` checks a batch field by field; each test draws
documents near and across the edges of its column tests (every field there
or not, types exactly or nearly right, ASCII or not, ints at the int64
bounds, sizes at the document limit) and compares it with the sum of the
per-document answers.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import limits, values
from engine.validators import v

ITEM = v.object({
    "key": v.string(),
    "group": v.optional(v.string()),
    "n": v.optional(v.int64()),
    "score": v.optional(v.number()),
    "flag": v.optional(v.boolean()),
    "blob": v.optional(v.bytes()),
    "nothing": v.optional(v.null()),
})
PLAN = ITEM.flat_fields(values.is_document_field_name)

near_values = {
    "key": st.one_of(st.text(max_size=6), st.sampled_from(["é", "\ud800"]), st.integers()),
    "group": st.one_of(st.text(max_size=3), st.none()),
    "n": st.one_of(st.integers(-(2**64), 2**64), st.sampled_from([2**63 - 1, -(2**63), 2**63]),
                   st.booleans(), st.floats()),
    "score": st.one_of(st.floats(allow_nan=True), st.integers(-3, 3)),
    "flag": st.one_of(st.booleans(), st.integers(0, 1)),
    "blob": st.one_of(st.binary(max_size=4), st.text(max_size=2)),
    "nothing": st.one_of(st.none(), st.booleans()),
}
exact_values = {
    "key": st.text(alphabet=st.characters(max_codepoint=127), max_size=6),
    "group": st.text(alphabet=st.characters(max_codepoint=127), max_size=3),
    "n": st.integers(-(2**63), 2**63 - 1),
    "score": st.floats(allow_nan=True),
    "flag": st.booleans(),
    "blob": st.binary(max_size=4),
    "nothing": st.none(),
}


@st.composite
def documents(draw):
    """A document of every field (most often), or some of them, or another field too."""
    shape = draw(st.sampled_from(["all", "all", "some", "other"]))
    names = list(PLAN[0])
    if shape == "some":
        names = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    strategies = draw(st.sampled_from([exact_values, exact_values, near_values]))
    document = {name: draw(strategies[name]) for name in names}
    if shape == "other":
        document.pop(draw(st.sampled_from(names)))
        document["extra"] = draw(exact_values["key"])
    return document


def one_at_a_time(batch: list[dict]) -> int | None:
    sizes = [values.flat_document_size(document, *PLAN) for document in batch]
    return None if None in sizes else sum(sizes)


@settings(max_examples=500)
@given(st.lists(documents(), max_size=6))
def test_flat_documents_size_is_the_sum_of_flat_document_size(batch):
    """The batch check's answer is the per-document answers' sum, or None with them."""
    assert values.flat_documents_size(batch, *PLAN) == one_at_a_time(batch)


def test_flat_documents_size_refuses_a_document_over_the_limit():
    """Each document is held to the document limit, not only the batch's total."""
    small = {name: exact for name, exact in zip(PLAN[0], ["k", "g", 1, 1.0, True, b"", None])}
    large = {**small, "key": "k" * limits.document_bytes_max}
    assert values.flat_documents_size([small, small], *PLAN) == 2 * one_at_a_time([small])
    assert values.flat_documents_size([small, large], *PLAN) is None
    halves = [{**small, "key": "k" * (limits.document_bytes_max // 2)}] * 3
    assert values.flat_documents_size(halves, *PLAN) == one_at_a_time(halves)


@settings(max_examples=500)
@given(documents())
def test_flat_document_checker_is_flat_document_size(document):
    """The function written for a plan answers as `flat_document_size` does."""
    check = values.flat_document_checker(*PLAN)
    assert check(document) == values.flat_document_size(document, *PLAN)


@given(st.dictionaries(st.sampled_from(["a", "b", "it's", "_x"]),
                       st.one_of(st.text(max_size=3), st.integers(), st.none()), max_size=3))
def test_flat_document_checker_of_small_plans(fields):
    """Plans of no field, one field and a field name needing quotes are written right."""
    for validator in (v.object({}), v.object({"a": v.string()}),
                      v.object({"it's": v.optional(v.int64()), "a": v.null()})):
        plan = validator.flat_fields(values.is_field_name)
        assert values.flat_document_checker(*plan)(fields) == \
            values.flat_document_size(fields, *plan)
