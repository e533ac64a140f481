"""Test and benchmark data for the producers: JSONL lines, S3 buckets, MySQL tables.

Shared by ``headrace_dev.bench.produce`` and the integration tests so both measure the same shapes.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "ORDERS_DDL",
    "create_orders_table",
    "jsonl_lines",
    "put_gzip_jsonl",
    "put_small_objects",
]

ORDERS_DDL = (
    "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, "
    "price DECIMAL(12,2) NOT NULL, status VARCHAR(16) NOT NULL, meta JSON NULL, "
    "payload BLOB NULL, note VARCHAR(64) NULL, updated_at DATETIME(6) NOT NULL, "
    "KEY ts_id (updated_at, id))"
)


def jsonl_lines(start: int, count: int, seed: int = 7) -> Iterator[bytes]:
    """``count`` JSONL order lines (with ``\\n``) with ids ``o<start>``..; ~150 bytes each."""
    rnd = random.Random(seed + start)
    for i in range(start, start + count):
        yield (
            orjson.dumps(
                {
                    "order_id": f"o{i}",
                    "customer_id": f"c{rnd.randrange(100_000)}",
                    "price": f"{rnd.randrange(1, 100_000) / 100:.2f}",
                    "quantity": rnd.randrange(1, 9),
                    "status": rnd.choice(("new", "paid", "shipped", "cancelled")),
                    "created_at": f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                    f"{i % 60:02d}Z",
                    "tag": rnd.getrandbits(64).to_bytes(8, "big").hex(),
                }
            )
            + b"\n"
        )


def put_gzip_jsonl(s3: Any, bucket: str, key: str, start: int, count: int) -> int:
    """Upload ``count`` lines as one gzip JSONL object (multipart); return its size."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz:
        chunk: list[bytes] = []
        for line in jsonl_lines(start, count):
            chunk.append(line)
            if len(chunk) >= 10_000:
                gz.write(b"".join(chunk))
                chunk = []
        gz.write(b"".join(chunk))
    size = buf.tell()
    buf.seek(0)
    s3.upload_fileobj(buf, bucket, key)
    return size


def put_small_objects(
    s3: Any, bucket: str, prefix: str, objects: int, lines_each: int, threads: int = 8
) -> None:
    """``objects`` JSONL objects of ``lines_each`` lines under ``prefix`` (keys sort by id)."""
    from concurrent.futures import ThreadPoolExecutor

    def put(n: int) -> None:
        body = b"".join(jsonl_lines(n * lines_each, lines_each))
        s3.put_object(Bucket=bucket, Key=f"{prefix}{n:07d}.jsonl", Body=body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(objects)))


def create_orders_table(conn: Any, table: str, rows: int) -> None:
    """Create ``table`` and fill it with ``rows`` orders (ids 1..rows), using MariaDB's
    ``seq_1_to_N`` sequence engine; three rows share each ``updated_at`` (ties)."""
    from sqlalchemy import text

    conn.execute(text(ORDERS_DDL.format(table=table)))
    done = 0
    while done < rows:
        n = min(200_000, rows - done)
        conn.execute(
            text(
                f"INSERT INTO {table} (id, customer, price, status, meta, payload, note, "  # noqa: S608
                "updated_at) SELECT seq + :off, CONCAT('c', (seq + :off) MOD 1000), "
                "(seq + :off) / 100, ELT(1 + (seq MOD 3), 'new', 'paid', 'shipped'), "
                "JSON_OBJECT('n', seq + :off), X'00FF10', NULL, "
                "TIMESTAMP('2024-01-01') + INTERVAL ((seq + :off) DIV 3) SECOND "
                f"FROM seq_1_to_{n}"
            ),
            {"off": done},
        )
        done += n
