"""The pipeline file: typed model, loader, secrets, redaction, settings, reference.

Public API::

    load_pipeline(path, env=None) -> Pipeline      # raises ConfigError (exit code 2)
    Pipeline.redacted() -> dict / redact(pipeline) -> dict
    generate_key() / encrypt(plaintext, key) / decrypt(value, key)
    Settings()                                     # HEADRACE_PIPELINE, _SECRET_KEY, _STACK_DIR
    iter_config_keys() -> Iterator[(path, type, description)]
    parse_duration(value) -> float seconds
"""

from __future__ import annotations

from typing import Any

from headrace.config.durations import parse_duration, parse_size
from headrace.config.loader import load_pipeline
from headrace.config.model import KafkaConfig, MetricsConfig, Pipeline, SchemasConfig
from headrace.config.problems import PipelineConfigError, Problem
from headrace.config.reference import iter_config_keys
from headrace.config.secrets import (
    SecretError,
    SecretKeyError,
    SecretTokenError,
    decrypt,
    encrypt,
    generate_key,
)
from headrace.config.settings import Settings
from headrace.config.sinks import DynamoDBSink, MongoIndex, MongoSink, SinkRateLimit, WriteConcern
from headrace.config.sources import MySQLSource, S3Source
from headrace.config.stages import (
    Aggregate,
    Lookup,
    Measure,
    OrderKey,
    Rank,
    RateLimit,
    Stage,
    TransformStep,
    Window,
)

__all__ = [
    "Aggregate",
    "DynamoDBSink",
    "KafkaConfig",
    "Lookup",
    "Measure",
    "MetricsConfig",
    "MongoIndex",
    "MongoSink",
    "MySQLSource",
    "OrderKey",
    "Pipeline",
    "PipelineConfigError",
    "Problem",
    "Rank",
    "RateLimit",
    "S3Source",
    "SchemasConfig",
    "SecretError",
    "SecretKeyError",
    "SecretTokenError",
    "Settings",
    "SinkRateLimit",
    "Stage",
    "TransformStep",
    "Window",
    "WriteConcern",
    "decrypt",
    "encrypt",
    "generate_key",
    "iter_config_keys",
    "load_pipeline",
    "parse_duration",
    "parse_size",
    "redact",
]


def redact(pipeline: Pipeline) -> dict[str, Any]:
    """Same as ``pipeline.redacted()``: plain data with every secret as ``***``."""
    return pipeline.redacted()
