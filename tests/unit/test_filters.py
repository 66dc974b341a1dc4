"""Filter expressions: every operator, field paths, missing fields, int/float rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import keys
from engine.errors import EddyError, ErrorCode
from engine.filters import (
    FilterBuilder,
    compare_values,
    compile_filter,
    lookup_field,
    matches,
)

q = FilterBuilder()
DOC = {
    "_id": "a1",
    "n": 5,
    "x": 2.5,
    "name": "ada",
    "done": False,
    "flag": True,
    "author": {"name": "bo", "age": 40, "tags": ["x"]},
    "nothing": None,
}


def value_of(expression, document=DOC):
    return compile_filter(lambda _: expression).evaluate(document)


def test_lookup_field_reads_dotted_paths():
    """A dotted path reaches into nested objects."""
    assert lookup_field(DOC, "author.name") == "bo"
    assert lookup_field(DOC, "author.tags") == ["x"]


def test_lookup_field_missing_is_undefined():
    """A missing field, or a path through a non-object, is UNDEFINED, not None."""
    assert lookup_field(DOC, "missing") is keys.UNDEFINED
    assert lookup_field(DOC, "author.missing") is keys.UNDEFINED
    assert lookup_field(DOC, "name.first") is keys.UNDEFINED
    assert lookup_field(DOC, "author.tags.0") is keys.UNDEFINED
    assert lookup_field(DOC, "nothing") is None


@pytest.mark.parametrize(
    "expression, expected",
    [
        (q.eq(q.field("n"), 5), True),
        (q.eq(q.field("n"), 6), False),
        (q.neq(q.field("n"), 6), True),
        (q.neq(q.field("n"), 5), False),
        (q.lt(q.field("n"), 6), True),
        (q.lt(q.field("n"), 5), False),
        (q.lte(q.field("n"), 5), True),
        (q.lte(q.field("n"), 4), False),
        (q.gt(q.field("n"), 4), True),
        (q.gt(q.field("n"), 5), False),
        (q.gte(q.field("n"), 5), True),
        (q.gte(q.field("n"), 6), False),
        (q.eq(q.field("author.name"), "bo"), True),
        (q.gt(q.field("author.age"), q.field("n")), True),
        (q.eq(q.field("author"), {"name": "bo", "age": 40, "tags": ["x"]}), True),
    ],
)
def test_comparison_operators(expression, expected):
    """Each comparison operator gives the expected truth on fields and literals."""
    assert value_of(expression) is expected


def test_comparisons_follow_convex_order_across_types():
    """Across types the order is undefined < null < int < float < bool < str < bytes < array < object."""
    ladder = [keys.UNDEFINED, None, 1, 1.5, False, "a", b"a", [1], {"a": 1}]
    for low, high in zip(ladder, ladder[1:]):
        assert value_of(q.lt(low, high)) is True, (low, high)
        assert value_of(q.gt(high, low)) is True, (low, high)


def test_missing_field_is_undefined_not_null():
    """A missing field equals UNDEFINED and does not equal None; a null field equals None."""
    assert value_of(q.eq(q.field("missing"), keys.UNDEFINED)) is True
    assert value_of(q.eq(q.field("missing"), None)) is False
    assert value_of(q.eq(q.field("nothing"), None)) is True
    assert value_of(q.lt(q.field("missing"), None)) is True


def test_int_and_float_compare_numerically():
    """An int compared with a float compares by number, so 5 matches a stored 5.0."""
    assert value_of(q.eq(q.field("n"), 5.0)) is True
    assert value_of(q.eq(q.field("x"), 2)) is False
    assert value_of(q.lt(q.field("n"), 5.5)) is True
    assert value_of(q.gt(q.field("x"), 2)) is True
    assert value_of(q.lt(q.field("x"), 3)) is True
    assert value_of(q.eq(2**53 + 1, float(2**53))) is False


def test_int_float_rule_is_top_level_only():
    """Numbers nested inside arrays keep Convex's int64 < float64 type order."""
    assert value_of(q.eq([5], [5.0])) is False


def test_nan_keeps_its_place_in_float_order():
    """A NaN compared with an int is ordered as the float64 order places it, not 'unordered'."""
    assert compare_values(1, math.nan) == keys.compare(1.0, math.nan)
    assert value_of(q.eq(math.nan, 1)) is False


@given(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))
def test_int_float_comparison_matches_exact_numeric_order(whole, real):
    """For any int64 and non-NaN float, compare_values agrees with exact numeric comparison."""
    assert compare_values(whole, real) == (whole > real) - (whole < real)
    assert compare_values(real, whole) == (real > whole) - (real < whole)


@given(st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.binary(max_size=3)),
       st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.binary(max_size=3)))
def test_non_numbers_compare_by_keys_order(left, right):
    """Values that are not an int/float pair compare exactly as keys.compare does."""
    assert compare_values(left, right) == keys.compare(left, right)


