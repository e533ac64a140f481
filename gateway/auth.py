"""Bearer-token (JWT) authentication and per-topic authorization of the gateway.

``Authenticator(auth).authenticate(header)`` turns an ``Authorization: Bearer <jwt>`` header
into a ``Principal`` (the ``sub`` claim and the token's scopes) or raises ``AuthError(401)``;
``authorize(principal, topic)`` raises ``AuthError(403)`` unless the token holds the scope
``publish:<topic>``. ``mint_token`` makes a token for local use (``headrace gateway token``).

What a token must be to pass (PyJWT, with an explicit algorithm allow-list):

- its header's ``alg`` is one of ``auth.algorithms`` (never ``none``; HMAC algorithms only with
  a ``secret``, public-key ones only with a JWKS, so an HS256 token "signed" with the RSA
  public key's PEM is refused before any key is used);
- with a JWKS, its ``kid`` names a key of the set (a set of one key also accepts a token
  without ``kid``) whose type fits the algorithm; an unknown ``kid`` reloads the set once
  (at most once per ``JWKS_MIN_REFETCH`` seconds, so a flood of made-up ids costs one fetch),
  which is how a rotated-in key starts working;
- the signature verifies; ``exp``, ``iss``, ``aud`` and ``sub`` are present; ``exp`` and
  ``nbf`` hold within ``auth.leeway``; ``iss`` and ``aud`` equal ``auth.issuer`` and
  ``auth.audience``.

A token that passed is remembered (its exact text, ``VERIFIED_MAX`` tokens at most) for
``VERIFIED_TTL`` seconds, never past its ``exp`` + leeway: a client sends the same token with
every request, and a full check costs ~50-130 us of CPU against a dictionary lookup. So a key
removed from the JWKS stops verifying tokens already seen up to ``VERIFIED_TTL`` s later.
Refused tokens are never remembered.

``AuthError.reason`` is one of a few fixed sentences (or names a required claim or the scope
asked for): it never carries key material, token content or a library's exception text.

Threading: one ``Authenticator`` per process; it may be called from several threads at once
(the gateway verifies in worker threads when the keys come from ``jwks_url``). A reload is a
blocking read or HTTP GET (``JWKS_FETCH_TIMEOUT`` s at most) on the calling thread, one at a
time (a lock; threads waiting for it use the keys it loaded); it happens once per
``jwks_cache`` and on unknown key ids (rate-limited as above). A failed reload keeps the
previous keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.jwks import JWKS_FETCH_TIMEOUT, JWKS_MIN_REFETCH, KeySet, fetch_url
from headrace.config.gateway_security import HMAC_ALGORITHMS, GatewayAuth
from headrace.errors import ConfigError

__all__ = [
    "JWKS_FETCH_TIMEOUT",
    "JWKS_MIN_REFETCH",
    "VERIFIED_MAX",
    "VERIFIED_TTL",
    "AuthError",
    "Authenticator",
    "Principal",
    "mint_token",
]


VERIFIED_TTL = 60.0
"""Seconds a verified token is answered from memory (never past its ``exp`` + leeway)."""
VERIFIED_MAX = 10_000
"""Verified tokens kept at most (the oldest is forgotten first)."""
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's ``sub`` and its scopes."""

    sub: str
    scopes: frozenset[str]


