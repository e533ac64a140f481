"""moto server (S3 and DynamoDB) through boto3: what the S3 source and DynamoDB sink rely on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

N_OBJECTS = 150
N_ITEMS = 25


@pytest.fixture
def s3(aws_endpoint: str, aws_credentials: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=aws_endpoint, **aws_credentials)


@pytest.fixture
def bucket(s3: Any, unique: str) -> Iterator[str]:
    """A fresh bucket ``<unique>``, emptied and deleted at teardown."""
    s3.create_bucket(Bucket=unique)
    try:
        yield unique
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=unique):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=unique, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=unique)


@pytest.fixture
def dynamodb(aws_endpoint: str, aws_credentials: dict[str, str]) -> Any:
    return boto3.resource("dynamodb", endpoint_url=aws_endpoint, **aws_credentials)


@pytest.fixture
def table(dynamodb: Any, unique: str) -> Iterator[Any]:
    """An on-demand table ``<unique>`` (pk string + sk number), deleted at teardown."""
    created = dynamodb.create_table(
        TableName=unique,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
    )
    created.wait_until_exists(WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    try:
        yield created
    finally:
        created.delete()


def test_s3_put_get_and_paginated_listing(s3: Any, bucket: str):
    body = b'{"order_id": 1, "note": "Zo\xc3\xab"}\n' * 3
    s3.put_object(
        Bucket=bucket, Key="landing/a.jsonl", Body=body, Metadata={"source": "headrace-test"}
    )
    got = s3.get_object(Bucket=bucket, Key="landing/a.jsonl")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["Metadata"] == {"source": "headrace-test"}
    head = s3.head_object(Bucket=bucket, Key="landing/a.jsonl")
    assert head["ETag"] == got["ETag"]

    keys = [f"many/part-{i:04d}.json" for i in range(N_OBJECTS)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    # moto, like S3, returns at most 1,000 keys a page; ask for 100 so the listing really pages.
    paginator = s3.get_paginator("list_objects_v2")
    pages = list(
        paginator.paginate(Bucket=bucket, Prefix="many/", PaginationConfig={"PageSize": 100})
    )
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert len(listed) == N_OBJECTS
    assert listed == keys  # every key once, in lexicographic order
    assert [len(page["Contents"]) for page in pages] == [100, 50]
    assert pages[0]["IsTruncated"] is True and pages[-1]["IsTruncated"] is False


def test_dynamodb_decimal_items_batch_write_and_query(dynamodb: Any, table: Any):
    item = {
        "pk": "window#2024-01-01T00:00",
        "sk": Decimal(0),
        "revenue": Decimal("0.10") + Decimal("0.20"),
        "largest": Decimal("12345678901234567890.123456789"),
        "name": "Zoë",
        "tags": ["a", "b"],
        "missing": None,
    }
    table.put_item(Item=item)
    got = table.get_item(Key={"pk": item["pk"], "sk": Decimal(0)}, ConsistentRead=True)["Item"]
    assert got == item
    assert got["revenue"] == Decimal("0.30")

    pk = "window#2024-01-01T00:01"
    requests = [
        {"PutRequest": {"Item": {"pk": pk, "sk": Decimal(i), "revenue": Decimal(f"{i}.25")}}}
        for i in range(N_ITEMS)
    ]
    pending: dict[str, Any] = {table.name: requests}
    for _ in range(10):  # real DynamoDB may hand back UnprocessedItems: retry them (bounded)
        pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not pending:
            break
    assert not pending, f"items still unprocessed after 10 attempts: {pending}"

    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(pk), "ConsistentRead": True}
    while True:
        page = table.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert [it["sk"] for it in items] == [Decimal(i) for i in range(N_ITEMS)]
    assert sum(it["revenue"] for it in items) == Decimal("306.25")

    top = table.query(
        KeyConditionExpression=Key("pk").eq(pk) & Key("sk").gte(20), ScanIndexForward=False
    )["Items"]
    assert [it["sk"] for it in top] == [Decimal(i) for i in range(24, 19, -1)]
