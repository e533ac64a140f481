"""Generated cases for the stream differential oracle: data and a pipeline, from one seed.

A case is orders (``order_id``, ``customer_id``, ``region``, ``amount`` DECIMAL(12,2),
``qty``, event time) on an input topic of 1-8 partitions keyed by a random field (or by none),
then an optional transform (filter / set / re-key; in half the cases split over two records
stages, ``split``, so a replay of the first reaches the aggregate through the second), an
aggregate (tumbling or hopping, a random ``group_by`` subset, several measures, optional
``having``), an optional rank (row_number, rank or dense_rank, random ``partition_by`` and
``limit``), and MongoDB and DynamoDB sinks with random id layouts and write modes among those
``headrace check`` accepts.

The data comes in three phases, so what is late does not depend on how partitions interleave:

- ``A``: the orders, event times within ``SPAN`` (less than half the grace): out of order, but
  never late, whatever order the partitions are read in; plus tombstones (dropped);
- ``adv``: one record per partition of the aggregate's input, a day later: it closes every
  window of ``A`` (its own windows stay open and are never emitted);
- ``C``: orders with ``A``'s event times, produced once ``adv`` was processed: late, so they
  go to the dead-letter topic and are never counted (unless the transform filters them out).

Every value is chosen to find the defects that hide in the demo's shape: keys with skew and
collisions, nulls in groups and measures, amounts whose sums tie only in exact arithmetic
(0.10 + 0.20 vs 0.30).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MINUTE = 60_000
GRACE = 20 * MINUTE
SPAN = 6 * MINUTE
BASE = 1_767_225_600_000  # 2026-01-01T00:00Z
AMOUNTS = ["0.10", "0.20", "0.30", "0.05", "1.00", "2.50", "5.00", "10.00", "0.15", None]
REGIONS = ["n", "s", "e", None]

# transform steps: (step for the pipeline file, SQL condition or column)
FILTERS = {
    "qty > 0": "qty > 0",
    "region != 's'": "region <> 's'",
    "amount >= 1": "amount >= 1",
}


@dataclass
class Order:
    """One input record; ``value`` None is a tombstone."""

    phase: str
    key_value: Any
    value: dict[str, Any] | None
    ts: int


@dataclass
class Case:
    seed: int
    partitions: int
    input_key: list[str] | None
    orders: list[Order]
    filters: list[str]
    set_total: bool
    rekey: list[str] | None
    group_by: list[str]
    window: dict[str, Any]
    measures: dict[str, str]
    having: str | None
    rank: dict[str, Any] | None
    emit: str = "final"
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: bool = False  # the transform as two records stages: filters, then set and re-key
    nonce: str = ""  # makes names unique per run on the stack (topics outlive a run)

    @property
    def prefix(self) -> str:
        return f"o{self.seed}{self.nonce}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.partitions} partitions keyed by {self.input_key}, "
            f"filters {self.filters}, set_total {self.set_total}, rekey {self.rekey}, "
            f"group_by {self.group_by}, window {self.window}, measures {self.measures}, "
            f"having {self.having!r}, emit {self.emit}, rank {self.rank}, split {self.split}, "
            f"{len(self.orders)} records"
        )


def _amount(rng: random.Random) -> str | None:
    return rng.choice(AMOUNTS)


def _order(rng: random.Random, order_id: int, customers: int, ts: int) -> dict[str, Any]:
    customer = min(customers, 1 + int(rng.expovariate(0.6)))  # skewed: low ids are hot
    return {
        "order_id": order_id,
        "customer_id": customer if rng.random() > 0.03 else None,
        "region": rng.choice(REGIONS),
        "amount": _amount(rng),
        "qty": rng.randint(0, 4),
    }


def generate(seed: int, *, size: int | None = None, nonce: str = "") -> Case:
    """The case of ``seed`` (``size``: records in phase A, default random 10-120; ``nonce``
    goes into every name the case creates)."""
    rng = random.Random(seed)
    partitions = rng.randint(1, 8)
    input_key = rng.choice(
        [["order_id"], ["customer_id"], ["region"], ["customer_id", "region"], None]
    )
    filters = rng.sample(sorted(FILTERS), rng.choice([0, 0, 1, 1, 2]))
    set_total = rng.random() < 0.4
    rekey = rng.choice([None, None, None, ["customer_id"], ["order_id"]])
    if rekey is not None and rng.random() < 0.5 and not filters and not set_total:
        filters = ["qty > 0"]  # a re-key needs a transform stage
    group_by = rng.choice(
        [["customer_id"], ["customer_id"], ["region"], ["customer_id", "region"], []]
    )
    if rng.random() < 0.7:
        window: dict[str, Any] = {"type": "tumbling", "size": "1m", "grace": "20m"}
    else:
        window = {"type": "hopping", "size": "2m", "step": "1m", "grace": "20m"}
    measures = {"revenue": "sum(total)" if set_total else "sum(amount)", "n": "count()"}
    extra = {
        "items": "sum(qty)",
        "big": "max(amount)",
        "small": "min(amount)",
        "priced": "count(amount)",
        "mean": "avg(amount)",
    }
    for name in rng.sample(sorted(extra), rng.randint(0, 3)):
        measures[name] = extra[name]
    having = rng.choice([None, None, "n > 1", "revenue > 1"])
    emit = "updates" if rng.random() < 0.25 else "final"
    rank = None
    if rng.random() < 0.6:
        partition_by = rng.choice([["window_start"], ["window_start"], []])
        if "region" in group_by and rng.random() < 0.3:
            partition_by = ["window_start", "region"]
        function = rng.choice(["row_number", "rank", "dense_rank"])
        order_by = ["revenue desc"]
        if function == "row_number":  # SQL leaves peers' order open: break ties by the member
            member = [*group_by, "window_start"]
            order_by += [f for f in member if f not in partition_by]
        rank = {
            "partition_by": partition_by,
            "order_by": order_by,
            "function": function,
            "limit": rng.randint(1, 3),
        }
    n = size if size is not None else rng.randint(10, 120)
    customers = rng.randint(2, 10)
    orders: list[Order] = []
    key_fields = input_key or []
    for i in range(n):
        ts = BASE + seed % 1000 * MINUTE + rng.randint(0, SPAN)
        value = _order(rng, i % max(3, n * 4 // 5) if rng.random() < 0.1 else i, customers, ts)
        orders.append(Order("A", _key(value, key_fields), value, ts))
        if rng.random() < 0.05:  # a tombstone of some key: dropped by every stage
            orders.append(Order("A", _key(value, key_fields), None, ts))
    late = [
        Order(
            "C",
            None,
            _order(rng, 10_000 + i, customers, 0),
            BASE + seed % 1000 * MINUTE + rng.randint(0, SPAN),
        )
        for i in range(rng.randint(0, 5))
    ]
    for order in late:
        assert order.value is not None
        order.key_value = _key(order.value, key_fields)
    case = Case(
        seed=seed,
        partitions=partitions,
        input_key=input_key,
        orders=orders + late,
        filters=filters,
        set_total=set_total,
        rekey=rekey,
        group_by=group_by,
        window=window,
        measures=measures,
        having=having,
        rank=rank,
        emit=emit,
        nonce=nonce,
    )
    case.sinks = _sinks(rng, case)
    # drawn apart, so every other choice of a seed stays what it was before this existed
    case.split = random.Random(seed * 31 + 7).random() < 0.5
    return case


def _key(value: dict[str, Any], fields: list[str]) -> Any:
    return [value[f] for f in fields] if fields else None


def agg_key_fields(case: Case) -> list[str]:
    return [*case.group_by, "window_start"]


def rank_key_fields(case: Case) -> list[str]:
    assert case.rank is not None
    part = list(case.rank["partition_by"])
    return [*part, *(f for f in agg_key_fields(case) if f not in part)]


def _sinks(rng: random.Random, case: Case) -> dict[str, dict[str, Any]]:
    """MongoDB and DynamoDB sinks of the aggregate and (if any) rank topics, with id layouts
    and write modes ``check`` accepts."""
    out: dict[str, dict[str, Any]] = {}
    targets = [("agg", agg_key_fields(case))]
    if case.rank is not None:
        targets.append(("top", rank_key_fields(case)))
    for topic, fields in targets:
        ranked = topic == "top"
        layout = rng.choice(["key", "fields"])
        mongo: dict[str, Any] = {
            "type": "mongodb",
            "from": case.topic(topic),
            "uri": "${HEADRACE_MONGO_URI:-mongodb://127.0.0.1:27017}",
            "database": "oracle",
            "collection": f"{case.prefix}_{topic}",
            "write": "delete-on-tombstone"
            if ranked
            # insert keeps the first value: a running one with emit: updates
            else rng.choice(
                ["upsert", "replace", "delete-on-tombstone"]
                + (["insert"] if case.emit == "final" else [])
            ),
        }
        if layout == "fields":
            mongo["id"] = rng.sample(fields, len(fields))
        out[f"{case.prefix}_{topic}_mongo"] = mongo
        if len(fields) <= 2:
            keys = rng.sample(fields, len(fields))
            dynamo: dict[str, Any] = {
                "type": "dynamodb",
                "from": case.topic(topic),
                "table": f"oracle-{case.prefix}-{topic}",
                "partition_key": keys[0],
                "create": True,
                "endpoint_url": "${HEADRACE_AWS_ENDPOINT:-http://127.0.0.1:5000}",
                "region": "us-east-1",
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
            if len(keys) == 2:
                dynamo["sort_key"] = keys[1]
            out[f"{case.prefix}_{topic}_dynamo"] = dynamo
    return out


def pipeline(
    case: Case, bootstrap: str = "${HEADRACE_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
) -> dict[str, Any]:
    """The case's pipeline file (as data). The input topic is declared by an S3 source that is
    never run: it tells ``check`` and the worker how the input is keyed."""
    source: dict[str, Any] = {
        "type": "s3",
        "bucket": "oracle-unused",
        "format": "jsonl",
        "topic": case.topic("in"),
    }
    if case.input_key:
        source["key"] = case.input_key
    stages: dict[str, Any] = {}
    agg_from = case.topic("in")
    if case.filters or case.set_total or case.rekey:
        steps: list[dict[str, Any]] = [{"filter": f} for f in case.filters]
        later: list[dict[str, Any]] = []
        if case.set_total:
            later.append({"set": {"total": "amount * qty"}})
        if case.split:  # filters first, then set and re-key in a second records stage
            stages[f"{case.prefix}_filter"] = {
                "from": case.topic("in"),
                "to": case.topic("filtered"),
                "transform": steps or [{"filter": "true"}],
            }
            steps, clean_from = later, case.topic("filtered")
        else:
            steps, clean_from = steps + later, case.topic("in")
        transform: dict[str, Any] = {"from": clean_from, "to": case.topic("clean")}
        transform["transform"] = steps or [{"filter": "true"}]
        if case.rekey:
            transform["key"] = case.rekey
        stages[f"{case.prefix}_clean"] = transform
        agg_from = case.topic("clean")
    aggregate: dict[str, Any] = {
        "group_by": case.group_by,
        "window": case.window,
        "measures": case.measures,
    }
    if case.having:
        aggregate["having"] = case.having
    if case.emit != "final":
        aggregate["emit"] = case.emit
    stages[f"{case.prefix}_agg"] = {
        "from": agg_from,
        "to": case.topic("agg"),
        "aggregate": aggregate,
    }
    if case.rank is not None:
        stages[f"{case.prefix}_top"] = {
            "from": case.topic("agg"),
            "to": case.topic("top"),
            "rank": case.rank,
        }
    return {
        "name": case.prefix,
        "kafka": {"bootstrap_servers": bootstrap},
        "sources": {f"{case.prefix}_in": source},
        "stages": stages,
        "sinks": case.sinks,
    }


def decimal_or_none(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))
