"""Validators: the `v` namespace app authors use for args, returns and schemas.

Convex's validators in snake_case: `v.string()`, `v.number()` (alias
`v.float64()`), `v.int64()`, `v.boolean()`, `v.null()`, `v.id(table)`,
`v.array(item)`, `v.object({...})`, `v.record(keys, values)`,
`v.union(*members)`, `v.literal(value)`, `v.optional(inner)`, `v.any()`,
`v.bytes()`.

Every validator has three faces:

- `check(value, path="", resolve_table=None, code=ErrorCode.INVALID_ARGS)`
  returns the value normalized (a Python `int` checked by `v.number()` comes
  back as a `float`; everything else comes back equal to what went in, in fresh
  lists and dicts) or raises `ValidationError`.
- `describe()`: a Python-like expression, `v.id("channels")`, used in messages.
- `to_json()`: Convex's validator JSON (`{"type": "id", "tableName": ...}`).

Rules worth knowing:

1. The error code is the caller's: `check` takes `code` (INVALID_ARGS for
   arguments, INVALID_RETURN for return values, SCHEMA_VIOLATION for
   documents). One exception: `v.id` reports a string that is not an id as
   INVALID_ID and an id of another table as WRONG_TABLE_ID, whatever `code`
   says, because those are the more useful codes. Inside a union the union's
   own failure is reported, with the caller's code.
2. Python has no `undefined`: an optional field is either absent from the
   dict or holds a value its inner validator accepts. `None` is null, so
   `v.optional(v.string())` rejects `{"f": None}`.
3. A union tries its members in order, first without the int -> float
   coercion and then with it, so `v.union(v.number(), v.int64())` keeps `5`
   an int64 while `v.number()` alone turns it into `5.0`.
4. `v.literal(1)` is an int64 literal (an `int` is int64 in Eddy's value
   model); write `v.literal(1.0)` for a number literal, which also accepts
   the int `1` and returns `1.0`.
5. Misusing a constructor (`v.array("x")`, `v.optional` outside an object)
   raises EddyError(SCHEMA_INVALID) when the app is loaded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from engine import limits, values
from engine.errors import EddyError, ErrorCode

# Table number -> table name, or None when the number names no table.
ResolveTable = Callable[[int], Optional[str]]

PREVIEW_CHARS_MAX = 80  # Enough to recognise a value in a message, short enough for one line.
EXPECTED_CHARS_MAX = 300  # A big v.object(...) description is cut here in messages.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_IDENTIFIER_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ValidationError(EddyError):
    """A value did not match a validator.

    Attributes:
        path: where in the value, `.channel` or `.items[3].name` ("" for the top).
        expected: the validator's `describe()`.
        got: a short preview of the value and its type, `5 (float64)`.
    """

    def __init__(self, code: ErrorCode, message: str, *, path: str, expected: str,
                 got: str) -> None:
        super().__init__(code, message, path=path, expected=expected, got=got)
        self.path = path
        self.expected = expected
        self.got = got


class _Context:
    """What a check carries down the value: the lookup, the code, the coercion.

    Never changed after it is made. A plain class with slots rather than a
    frozen dataclass, because one is made per `check` call and a frozen
    dataclass's __init__ costs as much as checking a small document.
    """

    __slots__ = ("resolve_table", "code", "coerce_ints")

    def __init__(self, resolve_table: ResolveTable | None, code: ErrorCode,
                 coerce_ints: bool) -> None:
        self.resolve_table = resolve_table
        self.code = code
        self.coerce_ints = coerce_ints


class Validator:
    """The base of every validator; see the module docstring."""

    is_optional: ClassVar[bool] = False
    # A short name for the validator's type: "string", "number" or "float64"
    # (as spelled), "int64", "id", "object", "optional", "union", ...
    kind: ClassVar[str] = ""

    def check(self, value: Any, path: str = "", resolve_table: ResolveTable | None = None,
              code: ErrorCode = ErrorCode.INVALID_ARGS) -> Any:
        """Checks a value and returns it normalized.

        Args:
            value: the value to check (any Python object).
            path: where the value sits, prefixed to paths in messages.
            resolve_table: maps a table number to its table name (or None);
                when given, `v.id(table)` also checks the id's table.
            code: the ErrorCode of a mismatch (see rule 1 of the module docstring).

        Returns:
            The value, with ints checked by `v.number()` turned into floats.

        Raises:
            ValidationError: naming the path, the expected and the actual type.
        """
        return self._check(value, path, _Context(resolve_table, code, coerce_ints=True))

    def _check(self, value: Any, path: str, ctx: _Context) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """A Python-like expression for this validator, e.g. `v.id("channels")`."""
        raise NotImplementedError

    def to_json(self) -> dict:
        """Convex's JSON form of this validator, e.g. `{"type": "string"}`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()


