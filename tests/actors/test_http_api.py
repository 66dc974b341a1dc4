"""The HTTP API (wire/http.py) driven in-process against a real node.

Each test opens a node on a fresh folder with the small app below, calls the
ASGI app directly with scope/receive/send (no sockets), and checks the status
and body: Convex's shapes on success, HTTP 200 with `status: error` for a
function's failure, non-2xx `{code, message}` for a bad request.

The node runs under `trio.run` in a helper thread so that the tests read as
plain request/response pairs.
"""

from __future__ import annotations

import base64
import json
import logging
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.node import open_node
from engine import limits
from engine.errors import EddyError, ErrorCode
from wire import codecs, http
from wire.http import make_app

SCHEMA = '''
from engine import define_schema, define_table, v

schema = define_schema({
    "notes": define_table({"body": v.string(), "stars": v.number()}),
    "tags": define_table({"name": v.string()}),
})
'''

NOTES = '''
from engine import AppError, action, internal_query, mutation, query, v


@query(args={})
async def kinds(ctx):
    return {"int": 5, "float": 2.0, "bytes": b"hi", "inf": float("inf"), "text": "x"}


@query(args={"x": v.number()})
async def double(ctx, x):
    return x * 2


@mutation(args={"body": v.string(), "stars": v.number()})
async def add(ctx, body, stars):
    return await ctx.db.insert("notes", {"body": body, "stars": stars})


@mutation(args={"body": v.any()})
async def add_unchecked(ctx, body):
    return await ctx.db.insert("notes", {"body": body, "stars": 1.0})


@mutation(args={"name": v.string()})
async def add_tag(ctx, name):
    return await ctx.db.insert("tags", {"name": name})


@query(args={"id": v.id("notes")})
async def get(ctx, id):
    return await ctx.db.get(id)


@query(args={})
async def count(ctx):
    return len(await ctx.db.query("notes").collect())


@internal_query(args={})
async def secret(ctx):
    return "hidden"


@mutation(args={})
async def refuse(ctx):
    raise AppError({"code": "Nope", "limit": 3})


@mutation(args={})
async def refuse_text(ctx):
    raise AppError("not today")


@query(args={})
async def crash(ctx):
    raise ValueError("boom in app code")


@action(args={"x": v.number()})
async def double_twice(ctx, x):
    once = await ctx.run_query("notes:double", {"x": x})
    return await ctx.run_query("notes:double", {"x": once})
'''

