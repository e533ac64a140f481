"""A third-party connector, installed as a package: ``examples/jsonl-sink`` (issue 16, item 3).

The example is built and installed into a temporary directory (``pip install --no-deps
--no-build-isolation --target``); headrace runs in subprocesses with ``PYTHONPATH`` set to it,
so ``importlib.metadata`` finds its ``headrace.sinks`` entry point there and nowhere else (the
venv never sees the plugin). Then: its keys are in ``headrace config reference``; ``headrace
check`` accepts ``type: jsonl`` and still refuses an unknown type naming the known ones; its
own unit tests pass against the installed copy; and ``headrace sink`` writes what a real Kafka
topic holds into the file, committing the offsets.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from headrace.kafka_clients import produce_waiting

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "jsonl-sink"
HEADRACE = str(Path(sys.executable).parent / "headrace")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the example plugin is installed (built from a copy: the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("jsonl-plugin")
    src = tmp / "src"
    shutil.copytree(
        EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = tmp / "site"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--quiet", "--target", str(site), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    assert (site / "headrace_jsonl_sink" / "__init__.py").is_file()
    return site


def _env(site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def _headrace(
    site: Path | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEADRACE, *args], capture_output=True, text=True, timeout=timeout, env=_env(site)
    )


def _pipeline(tmp: Path, name: str, bootstrap: str, topic: str, sink: str) -> Path:
    f = tmp / f"{name}.yaml"
    f.write_text(
        f"name: {name}\nkafka: {{bootstrap_servers: '{bootstrap}'}}\ntopics: ['{topic}']\n"
        f"sinks:\n  out: {sink}\nmetrics: {{port: 1}}\n"
    )
    return f


def test_the_plugin_is_in_the_reference_and_check_validates_it(
    plugin_site: Path, tmp_path: Path
) -> None:
    ref = _headrace(plugin_site, "config", "reference")
    assert ref.returncode == 0, ref.stderr
    for key in ("type", "from", "batch_size", "linger", "path"):
        assert f"| `sinks.<name:jsonl>.{key}` |" in ref.stdout, key
    assert "File the records are appended to" in ref.stdout
    without = _headrace(None, "config", "reference")  # the entry point is what brings it
    assert without.returncode == 0 and "<name:jsonl>" not in without.stdout

    out = tmp_path / "out.jsonl"
    good = _pipeline(
        tmp_path, "good", "127.0.0.1:1", "t.in", f"{{type: jsonl, from: t.in, path: '{out}'}}"
    )
    check = _headrace(plugin_site, "check", "-f", str(good))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "pipeline 'good' is valid: 0 source(s), 0 stage(s), 1 sink(s)" in check.stdout

    missing = _pipeline(tmp_path, "missing", "127.0.0.1:1", "t.in", "{type: jsonl, from: t.in}")
    check = _headrace(plugin_site, "check", "-f", str(missing))
    assert check.returncode == 2 and "sinks.out.path" in check.stderr, check.stderr

    unknown = _pipeline(
        tmp_path, "unknown", "127.0.0.1:1", "t.in", "{type: nope, from: t.in, path: x}"
    )
    check = _headrace(plugin_site, "check", "-f", str(unknown))
    assert check.returncode == 2, check.stdout + check.stderr
    assert "sinks.out.type: 'nope' is not one of mongodb, dynamodb, jsonl" in check.stderr
    assert not out.exists()  # check writes nothing


def test_the_plugins_own_tests_pass_against_the_installed_copy(plugin_site: Path) -> None:
    tests = plugin_site.parent / "src" / "tests"  # the copy built above; cwd outside it, so
    # `import headrace_jsonl_sink` finds the installed package, through PYTHONPATH
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(plugin_site),
        cwd=plugin_site.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _wait(pred: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while not pred():
        if proc.poll() is not None:
            pytest.fail(
                f"the sink exited ({proc.returncode}) waiting for {what}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after 120s:\n{log.read_text()}")
        time.sleep(0.2)


def test_headrace_sink_writes_a_topic_into_the_file(
    plugin_site: Path, kafka_bootstrap: str, new_topic: Any, unique: str, tmp_path: Path
) -> None:
    topic = new_topic(".in", 2)
    records: list[tuple[bytes, bytes | None]] = [
        (f"k{i % 7}".encode(), orjson.dumps({"id": i, "price": i * 0.5, "note": f"n{i}"}))
        for i in range(40)
    ]
    records += [(b"k3", None), (b"k5", None)]  # tombstones, after their keys' values
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in records:
        produce_waiting(producer, topic, value, key)
    assert producer.flush(30) == 0

    out = tmp_path / "sink" / "records.jsonl"
    pipeline = _pipeline(
        tmp_path,
        unique,
        kafka_bootstrap,
        topic,
        f"{{type: jsonl, from: '{topic}', path: '{out}', batch_size: 16, linger: 50ms}}",
    )
    connect = _headrace(plugin_site, "check", "--connect", "-f", str(pipeline))
    assert connect.returncode == 0, connect.stdout + connect.stderr
    assert "jsonl file" in connect.stdout + connect.stderr

    log = tmp_path / "sink.log"
    proc = subprocess.Popen(
        [HEADRACE, "sink", "out", "-f", str(pipeline), "--metrics-port", "0"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=_env(plugin_site),
    )
    try:
        _wait(lambda: len(_lines(out)) >= len(records), "every record in the file", proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()

    lines = _lines(out)
    expected = [
        {"key": k.decode(), "deleted": True}
        if v is None
        else {"key": k.decode(), "value": orjson.loads(v)}
        for k, v in records
    ]
    assert Counter(orjson.dumps(x) for x in lines) == Counter(orjson.dumps(x) for x in expected)
    for gone in ("k3", "k5"):  # one key is one partition: its tombstone comes after its values
        assert [line for line in lines if line["key"] == gone][-1] == {"key": gone, "deleted": True}

    # the runner committed after the writes returned: nothing is left to read
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"headrace.{unique}.sink.out"}
    )
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        assert sum(max(0, tp.offset) for tp in committed) == len(records)
    finally:
        consumer.close()
