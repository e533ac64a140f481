"""Every whole case in docs/testing-pipelines.md runs and passes: the shop's against the shop
pipeline, the rate-limit one against a pipeline with the ``slow`` stage it names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "testing-pipelines.md"
SLOW = """\
name: guide
kafka: {bootstrap_servers: 127.0.0.1:9092}
topics: [orders]
stages:
  slow:
    from: orders
    to: orders.slow
    rate_limit: {rate: 2, per: 1s, burst: 2}
"""


def _cases() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    return [b for b in blocks if b.startswith(("tests:", "  - name:"))]


def test_the_guide_has_whole_cases() -> None:
    assert len(_cases()) == 4  # a first test, the idle timer, rate limits, a source


@pytest.mark.parametrize(
    "block", _cases(), ids=lambda b: b.split("name:", 1)[1].split("\n")[0][:50]
)
def test_a_case_in_the_guide_passes(tmp_path: Path, run, block: str) -> None:
    if "stages: [slow]" in block:
        (tmp_path / "pipeline.yaml").write_text(SLOW)
    else:
        shutil.copy(ROOT / "examples" / "shop" / "pipeline.yaml", tmp_path / "pipeline.yaml")
    path = tmp_path / "pipeline_test.yaml"
    path.write_text(block if block.startswith("tests:") else "tests:\n" + block)
    code, out, err = run("test", path)
    assert code == 0, out + err