JSON = {"content-type": "application/json"}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def asgi_request(app: Any, method: str, path: str, headers: dict[str, str],
                       query_string: bytes, chunks: list[bytes]) -> Response:
    """Calls an ASGI app with one HTTP request and collects its response."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query_string, "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3210),
    }
    pending = list(chunks)
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not pending:
            await trio.sleep_forever()  # Only a disconnect would come now.
        read += 1
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(30):
        await app(scope, receive, send)
    start, bodies = sent[0], sent[1:]
    assert start["type"] == "http.response.start"
    return Response(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=b"".join(m.get("body", b"") for m in bodies),
        chunks_read=read,
    )


@dataclass
class Harness:
    """A node and its ASGI app on a trio loop in a helper thread."""

    app_dir: Path
    data_dir: Path
    node: Any = None
    _token: Any = None
    _stop: Any = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _failure: list[BaseException] = field(default_factory=list)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the node did not open within 30 s"
        if self._failure:
            raise self._failure[0]

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # Reported by start() or close().
            self._failure.append(error)
            self._ready.set()

    async def _serve(self) -> None:
        async with open_node(self.app_dir, self.data_dir) as node:
            self.node = node
            self.app = make_app(lambda: self.node)
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._stop is not None and not self._failure:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)
        if self._failure:
            raise self._failure[0]

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, query_string: bytes = b"",
                chunks: list[bytes] | None = None) -> Response:
        """Sends one request; `body` is JSON-encoded unless it is bytes."""
        if chunks is None:
            if body is None:
                chunks = [b""]
            elif isinstance(body, bytes):
                chunks = [body]
            else:
                chunks = [json.dumps(body).encode()]
        return trio.from_thread.run(self._request, method, path, headers or {},
                                    query_string, chunks, trio_token=self._token)

    async def _request(self, method, path, headers, query_string, chunks) -> Response:
        return await asgi_request(self.app, method, path, headers, query_string, chunks)

    def post(self, path: str, body: Any, **options: Any) -> Response:
        headers = {**JSON, **options.pop("headers", {})}
        return self.request("POST", path, body, headers=headers, **options)

    def call(self, kind: str, path: str, args: Any = None, fmt: str | None = "json",
             **options: Any) -> Response:
        body = {"path": path, "args": {} if args is None else args}
        if fmt is not None:
            body["format"] = fmt
        return self.post(f"/api/{kind}", body, **options)

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Convex {self.node.admin_key}"}


@pytest.fixture
def api(tmp_path: Path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "schema.py").write_text(textwrap.dedent(SCHEMA))
    (app_dir / "notes.py").write_text(textwrap.dedent(NOTES))
    harness = Harness(app_dir, tmp_path / "data")
    harness.start()
    yield harness
    harness.close()


def assert_request_error(response: Response, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    body = response.json
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]


def assert_function_error(response: Response, code: str) -> dict[str, Any]:
    assert response.status == 200, response.body
    body = response.json
    assert body["status"] == "error"
    assert body["code"] == code, body
    assert body["errorMessage"]
    assert "errorData" not in body
    assert body["logLines"] == []
    return body


# Success shapes.

def test_query_result_in_clean_json(api):
    """Format `json` flattens int64 to a string, bytes to base64, inf to a string."""
    response = api.call("query", "notes:kinds", fmt="json")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json == {"status": "success", "logLines": [], "value": {
        "int": "5", "float": 2.0, "bytes": "aGk=", "inf": "Infinity", "text": "x"}}
    assert b'"float":2.0' in response.body  # A float keeps its decimal point.


def test_query_result_in_convex_encoded_json(api):
    """Format `convex_encoded_json` keeps int64, bytes and inf apart with $-wrappers."""
    response = api.call("query", "notes:kinds", fmt="convex_encoded_json")
    assert response.json["value"] == {
        "int": {"$integer": "BQAAAAAAAAA="}, "float": 2.0, "bytes": {"$bytes": "aGk="},
        "inf": {"$float": "AAAAAAAA8H8="}, "text": "x"}


def test_format_aliases_and_default(api):
    """`convex_json` and `convex_clean_json` are aliases; a missing format means clean JSON."""
    encoded = api.call("query", "notes:kinds", fmt="convex_json").json["value"]
    clean = api.call("query", "notes:kinds", fmt="convex_clean_json").json["value"]
    default = api.call("query", "notes:kinds", fmt=None).json["value"]
    assert encoded["int"] == {"$integer": "BQAAAAAAAAA="}
    assert clean["int"] == default["int"] == "5"


def test_unknown_format_is_a_request_error(api):
    """An unknown `format` is refused before the function runs."""
    assert_request_error(api.call("query", "notes:kinds", fmt="xml"), 400, "BadRequest")


def test_args_as_object_and_as_one_element_array(api):
    """Args may be a bare object (legacy Python) or an array of one object (npm)."""
    as_object = api.call("query", "notes:double", {"x": 1.5})
    as_array = api.call("query", "notes:double", [{"x": 1.5}])
    assert as_object.json["value"] == as_array.json["value"] == 3.0


@pytest.mark.parametrize("args", [[], [{"x": 1.0}, {"x": 2.0}], 5, "x", [7]])
def test_args_of_any_other_shape_are_a_request_error(api, args):
    """Args that are neither an object nor an array of exactly one object get 400 BadRequest."""
    assert_request_error(api.call("query", "notes:double", args), 400, "BadRequest")


def test_malformed_encoded_value_in_args_is_a_request_error(api):
    """A `$integer` that is not 8 bytes of base64 cannot be decoded: 400 InvalidValue."""
    response = api.call("query", "notes:double", {"x": {"$integer": "nope"}})
    assert_request_error(response, 400, "InvalidValue")


def test_mutation_then_query_sees_the_write(api):
    """A mutation's write is visible to the next query, and its id round-trips."""
    inserted = api.call("mutation", "notes:add", {"body": "hi", "stars": 4})
    assert inserted.status == 200 and inserted.json["status"] == "success"
    note_id = inserted.json["value"]
    fetched = api.call("query", "notes:get", {"id": note_id}).json["value"]
    assert fetched["body"] == "hi" and fetched["stars"] == 4.0 and fetched["_id"] == note_id
    assert isinstance(fetched["_creationTime"], float)


