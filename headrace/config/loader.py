"""``load_pipeline``: the one way to turn a pipeline file into a ``Pipeline``.

Steps: read the YAML (``yamlfile``), interpolate ``${VAR}``/``${VAR:-default}`` and decrypt
``enc:`` values (``resolve``), validate against the model, attach the file and the secrets.
Anything wrong raises ``PipelineConfigError`` (a ``headrace.errors.ConfigError``, exit code 2)
whose text is one line per problem: ``<file>: <dotted key path>: <problem>``. Error texts never
contain a secret value (decrypted plaintexts, environment values, URL passwords, values of
secret-looking keys): they are redacted, and no pydantic error (which would echo inputs) is
chained to the raised error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from headrace.config.model import Pipeline
from headrace.config.problems import PipelineConfigError, Problem, problems_from_validation
from headrace.config.redact import collect_tree_secrets, redact_values, register_secret
from headrace.config.resolve import resolve
from headrace.config.yamlfile import read_yaml

__all__ = ["load_pipeline"]


def _scrubbed(problems: Sequence[Problem], secrets: set[str]) -> list[Problem]:
    return [Problem(key=p.key, message=redact_values(p.message, secrets)) for p in problems]


def load_pipeline(path: str | Path, env: Mapping[str, str] | None = None) -> Pipeline:
    """Load, resolve and validate the pipeline file at ``path``.

    ``env`` is the environment used for ``${VAR}`` and ``HEADRACE_SECRET_KEY`` (default:
    ``os.environ``; when given, only it is used). Returns an immutable ``Pipeline`` whose
    ``redacted()`` shows it without secrets. Raises ``ConfigError`` (``PipelineConfigError`` for
    problems inside the file) naming the file, the key path and the problem.
    """
    shown = str(path)
    file = Path(path)
    environment: Mapping[str, str] = os.environ if env is None else env
    raw = read_yaml(file, shown)
    resolved = resolve(raw, environment)
    secrets = set(resolved.secrets) | collect_tree_secrets(resolved.data)
    for secret in secrets:
        register_secret(secret)
    if resolved.problems:
        raise PipelineConfigError(_scrubbed(resolved.problems, secrets), path=shown)

    failure: ValidationError | None = None
    try:
        pipeline = Pipeline.model_validate(resolved.data)
    except ValidationError as exc:
        failure = exc
    if failure is not None:
        # Raised outside the except block so the ValidationError (which echoes inputs,
        # secrets included) is not chained as __context__.
        problems = problems_from_validation(failure, Pipeline)
        failure = None
        raise PipelineConfigError(_scrubbed(problems, secrets), path=shown)

    pipeline.attach_source(file.absolute(), frozenset(secrets), resolved.overrides)
    return pipeline
