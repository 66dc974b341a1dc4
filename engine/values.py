"""Eddy's value model: checking, sizing and the three encodings of a value.

An Eddy value is one of::

    None | bool | int | float | str | bytes | list | dict[str, value]

with `int` meaning int64 and `float` meaning float64. Only these exact Python
types are values (a tuple, an `OrderedDict` or an `IntEnum` is not), and
`bool` is always tested before `int` because `True` is an `int` to Python.

Sizes and nesting follow Convex (`crates/value/src/size.rs`): null and
booleans are 1 byte, int64 and float64 9, a string or bytes value is its
UTF-8 or raw length plus 2, an array is 2 plus its elements, an object is 2
plus, for each field, the name's length, 1 separator byte and the value.
A scalar has nesting 0; an array or object has 1 plus its deepest child's
nesting (so `{}` is 1 and `{"a": [1]}` is 2).

Three encodings live here:

- `to_convex_json` / `from_convex_json`: Convex's `convex_encoded_json`
  (PROTOCOL.md section 6). int64 travels as `{"$integer": base64 of 8 bytes
  little-endian}`, bytes as `{"$bytes": base64}`, and the floats JSON cannot
  carry (NaN, +-Infinity, -0.0) as `{"$float": base64 of 8 bytes
  little-endian}`. Every JSON number is a float64, so an incoming JSON int
  becomes a Python float, and floats go out as Python floats (`2.0`).
- `to_clean_json`: Convex's plain `json` format (int64 as a decimal string,
  bytes as a base64 string, NaN and infinities as strings). One way only.
- `pack` / `unpack`: msgpack, the storage and Eddy-protocol encoding. msgpack
  keeps str apart from bytes and int apart from float, so a value survives a
  round trip exactly.

These functions run once per document on the hot path, so they dispatch on
`type(value) is ...` in one function rather than through a table, and
`check_value` builds an error's path only after something has failed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import operator
import struct
from itertools import repeat
from typing import Any, Callable

import msgpack

from engine import limits
from engine.errors import EddyError, ErrorCode

__all__ = [
    "type_name",
    "size_of",
    "check_value",
    "check_document_fields",
    "flat_document_size",
    "flat_documents_size",
    "flat_document_checker",
    "flat_field_bytes",
    "is_field_name",
    "is_document_field_name",
    "to_convex_json",
    "from_convex_json",
    "to_clean_json",
    "pack",
    "unpack",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_INT64_LE = struct.Struct("<q")
_FLOAT64_LE = struct.Struct("<d")
# One Packer reused for every call: building one per call doubles the cost of
# `pack`. Sharing it is safe because `Packer.pack` never releases the GIL for
# Eddy values (no `default` hook runs Python code) and resets its buffer when
# it raises.
_PACKER = msgpack.Packer(use_bin_type=True)

_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "int64",
    float: "float64",
    str: "string",
    bytes: "bytes",
    list: "array",
    dict: "object",
}


def type_name(value: Any) -> str:
    """Names the Eddy type of a value.

    Args:
        value: any Python object.

    Returns:
        One of `null boolean int64 float64 string bytes array object`.

    Raises:
        EddyError: INVALID_VALUE if `value` is not of an Eddy value type.
    """
    name = _TYPE_NAMES.get(type(value))
    if name is None:
        raise EddyError(ErrorCode.INVALID_VALUE, _unsupported_message(value))
    return name


def size_of(value: Any) -> int:
    """Computes a value's size in bytes by Convex's rules, without checking it.

    Use it on values already known to be valid (stored documents); it
    assumes the value's types are right and its strings encodable.

    Args:
        value: an Eddy value.

    Returns:
        The size in bytes (see the module docstring).
    """
    kind = type(value)
    if kind is str:
        return len(value) + 2 if value.isascii() else len(value.encode()) + 2
    if kind is float or kind is int:
        return 9
    if kind is dict:
        size = 2
        for key, item in value.items():
            size += len(key) + 1 + size_of(item)
        return size
    if kind is list:
        size = 2
        for item in value:
            size += size_of(item)
        return size
    if kind is bytes:
        return len(value) + 2
    return 1  # None and bool


class _ValueProblem(Exception):
    """A value failed a check; `segments` collects its path, innermost first.

    Private: `check_value` turns it into an `EddyError` once the full path is
    known, so the happy path never formats a path.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.segments: list[str] = []