# ------------------------------------------------------------------ leaves


@dataclass(frozen=True, repr=False)
class VString(Validator):
    kind: ClassVar[str] = "string"

    def _check(self, value, path, ctx):
        if type(value) is not str:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return "v.string()"

    def to_json(self):
        return {"type": "string"}


@dataclass(frozen=True, repr=False)
class VFloat64(Validator):
    """`v.number()` or `v.float64()` (same check; `name` keeps the spelling)."""

    name: str = "number"

    @property
    def kind(self) -> str:
        return self.name

    def _check(self, value, path, ctx):
        value_type = type(value)
        if value_type is float:
            return value
        if value_type is int and ctx.coerce_ints:
            try:
                return float(value)
            except OverflowError:
                pass
        raise _mismatch(self, value, path, ctx)

    def describe(self):
        return f"v.{self.name}()"

    def to_json(self):
        return {"type": "number"}


@dataclass(frozen=True, repr=False)
class VInt64(Validator):
    kind: ClassVar[str] = "int64"

    def _check(self, value, path, ctx):
        if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return "v.int64()"

    def to_json(self):
        return {"type": "bigint"}


@dataclass(frozen=True, repr=False)
class VBoolean(Validator):
    kind: ClassVar[str] = "boolean"

    def _check(self, value, path, ctx):
        if type(value) is not bool:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return "v.boolean()"

    def to_json(self):
        return {"type": "boolean"}


@dataclass(frozen=True, repr=False)
class VNull(Validator):
    kind: ClassVar[str] = "null"

    def _check(self, value, path, ctx):
        if value is not None:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return "v.null()"

    def to_json(self):
        return {"type": "null"}


@dataclass(frozen=True, repr=False)
class VBytes(Validator):
    kind: ClassVar[str] = "bytes"

    def _check(self, value, path, ctx):
        if type(value) is not bytes:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return "v.bytes()"

    def to_json(self):
        return {"type": "bytes"}


@dataclass(frozen=True, repr=False)
class VAny(Validator):
    """Accepts any value unchanged (values are checked at the boundary, not here)."""

    kind: ClassVar[str] = "any"

    def _check(self, value, path, ctx):
        return value

    def describe(self):
        return "v.any()"

    def to_json(self):
        return {"type": "any"}


@dataclass(frozen=True, repr=False)
class VLiteral(Validator):
    kind: ClassVar[str] = "literal"

    value: Any

    def __post_init__(self):
        value_type = type(self.value)
        if value_type not in (str, int, float, bool):
            _invalid(f"v.literal() takes a str, int, float or bool, not {value_type.__name__}")
        if value_type is float and not math.isfinite(self.value):
            _invalid("v.literal() takes a finite float")
        if value_type is int and not INT64_MIN <= self.value <= INT64_MAX:
            _invalid("v.literal() takes an int that fits in int64")

    def _check(self, value, path, ctx):
        expected_type = type(self.value)
        value_type = type(value)
        if value_type is int and expected_type is float and ctx.coerce_ints:
            value, value_type = float(value), float
        if value_type is not expected_type or value != self.value:
            raise _mismatch(self, value, path, ctx)
        return value

    def describe(self):
        return f"v.literal({_literal_text(self.value)})"

    def to_json(self):
        from engine.values import to_convex_json  # Lazy: values is a sibling core.

        return {"type": "literal", "value": to_convex_json(self.value)}


@dataclass(frozen=True, repr=False)
class VId(Validator):
    kind: ClassVar[str] = "id"

    table: str

    def __post_init__(self):
        if type(self.table) is not str or not self.table:
            _invalid(f"v.id() takes a table name, not {self.table!r}")

    def _check(self, value, path, ctx):
        if type(value) is not str:
            raise _mismatch(self, value, path, ctx)
        from engine.ids import decode_id  # Lazy: ids is a sibling core.

        try:
            table_number, _ = decode_id(value)
        except EddyError:
            raise _mismatch(self, value, path, ctx, code=ErrorCode.INVALID_ID,
                            note="not a valid id") from None
        if ctx.resolve_table is not None:
            actual = ctx.resolve_table(table_number)
            if actual != self.table:
                note = (f'id of table "{actual}"' if actual is not None
                        else "id of an unknown table")
                raise _mismatch(self, value, path, ctx, code=ErrorCode.WRONG_TABLE_ID,
                                note=note)
        return value

    def describe(self):
        return f"v.id({json.dumps(self.table)})"

    def to_json(self):
        return {"type": "id", "tableName": self.table}


