"""Schemas: `define_schema`, `define_table` and the index declarations.

An app's `schema.py` holds `schema = define_schema({...})`. A table is a
validator for its documents' user fields plus index declarations:

    define_table({"channel": v.id("channels"), "body": v.string()})
        .index("by_channel", ["channel"])
        .search_index("search_body", search_field="body", filter_fields=["channel"])
        .vector_index("by_embedding", vector_field="embedding", dimensions=1536)

Everything is checked when declared, against Convex's limits (DESIGN.md 9):
a bad declaration raises EddyError(SCHEMA_INVALID) while the app loads, and
the message names the table and index. Rules:

1. Table names are identifiers (at most 64 characters) not starting with `_`.
2. A table's validator is a dict of field validators, a `v.object(...)`, or a
   `v.union(...)` of objects; top-level fields never start with `_` (the
   system fields `_id` and `_creationTime` are added by Eddy).
3. Index names are identifiers, unique across a table's indexes of all kinds,
   not starting with `_` and not `by_id` or `by_creation_time`.
4. Indexed fields are dotted paths (`author.name`) with no component starting
   with `_`, no repeats within an index, and they must exist in the table's
   validator wherever it is an object (a `v.any()` or a record reaches
   anywhere).
5. Limits: 32 indexes per table, 16 fields per index, 4 search and 4 vector
   indexes per table, 16 filter fields each, vector dimensions 2..4096.

`Schema.validate_document` checks user fields only: system fields (`_id`,
`_creationTime`) are passed through unchecked. Documents of system tables
(names starting with `_`) are never checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from engine import limits, values
from engine.errors import EddyError, ErrorCode
from engine.validators import (
    ResolveTable,
    ValidationError,
    Validator,
    VAny,
    VObject,
    VOptional,
    VRecord,
    VUnion,
    v,
)

TABLE_NAME_CHARS_MAX = 64  # Convex's limit on table names.
INDEX_NAME_CHARS_MAX = 64  # Convex's limit on index names.
SYSTEM_INDEXES = {"by_id": ["_id"], "by_creation_time": ["_creationTime", "_id"]}
SYSTEM_FIELDS = ("_id", "_creationTime")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class SearchIndex:
    """A full-text index: one string field, filterable by equality on others."""

    search_field: str
    filter_fields: tuple[str, ...]


@dataclass(frozen=True)
class VectorIndex:
    """A vector index over a `v.array(v.float64())` field of fixed length."""

    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...]


@dataclass
class TableDefinition:
    """One table: its document validator and its index declarations.

    Attributes:
        validator: the validator of the documents' user fields.
        indexes: database index name -> indexed fields (without the trailing
            `_creationTime` and `_id`).
        search_indexes: name -> SearchIndex.
        vector_indexes: name -> VectorIndex.
        name: the table's name, set by `define_schema` (None before).
    """

    validator: Validator
    indexes: dict[str, list[str]] = field(default_factory=dict)
    search_indexes: dict[str, SearchIndex] = field(default_factory=dict)
    vector_indexes: dict[str, VectorIndex] = field(default_factory=dict)
    name: str | None = None

    def index(self, name: str, fields: list[str]) -> TableDefinition:
        """Declares a database index and returns the table, for chaining.

        Raises:
            EddyError: SCHEMA_INVALID for a bad name, bad fields or too many indexes.
        """
        self._check_index_name(name)
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields:
            self._fail(f'index "{name}" needs a non-empty list of fields, not {fields!r}')
        if len(fields) > limits.fields_per_index_max:
            self._fail(f'index "{name}" has {len(fields)} fields (maximum '
                       f"{limits.fields_per_index_max})")
        if len(self.indexes) >= limits.indexes_per_table_max:
            self._fail(f"too many indexes (maximum {limits.indexes_per_table_max})")
        self._check_fields(name, fields, "field")
        self.indexes[name] = list(fields)
        return self

    def search_index(self, name: str, *, search_field: str,
                     filter_fields: list[str] = ()) -> TableDefinition:
        """Declares a full-text search index and returns the table, for chaining.

        Raises:
            EddyError: SCHEMA_INVALID for a bad name, bad fields or too many indexes.
        """
        self._check_index_name(name)
        if len(self.search_indexes) >= limits.search_indexes_per_table_max:
            self._fail(f"too many search indexes (maximum {limits.search_indexes_per_table_max})")
        self._check_fields(name, [search_field], "search field")
        filters = self._check_filter_fields(name, filter_fields)
        self.search_indexes[name] = SearchIndex(search_field, filters)
        return self

    def vector_index(self, name: str, *, vector_field: str, dimensions: int,
                     filter_fields: list[str] = ()) -> TableDefinition:
        """Declares a vector index and returns the table, for chaining.

        Raises:
            EddyError: SCHEMA_INVALID for a bad name, fields or dimensions, or
                too many indexes.
        """
        self._check_index_name(name)
        if len(self.vector_indexes) >= limits.vector_indexes_per_table_max:
            self._fail(f"too many vector indexes (maximum {limits.vector_indexes_per_table_max})")
        if (type(dimensions) is not int
                or not limits.vector_dimensions_min <= dimensions <= limits.vector_dimensions_max):
            self._fail(f'vector index "{name}" has dimensions {dimensions!r}; they must be an '
                       f"int from {limits.vector_dimensions_min} to "
                       f"{limits.vector_dimensions_max}")
        self._check_fields(name, [vector_field], "vector field")
        filters = self._check_filter_fields(name, filter_fields)
        self.vector_indexes[name] = VectorIndex(vector_field, dimensions, filters)
        return self

    def all_index_names(self) -> set[str]:
        """Names of the table's declared indexes of every kind."""
        return set(self.indexes) | set(self.search_indexes) | set(self.vector_indexes)

    def to_json(self) -> dict:
        """Convex's JSON form of the table (`tableName` is None before define_schema)."""
        return {
            "tableName": self.name,
            "indexes": [{"indexDescriptor": n, "fields": f} for n, f in self.indexes.items()],
            "searchIndexes": [
                {"indexDescriptor": n, "searchField": s.search_field,
                 "filterFields": list(s.filter_fields)}
                for n, s in self.search_indexes.items()],
            "vectorIndexes": [
                {"indexDescriptor": n, "vectorField": x.vector_field,
                 "dimensions": x.dimensions, "filterFields": list(x.filter_fields)}
                for n, x in self.vector_indexes.items()],
            "documentType": self.validator.to_json(),
        }

    def _check_index_name(self, name: Any) -> None:
        if type(name) is not str or not _IDENTIFIER.match(name) or len(name) > INDEX_NAME_CHARS_MAX:
            self._fail(f"index name {name!r} must be an identifier of at most "
                       f"{INDEX_NAME_CHARS_MAX} characters")
        if name.startswith("_") or name in SYSTEM_INDEXES:
            self._fail(f'index name "{name}" is reserved (names starting with "_", '
                       '"by_id" and "by_creation_time" belong to Eddy)')
        if name in self.all_index_names():
            self._fail(f'index "{name}" is declared twice')

    def _check_fields(self, index: str, fields: list, what: str) -> None:
        seen = set()
        for name in fields:
            if type(name) is not str or not name or any(
                    not part or part.startswith("_") for part in name.split(".")):
                self._fail(f'index "{index}" {what} {name!r} must be a field path whose '
                           'parts do not start with "_"')
            if name in seen:
                self._fail(f'index "{index}" names the field "{name}" twice')
            seen.add(name)
            if not _reaches(self.validator, name.split(".")):
                known = ", ".join(f'"{f}"' for f in _top_fields(self.validator)) or "none"
                self._fail(f'index "{index}" {what} "{name}" is not a field of the table '
                           f"(its fields: {known})")

    def _check_filter_fields(self, index: str, filter_fields: Any) -> tuple[str, ...]:
        if isinstance(filter_fields, str) or not isinstance(filter_fields, (list, tuple)):
            self._fail(f'index "{index}" filter_fields must be a list, not {filter_fields!r}')
        if len(filter_fields) > limits.filter_fields_per_index_max:
            self._fail(f'index "{index}" has {len(filter_fields)} filter fields (maximum '
                       f"{limits.filter_fields_per_index_max})")
        self._check_fields(index, filter_fields, "filter field")
        return tuple(filter_fields)

    def _fail(self, message: str):
        where = f'table "{self.name}"' if self.name else "define_table(...)"
        raise EddyError(ErrorCode.SCHEMA_INVALID, f"Invalid schema: {where}: {message}")