def check_value(value: Any, path: str = "") -> int:
    """Checks that `value` is a valid Eddy value and returns its size.

    Checks types, int64 range, string encodability, field names (at most
    1,024 printable ASCII characters, no leading `$`), array length (8,192),
    object fields (1,024) and nesting (64). It does not bound the size:
    callers compare the result with the limit that applies to them.

    Args:
        value: the candidate value.
        path: where the value sits, prefixed to the path in error messages
            (for example `".args"`).

    Returns:
        The value's size in bytes (Convex's rules; see the module docstring).

    Raises:
        EddyError: INVALID_VALUE or LIMIT_EXCEEDED, with the offending path
            (such as `.messages[3].body`) in the message and in
            `details["path"]`.
    """
    try:
        return _check(value, 0, limits.value_depth_max)
    except _ValueProblem as problem:
        raise _to_error(problem, path) from None


def check_document_fields(fields: Any) -> int:
    """Checks the user fields of a document and returns their size.

    On top of `check_value`'s rules: `fields` is a dict, no top-level field
    starts with `_` (those are system fields), nesting is at most 16 (the
    document object itself counts as 1), there are at most 1,022 top-level
    fields (1,024 with `_id` and `_creationTime`) and the size is at most 1 MiB.

    Args:
        fields: the document without its system fields.

    Returns:
        The size in bytes of `fields` as an object.

    Raises:
        EddyError: INVALID_VALUE or LIMIT_EXCEEDED naming the offending path.
    """
    if type(fields) is not dict:
        raise EddyError(
            ErrorCode.INVALID_VALUE,
            f"A document must be an object, not {_describe_type(fields)}",
            path="",
        )
    for key in fields:
        if type(key) is str and key.startswith("_"):
            raise EddyError(
                ErrorCode.INVALID_VALUE,
                f"Field '{key}' starts with '_', which is reserved for system fields",
                path=f".{key}",
            )
    if len(fields) > limits.document_user_fields_max:
        raise EddyError(
            ErrorCode.LIMIT_EXCEEDED,
            f"Document has too many fields ({len(fields)} + _id and _creationTime > "
            f"maximum {limits.document_fields_max})",
            path="",
        )
    try:
        size = _check_object(fields, 1, limits.document_depth_max)  # What _check does for a dict.
    except _ValueProblem as problem:
        raise _to_error(problem, "") from None
    if size > limits.document_bytes_max:
        raise EddyError(
            ErrorCode.LIMIT_EXCEEDED,
            f"Document is too large ({size} bytes > maximum "
            f"{limits.document_bytes_max} bytes)",
            path="",
            size=size,
        )
    return size


def flat_document_size(fields: dict, field_types: dict, required: frozenset,
                       all_fields_bytes: int, shape_bytes: dict) -> int | None:
    """The size of a document's user fields if they are flat and plain, else None.

    Flat and plain: every value is a scalar of exactly the type that
    `field_types` gives for its field (a str ASCII, an int within int64),
    and every field in `required` is there. Fields like that pass
    `check_document_fields` whenever the names in `field_types` pass
    `is_document_field_name` and there are at most 1,022 of them (and
    `check_value`, with a size limit of its caller's, whenever they pass
    `is_field_name`), so this is those checks' fast path: None sends the
    caller to the full check, which also names any problem.

    Args:
        fields: a document's user fields (a dict).
        field_types: field name -> the one type its value may have.
        required: the fields that must be present.
        all_fields_bytes, shape_bytes: from `flat_field_bytes(field_types)`.

    Returns:
        The size in bytes of `fields` as an object, or None.
    """
    size = 0  # the lengths of str and bytes values; the rest depends on the names
    for key, item in fields.items():
        kind = type(item)
        if kind is not field_types.get(key):
            return None
        if kind is str:
            if not item.isascii():
                return None
            size += len(item)
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return None
        elif kind is bytes:
            size += len(item)
    # Every key has a type, so as many keys as types means every field.
    if len(fields) == len(field_types):
        size += all_fields_bytes
    else:
        names = tuple(fields)
        fixed = shape_bytes.get(names)
        if fixed is None:
            if not fields.keys() >= required:
                return None
            fixed = _names_bytes(names, field_types)
            if len(shape_bytes) < flat_shapes_max:
                shape_bytes[names] = fixed
        size += fixed
    return size if size <= document_bytes_max else None


