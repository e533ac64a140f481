"""Stream operators that need no Kafka: importable on their own for hand-written Faust agents.

Each operator is plain, synchronous Python over record values (dicts) and event times in
milliseconds, with its state in ordinary dicts that a caller may keep in a Faust table:

- ``Transformer`` (``transform``): filter/set/rename/drop/cast/validate/python steps;
- ``StageLimiter`` (``ratelimit``): token buckets per stage or per key, with a worker's share;
- ``WindowAggregator`` (``window``): event-time tumbling/hopping windows, grace, late records;
- ``TopN`` (``rank``): top N per partition with SQL tie semantics, upserts and tombstones.
"""

from streams.operators.rank import RankChange, TopN
from streams.operators.ratelimit import Decision, StageLimiter, worker_share
from streams.operators.transform import Transformer
from streams.operators.window import LateRecord, WindowAggregator, WindowResult

__all__ = [
    "Decision",
    "LateRecord",
    "RankChange",
    "StageLimiter",
    "TopN",
    "Transformer",
    "WindowAggregator",
    "WindowResult",
    "worker_share",
]