# -------------------------------------------------------------- compounds


@dataclass(frozen=True, repr=False)
class VOptional(Validator):
    """An object field that may be absent. Checks like its inner validator."""

    inner: Validator
    is_optional: ClassVar[bool] = True
    kind: ClassVar[str] = "optional"

    def __post_init__(self):
        _require_validator(self.inner, "v.optional()")
        if self.inner.is_optional:
            _invalid("v.optional(v.optional(...)) is not allowed")

    def _check(self, value, path, ctx):
        return self.inner._check(value, path, ctx)

    def describe(self):
        return f"v.optional({self.inner.describe()})"

    def to_json(self):
        return self.inner.to_json()


@dataclass(frozen=True, repr=False)
class VArray(Validator):
    kind: ClassVar[str] = "array"

    item: Validator

    def __post_init__(self):
        _require_validator(self.item, "v.array()", allow_optional=False)

    def _check(self, value, path, ctx):
        if type(value) is not list:
            raise _mismatch(self, value, path, ctx)
        check = self.item._check
        try:
            # A path is only read by an error message, and making one per
            # element costs as much as checking a small object: check
            # without paths first, and again with them if something fails.
            return [check(item, _UNKNOWN_PATH, ctx) for item in value]
        except ValidationError:
            return [check(item, _Path(path, i, True), ctx) for i, item in enumerate(value)]

    def describe(self):
        return f"v.array({self.item.describe()})"

    def to_json(self):
        return {"type": "array", "value": self.item.to_json()}


@dataclass(frozen=True, repr=False, eq=True)
class VObject(Validator):
    """An object with exactly these fields (optional ones may be absent)."""

    kind: ClassVar[str] = "object"
    fields: dict

    def __post_init__(self):
        if not isinstance(self.fields, dict):
            _invalid(f"v.object() takes a dict of validators, not {type(self.fields).__name__}")
        for name, field in self.fields.items():
            if type(name) is not str or not name or name.startswith("$"):
                _invalid(f"v.object() field name {name!r} must be a non-empty str "
                         "not starting with '$'")
            _require_validator(field, f"v.object() field {name!r}", allow_optional=True)
        # Tables for the happy path of `_check`, made once here because
        # documents and arguments are mostly flat objects of scalars, where
        # one type test per field is the whole check. Not dataclass fields,
        # so equality and repr still see `fields` only.
        object.__setattr__(self, "_exact_types", {
            name: _exact_type(field) for name, field in self.fields.items()})
        object.__setattr__(self, "_required", frozenset(
            name for name, field in self.fields.items() if not field.is_optional))

    __hash__ = None  # A dict of fields: compared by value, never hashed.

    def flat_fields(self, name_allowed: Callable[[str], bool]) -> tuple:
        """What `values.flat_document_size` needs to check flat objects for
        this validator: (field name -> type, required field names, and
        `values.flat_field_bytes` of those types) for the fields whose whole
        check is one exact type (see `_exact_type`) and whose names pass
        `name_allowed`; or () when no flat object could pass (a required
        field of another kind) or there are too many fields.
        """
        field_types = {name: kind for name, kind in self._exact_types.items()
                       if kind is not None and name_allowed(name)}
        if not self._required <= field_types.keys() or \
                len(field_types) > limits.document_user_fields_max:
            return ()
        return (field_types, self._required, *values.flat_field_bytes(field_types))

    def _check(self, value, path, ctx):
        if type(value) is not dict:
            raise _mismatch(self, value, path, ctx)
        # The happy path of flat objects: every field's validator is one
        # exact type (see `_exact_type`), so one type test per field is the
        # whole check and the answer is a plain copy. Anything else, including
        # every failure, takes `_check_fields`, which names the problem.
        exact_types = self._exact_types
        for key, item in value.items():
            item_type = type(item)
            if item_type is not exact_types.get(key) or (
                    item_type is int and not INT64_MIN <= item <= INT64_MAX):
                return self._check_fields(value, path, ctx)
        # Every key is a field; if there are as many keys as fields, all are there.
        if len(value) != len(exact_types) and not value.keys() >= self._required:
            return self._check_fields(value, path, ctx)
        return value.copy()

    def _check_fields(self, value: dict, path, ctx: _Context) -> dict:
        """The full check of an object field by field (`_check` after its fast path)."""
        exact_types = self._exact_types
        normalized = {}
        for key, item in value.items():
            # A field whose validator is one exact type needs no call and no
            # path; anything else takes the full check.
            item_type = type(item)
            if item_type is exact_types.get(key) and (
                    item_type is not int or INT64_MIN <= item <= INT64_MAX):
                normalized[key] = item
                continue
            field = self.fields.get(key)
            field_path = _field_path(path, key)
            if field is None:
                raise _extra_field(key, field_path, item, ctx)
            normalized[key] = field._check(item, field_path, ctx)
        if not value.keys() >= self._required:
            for key, field in self.fields.items():
                if key not in value and not field.is_optional:
                    raise _missing_field(key, field, _field_path(path, key), ctx)
        return normalized

    def describe(self):
        inner = ", ".join(f"{json.dumps(k)}: {f.describe()}" for k, f in self.fields.items())
        return f"v.object({{{inner}}})"

    def to_json(self):
        return {"type": "object", "value": {
            name: {"fieldType": field.to_json(), "optional": field.is_optional}
            for name, field in self.fields.items()}}