def test_action_runs_queries(api):
    """POST /api/action runs an action, which may call queries."""
    assert api.call("action", "notes:double_twice", {"x": 1}).json["value"] == 4.0


def test_get_query_with_query_string(api):
    """GET /api/query takes path, args (a JSON string) and format from the query string."""
    response = api.request("GET", "/api/query",
                           query_string=b"path=notes:double&args=%7B%22x%22%3A2%7D&format=json")
    assert response.status == 200
    assert response.json["value"] == 4.0


def test_run_endpoint_names_the_function_in_the_url(api):
    """POST /api/run/<module>/<function> runs a function of any kind, clean JSON by default."""
    response = api.post("/api/run/notes/kinds", {"args": {}})
    assert response.json["value"]["int"] == "5"
    written = api.post("/api/run/notes/add", {"args": {"body": "b", "stars": 1}})
    assert written.json["status"] == "success"
    empty_body = api.request("POST", "/api/run/notes/count")
    assert empty_body.json["value"] == "1"  # An int is int64: a string in clean JSON.


@pytest.mark.parametrize("path", ["/api/run/notes", "/api/run/notes:count", "/api/run/"])
def test_run_endpoint_without_module_and_function_says_how_to_name_one(api, path):
    """A /api/run/ path that is not <module>/<function> gets 400 with the form to use."""
    response = api.request("POST", path)
    assert_request_error(response, 400, "BadConvexFunctionIdentifier")
    assert "/api/run/<module>/<function>" in response.json["message"]


def test_query_batch_answers_each_query(api):
    """POST /api/query_batch returns one UdfResponse per query, failures included."""
    response = api.post("/api/query_batch", {"queries": [
        {"path": "notes:double", "args": {"x": 1}, "format": "json"},
        {"path": "notes:missing", "args": {}, "format": "json"},
    ]})
    first, second = response.json["results"]
    assert first["value"] == 2.0
    assert second["status"] == "error" and second["code"] == "FunctionNotFound"


# Request errors: non-2xx with {code, message}.

def test_malformed_json_body(api):
    """A body that is not JSON gets 400 BadJsonBody."""
    response = api.post("/api/query", b'{"path": "notes:kinds", ')
    assert_request_error(response, 400, "BadJsonBody")


def test_wrong_content_type(api):
    """A body that is not declared application/json gets 415; a charset parameter is fine."""
    body = json.dumps({"path": "notes:kinds", "args": {}}).encode()
    wrong = api.request("POST", "/api/query", body, headers={"content-type": "text/plain"})
    assert_request_error(wrong, 415, "UnsupportedContentType")
    missing = api.request("POST", "/api/query", body)
    assert_request_error(missing, 415, "UnsupportedContentType")
    with_charset = api.request("POST", "/api/query", body,
                               headers={"content-type": "application/json; charset=utf-8"})
    assert with_charset.status == 200


def test_oversize_body_stops_reading_early(api):
    """A body over the limit gets 413 without the server reading the rest of it."""
    chunk = b" " * (1024 * 1024)
    chunk_count = limits.http_body_bytes_max // len(chunk) + 10
    response = api.post("/api/mutation", None, chunks=[chunk] * chunk_count)
    assert_request_error(response, 413, "RequestBodyTooLarge")
    assert response.chunks_read <= limits.http_body_bytes_max // len(chunk) + 1


def test_declared_oversize_body_is_refused_before_reading(api):
    """A Content-Length far over the limit gets 413 before any of the body is read."""
    declared = limits.http_body_bytes_max + http.OVERSIZE_DRAIN_BYTES_MAX + 1
    headers = {"content-length": str(declared)}
    response = api.post("/api/mutation", None, chunks=[b"{}"], headers=headers)
    assert_request_error(response, 413, "RequestBodyTooLarge")
    assert response.chunks_read == 0


