"""Resolving raw pipeline data: ``${VAR}`` interpolation and ``enc:`` decryption.

``resolve(data, env)`` walks every string value (mapping keys are left alone) and:

1. replaces ``${VAR}`` with ``env[VAR]`` and ``${VAR:-default}`` with ``env[VAR]``, or
   ``default`` when VAR is unset or empty; ``$${`` stands for a literal ``${``. A missing VAR
   without default, or a malformed reference, is a problem at that key path;
2. then, if the whole value is ``enc:<token>``, decrypts it with ``env["HEADRACE_SECRET_KEY"]``.
   A missing or bad key, or a bad token, is a problem at that key path saying how to fix it.

It returns the resolved data, the problems, the set of secret values (environment values used,
decrypted plaintexts) and, per key path, how to show the value redacted (environment parts and
decrypted values as ``***``). Problems never contain a token, a plaintext or an environment value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from headrace.config.problems import Problem, format_path
from headrace.config.redact import REDACTED
from headrace.config.secrets import SecretKeyError, SecretTokenError, decrypt, is_encrypted

__all__ = ["SECRET_KEY_ENV", "Resolved", "resolve"]

SECRET_KEY_ENV = "HEADRACE_SECRET_KEY"  # noqa: S105 - a variable name
_REF_RE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KeyPath = tuple[str | int, ...]


@dataclass
class Resolved:
    """The outcome of ``resolve``."""

    data: Any
    problems: list[Problem] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    overrides: dict[KeyPath, Any] = field(default_factory=dict)


class _Resolver:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.out = Resolved(data=None)

    def walk(self, node: Any, path: KeyPath) -> Any:
        if isinstance(node, dict):
            return {k: self.walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return self.string(node, path)
        return node

    def fail(self, path: KeyPath, message: str) -> None:
        self.out.problems.append(Problem(key=format_path(path), message=message))

    def string(self, text: str, path: KeyPath) -> str:
        shown: list[str] = []
        resolved: list[str] = []
        from_env = False
        pos = 0
        for match in _REF_RE.finditer(text):
            resolved.append(text[pos : match.start()])
            shown.append(text[pos : match.start()])
            pos = match.end()
            if match.group(0) == "$${":
                resolved.append("${")
                shown.append("${")
                continue
            body = match.group("body")
            if body is None:
                self.fail(path, "unclosed '${': write ${NAME} or ${NAME:-default}")
                continue
            name, has_default, default = body.partition(":-")
            if not _NAME_RE.match(name):
                self.fail(
                    path,
                    f"'${{{body}}}' is not a variable reference; write ${{NAME}} or "
                    "${NAME:-default} (use $${ for a literal '${')",
                )
                continue
            value = self.env.get(name)
            if value is None or (has_default and value == ""):
                if not has_default:
                    self.fail(
                        path,
                        f"environment variable {name} is not set; export it or write "
                        f"${{{name}:-default}}",
                    )
                    continue
                resolved.append(default)
                shown.append(default)
            else:
                from_env = True
                if value:
                    self.out.secrets.add(value)
                resolved.append(value)
                shown.append(REDACTED)
        resolved.append(text[pos:])
        shown.append(text[pos:])
        value = "".join(resolved)
        if from_env:
            self.out.overrides[path] = "".join(shown)
        if is_encrypted(value):
            return self.decrypted(value, path)
        return value

    def decrypted(self, value: str, path: KeyPath) -> str:
        key = self.env.get(SECRET_KEY_ENV, "")
        if not key.strip():
            self.fail(
                path,
                f"the value is encrypted (enc:...) but {SECRET_KEY_ENV} is not set; export the "
                "key it was encrypted with (made by 'headrace secrets keygen')",
            )
            return value
        try:
            plain = decrypt(value, key)
        except SecretKeyError:
            self.fail(
                path,
                f"{SECRET_KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes); set it to the key made by 'headrace secrets keygen'",
            )
            return value
        except SecretTokenError:
            self.fail(
                path,
                "cannot decrypt the enc: value: it is corrupt or was encrypted with another key "
                f"than {SECRET_KEY_ENV}; re-encrypt it with 'headrace secrets encrypt'",
            )
            return value
        if plain:
            self.out.secrets.add(plain)
        self.out.overrides[path] = REDACTED
        return plain


def resolve(data: Any, env: Mapping[str, str]) -> Resolved:
    """Interpolate and decrypt every string in ``data`` (see the module docstring)."""
    resolver = _Resolver(env)
    resolver.out.data = resolver.walk(data, ())
    return resolver.out
