"""Function definitions: the decorators, function paths, argument checks.

App code declares functions with decorators, bare or with validators:

    @query
    async def count(ctx): ...

    @mutation(args={"body": v.string()}, returns=v.id("messages"))
    async def send(ctx, body): ...

Each decorator returns a `FunctionDef`; the app loader (actors/app.py) finds
them as module attributes and sets `path` (`messages:send`). A handler takes
`ctx` and the arguments as keyword arguments; it may be `async def` or plain.

`canonical_path` implements PROTOCOL.md 2.2: Eddy's canonical form is
`module/path:function` with no extension (`messages.js:send`,
`messages.py:send` and `messages:send` are one function; `messages` alone
means `messages:default`).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from engine import limits, values
from engine.errors import EddyError, ErrorCode
from engine.validators import ResolveTable, Validator, VArray, VObject, VOptional, v

_COMPONENT = re.compile(r"[A-Za-z0-9_.]+\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STRIPPED_EXTENSIONS = (".js", ".py")
DEFAULT_FUNCTION = "default"


class FunctionKind(str, enum.Enum):
    QUERY = "query"
    MUTATION = "mutation"
    ACTION = "action"


@dataclass(eq=False)
class FunctionDef:
    """One app function, as a decorator made it.

    Attributes:
        kind: query, mutation or action.
        internal: True for `internal_*`: only other functions and admins call it.
        handler: the app's function, called as `handler(ctx, **args)`.
        args: field validators of the argument object, or None to accept any object.
        returns: the return value's validator, or None to accept any value.
        path: the canonical path, set by the loader (None until loaded).
    """

    kind: FunctionKind
    internal: bool
    handler: Callable[..., Any]
    args: dict[str, Validator] | None = None
    returns: Validator | None = None
    path: str | None = None
    _args_validator: VObject | None = field(default=None, init=False, repr=False)
    # `values.flat_document_size`'s (field types, required fields) of the
    # scalar args for `check_flat_args`, or () when the args validator has no
    # flat fast path; and the same for the objects of each array of flat
    # objects (`v.array(v.object({...}))`: a batch of documents), by field.
    _flat_args: tuple = field(default=(), init=False, repr=False)
    # `_flat_args` as one function (`values.flat_document_checker`), or None.
    _flat_args_check: Callable[[dict], int | None] | None = field(default=None, init=False,
                                                                 repr=False)
    _flat_arrays: dict = field(default_factory=dict, init=False, repr=False)
    _required_arrays: frozenset = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError(f"a {self.kind.value} handler must be callable, not {self.handler!r}")
        if isinstance(self.args, VObject):
            self.args = dict(self.args.fields)
        if self.args is not None:
            if not isinstance(self.args, dict):
                raise TypeError(f"args= takes a dict of validators or v.object(...), "
                                f"not {self.args!r}")
            self._args_validator = v.object(self.args)
            self._flat_plan()
        if self.returns is not None and not isinstance(self.returns, Validator):
            raise TypeError(f"returns= takes a validator, not {self.returns!r}")

    def _flat_plan(self) -> None:
        """Sets `_flat_args`, `_flat_arrays` and `_required_arrays` (see `check_flat_args`)."""
        for name, validator in self.args.items():
            items = validator.inner if isinstance(validator, VOptional) else validator
            if isinstance(items, VArray) and isinstance(items.item, VObject) and \
                    values.is_field_name(name):
                item_fields = items.item.flat_fields(values.is_field_name)
                if item_fields:
                    self._flat_arrays[name] = item_fields
        scalars = {name: f for name, f in self.args.items() if name not in self._flat_arrays}
        self._flat_args = v.object(scalars).flat_fields(values.is_field_name)
        if self._flat_args:
            self._flat_args_check = values.flat_document_checker(*self._flat_args)
        self._required_arrays = frozenset(
            name for name in self._flat_arrays if not self.args[name].is_optional)

    @property
    def name(self) -> str:
        """The handler's own name, for messages before the loader sets `path`."""
        return self.path or getattr(self.handler, "__qualname__", repr(self.handler))


def _decorator(kind: FunctionKind, internal: bool):
    def decorate(handler: Callable | None = None, *, args: dict | VObject | None = None,
                 returns: Validator | None = None):
        if handler is None:
            return lambda fn: FunctionDef(kind, internal, fn, args, returns)
        return FunctionDef(kind, internal, handler, args, returns)

    decorate.__name__ = f"{'internal_' if internal else ''}{kind.value}"
    decorate.__doc__ = (f"Declares a{'n internal' if internal else ' public'} {kind.value}; "
                        f"use as `@{decorate.__name__}` or "
                        f"`@{decorate.__name__}(args={{...}}, returns=...)`.")
    return decorate


query = _decorator(FunctionKind.QUERY, internal=False)
mutation = _decorator(FunctionKind.MUTATION, internal=False)
action = _decorator(FunctionKind.ACTION, internal=False)
internal_query = _decorator(FunctionKind.QUERY, internal=True)
internal_mutation = _decorator(FunctionKind.MUTATION, internal=True)
internal_action = _decorator(FunctionKind.ACTION, internal=True)


