"""A throw-away JWT issuer for the auth tests: an RS256 key, its JWKS file and
`auth_config.py` in an app folder, and valid, expired and forged tokens.

The config follows actors/auth.py: a `custom_jwt` provider with the issuer,
the application id (the tokens' `aud`), `jwks: "file:keys.json"` and RS256.
A forged token is signed by a different key under the trusted key's `kid`,
so only the signature check can refuse it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.eddy.test"
APPLICATION_ID = "eddy-e2e"
KEY_ID = "e2e-key-1"
SUBJECT = "user-123"
TOKEN_LIFETIME_S = 3600  # The npm client refreshes at exp - iat - 10 s: never during a test.

AUTH_CONFIG = f'''
providers = [
    {{"type": "custom_jwt", "issuer": "{ISSUER}", "application_id": "{APPLICATION_ID}",
      "jwks": "file:keys.json", "algorithm": "RS256"}},
]
'''


@dataclass
class Tokens:
    valid: str
    expired: str
    forged: str

    def as_params(self) -> dict[str, str]:
        return {"valid": self.valid, "expired": self.expired, "forged": self.forged}


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": KEY_ID, "alg": "RS256", "use": "sig"}


def sign(key: rsa.RSAPrivateKey, *, issued_at_s: float, lifetime_s: float) -> str:
    claims = {"iss": ISSUER, "sub": SUBJECT, "aud": APPLICATION_ID, "name": "Ada Lovelace",
              "iat": int(issued_at_s), "exp": int(issued_at_s + lifetime_s)}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})


def install_issuer(app_dir: Path) -> Tokens:
    """Writes keys.json and auth_config.py into app_dir; returns tokens."""
    key = new_key()
    (app_dir / "keys.json").write_text(json.dumps({"keys": [public_jwk(key)]}))
    (app_dir / "auth_config.py").write_text(AUTH_CONFIG)
    now_s = time.time()
    return Tokens(
        valid=sign(key, issued_at_s=now_s - 5, lifetime_s=TOKEN_LIFETIME_S),
        # Expired an hour ago, far beyond any clock-skew leeway.
        expired=sign(key, issued_at_s=now_s - 2 * TOKEN_LIFETIME_S, lifetime_s=TOKEN_LIFETIME_S),
        forged=sign(new_key(), issued_at_s=now_s - 5, lifetime_s=TOKEN_LIFETIME_S),
    )
