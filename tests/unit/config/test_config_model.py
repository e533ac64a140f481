"""The pipeline model: the example loads with the right types; the model's own rules."""

from __future__ import annotations

import copy

import pytest

from connectors.dynamodb import DynamoDBSink
from connectors.mongodb import MongoSink
from headrace.config import Pipeline, PipelineConfigError, load_pipeline, parse_duration, parse_size
from headrace.config.durations import format_duration
from headrace.expr import Expression
from producers.mysql import MySQLSource
from producers.s3 import S3Source


def problems_of(write, data, env=None) -> list[str]:
    """The ``key: message`` lines of the error loading ``data`` (file name stripped)."""
    path = write(data)
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline(path, env=env or {})
    prefix = f"{path}: "
    lines = str(info.value).splitlines()
    assert all(line.startswith(prefix) for line in lines)
    return [line.removeprefix(prefix) for line in lines]


def load(write, data, env=None) -> Pipeline:
    return load_pipeline(write(data), env=env or {})


# -- the example ---------------------------------------------------------------------------


def test_example_loads_with_typed_values(shop_path, shop_env):
    p = load_pipeline(shop_path, env=shop_env)
    assert p.name == "shop"
    assert p.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert p.kafka.librdkafka_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }
    db = p.sources["orders_db"]
    assert isinstance(db, MySQLSource)
    assert db.url == "mysql+pymysql://app:pw-from-env-7Q2x@127.0.0.1:3306/shop"
    assert (db.mode, db.incrementing_column, db.timestamp_column) == (
        "timestamp+incrementing",
        "id",
        "updated_at",
    )
    assert db.key == ["order_id"] and db.output_format == "avro" and db.schema_ == "order"
    s3 = p.sources["profiles_s3"]
    assert isinstance(s3, S3Source)
    assert (s3.file_format, s3.gzip, s3.output_format) == ("jsonl", False, "json")

    clean = p.stages["clean_orders"]
    assert clean.kind == "records" and clean.from_ == "orders.raw"
    assert [step.kind for step in clean.transform or []] == ["filter", "set", "python"]
    steps = clean.transform or []
    assert isinstance(steps[0].filter, Expression)
    assert steps[0].filter.test({"status": "paid", "quantity": 2}) is True
    assert steps[0].filter.test({"status": "cancelled", "quantity": 2}) is False
    assert (
        steps[1].set is not None
        and steps[1].set["total"].evaluate({"price": 2, "quantity": 3}) == 6
    )
    assert clean.rate_limit is not None
    assert (clean.rate_limit.rate, clean.rate_limit.per, clean.rate_limit.burst) == (200, 1, 400)
    assert clean.rate_limit.on_excess == "delay"

    revenue = p.stages["customer_revenue"]
    agg = revenue.aggregate
    assert revenue.kind == "aggregate" and agg is not None
    assert (agg.window.type, agg.window.size, agg.window.grace) == ("tumbling", 60.0, 10.0)
    assert {k: m.function for k, m in agg.measures.items()} == {
        "revenue": "sum",
        "orders": "count",
        "largest": "max",
    }
    assert agg.measures["orders"].argument is None
    assert agg.measures["revenue"].argument is not None
    assert agg.having is not None and agg.having.test({"revenue": 5})

    rank = p.stages["leaderboard"].rank
    assert rank is not None
    assert [(k.field, k.descending) for k in rank.order_by] == [("revenue", True)]
    assert (rank.function, rank.limit, rank.partition_by) == ("dense_rank", 10, ["window_start"])

    mongo = p.sinks["orders_mongo"]
    assert isinstance(mongo, MongoSink)
    assert (mongo.write, mongo.id, mongo.version_field) == ("upsert", ["order_id"], "updated_at")
    dyn = p.sinks["leaderboard_dynamo"]
    assert isinstance(dyn, DynamoDBSink)
    assert (dyn.partition_key, dyn.sort_key) == ("window_start", "customer_id")
    assert dyn.rate_limit is not None and dyn.rate_limit.per_second == 100
    assert p.metrics.port == 9108
    assert p.schema_dir == shop_path.parent.absolute() / "schemas"
    assert p.produced_topics()["orders.clean"] == ["clean_orders"]


