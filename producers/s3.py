"""The S3 source connector (``type: s3``): its config, how to build it, its probe.

Objects under a bucket prefix (json, jsonl or csv, optionally gzip), polled for changes
(``producers.s3_source`` lists and reads them; ``producers.s3_formats`` parses them). Needs
boto3 (``headrace[s3]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from headrace.config.aws import AwsAccess
from headrace.config.base import ProblemKey, problems
from headrace.config.durations import PositiveDuration
from headrace.config.sources import SourceBase
from headrace.plugins import Probe, SourcePlugin

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["PLUGIN", "S3Format", "S3Source", "s3_client", "source_on"]

S3Format = Literal["json", "jsonl", "csv", "json.gz", "jsonl.gz", "csv.gz"]


class S3Source(SourceBase, AwsAccess):
    """Objects under a bucket prefix (json, jsonl or csv, optionally gzip), polled for changes."""

    type: Literal["s3"] = Field(description="Source type: s3.")
    bucket: str = Field(min_length=1, description="Bucket name.")
    prefix: str = Field(default="", description="Only objects whose key starts with this.")
    glob: str | None = Field(
        default=None, description="Only objects whose key matches this glob, e.g. '*.jsonl.gz'."
    )
    format: S3Format = Field(
        description="File format: json (a document or an array), jsonl, csv (header row); "
        "a .gz suffix means gzip-compressed."
    )
    delimiter: str = Field(default=",", description="CSV field delimiter (one character).")
    poll_interval: PositiveDuration = Field(
        default=10.0, description="Pause between listings once caught up."
    )
    reingest_on_change: bool = Field(
        default=True,
        description="Ingest an object again when it is rewritten (new ETag). false: read each "
        "key once, moving forward in key order (new keys must sort after the last one read).",
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=8, description="Objects read at the same time."
    )
    encoding: Literal["json", "avro"] = Field(
        default="json", description="Encoding of the produced records: json or avro."
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """The encoding of the produced records (the ``encoding`` key)."""
        return self.encoding

    @property
    def file_format(self) -> Literal["json", "jsonl", "csv"]:
        """The file format without compression."""
        base = self.format.removesuffix(".gz")
        assert base in ("json", "jsonl", "csv")
        return base  # type: ignore[return-value]

    @property
    def gzip(self) -> bool:
        """True when objects are gzip-compressed (a ``.gz`` format)."""
        return self.format.endswith(".gz")

    @model_validator(mode="after")
    def _check(self) -> S3Source:
        found: list[tuple[ProblemKey, str]] = []
        if "/" in self.bucket:
            found.append(("bucket", "a bucket name has no '/'; put the path in prefix"))
        if "delimiter" in self.model_fields_set and self.file_format != "csv":
            found.append(("delimiter", f"only used with format csv, not {self.format!r}"))
        if len(self.delimiter) != 1:
            found.append(("delimiter", f"{self.delimiter!r} must be exactly one character"))
        if self.encoding == "avro" and not self.schema_:
            found.append(("schema", "required when encoding is 'avro'"))
        if found:
            raise problems(found)
        return self


def s3_client(cfg: S3Source, *, timeout: float = 60.0) -> Any:
    """The source's S3 client: a pool sized for its concurrency; a GET retried on transient
    errors (``headrace.clients``: the reader threads have no retry loop of their own)."""
    from headrace.clients import aws_client

    return aws_client("s3", cfg, timeout=timeout, pool=cfg.concurrency + 4, attempts=5)


def build(pipeline: Pipeline, name: str, cfg: S3Source) -> tuple[Any, Any]:
    """(``S3ObjectSource``, its ``RecordEncoder``) for source ``name``."""
    return source_on(pipeline, name, cfg, s3_client(cfg))


def source_on(
    pipeline: Pipeline,
    name: str,
    cfg: S3Source,
    client: Any,
    *,
    concurrency: int | None = None,
    endpoint: str | None = None,
) -> tuple[Any, Any]:
    """``build`` on a given S3 ``client`` (``headrace test`` gives an in-memory bucket)."""
    from producers.encoder import RecordEncoder, make_codec
    from producers.projection import Projection
    from producers.s3_source import S3ObjectSource
    from schemas import JsonCodec

    codec = make_codec(pipeline, cfg)
    # lines sent as read (plain JSON): parse only the fields the key and event time need
    fields = [*(cfg.key or ()), *([cfg.timestamp_field] if cfg.timestamp_field else [])]
    plain = type(codec) is JsonCodec and cfg.file_format == "jsonl"
    encoder = RecordEncoder(codec, cfg.key, cfg.timestamp_field)
    # the reader threads encode the records too: the runner's thread only produces
    projection = Projection(fields, key=cfg.key, time=cfg.timestamp_field) if plain else None
    source = S3ObjectSource(
        name,
        client,
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        glob=cfg.glob,
        file_format=cfg.file_format,
        gzipped=cfg.gzip,
        delimiter=cfg.delimiter,
        concurrency=cfg.concurrency if concurrency is None else concurrency,
        reingest_on_change=cfg.reingest_on_change,
        endpoint=cfg.endpoint_url if endpoint is None else endpoint,
        projection=projection,
        encoder=encoder,
    )
    return source, encoder


def probes(name: str, cfg: S3Source) -> list[Probe]:
    """The bucket exists (HEAD)."""

    def run(timeout: float) -> tuple[bool, str]:
        from headrace.clients import aws_client

        aws_client("s3", cfg, timeout=timeout).head_bucket(Bucket=cfg.bucket)
        return (True, f"bucket exists at {cfg.endpoint_url or 'AWS'}")

    return [("s3 bucket", cfg.bucket, run)]


PLUGIN = SourcePlugin(
    type="s3", config=S3Source, build=build, probes=probes, requires=("boto3",), extra="s3"
)
