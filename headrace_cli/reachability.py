"""``headrace check --connect``: is every system a pipeline file names reachable?

One :class:`Finding` per thing named: the Kafka cluster and each topic, each MySQL table (and
the columns the source's mode needs), each S3 bucket, each MongoDB server/collection and each
DynamoDB table. Nothing is created or written. Error details pass through ``redact_text`` so a
password in a URL or a driver message never reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from headrace.config import DynamoDBSink, MongoSink, MySQLSource, Pipeline, S3Source
from headrace.config.redact import redact_text

__all__ = ["Finding", "check_reachable"]

#: (reachable, what was seen or what is wrong)
Outcome = tuple[bool, str]


@dataclass(frozen=True)
class Finding:
    """The result of one check: ``owner`` is the config key (``sources.orders_db``)."""

    owner: str
    kind: str
    target: str
    ok: bool
    detail: str


def check_reachable(pipeline: Pipeline, *, timeout: float = 5.0) -> list[Finding]:
    """Run every check; a check that raises becomes a failed Finding, never an exception."""
    findings: list[Finding] = []
    try:
        findings.extend(_kafka(pipeline, timeout))
    except Exception as exc:
        findings.append(
            Finding("kafka", "kafka", pipeline.kafka.bootstrap_servers, False, _describe(exc))
        )
    for name, source in pipeline.sources.items():
        owner = f"sources.{name}"
        if isinstance(source, MySQLSource):
            what = source.table or "(query)"
            findings.extend(_guard(owner, "mysql table", what, partial(_mysql, source, timeout)))
        elif isinstance(source, S3Source):
            findings.extend(
                _guard(owner, "s3 bucket", source.bucket, partial(_s3, source, timeout))
            )
    for name, sink in pipeline.sinks.items():
        owner = f"sinks.{name}"
        if isinstance(sink, MongoSink):
            target = f"{sink.database}.{sink.collection}"
            findings.extend(
                _guard(owner, "mongodb collection", target, partial(_mongo, sink, timeout))
            )
        elif isinstance(sink, DynamoDBSink):
            findings.extend(
                _guard(owner, "dynamodb table", sink.table, partial(_dynamo, sink, timeout))
            )
    return findings


def _guard(owner: str, kind: str, target: str, check: Callable[[], Outcome]) -> list[Finding]:
    try:
        ok, detail = check()
    except Exception as exc:
        ok, detail = False, _describe(exc)
    return [Finding(owner, kind, target, ok, detail)]


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return redact_text(text)[:300]


def _kafka(pipeline: Pipeline, timeout: float) -> Iterator[Finding]:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {
        "bootstrap.servers": pipeline.kafka.bootstrap_servers,
        "security.protocol": pipeline.kafka.security_protocol,
        "log_level": 0,
    }
    kafka = pipeline.kafka
    if kafka.sasl_mechanism:
        conf["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        conf["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    conf.update(kafka.client)
    metadata = AdminClient(conf).list_topics(timeout=timeout)
    yield Finding(
        "kafka", "kafka", kafka.bootstrap_servers, True, f"{len(metadata.brokers)} broker(s)"
    )
    produced = pipeline.produced_topics()
    named: dict[str, str] = {}
    for topic, writers in produced.items():
        named[topic] = f"written by {', '.join(writers)}"
    for topic in pipeline.topics:
        named.setdefault(topic, "external")
    for topic, role in sorted(named.items()):
        meta = metadata.topics.get(topic)
        if meta is not None and meta.error is None:
            yield Finding(
                "kafka",
                "topic",
                topic,
                True,
                f"exists, {len(meta.partitions)} partition(s); {role}",
            )
        elif role == "external":
            yield Finding(
                "kafka",
                "topic",
                topic,
                False,
                "external topic does not exist; create it or fix topics:",
            )
        else:
            yield Finding("kafka", "topic", topic, True, f"not created yet; {role} creates it")


def _mysql(source: MySQLSource, timeout: float) -> Outcome:
    import sqlalchemy as sa

    engine = sa.create_engine(source.url, connect_args={"connect_timeout": int(timeout)})
    try:
        with engine.connect() as conn:
            if source.query:
                # The query is the user's own SQL by design; LIMIT 0 only prepares it.
                probe = f"SELECT * FROM ({source.query}) AS q LIMIT 0"  # noqa: S608
                conn.execute(sa.text(probe))
                return (True, "query prepares")
            assert source.table is not None
            needed = [c for c in (source.incrementing_column, source.timestamp_column) if c]
            return _table(sa.inspect(conn), source.table, needed)
    finally:
        engine.dispose()


def _table(insp: Any, name: str, needed: list[str]) -> Outcome:
    """Whether table ``name`` (``table`` or ``database.table``, as the MySQL source reads
    it) has the ``needed`` columns, through a SQLAlchemy inspector. A missing table lists
    the tables of the database searched: the database part when that database exists, else
    the connection's own (a mistyped or injected "database" part is no database at all)."""
    schema, _, table = name.rpartition(".")
    if schema and schema not in insp.get_schema_names():
        tables = ", ".join(sorted(insp.get_table_names())[:20]) or "none"
        return (
            False,
            f"table not found: no database {schema!r} (the part before the last '.'); "
            f"the URL's database {insp.default_schema_name!r} has tables: {tables}",
        )
    if not insp.has_table(table, schema=schema or None):
        tables = ", ".join(sorted(insp.get_table_names(schema=schema or None))[:20]) or "none"
        searched = schema or insp.default_schema_name
        return (False, f"table not found in database {searched!r} (tables: {tables})")
    columns = [c["name"] for c in insp.get_columns(table, schema=schema or None)]
    absent = [c for c in needed if c not in columns]
    if absent:
        return (False, f"column {absent[0]!r} not found (columns: {', '.join(columns)})")
    return (True, f"{len(columns)} columns")


def _s3(source: S3Source, timeout: float) -> Outcome:
    client = _boto(
        "s3",
        source.endpoint_url,
        source.region,
        source.aws_access_key_id,
        source.aws_secret_access_key,
        timeout,
    )
    client.head_bucket(Bucket=source.bucket)
    return (True, f"bucket exists at {source.endpoint_url or 'AWS'}")


def _mongo(sink: MongoSink, timeout: float) -> Outcome:
    from pymongo import MongoClient

    ms = int(timeout * 1000)
    client: MongoClient[dict[str, Any]] = MongoClient(
        sink.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms
    )
    try:
        client.admin.command("ping")
        exists = sink.collection in client[sink.database].list_collection_names()
        return (
            True,
            "collection exists"
            if exists
            else "server answers; collection is created on first write",
        )
    finally:
        client.close()


def _dynamo(sink: DynamoDBSink, timeout: float) -> Outcome:
    client = _boto(
        "dynamodb",
        sink.endpoint_url,
        sink.region,
        sink.aws_access_key_id,
        sink.aws_secret_access_key,
        timeout,
    )
    try:
        desc = client.describe_table(TableName=sink.table)["Table"]
    except client.exceptions.ResourceNotFoundException:
        if sink.create:
            return (True, "table missing; create: true creates it")
        return (False, "table not found; create it or set create: true")
    return (True, f"table {desc.get('TableStatus', '?').lower()}")


def _boto(
    service: str,
    endpoint: str | None,
    region: str | None,
    key_id: str | None,
    secret: Any,
    timeout: float,
) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": region,
        "config": Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}
        ),
    }
    if key_id:
        kwargs["aws_access_key_id"] = key_id
    if secret is not None:
        kwargs["aws_secret_access_key"] = secret.get_secret_value()
    return boto3.client(service, **kwargs)
