"""moto server: S3 and DynamoDB on one HTTP endpoint (state in memory, lost on stop).

Run as ``python -m headrace_dev.stack.moto_server``: moto's own application and backends behind a
faster HTTP front (keep-alive, no access log, cached backend lookup), not the ``moto_server``
script; see that module for why.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from headrace.errors import StackError
from headrace_dev.stack.component import Component

__all__ = ["AWS_ENV", "SERVER_MODULE", "Moto"]

SERVER_MODULE = "headrace_dev.stack.moto_server"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Moto(Component):
    """moto's server (``headrace_dev.stack.moto_server``) bound to 127.0.0.1."""

    name: str = "moto"
    marker: str = "moto_server"
    start_timeout: float = 60.0

    def command(self) -> list[str]:
        for module in ("moto", "flask", "flask_cors"):
            if importlib.util.find_spec(module) is None:
                raise StackError(
                    f"python package {module!r} not found (moto's server, for S3 and DynamoDB); "
                    "fix: pip install 'headrace[stack]' (or 'moto[server]') into this environment"
                )
        return [sys.executable, "-m", SERVER_MODULE, "-H", "127.0.0.1", "-p", str(self.port)]

    def outdated(self, argv: list[str]) -> str | None:
        if argv and SERVER_MODULE not in argv:
            return (
                f"it runs {' '.join(argv[:2])} (the moto_server script: a new connection per "
                f"request, ~200-300 requests/s), not python -m {SERVER_MODULE}"
            )
        return None

    def process_env(self) -> dict[str, str]:
        return dict(AWS_ENV)

    def healthy(self) -> bool:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint(), **_boto_kwargs())
        s3.list_buckets()
        return True

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"HEADRACE_AWS_ENDPOINT": self.endpoint(), **AWS_ENV}


def _boto_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }
