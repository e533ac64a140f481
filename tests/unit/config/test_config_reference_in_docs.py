"""docs/configuration.md's reference is the generated one: no key goes undocumented."""

from __future__ import annotations

from pathlib import Path

from headrace.config import iter_config_keys
from headrace.config.reference import reference_markdown

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
START = "<!-- config-reference:start"
END = "<!-- config-reference:end -->"


def _block() -> str:
    text = PAGE.read_text()
    assert START in text and END in text, (
        "docs/configuration.md lost its configuration reference markers"
    )
    inner = text.split(START, 1)[1].split(END, 1)[0]
    return inner.split("\n", 1)[1]  # drop the rest of the start marker line


def test_the_reference_page_is_up_to_date() -> None:
    assert _block() == reference_markdown(), (
        "docs/configuration.md's configuration reference is stale: regenerate it from "
        "`headrace config reference` (between the config-reference markers)"
    )


def test_every_key_is_documented_with_a_description() -> None:
    block = _block()
    for path, _type, description in iter_config_keys():
        assert f"`{path}`" in block, f"{path} is missing from docs/configuration.md"
        assert description.strip(), f"{path} has no description in the model"