def test_pipeline_is_immutable(shop_path, shop_env):
    p = load_pipeline(shop_path, env=shop_env)
    with pytest.raises(ValueError):
        p.name = "other"


# -- durations and sizes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        (3, 3.0),
        (0.25, 0.25),
        ("1.5m", 90.0),
        ("10", 10.0),
        (" 2 s ", 2.0),
        ("0", 0.0),
    ],
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "s", "-1s", "1 sec", True, None, [1], "1e3s"])
def test_bad_durations_say_what_is_accepted(bad):
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds", [0.0, 0.5, 1.0, 60.0, 90.0, 7200.0, 0.0015])
def test_format_duration_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [(100, 100), ("4MB", 4_000_000), ("1MiB", 1_048_576), ("512 KB", 512_000), ("10b", 10)],
)
def test_byte_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["4 parsecs", "-1", True, 1.5, "MB"])
def test_bad_byte_sizes(bad):
    with pytest.raises(ValueError, match="byte size"):
        parse_size(bad)


# -- sources ---------------------------------------------------------------------------------


def _mysql(**over):
    src = {
        "type": "mysql",
        "url": "mysql+pymysql://app:x@127.0.0.1/shop",
        "table": "orders",
        "mode": "bulk",
        "topic": "orders.raw",
    }
    src.update(over)
    return {k: v for k, v in src.items() if v is not None}


def _pipeline(sources=None, stages=None, sinks=None, **top):
    data = {"name": "t", "kafka": {"bootstrap_servers": "127.0.0.1:9092"}}
    data.update(top)
    data["sources"] = sources if sources is not None else {"db": _mysql()}
    if stages:
        data["stages"] = stages
    if sinks:
        data["sinks"] = sinks
    return data


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        (
            {"mode": "incrementing"},
            "sources.db.incrementing_column: required when mode is 'incrementing'",
        ),
        ({"mode": "timestamp"}, "sources.db.timestamp_column: required when mode is 'timestamp'"),
        (
            {"mode": "timestamp+incrementing", "timestamp_column": "u"},
            "sources.db.incrementing_column: required when mode is 'timestamp+incrementing'",
        ),
        (
            {"incrementing_column": "id"},
            "sources.db.incrementing_column: not used when mode is 'bulk'; remove it",
        ),
        (
            {"timestamp_delay": "5s"},
            "sources.db.timestamp_delay: not used when mode is 'bulk'; remove it",
        ),
        ({"query": "SELECT 1"}, "sources.db: set exactly one of table or query"),
        ({"table": None}, "sources.db: set exactly one of table or query"),
        ({"format": "avro"}, "sources.db.schema: required when format is 'avro'"),
        (
            {"url": "postgresql://h/db"},
            "sources.db.url: 'postgresql://h/db' is not a MySQL SQLAlchemy URL "
            "(e.g. mysql+pymysql://user:password@host:3306/db)",
        ),
        ({"batch_size": 0}, "sources.db.batch_size: must be greater than 0, got 0"),
        (
            {"topic": "bad topic!"},
            "sources.db.topic: 'bad topic!' is not a valid Kafka topic name "
            "(letters, digits, '.', '_', '-', at most 249 characters)",
        ),
    ],
)
def test_mysql_source_rules(write, over, expected):
    assert expected in problems_of(write, _pipeline(sources={"db": _mysql(**over)}))


def test_mysql_modes_with_their_columns_load(write):
    p = load(
        write,
        _pipeline(
            sources={
                "a": _mysql(mode="incrementing", incrementing_column="id", topic="a"),
                "b": _mysql(
                    mode="timestamp", timestamp_column="u", timestamp_delay="2s", topic="b"
                ),
                "c": _mysql(
                    table=None,
                    query="SELECT * FROM t",
                    mode="timestamp+incrementing",
                    timestamp_column="u",
                    incrementing_column="id",
                    topic="c",
                    key="id",
                ),
            }
        ),
    )
    b, c = p.sources["b"], p.sources["c"]
    assert isinstance(b, MySQLSource) and isinstance(c, MySQLSource)
    assert c.query == "SELECT * FROM t" and c.key == ["id"]
    assert b.timestamp_delay == 2.0


