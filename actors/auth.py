"""JWT authentication: the app's trusted providers and the token verifier.

An app trusts the providers listed in `APP_DIR/auth_config.py` (Convex's
`auth.config.ts`, in snake_case):

    providers = [
        # An OpenID Connect provider: `iss` is the domain, keys by discovery.
        {"domain": "https://issuer.example", "application_id": "my-app"},
        # Any JWT issuer with a JWKS (Convex's customJwt).
        {"type": "custom_jwt", "issuer": "https://auth.example",
         "application_id": "my-app", "jwks": "file:keys.json", "algorithm": "RS256"},
    ]

How a token is verified (`AuthConfig.verify_token`), rule by rule:

1. It must be a compact JWS whose header and payload are JSON objects
   (else "malformed").
2. Its `iss` picks the providers whose issuer (an OIDC provider's domain)
   equals it exactly (else "unknown issuer"). Of those, the first whose
   application id is in `aud`, or that names none (custom_jwt only), is used
   (else "wrong audience"), as Convex does.
3. The header's `alg` must be one the provider allows: RS256 or ES256.
4. The key is the provider's key with the header's `kid` (actors/jwks.py
   loads, caches and reloads key sets).
5. PyJWT checks the signature, issuer and audience, and that `iss`, `sub`
   and `exp` are present.
6. `exp` and `nbf` are checked here against the World's clock with
   `clock_skew_ms_max` of leeway, so a simulated node decides expiry by
   simulated time and the sync session can recheck expiry mid-session.
7. The claims become Convex's UserIdentity in snake_case
   (`engine.identity.identity_from_claims`, re-exported here with the
   impersonation helpers).

Every failure is `EddyError(UNAUTHENTICATED)` with a message for humans and
a `reason` detail for code: malformed, unknown_issuer, wrong_audience,
bad_algorithm, unknown_key, jwks_unavailable, bad_signature, expired,
not_yet_valid, no_providers.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import trio

from actors.app import AUTH_CONFIG_FILE, AppLoadError
from actors.jwks import (SUPPORTED_ALGORITHMS, Fetch, KeySet, fetch_url,
                         jwks_refresh_interval_ms_min)
from actors.world import SystemClock
from engine.errors import EddyError, ErrorCode
from engine.identity import (decode_impersonation, identity_from_claims,
                             identity_from_impersonation)

__all__ = ["AuthConfig", "Provider", "VerifiedToken", "decode_impersonation",
           "identity_from_claims", "identity_from_impersonation", "load_auth_config"]

# Leeway for `exp` and `nbf`: clocks of issuer and node may disagree by a few
# seconds; five covers NTP-synced machines without stretching a token's life.
clock_skew_ms_max = 5_000
# Tokens seen in the wild are 1-4 KiB; 64 KiB stops pathological input
# before it is parsed.
token_chars_max = 65_536

PROVIDER_KEYS = {"type", "domain", "issuer", "application_id", "jwks", "algorithm"}
PROVIDER_TYPES = ("oidc", "custom_jwt")


@dataclass(frozen=True)
class Provider:
    """One trusted provider (rule 2). `kind` is "oidc" or "custom_jwt"."""

    kind: str
    issuer: str
    application_id: str | None
    algorithms: tuple[str, ...]
    keys: KeySet


@dataclass(frozen=True)
class VerifiedToken:
    """A verified token: the identity, and when it stops being valid.

    `expires_at_ms` is the token's `exp` in milliseconds since the epoch;
    `AuthConfig.is_expired` tells whether that moment has passed.
    """

    identity: dict[str, Any]
    expires_at_ms: int


class AuthConfig:
    """The providers an app trusts, and the verifier (module docstring).

    Made by `load_auth_config`; a node without `auth_config.py` has one with
    no providers, which refuses every token.
    """

    def __init__(self, providers: list[Provider], clock: Any) -> None:
        self.providers = providers
        self.clock = clock

    def verify(self, token: str) -> dict[str, Any]:
        """The identity a token proves (blocking when keys must be fetched).

        Raises:
            EddyError(UNAUTHENTICATED): the token is not valid; `details["reason"]` says why.
        """
        return self.verify_token(token).identity

    def verify_token(self, token: str) -> VerifiedToken:
        """Like `verify`, keeping the token's expiry. Blocks on the network
        when a URL key set must be (re)loaded: use `verify_token_async` in trio code."""
        provider, header = self._select(token)
        kid = header.get("kid")
        if provider.keys.needs_load(kid):
            provider.keys.load_if_needed(kid)
        return self._check(token, provider, header)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """`verify` for trio code; see `verify_token_async`."""
        return (await self.verify_token_async(token)).identity

    async def verify_token_async(self, token: str) -> VerifiedToken:
        """Verifies a token, fetching keys in a worker thread if needed.

        A checkpoint only when keys are fetched (at most
        `jwks.jwks_fetch_timeout_ms` per request). Cancelling it abandons
        the fetch; the thread finishes it and the keys are cached for the
        next caller.

        Raises:
            EddyError(UNAUTHENTICATED): as `verify`.
        """
        provider, header = self._select(token)
        kid = header.get("kid")
        if provider.keys.needs_load(kid):
            if provider.keys.is_remote:
                await trio.to_thread.run_sync(provider.keys.load_if_needed, kid,
                                              abandon_on_cancel=True)
            else:
                provider.keys.load_if_needed(kid)
        return self._check(token, provider, header)

    def now_ms(self) -> int:
        """The World's time, in milliseconds since the epoch."""
        return self.clock.now_ns() // 1_000_000

    def is_expired(self, expires_at_ms: int) -> bool:
        """Whether a token that expires at `expires_at_ms` has expired by now (rule 6)."""
        return self.now_ms() >= expires_at_ms + clock_skew_ms_max

    def _select(self, token: Any) -> tuple[Provider, dict[str, Any]]:
        """Rules 1-3: the provider for a token, and the token's header."""
        if not self.providers:
            raise _unauthenticated("no_providers",
                                   "This app accepts no tokens: it has no auth providers "
                                   f"(declare them in {AUTH_CONFIG_FILE}).")
        header, claims = _unverified_parts(token)
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise _unauthenticated("malformed", "The token has no `iss` (issuer) claim.")
        matching = [p for p in self.providers if p.issuer == issuer]
        if not matching:
            trusted = ", ".join(sorted({p.issuer for p in self.providers}))
            raise _unauthenticated("unknown_issuer",
                                   f"The token's issuer {issuer!r} is not a trusted auth "
                                   f"provider (trusted: {trusted}).")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        provider = next((p for p in matching
                         if p.application_id is None or p.application_id in audiences), None)
        if provider is None:
            expected = " or ".join(repr(p.application_id) for p in matching)
            raise _unauthenticated("wrong_audience",
                                   f"The token's audience {audience!r} does not include the "
                                   f"application id {expected}.")
        if not isinstance(header.get("kid", ""), str):
            raise _unauthenticated("malformed", "The token's `kid` header must be a string.")
        algorithm = header.get("alg")
        if algorithm not in provider.algorithms:
            raise _unauthenticated("bad_algorithm",
                                   f"The token is signed with {algorithm!r}; the provider "
                                   f"{provider.issuer} accepts {', '.join(provider.algorithms)}.")
        return provider, header

    def _check(self, token: str, provider: Provider, header: dict[str, Any]) -> VerifiedToken:
        """Rules 4-7."""
        keys = provider.keys.candidates(header.get("kid"), header["alg"])
        claims = None
        for key in keys:
            try:
                claims = _decode(token, key, provider)
                break
            except jwt.InvalidSignatureError:
                continue
        if claims is None:
            raise _unauthenticated("bad_signature",
                                   "The token's signature does not match the provider's key: "
                                   "it was not issued by this provider, or it was altered.")
        expires_at_ms = _timestamp_ms(claims, "exp")
        now_ms = self.now_ms()
        if now_ms >= expires_at_ms + clock_skew_ms_max:
            raise _unauthenticated("expired",
                                   f"The token expired {(now_ms - expires_at_ms) // 1000} s ago; "
                                   "get a fresh one from the auth provider.")
        if "nbf" in claims and now_ms + clock_skew_ms_max < _timestamp_ms(claims, "nbf"):
            raise _unauthenticated("not_yet_valid", "The token is not valid yet (`nbf`).")
        return VerifiedToken(identity_from_claims(claims), expires_at_ms)