def flat_documents_size(documents: list, field_types: dict, required: frozenset,
                        all_fields_bytes: int, shape_bytes: dict) -> int | None:
    """The sum of `flat_document_size` of each of `documents` (dicts), or
    None if that is None for one of them.

    A batch of documents usually holds every field of the plan: then each
    field is checked for all documents at once (its values fetched by one
    `itemgetter` per document, their types compared as a set, the strings
    joined to test them for ASCII and to measure them), one C-level pass
    per field instead of a Python loop over the fields of each document.
    Anything else takes `flat_document_size` per document.

    Args:
        documents: a list of dicts.
        field_types, required, all_fields_bytes, shape_bytes: as for
            `flat_document_size`.
    """
    names = tuple(field_types)
    if documents and set(map(len, documents)) == {len(names)}:
        getter = operator.itemgetter(*names)
        try:
            rows = list(map(getter, documents))
        except KeyError:  # some other field in place of one of the plan's
            rows = None
        if rows is not None:
            # As many keys as names, every name among them: the keys are the names.
            columns = zip(*rows) if len(names) > 1 else (rows,)
            size = all_fields_bytes * len(documents)
            for name, column in zip(names, columns):
                column_size = _flat_column_size(column, field_types[name])
                if column_size is None:
                    return None
                size += column_size
            if size <= document_bytes_max:  # so is each document's size
                return size
    sizes = list(map(flat_document_size, documents, repeat(field_types), repeat(required),
                     repeat(all_fields_bytes), repeat(shape_bytes)))
    return None if None in sizes else sum(sizes)


def _flat_column_size(column: tuple, kind: type) -> int | None:
    """The lengths of the str or bytes values of one field of many
    documents (0 for other types) if each is of exactly type `kind` (a str
    ASCII, an int within int64), else None: `flat_document_size`'s test of
    one field, for all documents at once."""
    if set(map(type, column)) != {kind}:
        return None
    if kind is str:
        joined = "".join(column)
        return len(joined) if joined.isascii() else None
    if kind is int:
        return 0 if INT64_MIN <= min(column) and max(column) <= INT64_MAX else None
    if kind is bytes:
        return sum(map(len, column))
    return 0


def flat_document_checker(field_types: dict, required: frozenset, all_fields_bytes: int,
                          shape_bytes: dict) -> Callable[[dict], int | None]:
    """`flat_document_size` with these arguments bound, as one function
    written for them (as `dataclasses` writes an `__init__`).

    A document with every field of the plan is checked in straight-line
    code: each field fetched by name, each value's type, ASCII and int64
    tests in one expression, the size one sum. That costs about half of
    `flat_document_size`'s loop over the fields (270 against 600 ns for the
    batch benchmark's four fields); any other document (a field missing or
    extra, a test failed) gets `flat_document_size`'s answer from it.

    Args:
        field_types, required, all_fields_bytes, shape_bytes: as for
            `flat_document_size`, which this stands in for.

    Returns:
        A function of a dict: its size, or None, as `flat_document_size`.
    """
    if not field_types or len(field_types) > flat_checker_fields_max:
        return functools.partial(_flat_document_size_of, field_types, required,
                                 all_fields_bytes, shape_bytes)
    fallback = "flat_document_size(fields, field_types, required, all_fields_bytes, shape_bytes)"
    fetches, tests, sizes = [], [], []
    for position, (name, kind) in enumerate(field_types.items()):
        value = f"v{position}"
        fetches.append(f"        {value} = fields[{name!r}]")
        tests.append(f"type({value}) is k{position}")
        if kind is str:
            tests.append(f"{value}.isascii()")
        elif kind is int:
            tests.append(f"{INT64_MIN} <= {value} <= {INT64_MAX}")
        if kind is str or kind is bytes:
            sizes.append(f"len({value})")
    source = "\n".join([
        "def check(fields):",
        f"    if len(fields) == {len(field_types)}:",
        "        try:",
        *["    " + fetch for fetch in fetches],
        "        except KeyError:",
        f"            return {fallback}",
        f"        if {' and '.join(tests)}:",
        f"            size = {' + '.join([*sizes, str(all_fields_bytes)])}",
        f"            return size if size <= {document_bytes_max} else None",
        f"    return {fallback}",
    ])
    namespace = {f"k{position}": kind for position, kind in enumerate(field_types.values())}
    namespace.update(flat_document_size=flat_document_size, field_types=field_types,
                     required=required, all_fields_bytes=all_fields_bytes,
                     shape_bytes=shape_bytes)
    exec(source, namespace)  # noqa: S102 (the source is built above from names and types)
    return namespace["check"]