def _s3(**over):
    src = {"type": "s3", "bucket": "landing", "format": "csv", "topic": "files.raw"}
    src.update(over)
    return src


def test_s3_source_formats_and_options(write):
    p = load(
        write,
        _pipeline(
            sources={
                "a": _s3(format="jsonl.gz", glob="*.jsonl.gz", topic="a", concurrency=4),
                "b": _s3(
                    format="csv",
                    delimiter=";",
                    reingest_on_change=False,
                    topic="b",
                    encoding="avro",
                    schema="row",
                    aws_access_key_id="AKIA",
                    aws_secret_access_key="very-secret-key-1",
                ),
            }
        ),
    )
    a, b = p.sources["a"], p.sources["b"]
    assert isinstance(a, S3Source) and isinstance(b, S3Source)
    assert (a.file_format, a.gzip, a.concurrency, a.poll_interval) == ("jsonl", True, 4, 10.0)
    assert (b.delimiter, b.reingest_on_change, b.output_format) == (";", False, "avro")
    assert b.aws_secret_access_key is not None
    assert b.aws_secret_access_key.get_secret_value() == "very-secret-key-1"


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        (
            {"format": "parquet"},
            "sources.s.format: 'parquet' is not one of json, jsonl, csv, json.gz, jsonl.gz, csv.gz",
        ),
        (
            {"format": "jsonl", "delimiter": ";"},
            "sources.s.delimiter: only used with format csv, not 'jsonl'",
        ),
        ({"delimiter": ";;"}, "sources.s.delimiter: ';;' must be exactly one character"),
        ({"bucket": "a/b"}, "sources.s.bucket: a bucket name has no '/'; put the path in prefix"),
        ({"encoding": "avro"}, "sources.s.schema: required when encoding is 'avro'"),
        ({"concurrency": 0}, "sources.s.concurrency: must be at least 1, got 0"),
        (
            {"aws_access_key_id": "AKIA"},
            "sources.s: set both aws_access_key_id and aws_secret_access_key, or neither",
        ),
    ],
)
def test_s3_source_rules(write, over, expected):
    assert expected in problems_of(write, _pipeline(sources={"s": _s3(**over)}))


# -- stages ----------------------------------------------------------------------------------


def _stage(**ops):
    stage = {"from": "orders.raw", "to": "orders.out"}
    stage.update(ops)
    return stage