def _unverified_parts(token: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str) or not token:
        raise _unauthenticated("malformed", "The token must be a non-empty string.")
    if len(token) > token_chars_max:
        raise _unauthenticated("malformed", f"The token is longer than {token_chars_max} characters.")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise _unauthenticated("malformed", f"The token is not a valid JWT: {error}.") from None
    if not isinstance(claims, dict):
        raise _unauthenticated("malformed", "The token's payload is not a JSON object.")
    return header, claims


def _decode(token: str, key: jwt.PyJWK, provider: Provider) -> dict[str, Any]:
    """PyJWT's checks (rule 5); time claims are left to rule 6."""
    options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,
               "verify_aud": provider.application_id is not None,
               "require": ["iss", "sub", "exp"]}
    try:
        return jwt.decode(token, key, algorithms=[key.algorithm_name], options=options,
                          audience=provider.application_id, issuer=provider.issuer)
    except jwt.InvalidSignatureError:
        raise
    except jwt.MissingRequiredClaimError as error:
        raise _unauthenticated("malformed", f"The token lacks the {error.claim!r} claim.") from None
    except jwt.InvalidAudienceError as error:
        raise _unauthenticated("wrong_audience", f"The token's audience is wrong: {error}.") from None
    except jwt.InvalidIssuerError as error:
        raise _unauthenticated("unknown_issuer", f"The token's issuer is wrong: {error}.") from None
    except jwt.PyJWTError as error:
        raise _unauthenticated("malformed", f"The token is not valid: {error}.") from None


