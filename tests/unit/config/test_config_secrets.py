"""Fernet-encrypted values: key generation, round trip, and errors that reveal nothing."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from headrace.config import (
    SecretKeyError,
    SecretTokenError,
    decrypt,
    encrypt,
    generate_key,
)
from headrace.config.secrets import is_encrypted


def test_generated_keys_are_fernet_keys_and_differ():
    a, b = generate_key(), generate_key()
    assert a != b
    Fernet(a.encode())


@pytest.mark.parametrize("plaintext", ["s3cret", "", "ünïcødé ✓", "a" * 10_000, "line\nbreak"])
def test_round_trip(plaintext):
    key = generate_key()
    value = encrypt(plaintext, key)
    assert value.startswith("enc:") and is_encrypted(value)
    assert plaintext not in value.removeprefix("enc:") or not plaintext
    assert decrypt(value, key) == plaintext


def test_bare_token_and_wrapped_token_decrypt():
    key = generate_key()
    value = encrypt("x-secret", key)
    token = value.removeprefix("enc:")
    assert decrypt(token, key) == "x-secret"
    folded = "enc:" + token[:20] + "\n  " + token[20:]
    assert decrypt(folded, key) == "x-secret"


def test_wrong_key_is_a_token_error_without_details():
    value = encrypt("plain-secret-value", generate_key())
    with pytest.raises(SecretTokenError) as info:
        decrypt(value, generate_key())
    text = str(info.value)
    assert "plain-secret-value" not in text and value.removeprefix("enc:") not in text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["enc:", "enc:garbage", "enc:ééé", "enc:" + "A" * 100])
def test_corrupt_tokens(bad):
    with pytest.raises(SecretTokenError, match="corrupt or was encrypted with a different key"):
        decrypt(bad, generate_key())


@pytest.mark.parametrize("key", ["", "short", "é" * 44, ","])
def test_invalid_keys(key):
    with pytest.raises(SecretKeyError) as info:
        encrypt("x", key)
    assert key not in str(info.value) or not key.strip(",")


def test_key_rotation_encrypts_with_the_first_key():
    old, new = generate_key(), generate_key()
    legacy = encrypt("v1", old)
    assert decrypt(legacy, f"{new}, {old}") == "v1"
    fresh = encrypt("v2", f"{new},{old}")
    assert decrypt(fresh, new) == "v2"
    with pytest.raises(SecretTokenError):
        decrypt(fresh, old)
