"""JSON Web Key Sets: where a provider's signing keys come from, and their cache.

A `KeySet` holds the public keys of one provider and knows how to load them
again. Its source is one of:

- an inline JWKS (a dict in `auth_config.py`) or a `data:` URI: fixed keys;
- `file:<path>` (relative to the app folder): read from disk, cheaply, so it
  is read again whenever a key is missing;
- an `http(s)://` URL: fetched with a timeout, in a worker thread when the
  caller is async;
- an OIDC domain: `<domain>/.well-known/openid-configuration` names the
  `jwks_uri`, which is then fetched as above.

Rules of the cache:

1. Keys are loaded on first use (URL and OIDC sources) or when the config
   loads (inline, data and file sources, so a broken file is reported at
   start-up).
2. A token whose `kid` is not in the set asks for a reload, since providers
   rotate keys. Reloads of one set happen at most every
   `refresh_interval_ms_min`, so tokens with made-up `kid`s cannot turn the
   node into a traffic generator.
3. Keys older than `jwks_cache_ms_max` are reloaded on next use, so a key the
   provider withdrew stops being trusted. If that reload fails the old keys
   keep serving (an outage of the provider does not log everyone out) and
   the failure is logged.
4. A reload that fails with no keys at hand makes verification fail with
   `UNAUTHENTICATED` naming the source; the next attempt waits out rule 2.

State (each field says when it changes): `keys` (kid -> key) and
`keys_without_kid` are replaced whole by a successful load; `loaded_at_ns`
is set by a successful load; `attempted_at_ns` by every load attempt;
`last_error` by a failed one and cleared by a successful one. A lock
serialises loads, so a stampede of tokens costs one fetch.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable

import jwt

from engine.errors import EddyError, ErrorCode

log = logging.getLogger("eddy.auth")

# A fetch waits at most this long: a provider that does not answer within
# five seconds is down, and a caller is waiting on the answer.
jwks_fetch_timeout_ms = 5_000
# A JWKS document is a few KiB; anything past 1 MiB is not one.
jwks_response_bytes_max = 1024 * 1024
# Rule 2: one reload per key set per ten seconds bounds forced fetches to six
# a minute while still picking up a rotated key promptly.
jwks_refresh_interval_ms_min = 10_000
# Rule 3: an hour, the usual cache lifetime providers announce for their JWKS.
jwks_cache_ms_max = 3_600_000
# Keys a set may hold; providers publish two or three (current and next).
jwks_keys_max = 100

# Algorithms a provider may use (Convex supports RS256 and ES256). Never
# `none` and never HMAC: a shared secret in a public JWKS would be no secret.
SUPPORTED_ALGORITHMS = ("RS256", "ES256")

Fetch = Callable[[str, float], bytes]


def fetch_url(url: str, timeout_s: float) -> bytes:
    """GETs a URL and returns its body (blocking; run it in a worker thread).

    Raises:
        OSError: the server could not be reached, answered with an error
            status, or sent more than `jwks_response_bytes_max` bytes.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body = response.read(jwks_response_bytes_max + 1)
    if len(body) > jwks_response_bytes_max:
        raise OSError(f"the response is larger than {jwks_response_bytes_max} bytes")
    return body


