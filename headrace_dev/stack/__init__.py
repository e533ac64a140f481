"""The local stack (``headrace stack up|down|status|logs``): real servers on 127.0.0.1.

Kafka (KRaft, Maven Central jars), MariaDB (Debian), FerretDB (Go module), moto (S3 and
DynamoDB) and Prometheus (Debian), installed on first use, cached, started detached, and
stopped by pid. Endpoints go to one env file, read with :func:`read_env_file`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace_dev.stack.paths import StackPaths
from headrace_dev.stack.stack import DEFAULT_PORTS, ComponentStatus, Stack

__all__ = ["DEFAULT_PORTS", "ComponentStatus", "Stack", "StackPaths", "aws_client", "read_env_file"]


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=VALUE`` env file as written by ``Stack.write_env_file`` (comments skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env


def aws_client(env: Mapping[str, str], service: str) -> Any:
    """A boto3 client for ``service`` (s3, dynamodb) on the endpoint and credentials of the
    stack's env file (moto's dummy credentials)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=env["HEADRACE_AWS_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
