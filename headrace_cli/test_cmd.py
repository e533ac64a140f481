"""``headrace test [FILE...]``: run the pipeline tests written beside a pipeline file.

The engine is ``headrace_cli.pipeline_test`` (test files, the simulated worker, the checks,
the report, JUnit XML, ``--update``); ``docs/testing-pipelines.md`` is the user's guide.
Exit codes: 0 every case passed; 1 a case failed or raised; 2 a test file (or the pipeline
it tests) is invalid, naming the file and the key, or nothing was found to run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from headrace.errors import ConfigError
from headrace_cli.common import add_file_option, pipeline_path

if TYPE_CHECKING:
    from headrace_cli.pipeline_test.runner import CaseResult
    from headrace_cli.pipeline_test.suite import Suite

__all__ = ["COMMANDS", "find_test_files", "register"]

COMMANDS = ("test",)

_SUFFIXES = ("_test.yaml", "_test.yml")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test",
        help="run the pipeline's tests (*_test.yaml) in process, on simulated time, no servers",
        description=(
            "Run pipeline tests: cases in *_test.yaml files beside the pipeline file, each "
            "feeding records (or S3 bodies, MySQL rows) to some stages, sources or sinks and "
            "saying what must come out: records per topic, dead letters, sink operations, "
            "what a rate limit did. The stages run the worker's own code over in-memory "
            "topics, on a simulated clock (advance: 10m lets idle windows close), in "
            "milliseconds per case; nothing needs to run. FILE is a test file, a pipeline "
            "file (its <name>_test.yaml runs), or a directory (every *_test.yaml under it); "
            "default: the tests of the pipeline file (-f, $HEADRACE_PIPELINE or "
            "./pipeline.yaml). Exit 0 when every case passes, 1 when one fails (its diff, "
            "record by record, is printed), 2 when a test file is invalid (the line names "
            "the file and the key). Guide: docs/testing-pipelines.md."
        ),
    )
    add_file_option(p)
    p.add_argument(
        "files", nargs="*", metavar="FILE", type=Path, help="test files, pipelines or folders"
    )
    p.add_argument(
        "-k",
        dest="select",
        metavar="TEXT",
        default=None,
        help="run only the cases whose name contains TEXT (any case)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="write what failing cases produced as their new expectations (asks first; the "
        "rest of the file, comments included, is kept)",
    )
    p.add_argument("--yes", action="store_true", help="with --update: do not ask, write")
    p.add_argument(
        "--junit-xml",
        metavar="PATH",
        type=Path,
        default=None,
        help="also write the results as JUnit XML to PATH (for CI systems)",
    )
    p.set_defaults(func=_test)


def _is_test_file(path: Path) -> bool:
    return path.name.endswith(_SUFFIXES)


def _embeds_tests(pipeline: Path) -> bool:
    """Whether a pipeline file holds its own cases under a top-level ``tests:``."""
    try:
        text = pipeline.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("tests:") for line in text.splitlines())


def find_test_files(given: list[Path], default_pipeline: Path) -> list[Path]:
    """The test files to run for ``given`` (see ``--help``); ConfigError (exit 2) when a
    path names nothing to run."""
    found: list[Path] = []
    for path in given or [default_pipeline]:
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*_test.y*ml")
                if _is_test_file(p) and not any(part.startswith(".") for part in p.parts)
            )
            if not inside:
                raise ConfigError(f"{path}: no *_test.yaml files in this folder")
            found += inside
        elif _is_test_file(path):
            found.append(path)
        elif path.is_file():
            tests = [path.with_name(path.stem + s) for s in _SUFFIXES]
            existing = [t for t in tests if t.is_file()]
            if _embeds_tests(path):
                existing.insert(0, path)
            if not existing:
                raise ConfigError(
                    f"{path}: no tests for this pipeline; write them in {tests[0].name} "
                    "beside it (docs/testing-pipelines.md)"
                )
            found += existing
        else:
            raise ConfigError(
                f"{path}: no such file or folder (give test files, a pipeline file or a "
                "folder; default: ./pipeline.yaml)"
            )
    return list(dict.fromkeys(found))


def _load(paths: list[Path]) -> list[Suite]:
    """Every test file loaded; one ConfigError listing the problems of all that are not."""
    from headrace_cli.pipeline_test.suite import load_suite

    suites: list[Suite] = []
    problems: list[str] = []
    for path in paths:
        try:
            suites.append(load_suite(path, str(path)))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return suites


def _confirm(question: str) -> bool:
    sys.stdout.write(question)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _update(results: list[tuple[Suite, CaseResult]], yes: bool) -> bool:
    """``--update``; True when every failure was rewritten."""
    from headrace_cli.pipeline_test.update import apply_edits, plan_edits

    edits, left = plan_edits(results)
    if edits:
        print(f"--update would rewrite {len(edits)} expectation(s):")
        for edit in edits:
            print(f"  {edit.suite.shown}::{edit.case}: {edit.check.where}")
    for line in left:
        print(f"  not updated: {line}")
    if not edits:
        return not left
    if not yes and not _confirm("Write them? [y/N] "):
        print("nothing written")
        return False
    for path in apply_edits(edits):
        print(f"wrote {path}")
    return not left


def _test(args: argparse.Namespace) -> int:
    from headrace_cli.pipeline_test.report import Reporter
    from headrace_cli.pipeline_test.runner import run_case, warm_up

    started = time.perf_counter()
    suites = _load(find_test_files(list(args.files), pipeline_path(args)))
    if not args.verbose:  # a source logs each dead letter; here they are expected
        logging.getLogger("producers.runner").setLevel(logging.ERROR)
    warm_up(suites)
    select = args.select.lower() if args.select else None
    reporter = Reporter(sys.stdout)
    results: list[tuple[Suite, CaseResult]] = []
    for suite in suites:
        chosen = [c for c in suite.cases if select is None or select in c.name.lower()]
        if not chosen:
            continue
        reporter.suite(suite)
        for case in chosen:
            result = run_case(suite, case)
            reporter.case(result)
            results.append((suite, result))
    if not results:
        raise ConfigError(f"no case's name contains {args.select!r} (-k)")
    reporter.failures(results)
    reporter.summary(results, time.perf_counter() - started)
    if args.junit_xml is not None:
        from headrace_cli.pipeline_test.junit import write_junit

        write_junit(args.junit_xml, results)
        print(f"JUnit XML: {args.junit_xml}")
    failed = any(not r.ok for _s, r in results)
    if failed and args.update:
        return 0 if _update(results, args.yes) else 1
    return 1 if failed else 0
