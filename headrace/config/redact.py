"""Redaction of secrets in configuration text and data.

What counts as a secret (and becomes ``***``):

1. values that came from ``enc:<token>`` (the whole decrypted value);
2. the parts of a value that were substituted from an environment variable (``${VAR}``; a
   ``${VAR:-default}`` whose default was used is not secret: it is written in the file);
3. the value of any key that looks secret (``password``, ``passwd``, ``secret``, ``token``,
   ``api_key``, ``private_key``, ``credential``, ``user_info``, ``sasl_password``,
   ``aws_secret_access_key``, ``ssl.key.password`` ...), and ``SecretStr`` fields;
4. the password part of a URL (``mysql+pymysql://app:***@127.0.0.1:3306/shop``,
   ``mongodb://u:***@h1,h2/db``) and secret-looking URL query parameters (``?password=***``);
5. any occurrence of a known secret value (from 1-4) inside another string. Values shorter than
   ``MIN_SEARCH_LENGTH`` (6) characters are redacted where they stand (1-4) but not searched for
   elsewhere: that would mangle every string containing e.g. ``json`` or ``1``.

Known secret values are kept in a process-wide registry (``register_secret``) so that ``repr()`` of
any config model and the text of any ``ConfigError`` raised by the loader can be redacted too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

__all__ = [
    "MIN_SEARCH_LENGTH",
    "REDACTED",
    "collect_tree_secrets",
    "is_secret_key",
    "known_secrets",
    "redact_text",
    "redact_tree",
    "redact_url",
    "redact_values",
    "register_secret",
]

REDACTED = "***"
MIN_SEARCH_LENGTH = 6

_SECRET_KEY_RE = re.compile(
    r"pass(word|wd)?$|password|passwd|secret|token|api[_.-]?key|apikey|private[_.-]?key"
    r"|credential|user[_.-]?info|key[_.-]?pem|keystore|session[_.-]?key",
    re.IGNORECASE,
)
# scheme://user:PASSWORD@host... ; the password runs to the last '@' before the path.
_URL_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s/]*)@")
_QUERY_SECRET_RE = re.compile(
    r"(?P<head>[?&;](?:[A-Za-z0-9_.-]*(?:password|passwd|secret|token|apikey|api_key))=)"
    r"(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)

_registry: set[str] = set()
_registry_lock = threading.Lock()


def is_secret_key(name: str) -> bool:
    """True if a mapping key or field name looks like it holds a secret."""
    return bool(_SECRET_KEY_RE.search(name))


def register_secret(value: str) -> None:
    """Remember ``value`` as a secret for the life of the process (empty values are ignored)."""
    if value:
        with _registry_lock:
            _registry.add(value)


def known_secrets() -> frozenset[str]:
    """Every secret value registered so far in this process."""
    with _registry_lock:
        return frozenset(_registry)


def redact_url(text: str) -> str:
    """Replace URL passwords and secret-looking query parameters in ``text`` with ``***``."""
    text = _URL_PASSWORD_RE.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
    return _QUERY_SECRET_RE.sub(lambda m: f"{m.group('head')}{REDACTED}", text)


def _url_passwords(text: str) -> list[str]:
    return [m.group("pw") for m in _URL_PASSWORD_RE.finditer(text) if m.group("pw")]


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """Redact ``text``: URL passwords, then every known secret value found inside it.

    ``secrets`` defaults to the process-wide registry. The result never contains a URL password
    nor any of ``secrets`` that is at least ``MIN_SEARCH_LENGTH`` long.
    """
    return redact_values(redact_url(text), secrets)


def redact_values(text: str, secrets: Iterable[str] | None = None) -> str:
    """Replace every known secret value (at least ``MIN_SEARCH_LENGTH`` long) in ``text``."""
    pool = known_secrets() if secrets is None else frozenset(secrets)
    for secret in sorted(pool, key=len, reverse=True):
        if len(secret) >= MIN_SEARCH_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def collect_tree_secrets(data: Any) -> set[str]:
    """Secret values found structurally in ``data``: values of secret keys and URL passwords."""
    found: set[str] = set()

    def walk(node: Any, key: str | None) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, key)
        elif isinstance(node, SecretStr):
            found.add(node.get_secret_value())
        elif isinstance(node, str):
            if key is not None and is_secret_key(key):
                found.add(node)
            found.update(_url_passwords(node))

    walk(data, None)
    found.discard("")
    return found


def redact_tree(
    data: Any,
    secrets: Iterable[str] | None = None,
    overrides: Mapping[tuple[str | int, ...], Any] | None = None,
) -> Any:
    """Return a redacted copy of plain data (dicts, lists, scalars).

    ``overrides`` maps a path (tuple of keys/indexes) to the value to show there instead (the
    loader's record of which values came from ``enc:`` or the environment). Values under secret
    keys become ``***``; every string goes through ``redact_text`` with ``secrets`` plus the
    secrets found structurally in ``data``. Non-string scalars are kept as they are.
    """
    pool = set(known_secrets() if secrets is None else secrets) | collect_tree_secrets(data)
    frozen = frozenset(pool)
    marks = overrides or {}

    def walk(node: Any, path: tuple[str | int, ...], key: str | None) -> Any:
        if path in marks:
            shown = marks[path]
            return redact_text(shown, frozen) if isinstance(shown, str) else shown
        if key is not None and is_secret_key(key) and node is not None:
            if isinstance(node, Mapping | list | tuple):
                return walk_children(node, path)
            return REDACTED
        if isinstance(node, SecretStr):
            return REDACTED
        if isinstance(node, str):
            return redact_text(node, frozen)
        if isinstance(node, Mapping | list | tuple):
            return walk_children(node, path)
        return node

    def walk_children(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v, (*path, k), str(k)) for k, v in node.items()}
        items = [walk(v, (*path, i), None) for i, v in enumerate(node)]
        return items if isinstance(node, list) else tuple(items)

    return walk(data, (), None)