def define_table(fields: dict | Validator) -> TableDefinition:
    """Declares a table from its documents' fields.

    Args:
        fields: a dict of field validators, a `v.object(...)` or a `v.union(...)`
            of objects.

    Returns:
        A TableDefinition to chain `.index(...)` and friends on.

    Raises:
        EddyError: SCHEMA_INVALID for another validator or a field starting with `_`.
    """
    validator = v.object(fields) if isinstance(fields, dict) else fields
    members = validator.members if isinstance(validator, VUnion) else (validator,)
    for member in members:
        if not isinstance(member, VObject):
            raise EddyError(ErrorCode.SCHEMA_INVALID,
                            "Invalid schema: define_table() takes a dict of validators, a "
                            f"v.object(...) or a union of objects, not {member!r}")
        for name in member.fields:
            if name.startswith("_"):
                raise EddyError(ErrorCode.SCHEMA_INVALID,
                                f'Invalid schema: field "{name}" starts with "_", which is '
                                "reserved for system fields")
    return TableDefinition(validator)


class Schema:
    """An app's tables, with document validation and index lookups.

    Attributes:
        tables: table name -> TableDefinition.
        schema_validation: whether documents are checked against the tables.
        strict_table_name_types: kept for Convex parity (a TypeScript typing
            option there); recorded in `to_json`, no effect on checks.
    """

    def __init__(self, tables: dict[str, TableDefinition], *, schema_validation: bool = True,
                 strict_table_name_types: bool = True) -> None:
        self.tables = tables
        self.schema_validation = schema_validation
        self.strict_table_name_types = strict_table_name_types
        # table name -> `_flat_table`'s answer, made on first use.
        self._flat_tables: dict[str, tuple] = {}
        # table name -> `flat_check`'s function, made on first use.
        self._flat_checks: dict[str, Callable[[dict], int | None]] = {}

    def validate_document(self, table: str, fields: dict,
                          resolve_table: ResolveTable | None = None) -> dict:
        """Checks a document's fields against its table and returns them normalized.

        Args:
            table: the table name.
            fields: the document (system fields, if present, pass unchecked).
            resolve_table: table number -> name, to check `v.id` fields' tables.

        Returns:
            The fields normalized (ints in `v.number()` fields become floats).

        Raises:
            EddyError: SCHEMA_VIOLATION naming the table, path, expected and
                actual type (INVALID_ID / WRONG_TABLE_ID for bad ids), or for a
                table the schema does not declare.
        """
        if not self.schema_validation or table.startswith("_"):
            return fields
        definition = self.tables.get(table)
        if definition is None:
            raise EddyError(ErrorCode.SCHEMA_VIOLATION,
                            f'Table "{table}" is not in the schema (declare it in schema.py '
                            "or pass schema_validation=False)", table=table)
        if fields.keys().isdisjoint(SYSTEM_FIELDS):
            # The common case (an insert's fields): nothing to split off and
            # put back, so the validator's fresh dict is the answer.
            return self._check_user_fields(definition, table, fields, resolve_table)
        system = {k: fields[k] for k in SYSTEM_FIELDS if k in fields}
        user = {k: val for k, val in fields.items() if k not in SYSTEM_FIELDS}
        normalized = self._check_user_fields(definition, table, user, resolve_table)
        return {**system, **normalized}

    def check_document(self, table: str, fields: dict,
                       resolve_table: ResolveTable | None = None) -> tuple[dict, int]:
        """Checks an inserted or replaced document's user fields, both as a
        value (`values.check_document_fields`) and against the table.

        Flat documents of scalars that match the table's exact-type fields
        (most inserts) take one pass (`values.flat_document_size`); anything
        else, and every failure, takes both full checks in that order, so the
        errors are theirs.

        Args:
            table: the table name.
            fields: the user fields, a dict.
            resolve_table: table number -> name, to check `v.id` fields' tables.

        Returns:
            (the fields, normalized; their size in bytes). The fields may be
            `fields` itself: the caller copies them into the document.

        Raises:
            EddyError: what `values.check_document_fields` and
                `validate_document` raise.
        """
        check = self.flat_check(table)
        if check is not None and type(fields) is dict:
            size = check(fields)
            if size is not None:
                return fields, size
        size = values.check_document_fields(fields)
        return self.validate_document(table, fields, resolve_table), size

    def flat_plan(self, table: str) -> tuple[dict, frozenset] | tuple[()]:
        """`flat_document_size`'s (field types, required fields) for a table
        whose documents it can check, or () when it cannot: a table without
        validation, a union of objects, or required fields that are not all
        of an exact type (no flat document could have them). A document it
        sizes passes `check_document` unchanged, with that size."""
        flat = self._flat_tables.get(table)
        if flat is None:
            flat = self._flat_tables[table] = self._flat_table(table)
        return flat

    def flat_check(self, table: str) -> Callable[[dict], int | None] | None:
        """`flat_plan`'s check as one function of the fields (see
        `values.flat_document_checker`), or None when the table has no plan.
        Made on first use (only a table of the schema has a plan)."""
        check = self._flat_checks.get(table)
        if check is None:
            flat = self.flat_plan(table)
            if not flat:
                return None
            check = self._flat_checks[table] = values.flat_document_checker(*flat)
        return check

    def _flat_table(self, table: str) -> tuple[dict, frozenset] | tuple[()]:
        definition = self.tables.get(table)
        if definition is None or table.startswith("_") or not self.schema_validation or \
                not isinstance(definition.validator, VObject):
            return ()
        return definition.validator.flat_fields(values.is_document_field_name)

    @staticmethod
    def _check_user_fields(definition: TableDefinition, table: str, user: dict,
                           resolve_table: ResolveTable | None) -> dict:
        try:
            return definition.validator.check(user, "", resolve_table, ErrorCode.SCHEMA_VIOLATION)
        except ValidationError as error:
            raise ValidationError(
                error.code, f'Document in table "{table}" does not match the schema: '
                f"{error.message}", path=error.path, expected=error.expected,
                got=error.got) from None

    def index_fields(self, table: str, index: str) -> list[str]:
        """The fields an index is keyed by, with the trailing `_creationTime`, `_id`.

        Raises:
            EddyError: INDEX_NOT_FOUND for an index the table does not have.
        """
        if index in SYSTEM_INDEXES:
            return list(SYSTEM_INDEXES[index])
        definition = self.tables.get(table)
        if definition is None or index not in definition.indexes:
            raise EddyError(ErrorCode.INDEX_NOT_FOUND,
                            f'Index "{table}.{index}" not found', table=table, index=index)
        return [*definition.indexes[index], "_creationTime", "_id"]

    def field_validator(self, table: str, dotted_path: str) -> Validator | None:
        """The validator of a (dotted) field, `v.optional` unwrapped.

        Returns:
            The validator, a union when a union of objects gives several, or
            None when the table or field is not declared (or sits under `v.any()`).
        """
        if dotted_path == "_id":
            return v.id(table)
        if dotted_path == "_creationTime":
            return v.number()
        definition = self.tables.get(table)
        if definition is None:
            return None
        found = _lookup(definition.validator, dotted_path.split("."))
        if not found:
            return None
        return found[0] if len(found) == 1 else v.union(*found)

    def coerce_index_value(self, table: str, dotted_path: str, value: Any) -> Any:
        """Applies the field's numeric coercion to a value compared with it.

        An int compared with a field whose validator turns ints into floats
        (`v.number()`, `v.union(v.number(), v.null())`, ...) becomes a float;
        a field that takes int64 exactly keeps it an int. Anything else is
        returned unchanged.
        """
        if type(value) is not int:
            return value
        validator = self.field_validator(table, dotted_path)
        if validator is None:
            return value
        try:
            checked = validator.check(value)
        except ValidationError:
            return value
        return checked if type(checked) is float else value

    def to_json(self) -> dict:
        """Convex's JSON form of the schema, tables sorted by name."""
        return {
            "tables": [self.tables[name].to_json() for name in sorted(self.tables)],
            "schemaValidation": self.schema_validation,
            "strictTableNameTypes": self.strict_table_name_types,
        }

    def fingerprint(self) -> str:
        """A stable hex digest of `to_json()`: equal schemas, equal fingerprints."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Schema(tables={sorted(self.tables)})"


def define_schema(tables: dict[str, TableDefinition], *, schema_validation: bool = True,
                  strict_table_name_types: bool = True) -> Schema:
    """Declares an app's schema.

    Args:
        tables: table name -> `define_table(...)`.
        schema_validation: check documents on every write (Convex's default).
        strict_table_name_types: accepted for Convex parity; no runtime effect.

    Returns:
        The Schema.

    Raises:
        EddyError: SCHEMA_INVALID for a bad table name or a value that is not a table.
    """
    if not isinstance(tables, dict):
        raise EddyError(ErrorCode.SCHEMA_INVALID,
                        f"Invalid schema: define_schema() takes a dict, not {tables!r}")
    for name, definition in tables.items():
        if (type(name) is not str or not _IDENTIFIER.match(name) or name.startswith("_")
                or len(name) > TABLE_NAME_CHARS_MAX):
            raise EddyError(ErrorCode.SCHEMA_INVALID,
                            f"Invalid schema: table name {name!r} must be an identifier of at "
                            f'most {TABLE_NAME_CHARS_MAX} characters not starting with "_"')
        if not isinstance(definition, TableDefinition):
            raise EddyError(ErrorCode.SCHEMA_INVALID,
                            f'Invalid schema: table "{name}" must be define_table(...), '
                            f"not {definition!r}")
        definition.name = name
    return Schema(dict(tables), schema_validation=schema_validation,
                  strict_table_name_types=strict_table_name_types)


def _unwrap(validator: Validator) -> Validator:
    return validator.inner if isinstance(validator, VOptional) else validator


def _lookup(validator: Validator, parts: list[str]) -> list[Validator]:
    """Every validator the path reaches (one per union branch), without repeats."""
    validator = _unwrap(validator)
    if not parts:
        return [validator]
    if isinstance(validator, VObject):
        inner = validator.fields.get(parts[0])
        return [] if inner is None else _lookup(inner, parts[1:])
    if isinstance(validator, VRecord):
        return _lookup(validator.values, parts[1:])
    if isinstance(validator, VUnion):
        found: list[Validator] = []
        for member in validator.members:
            for item in _lookup(member, parts):
                if item not in found:
                    found.append(item)
        return found
    return []


def _top_fields(validator: Validator) -> list[str]:
    """The top-level field names a table's documents may have, in declaration order."""
    validator = _unwrap(validator)
    members = validator.members if isinstance(validator, VUnion) else (validator,)
    return list(dict.fromkeys(name for member in members if isinstance(member, VObject)
                              for name in member.fields))


def _reaches(validator: Validator, parts: list[str]) -> bool:
    """Whether a document matching `validator` can have a value at this path."""
    validator = _unwrap(validator)
    if not parts or isinstance(validator, (VAny, VRecord)):
        return True
    if isinstance(validator, VObject):
        inner = validator.fields.get(parts[0])
        return inner is not None and _reaches(inner, parts[1:])
    if isinstance(validator, VUnion):
        return any(_reaches(member, parts) for member in validator.members)
    return False
