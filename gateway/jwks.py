"""A JSON Web Key Set for the gateway's token checks: loaded, cached, reloaded on rotation.

``KeySet(load, where=..., ttl=..., clock=...)`` holds the public signing keys of a JWKS
(RSA and EC keys with ``use: sig`` or no ``use``; HMAC ``oct`` keys and keys this PyJWT
cannot read are skipped). ``get(kid)`` returns the ``SigningKey`` of that key id (a set of a
single key also answers ``kid`` None), reloading the set after ``ttl`` seconds and, for an
unknown ``kid``, at most once per ``JWKS_MIN_REFETCH`` seconds: a rotated-in key starts
working within seconds, a flood of made-up ids costs one fetch per interval.
``SigningKey.fits(alg)`` says whether a token's algorithm may be verified with the key (its
type, the algorithm's curve, and the ``alg`` it declares, if any).

Thread-safe: reloads are serialized by a lock and re-checked under it.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from headrace.errors import ConfigError

__all__ = ["JWKS_FETCH_TIMEOUT", "JWKS_MIN_REFETCH", "KeySet", "SigningKey", "fetch_url"]

log = logging.getLogger(__name__)

JWKS_MIN_REFETCH = 10.0
"""Seconds between two reloads of the JWKS caused by unknown key ids."""
JWKS_FETCH_TIMEOUT = 5.0
"""Seconds a JWKS fetch may take."""
_JWKS_MAX_BYTES = 1 << 20
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


@dataclass(frozen=True)
class SigningKey:
    """A JWKS key and the ``alg`` it declares (None: any algorithm of its type)."""

    jwk: jwt.PyJWK
    alg: str | None

    def fits(self, alg: str) -> bool:
        """True when a token with ``alg`` may be verified with this key."""
        if self.alg is not None and self.alg != alg:
            return False
        key = self.jwk.key
        if alg[:2] in ("RS", "PS"):
            return isinstance(key, rsa.RSAPublicKey)
        if alg[:2] == "ES":
            return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[alg]
        return False


class KeySet:
    """A JWKS, loaded by ``load`` (bytes of the JSON document), reloaded after ``ttl`` seconds
    and on unknown key ids (at most once per ``min_refetch`` seconds).

    Raises ``ConfigError`` naming ``where`` when the first load fails; later failures keep
    the previous keys (logged)."""

    def __init__(
        self,
        load: Callable[[], bytes],
        *,
        where: str,
        ttl: float,
        clock: Callable[[], float],
        min_refetch: float = JWKS_MIN_REFETCH,
    ) -> None:
        self._load = load
        self._where = where
        self._ttl = ttl
        self._clock = clock
        self._min_refetch = min_refetch
        self._lock = threading.Lock()
        try:
            self._keys = self._read()
        except Exception as exc:
            raise ConfigError(
                f"cannot load the JWKS from {where}: {type(exc).__name__}: {exc}; "
                "check gateway.auth.jwks_file / jwks_url",
                key="gateway.auth",
            ) from None
        self._loaded_at = clock()
        self._last_reload = self._loaded_at

    def _read(self) -> dict[str | None, SigningKey]:
        data = json.loads(self._load())
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("not a JWKS: no 'keys' list")
        keys: dict[str | None, SigningKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError:  # a key type or curve this PyJWT cannot use
                continue
            if not isinstance(jwk.key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
                continue  # an HMAC ("oct") or private key has no place in a public key set
            declared = entry.get("alg")
            keys[jwk.key_id] = SigningKey(jwk, declared if isinstance(declared, str) else None)
        if not keys:
            raise ValueError("the JWKS has no usable signing key")
        return keys

    def _reload(self) -> None:
        self._last_reload = self._clock()
        try:
            self._keys = self._read()
            self._loaded_at = self._last_reload
        except Exception as exc:  # keep the previous keys
            log.warning(
                "gateway: reloading the JWKS from %s failed (%s); keeping the previous keys",
                self._where,
                type(exc).__name__,
            )

    def _stale(self) -> bool:
        now = self._clock()
        return now - self._loaded_at >= self._ttl and now - self._last_reload >= self._min_refetch

    def get(self, kid: str | None) -> SigningKey | None:
        """The key named ``kid`` (or the only key when ``kid`` is None), or None.

        Thread-safe: reloads are serialized by a lock and re-checked under it, so threads
        that wait for another's reload use its keys instead of fetching again."""
        if self._stale():
            with self._lock:
                if self._stale():
                    self._reload()
        key = self._find(kid)
        if key is None:
            with self._lock:
                key = self._find(kid)  # another thread may have reloaded meanwhile
                if key is None and self._clock() - self._last_reload >= self._min_refetch:
                    self._reload()
                    key = self._find(kid)
        return key

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


def fetch_url(url: str) -> bytes:
    """The body of ``url`` (at most 1 MiB, ``JWKS_FETCH_TIMEOUT`` s): a JWKS endpoint."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as response:  # noqa: S310
        body: bytes = response.read(_JWKS_MAX_BYTES + 1)
    if len(body) > _JWKS_MAX_BYTES:
        raise ValueError(f"the JWKS is larger than {_JWKS_MAX_BYTES} bytes")
    return body
