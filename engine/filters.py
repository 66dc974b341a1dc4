"""Filter expressions: Convex's `q.field`, `q.eq`, ... `q.and_`, `q.add`, in Python.

An app writes `.filter(lambda q: q.and_(q.eq(q.field("done"), False),
q.gt(q.field("score"), 10)))`. The lambda runs once, when the query is built,
and returns an `Expression` tree; the tree is then evaluated against each
document the scan reads. Plain Python values anywhere in the tree are literals.

Rules of evaluation, numbered so tests and docs can point at them:

1. `q.field("a.b")` reads `doc["a"]["b"]`; a missing field, or a path through
   something that is not an object, is `keys.UNDEFINED`. `None` is null, not
   undefined: `q.eq(q.field("x"), None)` does not match a document without x;
   `q.eq(q.field("x"), UNDEFINED)` does.
2. Comparisons use Convex's total order across types (`keys.compare`:
   undefined < null < int64 < float64 < bool < str < bytes < array < object),
   with one exception: an int compared with a float compares numerically, so
   `q.eq(q.field("n"), 5)` matches a stored `5.0`. Python apps write `5` where
   JavaScript writes `5.0`, and a query that silently matched nothing would be
   a trap. The exception applies to the two operands themselves, not to
   numbers nested inside arrays or objects. A NaN keeps its place in the
   float64 order.
3. `and_`, `or_` and `not_` treat exactly `True` as true and every other value
   (including undefined) as false, so `q.not_(q.field("archived"))` matches
   documents without the field. A document passes a filter when the whole
   expression evaluates to exactly `True`.
4. Arithmetic takes numbers only (not bools) and raises `INVALID_FILTER`
   otherwise. int with int stays int64 and wraps on overflow like Rust's
   wrapping arithmetic; `div` truncates toward zero and `mod` takes the sign
   of the dividend (JavaScript's BigInt semantics); an int division by zero
   raises. Anything with a float is computed in float64 with IEEE results
   (`1.0 / 0` is infinity, `x % 0.0` is NaN).
5. Python's own operators on expressions (`==`, `<`, `and`, `not`, `if`) are
   refused with `INVALID_FILTER`: they cannot be overloaded into the tree, and
   letting them through would make a filter match everything or nothing.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

from engine import keys
from engine.errors import EddyError, ErrorCode

_INT64_MIN = -(1 << 63)
_INT64_SPAN = 1 << 64
_LITERAL_SCALARS = (type(None), bool, int, float, str, bytes)


def lookup_field(document: dict, path: str) -> Any:
    """The value at a dotted path of a document, or `keys.UNDEFINED` (rule 1).

    Args:
        document: a document or any object value.
        path: field names joined by dots, as in `"author.name"`.
    """
    value: Any = document
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return keys.UNDEFINED
        value = value[name]
    return value


def compare_values(left: Any, right: Any) -> int:
    """Convex's total order, except that an int and a float compare numerically (rule 2).

    Returns:
        A negative number, zero or a positive number, as `left` sorts before,
        equal to or after `right`.
    """
    if _is_number(left) and _is_number(right) and type(left) is not type(right):
        if math.isnan(left) or math.isnan(right):
            # A NaN has no numeric order; keep its place in Convex's float64 order.
            return keys.compare(float(left), float(right))
        return (left > right) - (left < right)
    return keys.compare(left, right)


class Expression:
    """A node of a filter expression tree; see the module docstring for the rules."""

    __slots__ = ()

    def evaluate(self, document: dict) -> Any:
        """The value of this expression for one document."""
        raise NotImplementedError

    def __bool__(self) -> bool:
        raise EddyError(
            ErrorCode.INVALID_FILTER,
            "a filter expression has no Python truth value; combine expressions "
            "with q.and_, q.or_ and q.not_ instead of and/or/not/if",
        )

    def _refuse_operator(self, other: object) -> bool:
        raise EddyError(
            ErrorCode.INVALID_FILTER,
            "Python comparison operators do not build filters; use q.eq, q.neq, "
            "q.lt, q.lte, q.gt or q.gte",
        )

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse_operator
    __hash__ = object.__hash__


class _Field(Expression):
    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def evaluate(self, document: dict) -> Any:
        return lookup_field(document, self.path)

    def __repr__(self) -> str:
        return f"field({self.path!r})"


class _Literal(Expression):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def evaluate(self, document: dict) -> Any:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


class _Apply(Expression):
    """An operator applied to the values of its operands."""

    __slots__ = ("name", "function", "operands")

    def __init__(self, name: str, function: Callable[..., Any], operands: tuple[Expression, ...]) -> None:
        self.name = name
        self.function = function
        self.operands = operands

    def evaluate(self, document: dict) -> Any:
        return self.function(*(operand.evaluate(document) for operand in self.operands))

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.operands))})"


class _Logic(Expression):
    """`and_` / `or_`: short-circuits, so later operands may assume earlier ones held."""

    __slots__ = ("name", "operands")

    def __init__(self, name: str, operands: tuple[Expression, ...]) -> None:
        self.name = name
        self.operands = operands

    def evaluate(self, document: dict) -> bool:
        if self.name == "and_":
            return all(operand.evaluate(document) is True for operand in self.operands)
        return any(operand.evaluate(document) is True for operand in self.operands)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.operands))})"


def as_expression(value: Any) -> Expression:
    """An expression as is, or a plain value wrapped as a literal.

    Raises:
        EddyError(INVALID_FILTER): the value is not an Eddy value.
    """
    if isinstance(value, Expression):
        return value
    _check_literal(value)
    return _Literal(value)


def _check_literal(value: Any) -> None:
    if value is keys.UNDEFINED or isinstance(value, _LITERAL_SCALARS):
        return
    if isinstance(value, list):
        for item in value:
            _check_literal(item)
        return
    if isinstance(value, dict) and all(isinstance(name, str) for name in value):
        for item in value.values():
            _check_literal(item)
        return
    raise EddyError(
        ErrorCode.INVALID_FILTER,
        f"{type(value).__name__} is not a value a filter can use; use None, bool, "
        "int, float, str, bytes, list, dict or a q.* expression",
    )


class FilterBuilder:
    """The `q` handed to a `.filter` function: Convex's operators in snake_case."""

    def field(self, path: str) -> Expression:
        """The document's value at a dotted path (`keys.UNDEFINED` if missing)."""
        if not isinstance(path, str) or not path or "" in path.split("."):
            raise EddyError(ErrorCode.INVALID_FILTER, f"q.field needs a dotted field path, got {path!r}")
        return _Field(path)

    def eq(self, left: Any, right: Any) -> Expression:
        """True when the operands are equal (rule 2)."""
        return _compare("eq", operator.eq, left, right)

    def neq(self, left: Any, right: Any) -> Expression:
        """True when the operands differ (rule 2)."""
        return _compare("neq", operator.ne, left, right)

    def lt(self, left: Any, right: Any) -> Expression:
        """True when left sorts before right (rule 2)."""
        return _compare("lt", operator.lt, left, right)

    def lte(self, left: Any, right: Any) -> Expression:
        """True when left sorts before or equal to right (rule 2)."""
        return _compare("lte", operator.le, left, right)

    def gt(self, left: Any, right: Any) -> Expression:
        """True when left sorts after right (rule 2)."""
        return _compare("gt", operator.gt, left, right)

    def gte(self, left: Any, right: Any) -> Expression:
        """True when left sorts after or equal to right (rule 2)."""
        return _compare("gte", operator.ge, left, right)

    def and_(self, *operands: Any) -> Expression:
        """True when every operand is exactly True (rule 3); `and_()` is True."""
        return _Logic("and_", tuple(map(as_expression, operands)))

    def or_(self, *operands: Any) -> Expression:
        """True when some operand is exactly True (rule 3); `or_()` is False."""
        return _Logic("or_", tuple(map(as_expression, operands)))

    def not_(self, operand: Any) -> Expression:
        """True when the operand is not exactly True (rule 3)."""
        return _Apply("not_", lambda value: value is not True, (as_expression(operand),))

    def add(self, left: Any, right: Any) -> Expression:
        """left + right (rule 4)."""
        return _arithmetic("add", left, right)

    def sub(self, left: Any, right: Any) -> Expression:
        """left - right (rule 4)."""
        return _arithmetic("sub", left, right)

    def mul(self, left: Any, right: Any) -> Expression:
        """left * right (rule 4)."""
        return _arithmetic("mul", left, right)

    def div(self, left: Any, right: Any) -> Expression:
        """left / right; ints truncate toward zero (rule 4)."""
        return _arithmetic("div", left, right)

    def mod(self, left: Any, right: Any) -> Expression:
        """The remainder of left / right, with the dividend's sign (rule 4)."""
        return _arithmetic("mod", left, right)

    def neg(self, operand: Any) -> Expression:
        """-operand (rule 4)."""
        return _Apply("neg", _negate, (as_expression(operand),))


