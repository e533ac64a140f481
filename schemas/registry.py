"""Schema ids: ``.avsc`` files in the schema dir, numbered by a local registry file or by a
Confluent-compatible schema registry.

- :func:`load_schema` reads ``<dir>/<name>.avsc``.
- :class:`LocalRegistry` keeps ``<dir>/registry.json`` (``{"schemas": [{"id", "name",
  "fingerprint", "schema"}]}``): the same schema text always gets the same id, a changed schema
  a new one; ids are never reused. Writes are atomic and serialized with a file lock. The
  schema itself is kept too, so a reader can decode old records after the ``.avsc`` changed.
- :class:`ConfluentRegistry` registers the schema under the subject ``<topic>-value``
  (TopicNameStrategy) with confluent-kafka's ``SchemaRegistryClient`` and returns its id.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ConfluentRegistry",
    "LocalRegistry",
    "Registry",
    "SchemaNotFound",
    "fingerprint",
    "load_schema",
]

REGISTRY_FILE = "registry.json"


class SchemaNotFound(LookupError):
    """The named schema file is missing or is not a valid Avro schema."""


def load_schema(schema_dir: Path, name: str) -> dict[str, Any]:
    """The parsed ``<schema_dir>/<name>.avsc``; SchemaNotFound names the file and the fix."""
    path = Path(schema_dir) / f"{name}.avsc"
    if not path.is_file():
        found = sorted(p.stem for p in Path(schema_dir).glob("*.avsc"))
        raise SchemaNotFound(
            f"schema {name!r}: file {path} does not exist "
            f"(schemas in {schema_dir}: {', '.join(found) or 'none'}); create it or fix the name"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaNotFound(f"schema {name!r}: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "record":
        raise SchemaNotFound(f"schema {name!r}: {path} must hold an Avro record schema")
    import fastavro

    try:
        fastavro.parse_schema(dict(data))
    except Exception as exc:
        raise SchemaNotFound(f"schema {name!r}: {path} is not a valid Avro schema: {exc}") from None
    return data


def fingerprint(schema: dict[str, Any]) -> str:
    """SHA-256 of the schema's canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Registry(Protocol):
    """Gives the id of a schema (registering it when it is new), and a schema by its id."""

    def schema_id(self, name: str, topic: str, schema: dict[str, Any]) -> int: ...

    def schema_for_id(self, schema_id: int) -> dict[str, Any]: ...


class LocalRegistry:
    """Ids from ``<schema_dir>/registry.json``; safe for several processes at once."""

    def __init__(self, schema_dir: Path) -> None:
        self.path = Path(schema_dir) / REGISTRY_FILE

    def schema_id(self, name: str, topic: str, schema: dict[str, Any]) -> int:
        """The id of ``schema`` (the same text always maps to the same id)."""
        fp = fingerprint(schema)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            for e in entries:
                if e["fingerprint"] == fp:
                    return int(e["id"])
            new_id = max((int(e["id"]) for e in entries), default=0) + 1
            entries.append({"id": new_id, "name": name, "fingerprint": fp, "schema": schema})
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"schemas": entries}, indent=1) + "\n")
            tmp.replace(self.path)
            return new_id

    def schema_for_id(self, schema_id: int) -> dict[str, Any]:
        """The schema registered as ``schema_id``; SchemaNotFound when there is none."""
        for entry in self._read():
            if int(entry["id"]) != schema_id:
                continue
            if isinstance(entry.get("schema"), dict):
                return dict(entry["schema"])
            # Entries written before schemas were stored: the .avsc must still match.
            schema = load_schema(self.path.parent, str(entry["name"]))
            if fingerprint(schema) != entry["fingerprint"]:
                raise SchemaNotFound(
                    f"schema id {schema_id} ({entry['name']}) changed since it was registered "
                    f"and {self.path} does not hold the old text; restore the old .avsc"
                )
            return schema
        raise SchemaNotFound(f"schema id {schema_id} is not in {self.path}")

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text())
            entries = data["schemas"]
            assert isinstance(entries, list)
            return entries
        except (ValueError, KeyError, AssertionError) as exc:
            raise SchemaNotFound(
                f"local schema registry {self.path} is corrupt ({exc}); restore it from "
                "version control (deleting it renumbers every schema)"
            ) from None


class ConfluentRegistry:
    """Ids from a Confluent-compatible registry; subject ``<topic>-value``."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        if client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            client = SchemaRegistryClient({"url": url})
        self.url = url
        self._client = client
        self._cache: dict[tuple[str, str], int] = {}

    def schema_id(self, name: str, topic: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` under ``<topic>-value`` (idempotent) and return its id."""
        from confluent_kafka.schema_registry import Schema

        subject = f"{topic}-value"
        key = (subject, fingerprint(schema))
        if key not in self._cache:
            text = json.dumps(schema, sort_keys=True)
            self._cache[key] = int(self._client.register_schema(subject, Schema(text, "AVRO")))
        return self._cache[key]

    def schema_for_id(self, schema_id: int) -> dict[str, Any]:
        """The schema the registry holds as ``schema_id``; SchemaNotFound when it has none."""
        try:
            found = self._client.get_schema(schema_id)
        except Exception as exc:  # the client raises its own error types
            raise SchemaNotFound(f"schema id {schema_id} not found at {self.url}: {exc}") from None
        parsed = json.loads(str(found.schema_str))
        if not isinstance(parsed, dict):
            raise SchemaNotFound(f"schema id {schema_id} at {self.url} is not an Avro record")
        return parsed
