"""S3 source on the real stack (moto S3 + Kafka), through the real ``headrace produce`` CLI.

Sizes scale with ``HEADRACE_TEST_SCALE`` (default 1: 1,500 objects, at least 1,001 at any scale
so the listing spans moto's 1,000-key pages; a ~20 MB gzip JSONL object of 600,000 lines);
``headrace bench produce`` runs the full sizes.
"""

from __future__ import annotations

import os

import boto3
import orjson
import pytest
from fixtures.values import present

from headrace.dlq import HEADER_ERROR_CLASS, HEADER_POSITION
from headrace_dev.bench.produce_data import jsonl_lines, put_gzip_jsonl
from producers.testing import read_topic, write_pipeline

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)
OBJECTS = max(1_001, int(1_500 * SCALE))  # moto lists 1,000 keys a page
BIG_LINES = max(10_000, int(600_000 * SCALE))


@pytest.fixture
def s3(aws_endpoint, aws_credentials):
    return boto3.client("s3", endpoint_url=aws_endpoint, **aws_credentials)


@pytest.fixture
def bucket(s3, unique):
    s3.create_bucket(Bucket=unique)
    yield unique
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=unique):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=unique, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=unique)


def _source(bucket: str, aws_endpoint: str, topic: str, prefix: str, fmt: str, **kw):
    return {
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "format": fmt,
        "endpoint_url": aws_endpoint,
        "topic": topic,
        "key": ["order_id"],
        **kw,
    }


def test_many_objects_across_pages_poison_resume_and_etag_change(
    s3, bucket, unique, tmp_path, produce, kafka_bootstrap, aws_endpoint, new_topic
):
    topic = new_topic(".orders", 3)
    lines_each = 5
    poisoned = set(range(0, OBJECTS, 100))
    for n in range(OBJECTS):
        body = b"".join(jsonl_lines(n * lines_each, lines_each))
        if n in poisoned:
            body += b'{"order_id": "broken\n'  # line 6: unparsable
        s3.put_object(Bucket=bucket, Key=f"in/{n:06d}.jsonl", Body=body)
    s3.put_object(Bucket=bucket, Key="other/skip.jsonl", Body=b'{"order_id": "x"}\n')
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="in/")
    assert len(list(pages)) >= 2, "the listing must span pages for this test to mean anything"
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "landing": _source(
                bucket,
                aws_endpoint,
                topic,
                "in/",
                "jsonl",
                timestamp_field="created_at",
                concurrency=8,
            )
        },
        metrics={"port": 19300},
    )
    done = produce(pipeline, "landing", "--once")
    assert done.returncode == 0, done.stderr

    msgs = read_topic(kafka_bootstrap, topic)
    counts = msgs.key_counts()
    assert len(msgs.messages) == OBJECTS * lines_each
    assert set(counts) == {f"o{i}".encode() for i in range(OBJECTS * lines_each)}
    assert max(counts.values()) == 1
    first = orjson.loads(present(next(v for k, v, _, _ in msgs.messages if k == b"o0")))
    assert first["order_id"] == "o0"
    ts = {k: t for k, _, _, t in msgs.messages}
    assert ts[b"o61"] == 1714521661000  # created_at 2024-05-01T00:01:01Z is the event time

    dlq = read_topic(kafka_bootstrap, topic + ".dlq")
    positions = sorted(
        (orjson.loads(h[HEADER_POSITION])["key"], orjson.loads(h[HEADER_POSITION])["line"])
        for _, _, h, _ in dlq.messages
    )
    assert positions == [(f"in/{n:06d}.jsonl", 6) for n in sorted(poisoned)]
    assert {h[HEADER_ERROR_CLASS] for _, _, h, _ in dlq.messages} == {b"JSONDecodeError"}
    assert dlq.messages[0][1] == b'{"order_id": "broken'

    # a second run finds nothing new; a rewritten object (new ETag) is read again
    again = produce(pipeline, "landing", "--once")
    assert again.returncode == 0, again.stderr
    assert len(read_topic(kafka_bootstrap, topic).messages) == OBJECTS * lines_each
    rewritten = b'{"order_id": "o35", "v": 2, "created_at": "2024-05-02T00:00:00Z"}'
    s3.put_object(Bucket=bucket, Key="in/000007.jsonl", Body=rewritten + b"\n")
    third = produce(pipeline, "landing", "--once")
    assert third.returncode == 0, third.stderr
    after = read_topic(kafka_bootstrap, topic)
    assert len(after.messages) == OBJECTS * lines_each + 1
    newest = next(v for k, v, _, _ in reversed(after.messages) if k == b"o35")
    assert orjson.loads(present(newest)) == orjson.loads(rewritten)


def test_large_gzip_jsonl_object_streams_every_line(
    s3, bucket, unique, tmp_path, produce, kafka_bootstrap, aws_endpoint, new_topic
):
    topic = new_topic(".big", 3)
    size = put_gzip_jsonl(s3, bucket, "big/orders.jsonl.gz", 0, BIG_LINES)
    assert size > 100_000
    s3.put_object(Bucket=bucket, Key="big/notes.txt", Body=b"not matched by the glob")
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {"big": _source(bucket, aws_endpoint, topic, "big/", "jsonl.gz", glob="*.jsonl.gz")},
        metrics={"port": 19301},
    )
    done = produce(pipeline, "big", "--once")
    assert done.returncode == 0, done.stderr
    counts = read_topic(kafka_bootstrap, topic).key_counts()
    assert len(counts) == BIG_LINES
    assert max(counts.values()) == 1
    assert b"o0" in counts and f"o{BIG_LINES - 1}".encode() in counts


def test_csv_objects_with_quoted_newlines(
    s3, bucket, unique, tmp_path, produce, kafka_bootstrap, aws_endpoint, new_topic
):
    topic = new_topic(".csv", 1)
    s3.put_object(
        Bucket=bucket,
        Key="c/a.csv",
        Body=b'order_id;note\n1;"two\nlines"\n2;"a;b"\n3;x;extra\n',
    )
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {"c": _source(bucket, aws_endpoint, topic, "c/", "csv", delimiter=";")},
        metrics={"port": 19302},
    )
    done = produce(pipeline, "c", "--once")
    assert done.returncode == 0, done.stderr
    values = [
        orjson.loads(present(v)) for _, v, _, _ in read_topic(kafka_bootstrap, topic).messages
    ]
    assert values == [{"order_id": "1", "note": "two\nlines"}, {"order_id": "2", "note": "a;b"}]
    dlq = read_topic(kafka_bootstrap, topic + ".dlq").messages
    assert len(dlq) == 1
    assert orjson.loads(dlq[0][2][HEADER_POSITION])["line"] == 3

    # --reset says what it discards, then reads everything again
    reset = produce(pipeline, "c", "--once", "--reset")
    assert reset.returncode == 0, reset.stderr
    assert "discards the position of source 'c' (1 objects done)" in reset.stderr
    assert len(read_topic(kafka_bootstrap, topic).messages) == 4


def test_missing_bucket_is_a_clear_error(
    unique, tmp_path, produce, kafka_bootstrap, aws_endpoint, new_topic
):
    topic = new_topic(".none", 1)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {"gone": _source(unique + "-missing", aws_endpoint, topic, "", "jsonl")},
        metrics={"port": 19303},
    )
    done = produce(pipeline, "gone", "--once")
    assert done.returncode == 1
    assert f"bucket '{unique}-missing'" in done.stderr
    assert aws_endpoint in done.stderr
    assert "NoSuchBucket" in done.stderr
