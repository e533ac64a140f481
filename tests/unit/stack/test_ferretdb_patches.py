"""FerretDB source patches: exact replacements, loud failure on a mismatch, build naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.errors import StackError
from headrace_dev.stack import StackPaths
from headrace_dev.stack.ferretdb import FERRETDB_BUILD, FERRETDB_VERSION, FerretDB
from headrace_dev.stack.ferretdb_patches import PATCH_LEVEL, PATCHES, SourcePatch, apply_patches


def _tree(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.go").write_text(text)
    return tmp_path


def test_a_patch_replaces_its_text_once(tmp_path: Path) -> None:
    src = _tree(tmp_path, "x := 1\ndefer closer.Close()\ny := 2\n")
    apply_patches(src, (SourcePatch("pkg/a.go", "defer closer.Close()\n", "", "why"),))
    assert (src / "pkg" / "a.go").read_text() == "x := 1\ny := 2\n"


@pytest.mark.parametrize("text", ["nothing to see\n", "twice\ntwice\n"])
def test_a_patch_that_does_not_match_exactly_once_stops_the_build(
    tmp_path: Path, text: str
) -> None:
    src = _tree(tmp_path, text)
    with pytest.raises(StackError, match=r"pkg/a\.go: the text to replace \(the reason\) occurs"):
        apply_patches(src, (SourcePatch("pkg/a.go", "twice\n", "once\n", "the reason"),))


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"cannot read pkg/b\.go"):
        apply_patches(tmp_path, (SourcePatch("pkg/b.go", "a", "b", "why"),))


def test_every_patch_says_why_and_changes_something() -> None:
    assert PATCHES
    for patch in PATCHES:
        assert patch.why and patch.old != patch.new and patch.path.endswith(".go")


def test_the_build_is_named_after_the_patch_level(tmp_path: Path) -> None:
    comp = FerretDB(paths=StackPaths(root=tmp_path / "s", cache=tmp_path / "c"), port=27017)
    assert FERRETDB_BUILD == f"{FERRETDB_VERSION}-{PATCH_LEVEL}"
    assert comp.binary == tmp_path / "c" / f"ferretdb-{FERRETDB_BUILD}" / "ferretdb"
    assert comp.command()[0] == str(comp.binary)


def test_an_instance_of_another_build_is_reported_outdated(tmp_path: Path) -> None:
    comp = FerretDB(paths=StackPaths(root=tmp_path / "s", cache=tmp_path / "c"), port=27017)
    assert comp.outdated(comp.command()) is None
    old = [str(tmp_path / "c" / "ferretdb-v1.24.2" / "ferretdb"), "--handler=sqlite"]
    why = comp.outdated(old)
    assert why is not None and FERRETDB_BUILD in why and "ferretdb-v1.24.2/" in why