def test_body_a_little_over_the_limit_is_read_to_its_end_before_the_413(api):
    """A declared body just over the limit is read whole (and dropped), then answered 413,
    so a client that uploads everything before reading the answer gets the 413."""
    chunk = b" " * (1024 * 1024)
    chunks = [chunk] * (limits.http_body_bytes_max // len(chunk)) + [b" " * 2001]
    assert sum(map(len, chunks)) == limits.http_body_bytes_max + 1
    headers = {"content-length": str(limits.http_body_bytes_max + 1)}
    response = api.post("/api/mutation", None, chunks=chunks, headers=headers)
    assert_request_error(response, 413, "RequestBodyTooLarge")
    assert response.chunks_read == len(chunks)


@pytest.mark.parametrize("path", ["notes:", "no:such:thing!", "a b:c", "", 7])
def test_bad_function_path(api, path):
    """A path that is not Convex function-path syntax gets 400 BadConvexFunctionIdentifier."""
    response = api.post("/api/query", {"path": path, "args": {}})
    assert_request_error(response, 400, "BadConvexFunctionIdentifier")


def test_unknown_route(api):
    """A path outside the API gets 404 NotFound."""
    assert_request_error(api.post("/api/nothing_here", {}), 404, "NotFound")


def test_wrong_method(api):
    """A known route called with the wrong method gets 405 with an Allow header."""
    response = api.request("GET", "/api/mutation")
    assert_request_error(response, 405, "MethodNotAllowed")
    assert response.headers["allow"] == "POST"


def test_bad_admin_key(api):
    """A wrong admin key gets 401 BadAdminKey, even for a public function."""
    response = api.call("query", "notes:kinds", headers={"authorization": "Convex wrong-key"})
    assert_request_error(response, 401, "BadAdminKey")


def test_bearer_token_without_auth_providers_is_refused(api):
    """An app with no auth_config.py trusts no token: a Bearer token gets 401
    Unauthenticated (tests/actors/test_auth.py covers apps that trust one)."""
    headers = {"authorization": "Bearer eyJhbGciOi.e30.sig"}
    assert_request_error(api.call("query", "notes:kinds", headers=headers), 401,
                         "Unauthenticated")


def test_unknown_authorization_scheme(api):
    """An Authorization header that is neither Bearer nor Convex gets 401 Unauthenticated."""
    response = api.call("query", "notes:kinds", headers={"authorization": "Basic dXNlcjpwdw=="})
    assert_request_error(response, 401, "Unauthenticated")


def test_admin_key_with_an_identity_suffix_is_admin(api):
    """`Convex <key>:<identity>` (impersonation) still authenticates as the admin."""
    identity = base64.b64encode(b'{"subject": "u1", "issuer": "https://i.test"}').decode()
    headers = {"authorization": f"Convex {api.node.admin_key}:{identity}"}
    assert api.call("query", "notes:secret", headers=headers).json["value"] == "hidden"


def test_admin_key_with_a_malformed_identity_is_refused(api):
    """`Convex <key>:<not base64 JSON of an identity>` gets 401 Unauthenticated."""
    headers = {"authorization": f"Convex {api.node.admin_key}:eyJzdWIiOiJ1MSJ9"}
    assert_request_error(api.call("query", "notes:kinds", headers=headers), 401,
                         "Unauthenticated")


# Failures of the node itself, with a stand-in node that raises them.

class FailingNode:
    """A node whose every call raises `error` (latest_ts and admin_key work)."""

    admin_key = "key"
    latest_ts = 1

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def call(self, *args: Any, **options: Any) -> Any:
        raise self.error


def call_failing_node(error: BaseException) -> Response:
    app = make_app(lambda: FailingNode(error))
    body = json.dumps({"path": "notes:kinds", "args": {}}).encode()
    return trio.run(asgi_request, app, "POST", "/api/query", JSON, b"", [body])


def test_retryable_error_is_503():
    """A retryable code from the node (overload, conflict) gets 503 with that code."""
    response = call_failing_node(EddyError(ErrorCode.OVERLOADED, "too busy"))
    assert_request_error(response, 503, "Overloaded")
    assert response.json["message"] == "too busy"


def test_internal_error_is_500():
    """An internal code from the node (a corrupt record) gets 500 with that code."""
    response = call_failing_node(EddyError(ErrorCode.CORRUPT_RECORD, "bad checksum at key 7"))
    assert_request_error(response, 500, "CorruptRecord")


def test_bug_in_eddy_is_500_without_details(caplog):
    """An unexpected exception gets 500 InternalServerError; its traceback goes only to the log."""
    with caplog.at_level(logging.ERROR, logger="eddy.http"):
        response = call_failing_node(KeyError("secret internals"))
    assert_request_error(response, 500, "InternalServerError")
    assert "secret internals" not in response.body.decode()
    assert "secret internals" in caplog.text


# Function errors: HTTP 200, status error, a stable code.

def test_unknown_function(api):
    """An unknown function is a function error with code FunctionNotFound."""
    assert_function_error(api.call("query", "notes:nothing"), "FunctionNotFound")


def test_missing_argument(api):
    """A missing argument fails the args validator."""
    assert_function_error(api.call("query", "notes:double", {}), "ArgumentValidationError")


def test_wrong_argument_type(api):
    """An argument of the wrong type fails the args validator."""
    response = api.call("query", "notes:double", {"x": "two"})
    assert_function_error(response, "ArgumentValidationError")


def test_internal_function_refused_without_admin_key(api):
    """An internal function cannot be called from outside."""
    assert_function_error(api.call("query", "notes:secret"), "InternalFunctionNotAllowed")


def test_internal_function_allowed_with_admin_key(api):
    """The admin key unlocks internal functions."""
    response = api.call("query", "notes:secret", headers=api.admin())
    assert response.json == {"status": "success", "value": "hidden", "logLines": []}


def test_function_endpoint_runs_any_kind_for_the_admin(api):
    """POST /api/function (npm's ConvexHttpClient.function) runs queries, mutations and
    internal functions for the admin, in the format asked for."""
    written = api.post("/api/function", {"path": "notes:add", "args": {"body": "b", "stars": 1},
                                         "format": "convex_encoded_json"}, headers=api.admin())
    assert written.json["status"] == "success"
    count = api.post("/api/function", {"componentPath": None, "path": "notes:count", "args": {},
                                       "format": "convex_encoded_json"}, headers=api.admin())
    assert count.json["value"] == codecs.encode_value(1, codecs.Format.ENCODED)
    secret = api.post("/api/function", {"path": "notes:secret", "args": {}}, headers=api.admin())
    assert secret.json == {"status": "success", "value": "hidden", "logLines": []}


def test_function_endpoint_refuses_callers_without_the_admin_key(api):
    """/api/function answers 401 BadAdminKey to anyone but the admin, and 400 to a component."""
    anonymous = api.post("/api/function", {"path": "notes:count", "args": {}})
    assert_request_error(anonymous, 401, "BadAdminKey")
    component = api.post("/api/function", {"componentPath": "chat", "path": "notes:count",
                                           "args": {}}, headers=api.admin())
    assert_request_error(component, 400, "BadRequest")


def test_schema_violation(api):
    """A write that does not match the schema fails and writes nothing."""
    assert_function_error(api.call("mutation", "notes:add_unchecked", {"body": 5}),
                          "SchemaValidationError")
    assert api.call("query", "notes:count").json["value"] == "0"


def test_malformed_id(api):
    """A string that is not an id fails v.id() with InvalidId."""
    body = assert_function_error(api.call("query", "notes:get", {"id": "not-an-id"}), "InvalidId")
    assert "not-an-id" in body["errorMessage"]


def test_id_of_another_table(api):
    """An id of `tags` where `notes` is expected fails v.id("notes") with IdForWrongTable."""
    tag_id = api.call("mutation", "notes:add_tag", {"name": "t"}).json["value"]
    body = assert_function_error(api.call("query", "notes:get", {"id": tag_id}), "IdForWrongTable")
    assert "tags" in body["errorMessage"]


def test_wrong_kind(api):
    """Calling a mutation through /api/query is a function error."""
    assert_function_error(api.call("query", "notes:add", {"body": "x", "stars": 1}),
                          "FunctionKindMismatch")


def test_app_error_carries_its_data(api):
    """AppError's data reaches the caller as errorData, encoded per format."""
    body = api.call("mutation", "notes:refuse", fmt="convex_encoded_json").json
    assert body["status"] == "error"
    assert body["errorData"] == {"code": "Nope", "limit": {"$integer": "AwAAAAAAAAA="}}
    assert body["errorMessage"] == "ConvexError"
    text = api.call("mutation", "notes:refuse_text").json
    assert text["errorMessage"] == "not today" and text["errorData"] == "not today"


def test_crash_in_app_code_sends_no_traceback(api, caplog):
    """An exception in app code reaches the caller as a message; its traceback only the log."""
    with caplog.at_level(logging.ERROR, logger="eddy"):
        response = api.call("query", "notes:crash")
    assert "Traceback" in caplog.text and "boom in app code" in caplog.text
    assert response.status == 200
    body = response.json
    assert body["status"] == "error"
    assert "errorData" not in body
    assert "boom in app code" in body["errorMessage"]
    assert "Traceback" not in response.body.decode()
    assert 'File "' not in response.body.decode()


def test_node_keeps_serving_after_bad_input(api):
    """After a run of bad requests the same node still answers good ones."""
    api.post("/api/query", b"{{{")
    api.call("query", "notes:crash")
    api.call("mutation", "notes:add_unchecked", {"body": 5})
    assert api.call("query", "notes:double", {"x": 2}).json["value"] == 4.0


# CORS.

def test_cors_preflight(api):
    """A preflight mirrors the Origin and requested headers and allows credentials."""
    response = api.request("OPTIONS", "/api/mutation", headers={
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization,convex-client",
    })
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-headers"] == \
        "content-type,authorization,convex-client"
    assert set(response.headers["access-control-allow-methods"].split(",")) == \
        {"GET", "POST", "OPTIONS", "PATCH", "DELETE", "PUT"}
    assert response.headers["access-control-max-age"] == "86400"


def test_cors_headers_on_every_response(api):
    """Success, function errors and request errors all carry the CORS headers."""
    origin = {"origin": "http://localhost:5173"}
    responses = [
        api.call("query", "notes:kinds", headers=origin),
        api.call("query", "notes:crash", headers=origin),
        api.post("/api/query", b"nope", headers=origin),
        api.request("GET", "/nowhere", headers=origin),
    ]
    for response in responses:
        assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "origin" in response.headers["vary"]


# Timestamps.

def test_query_ts_then_query_at_ts_reads_that_snapshot(api):
    """query_at_ts at a ts from query_ts ignores writes made after it."""
    api.call("mutation", "notes:add", {"body": "one", "stars": 1})
    ts_response = api.request("POST", "/api/query_ts")
    encoded_ts = ts_response.json["ts"]
    assert len(encoded_ts) == 12
    assert codecs.decode_ts(encoded_ts) == api.node.latest_ts
    api.call("mutation", "notes:add", {"body": "two", "stars": 2})
    then = api.post("/api/query_at_ts", {"path": "notes:count", "args": {},
                                         "format": "json", "ts": encoded_ts})
    assert then.json["value"] == "1"
    assert api.call("query", "notes:count").json["value"] == "2"


def test_query_at_ts_after_the_head_is_refused(api):
    """A ts later than the latest commit gets 400 InvalidTimestamp."""
    future = codecs.encode_ts(api.node.latest_ts + 10**12)
    response = api.post("/api/query_at_ts", {"path": "notes:count", "args": {}, "ts": future})
    assert_request_error(response, 400, "InvalidTimestamp")


@pytest.mark.parametrize("ts", ["garbage", "AAAA", 12, None, "//////////8="])
def test_query_at_ts_with_unparsable_ts(api, ts):
    """A ts that is not 8 bytes of base64 (or is over 2**63 - 1) gets 400 InvalidTimestamp."""
    response = api.post("/api/query_at_ts", {"path": "notes:count", "args": {}, "ts": ts})
    assert_request_error(response, 400, "InvalidTimestamp")
