"""Convex's HTTP API as a plain ASGI app (PROTOCOL.md 8.1).

`make_app(node_provider)` returns an ASGI 3 callable; hypercorn's trio worker
serves it, so every request runs as a trio task beside the node's actors.

A WebSocket on `/api/sync` or `/api/<client version>/sync` is the sync
protocol (wire/sync.py); any other WebSocket is refused.

How a request becomes a response:

1. An OPTIONS request carrying `Access-Control-Request-Method` is a CORS
   preflight and is answered at once, for any path, as Convex's backend does
   (tower-http's CorsLayer sits in front of its router).
2. The route table picks a handler by path, then by method: an unknown path
   is 404 `NotFound`, a known path with another method 405 `MethodNotAllowed`.
3. The `Authorization` header says who calls: none is an outside caller
   with no identity, `Bearer <jwt>` an outside caller whose identity the
   token proves (verified by the node's `auth`, actors/auth.py),
   `Convex <admin key>` the admin, and `Convex <admin key>:<base64 JSON>`
   the admin acting as that user (Convex's UserIdentityAttributes).
4. The handler reads and checks the body, calls the node, and shapes the
   outcome. Every response is JSON and carries the CORS headers.

Where each failure goes (the only place codes become statuses, STYLE.md):

| failure                                           | status | body                     |
| ------------------------------------------------- | ------ | ------------------------ |
| function returned                                 | 200    | status success           |
| `AppError` (app raised it on purpose)             | 200    | status error + errorData |
| `FunctionCrashed` (traceback only in server log)  | 200    | status error             |
| `EddyError`, caller family, raised by the node    | 200    | status error + code      |
| `BadJsonBody`, `BadRequest`, `InvalidValue`       | 400    | code, message            |
| `BadConvexFunctionIdentifier`, `InvalidTimestamp` | 400    | code, message            |
| `BadAdminKey`, `Unauthenticated`                  | 401    | code, message            |
| `NotFound` (no such route)                        | 404    | code, message            |
| `MethodNotAllowed`                                | 405    | code, message            |
| `RequestBodyTooLarge`                             | 413    | code, message            |
| `UnsupportedContentType`                          | 415    | code, message            |
| any retryable code (conflict, overload)           | 503    | code, message            |
| any internal code, or a bug in Eddy               | 500    | code, message            |

Content type: a body must be `application/json` (parameters such as
`charset` allowed, `application/*+json` too). A missing content type is
refused like a wrong one, as Convex's backend does, except where no body is
needed: `/api/query_ts` ignores its body and `/api/run/...` takes an empty
body as "no arguments", so `curl -X POST .../api/run/messages/list` works.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from actors.auth import decode_impersonation
from engine import limits
from engine.errors import AppError, EddyError, ErrorCode, Family, FunctionCrashed
from engine.functions import canonical_path
from wire import hypercorn_patch  # noqa: F401  (fixes applied at import)
from wire import codecs
from wire.codecs import Format
from wire.sync import SyncServer, sync_path_version

logger = logging.getLogger("eddy.http")

NodeProvider = Callable[[], Any]
Handler = Callable[["Request", Any], Awaitable[tuple[int, dict[str, Any]]]]

# Statuses of request-level codes; other codes go by family (see the table above).
REQUEST_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.INVALID_VALUE: 400,
    ErrorCode.INVALID_FUNCTION_PATH: 400,
    ErrorCode.INVALID_TIMESTAMP: 400,
    ErrorCode.BAD_ADMIN_KEY: 401,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_CONTENT_TYPE: 415,
}
FAMILY_STATUS = {
    Family.CALLER: 400,
    Family.PROTOCOL: 400,
    Family.RETRYABLE: 503,
    Family.INTERNAL: 500,
}
# Codes that describe the request even when the node raises them (a
# timestamp the node cannot serve): never a function's outcome.
REQUEST_ONLY_CODES = {
    ErrorCode.INVALID_FUNCTION_PATH,
    ErrorCode.INVALID_TIMESTAMP,
    ErrorCode.BAD_ADMIN_KEY,
    ErrorCode.UNAUTHENTICATED,
}

# A body declared at most this much over `limits.http_body_bytes_max` is read
# and dropped before the 413 goes out, so the common client that uploads the
# whole body before reading the answer gets the 413 rather than a connection
# reset (stdlib urllib, for one); anything larger is refused unread. Reading
# up to 16 MiB more costs no memory, only the time of the upload.
OVERSIZE_DRAIN_BYTES_MAX = 16 * 1024 * 1024

CORS_METHODS = b"GET,POST,OPTIONS,PATCH,DELETE,PUT"
CORS_MAX_AGE_S = b"86400"
CORS_VARY = b"origin, access-control-request-method, access-control-request-headers"


def status_for(error: EddyError) -> int:
    """The HTTP status of an error that is not a function's outcome."""
    return REQUEST_STATUS.get(error.code) or FAMILY_STATUS[error.family]