@pytest.mark.parametrize(
    "expression, expected",
    [
        (q.and_(True, True), True),
        (q.and_(True, False), False),
        (q.and_(), True),
        (q.or_(False, True), True),
        (q.or_(False, False), False),
        (q.or_(), False),
        (q.not_(False), True),
        (q.not_(True), False),
        (q.not_(q.field("missing")), True),
        (q.and_(q.field("flag"), q.field("missing")), False),
        (q.or_(q.field("missing"), q.field("flag")), True),
        (q.and_(q.eq(q.field("name"), "ada"), q.not_(q.field("done"))), True),
    ],
)
def test_logical_operators(expression, expected):
    """and_/or_/not_ treat exactly True as true and anything else as false."""
    assert value_of(expression) is expected


@pytest.mark.parametrize(
    "expression, expected",
    [
        (q.add(q.field("n"), 2), 7),
        (q.sub(q.field("n"), 7), -2),
        (q.mul(q.field("n"), 3), 15),
        (q.div(7, 2), 3),
        (q.div(-7, 2), -3),
        (q.mod(7, 3), 1),
        (q.mod(-7, 3), -1),
        (q.mod(7, -3), 1),
        (q.neg(q.field("n")), -5),
        (q.add(q.field("n"), q.field("x")), 7.5),
        (q.div(q.field("x"), 2), 1.25),
        (q.mod(5.5, 2), 1.5),
        (q.neg(q.field("x")), -2.5),
        (q.add(2**63 - 1, 1), -(2**63)),
        (q.neg(-(2**63)), -(2**63)),
        (q.div(-(2**63), -1), -(2**63)),
        (q.div(1.0, 0), math.inf),
        (q.div(-1, 0.0), -math.inf),
    ],
)
def test_arithmetic_operators(expression, expected):
    """add/sub/mul/div/mod/neg follow int64 (wrapping, truncating) and float64 rules."""
    result = value_of(expression)
    assert result == expected
    assert type(result) is type(expected)


def test_float_nan_results():
    """0.0 / 0 and x % 0.0 are NaN, as IEEE says."""
    assert math.isnan(value_of(q.div(0.0, 0)))
    assert math.isnan(value_of(q.mod(1.5, 0.0)))


def test_arithmetic_in_comparison():
    """Arithmetic results feed comparisons, mixing ints and floats."""
    assert value_of(q.eq(q.mul(q.field("x"), 2), q.field("n"))) is True


@pytest.mark.parametrize(
    "expression",
    [q.add(q.field("name"), 1), q.neg(q.field("missing")), q.mul(True, 2), q.div(1, 0), q.mod(1, 0)],
)
def test_bad_arithmetic_raises_invalid_filter(expression):
    """Arithmetic on a non-number, or an int division by zero, raises INVALID_FILTER."""
    with pytest.raises(EddyError) as error:
        value_of(expression)
    assert error.value.code is ErrorCode.INVALID_FILTER


def test_python_operators_on_expressions_are_refused():
    """==, <, and, not on expressions raise instead of silently building nonsense."""
    for attempt in (lambda: q.field("a") == 1, lambda: q.field("a") < 1,
                    lambda: q.field("a") and q.field("b"), lambda: not q.field("a")):
        with pytest.raises(EddyError) as error:
            attempt()
        assert error.value.code is ErrorCode.INVALID_FILTER


@pytest.mark.parametrize("path", ["", "a..b", ".a", 3])
def test_bad_field_paths_are_refused(path):
    """q.field needs a non-empty dotted path with no empty segment."""
    with pytest.raises(EddyError) as error:
        q.field(path)
    assert error.value.code is ErrorCode.INVALID_FILTER


def test_non_values_are_refused_as_literals():
    """A literal that is not an Eddy value (a set, an object) is refused when the filter is built."""
    for literal in ({1}, object(), [q.field("a")], {1: "a"}):
        with pytest.raises(EddyError) as error:
            q.eq(q.field("a"), literal)
        assert error.value.code is ErrorCode.INVALID_FILTER


def test_compile_filter_accepts_plain_values_and_needs_a_function():
    """A filter function may return a plain bool; a non-function filter is refused."""
    assert matches(compile_filter(lambda q: True), DOC)
    assert not matches(compile_filter(lambda q: False), DOC)
    assert not matches(compile_filter(lambda q: q.field("n")), DOC)
    with pytest.raises(EddyError) as error:
        compile_filter(True)
    assert error.value.code is ErrorCode.INVALID_FILTER


def test_expressions_print_readably():
    """An expression's repr shows the operator tree, for error messages and debugging."""
    assert repr(q.and_(q.eq(q.field("a"), 1), q.not_(True))) == "and_(eq(field('a'), 1), not_(True))"