def _timestamp_ms(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _unauthenticated("malformed", f"The token's `{name}` claim must be a number of "
                                            "seconds since the epoch.")
    return int(value * 1000)


def _unauthenticated(reason: str, message: str) -> EddyError:
    return EddyError(ErrorCode.UNAUTHENTICATED, message, reason=reason)


# Loading auth_config.py.

def load_auth_config(app_dir: str | Path, *, clock: Any = None, fetch: Fetch = fetch_url,
                     refresh_interval_ms_min: int = jwks_refresh_interval_ms_min
                     ) -> AuthConfig | None:
    """Loads `APP_DIR/auth_config.py`, or returns None when the app has none.

    File and inline key sets are read now, so a broken one fails the load;
    URL and OIDC key sets are fetched on first use.

    Args:
        clock: the World's clock; the production clock when None.
        fetch: reads a URL (`fetch(url, timeout_s) -> bytes`).

    Raises:
        AppLoadError: the file fails to run, or `providers` is not a list of
            valid providers (the message says which field is wrong).
    """
    clock = clock or SystemClock()
    root = Path(app_dir)
    path = root / AUTH_CONFIG_FILE
    if not path.is_file():
        return None
    namespace = _run_config(path)
    entries = namespace.get("providers")
    if not isinstance(entries, (list, tuple)):
        raise AppLoadError(str(path), None, "auth_config.py must define `providers = [...]`, "
                                            f"found {type(entries).__name__}")
    providers = []
    for index, entry in enumerate(entries):
        try:
            providers.append(_provider(entry, root.resolve(), clock, fetch, refresh_interval_ms_min))
        except ValueError as error:
            raise AppLoadError(str(path), None, f"providers[{index}]: {error}") from None
    return AuthConfig(providers, clock)


def _run_config(path: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "_eddy_auth_config", "__file__": str(path)}
    try:
        exec(compile(path.read_text(), str(path), "exec", dont_inherit=True), namespace)
    except (Exception, SystemExit) as error:
        line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
        for frame, frame_line in traceback.walk_tb(error.__traceback__):
            if frame.f_code.co_filename == str(path):
                line = frame_line
        raise AppLoadError(str(path), line, f"{type(error).__name__}: {error}") from error
    return namespace


def _provider(entry: Any, root: Path, clock: Any, fetch: Fetch,
              refresh_interval_ms_min: int) -> Provider:
    if not isinstance(entry, dict):
        raise ValueError("a provider is a dict")
    unknown = sorted(set(entry) - PROVIDER_KEYS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(PROVIDER_KEYS))})")
    kind = entry.get("type", "oidc")
    if kind not in PROVIDER_TYPES:
        raise ValueError(f"type must be one of {PROVIDER_TYPES}, not {kind!r}")
    if kind == "oidc":
        issuer = _string(entry, "domain")
        application_id = _string(entry, "application_id")
    else:
        issuer = _string(entry, "issuer")
        application_id = _string(entry, "application_id") if "application_id" in entry else None
    algorithm = entry.get("algorithm")
    if algorithm is None and kind == "custom_jwt":
        raise ValueError("a custom_jwt provider needs `algorithm` (RS256 or ES256)")
    if algorithm is not None and algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {SUPPORTED_ALGORITHMS}, not {algorithm!r}")
    algorithms = (algorithm,) if algorithm else SUPPORTED_ALGORITHMS
    source = _key_source(entry.get("jwks"), kind, issuer, root)
    keys = KeySet(source, clock, fetch, refresh_interval_ms_min=refresh_interval_ms_min)
    if not keys.is_remote:
        keys.load_if_needed(None)
        if keys.last_error:
            raise ValueError(keys.last_error)
    return Provider(kind, issuer, application_id, algorithms, keys)


def _string(entry: dict[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{name}` must be a non-empty string")
    return value


def _key_source(jwks: Any, kind: str, issuer: str, root: Path) -> Any:
    if jwks is None:
        if kind == "custom_jwt":
            raise ValueError('a custom_jwt provider needs `jwks` ("file:keys.json", a URL or a dict)')
        if not issuer.startswith(("https://", "http://")):
            raise ValueError("an OIDC `domain` must be an http(s) URL")
        return f"oidc:{issuer}"
    if isinstance(jwks, dict):
        return jwks
    if not isinstance(jwks, str):
        raise ValueError("`jwks` must be a string or a dict")
    if jwks.startswith("file:"):
        return "file:" + str((root / jwks.removeprefix("file:")).resolve())
    if jwks.startswith(("https://", "http://", "data:")):
        return jwks
    raise ValueError(f'`jwks` must be "file:<path>", an http(s) URL, a data: URI or a dict, '
                     f"not {jwks!r}")