# Requests.

class _Disconnected(Exception):
    """The client went away before the request body was complete."""


@dataclass
class Request:
    """The parts of an ASGI HTTP scope a handler needs."""

    method: str
    path: str
    query_string: bytes
    headers: dict[str, str]
    receive: Callable[[], Awaitable[dict[str, Any]]]

    @classmethod
    def from_scope(cls, scope: dict[str, Any], receive: Any) -> Request:
        # Header names are lower-case in ASGI; a repeated header keeps its last value.
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope.get("headers", [])}
        return cls(scope["method"], scope["path"], scope.get("query_string", b""),
                   headers, receive)

    async def read_body(self) -> bytes:
        """Reads the whole body, stopping as soon as it exceeds the limit.

        A checkpoint. Raises `EddyError(BODY_TOO_LARGE)` before buffering more
        than `limits.http_body_bytes_max` bytes (a declared length a little
        over it is read and dropped first, see `OVERSIZE_DRAIN_BYTES_MAX`),
        and `_Disconnected` when the client goes away.
        """
        body_max = limits.http_body_bytes_max
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_max:
            if int(declared) - body_max <= OVERSIZE_DRAIN_BYTES_MAX:
                await self._discard_body(int(declared))
            raise _too_large(body_max)
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > body_max:
                raise _too_large(body_max)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _discard_body(self, declared: int) -> None:
        # Reads and drops a body that is a little over the limit: most
        # clients send the whole body before reading any answer, and one
        # whose connection closes mid-upload sees a reset, not the 413.
        size = 0
        while size <= declared:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def read_json(self, *, empty_means_none: bool = False) -> Any:
        """The body parsed as JSON, after checking its content type.

        Args:
            empty_means_none: return None for an empty body whatever its
                content type (for endpoints whose body is optional).
        """
        content_type = self.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            raise _unsupported(content_type)
        body = await self.read_body()
        if empty_means_none and not body:
            return None
        if content_type is None:
            raise _unsupported(content_type)
        return codecs.parse_json(body)

    async def read_json_object(self, **options: bool) -> dict[str, Any]:
        """The body as a JSON object (an empty dict for an allowed empty body)."""
        obj = await self.read_json(**options)
        if obj is None:
            return {}
        if not isinstance(obj, dict):
            raise EddyError(ErrorCode.BAD_REQUEST, "The request body must be a JSON object.")
        return obj


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _unsupported(content_type: str | None) -> EddyError:
    return EddyError(ErrorCode.UNSUPPORTED_CONTENT_TYPE,
                     f"Expected a request with `Content-Type: application/json`, "
                     f"got {content_type or 'none'}.")


def _too_large(body_max: int) -> EddyError:
    return EddyError(ErrorCode.BODY_TOO_LARGE,
                     f"The request body is larger than {body_max} bytes.")


# Callers.

