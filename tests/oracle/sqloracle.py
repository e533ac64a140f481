"""The expected final state of a generated case, computed independently with SQL in MariaDB.

The orders go into a table as they are; window bucketing is arithmetic on the event time
(``FLOOR(ts / step) * step`` minus 0.. size/step - 1 steps), grouping is ``GROUP BY`` (NULLs
form one group, as in SQL), ``HAVING`` uses the measure names, ranks are MariaDB's
``ROW_NUMBER``/``RANK``/``DENSE_RANK`` window functions. The documented late-data rule needs
no SQL: phase ``A`` is never late and phase ``C`` always is (see ``streamcase``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
from streamcase import FILTERS, MINUTE, Case, Order

from headrace.config.durations import parse_duration
from headrace_dev.stack import read_env_file

REPO = Path(__file__).resolve().parents[2]

MEASURE_SQL = {
    "sum(amount)": "SUM(amount)",
    "sum(total)": "SUM(amount * qty)",
    "count()": "COUNT(*)",
    "sum(qty)": "SUM(qty)",
    "max(amount)": "MAX(amount)",
    "min(amount)": "MIN(amount)",
    "count(amount)": "COUNT(amount)",
    "avg(amount)": "AVG(amount)",
}


def connect() -> Any:
    """A connection to the local stack's MariaDB (``.stack/env``)."""
    stack = Path(os.environ.get("HEADRACE_STACK_DIR") or REPO / ".stack")
    env = {**read_env_file(stack / "env"), **os.environ}
    conn = pymysql.connect(
        host=env["HEADRACE_MYSQL_HOST"],
        port=int(env["HEADRACE_MYSQL_PORT"]),
        user=env["HEADRACE_MYSQL_USER"],
        password=env["HEADRACE_MYSQL_PASSWORD"],
        database=env["HEADRACE_MYSQL_DATABASE"],
        autocommit=True,
    )
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS oracle_orders (order_id INT, "
            "customer_id INT NULL, region VARCHAR(16) NULL, amount DECIMAL(12,2) NULL, "
            "qty INT NULL, ts BIGINT, phase CHAR(3))"
        )
    return conn


def _ms(text: str) -> int:
    return round(parse_duration(text) * 1000)


def expected(
    conn: Any, case: Case, advance: Sequence[Order] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, int]:
    """(aggregate rows, rank rows or None, late records that reach the aggregate).

    With ``emit: updates`` the windows of the ``advance`` records, open at the end, count too
    (their running values are out); with ``final`` they are never emitted."""
    rows = [
        (
            o.value["order_id"],
            o.value["customer_id"],
            o.value["region"],
            o.value["amount"],
            o.value["qty"],
            o.ts,
            o.phase,
        )
        for o in [*case.orders, *advance]
        if o.value is not None
    ]
    with conn.cursor() as cur:
        cur.execute("DELETE FROM oracle_orders")
        if rows:
            cur.executemany("INSERT INTO oracle_orders VALUES (%s,%s,%s,%s,%s,%s,%s)", rows)
        where = " AND ".join(["TRUE", *(f"({FILTERS[f]})" for f in case.filters)])
        size = _ms(case.window["size"])
        step = _ms(case.window.get("step", case.window["size"]))
        hops = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(size // step))
        groups = "".join(f"o.{g}, " for g in case.group_by)
        measures = ", ".join(f"{MEASURE_SQL[m]} AS {name}" for name, m in case.measures.items())
        having = f" HAVING {case.having}" if case.having else ""
        phases = "'A', 'adv'" if case.emit == "updates" else "'A'"
        agg_sql = (
            f"SELECT {groups}FLOOR(o.ts / {step}) * {step} - h.k * {step} AS window_start, "
            f"FLOOR(o.ts / {step}) * {step} - h.k * {step} + {size} AS window_end, {measures} "
            f"FROM oracle_orders o JOIN ({hops}) h "
            f"WHERE o.phase IN ({phases}) AND {where} "
            f"GROUP BY {groups}window_start{having}"
        )
        cur.execute(agg_sql)
        agg = _dicts(cur)
        top = None
        if case.rank is not None:
            rank = case.rank
            part = ", ".join(rank["partition_by"])
            over = f"PARTITION BY {part} " if part else ""
            order = ", ".join(
                f"{o.split()[0]} {'DESC' if o.endswith(' desc') else 'ASC'}"
                for o in rank["order_by"]
            )
            fn = rank["function"].upper()
            cur.execute(
                f"SELECT * FROM (SELECT a.*, {fn}() OVER ({over}ORDER BY {order}) AS `rank` "
                f"FROM ({agg_sql}) a) r WHERE `rank` <= {int(rank['limit'])}"
            )
            top = _dicts(cur)
        cur.execute(f"SELECT COUNT(*) FROM oracle_orders o WHERE o.phase = 'C' AND {where}")
        (late,) = cur.fetchone()
    return agg, top, int(late)


def _dicts(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k in ("window_start", "window_end", "rank", "n", "priced", "items"):
            if item.get(k) is not None:
                item[k] = int(item[k])
        out.append(item)
    return out


__all__ = ["MINUTE", "Decimal", "connect", "expected"]