def test_transform_steps_of_every_kind(write):
    steps = [
        {"filter": "quantity > 0"},
        {"set": {"total": "price * quantity", "one": 1}},
        {"rename": {"qty": "quantity"}},
        {"drop": "internal"},
        {"cast": {"price": "decimal", "when": "timestamp"}},
        {"validate": "order"},
        {"python": "myproject.hooks:enrich"},
    ]
    p = load(write, _pipeline(stages={"s": _stage(transform=steps, key=["order_id"])}))
    stage = p.stages["s"]
    parsed = stage.transform or []
    assert [s.kind for s in parsed] == [
        "filter",
        "set",
        "rename",
        "drop",
        "cast",
        "validate",
        "python",
    ]
    assert parsed[3].drop == ["internal"]
    assert parsed[5].validate_ == "order"
    assert parsed[1].set is not None and parsed[1].set["one"].evaluate({}) == 1
    assert stage.key == ["order_id"]
    dumped = p.redacted()["stages"]["s"]["transform"]
    assert dumped[0] == {"filter": "quantity > 0"} and dumped[5] == {"validate": "order"}


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        (
            _stage(),
            "stages.s: a stage needs one of transform, rate_limit, lookup, aggregate or rank",
        ),
        (
            _stage(key=["a"]),
            "stages.s: a stage needs one of transform, rate_limit, lookup, aggregate or rank",
        ),
        (_stage(transform=[]), "stages.s.transform: must have at least one step"),
        (
            _stage(transform=[{}]),
            "stages.s.transform[0]: a transform step needs one of filter, "
            "set, rename, drop, cast, validate, python",
        ),
        (
            _stage(transform=[{"filter": "a", "drop": ["b"]}]),
            "stages.s.transform[0]: a transform step has exactly one key, found filter and drop; "
            "write them as separate steps (they run in order)",
        ),
        (
            _stage(transform=[{"python": "not a hook"}]),
            "stages.s.transform[0].python: 'not a hook' is not a hook reference; write "
            "'package.module:function'",
        ),
        (
            _stage(transform=[{"cast": {"a": "money"}}]),
            "stages.s.transform[0].cast.a: 'money' is not one of str, int, float, decimal, bool, "
            "timestamp, date",
        ),
        (_stage(transform=[{"set": {}}]), "stages.s.transform[0].set: must not be empty"),
        (
            _stage(transform=[{"rename": {"a": "c", "b": "c"}}]),
            "stages.s.transform[0].rename: two fields are renamed to the same name",
        ),
        (
            _stage(transform=[{"drop": ["a", "a"]}]),
            "stages.s.transform[0].drop: field listed twice: a",
        ),
        (
            _stage(transform=[{"filter": True}]),
            "stages.s.transform[0].filter: expected an expression as a string, got bool",
        ),
        (
            _stage(transform=[{"filter": "a"}], to="orders.raw"),
            "stages.s.to: a stage cannot write to the topic it reads ('orders.raw')",
        ),
        (
            _stage(rate_limit={"rate": 10, "on_excess": "drop"}),
            "stages.s.rate_limit.on_excess: 'drop' is not one of delay, shed",
        ),
        (
            _stage(rate_limit={"rate": 10, "burst": 0.5}),
            "stages.s.rate_limit.burst: must be at least 1, got 0.5",
        ),
        (
            _stage(rate_limit={"rate": 10, "per": "0s"}),
            "stages.s.rate_limit.per: '0s' must be a duration greater than 0",
        ),
        (
            _stage(rank={"order_by": ["x"], "limit": 3}, transform=[{"filter": "a"}]),
            "stages.s.transform: cannot be combined with rank in one stage; use a separate stage "
            "before it",
        ),
        (
            _stage(
                rank={"order_by": ["x"], "limit": 3},
                aggregate={
                    "group_by": [],
                    "window": {"type": "tumbling", "size": 1},
                    "measures": {"n": "count()"},
                },
            ),
            "stages.s: aggregate and rank go in separate stages",
        ),
        (
            _stage(rank={"order_by": ["x"], "limit": 3}, key="x"),
            "stages.s.key: cannot be combined with rank in one stage; use a separate stage "
            "before it",
        ),
        (_stage(rank={"order_by": [], "limit": 3}), "stages.s.rank.order_by: must not be empty"),
        (
            _stage(rank={"order_by": ["x sideways"], "limit": 3}),
            "stages.s.rank.order_by[0]: 'x sideways' is not 'field', 'field asc' or 'field desc'",
        ),
        (
            _stage(rank={"order_by": ["x"], "limit": 0}),
            "stages.s.rank.limit: must be at least 1, got 0",
        ),
        (
            _stage(rank={"order_by": ["x"], "limit": 3, "function": "ntile"}),
            "stages.s.rank.function: 'ntile' is not one of row_number, rank, dense_rank",
        ),
        (
            _stage(lookup={"table_from": "orders.raw", "on": "id", "fields": [], "missing": "x"}),
            "stages.s.lookup.fields: must list at least one field",
        ),
        (
            _stage(
                lookup={"table_from": "orders.raw", "on": "id", "fields": ["a"], "missing": "x"}
            ),
            "stages.s.lookup.missing: 'x' is not one of keep, drop, dlq",
        ),
    ],
)
def test_stage_rules(write, stage, expected):
    assert expected in problems_of(write, _pipeline(stages={"s": stage}))


