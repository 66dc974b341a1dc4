"""Identities: who a caller is, as `ctx.auth.get_user_identity()` returns it.

Pure functions (no I/O) that build Convex's UserIdentity, in snake_case, from
a verified JWT's claims (`identity_from_claims`, used by actors/auth.py) or
from the UserIdentityAttributes an admin impersonates
(`identity_from_impersonation`, PROTOCOL.md 2.4). An identity is a plain dict
of Eddy values, because it is logged with every commit it makes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from engine.errors import EddyError, ErrorCode

# OIDC standard claims -> Convex's UserIdentity field, in snake_case.
STANDARD_CLAIMS = {
    "name": "name", "given_name": "given_name", "family_name": "family_name",
    "nickname": "nickname", "preferred_username": "preferred_username",
    "profile": "profile_url", "picture": "picture_url", "website": "website_url",
    "email": "email", "email_verified": "email_verified", "gender": "gender",
    "birthdate": "birthday", "zoneinfo": "timezone", "locale": "language",
    "phone_number": "phone_number", "phone_number_verified": "phone_number_verified",
    "address": "address", "updated_at": "updated_at",
}
# JWT registered claims: about the token, not the user, so not in the identity.
REGISTERED_CLAIMS = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}
IDENTITY_FIELDS = {"token_identifier", "subject", "issuer", *STANDARD_CLAIMS.values()}


def identity_from_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """A verified token's claims as Convex's UserIdentity, in snake_case.

    `token_identifier` is `"<iss>|<sub>"`; OIDC standard claims get Convex's
    names (`picture` -> `picture_url`, `locale` -> `language`, ...); other
    claims are custom claims, nested objects flattened to dotted names
    (`properties.id`) as Convex does. JSON numbers become floats, as every
    number does in Convex's JSON (PROTOCOL.md 6).
    """
    identity: dict[str, Any] = {
        "token_identifier": f"{claims['iss']}|{claims['sub']}",
        "subject": claims["sub"],
        "issuer": claims["iss"],
    }
    for claim, value in claims.items():
        if claim in STANDARD_CLAIMS:
            identity[STANDARD_CLAIMS[claim]] = _as_value(value)
        elif claim not in REGISTERED_CLAIMS:
            _add_custom_claim(identity, claim, value)
    return identity


def _add_custom_claim(identity: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _add_custom_claim(identity, f"{name}.{key}", inner)
    elif name not in IDENTITY_FIELDS and not name.startswith(("$", "_")):
        # A custom claim never overrides a field the identity defines.
        identity[name] = _as_value(value)


def _as_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_as_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_value(item) for key, item in value.items()}
    return value


# UserIdentityAttributes (camelCase, PROTOCOL.md 2.4) -> our snake_case names.
IMPERSONATION_FIELDS = {
    "tokenIdentifier": "token_identifier", "issuer": "issuer", "subject": "subject",
    "name": "name", "givenName": "given_name", "familyName": "family_name",
    "nickname": "nickname", "preferredUsername": "preferred_username",
    "profileUrl": "profile_url", "pictureUrl": "picture_url", "websiteUrl": "website_url",
    "email": "email", "emailVerified": "email_verified", "gender": "gender",
    "birthday": "birthday", "timezone": "timezone", "language": "language",
    "phoneNumber": "phone_number", "phoneNumberVerified": "phone_number_verified",
    "address": "address", "updatedAt": "updated_at",
}


def identity_from_impersonation(attributes: Any) -> dict[str, Any]:
    """The identity an admin acts as: Convex's UserIdentityAttributes (camelCase,
    from `Authenticate{tokenType: "Admin", impersonating}` or the HTTP
    `Convex <admin key>:<base64 JSON>` header) in our snake_case.

    `token_identifier` defaults to `"<issuer>|<subject>"`; other fields are
    kept as custom claims.

    Raises:
        EddyError(UNAUTHENTICATED): not an object, or neither
            `tokenIdentifier` nor both `issuer` and `subject` are strings.
    """
    if not isinstance(attributes, dict):
        raise _unauthenticated("malformed", "The impersonated identity must be a JSON object.")
    identity: dict[str, Any] = {}
    for name, value in attributes.items():
        field = IMPERSONATION_FIELDS.get(name, name)
        if not field.startswith(("$", "_")):
            identity[field] = _as_value(value)
    if "token_identifier" not in identity:
        issuer, subject = identity.get("issuer"), identity.get("subject")
        if isinstance(issuer, str) and isinstance(subject, str):
            identity["token_identifier"] = f"{issuer}|{subject}"
    if not isinstance(identity.get("token_identifier"), str):
        raise _unauthenticated("malformed",
                               "The impersonated identity needs `tokenIdentifier`, or "
                               "`issuer` and `subject`, as strings.")
    return identity


def decode_impersonation(encoded: str) -> dict[str, Any]:
    """The identity in the HTTP form `base64(JSON UserIdentityAttributes)`.

    Raises:
        EddyError(UNAUTHENTICATED): not base64 of a JSON object with an identity.
    """
    padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        attributes = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _unauthenticated("malformed", "The impersonated identity after the admin key "
                                            "must be base64 of a JSON object.") from None
    return identity_from_impersonation(attributes)


def _unauthenticated(reason: str, message: str) -> EddyError:
    return EddyError(ErrorCode.UNAUTHENTICATED, message, reason=reason)