@dataclass(frozen=True)
class Caller:
    """Who makes a request: the admin or an outside caller, with an identity.

    `token` is a user's JWT not yet verified (`authenticate` turns it into
    an identity).
    """

    admin: bool
    identity: Any = None
    token: str | None = None


def parse_caller(authorization: str | None, admin_key: str) -> Caller:
    """Reads the `Authorization` header (no token is verified here).

    Raises:
        EddyError: `BAD_ADMIN_KEY` for a wrong admin key; `UNAUTHENTICATED`
            for a scheme other than `Bearer` or `Convex`, an empty token, or
            an impersonated identity that does not decode.
    """
    if authorization is None:
        return Caller(admin=False)
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer":
        if not credential:
            raise EddyError(ErrorCode.UNAUTHENTICATED, "The Bearer token is empty.")
        return Caller(admin=False, token=credential)
    if scheme.lower() == "convex":
        # `<admin key>:<base64 identity>` impersonates a user. Admin keys
        # hold no `:`, so the last one separates the two.
        if _same_key(credential, admin_key):
            return Caller(admin=True)
        key, _, encoded = credential.rpartition(":")
        if key and _same_key(key, admin_key):
            return Caller(admin=True, identity=decode_impersonation(encoded))
        raise EddyError(ErrorCode.BAD_ADMIN_KEY, "The admin key is not valid for this deployment.")
    raise EddyError(ErrorCode.UNAUTHENTICATED,
                    "The Authorization header must be `Bearer <token>` or `Convex <admin key>`.")


async def authenticate(caller: Caller, node: Any) -> Caller:
    """Verifies a caller's token with `node.auth` (actors/auth.py).

    A checkpoint only when the provider's keys must be fetched.

    Raises:
        EddyError(UNAUTHENTICATED): the token is not valid (expired, forged,
            another issuer or audience, malformed), or the app trusts no
            provider.
    """
    if caller.token is None:
        return caller
    return Caller(admin=False, identity=await node.auth.verify_async(caller.token))