class KeySet:
    """The signing keys of one provider (see the module docstring for the rules).

    Args:
        source: a dict (inline JWKS), `data:...`, `file:<absolute path>`,
            `http(s)://...`, or `oidc:<domain>`.
        clock: the World's clock (`now_ns()`).
        fetch: how URLs are read; tests and the simulator hand in their own.
    """

    def __init__(self, source: Any, clock: Any, fetch: Fetch = fetch_url, *,
                 refresh_interval_ms_min: int = jwks_refresh_interval_ms_min) -> None:
        self.source = source
        self.clock = clock
        self.fetch = fetch
        self.refresh_interval_ms_min = refresh_interval_ms_min
        self.keys: dict[str, jwt.PyJWK] = {}
        self.keys_without_kid: list[jwt.PyJWK] = []
        self.loaded_at_ns: int | None = None
        self.attempted_at_ns: int | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def is_remote(self) -> bool:
        """Whether loading needs the network (and so a worker thread in async code)."""
        return isinstance(self.source, str) and self.source.startswith(
            ("http://", "https://", "oidc:"))

    @property
    def describe(self) -> str:
        if isinstance(self.source, dict):
            return "the inline JWKS"
        if isinstance(self.source, str) and self.source.startswith("data:"):
            return "the data: JWKS"
        return str(self.source).removeprefix("oidc:")

    def needs_load(self, kid: str | None) -> bool:
        """Whether a token with this `kid` should reload the set first (rules 1-3)."""
        now_ns = self.clock.now_ns()
        if self.loaded_at_ns is None:
            return self._may_attempt(now_ns)
        if now_ns - self.loaded_at_ns > jwks_cache_ms_max * 1_000_000 and self.is_remote:
            return self._may_attempt(now_ns)
        if kid is not None and kid not in self.keys and not isinstance(self.source, dict):
            return self._may_attempt(now_ns)
        return False

    def _may_attempt(self, now_ns: int) -> bool:
        if self.attempted_at_ns is None:
            return True
        return now_ns - self.attempted_at_ns >= self.refresh_interval_ms_min * 1_000_000

    def load_if_needed(self, kid: str | None) -> None:
        """Loads the keys from the source if `needs_load(kid)` still holds once
        this caller has the lock (blocking for URL sources: call it from a
        worker thread in async code).

        Never raises for a failed load: the failure is kept in `last_error`,
        and `candidates` reports it when no keys are at hand.
        """
        with self._lock:
            if not self.needs_load(kid):
                return  # Another caller loaded it while this one waited for the lock.
            now_ns = self.clock.now_ns()
            self.attempted_at_ns = now_ns
            try:
                keys, without_kid = parse_jwks(self._read())
            except (OSError, ValueError) as error:
                self.last_error = f"Could not load the JWKS from {self.describe}: {error}"
                log.warning("%s", self.last_error)
                return
            self.keys, self.keys_without_kid = keys, without_kid
            self.loaded_at_ns = now_ns
            self.last_error = None

    def _read(self) -> Any:
        source = self.source
        timeout_s = jwks_fetch_timeout_ms / 1000
        if isinstance(source, dict):
            return source
        if source.startswith("file:"):
            return _parse_json(Path(source.removeprefix("file:")).read_bytes())
        if source.startswith("data:"):
            with urllib.request.urlopen(source) as response:  # No network: decodes the URI.
                return _parse_json(response.read(jwks_response_bytes_max + 1))
        if source.startswith("oidc:"):
            domain = source.removeprefix("oidc:").rstrip("/")
            discovery = _parse_json(self.fetch(f"{domain}/.well-known/openid-configuration",
                                               timeout_s))
            jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise ValueError("its openid-configuration has no http(s) `jwks_uri`")
            return _parse_json(self.fetch(jwks_uri, timeout_s))
        return _parse_json(self.fetch(source, timeout_s))

    def candidates(self, kid: str | None, algorithm: str) -> list[jwt.PyJWK]:
        """The keys that may have signed a token with this `kid` and `alg`.

        Raises:
            EddyError(UNAUTHENTICATED): the set could not be loaded, or holds
                no key for this `kid` and algorithm.
        """
        if self.loaded_at_ns is None:
            raise EddyError(ErrorCode.UNAUTHENTICATED,
                            self.last_error or f"The JWKS from {self.describe} is not loaded.",
                            reason="jwks_unavailable")
        if kid is not None:
            found = [self.keys[kid]] if kid in self.keys else []
        else:
            found = list(self.keys.values()) + self.keys_without_kid
        found = [key for key in found if key.algorithm_name == algorithm]
        if not found:
            named = f"key id (kid) {kid!r}" if kid is not None else "key"
            raise EddyError(ErrorCode.UNAUTHENTICATED,
                            f"No {algorithm} {named} in the JWKS from {self.describe}: "
                            "the token was not signed by this provider's keys.",
                            reason="unknown_key")
        return found


def parse_jwks(document: Any) -> tuple[dict[str, jwt.PyJWK], list[jwt.PyJWK]]:
    """The usable signing keys of a JWKS document: (by kid, without kid).

    Keys for encryption (`use: enc`), of unsupported algorithms (HMAC
    among them) or malformed are skipped, as RFC 7517 section 5 allows.

    Raises:
        ValueError: the document is not a JWKS or holds no usable key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object {"keys": [...]}')
    by_kid: dict[str, jwt.PyJWK] = {}
    without_kid: list[jwt.PyJWK] = []
    for jwk in document["keys"][:jwks_keys_max]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(jwk)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as error:
            log.info("Skipping a JWKS key (kid %r): %s", jwk.get("kid"), error)
            continue
        if key.algorithm_name not in SUPPORTED_ALGORITHMS:
            continue
        kid = jwk.get("kid")
        if isinstance(kid, str):
            by_kid[kid] = key
        else:
            without_kid.append(key)
    if not by_kid and not without_kid:
        raise ValueError(f"it holds no usable {'/'.join(SUPPORTED_ALGORITHMS)} signing key")
    return by_kid, without_kid


def _parse_json(data: bytes) -> Any:
    if len(data) > jwks_response_bytes_max:
        raise ValueError(f"it is larger than {jwks_response_bytes_max} bytes")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"it is not JSON ({error})") from None