@functools.lru_cache(maxsize=4096)  # apps call the same few paths over and over
def canonical_path(path: str) -> str:
    """Canonicalises a function path (PROTOCOL.md 2.2).

    Args:
        path: `module/path:function`, `module/path.js:function` or `module/path`.

    Returns:
        `module/path:function` without an extension (`"messages"` ->
        `"messages:default"`).

    Raises:
        EddyError: INVALID_FUNCTION_PATH naming what is wrong.
    """
    if type(path) is not str or not path:
        _bad_path(path, "a function path is a non-empty string")
    module, sep, function = path.rpartition(":")
    if not sep:
        module, function = path, DEFAULT_FUNCTION
    module = _strip_extension(path, module)
    for component in module.split("/"):
        _check_component(path, component)
    _check_function_name(path, function)
    return f"{module}:{function}"


def is_valid_function_name(name: str) -> bool:
    """Whether `name` may be a function's name (an identifier, <= 64, not all `_`)."""
    return (type(name) is str and bool(_IDENTIFIER.match(name))
            and len(name) <= limits.function_name_chars_max and name.strip("_") != "")


def validate_args(fdef: FunctionDef, args: Any,
                  resolve_table: ResolveTable | None = None) -> dict:
    """Checks a call's arguments against the function's `args` validators.

    Args:
        fdef: the function.
        args: the argument object (None means `{}`).
        resolve_table: table number -> name, to check `v.id` arguments' tables.

    Returns:
        The arguments normalized (ints in `v.number()` fields become floats).

    Raises:
        EddyError: INVALID_ARGS (a ValidationError naming the field) for a
            non-object, an unknown or missing argument or a mismatch;
            INVALID_ID / WRONG_TABLE_ID for a bad `v.id` argument.
    """
    if args is None:
        args = {}
    if fdef._args_validator is None:
        if type(args) is not dict:
            raise EddyError(ErrorCode.INVALID_ARGS,
                            f"Arguments must be an object, not {type(args).__name__}")
        return args
    return fdef._args_validator.check(args, "", resolve_table, ErrorCode.INVALID_ARGS)


def check_flat_args(fdef: FunctionDef, args: dict) -> dict | None:
    """The fast path of checking a call's arguments, as a value and against
    the function's validators: when they are a flat object of scalars
    matching the validators' exact-type fields, and arrays of such objects
    (see `values.flat_document_size`), a copy of them as the full checks
    would return it (fresh dicts and lists); else None, and the caller runs
    the full checks (which name any problem).

    Args:
        fdef: the function.
        args: the argument object, a dict.

    Returns:
        The arguments, normalized, or None.
    """
    flat = fdef._flat_args
    if not flat or type(args) is not dict:
        return None
    if fdef._flat_arrays:
        return _check_flat_args_with_arrays(fdef, args)
    size = fdef._flat_args_check(args)
    if size is None or size > limits.value_bytes_max:
        return None
    return args.copy()


def _check_flat_args_with_arrays(fdef: FunctionDef, args: dict) -> dict | None:
    """`check_flat_args` for a function that takes arrays of flat objects."""
    scalars = {}
    arrays = {}
    size = 0
    for key, item in args.items():
        item_fields = fdef._flat_arrays.get(key)
        if item_fields is None:
            scalars[key] = item
            continue
        if type(item) is not list or len(item) > limits.array_elements_max:
            return None
        if item:
            # Each step in C, field by field for all elements at once.
            if set(map(type, item)) != _DICT_ONLY:
                return None
            items_size = values.flat_documents_size(item, *item_fields)
            if items_size is None:
                return None
            size += items_size
        size += len(key) + 3  # the name, 1 byte, the array's 2
        arrays[key] = list(map(dict.copy, item))
    if not fdef._required_arrays <= args.keys():
        return None
    scalar_size = fdef._flat_args_check(scalars)
    if scalar_size is None or scalar_size + size > limits.value_bytes_max:
        return None
    return {**args, **arrays}


_DICT_ONLY = {dict}


def validate_returns(fdef: FunctionDef, value: Any,
                     resolve_table: ResolveTable | None = None) -> Any:
    """Checks a function's return value against its `returns` validator.

    Returns:
        The value normalized (unchanged when the function has no `returns`).

    Raises:
        EddyError: INVALID_RETURN (a ValidationError naming the path).
    """
    if fdef.returns is None:
        return value
    return fdef.returns.check(value, "", resolve_table, ErrorCode.INVALID_RETURN)


def _strip_extension(path: str, module: str) -> str:
    last = module.rsplit("/", 1)[-1]
    for extension in _STRIPPED_EXTENSIONS:
        if last.endswith(extension) and len(last) > len(extension):
            return module[: -len(extension)]
    if "." in last.strip("."):
        extension = last[last.rindex("."):]
        _bad_path(path, f'the module may end in ".js" or ".py", not "{extension}"')
    return module


def _check_component(path: str, component: str) -> None:
    if not component:
        _bad_path(path, "the module path has an empty component")
    if len(component) > limits.path_component_chars_max:
        _bad_path(path, f'"{component[:20]}..." is longer than '
                        f"{limits.path_component_chars_max} characters")
    if not _COMPONENT.match(component):
        _bad_path(path, f'"{component}" may hold only letters, digits, "_" and "."')
    if not any(c.isalnum() for c in component):
        _bad_path(path, f'"{component}" needs at least one letter or digit')


def _check_function_name(path: str, name: str) -> None:
    if not is_valid_function_name(name):
        _bad_path(path, f'"{name}" is not a function name (an identifier of at most '
                        f"{limits.function_name_chars_max} characters, not all underscores)")


def _bad_path(path: Any, reason: str):
    raise EddyError(ErrorCode.INVALID_FUNCTION_PATH,
                    f"Invalid function path {path!r}: {reason}", path=path)