def _same_key(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# Calling the node.

@dataclass(frozen=True)
class Call:
    """One function call decoded from a request."""

    kind: str | None  # "query", "mutation", "action", or None for any kind
    path: str
    args: dict[str, Any]
    fmt: Format


def decode_call(kind: str | None, fields: dict[str, Any], default: Format) -> Call:
    """Checks a call's `path`, `args` and `format` fields."""
    raw_path = fields.get("path")
    if not isinstance(raw_path, str):
        raise EddyError(ErrorCode.INVALID_FUNCTION_PATH,
                        "The request must name the function in a string field `path`.")
    fmt = codecs.parse_format(fields.get("format"), default)
    return Call(kind, canonical_path(raw_path), codecs.decode_args(fields.get("args")), fmt)


async def run_call(node: Any, call: Call, caller: Caller,
                   at_ts: int | None = None) -> tuple[int, dict[str, Any]]:
    """Runs a call on the node and shapes its outcome as a Convex UdfResponse.

    A checkpoint; cancelling it cancels the call (a mutation is then either
    committed or not, as the node decides). Errors that are not a
    function's outcome propagate as `EddyError` for the caller of this to map.
    """
    try:
        result = await node.call(call.kind, call.path, call.args, identity=caller.identity,
                                 admin=caller.admin, at_ts=at_ts)
    except AppError as error:
        return 200, codecs.error_body(str(error), call.fmt, has_data=True, data=error.data,
                                      log_lines=_log_lines(error))
    except FunctionCrashed as error:
        # The runner has logged the traceback; the caller gets the message only.
        return 200, codecs.error_body(error.message, call.fmt, log_lines=_log_lines(error))
    except EddyError as error:
        if error.family is not Family.CALLER or error.code in REQUEST_ONLY_CODES:
            raise
        return 200, codecs.error_body(error.message, call.fmt, code=error.code.value,
                                      log_lines=_log_lines(error))
    return 200, codecs.success_body(result.value, result.log_lines, call.fmt)


def _log_lines(error: Exception) -> list[str]:
    # The node may attach what the function logged before it failed.
    return list(getattr(error, "log_lines", None) or [])


# Handlers: each returns (status, body).

def post_call(kind: str) -> Handler:
    async def handle(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
        fields = await request.read_json_object()
        call = decode_call(kind, fields, Format.CLEAN)
        return await run_call(node, call, await _caller(request, node))
    return handle


async def get_query(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    params = {name: values[-1] for name, values in
              parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True).items()}
    if "args" in params:
        params["args"] = codecs.parse_json(params["args"], "The args parameter")
    call = decode_call("query", params, Format.CLEAN)
    return await run_call(node, call, await _caller(request, node))


async def query_ts(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    await _caller(request, node)
    return 200, {"ts": codecs.encode_ts(node.latest_ts)}


async def query_at_ts(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    fields = await request.read_json_object()
    ts = codecs.decode_ts(fields.get("ts"))
    latest_ts = node.latest_ts
    if ts > latest_ts:
        raise EddyError(ErrorCode.INVALID_TIMESTAMP,
                        f"Timestamp {fields['ts']} is after the latest commit; "
                        "get one from /api/query_ts.")
    call = decode_call("query", fields, Format.CLEAN)
    return await run_call(node, call, await _caller(request, node), at_ts=ts)


async def query_batch(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    fields = await request.read_json_object()
    queries = fields.get("queries")
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        raise EddyError(ErrorCode.BAD_REQUEST, "`queries` must be an array of objects.")
    # Decode them all first so a bad one fails the request before any runs.
    # The body size limit bounds how many there can be.
    calls = [decode_call("query", fields_, Format.CLEAN) for fields_ in queries]
    caller = await _caller(request, node)
    ts = node.latest_ts  # One snapshot for the whole batch, as Convex does.
    results = [(await run_call(node, call, caller, at_ts=ts))[1] for call in calls]
    return 200, {"results": results}


async def post_run(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    segments = request.path[len(RUN_PREFIX):].strip("/").split("/")
    if len(segments) < 2 or not all(segments):
        raise EddyError(ErrorCode.INVALID_FUNCTION_PATH,
                        f"{request.path} does not name a function: use "
                        f"{RUN_PREFIX}<module>/<function>, with the module's folders first "
                        f"({RUN_PREFIX}admin/users/list runs admin/users:list).")
    fields = await request.read_json_object(empty_means_none=True)
    fields = {**fields, "path": "/".join(segments[:-1]) + ":" + segments[-1]}
    call = decode_call(None, fields, Format.CLEAN)
    return await run_call(node, call, await _caller(request, node))


async def post_function(request: Request, node: Any) -> tuple[int, dict[str, Any]]:
    # Convex's admin-only "any kind of function" endpoint: npm's internal
    # ConvexHttpClient.function(), which `npx convex run` uses.
    fields = await request.read_json_object()
    caller = await _caller(request, node)
    if not caller.admin:
        raise EddyError(ErrorCode.BAD_ADMIN_KEY,
                        "/api/function is for the admin: send `Authorization: Convex <admin key>` "
                        "(eddy dev prints the key).")
    component = fields.get("componentPath")
    if component not in (None, ""):
        raise EddyError(ErrorCode.BAD_REQUEST,
                        f"Eddy has no components: componentPath must be absent or empty, "
                        f"not {component!r}.")
    return await run_call(node, decode_call(None, fields, Format.CLEAN), caller)


async def _caller(request: Request, node: Any) -> Caller:
    caller = parse_caller(request.headers.get("authorization"), node.admin_key)
    return await authenticate(caller, node)


RUN_PREFIX = "/api/run/"
ROUTES: dict[str, dict[str, Handler]] = {
    "/api/query": {"POST": post_call("query"), "GET": get_query},
    "/api/mutation": {"POST": post_call("mutation")},
    "/api/action": {"POST": post_call("action")},
    "/api/query_ts": {"POST": query_ts},
    "/api/query_at_ts": {"POST": query_at_ts},
    "/api/query_batch": {"POST": query_batch},
    "/api/function": {"POST": post_function},
}
RUN_ROUTE = {"POST": post_run}


def find_handler(method: str, path: str) -> Handler:
    """The handler for a request, or `NOT_FOUND` / `METHOD_NOT_ALLOWED`."""
    route = RUN_ROUTE if path.startswith(RUN_PREFIX) else ROUTES.get(path)
    if route is None:
        raise EddyError(ErrorCode.NOT_FOUND, f"No route for {path}.")
    if method not in route:
        allowed = ", ".join(sorted(route))
        raise EddyError(ErrorCode.METHOD_NOT_ALLOWED,
                        f"{path} accepts {allowed}, not {method}.", allowed=allowed)
    return route[method]


# The ASGI app.

def make_app(node_provider: NodeProvider) -> Callable[..., Awaitable[None]]:
    """The ASGI app serving the HTTP API of whatever node the provider returns.

    Args:
        node_provider: called once per request, so the dev server can hand
            requests to a node that reloaded its app.
    """

    # One per app, so the mutation results it keeps outlive every socket.
    sync_server = SyncServer(node_provider)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
        elif scope["type"] == "websocket":
            if sync_path_version(scope["path"])[0]:
                await sync_server.serve(scope, receive, send)
            else:
                # Only the sync protocol speaks WebSocket: a refused
                # handshake (hypercorn answers 403).
                await send({"type": "websocket.close", "code": 1008})
        elif scope["type"] == "http":
            await _serve_http(Request.from_scope(scope, receive), node_provider, send)

    return app


async def _serve_lifespan(receive: Any, send: Any) -> None:
    # Nothing to start or stop: the node's life belongs to whoever opened it.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _serve_http(request: Request, node_provider: NodeProvider, send: Any) -> None:
    headers = _cors_headers(request.headers)
    if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        await _send_preflight(send, request.headers, headers)
        return
    try:
        handler = find_handler(request.method, request.path)
        status, body = await handler(request, node_provider())
        data = codecs.dump_json(body)
    except _Disconnected:
        return
    except EddyError as error:
        status = status_for(error)
        data = codecs.dump_json(codecs.request_error_body(error.code.value, error.message))
        if "allowed" in error.details:
            headers.append((b"allow", error.details["allowed"].encode("latin-1")))
        if status >= 500:
            logger.warning("%s %s failed: %r", request.method, request.path, error)
    except Exception:
        # A bug in Eddy: the caller gets a stable code, the log the traceback.
        logger.exception("%s %s failed", request.method, request.path)
        status = 500
        data = codecs.dump_json(codecs.request_error_body(ErrorCode.INTERNAL.value,
                                                          "Internal server error."))
    await _send_json(send, status, data, headers)


def _cors_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    # Convex's backend mirrors the Origin and allows credentials (PROTOCOL.md 8.1).
    cors = [(b"vary", CORS_VARY)]
    origin = headers.get("origin")
    if origin is not None:
        cors += [(b"access-control-allow-origin", origin.encode("latin-1")),
                 (b"access-control-allow-credentials", b"true")]
    return cors


async def _send_preflight(send: Any, headers: dict[str, str],
                          cors: list[tuple[bytes, bytes]]) -> None:
    # An empty 200, as tower-http's CorsLayer answers a preflight.
    preflight = cors + [(b"access-control-allow-methods", CORS_METHODS),
                        (b"access-control-max-age", CORS_MAX_AGE_S)]
    requested = headers.get("access-control-request-headers")
    if requested is not None:
        preflight.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await send({"type": "http.response.start", "status": 200,
                "headers": preflight + [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _send_json(send: Any, status: int, data: bytes,
                     headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode("ascii")), *headers]})
    await send({"type": "http.response.body", "body": data})
