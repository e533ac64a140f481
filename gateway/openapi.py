"""The gateway's OpenAPI 3.1 description (``GET /openapi.json``) and a plain page of it
(``GET /docs``: no script, nothing fetched from elsewhere, so it works without a network).

Written by hand, not derived from handlers: the publish route reads its body itself (three
formats, streamed with a size limit), so the document states the contract docs/gateway.md
describes.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["docs_page", "openapi_spec"]

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_RESULT = {
    "type": "object",
    "properties": {
        "index": {"type": "integer", "description": "The record's place in the request, from 0."},
        "status": {"enum": ["accepted", "rejected"]},
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
        "reason": {"type": "string", "description": "Why it was rejected (dead-lettered)."},
    },
    "required": ["index", "status"],
}
_RESULTS = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "accepted": {"type": "integer"},
        "rejected": {"type": "integer"},
        "results": {"type": "array", "items": _RESULT},
        "error": {"type": "string"},
    },
    "required": ["topic", "accepted", "rejected", "results"],
}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_spec(topics: list[str]) -> dict[str, Any]:
    """The OpenAPI document; ``topics`` are the writable topics (the ``topic`` enum)."""
    publish = {
        "summary": "Publish records to a topic",
        "description": (
            "One JSON record, a JSON array of records, or JSON lines (application/x-ndjson). "
            "Answers after the broker acknowledged every accepted record. With ?envelope=true "
            'each record is {"value": {...}, "key": ..., "time": ...}; ?key= sets the key of '
            "every record of a topic without key fields."
        ),
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "topic",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": topics},
            },
            {"name": "key", "in": "query", "schema": {"type": "string"}},
            {"name": "envelope", "in": "query", "schema": {"type": "boolean"}},
            {
                "name": "Idempotency-Key",
                "in": "header",
                "schema": {"type": "string", "maxLength": 255},
                "description": "A retried request with the same key gets the first answer.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": _answer("Every record accepted", _RESULTS),
            "207": _answer("Some records rejected (sent to <topic>.dlq)", _RESULTS),
            "422": _answer("No record accepted (or an atomic topic refused the request)", _RESULTS),
            "400": _answer("Malformed JSON (line and column)", _ERROR),
            "401": _answer("Missing or invalid token", _ERROR),
            "403": _answer("The token lacks the scope publish:<topic>", _ERROR),
            "404": _answer("The topic is not writable through this gateway", _ERROR),
            "413": _answer("Body over max_body, or more records than a burst", _ERROR),
            "415": _answer("Unsupported Content-Type", _ERROR),
            "429": _answer("Rate limited (Retry-After, RateLimit-*)", _ERROR),
            "503": _answer("Kafka unavailable (Retry-After)", _ERROR),
        },
    }
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "headrace gateway",
            "version": "1",
            "description": "Publish records to Kafka topics over HTTP (docs/gateway.md).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        "paths": {
            "/topics/{topic}/records": {"post": publish},
            "/healthz": {
                "get": {
                    "summary": "200 while the process serves",
                    "responses": {"200": _answer("ok", status)},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "200 when a broker answers and the breaker is not open",
                    "responses": {
                        "200": _answer("ready", status),
                        "503": _answer("not ready", _ERROR),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text"}},
                }
            },
        },
    }


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page listing the routes, their parameters and answers."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>headrace gateway</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "code{background:#eee;padding:0 .2em}td{padding:0 1em 0 0}</style></head><body>",
        f"<h1>{html.escape(spec['info']['title'])}</h1>",
        f"<p>{html.escape(spec['info']['description'])} Machine-readable: "
        "<a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<h3>Parameters</h3><table>")
                for p in params:
                    enum = p.get("schema", {}).get("enum")
                    extra = f" one of: {', '.join(enum)}" if enum else ""
                    parts.append(
                        f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                        f"<td>{html.escape(p.get('description', '') + extra)}</td></tr>"
                    )
                parts.append("</table>")
            parts.append("<h3>Answers</h3><table>")
            for code, answer in op.get("responses", {}).items():
                parts.append(
                    f"<tr><td>{code}</td><td>{html.escape(answer['description'])}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
