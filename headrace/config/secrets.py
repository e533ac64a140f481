"""Encrypted values in the pipeline file: ``enc:<fernet token>``.

- ``generate_key()`` makes a new key (url-safe base64, as ``HEADRACE_SECRET_KEY`` holds it).
- ``encrypt(plaintext, key)`` returns ``"enc:<token>"`` to paste into the file.
- ``decrypt(value, key)`` returns the plaintext of an ``enc:`` value.

``key`` may list several keys separated by commas (key rotation): ``encrypt`` uses the first,
``decrypt`` tries each. Errors are ``SecretKeyError`` (the key is unusable) or
``SecretTokenError`` (the value is not a token made with that key); their messages never contain
the key, the token or the plaintext.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = [
    "ENC_PREFIX",
    "SecretError",
    "SecretKeyError",
    "SecretTokenError",
    "decrypt",
    "encrypt",
    "generate_key",
    "is_encrypted",
]

ENC_PREFIX = "enc:"


class SecretError(ValueError):
    """An encrypted value could not be made or read."""


class SecretKeyError(SecretError):
    """The key is not a valid Fernet key (32 url-safe base64-encoded bytes)."""


class SecretTokenError(SecretError):
    """The value is corrupt or was encrypted with a different key."""


def generate_key() -> str:
    """A new random Fernet key, as text."""
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str) -> MultiFernet:
    keys = [k.strip() for k in key.split(",") if k.strip()]
    if not keys:
        raise SecretKeyError("the secret key is empty")
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, UnicodeEncodeError):
        raise SecretKeyError(
            "the secret key is not a valid Fernet key (32 url-safe base64-encoded bytes); "
            "make one with 'headrace secrets keygen'"
        ) from None


def is_encrypted(value: object) -> bool:
    """True if ``value`` is a string of the form ``enc:<token>``."""
    return isinstance(value, str) and value.startswith(ENC_PREFIX)


def encrypt(plaintext: str, key: str) -> str:
    """Encrypt ``plaintext`` with ``key``; returns ``"enc:<token>"``. Raises ``SecretKeyError``."""
    token = _fernet(key).encrypt(plaintext.encode("utf-8"))
    return ENC_PREFIX + token.decode("ascii")


def decrypt(value: str, key: str) -> str:
    """The plaintext of ``value`` (``"enc:<token>"``, or a bare token) under ``key``.

    Raises ``SecretKeyError`` for an unusable key, ``SecretTokenError`` for a corrupt token or one
    made with another key.
    """
    fernet = _fernet(key)
    token = value.removeprefix(ENC_PREFIX)
    token = "".join(token.split())
    try:
        plain = fernet.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError, ValueError):
        raise SecretTokenError(
            "the value is corrupt or was encrypted with a different key"
        ) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretTokenError("the decrypted value is not UTF-8 text") from None
