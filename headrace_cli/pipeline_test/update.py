"""``--update``: write what the cases produced into their test file as the new expectations.

Only the expectations that failed are rewritten, each with what its check says
(``Check.update``: same form, actual items); the rest of the file stays as written, comments
included. The YAML is not re-dumped: each expectation's value is located in the file's text
(PyYAML's node marks) and that span alone is replaced, from the end of its key to the end of
its last value (so a comment after it stays; comments inside a rewritten block go). Checks
that cannot be rewritten from the outcome (``contains``, expressions) are left for a person.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from headrace.config.yamlfile import _Loader as PipelineYamlLoader  # the pipeline file's dialect
from headrace_cli.pipeline_test.checks import Check
from headrace_cli.pipeline_test.runner import CaseResult
from headrace_cli.pipeline_test.suite import Suite
from headrace_cli.pipeline_test.values import block

__all__ = ["Edit", "apply_edits", "plan_edits"]

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` with ``new``: the expectation at ``path`` of case
    ``case`` (``check``), in ``suite``'s file."""

    suite: Suite
    case: str
    check: Check
    start: int
    end: int
    new: str


def _content_end(node: yaml.Node) -> int:
    """Where a node's own text ends: a block collection ends at its last value (PyYAML's
    end mark would take in the blank lines and comments after it)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode) and node.value:
        return _content_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value:
        return _content_end(node.value[-1])
    return int(node.end_mark.index)


def _entries(node: yaml.Node) -> Iterator[tuple[Any, yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node.value, key_node, value_node
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield i, item, item


def _locate(root: yaml.Node, path: KeyPath) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of the mapping entry at ``path``; None if not there."""
    node = root
    key_node = root
    for part in path:
        for name, k, v in _entries(node):
            if name == part:
                key_node, node = k, v
                break
        else:
            return None
    return key_node, node


def _replacement(value: Any, column: int) -> str:
    if value == [] or value is None:
        return ": []"
    return ":\n" + block(value, column + 2)


def plan_edits(results: Sequence[tuple[Suite, CaseResult]]) -> tuple[list[Edit], list[str]]:
    """The edits ``--update`` would make, and what it cannot update (one line each)."""
    edits: list[Edit] = []
    left: list[str] = []
    roots: dict[Path, yaml.Node | None] = {}
    for suite, result in results:
        if result.error is not None:
            left.append(f"{suite.shown}::{result.case.name}: raised an error, nothing to write")
            continue
        for check in result.checks:
            if check.ok:
                continue
            where = f"{suite.shown}::{result.case.name}: {check.where}"
            if not check.updatable or check.update is None:
                left.append(f"{where}: contains or an expression failed; fix it by hand")
                continue
            if suite.path not in roots:
                roots[suite.path] = yaml.compose(suite.text, Loader=PipelineYamlLoader)
            root = roots[suite.path]
            found = (
                None if root is None else _locate(root, ("tests", result.case.index, *check.path))
            )
            if found is None:
                left.append(f"{where}: not found in the file's text")
                continue
            key_node, value_node = found
            start = int(key_node.end_mark.index)
            end = _content_end(value_node)
            new = _replacement(check.update, int(key_node.start_mark.column))
            edits.append(Edit(suite, result.case.name, check, start, end, new))
    return edits, left


def apply_edits(edits: Sequence[Edit]) -> list[Path]:
    """Write every edit into its file (from the end of each file, so spans stay right);
    returns the files written."""
    by_file: dict[Path, list[Edit]] = {}
    for edit in edits:
        by_file.setdefault(edit.suite.path, []).append(edit)
    for path, file_edits in by_file.items():
        text = file_edits[0].suite.text
        for edit in sorted(file_edits, key=lambda e: e.start, reverse=True):
            text = text[: edit.start] + edit.new + text[edit.end :]
        path.write_text(text, encoding="utf-8")
    return list(by_file)
