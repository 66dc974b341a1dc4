"""Tests for engine/functions.py: decorators, canonical paths, argument and return checks."""

from __future__ import annotations

import pytest

from engine.errors import EddyError, ErrorCode
from engine.functions import (
    FunctionDef,
    FunctionKind,
    action,
    canonical_path,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
    validate_args,
    validate_returns,
)
from engine.ids import encode_id
from engine.validators import ValidationError, v


async def handler(ctx, **args):
    return args


@pytest.mark.parametrize("decorator, kind, internal", [
    (query, FunctionKind.QUERY, False),
    (mutation, FunctionKind.MUTATION, False),
    (action, FunctionKind.ACTION, False),
    (internal_query, FunctionKind.QUERY, True),
    (internal_mutation, FunctionKind.MUTATION, True),
    (internal_action, FunctionKind.ACTION, True),
])
def test_decorators_bare_and_called(decorator, kind, internal):
    """Each decorator works bare and with args/returns, recording kind and internal."""
    bare = decorator(handler)
    assert isinstance(bare, FunctionDef)
    assert (bare.kind, bare.internal, bare.handler, bare.args, bare.returns, bare.path) == (
        kind, internal, handler, None, None, None)
    called = decorator(args={"x": v.string()}, returns=v.null())(handler)
    assert (called.kind, called.internal) == (kind, internal)
    assert called.args == {"x": v.string()} and called.returns == v.null()


def test_decorator_syntax():
    """@query and @mutation(args=...) both turn a function into a FunctionDef."""
    @query
    def plain(ctx):
        return 1

    @mutation(args={"body": v.string()})
    async def send(ctx, body):
        return body

    assert plain.kind == FunctionKind.QUERY and plain.handler(None) == 1
    assert send.args == {"body": v.string()}


def test_args_may_be_an_object_validator():
    """args=v.object({...}) is the same as args={...}."""
    fdef = query(args=v.object({"a": v.int64()}))(handler)
    assert fdef.args == {"a": v.int64()}


@pytest.mark.parametrize("build", [
    lambda: query(args={"a": str})(handler),
    lambda: query(args=["a"])(handler),
    lambda: query(returns="x")(handler),
    lambda: query("not callable"),
])
def test_decorator_misuse_fails_at_definition(build):
    """Wrong args=, returns= or a non-callable handler fail when the module loads."""
    with pytest.raises((TypeError, EddyError)):
        build()


@pytest.mark.parametrize("path, canonical", [
    ("messages", "messages:default"),
    ("messages:send", "messages:send"),
    ("messages.js:send", "messages:send"),
    ("messages.py:send", "messages:send"),
    ("messages.js", "messages:default"),
    ("admin/users:list", "admin/users:list"),
    ("admin/users.js:list", "admin/users:list"),
    ("v1.0/users:list", "v1.0/users:list"),
    ("_system/frontend/x:y", "_system/frontend/x:y"),
    ("a:_private", "a:_private"),
    ("a:" + "f" * 64, "a:" + "f" * 64),
    ("a" * 64 + ":f", "a" * 64 + ":f"),
])
def test_canonical_path_accepts(path, canonical):
    """canonical_path follows PROTOCOL.md 2.2 and strips .js and .py."""
    assert canonical_path(path) == canonical
    assert canonical_path(canonical) == canonical


@pytest.mark.parametrize("path", [
    "", "messages.ts:send", "messages.json", "a//b:f", "/a:f", "a/:f", "a-b:f", "a b:f",
    "_/x:f", "__:f", "a:", "a:1f", "a:___", "a:f-g", "a:" + "f" * 65, "a" * 65 + ":f",
    "a:b:c", None, 5,
])
def test_canonical_path_rejects(path):
    """Bad extensions, characters, empty or over-long parts are INVALID_FUNCTION_PATH."""
    with pytest.raises(EddyError) as caught:
        canonical_path(path)
    assert caught.value.code == ErrorCode.INVALID_FUNCTION_PATH


def test_validate_args_without_validators():
    """No args validator: None is {}, any object passes, a non-object is INVALID_ARGS."""
    fdef = query(handler)
    assert validate_args(fdef, None) == {}
    assert validate_args(fdef, {"anything": [1]}) == {"anything": [1]}
    with pytest.raises(EddyError) as caught:
        validate_args(fdef, ["x"])
    assert caught.value.code == ErrorCode.INVALID_ARGS


def test_validate_args_with_validators():
    """With validators: normalized, and extra or missing args are INVALID_ARGS naming the field."""
    fdef = mutation(args={"n": v.number(), "tag": v.optional(v.string())})(handler)
    assert validate_args(fdef, {"n": 2}) == {"n": 2.0}
    with pytest.raises(ValidationError) as extra:
        validate_args(fdef, {"n": 1, "oops": 1})
    assert extra.value.code == ErrorCode.INVALID_ARGS and extra.value.path == ".oops"
    with pytest.raises(ValidationError) as missing:
        validate_args(fdef, {"tag": "x"})
    assert missing.value.code == ErrorCode.INVALID_ARGS and missing.value.path == ".n"
    with pytest.raises(ValidationError):
        validate_args(fdef, None)
    assert validate_args(query(args={})(handler), None) == {}


def test_validate_args_checks_id_tables():
    """An id argument of another table is WRONG_TABLE_ID when a resolver is given."""
    fdef = query(args={"c": v.id("channels")})(handler)
    other = encode_id(9, bytes(16))
    assert validate_args(fdef, {"c": other}) == {"c": other}
    with pytest.raises(EddyError) as caught:
        validate_args(fdef, {"c": other}, resolve_table=lambda n: "users")
    assert caught.value.code == ErrorCode.WRONG_TABLE_ID


def test_validate_returns():
    """returns= is checked with INVALID_RETURN; no validator lets anything through."""
    assert validate_returns(query(handler), {1, 2}) == {1, 2}
    fdef = query(returns=v.array(v.number()))(handler)
    assert validate_returns(fdef, [1, 2.5]) == [1.0, 2.5]
    with pytest.raises(ValidationError) as caught:
        validate_returns(fdef, [1, "x"])
    assert caught.value.code == ErrorCode.INVALID_RETURN and caught.value.path == "[1]"
