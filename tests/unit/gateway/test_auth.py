"""Gateway token checks: every refusal of issue #18 is a 401/403 whose reason leaks nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from gateway.auth import JWKS_MIN_REFETCH, Authenticator, AuthError, Principal, mint_token
from headrace.config.gateway_security import GatewayAuth
from headrace.errors import ConfigError

SECRET = "s3cr3t-" + "x" * 40
ISS = "https://issuer.example"
AUD = "headrace-gateway"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(public: Any, kid: str) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return {**data, "kid": kid, "use": "sig"}


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "svc",
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scope": "publish:orders publish:clicks",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs_auth(**over: Any) -> GatewayAuth:
    return GatewayAuth.model_validate({"secret": SECRET, "issuer": ISS, "audience": AUD, **over})


def hs_token(**over: Any) -> str:
    return jwt.encode(claims(**over), SECRET, algorithm="HS256")


@pytest.fixture
def rs(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Authenticator:
    path = write_jwks(tmp_path / "jwks.json", jwk(rsa_key.public_key(), "k1"))
    return Authenticator(GatewayAuth(jwks_file=path, issuer=ISS, audience=AUD))


def rs_token(key: Any, kid: str | None = "k1", alg: str = "RS256", **over: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**over), key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(auth: Authenticator, header: str | None, status: int = 401) -> str:
    with pytest.raises(AuthError) as info:
        auth.authenticate(header)
    assert info.value.status == status
    reason = info.value.reason
    # Leaks nothing: no key, no piece of the token, no library text.
    assert SECRET not in reason
    if header and header.startswith("Bearer "):
        for part in header.removeprefix("Bearer ").split("."):
            if len(part) >= 6:
                assert part not in reason
    return reason


# --- accepted ------------------------------------------------------------------------------


def test_a_valid_hs256_token_gives_its_subject_and_scopes() -> None:
    auth = Authenticator(hs_auth())
    principal = auth.authenticate("Bearer " + hs_token())
    assert principal == Principal("svc", frozenset({"publish:orders", "publish:clicks"}))
    auth.authorize(principal, "orders")


def test_scp_as_a_list_gives_scopes_too() -> None:
    principal = Authenticator(hs_auth()).authenticate(
        "bearer " + hs_token(scope=None, scp=["publish:a", "publish:b"])
    )
    assert principal.scopes == {"publish:a", "publish:b"}


def test_rs256_and_es256_tokens_verify_against_a_jwks(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_jwks(
        tmp_path / "jwks.json", jwk(rsa_key.public_key(), "r1"), jwk(ec_key.public_key(), "e1")
    )
    auth = Authenticator(GatewayAuth(jwks_file=path, issuer=ISS, audience=AUD))
    assert auth.authenticate("Bearer " + rs_token(rsa_key, "r1")).sub == "svc"
    assert auth.authenticate("Bearer " + rs_token(ec_key, "e1", "ES256")).sub == "svc"
    # an RSA key id with an ES256 token: the key does not fit the algorithm
    reason = refused(auth, "Bearer " + rs_token(ec_key, "r1", "ES256"))
    assert reason == "token algorithm not accepted"


def test_leeway_accepts_a_token_expired_within_it() -> None:
    auth = Authenticator(hs_auth(leeway="30s"))
    auth.authenticate("Bearer " + hs_token(exp=int(time.time()) - 10))


# --- each refusal of issue #18 -------------------------------------------------------------


def test_no_header() -> None:
    assert refused(Authenticator(hs_auth()), None) == "missing Authorization header"
    assert refused(Authenticator(hs_auth()), "") == "missing Authorization header"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer   "])
def test_not_bearer(header: str) -> None:
    assert (
        refused(Authenticator(hs_auth()), header) == "Authorization header must be 'Bearer <token>'"
    )


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "e30.e30.", "!!!.???.###"])
def test_garbage_token(token: str) -> None:
    reason = refused(Authenticator(hs_auth()), "Bearer " + token)
    assert reason in ("malformed token", "token algorithm not accepted")


def test_alg_none_is_refused_by_both_key_sources(rs: Authenticator) -> None:
    token = jwt.encode(claims(), cast(Any, None), algorithm="none")
    assert token.endswith(".")
    assert refused(Authenticator(hs_auth()), "Bearer " + token) == "token algorithm not accepted"
    assert refused(rs, "Bearer " + token) == "token algorithm not accepted"
    # 'None', 'NONE': no spelling gets through
    for alg in ("None", "NONE", "nOnE"):
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        crafted = f"{header}.{b64(json.dumps(claims()).encode())}."
        assert refused(rs, "Bearer " + crafted) == "token algorithm not accepted"


def test_key_confusion_hs256_signed_with_the_rsa_public_pem(
    rs: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    assert refused(rs, f"Bearer {header}.{payload}.{signature}") == "token algorithm not accepted"


def test_key_confusion_is_refused_by_configuration(tmp_path: Path) -> None:
    path = write_jwks(tmp_path / "jwks.json")
    with pytest.raises(ValidationError, match="key confusion"):
        GatewayAuth(jwks_file=path, issuer=ISS, audience=AUD, algorithms=["RS256", "HS256"])
    with pytest.raises(ValidationError, match="need a public key"):
        hs_auth(algorithms=["RS256"])
    with pytest.raises(ValidationError):
        hs_auth(algorithms=["none"])


def test_expired(rs: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    assert refused(Authenticator(hs_auth()), "Bearer " + hs_token(exp=now - 120)) == (
        "token expired"
    )
    assert refused(rs, "Bearer " + rs_token(rsa_key, exp=now - 120)) == "token expired"


def test_not_yet_valid() -> None:
    token = hs_token(nbf=int(time.time()) + 3600)
    assert refused(Authenticator(hs_auth()), "Bearer " + token) == "token not yet valid"


def test_wrong_issuer() -> None:
    token = hs_token(iss="https://evil.example")
    assert refused(Authenticator(hs_auth()), "Bearer " + token) == "token issuer not accepted"


def test_wrong_audience() -> None:
    token = hs_token(aud="another-service")
    assert refused(Authenticator(hs_auth()), "Bearer " + token) == "token audience not accepted"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_a_missing_required_claim(claim: str) -> None:
    reason = refused(Authenticator(hs_auth()), "Bearer " + hs_token(**{claim: None}))
    assert reason == f"token lacks the '{claim}' claim"


def test_tampered_payload(rs: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    for auth, token in (
        (Authenticator(hs_auth()), hs_token()),
        (rs, rs_token(rsa_key)),
    ):
        header, _, signature = token.split(".")
        forged = b64(json.dumps(claims(sub="admin", scope="publish:everything")).encode())
        reason = refused(auth, f"Bearer {header}.{forged}.{signature}")
        assert reason == "invalid token signature"


def test_tampered_signature(rs: Authenticator, rsa_key: rsa.RSAPrivateKey) -> None:
    for auth, token in (
        (Authenticator(hs_auth()), hs_token()),
        (rs, rs_token(rsa_key)),
    ):
        header, payload, signature = token.split(".")
        middle = len(signature) // 2
        flipped = "A" if signature[middle] != "A" else "B"
        bad = signature[:middle] + flipped + signature[middle + 1 :]
        assert refused(auth, f"Bearer {header}.{payload}.{bad}") == "invalid token signature"


def test_signed_with_another_secret() -> None:
    token = jwt.encode(claims(), "another-" + "y" * 40, algorithm="HS256")
    assert refused(Authenticator(hs_auth()), "Bearer " + token) == "invalid token signature"


def test_unknown_kid(rs: Authenticator, rsa_key2: rsa.RSAPrivateKey) -> None:
    token = rs_token(rsa_key2, kid="k2")
    assert refused(rs, "Bearer " + token) == "token signed with an unknown key"


def test_signed_by_another_key_under_a_known_kid(
    rs: Authenticator, rsa_key2: rsa.RSAPrivateKey
) -> None:
    assert refused(rs, "Bearer " + rs_token(rsa_key2, kid="k1")) == "invalid token signature"


def test_missing_scope_is_403() -> None:
    auth = Authenticator(hs_auth())
    principal = auth.authenticate("Bearer " + hs_token(scope="publish:clicks"))
    with pytest.raises(AuthError) as info:
        auth.authorize(principal, "orders")
    assert info.value.status == 403
    assert info.value.reason == "token lacks the scope 'publish:orders'"
    # a scope is exact: no prefix or wildcard matching
    principal = auth.authenticate("Bearer " + hs_token(scope="publish:order publish:*"))
    with pytest.raises(AuthError):
        auth.authorize(principal, "orders")


# --- JWKS caching and rotation -------------------------------------------------------------


class Fetch:
    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.fail = False

    def __call__(self, url: str) -> bytes:
        self.calls += 1
        if self.fail:
            raise OSError("connection refused")
        return json.dumps({"keys": self.keys}).encode()


def url_auth(fetch: Fetch, clock: Clock, **over: Any) -> Authenticator:
    config = GatewayAuth(jwks_url="https://issuer.example/jwks", issuer=ISS, audience=AUD, **over)
    return Authenticator(config, clock=clock, fetch=fetch)


def test_rotation_an_unknown_kid_refetches_once_rate_limited(
    rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey
) -> None:
    clock = Clock()
    fetch = Fetch(jwk(rsa_key.public_key(), "k1"))
    auth = url_auth(fetch, clock)
    assert fetch.calls == 1
    new = "Bearer " + rs_token(rsa_key2, kid="k2")
    # A flood of unknown key ids within JWKS_MIN_REFETCH costs at most one fetch.
    clock.now += JWKS_MIN_REFETCH
    for _ in range(50):
        refused(auth, new)
    assert fetch.calls == 2
    # The issuer rotates k2 in: after the refetch interval, the next unknown kid fetches it.
    fetch.keys.append(jwk(rsa_key2.public_key(), "k2"))
    clock.now += 1
    refused(auth, new)
    assert fetch.calls == 2
    clock.now += JWKS_MIN_REFETCH
    assert auth.authenticate(new).sub == "svc"
    assert fetch.calls == 3
    assert auth.authenticate("Bearer " + rs_token(rsa_key, kid="k1")).sub == "svc"
    assert fetch.calls == 3


def test_the_jwks_is_reloaded_after_jwks_cache_and_kept_when_a_reload_fails(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    clock = Clock()
    fetch = Fetch(jwk(rsa_key.public_key(), "k1"))
    auth = url_auth(fetch, clock, jwks_cache="60s")
    token = "Bearer " + rs_token(rsa_key)
    auth.authenticate(token)
    clock.now += 59
    auth.authenticate(token)
    assert fetch.calls == 1
    clock.now += 2
    fetch.fail = True
    auth.authenticate(token)  # the reload failed: the previous keys still verify
    assert fetch.calls == 2
    # a retired key disappears from the set at the next reload
    fetch.fail = False
    fetch.keys = []
    fetch.keys.append({"kty": "oct", "k": "AAAA"})  # an HMAC key is no public key: ignored
    clock.now += 61
    auth.authenticate(token)
    assert fetch.calls == 3


def test_a_token_without_kid_uses_a_single_key_set(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey
) -> None:
    one = write_jwks(tmp_path / "one.json", jwk(rsa_key.public_key(), "k1"))
    auth = Authenticator(GatewayAuth(jwks_file=one, issuer=ISS, audience=AUD))
    assert auth.authenticate("Bearer " + rs_token(rsa_key, kid=None)).sub == "svc"
    two = write_jwks(
        tmp_path / "two.json", jwk(rsa_key.public_key(), "k1"), jwk(rsa_key2.public_key(), "k2")
    )
    auth = Authenticator(GatewayAuth(jwks_file=two, issuer=ISS, audience=AUD))
    assert refused(auth, "Bearer " + rs_token(rsa_key, kid=None)) == (
        "token signed with an unknown key"
    )


def test_an_unreadable_jwks_stops_at_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=r"cannot load the JWKS from .*missing.json"):
        Authenticator(GatewayAuth(jwks_file=path, issuer=ISS, audience=AUD))
    fetch = Fetch()
    fetch.fail = True
    with pytest.raises(ConfigError, match=r"https://issuer\.example/jwks"):
        url_auth(fetch, Clock())


# --- configuration ---------------------------------------------------------------------------


def test_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one key source"):
        GatewayAuth(issuer=ISS, audience=AUD)
    with pytest.raises(ValidationError, match="exactly one key source"):
        hs_auth(jwks_url="https://issuer.example/jwks")


def test_a_short_secret_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match=r"at least 32 characters.*secrets.token_urlsafe"):
        GatewayAuth.model_validate({"secret": "short", "issuer": ISS, "audience": AUD})


def test_issuer_and_audience_are_required() -> None:
    with pytest.raises(ValidationError, match="issuer"):
        GatewayAuth.model_validate({"secret": SECRET, "audience": AUD})
    with pytest.raises(ValidationError, match="audience"):
        GatewayAuth.model_validate({"secret": SECRET, "issuer": ISS})


def test_the_secret_never_shows_in_repr() -> None:
    assert SECRET not in repr(hs_auth())
    assert SECRET not in str(hs_auth())


def test_default_algorithms_follow_the_key_source(tmp_path: Path) -> None:
    assert hs_auth().algorithms == ["HS256"]
    jwks = GatewayAuth(jwks_file=tmp_path / "j.json", issuer=ISS, audience=AUD)
    assert jwks.algorithms == ["RS256", "ES256"]


# --- minting ---------------------------------------------------------------------------------


def test_mint_token_is_accepted_with_its_scopes() -> None:
    auth = hs_auth()
    token = mint_token(auth, sub="svc", scopes=["publish:orders"], ttl=3600)
    principal = Authenticator(auth).authenticate("Bearer " + token)
    assert principal == Principal("svc", frozenset({"publish:orders"}))
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUD)
    assert decoded["exp"] - decoded["iat"] == 3600
    assert decoded["iss"] == ISS and decoded["jti"]


def test_mint_token_with_a_jwks_needs_a_signing_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = write_jwks(tmp_path / "jwks.json", jwk(rsa_key.public_key(), "k1"))
    auth = GatewayAuth(jwks_file=path, issuer=ISS, audience=AUD)
    with pytest.raises(ConfigError, match=r"HS256 'secret'.*signing_key_file"):
        mint_token(auth, sub="svc", scopes=[], ttl=60)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    auth = GatewayAuth(
        jwks_file=path, issuer=ISS, audience=AUD, signing_key_file=pem, signing_kid="k1"
    )
    token = mint_token(auth, sub="svc", scopes=["publish:orders"], ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert Authenticator(auth).authenticate("Bearer " + token).scopes == {"publish:orders"}


def test_mint_token_refuses_a_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        mint_token(hs_auth(), sub="svc", scopes=[], ttl=0)


def test_concurrent_unknown_kids_from_threads_cost_one_fetch(
    rsa_key: rsa.RSAPrivateKey, rsa_key2: rsa.RSAPrivateKey
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock()
    fetch = Fetch(jwk(rsa_key.public_key(), "k1"))
    auth = url_auth(fetch, clock)
    fetch.keys.append(jwk(rsa_key2.public_key(), "k2"))  # rotated in at the issuer
    clock.now += JWKS_MIN_REFETCH
    new = "Bearer " + rs_token(rsa_key2, kid="k2")
    with ThreadPoolExecutor(8) as pool:
        subs = list(pool.map(lambda _: auth.authenticate(new).sub, range(64)))
    assert subs == ["svc"] * 64
    assert fetch.calls == 2  # the start, and one reload for all 64 requests


# --- verified tokens are remembered ------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens that went through a full check (jwt.decode, as gateway.auth calls it)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_a_verified_token_is_answered_from_memory_until_its_ttl(decodes: list[str]) -> None:
    from gateway.auth import VERIFIED_TTL

    clock = Clock()
    auth = Authenticator(hs_auth(), clock=clock)
    token = hs_token()
    first = auth.authenticate("Bearer " + token)
    assert auth.authenticate("Bearer " + token) == first
    assert len(decodes) == 1
    clock.now += VERIFIED_TTL
    assert auth.authenticate("Bearer " + token) == first
    assert len(decodes) == 2  # checked again in full


def test_a_remembered_token_is_checked_again_once_it_expires(decodes: list[str]) -> None:
    clock = Clock()
    auth = Authenticator(hs_auth(leeway=0), clock=clock)
    token = "Bearer " + hs_token(exp=int(time.time()) + 5)
    auth.authenticate(token)
    clock.now += 4
    auth.authenticate(token)
    assert len(decodes) == 1
    clock.now += 2  # past exp on the monotonic clock: never answered from memory
    auth.authenticate(token)  # (the wall clock has not moved: still valid for PyJWT)
    assert len(decodes) == 2


def test_refused_tokens_are_never_remembered(decodes: list[str]) -> None:
    auth = Authenticator(hs_auth())
    bad = "Bearer " + hs_token(aud="another-service")
    for _ in range(3):
        refused(auth, bad)
    assert len(decodes) == 3


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.auth as module

    monkeypatch.setattr(module, "VERIFIED_MAX", 3)
    auth = Authenticator(hs_auth())
    tokens = [hs_token(sub=f"svc{n}") for n in range(5)]
    for token in tokens:
        auth.authenticate("Bearer " + token)
    assert list(auth._verified) == tokens[2:]  # the oldest forgotten first