def compile_filter(function: Callable[[FilterBuilder], Any]) -> Expression:
    """Runs an app's filter function once and returns its expression tree.

    Raises:
        EddyError(INVALID_FILTER): the function returned something that is
            neither an expression nor a value.
    """
    if not callable(function):
        raise EddyError(ErrorCode.INVALID_FILTER, "filter takes a function of q, as in .filter(lambda q: ...)")
    return as_expression(function(FilterBuilder()))


def matches(expression: Expression, document: dict) -> bool:
    """Whether a document passes a filter: the expression is exactly True (rule 3)."""
    return expression.evaluate(document) is True


def _compare(name: str, relation: Callable[[int, int], bool], left: Any, right: Any) -> Expression:
    def apply(left_value: Any, right_value: Any) -> bool:
        return relation(compare_values(left_value, right_value), 0)

    return _Apply(name, apply, (as_expression(left), as_expression(right)))


def _arithmetic(name: str, left: Any, right: Any) -> Expression:
    def apply(left_value: Any, right_value: Any) -> Any:
        _require_number(name, left_value)
        _require_number(name, right_value)
        if isinstance(left_value, int) and isinstance(right_value, int):
            return _wrap_int64(_INT_OPERATIONS[name](name, left_value, right_value))
        return _FLOAT_OPERATIONS[name](float(left_value), float(right_value))

    return _Apply(name, apply, (as_expression(left), as_expression(right)))