def _flat_document_size_of(field_types: dict, required: frozenset, all_fields_bytes: int,
                           shape_bytes: dict, fields: dict) -> int | None:
    """`flat_document_size`, its document last (for `functools.partial`)."""
    return flat_document_size(fields, field_types, required, all_fields_bytes, shape_bytes)


# Fields above which `flat_document_checker` writes no function (its
# straight-line code grows with the fields; a plan this large is rare).
flat_checker_fields_max = 64


def flat_field_bytes(field_types: dict) -> tuple[int, dict]:
    """`flat_document_size`'s `all_fields_bytes` and `shape_bytes` for these
    field types: what an object of every field adds to its str and bytes
    values' lengths, and a cache of the same for the field names (in order)
    of objects without some optional fields, filled as they are seen."""
    return _names_bytes(tuple(field_types), field_types), {}


def _names_bytes(names: tuple, field_types: dict) -> int:
    """An object's size but its str and bytes values' lengths: 2, and for each
    field its name, 1 byte and its value's size by type (see the module
    docstring)."""
    return 2 + sum(len(name) + 1 + _FLAT_VALUE_BYTES[field_types[name]] for name in names)


# A flat scalar's size by its type, less a str or bytes value's own length.
_FLAT_VALUE_BYTES = {str: 2, bytes: 2, float: 9, int: 9, bool: 1, type(None): 1}
document_bytes_max = limits.document_bytes_max
# Field-name sequences `flat_document_size` remembers per plan: a table's
# documents leave out a few optional fields in a few orders; the bound keeps
# a stream of odd shapes from growing it (past it, shapes are still sized).
flat_shapes_max = 64


def is_field_name(name: Any) -> bool:
    """Whether `name` is a valid field name of an object (see `check_value`)."""
    return _field_name_problem_free(name)


def is_document_field_name(name: Any) -> bool:
    """Whether `name` is a valid top-level field of a document (see `check_document_fields`)."""
    return type(name) is str and not name.startswith("_") and _field_name_problem_free(name)


def _check(value: Any, depth: int, depth_max: int) -> int:
    """Checks one value whose parent container is at nesting `depth`."""
    kind = type(value)
    if kind is str:
        if value.isascii():
            return len(value) + 2
        try:
            return len(value.encode()) + 2
        except UnicodeEncodeError:
            raise _ValueProblem(
                ErrorCode.INVALID_VALUE, "String is not valid Unicode (lone surrogate)"
            ) from None
    if kind is float:
        return 9
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return 9
        raise _ValueProblem(ErrorCode.INVALID_VALUE, f"Integer {value} does not fit in int64")
    if kind is dict:
        return _check_object(value, depth + 1, depth_max)
    if kind is list:
        return _check_array(value, depth + 1, depth_max)
    if kind is bool or value is None:
        return 1
    if kind is bytes:
        return len(value) + 2
    raise _ValueProblem(ErrorCode.INVALID_VALUE, _unsupported_message(value))


def _check_object(value: dict, depth: int, depth_max: int) -> int:
    if depth > depth_max:
        raise _too_nested(depth_max)
    if len(value) > limits.document_fields_max:
        raise _ValueProblem(
            ErrorCode.LIMIT_EXCEEDED,
            f"Object has too many fields ({len(value)} > maximum "
            f"{limits.document_fields_max})",
        )
    size = 2
    key = None
    try:
        for key, item in value.items():
            if type(key) is not str or key not in _valid_field_names:
                _check_field_name(key)
            # The commonest fields, ASCII strings and numbers, are sized here:
            # a call per field costs more than the check itself.
            kind = type(item)
            if kind is str and item.isascii():
                size += len(key) + len(item) + 3
            elif kind is float or (kind is int and INT64_MIN <= item <= INT64_MAX):
                size += len(key) + 10
            else:
                size += len(key) + 1 + _check(item, depth, depth_max)
    except _ValueProblem as problem:
        problem.segments.append(f".{key}")
        raise
    return size


