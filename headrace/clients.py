"""One factory per external client: AWS (boto3), MongoDB (pymongo), MySQL (SQLAlchemy).

Policy, stated once:

- **credentials**: from the pipeline file when it names them (``${ENV}`` or ``enc:``), else
  the library's own chain (boto3's environment/profile/instance role; the URL for MongoDB
  and MySQL). Secrets are read from ``SecretStr`` only here, never logged.
- **timeouts**: every connect and read has one (``timeout`` seconds), so no call blocks
  forever (ARCHITECTURE: "No process wedges").
- **retries**: a client retries only where its caller has no retry loop of its own. Sinks
  retry whole batches with their own backoff (``connectors.backoff``) and must see every
  throttle, and a probe (``check --connect``) makes one attempt: their clients make one
  attempt (``attempts=1``, the default). The S3 source reads objects in threads with no
  loop of its own around a GET: its client retries transient errors (``attempts=5``,
  botocore's "standard" mode, with its jittered backoff).

The client libraries are imported when a factory is called, so a process that never talks to
a service does not need its library (``headrace.plugins.require`` names the extra).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headrace.config.aws import AwsAccess

__all__ = ["aws_client", "mongo_client", "mysql_engine"]


def aws_client(
    service: str,
    access: AwsAccess,
    *,
    timeout: float = 10.0,
    pool: int = 10,
    attempts: int = 1,
    resource: bool = False,
) -> Any:
    """A boto3 client of ``service`` (``resource=True``: the resource's client, which takes
    and returns Python values, e.g. DynamoDB numbers as ``Decimal``); ``pool`` connections,
    ``attempts`` tries per call (see the module doc)."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "endpoint_url": access.endpoint_url,
        "region_name": access.region,
        "config": Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=pool,
        ),
    }
    if access.aws_access_key_id is not None and access.aws_secret_access_key is not None:
        kwargs["aws_access_key_id"] = access.aws_access_key_id
        kwargs["aws_secret_access_key"] = access.aws_secret_access_key.get_secret_value()
    session = boto3.session.Session()
    if resource:
        return session.resource(service, **kwargs).meta.client
    return session.client(service, **kwargs)


def mongo_client(uri: str, *, timeout: float = 10.0) -> Any:
    """A pymongo client for ``uri``: server selection and connect within ``timeout``, socket
    reads within max(6 x timeout, 60 s); ``Decimal`` values stored as exact text (FerretDB
    has no Decimal128, and a float would lose cents)."""
    from bson.codec_options import TypeEncoder, TypeRegistry
    from pymongo import MongoClient

    class DecimalAsText(TypeEncoder):
        @property
        def python_type(self) -> type:
            return Decimal

        def transform_python(self, value: Any) -> Any:
            return format(value, "f")

    ms = int(timeout * 1000)
    return MongoClient(
        uri,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=max(ms * 6, 60_000),
        type_registry=TypeRegistry([DecimalAsText()]),
    )


def mysql_engine(url: str, *, timeout: float = 10.0, **kwargs: Any) -> Any:
    """A SQLAlchemy engine for ``url`` with a connect timeout (``kwargs`` go to
    ``create_engine``; ``connect_args`` are merged)."""
    import sqlalchemy as sa

    connect_args = {"connect_timeout": max(1, int(timeout)), **kwargs.pop("connect_args", {})}
    return sa.create_engine(url, connect_args=connect_args, **kwargs)
