"""``headrace publish`` on the real stack: JSONL from stdin and CSV from a file, with the DLQ,
and an Avro schema checked before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import orjson
from fixtures.values import present

from headrace.dlq import HEADER_POSITION
from producers.testing import read_topic, write_pipeline
from schemas import AvroCodec, split_wire


def _unused(topic: str) -> dict[str, Any]:
    """A pipeline needs a source; publish only uses its kafka and schemas settings."""
    return {"unused": {"type": "s3", "bucket": "unused", "format": "jsonl", "topic": topic}}


def _publish(repo_root, stack_env, pipeline, *args, stdin: bytes | None = None):
    env = {**os.environ, **stack_env}
    return subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "publish", "-f", str(pipeline), *args],
        cwd=repo_root,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def test_publish_jsonl_stdin_and_csv_file_with_dlq(
    unique, tmp_path, repo_root, stack_env, kafka_bootstrap, new_topic
):
    topic = new_topic(".pub", 1)
    pipeline = write_pipeline(tmp_path / "p.yaml", unique, kafka_bootstrap, _unused(topic))
    done = _publish(
        repo_root,
        stack_env,
        pipeline,
        topic,
        "-",
        "--key",
        "id",
        stdin=b'{"id": 1, "n": "a"}\nnot json\n{"id": 2, "n": "b"}\n',
    )
    assert done.returncode == 0, done.stderr
    assert b"published 2 records" in done.stdout
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text('id,n\n3,"c\nd"\n4\n')
    done = _publish(
        repo_root, stack_env, pipeline, topic, str(csv_file), "--format", "csv", "--key", "id"
    )
    assert done.returncode == 0, done.stderr
    msgs = read_topic(kafka_bootstrap, topic).messages
    assert [(k, orjson.loads(present(v))) for k, v, _, _ in msgs] == [
        (b"1", {"id": 1, "n": "a"}),
        (b"2", {"id": 2, "n": "b"}),
        (b"3", {"id": "3", "n": "c\nd"}),
    ]
    dlq = read_topic(kafka_bootstrap, topic + ".dlq").messages
    assert [(v, orjson.loads(h[HEADER_POSITION])) for _, v, h, _ in dlq] == [
        (b"not json", {"key": "stdin", "etag": "", "line": 2}),
        (b"4", {"key": "rows.csv", "etag": "", "line": 2}),
    ]


def test_publish_with_avro_schema(
    unique, tmp_path, repo_root, stack_env, kafka_bootstrap, new_topic
):
    topic = new_topic(".avro", 1)
    schema = {"type": "record", "name": "p", "fields": [{"name": "id", "type": "long"}]}
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "p.avsc").write_text(json.dumps(schema))
    pipeline = write_pipeline(
        tmp_path / "p.yaml", unique, kafka_bootstrap, _unused(topic), schemas={"dir": "schemas"}
    )
    done = _publish(
        repo_root,
        stack_env,
        pipeline,
        topic,
        "-",
        "--schema",
        "p",
        stdin=b'{"id": 5}\n{"id": "five"}\n',
    )
    assert done.returncode == 0, done.stderr
    [(_, value, _, _)] = read_topic(kafka_bootstrap, topic).messages
    sid, _ = split_wire(present(value))
    assert AvroCodec(schema, sid).decode(present(value)) == {"id": 5}
    [(_, dead, headers, _)] = read_topic(kafka_bootstrap, topic + ".dlq").messages
    assert dead == b'{"id": "five"}'
    assert b"id" in headers["headrace.error.message"]