def _check_array(value: list, depth: int, depth_max: int) -> int:
    if depth > depth_max:
        raise _too_nested(depth_max)
    if len(value) > limits.array_elements_max:
        raise _ValueProblem(
            ErrorCode.LIMIT_EXCEEDED,
            f"Array is too long ({len(value)} > maximum {limits.array_elements_max} elements)",
        )
    size = 2
    index = 0
    try:
        for item in value:
            # An array of objects (a batch of documents) skips the dispatch.
            if type(item) is dict:
                size += _check_object(item, depth + 1, depth_max)
            else:
                size += _check(item, depth, depth_max)
            index += 1
    except _ValueProblem as problem:
        problem.segments.append(f"[{index}]")
        raise
    return size


# Field names already found valid. Apps use a few names over and over, and
# one set lookup is cheaper than the four tests of `_check_field_name`.
_valid_field_names: set[str] = set()
# Bounds the memory a stream of made-up names (say, record keys) can take;
# past it names are still checked, just not remembered.
valid_field_names_max = 4096


def _check_field_name(key: Any) -> None:
    """Raises _ValueProblem unless `key` is a valid field name; remembers it if so."""
    if not _field_name_problem_free(key):
        raise _ValueProblem(ErrorCode.INVALID_VALUE, _field_name_problem(key))
    if len(_valid_field_names) < valid_field_names_max:
        _valid_field_names.add(key)


def _field_name_problem_free(key: Any) -> bool:
    return (
        type(key) is str
        and len(key) <= limits.field_name_chars_max
        and key.isascii()
        and key.isprintable()
        and not key.startswith("$")
    )


def _too_nested(depth_max: int) -> _ValueProblem:
    return _ValueProblem(
        ErrorCode.LIMIT_EXCEEDED, f"Value is nested too deeply (maximum {depth_max} levels)"
    )


def _field_name_problem(key: Any) -> str:
    if type(key) is not str:
        return f"Field names must be strings, not {_describe_type(key)}"
    if len(key) > limits.field_name_chars_max:
        return (
            f"Field name is too long ({len(key)} > maximum "
            f"{limits.field_name_chars_max} characters)"
        )
    if key.startswith("$"):
        return f"Field name {key!r} starts with '$', which is reserved"
    return f"Field name {key!r} has a character outside printable ASCII"


def _to_error(problem: _ValueProblem, path: str) -> EddyError:
    full_path = path + "".join(reversed(problem.segments))
    where = full_path if full_path else "the top level"
    return EddyError(problem.code, f"{problem.message} at {where}", path=full_path)


def _describe_type(value: Any) -> str:
    return f"a Python {type(value).__name__}"


def _unsupported_message(value: Any) -> str:
    hint = " (use a list)" if type(value) is tuple else ""
    return f"{_describe_type(value)} is not an Eddy value{hint}"


# ---------------------------------------------------------------- Convex JSON