def _agg(**over):
    agg = {
        "group_by": ["customer_id"],
        "window": {"type": "tumbling", "size": "1m"},
        "measures": {"n": "count()"},
    }
    agg.update(over)
    return agg


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        (
            _agg(window={"type": "hopping", "size": "1m"}),
            "stages.s.aggregate.window.step: required for a hopping window",
        ),
        (
            _agg(window={"type": "tumbling", "size": "1m", "step": "10s"}),
            "stages.s.aggregate.window.step: only used by hopping windows; remove it or use type: "
            "hopping",
        ),
        (
            _agg(window={"type": "hopping", "size": "1m", "step": "2m"}),
            "stages.s.aggregate.window.step: must not be larger than size",
        ),
        (
            _agg(window={"type": "sliding", "size": "1m"}),
            "stages.s.aggregate.window.type: 'sliding' is not one of tumbling, hopping",
        ),
        (
            _agg(window={"type": "tumbling", "size": "0s"}),
            "stages.s.aggregate.window.size: '0s' must be a duration greater than 0",
        ),
        (
            _agg(window={"type": "tumbling", "size": "1m", "grace": "soon"}),
            "stages.s.aggregate.window.grace: 'soon' is not a duration (use seconds as a number or "
            "a number with a unit, e.g. 500ms, 1s, 1m, 2h)",
        ),
        (_agg(measures={}), "stages.s.aggregate.measures: must not be empty"),
        (
            _agg(measures={"m": "median(x)"}),
            "stages.s.aggregate.measures.m: 'median' is not one of count, sum, min, max, avg, "
            "count_distinct",
        ),
        (
            _agg(measures={"m": "sum()"}),
            "stages.s.aggregate.measures.m: sum() needs an argument, e.g. sum(total)",
        ),
        (
            _agg(measures={"m": "total"}),
            "stages.s.aggregate.measures.m: 'total' is not a measure; write fn(expression) with fn "
            "one of count, sum, min, max, avg, count_distinct",
        ),
        (
            _agg(measures={"customer_id": "count()"}),
            "stages.s.aggregate.measures.customer_id: clashes with a group_by or window field",
        ),
        (
            _agg(having="n > 1 and revenue > 0"),
            "stages.s.aggregate.having: reads 'revenue', which is not in the output (group_by "
            "fields, measures, window_start, window_end)",
        ),
        (
            _agg(emit="sometimes"),
            "stages.s.aggregate.emit: 'sometimes' is not one of final, updates",
        ),
        (
            {k: v for k, v in _agg().items() if k != "window"},
            "stages.s.aggregate.window: missing required key",
        ),
    ],
)
def test_aggregate_rules(write, agg, expected):
    assert expected in problems_of(write, _pipeline(stages={"s": _stage(aggregate=agg)}))


def test_aggregate_options_load(write):
    agg = _agg(
        window={"type": "hopping", "size": "5m", "step": "1m", "grace": "30s"},
        measures={
            "n": "count(*)",
            "spend": "SUM(price * quantity)",
            "buyers": "count_distinct(customer_id)",
            "avg_price": "avg(price)",
        },
        having="n > 0 and window_start != null",
        emit="updates",
    )
    p = load(write, _pipeline(stages={"s": _stage(aggregate=agg)}))
    a = p.stages["s"].aggregate
    assert a is not None
    assert (a.window.size, a.window.step, a.window.grace, a.emit) == (300.0, 60.0, 30.0, "updates")
    assert a.measures["n"].argument is None
    assert a.measures["spend"].function == "sum"
    spend = a.measures["spend"].argument
    assert spend is not None and spend.evaluate({"price": 2, "quantity": 5}) == 10
    assert str(a.measures["buyers"]) == "count_distinct(customer_id)"


