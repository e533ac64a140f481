"""The house rules (ARCHITECTURE, docs/architecture.md): the runtime never imports the CLI or
the developer tooling, and producers, streams and connectors never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ["headrace", "schemas", "producers", "streams", "connectors", "gateway"]
PEERS = {"producers", "streams", "connectors", "gateway"}


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((path, node.module))
    return found


@pytest.mark.parametrize("package", RUNTIME)
def test_the_runtime_never_imports_the_cli_or_the_tooling(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in _imports(package)
        if m.split(".")[0] in ("headrace_cli", "headrace_dev")
    ]
    assert not bad, bad


@pytest.mark.parametrize("package", sorted(PEERS))
def test_peers_never_import_each_other(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in _imports(package)
        if m.split(".")[0] in PEERS - {package}
    ]
    assert not bad, bad


def test_the_kernel_and_schemas_import_no_peer() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for pkg in ("headrace", "schemas")
        for p, m in _imports(pkg)
        if m.split(".")[0] in PEERS | ({"headrace"} if pkg == "schemas" else set())
    ]
    assert not bad, bad


def test_the_cli_does_not_depend_on_the_developer_tooling() -> None:
    """``headrace_cli`` loads the developer commands by name (they may be absent); the tooling
    may use the CLI's services, never the other way round."""
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p, m in _imports("headrace_cli")
        if m.split(".")[0] == "headrace_dev"
    ]
    assert not bad, bad


def test_no_two_test_files_share_a_name() -> None:
    """Test folders are not packages (pytest's rootdir insertion): two test files with one
    basename stop ``pytest tests`` at collection."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, clashes