@dataclass(frozen=True, repr=False)
class VRecord(Validator):
    """An object whose keys all match `keys` and values all match `values`."""

    kind: ClassVar[str] = "record"

    keys: Validator
    values: Validator

    def __post_init__(self):
        _require_validator(self.keys, "v.record() keys", allow_optional=False)
        _require_validator(self.values, "v.record() values", allow_optional=False)
        if not _is_string_like(self.keys):
            _invalid("v.record() keys must be v.string(), v.id(...), a string literal "
                     f"or a union of those, not {self.keys.describe()}")

    def _check(self, value, path, ctx):
        if type(value) is not dict:
            raise _mismatch(self, value, path, ctx)
        normalized = {}
        for key, item in value.items():
            field_path = _field_path(path, key)
            checked_key = self.keys._check(key, field_path, ctx)
            normalized[checked_key] = self.values._check(item, field_path, ctx)
        return normalized

    def describe(self):
        return f"v.record({self.keys.describe()}, {self.values.describe()})"

    def to_json(self):
        return {"type": "record", "keys": self.keys.to_json(),
                "values": {"fieldType": self.values.to_json(), "optional": False}}


@dataclass(frozen=True, repr=False)
class VUnion(Validator):
    kind: ClassVar[str] = "union"

    members: tuple

    def __post_init__(self):
        for member in self.members:
            _require_validator(member, "v.union() member", allow_optional=False)

    def _check(self, value, path, ctx):
        # Rule 3: exact matches win over int -> float coercions.
        passes = [False, True] if ctx.coerce_ints else [False]
        for coerce in passes:
            member_ctx = _Context(ctx.resolve_table, ctx.code, coerce)
            for member in self.members:
                try:
                    return member._check(value, path, member_ctx)
                except ValidationError:
                    continue
        raise _mismatch(self, value, path, ctx)

    def describe(self):
        return f"v.union({', '.join(m.describe() for m in self.members)})"

    def to_json(self):
        return {"type": "union", "value": [m.to_json() for m in self.members]}


# -------------------------------------------------------------- namespace


class _Namespace:
    """The `v` namespace: one constructor per validator (see module docstring)."""

    @staticmethod
    def string() -> VString:
        return VString()

    @staticmethod
    def number() -> VFloat64:
        return VFloat64("number")

    @staticmethod
    def float64() -> VFloat64:
        return VFloat64("float64")

    @staticmethod
    def int64() -> VInt64:
        return VInt64()

    @staticmethod
    def boolean() -> VBoolean:
        return VBoolean()

    @staticmethod
    def null() -> VNull:
        return VNull()

    @staticmethod
    def bytes() -> VBytes:
        return VBytes()

    @staticmethod
    def any() -> VAny:
        return VAny()

    @staticmethod
    def id(table: str) -> VId:
        return VId(table)

    @staticmethod
    def literal(value: Any) -> VLiteral:
        return VLiteral(value)

    @staticmethod
    def array(item: Validator) -> VArray:
        return VArray(item)

    @staticmethod
    def object(fields: dict) -> VObject:
        return VObject(dict(fields) if isinstance(fields, dict) else fields)

    @staticmethod
    def record(keys: Validator, values: Validator) -> VRecord:
        return VRecord(keys, values)

    @staticmethod
    def union(*members: Validator) -> VUnion:
        return VUnion(tuple(members))

    @staticmethod
    def optional(inner: Validator) -> VOptional:
        return VOptional(inner)


v = _Namespace()

# ----------------------------------------------------------------- helpers


def _invalid(message: str):
    raise EddyError(ErrorCode.SCHEMA_INVALID, f"Invalid validator: {message}")


