"""A sink reading a topic written in Kafka transactions (a source with ``exactly_once: true``,
or a stage's output) commits up to the end of the topic.

Every transaction ends with a commit marker, an offset with no record. The sink committed
"last record written + 1", one short of every partition's end, so its lag stayed at 1 for
good and ``headrace run --until-idle`` never saw it caught up. Now, when a batch holds the
last record read from a partition, the sink commits the consumer's position, which is past
the marker (``connectors.runner.SinkRunner._ends``).

The test writes small transactions and an aborted one, runs a MongoDB sink, and needs the
group's committed offsets at the high watermarks within 60 s; then writes more and needs
the same of a restarted sink, and the collection to hold every committed record once and
nothing of the aborted transactions.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures.transactions import lags, write_transactions
from pymongo import MongoClient

from streams.testing import tail

pytestmark = pytest.mark.integration

TRANSACTIONS = 30
PER_TRANSACTION = 4
PARTITIONS = 2

OPTIONS = ("--metrics-port", "0", "--group")

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{topic}]
sinks:
  s:
    type: mongodb
    from: {topic}
    uri: "{mongo}"
    database: sinktx
    collection: {u}
    id: [x]
    write: replace
    batch_size: 50
    linger: 0.2s
"""


def _run_sink(
    repo_root: Path, pipeline: Path, group: str, log: Path, bootstrap: str, topic: str
) -> None:
    """Start the sink, wait for its commits to reach every partition's end, stop it."""
    proc = subprocess.Popen(
        [str(repo_root / ".venv/bin/headrace"), "sink", "s", "-f", str(pipeline), *OPTIONS, group],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=repo_root,
    )
    try:
        deadline = time.monotonic() + 60
        now = lags(bootstrap, group, topic, PARTITIONS)
        while now != [0] * PARTITIONS:
            assert proc.poll() is None, tail(log)
            assert time.monotonic() < deadline, f"lag per partition {now}\n{tail(log)}"
            time.sleep(0.5)
            now = lags(bootstrap, group, topic, PARTITIONS)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, tail(log)


@pytest.mark.timeout(300)
def test_a_sink_commits_to_the_end_of_a_topic_written_in_transactions(
    tmp_path: Path,
    repo_root: Path,
    kafka_bootstrap: str,
    mongo_uri: str,
    new_topic: Any,
    unique: str,
) -> None:
    topic = new_topic(".in", PARTITIONS)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(u=unique, bootstrap=kafka_bootstrap, topic=topic, mongo=mongo_uri)
    )
    group, log = f"{unique}-sink", tmp_path / "sink.log"
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    coll = client["sinktx"][unique]
    try:
        txid = f"{unique}-tx"
        written = write_transactions(kafka_bootstrap, topic, txid, 0, TRANSACTIONS, PER_TRANSACTION)
        _run_sink(repo_root, pipeline, group, log, kafka_bootstrap, topic)
        assert sorted(d["x"] for d in coll.find()) == list(range(written))
        # restarted with every committed offset past its partition's last marker
        more = write_transactions(
            kafka_bootstrap, topic, txid, written, TRANSACTIONS, PER_TRANSACTION
        )
        _run_sink(repo_root, pipeline, group, log, kafka_bootstrap, topic)
        assert sorted(d["x"] for d in coll.find()) == list(range(written + more))
    finally:
        coll.drop()
        client.close()