def to_convex_json(value: Any) -> Any:
    """Encodes a value as Convex's `convex_encoded_json` (PROTOCOL.md 6).

    Args:
        value: an Eddy value (not re-checked beyond its types).

    Returns:
        A JSON-ready structure of dicts, lists, str, float, bool and None.

    Raises:
        EddyError: INVALID_VALUE for a Python object that is not a value.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        if value - value == 0.0 and (value != 0.0 or math.copysign(1.0, value) > 0):
            return value  # Finite and not -0.0: a plain JSON number.
        return {"$float": base64.b64encode(_FLOAT64_LE.pack(value)).decode("ascii")}
    if kind is int:
        try:
            packed = _INT64_LE.pack(value)
        except struct.error:
            raise EddyError(
                ErrorCode.INVALID_VALUE, f"Integer {value} does not fit in int64"
            ) from None
        return {"$integer": base64.b64encode(packed).decode("ascii")}
    if kind is dict:
        return {key: to_convex_json(item) for key, item in value.items()}
    if kind is list:
        return [to_convex_json(item) for item in value]
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise EddyError(ErrorCode.INVALID_VALUE, _unsupported_message(value))


def from_convex_json(obj: Any) -> Any:
    """Decodes Convex's `convex_encoded_json` into an Eddy value.

    JSON numbers (ints and floats from `json.loads`) become floats;
    `{"$integer": ...}`, `{"$float": ...}` and `{"$bytes": ...}` become int,
    float and bytes. Field names and limits are left to `check_value`.

    Args:
        obj: the output of `json.loads`.

    Returns:
        The Eddy value.

    Raises:
        EddyError: INVALID_VALUE for malformed special objects, removed types
            (`$set`, `$map`), other `$`-prefixed keys, or numbers out of range.
    """
    kind = type(obj)
    if kind is str or kind is bool or kind is float or obj is None:
        return obj
    if kind is int:
        try:
            return float(obj)
        except OverflowError:
            raise EddyError(ErrorCode.INVALID_VALUE, "JSON number out of float64 range") from None
    if kind is list:
        return [from_convex_json(item) for item in obj]
    if kind is dict:
        if len(obj) == 1:
            key = next(iter(obj))
            if type(key) is str and key.startswith("$"):
                return _decode_special(key, obj[key])
        result = {}
        for key, item in obj.items():
            if type(key) is not str or key.startswith("$"):
                raise EddyError(ErrorCode.INVALID_VALUE, _field_name_problem(key))
            result[key] = from_convex_json(item)
        return result
    raise EddyError(ErrorCode.INVALID_VALUE, f"{_describe_type(obj)} is not JSON")


def _decode_special(key: str, encoded: Any) -> Any:
    if key == "$integer":
        return _INT64_LE.unpack(_decode_base64(key, encoded, 8))[0]
    if key == "$float":
        number = _FLOAT64_LE.unpack(_decode_base64(key, encoded, 8))[0]
        if number - number == 0.0 and (number != 0.0 or math.copysign(1.0, number) > 0):
            raise EddyError(
                ErrorCode.INVALID_VALUE,
                f"$float {number!r} must be sent as a plain JSON number",
            )
        return number
    if key == "$bytes":
        return _decode_base64(key, encoded, None)
    if key in ("$set", "$map"):
        raise EddyError(ErrorCode.INVALID_VALUE, f"{key} is a removed Convex type")
    raise EddyError(
        ErrorCode.INVALID_VALUE, f"Field name {key!r} starts with '$', which is reserved"
    )


def _decode_base64(key: str, encoded: Any, length: int | None) -> bytes:
    if type(encoded) is not str:
        raise EddyError(ErrorCode.INVALID_VALUE, f"{key} must hold a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EddyError(ErrorCode.INVALID_VALUE, f"{key} holds malformed base64") from None
    if length is not None and len(data) != length:
        raise EddyError(
            ErrorCode.INVALID_VALUE, f"{key} must decode to {length} bytes, not {len(data)}"
        )
    return data


def to_clean_json(value: Any) -> Any:
    """Encodes a value as Convex's plain `json` format (export_clean).

    int64 becomes a decimal string, bytes a standard base64 string, NaN and
    the infinities the strings `"NaN"`, `"Infinity"`, `"-Infinity"`. The
    format loses types, so there is no decoder.

    Args:
        value: an Eddy value.

    Returns:
        A JSON-ready structure.

    Raises:
        EddyError: INVALID_VALUE for a Python object that is not a value.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        if value - value == 0.0:
            return value
        if value != value:
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if kind is int:
        return str(value)
    if kind is dict:
        return {key: to_clean_json(item) for key, item in value.items()}
    if kind is list:
        return [to_clean_json(item) for item in value]
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    raise EddyError(ErrorCode.INVALID_VALUE, _unsupported_message(value))


# ---------------------------------------------------------------- msgpack


def pack(value: Any) -> bytes:
    """Encodes a value as msgpack (str and bytes kept apart, floats as float64).

    Args:
        value: an Eddy value (the caller has checked it).

    Returns:
        The msgpack bytes.

    Raises:
        EddyError: INVALID_VALUE if msgpack cannot encode the object.
    """
    try:
        return _PACKER.pack(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise EddyError(ErrorCode.INVALID_VALUE, f"Cannot encode value: {error}") from None


_unpackb = msgpack.unpackb


def unpack(data: bytes) -> Any:
    """Decodes msgpack written by `pack`: lists as lists, ints as ints.

    The result is not re-checked; run `check_value` on untrusted input.

    Args:
        data: msgpack bytes holding exactly one object.

    Returns:
        The value.

    Raises:
        EddyError: INVALID_VALUE if `data` is not one well-formed msgpack object.
    """
    try:
        # msgpack's defaults (since 1.0): raw=False, strict_map_key=True,
        # use_list=True. Passed as keywords they cost a tenth of a small
        # document's unpacking, and a reference-scenario run unpacks 27,000.
        return _unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise EddyError(ErrorCode.INVALID_VALUE, f"Malformed msgpack: {error}") from None
