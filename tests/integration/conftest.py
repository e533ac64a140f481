"""Fixtures for the integration tests: the real local stack, read from ``.stack/env``.

Every test here talks to real servers started by ``headrace stack up`` (Kafka, MariaDB,
FerretDB, moto). Nothing is mocked and nothing is skipped: when the stack is not there, the
test fails and says how to start it. Each test names what it creates after its ``unique``
value (a topic, a database, a bucket...), and cleans up only what carries that name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from headrace_dev.stack import read_env_file

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIX = "run `headrace stack up` (or `make stack-up`) in the repository root, then rerun the tests"

TopicFactory = Callable[..., str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests (and only them) as ``integration``."""
    for item in items:
        if HERE == Path(item.path).resolve().parent or HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


# -- the stack's endpoints ------------------------------------------------------------------


def _stack_dir() -> Path:
    """``$HEADRACE_STACK_DIR`` if set, else ``<repo>/.stack`` (as ``headrace stack`` does)."""
    return Path(os.environ.get("HEADRACE_STACK_DIR") or REPO_ROOT / ".stack").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where ``python -m headrace...`` and ``streams`` resolve)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def stack_dir() -> Path:
    """The local stack's state directory (pid files, logs, env file)."""
    return _stack_dir()


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The endpoints written by ``headrace stack up``; fails (never skips) without them."""
    env_file = _stack_dir() / "env"
    if not env_file.is_file():
        pytest.fail(f"the local stack's env file {env_file} does not exist; {FIX}", pytrace=False)
    env = read_env_file(env_file)
    if not env:
        pytest.fail(f"the local stack's env file {env_file} is empty; {FIX}", pytrace=False)
    return env


def _require(env: dict[str, str], key: str) -> str:
    value = env.get(key)
    if not value:
        pytest.fail(
            f"{key} is missing from {_stack_dir() / 'env'} (keys: {', '.join(sorted(env))}); {FIX}",
            pytrace=False,
        )
    return value


def _require_tcp(what: str, host: str, port: int) -> None:
    """Fail with the fix when nothing accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        pytest.fail(f"{what} at {host}:{port} is not reachable ({exc}); {FIX}", pytrace=False)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_env: dict[str, str]) -> str:
    """``host:port`` of the Kafka broker, checked with a real metadata request."""
    bootstrap = _require(stack_env, "HEADRACE_KAFKA_BOOTSTRAP")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(
            f"Kafka at {bootstrap} did not answer a metadata request ({exc}); {FIX}",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture(scope="session")
def mysql_url(stack_env: dict[str, str]) -> str:
    """SQLAlchemy URL of the MariaDB server (user with full privileges)."""
    url = _require(stack_env, "HEADRACE_MYSQL_URL")
    _require_tcp("MariaDB", *_host_port(url, 3306))
    return url


@pytest.fixture(scope="session")
def mongo_uri(stack_env: dict[str, str]) -> str:
    """MongoDB URI of FerretDB."""
    uri = _require(stack_env, "HEADRACE_MONGO_URI")
    _require_tcp("FerretDB", *_host_port(uri, 27017))
    return uri


@pytest.fixture(scope="session")
def aws_endpoint(stack_env: dict[str, str]) -> str:
    """Endpoint URL of the moto server (S3 and DynamoDB)."""
    url = _require(stack_env, "HEADRACE_AWS_ENDPOINT")
    _require_tcp("moto (S3/DynamoDB)", *_host_port(url, 5000))
    return url


@pytest.fixture(scope="session")
def aws_credentials(stack_env: dict[str, str]) -> dict[str, str]:
    """Keyword arguments for ``boto3.client``/``resource``: the stack's fake credentials."""
    return {
        "aws_access_key_id": _require(stack_env, "AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": _require(stack_env, "AWS_SECRET_ACCESS_KEY"),
        "region_name": stack_env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }


@pytest.fixture
def unique() -> str:
    """A fresh lowercase name for this test's topic/table/bucket/collection."""
    return f"t{uuid4().hex[:10]}"


# -- Kafka topics ---------------------------------------------------------------------------


def create_topic(admin: AdminClient, name: str, partitions: int, *, timeout: float = 30.0) -> str:
    """Create topic ``name`` with ``partitions`` partitions; wait until each has a leader."""
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    try:
        futures[name].result(timeout=timeout)
    except KafkaException as exc:
        pytest.fail(f"could not create topic {name!r}: {exc}", pytrace=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return name
        time.sleep(0.2)
    pytest.fail(f"topic {name!r} was created but had no leader after {timeout:.0f}s", pytrace=False)


def _delete_named(admin: AdminClient, unique: str) -> None:
    """Delete the topics and consumer groups whose names contain ``unique`` (best effort).

    ``unique`` is random, so a name holding it was made by this test or by a process it ran
    (``<unique>.in``, a Faust app's ``<unique>-...-changelog``, a pipeline's
    ``_headrace.<unique>.checkpoints``). A failure is printed, never raised: cleanup must not
    hide the test's own result.
    """
    futures = {}
    try:
        topics = [t for t in admin.list_topics(timeout=10).topics if unique in t]
        if topics:
            futures.update(admin.delete_topics(topics, operation_timeout=10))
        groups = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
        ids = [g.group_id for g in groups.valid if unique in g.group_id]
        if ids:
            futures.update(admin.delete_consumer_groups(ids, request_timeout=10))
    except Exception as exc:
        print(f"cleanup: listing Kafka names containing {unique!r} failed: {exc}")
    for name, fut in futures.items():
        try:
            fut.result(timeout=15)
        except Exception as exc:
            print(f"cleanup: could not delete {name!r}: {exc}")


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def new_topic(kafka_admin: AdminClient, unique: str) -> Iterator[TopicFactory]:
    """``new_topic(suffix, partitions)`` creates ``<unique><suffix>`` and returns its name.

    At teardown every topic and consumer group whose name contains this test's ``unique`` is
    deleted: that covers what the test (or a process it ran, like a Faust worker using
    ``unique`` as its app id) created, and nothing else.
    """

    def factory(suffix: str = "", partitions: int = 1) -> str:
        return create_topic(kafka_admin, f"{unique}{suffix}", partitions)

    yield factory
    _delete_named(kafka_admin, unique)


# -- seeded data ----------------------------------------------------------------------------


@pytest.fixture
def db_url(mysql_url: str, unique: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty MariaDB database ``<unique>`` (utf8mb4), dropped at
    teardown with whatever the test put in it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(mysql_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{unique}` CHARACTER SET utf8mb4"))
    try:
        yield make_url(mysql_url).set(database=unique).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{unique}`"))
        admin.dispose()


@pytest.fixture
def orders_db(db_url: str) -> tuple[str, list[dict[str, Any]]]:
    """Database ``db_url`` with the tests' ``orders`` table (columns id, customer_id, qty,
    price, status, updated_at) of 300 rows; returns (url, rows)."""
    import sqlalchemy as sa

    rows = [
        {
            "i": i,
            "c": f"c{i % 7}",
            "q": i % 5,
            "p": f"{i % 13}.{i % 100:02d}",
            "s": "cancelled" if i % 9 == 0 else "ok",
        }
        for i in range(1, 301)
    ]
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id VARCHAR(10), qty INT, "
                "price DECIMAL(10,2), status VARCHAR(10), updated_at DATETIME(3))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:i, :c, :q, :p, :s, UTC_TIMESTAMP(3))"), rows
        )
    engine.dispose()
    return db_url, rows


@pytest.fixture
def orders_pipeline(
    tmp_path: Path,
    orders_db: tuple[str, list[dict[str, Any]]],
    kafka_bootstrap: str,
    mongo_uri: str,
    unique: str,
) -> tuple[Path, list[dict[str, Any]]]:
    """A pipeline file: ``orders_db`` -> Kafka -> a filter+set stage -> MongoDB ``<unique>``.

    Returns (file, seeded rows). Tests drop the MongoDB database ``<unique>`` they fill.
    """
    url, rows = orders_db
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"""
name: {unique}
kafka: {{bootstrap_servers: '{kafka_bootstrap}'}}
sources:
  orders_db:
    type: mysql
    url: '{url}'
    table: orders
    mode: incrementing
    incrementing_column: id
    topic: {unique}.orders.raw
    key: [id]
    poll_interval: 1s
stages:
  clean:
    from: {unique}.orders.raw
    to: {unique}.orders.clean
    transform:
      - filter: "status != 'cancelled' and qty > 0"
      - set: {{total: "price * qty"}}
sinks:
  docs:
    type: mongodb
    from: {unique}.orders.clean
    uri: '{mongo_uri}'
    database: {unique}
    collection: orders
    id: [id]
""")
    return pipeline, rows


Produce = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def produce(repo_root: Path, stack_env: dict[str, str]) -> Produce:
    """``produce(pipeline, source, *args)``: ``headrace produce -f <pipeline> <source> <args>``
    in a subprocess against the stack (no Prometheus targets), output captured as text."""

    def run(pipeline: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **stack_env, "HEADRACE_PROMETHEUS_TARGETS": ""}
        cli = [sys.executable, "-m", "headrace_cli.main", "produce", "-f", str(pipeline)]
        return subprocess.run(
            [*cli, name, *args],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


PromQL = Callable[[str], float]


@pytest.fixture(scope="session")
def promql(stack_env: dict[str, str]) -> PromQL:
    """Evaluate an instant PromQL query on the stack's Prometheus: the first result's value,
    0.0 when the result is empty."""
    import json
    import urllib.parse
    import urllib.request

    prom = _require(stack_env, "HEADRACE_PROMETHEUS_URL")

    def value(query: str) -> float:
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=5) as resp:
            result = json.loads(resp.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    return value


@pytest.fixture(scope="session")
def kafka_count(kafka_bootstrap: str) -> Callable[[str], int]:
    """Records in a topic now, as a read_committed consumer reads them: not its offsets,
    which also count the commit marker of every transaction (a source with
    ``exactly_once: true``) and the records of aborted ones."""
    from producers.testing import read_topic

    def count(topic: str) -> int:
        return len(read_topic(kafka_bootstrap, topic).messages)

    return count
