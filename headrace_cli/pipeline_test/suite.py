"""Loading a test file into a ``Suite``: its cases checked against the pipeline and ready to run.

``load_suite(path)`` reads the YAML (the pipeline file's dialect: YAML 1.2 booleans,
duplicate keys refused), validates it (``model``), loads the pipeline it tests
(``pipeline:``, else the file's name without ``_test``; ``env:`` adds ``${VAR}`` values;
a pipeline file's own ``tests:`` test that file, with the file-level defaults),
then checks and prepares each case against the pipeline (``prepare``).

Anything wrong raises ``PipelineConfigError`` (exit 2) with one line per problem, each naming
the file and the key path (``tests[2].input["shop.orders"][0].partition``) as ``headrace
check`` names pipeline keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from headrace.config import Pipeline, load_pipeline
from headrace.config.problems import PipelineConfigError, Problem, problems_from_validation
from headrace.config.yamlfile import _Loader as PipelineYamlLoader  # the pipeline file's dialect
from headrace.errors import ConfigError
from headrace_cli.pipeline_test.model import TestFile
from headrace_cli.pipeline_test.prepare import PreparedCase, prepare_case

__all__ = ["PreparedCase", "Suite", "default_pipeline", "load_suite"]

_TOPICS_PATH = re.compile(r"\.expect\.topics(?=[.\[])")


@dataclass(frozen=True)
class Suite:
    """A loaded test file: the pipeline it tests and its prepared cases; ``text`` is the
    file as read (``--update`` rewrites parts of it)."""

    path: Path
    shown: str
    pipeline: Pipeline
    pipeline_shown: str
    spec: TestFile
    cases: tuple[PreparedCase, ...]
    text: str

    @property
    def idle_ms(self) -> int:
        return round(self.spec.idle * 1000)


def default_pipeline(path: Path) -> Path | None:
    """The pipeline a test file tests when it does not say: its name without ``_test``
    (``orders_test.yaml`` -> ``orders.yaml``); None when the name has no ``_test``."""
    for suffix in (".yaml", ".yml"):
        if path.name.endswith("_test" + suffix):
            return path.with_name(path.name.removesuffix("_test" + suffix) + suffix)
    return None


def _read(path: Path, shown: str) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("test file not found", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the test file: {exc}", path=shown) from None
    try:
        data = yaml.load(text, Loader=PipelineYamlLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            f"{where}YAML syntax error: {exc.problem or exc.context}", path=shown
        ) from None
    except yaml.YAMLError:
        raise ConfigError("YAML syntax error", path=shown) from None
    if not isinstance(data, dict):
        raise ConfigError(
            "a test file is a mapping with tests: (a list of cases); see docs/testing-pipelines.md",
            path=shown,
        )
    return text, data


def _validated(data: dict[str, Any], shown: str) -> TestFile:
    failure: ValidationError | None = None
    try:
        return TestFile.model_validate(data)
    except ValidationError as exc:
        failure = exc
    problems = [
        Problem(_TOPICS_PATH.sub(".expect", p.key), p.message)
        for p in problems_from_validation(failure, TestFile)
    ]
    raise PipelineConfigError(problems, path=shown)


def load_suite(path: Path, shown: str | None = None) -> Suite:
    """The test file at ``path`` (called ``shown`` in messages), loaded and prepared (module
    doc); ``ConfigError`` naming the file and key for anything wrong."""
    shown = shown or str(path)
    text, data = _read(path, shown)
    embedded = "kafka" in data and "tests" in data  # a pipeline file holding its own cases
    spec = _validated({"tests": data["tests"]} if embedded else data, shown)
    if embedded:
        pipeline_path = path
    elif spec.pipeline is not None:
        pipeline_path = path.parent / spec.pipeline
    else:
        found = default_pipeline(path)
        if found is None:
            raise ConfigError(
                "the file's name does not end in _test.yaml, so it cannot name its pipeline; "
                "say which with pipeline: (relative to this file)",
                path=shown,
                key="pipeline",
            )
        pipeline_path = found
    if not pipeline_path.is_file():
        raise ConfigError(
            f"the pipeline file {str(pipeline_path)!r} does not exist; fix pipeline: "
            "(relative to this file)",
            path=shown,
            key="pipeline",
        )
    pipeline = load_pipeline(pipeline_path, env={**os.environ, **spec.env})
    problems: list[Problem] = []
    cases = []
    raw_tests = data.get("tests") or []
    for i in range(len(spec.tests)):
        prepared, case_problems = prepare_case(pipeline, spec, path.parent, i, raw_tests[i])
        problems += case_problems
        cases.append(prepared)
    if problems:
        raise PipelineConfigError(problems, path=shown)
    return Suite(path, shown, pipeline, str(pipeline_path), spec, tuple(cases), text)
