"""The gateway's security keys in the pipeline file: token checks (``auth``) and rate limits.

- ``RateLimit``: a token bucket, ``rate`` records per ``per`` with bursts up to ``burst``
  (default: ``rate``); over it a request is refused (429) or, with ``queue: true``, held up to
  ``max_wait`` for its tokens.
- ``GatewayAuth``: how bearer tokens (JWT) are verified. Exactly one key source: an HMAC
  ``secret`` (HS256/384/512), a ``jwks_file`` or a ``jwks_url`` (RS256/384/512, ES256/384/512,
  PS256/384/512). ``algorithms`` defaults to the key source's family and may never name
  ``none`` nor mix HMAC with public-key algorithms (the classic key-confusion attack is refused
  by configuration, before any token is seen). ``issuer`` and ``audience`` are required: a
  token minted for another service or by another issuer that happens to share the key is
  refused.

Secrets come from ``${ENV}`` or ``enc:`` like every other secret of the file (the loader
resolves them); a ``SecretStr`` never shows in ``repr`` or logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from headrace.config.base import ConfigModel, ProblemKey, problems
from headrace.config.durations import Duration, PositiveDuration
from headrace.config.stages import TokenRate

__all__ = [
    "HMAC_ALGORITHMS",
    "MIN_SECRET_LENGTH",
    "PUBLIC_KEY_ALGORITHMS",
    "Algorithm",
    "GatewayAuth",
    "RateLimit",
]

Algorithm = Literal[
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
]
HMAC_ALGORITHMS: frozenset[str] = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
MIN_SECRET_LENGTH = 32
"""HS256 needs at least 256 bits of key (RFC 7518 section 3.2); shorter secrets are refused."""


class RateLimit(TokenRate):
    """A token bucket: ``rate`` records per ``per``, bursts up to ``burst``."""

    burst: float = Field(
        default=1.0,  # replaced by rate when missing or null (see _default_burst)
        ge=1,
        description="Bucket capacity: records accepted at once; a request of more records "
        "than this is never accepted.",
        json_schema_extra={"default_text": "rate (at least 1)"},
    )
    queue: bool = Field(
        default=False,
        description="Over the limit, hold the request up to 'max_wait' for its tokens "
        "instead of answering 429 at once.",
    )
    max_wait: Duration = Field(
        default=1.0,
        description="With 'queue: true', the longest a request is held; a request that would "
        "wait longer is refused at once (429).",
    )


class GatewayAuth(ConfigModel):
    """How the gateway verifies bearer tokens (JWT); exactly one key source."""

    secret: SecretStr | None = Field(
        default=None,
        description="HMAC key (HS256) shared with the token issuer, at least 32 characters; "
        "write it as ${ENV} or enc:<token>.",
    )
    jwks_file: Path | None = Field(
        default=None,
        description="A JSON Web Key Set file with the issuer's public keys (RS256/ES256); "
        "re-read after 'jwks_cache' and when a token names an unknown key id.",
    )
    jwks_url: str | None = Field(
        default=None,
        description="The issuer's JWKS endpoint (https://.../.well-known/jwks.json); kept "
        "'jwks_cache' seconds, fetched again when a token names an unknown key id (at most "
        "once per 10 s).",
    )
    algorithms: list[Algorithm] = Field(
        default_factory=list,  # replaced by the key source's family (see _default_algorithms)
        min_length=1,
        description="Token algorithms accepted. HMAC (HS*) only with 'secret', public-key "
        "algorithms (RS*, ES*, PS*) only with a JWKS; 'none' is never accepted.",
        json_schema_extra={"default_text": "[HS256] with secret, [RS256, ES256] with a JWKS"},
    )
    issuer: str = Field(
        min_length=1, description="Required 'iss' claim: tokens from any other issuer get 401."
    )
    audience: str = Field(
        min_length=1,
        description="Required 'aud' claim (this gateway's name): tokens minted for another "
        "service get 401.",
    )
    leeway: Duration = Field(default=30.0, description="Clock skew tolerated on 'exp' and 'nbf'.")
    jwks_cache: PositiveDuration = Field(
        default=300.0, description="How long a fetched or read JWKS is used before reloading."
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="Optional PEM private key matching a JWKS key, used only by "
        "'headrace gateway token' to mint RS256/ES256 tokens for local use.",
    )
    signing_kid: str | None = Field(
        default=None, description="The key id ('kid') put in tokens minted with signing_key_file."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_algorithms(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("algorithms") is None:
            jwks = data.get("jwks_file") is not None or data.get("jwks_url") is not None
            default = ["RS256", "ES256"] if jwks and data.get("secret") is None else ["HS256"]
            return {**data, "algorithms": default}
        return data

    @model_validator(mode="after")
    def _check(self) -> GatewayAuth:
        found: list[tuple[ProblemKey, str]] = []
        sources = [k for k in ("secret", "jwks_file", "jwks_url") if getattr(self, k) is not None]
        if len(sources) != 1:
            found.append(
                (
                    None,
                    "name exactly one key source: secret (HS256), jwks_file or jwks_url "
                    f"(RS256/ES256); got {', '.join(sources) or 'none'}",
                )
            )
        algs = set(self.algorithms)
        if self.secret is not None:
            if len(self.secret.get_secret_value()) < MIN_SECRET_LENGTH:
                found.append(
                    (
                        "secret",
                        f"must be at least {MIN_SECRET_LENGTH} characters (HS256 needs a "
                        "256-bit key); make one with: python -c 'import secrets; "
                        "print(secrets.token_urlsafe(32))'",
                    )
                )
            wrong = sorted(algs - HMAC_ALGORITHMS)
            if wrong:
                found.append(
                    (
                        "algorithms",
                        f"{', '.join(wrong)} need a public key (jwks_file or jwks_url), "
                        "not a secret; with secret use HS256, HS384 or HS512",
                    )
                )
        elif sources:
            wrong = sorted(algs & HMAC_ALGORITHMS)
            if wrong:
                found.append(
                    (
                        "algorithms",
                        f"{', '.join(wrong)} with a JWKS would let a token signed with the "
                        "public key as an HMAC secret pass (key confusion); use RS256, ES256 "
                        "or another public-key algorithm",
                    )
                )
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            found.append(("jwks_url", f"{self.jwks_url!r} is not an http(s) URL"))
        if self.signing_key_file is not None and self.secret is not None:
            found.append(
                ("signing_key_file", "only used with jwks_file or jwks_url; secret signs itself")
            )
        if self.signing_kid is not None and self.signing_key_file is None:
            found.append(("signing_kid", "only used with signing_key_file"))
        if found:
            raise problems(found)
        return self