def _require_validator(candidate: Any, where: str, allow_optional: bool = True) -> None:
    if not isinstance(candidate, Validator):
        hint = " (call it: v.string())" if callable(candidate) else ""
        _invalid(f"{where} takes a validator, not {candidate!r}{hint}")
    if candidate.is_optional and not allow_optional:
        _invalid(f"{where} cannot be v.optional(...): only object fields are optional")


def _exact_type(validator: Validator) -> type | None:
    """The one Python type a validator accepts unchanged, if that type is
    the whole check (an int also needs the int64 range), else None.

    `v.number()` maps to float only: an int it accepts comes back a float,
    so ints take the full check.
    """
    if isinstance(validator, VOptional):
        validator = validator.inner
    return _EXACT_TYPES.get(type(validator))


_EXACT_TYPES = {VString: str, VFloat64: float, VInt64: int, VBoolean: bool, VBytes: bytes,
                VNull: type(None)}


def _is_string_like(validator: Validator) -> bool:
    if isinstance(validator, (VString, VId)):
        return True
    if isinstance(validator, VLiteral):
        return type(validator.value) is str
    if isinstance(validator, VUnion):
        return all(_is_string_like(m) for m in validator.members)
    return False


class _Path:
    """A path into a value, rendered only when an error needs it: building
    path strings for every field of every valid document costs more than
    checking them."""

    __slots__ = ("parent", "key", "is_index")

    def __init__(self, parent, key, is_index: bool = False) -> None:
        self.parent = parent
        self.key = key
        self.is_index = is_index

    def __str__(self) -> str:
        key = self.key
        if self.is_index:
            return f"{self.parent}[{key}]"
        if isinstance(key, str) and _IDENTIFIER_LIKE.match(key):
            return f"{self.parent}.{key}"
        return f"{self.parent}[{_preview(key)}]"

    def __bool__(self) -> bool:
        return True


_UNKNOWN_PATH = "?"  # Stands in for a path that no message will show.


def _field_path(path, key: Any) -> "_Path":
    return _Path(path, key)


def _literal_text(value: Any) -> str:
    return json.dumps(value) if type(value) is str else repr(value)


def _type_of(value: Any) -> str:
    from engine.values import type_name  # Lazy: values is a sibling core.

    try:
        return type_name(value)
    except EddyError:
        return f"Python {type(value).__name__}"


def _preview(value: Any) -> str:
    value_type = type(value)
    if value_type is str:
        text = json.dumps(value)
    elif value_type is float and value.is_integer() and abs(value) < 1e16:
        text = str(int(value))
    else:
        text = repr(value)
    if len(text) > PREVIEW_CHARS_MAX:
        text = text[: PREVIEW_CHARS_MAX - 3] + "..."
    return text


def _shorten(text: str) -> str:
    if len(text) > EXPECTED_CHARS_MAX:
        return text[: EXPECTED_CHARS_MAX - 3] + "..."
    return text


def _mismatch(validator: Validator, value: Any, path: str, ctx: _Context, *,
              code: ErrorCode | None = None, note: str | None = None) -> ValidationError:
    expected = _shorten(validator.describe())
    got = f"{_preview(value)} ({note or _type_of(value)})"
    where = f" Path: {path}." if path else ""
    message = f"Value does not match validator.{where} Expected: {expected}. Got: {got}"
    return ValidationError(code or ctx.code, message, path=str(path), expected=expected, got=got)


def _extra_field(key: str, path: str, value: Any, ctx: _Context) -> ValidationError:
    got = f"{_preview(value)} ({_type_of(value)})"
    message = (f"Object contains extra field {json.dumps(key)} that is not in the "
               f"validator. Path: {path}. Got: {got}")
    return ValidationError(ctx.code, message, path=str(path), expected="no such field", got=got)


def _missing_field(key: str, field: Validator, path: str, ctx: _Context) -> ValidationError:
    expected = _shorten(field.describe())
    message = (f"Object is missing the required field {json.dumps(key)}. Path: {path}. "
               f"Expected: {expected}. Got: nothing (wrap the field's validator in "
               "v.optional(...) if it may be absent)")
    return ValidationError(ctx.code, message, path=str(path), expected=expected, got="nothing")


# Convex's `paginationOptsValidator` (PROTOCOL.md 10.1).
pagination_opts = v.object({
    "numItems": v.number(),
    "cursor": v.union(v.string(), v.null()),
    "endCursor": v.optional(v.union(v.string(), v.null())),
    "id": v.optional(v.number()),
    "maximumRowsRead": v.optional(v.number()),
    "maximumBytesRead": v.optional(v.number()),
})
