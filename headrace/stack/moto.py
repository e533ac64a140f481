"""moto server: S3 and DynamoDB on one HTTP endpoint (state in memory, lost on stop)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace.stack.component import Component

__all__ = ["AWS_ENV", "Moto"]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Moto(Component):
    """``moto_server`` bound to 127.0.0.1."""

    name: str = "moto"
    marker: str = "moto_server"
    start_timeout: float = 60.0

    def _binary(self) -> str:
        beside = Path(sys.executable).parent / "moto_server"
        if beside.exists():
            return str(beside)
        found = shutil.which("moto_server")
        if found is None:
            raise StackError(
                "moto_server not found (needed for S3 and DynamoDB); "
                "fix: pip install 'headrace[stack]' (or 'moto[server]') into this environment"
            )
        return found

    def command(self) -> list[str]:
        return [self._binary(), "-H", "127.0.0.1", "-p", str(self.port)]

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
