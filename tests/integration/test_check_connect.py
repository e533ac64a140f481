"""`headrace check --connect` reaches every system a pipeline names, read-only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from headrace_cli.main import main


@pytest.fixture
def world(
    orders_db: tuple[str, list[Any]],
    aws_endpoint: str,
    aws_credentials: dict[str, str],
    unique: str,
) -> Iterator[str]:
    """The shared ``orders`` database (conftest) and a bucket, named after the test; the URL.
    The bucket is removed after (the database by ``orders_db``)."""
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, **aws_credentials)
    s3.create_bucket(Bucket=unique)
    yield orders_db[0]
    s3.delete_bucket(Bucket=unique)


#: the columns of the shared ``orders`` table (conftest ``orders_db``)
COLUMNS = ("id", "customer_id", "qty", "price", "status", "updated_at")


def _pipeline(
    tmp_path: Path,
    *,
    url: str,
    bootstrap: str,
    mongo: str,
    aws: str,
    unique: str,
    column: str = "updated_at",
    create: str = "false",
) -> Path:
    f = tmp_path / "pipeline.yaml"
    f.write_text(f"""
name: {unique}
kafka: {{bootstrap_servers: '{bootstrap}'}}
sources:
  orders_db:
    type: mysql
    url: '{url}'
    table: orders
    mode: timestamp+incrementing
    incrementing_column: id
    timestamp_column: {column}
    topic: {unique}.orders
  files:
    type: s3
    bucket: {unique}
    format: jsonl
    endpoint_url: '{aws}'
    topic: {unique}.files
sinks:
  docs:
    type: mongodb
    from: {unique}.orders
    uri: '{mongo}'
    database: {unique}
    collection: orders
  table:
    type: dynamodb
    from: {unique}.files
    table: {unique}-items
    partition_key: id
    endpoint_url: '{aws}'
    create: {create}
""")
    return f


def test_everything_reachable_except_a_missing_table(
    tmp_path: Path,
    world: str,
    kafka_bootstrap: str,
    mongo_uri: str,
    aws_endpoint: str,
    unique: str,
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack_env[key])
    args = {
        "url": world,
        "bootstrap": kafka_bootstrap,
        "mongo": mongo_uri,
        "aws": aws_endpoint,
        "unique": unique,
    }
    code = main(["check", "--connect", "-f", str(_pipeline(tmp_path, **args))])
    out = capsys.readouterr()
    assert code == 1
    assert "1 of 7 checks failed" in out.err
    assert "table not found; create it or set create: true" in out.out
    assert "bucket exists" in out.out and f"{len(COLUMNS)} columns" in out.out
    password = world.split(":")[2].split("@")[0]
    assert password not in out.out + out.err  # the MySQL URL's password never shows

    code = main(["check", "--connect", "-f", str(_pipeline(tmp_path, **args, create="true"))])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "create: true creates it" in out.out


def test_a_missing_column_names_the_real_columns(
    tmp_path: Path,
    world: str,
    kafka_bootstrap: str,
    mongo_uri: str,
    aws_endpoint: str,
    unique: str,
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack_env[key])
    f = _pipeline(
        tmp_path,
        url=world,
        bootstrap=kafka_bootstrap,
        mongo=mongo_uri,
        aws=aws_endpoint,
        unique=unique,
        column="changed_at",
        create="true",
    )
    assert main(["check", "--connect", "-f", str(f)]) == 1
    columns = ", ".join(COLUMNS)
    assert f"column 'changed_at' not found (columns: {columns})" in capsys.readouterr().out
