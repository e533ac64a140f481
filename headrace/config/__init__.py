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
from headrace.config.sinks import SinkBase
from headrace.config.sources import SourceBase
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
    "KafkaConfig",
    "Lookup",
    "Measure",
    "MetricsConfig",
    "OrderKey",
    "Pipeline",
    "PipelineConfigError",
    "Problem",
    "Rank",
    "RateLimit",
    "SchemasConfig",
    "SecretError",
    "SecretKeyError",
    "SecretTokenError",
    "Settings",
    "SinkBase",
    "SourceBase",
    "Stage",
    "TransformStep",
    "Window",
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