def _negate(value: Any) -> Any:
    _require_number("neg", value)
    return _wrap_int64(-value) if isinstance(value, int) else -value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_number(name: str, value: Any) -> None:
    if not _is_number(value):
        raise EddyError(
            ErrorCode.INVALID_FILTER,
            f"q.{name} takes numbers, got {_describe(value)}",
        )


def _describe(value: Any) -> str:
    if value is keys.UNDEFINED:
        return "undefined (a missing field)"
    return f"{type(value).__name__} {value!r}"


def _wrap_int64(value: int) -> int:
    return (value - _INT64_MIN) % _INT64_SPAN + _INT64_MIN


def _int_divide(name: str, left: int, right: int) -> int:
    if right == 0:
        raise EddyError(ErrorCode.INVALID_FILTER, f"q.{name}: integer division by zero")
    quotient = abs(left) // abs(right)
    return quotient if (left < 0) == (right < 0) else -quotient


def _int_remainder(name: str, left: int, right: int) -> int:
    return left - right * _int_divide(name, left, right)


def _float_divide(left: float, right: float) -> float:
    if right != 0:
        return left / right
    if left == 0 or math.isnan(left):
        return math.nan
    return math.copysign(math.inf, left) * math.copysign(1.0, right)


def _float_remainder(left: float, right: float) -> float:
    try:
        return math.fmod(left, right)
    except ValueError:  # fmod refuses a zero divisor and an infinite dividend; IEEE says NaN.
        return math.nan


_INT_OPERATIONS: dict[str, Callable[[str, int, int], int]] = {
    "add": lambda name, left, right: left + right,
    "sub": lambda name, left, right: left - right,
    "mul": lambda name, left, right: left * right,
    "div": _int_divide,
    "mod": _int_remainder,
}

_FLOAT_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": _float_divide,
    "mod": _float_remainder,
}