def test_rate_limit_burst_defaults_to_rate_at_least_one(write):
    p = load(
        write,
        _pipeline(
            stages={
                "a": _stage(to="a", rate_limit={"rate": 50}),
                "b": _stage(
                    to="b",
                    rate_limit={
                        "rate": 0.5,
                        "per": "1m",
                        "key": "customer_id",
                        "on_excess": "shed",
                    },
                ),
            }
        ),
    )
    a, b = p.stages["a"].rate_limit, p.stages["b"].rate_limit
    assert a is not None and b is not None
    assert (a.burst, a.per, a.per_second) == (50, 1.0, 50)
    assert (b.burst, b.key, b.on_excess) == (1.0, ["customer_id"], "shed")
    assert b.per_second == pytest.approx(0.5 / 60)


def test_rank_and_lookup_load(write):
    p = load(
        write,
        _pipeline(
            stages={
                "r": _stage(
                    to="r", rank={"order_by": ["score", "name asc", "at DESC"], "limit": 5}
                ),
                "l": _stage(
                    to="l",
                    lookup={
                        "table_from": "orders.raw",
                        "on": "customer_id",
                        "fields": ["name", "tier"],
                        "missing": "dlq",
                    },
                    transform=[{"filter": "tier != null"}],
                ),
            }
        ),
    )
    rank = p.stages["r"].rank
    assert rank is not None and rank.function == "row_number" and rank.partition_by == []
    assert [str(k) for k in rank.order_by] == ["score asc", "name asc", "at desc"]
    lookup = p.stages["l"].lookup
    assert lookup is not None and lookup.on == ["customer_id"] and lookup.missing == "dlq"
    assert p.redacted()["stages"]["r"]["rank"]["order_by"] == ["score asc", "name asc", "at desc"]


def test_yaml_on_key_is_not_a_boolean(write):
    text = """\
name: t
kafka: {bootstrap_servers: "127.0.0.1:9092"}
sources:
  db: {type: s3, bucket: b, format: json, topic: a, reingest_on_change: no}
stages:
  s:
    from: a
    to: b
    lookup: {table_from: a, on: id, fields: [x]}
"""
    p = load_pipeline(write(text), env={})
    lookup = p.stages["s"].lookup
    assert lookup is not None and lookup.on == ["id"]
    source = p.sources["db"]
    assert isinstance(source, S3Source) and source.reingest_on_change is False


# -- sinks -----------------------------------------------------------------------------------


def _mongo(**over):
    sink = {
        "type": "mongodb",
        "from": "orders.raw",
        "uri": "mongodb://127.0.0.1:27017",
        "database": "shop",
        "collection": "orders",
    }
    sink.update(over)
    return sink


def _dynamo(**over):
    sink = {"type": "dynamodb", "from": "orders.raw", "table": "orders", "partition_key": "id"}
    sink.update(over)
    return sink


