"""Fixtures for the pipeline-file tests: the ARCHITECTURE.md example and small file builders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

_SHOP = Path(__file__).parent / "fixtures" / "shop.yaml"


@pytest.fixture
def shop_path() -> Path:
    """The pipeline file of ARCHITECTURE.md, verbatim."""
    return _SHOP


@pytest.fixture
def shop_env() -> dict[str, str]:
    """The environment the example needs (its MySQL URL reads ${MYSQL_PASSWORD})."""
    return {"MYSQL_PASSWORD": "pw-from-env-7Q2x"}


@pytest.fixture
def shop_data() -> dict[str, Any]:
    """The example pipeline as plain data, to modify per test."""
    data: dict[str, Any] = yaml.safe_load(_SHOP.read_text())
    return data


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str | dict[str, Any]], Path]:
    """Write YAML text (or data) to ``pipeline.yaml`` in a temp dir and return its path."""

    def _write(content: str | dict[str, Any]) -> Path:
        path = tmp_path / "pipeline.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return _write
