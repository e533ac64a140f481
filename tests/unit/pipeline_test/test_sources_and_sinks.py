"""Sources fed inline and sinks planned without a server, through ``headrace test``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from headrace.config import load_pipeline
from headrace_cli.pipeline_test.sources import s3_source

SOURCES = """\
sources:
  events:
    type: s3
    bucket: landing
    prefix: events/
    glob: "*.jsonl.gz"
    format: jsonl.gz
    topic: events
    key: [user]
    timestamp_field: ts
  rows:
    type: mysql
    url: mysql+pymysql://u:p@127.0.0.1/db
    table: t
    mode: timestamp+incrementing
    timestamp_column: updated_at
    incrementing_column: id
    topic: rows
    key: [id]
    timestamp_field: updated_at
"""


def test_an_s3_body_is_compressed_for_a_gz_format_and_parsed_by_the_source(write, run) -> None:
    path = write(
        SOURCES,
        """\
        tests:
          - name: gzip jsonl, keyed and timed
            sources:
              events:
                objects:
                  events/a.jsonl.gz: |
                    {"user": "u1", "ts": "2024-05-01T12:00:00Z", "n": 1}
                    {"user": "u2", "n": 2}
                  events/b.jsonl: '{"user": "ignored: the glob wants .jsonl.gz"}'
            expect:
              events:
                - key: u1
                  value: {user: u1, ts: "2024-05-01T12:00:00Z", n: 1}
                  time: "2024-05-01T12:00:00Z"
              dead_letters:
                - topic: events
                  stage: events
                  reason: "timestamp field 'ts'"
                  key: u2
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_mysql_rows_are_read_in_the_order_of_the_mode_and_positioned(write, run) -> None:
    path = write(
        SOURCES,
        """\
        tests:
          - name: by updated_at then id
            sources:
              rows:
                rows:
                  - {id: 2, updated_at: 2024-05-01 12:00:00}
                  - {id: 1, updated_at: 2024-05-01 12:00:00}
                  - {id: 3, updated_at: 2024-05-01 11:00:00}
            expect:
              rows:
                - {key: "3", time: "2024-05-01T11:00:00Z"}
                - {key: "1", value: {id: 1, updated_at: "2024-05-01T12:00:00+00:00"}}
                - {key: "2"}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_the_s3_source_is_built_as_the_producer_builds_it() -> None:
    """``sources.s3_source`` mirrors ``producers.s3.build`` (with an in-memory bucket)."""
    from producers.s3 import build

    with_key = Path(__file__).resolve().parents[3] / "examples" / "shop" / "pipeline.yaml"
    pipeline = load_pipeline(with_key)
    for name in ("customers_jsonl", "customers_csv"):
        real, real_encoder = build(pipeline, name, pipeline.sources[name])  # type: ignore[arg-type]
        ours, our_encoder = s3_source(pipeline, name, {})
        for attr in ("bucket", "prefix", "glob", "file_format", "gzipped", "delimiter"):
            assert getattr(ours, attr) == getattr(real, attr), attr
        assert ours.reingest_on_change == real.reingest_on_change
        assert (ours.projection is None) == (real.projection is None)
        if real.projection is not None:
            assert ours.projection.fields == real.projection.fields
            assert ours.projection.native == real.projection.native
        assert type(our_encoder.codec) is type(real_encoder.codec)
        assert our_encoder.key_fields == real_encoder.key_fields
        assert our_encoder.timestamp_field == real_encoder.timestamp_field


SINKS = """\
topics: [orders, ranked]
stages:
  top:
    from: orders
    to: ranked
    rank: {partition_by: [region], order_by: [amount desc], limit: 1}
sinks:
  mongo:
    type: mongodb
    from: orders
    uri: mongodb://127.0.0.1:27017
    database: d
    collection: c
    id: [order_id]
    version_field: version
  dynamo:
    type: dynamodb
    from: orders
    table: orders
    partition_key: region
    sort_key: order_id
    version_field: version
  leaders:
    type: mongodb
    from: ranked
    uri: mongodb://127.0.0.1:27017
    database: d
    collection: leaders
    write: delete-on-tombstone
"""


def test_sinks_show_their_operations_ids_and_version_guards(write, run) -> None:
    path = write(
        SINKS,
        """\
        tests:
          - name: newest per id, guarded
            input:
              orders:
                - {key: [eu, 1], value: {region: eu, order_id: 1, version: 1, amount: 5.5}}
                - {key: [eu, 1], value: {region: eu, order_id: 1, version: 2, amount: 7}}
                - {key: [us, 2], value: {region: us, version: 1}}
                - {key: [eu, 3], raw: "not json"}
            expect:
              sinks:
                mongo:
                  - op: upsert
                    id: 1
                    doc: {region: eu, order_id: 1, version: 2, amount: 7}
                    guard: version <= 2
                dynamo:
                  - op: put
                    key: {region: eu, order_id: "1"}
                    item: {region: eu, order_id: "1", version: 2, amount: 7}
                    guard: version <= 2
              dead_letters:
                ordered: false
                records:
                  - {stage: mongo, reason: "id field 'order_id' is missing"}
                  - {stage: mongo, reason: cannot decode the value}
                  - {stage: dynamo, reason: "key attribute 'order_id' is missing"}
                  - {stage: dynamo, reason: cannot decode the value}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_a_member_leaving_the_ranking_is_deleted_by_the_sink(write, run) -> None:
    path = write(
        SINKS,
        """\
        tests:
          - name: a bigger order takes the lead
            stages: [top]
            input:
              orders:
                # members are told apart by their key (the topic's key fields are unknown)
                - {key: "1", value: {region: eu, order_id: 1, amount: 5}}
                - {key: "2", value: {region: eu, order_id: 2, amount: 9}, at: 1s}
            expect:
              ranked:
                subset: true
                records:
                  - {key: [eu, "1"], value: {order_id: 1, rank: 1}}
                  - {key: [eu, "1"], value: null}
                  - {key: [eu, "2"], value: {order_id: 2, rank: 1}}
              sinks:
                leaders:
                  subset: true
                  records:
                    - {op: delete, id: '["eu","1"]'}
                    - {op: upsert, doc: {order_id: 2, rank: 1}}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_without_pymongo_a_mongodb_sink_expectation_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "name: t\nkafka: {bootstrap_servers: 127.0.0.1:9092}\n" + SINKS
    )
    tests = tmp_path / "pipeline_test.yaml"
    tests.write_text(
        textwrap.dedent(
            """\
            tests:
              - name: a mongo write
                input: {orders: [{value: {order_id: 1, version: 1}}]}
                expect: {sinks: {mongo: {count: 1}}}
              - name: a dynamo write needs no library
                input: {orders: [{value: {region: eu, order_id: 1, version: 1}}]}
                expect: {sinks: {dynamo: {count: 1}}}
            """
        )
    )
    child = (
        "import sys\n"
        "for name in ('pymongo', 'bson'): sys.modules[name] = None\n"
        "from headrace_cli.main import main\n"
        f"sys.exit(main(['test', {str(tests)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "tests[0].expect.sinks.mongo: sink 'mongo' (type mongodb) needs the Python package "
        "'pymongo' to show its operations, which is not installed: pip install 'headrace[mongodb]'"
    ) in done.stderr
    assert "tests[1]" not in done.stderr


def test_fixture_files_feed_topics_and_sources(write, run) -> None:
    path = write(
        "topics: [orders]\n"
        + SOURCES
        + "stages:\n  pass:\n    from: orders\n    to: orders.out\n"
        + "    transform: [{cast: {qty: int}}]\n",
        """\
        tests:
          - name: a csv of orders (text fields) and a jsonl of records
            stages: [pass]
            input:
              orders:
                - file: orders.csv
                - {file: records.jsonl, as: records, at: 1s}
            expect:
              orders.out:
                - {value: {id: "1", qty: 2}}
                - {value: {id: "2", qty: 3}}
                - {key: k, value: {id: "3", qty: 4}, at: 1s}
          - name: mysql rows from a file
            sources:
              rows: {file: rows.jsonl}
            expect:
              rows: [{key: "7", value: {id: 7, updated_at: "2024-05-01T12:00:00Z"}}]
        """,
    )
    (path.parent / "orders.csv").write_text("id,qty\n1,2\n2,3\n")
    (path.parent / "records.jsonl").write_text('{"key": "k", "value": {"id": "3", "qty": "4"}}\n')
    (path.parent / "rows.jsonl").write_text('{"id": 7, "updated_at": "2024-05-01T12:00:00Z"}\n')
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_a_record_in_a_fixture_file_is_checked_like_one_in_the_test_file(write, run) -> None:
    path = write(
        "topics: [orders]\nstages:\n  pass:\n    from: orders\n    to: out\n"
        "    transform: [{drop: [x]}]\n",
        """\
        tests:
          - name: bad fixture
            stages: [pass]
            input: {orders: [{file: records.jsonl, as: records}]}
            expect: {out: []}
        """,
    )
    (path.parent / "records.jsonl").write_text('{"value": {"id": 1}, "partiton": 0}\n')
    code, _out, err = run("test", path)
    assert code == 2
    assert (
        "tests[0].input.orders[0].file: 'records.jsonl' record 1: partiton: unknown key "
        "(did you mean 'partition'?)"
    ) in err