def test_sink_options_load(write):
    p = load(
        write,
        _pipeline(
            sinks={
                "m": _mongo(
                    write="delete-on-tombstone",
                    id=["a", "b"],
                    batch_size=500,
                    batch_bytes="1MiB",
                    linger="250ms",
                    indexes=["customer_id", ["a", "b desc"], {"keys": ["x"], "unique": True}],
                    write_concern={"w": 1, "wtimeout": "5s"},
                ),
                "d": _dynamo(
                    create=True,
                    region="us-east-1",
                    sort_key="ts",
                    version_field="v",
                    rate_limit={"rate": 10},
                ),
            }
        ),
    )
    m = p.sinks["m"]
    assert isinstance(m, MongoSink)
    assert (m.write, m.id, m.batch_size, m.batch_bytes, m.linger) == (
        "delete-on-tombstone",
        ["a", "b"],
        500,
        1_048_576,
        0.25,
    )
    assert [i.key_spec() for i in m.indexes] == [
        [("customer_id", 1)],
        [("a", 1), ("b", -1)],
        [("x", 1)],
    ]
    assert m.indexes[2].unique is True
    assert m.write_concern is not None and (m.write_concern.w, m.write_concern.wtimeout) == (1, 5)
    d = p.sinks["d"]
    assert isinstance(d, DynamoDBSink)
    assert (d.create, d.sort_key, d.batch_size, d.linger) == (True, "ts", 1000, 0.1)
    assert d.rate_limit is not None and d.rate_limit.per == 1.0


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        (
            _mongo(write="merge"),
            "sinks.k.write: 'merge' is not one of insert, upsert, replace, delete-on-tombstone",
        ),
        (
            _mongo(uri="http://x"),
            "sinks.k.uri: 'http://x' is not a MongoDB URI (mongodb://host:27017)",
        ),
        (_mongo(batch_size=0), "sinks.k.batch_size: must be at least 1, got 0"),
        (
            _mongo(batch_bytes="lots"),
            "sinks.k.batch_bytes: 'lots' is not a byte size (use bytes "
            "as a whole number or a number with a unit, e.g. 512KB, 4MB, 1MiB)",
        ),
        (
            _mongo(linger="later"),
            "sinks.k.linger: 'later' is not a duration (use seconds as a "
            "number or a number with a unit, e.g. 500ms, 1s, 1m, 2h)",
        ),
        (_mongo(write_concern={"w": "some"}), None),
        (
            _mongo(write_concern={"w": -1}),
            "sinks.k.write_concern.w: -1 is not a number of members or 'majority'",
        ),
        (
            _mongo(write_concern={"wtimeout": "0s"}),
            "sinks.k.write_concern.wtimeout: 0s is under 1ms, which MongoDB would read as no "
            "limit; give at least 1ms, or omit wtimeout to wait without one",
        ),
        (_mongo(write_concern={"wtimeout": "1ms"}), None),
        (
            _mongo(indexes=[{"keys": ["a up"]}]),
            "sinks.k.indexes[0].keys: 'a up' is not 'field', 'field asc' or 'field desc'",
        ),
        (_dynamo(sort_key="id"), "sinks.k.sort_key: must differ from partition_key"),
        (_dynamo(rate_limit={"per": "1s"}), "sinks.k.rate_limit.rate: missing required key"),
        (_dynamo(table="ab"), "sinks.k.table: needs at least 3 characters"),
        (
            {"type": "redis", "from": "orders.raw"},
            "sinks.k.type: 'redis' is not one of mongodb, dynamodb",
        ),
    ],
)
def test_sink_rules(write, sink, expected):
    data = _pipeline(sinks={"k": sink})
    if expected is None:
        load(write, data)
    else:
        assert expected in problems_of(write, data)


# -- kafka, top level, cross references ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        (
            {"bootstrap_servers": "127.0.0.1:99999"},
            "kafka.bootstrap_servers: '127.0.0.1:99999' "
            "is not host:port with a port from 1 to 65535",
        ),
        (
            {"bootstrap_servers": "localhost"},
            "kafka.bootstrap_servers: 'localhost' is not host:port with a port from 1 to 65535",
        ),
        (
            {"bootstrap_servers": "a:1", "security_protocol": "SASL_SSL"},
            "kafka.sasl_mechanism: required with SASL_SSL",
        ),
        (
            {
                "bootstrap_servers": "a:1",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
            },
            "kafka.sasl_username: required with sasl_mechanism PLAIN",
        ),
        (
            {"bootstrap_servers": "a:1", "sasl_username": "u"},
            "kafka.sasl_username: only used with security_protocol SASL_PLAINTEXT or SASL_SSL",
        ),
        (
            {"bootstrap_servers": "a:1", "security_protocol": "TLS"},
            "kafka.security_protocol: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            {"bootstrap_servers": "a:1", "client": {"bootstrap.servers": "b:2"}},
            'kafka.client["bootstrap.servers"]: set kafka.bootstrap_servers instead',
        ),
        (
            {"bootstrap_servers": "a:1", "client": {"linger.ms": [1]}},
            'kafka.client["linger.ms"]: expected a string, number or boolean',
        ),
    ],
)
def test_kafka_rules(write, kafka, expected):
    assert expected in problems_of(write, _pipeline(kafka=kafka))