class AuthError(Exception):
    """A refused request: ``status`` 401 (who are you?) or 403 (not allowed).

    ``reason`` is safe to send to the client: it leaks no key, no token content, no library
    exception text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _unauthorized(reason: str) -> AuthError:
    return AuthError(401, reason)


class Authenticator:
    """Verifies bearer tokens against one ``GatewayAuth``; see the module docstring."""

    def __init__(
        self,
        auth: GatewayAuth,
        *,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str], bytes] = fetch_url,
    ) -> None:
        """Load the keys. Raises ``ConfigError`` when the JWKS cannot be read or fetched.

        ``clock`` (cache ages) and ``fetch`` (a JWKS URL's bytes) are for tests."""
        self.auth = auth
        self._algorithms = frozenset(auth.algorithms)
        self._leeway = auth.leeway
        self._clock = clock
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._verified_lock = threading.Lock()
        self._secret: bytes | None = None
        self._keys: KeySet | None = None
        if auth.secret is not None:
            self._secret = auth.secret.get_secret_value().encode("utf-8")
        elif auth.jwks_file is not None:
            path = auth.jwks_file
            self._keys = KeySet(path.read_bytes, where=str(path), ttl=auth.jwks_cache, clock=clock)
        elif auth.jwks_url is not None:
            url = auth.jwks_url
            self._keys = KeySet(lambda: fetch(url), where=url, ttl=auth.jwks_cache, clock=clock)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; raises ``AuthError(401)``."""
        if not authorization:
            raise _unauthorized("missing Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Authorization header must be 'Bearer <token>'")
        cached = self._verified.get(token)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        principal, exp = self._verify(token)
        self._remember(token, principal, exp)
        return principal

    def _remember(self, token: str, principal: Principal, exp: float) -> None:
        """Keep a verified token until ``exp`` (+ leeway), at most ``VERIFIED_TTL`` s."""
        ttl = min(VERIFIED_TTL, exp + self._leeway - time.time())
        if ttl <= 0:
            return
        with self._verified_lock:
            verified = self._verified
            verified.pop(token, None)
            while len(verified) >= VERIFIED_MAX:
                del verified[next(iter(verified))]  # the oldest
            verified[token] = (self._clock() + ttl, principal)

    def _verify(self, token: str) -> tuple[Principal, float]:
        """Check ``token`` fully (module docstring); its principal and ``exp``."""
        try:
            header = jwt.get_unverified_header(token)
        except Exception:
            raise _unauthorized("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _unauthorized("token algorithm not accepted")
        key = self._key(alg, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.auth.audience,
                issuer=self.auth.issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("token not yet valid") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("token audience not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in _REQUIRED_CLAIMS else "required"
            raise _unauthorized(f"token lacks the '{claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("invalid token signature") from None
        except Exception:  # DecodeError, InvalidKeyError, a crypto error: say nothing more
            raise _unauthorized("invalid token") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _unauthorized("token has no subject")
        exp = claims["exp"]
        return Principal(sub=sub, scopes=_scopes(claims)), float(exp)

    def authorize(self, principal: Principal, topic: str) -> None:
        """Raise ``AuthError(403)`` unless ``principal`` holds ``publish:<topic>``."""
        if f"publish:{topic}" not in principal.scopes:
            raise AuthError(403, f"token lacks the scope 'publish:{topic}'")

    def _key(self, alg: str, kid: object) -> Any:
        if self._secret is not None:
            return self._secret
        assert self._keys is not None
        if kid is not None and not isinstance(kid, str):
            raise _unauthorized("malformed token")
        found = self._keys.get(kid)
        if found is None:
            raise _unauthorized("token signed with an unknown key")
        if not found.fits(alg):
            raise _unauthorized("token algorithm not accepted")
        return found.jwk.key


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        found.update(scp.split())
    elif isinstance(scp, list):
        found.update(s for s in scp if isinstance(s, str))
    return frozenset(found)


def mint_token(auth: GatewayAuth, *, sub: str, scopes: list[str], ttl: float) -> str:
    """A token for ``sub`` with ``scopes`` (the ``scope`` claim), valid ``ttl`` seconds, that
    this ``auth`` accepts (``iss``, ``aud``, ``iat``, ``nbf``, ``exp`` and a random ``jti``).

    Signs with the HMAC ``secret`` (the first HS* of ``auth.algorithms``), or with the PEM
    private key of ``signing_key_file`` (RS256 for RSA, ES256 for P-256, or the first allowed
    algorithm of its family). Raises ``ConfigError`` when there is no key to sign with (a JWKS
    holds public keys only) or the key file is unusable, ``ValueError`` for a bad ``ttl``/``sub``.
    """
    if ttl <= 0:
        raise ValueError(f"ttl must be > 0 seconds (got {ttl})")
    if not sub:
        raise ValueError("sub must not be empty")
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": sub,
        "scope": " ".join(scopes),
        "iss": auth.issuer,
        "aud": auth.audience,
        "iat": now,
        "nbf": now,
        "exp": now + max(1, round(ttl)),
        "jti": uuid.uuid4().hex,
    }
    if auth.secret is not None:
        hmac_alg = next(a for a in auth.algorithms if a in HMAC_ALGORITHMS)
        return jwt.encode(payload, auth.secret.get_secret_value(), algorithm=hmac_alg)
    if auth.signing_key_file is None:
        raise ConfigError(
            "cannot mint a token: a JWKS holds public keys only; minting works with an HS256 "
            "'secret', or set 'signing_key_file' to the PEM private key of one of the JWKS keys",
            key="gateway.auth",
        )
    key, alg = _signing_key(auth, auth.signing_key_file)
    headers = {"kid": auth.signing_kid} if auth.signing_kid else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def _signing_key(auth: GatewayAuth, path: Path) -> tuple[Any, str]:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"signing_key_file {str(path)!r} is not a readable unencrypted PEM private key "
            f"({type(exc).__name__}); write one with openssl genpkey",
            key="gateway.auth.signing_key_file",
        ) from None
    family: tuple[str, ...]
    if isinstance(key, rsa.RSAPrivateKey):
        family = ("RS", "PS")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        family = ("ES",)
    else:
        raise ConfigError(
            f"signing_key_file {str(path)!r} holds a {type(key).__name__}; use an RSA or EC key",
            key="gateway.auth.signing_key_file",
        )
    alg = next((a for a in auth.algorithms if a[:2] in family), None)
    if alg is None:
        raise ConfigError(
            f"signing_key_file {str(path)!r} is a {family[0]} key but algorithms "
            f"{auth.algorithms} accepts none of its algorithms",
            key="gateway.auth.algorithms",
        )
    return key, alg
