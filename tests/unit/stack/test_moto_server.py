"""headrace's moto launcher, in-process on a free port: it serves moto's S3 and DynamoDB as
the ``moto_server`` script does, over kept-alive HTTP/1.1 connections."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from headrace_dev.stack.moto import SERVER_MODULE, Moto
from headrace_dev.stack.moto_server import make_server
from headrace_dev.stack.paths import StackPaths


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def test_s3_objects_metadata_large_bodies_and_missing_keys(endpoint: str) -> None:
    s3 = _client("s3", endpoint)
    bucket = f"b{uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a.jsonl", Body=b'{"a": 1}\n', Metadata={"my_key": "v"})
    got = s3.get_object(Bucket=bucket, Key="a.jsonl")
    assert got["Body"].read() == b'{"a": 1}\n'
    assert got["Metadata"] == {"my_key": "v"}  # an underscore in a header name survives
    big = bytes(range(256)) * 8192  # 2 MiB: boto3 sends it after "Expect: 100-continue"
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == big
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == len(big)
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="nope")
    assert missing.value.response["Error"]["Code"] == "404"
    for key in (f"p/{i:03d}" for i in range(120)):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="p/")
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == [f"p/{i:03d}" for i in range(120)]


def test_dynamodb_conditional_puts_and_batch_get(endpoint: str) -> None:
    ddb = boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).meta.client
    table = f"t{uuid4().hex[:10]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    guard = {
        "ConditionExpression": "attribute_not_exists(#pk) OR #v <= :v",
        "ExpressionAttributeNames": {"#pk": "id", "#v": "v"},
    }
    ddb.put_item(
        TableName=table,
        Item={"id": "a", "v": 5, "x": "new"},
        ExpressionAttributeValues={":v": 5},
        **guard,
    )
    with pytest.raises(ClientError) as older:
        ddb.put_item(
            TableName=table,
            Item={"id": "a", "v": 3, "x": "old"},
            ExpressionAttributeValues={":v": 3},
            **guard,
        )
    assert older.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    got = ddb.batch_get_item(
        RequestItems={table: {"Keys": [{"id": "a"}, {"id": "zz"}], "ConsistentRead": True}}
    )
    assert got["Responses"][table] == [{"id": "a", "v": Decimal(5), "x": "new"}]


def test_requests_share_one_connection(endpoint: str) -> None:
    """Keep-alive: the answers carry their length and the connection stays open, also after an
    error answer and a HEAD (no body)."""
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/moto-api/")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        assert first.status == 200 and first.getheader("Connection") != "close"
        conn.request("HEAD", f"/no-such-bucket-{uuid4().hex[:6]}/k")
        missing = conn.getresponse()
        assert missing.read() == b"" and missing.status == 404
        conn.request("GET", "/moto-api/")
        again = conn.getresponse()
        again.read()
        assert again.status == 200
        assert conn.sock is sock  # http.client would have reconnected after a close
    finally:
        conn.close()


def test_a_request_cut_short_is_not_acted_on(endpoint: str) -> None:
    """A client killed mid-request (kill -9 of a sink): the part that arrived is dropped, as
    werkzeug drops it, instead of being handed to moto (a truncated S3 object)."""
    s3 = _client("s3", endpoint)
    bucket = f"b{uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"PUT /{bucket}/cut HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n".encode()
            + b"only ten b"
        )
    s3.put_object(Bucket=bucket, Key="whole", Body=b"x")  # the server carries on
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["whole"]


def test_the_stack_runs_the_launcher_and_flags_the_old_script(tmp_path: Path) -> None:
    moto = Moto(paths=StackPaths(tmp_path, tmp_path / "cache"), port=5999)
    argv = moto.command()
    assert argv[1:3] == ["-m", SERVER_MODULE] and argv[-2:] == ["-p", "5999"]
    assert moto.marker in " ".join(argv)  # the pid file's marker still finds the process
    assert moto.outdated(argv) is None
    why = moto.outdated(["/venv/bin/python3", "/venv/bin/moto_server", "-p", "5000"])
    assert why is not None and SERVER_MODULE in why