def test_kafka_sasl_and_client_passthrough(write):
    kafka = {
        "bootstrap_servers": ["b1:9092", "b2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc",
        "sasl_password": "sasl-pass-value-9",
        "client": {"linger.ms": 5, "ssl.ca.location": "/ca.pem"},
    }
    p = load(write, _pipeline(kafka=kafka))
    conf = p.kafka.librdkafka_config()
    assert conf == {
        "bootstrap.servers": "b1:9092,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "sasl-pass-value-9",
        "linger.ms": 5,
        "ssl.ca.location": "/ca.pem",
    }


def test_dangling_topic_names_the_key_and_suggests(shop_data, write, shop_env):
    shop_data["stages"]["leaderboard"]["from"] = "customer.revenu"
    lines = problems_of(write, shop_data, env=shop_env)
    assert lines == [
        "stages.leaderboard.from: topic 'customer.revenu' is not produced by any source or stage "
        "(did you mean 'customer.revenue'?); list topics produced elsewhere under topics:"
    ]


def test_external_topics_and_dead_letter_topics_may_be_read(write):
    stages = {"replay": _stage(**{"from": "orders.raw.dlq"}, transform=[{"filter": "true"}])}
    sinks = {"k": _mongo(**{"from": "elsewhere.events"})}
    p = load(write, _pipeline(stages=stages, sinks=sinks, topics=["elsewhere.events"]))
    assert p.topics == ["elsewhere.events"]
    lines = problems_of(write, _pipeline(stages=stages, sinks=sinks))
    assert lines == [
        "sinks.k.from: topic 'elsewhere.events' is not produced by any source or stage; list "
        "topics produced elsewhere under topics:"
    ]


def test_lookup_table_must_be_a_known_topic(write):
    stage = _stage(lookup={"table_from": "customers", "on": "id", "fields": ["n"]})
    assert problems_of(write, _pipeline(stages={"s": stage})) == [
        "stages.s.lookup.table_from: topic 'customers' is not produced by any source or stage; "
        "list topics produced elsewhere under topics:"
    ]


def test_stage_cycles_are_errors(write):
    f = [{"filter": "true"}]
    stages = {
        "a": {"from": "orders.raw", "to": "x", "transform": f},
        "b": {"from": "x", "to": "y", "transform": f},
        "c": {"from": "y", "to": "x", "transform": f},
    }
    assert problems_of(write, _pipeline(stages=stages)) == [
        "stages.b: stages form a cycle: b -> c -> b"
    ]


def test_names_are_unique_across_sections(write):
    data = _pipeline(sinks={"db": _mongo()})
    assert problems_of(write, data) == ["sinks.db: name already used under sources"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "t", "kafka": {"bootstrap_servers": "a:1"}},
            "the pipeline has no sources, stages or sinks",
        ),
        (
            _pipeline(name="has space"),
            "name: 'has space' is not a valid name (a letter, then "
            "letters, digits, '_' or '-', at most 100 characters)",
        ),
        (
            _pipeline(sources={"bad name": _mysql()}),
            "sources[\"bad name\"]: 'bad name' is not a valid "
            "name (a letter, then letters, digits, '_' or '-', at most 100 characters)",
        ),
        (_pipeline(metrics={"port": 70000}), "metrics.port: must be at most 65535, got 70000"),
        (_pipeline(metrics={"port": "http"}), "metrics.port: expected a whole number, got 'http'"),
        (
            _pipeline(schemas={"registry_url": "ftp://x"}),
            "schemas.registry_url: 'ftp://x' is not an http:// or https:// URL",
        ),
        (_pipeline(sources=["a"]), "sources: expected a mapping, got a list"),
        (_pipeline(sources={"db": "mysql"}), "sources.db: expected a mapping, got 'mysql'"),
        (_pipeline(kafka=None), "kafka: expected a mapping, got nothing (null)"),
    ],
)
def test_top_level_rules(write, data, expected):
    assert expected in problems_of(write, data)


def test_model_validate_works_on_plain_data(shop_data, shop_env):
    data = copy.deepcopy(shop_data)
    data["sources"]["orders_db"]["url"] = "mysql+pymysql://app:x@127.0.0.1:3306/shop"
    p = Pipeline.model_validate(data)
    assert p.file is None and p.sources["orders_db"].topic == "orders.raw"
