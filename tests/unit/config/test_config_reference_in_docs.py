"""The README's configuration reference is the generated one: no key goes undocumented."""

from __future__ import annotations

from pathlib import Path

from headrace.config import iter_config_keys
from headrace.config.reference import reference_markdown

README = Path(__file__).resolve().parents[3] / "README.md"
START = "<!-- config-reference:start"
END = "<!-- config-reference:end -->"


def _block() -> str:
    text = README.read_text()
    assert START in text and END in text, "README.md lost its configuration reference markers"
    inner = text.split(START, 1)[1].split(END, 1)[0]
    return inner.split("\n", 1)[1]  # drop the rest of the start marker line


def test_readme_reference_is_up_to_date() -> None:
    assert _block() == reference_markdown(), (
        "README.md's configuration reference is stale: regenerate it from "
        "`headrace config reference` (between the config-reference markers)"
    )


def test_every_key_is_documented_with_a_description() -> None:
    block = _block()
    for path, _type, description in iter_config_keys():
        assert f"`{path}`" in block, f"{path} is missing from the README"
        assert description.strip(), f"{path} has no description in the model"
