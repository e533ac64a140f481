"""The gateway: section of the pipeline file: defaults, the topics it adds to the pipeline,
and the combinations `headrace check` refuses (exit 2, naming the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from headrace.config import load_pipeline
from headrace.config.problems import PipelineConfigError
from headrace_cli.main import main

SECRET = "s" * 40


def write(tmp_path: Path, gateway: dict[str, Any], **extra: Any) -> Path:
    data = {"name": "p", "kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "gateway": gateway}
    data.update(extra)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(PipelineConfigError) as err:
        load_pipeline(path)
    return [(p.key, p.message) for p in err.value.problems]


def test_defaults_and_a_gateway_only_pipeline(tmp_path: Path) -> None:
    pipeline = load_pipeline(write(tmp_path, {"topics": {"orders": {"key": "id"}}}))
    gw = pipeline.gateway
    assert gw is not None
    assert (gw.host, gw.port, gw.max_body, gw.processes) == ("127.0.0.1", 8088, 4 * 1024**2, 1)
    assert gw.auth is None and gw.limits is None
    orders = gw.topics["orders"]
    assert (orders.key, orders.time, orders.format, orders.atomic) == (["id"], None, "json", False)
    assert pipeline.produced_topics() == {"orders": ["gateway"]}


def test_a_stage_may_read_a_gateway_topic(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"topics": {"orders": {}}},
        stages={
            "clean": {"from": "orders", "to": "orders.clean", "transform": [{"filter": "a > 1"}]}
        },
    )
    assert load_pipeline(path).stages["clean"].from_ == "orders"


@pytest.mark.parametrize(
    ("gateway", "key", "message"),
    [
        ({"topics": {}}, "gateway.topics", "name at least one writable topic"),
        (
            {"topics": {"o": {"format": "avro"}}},
            "gateway.topics.o.schema",
            "format avro needs a schema",
        ),
        (
            {"topics": {"o": {"format": "avro", "schema": {"type": "object"}}}},
            "gateway.topics.o.schema",
            "name an .avsc file",
        ),
        (
            {"topics": {"o": {"schema": {"type": "nonsense"}}}},
            "gateway.topics.o.schema",
            "not a valid JSON Schema",
        ),
        ({"topics": {"o.dlq": {}}}, 'gateway.topics["o.dlq"]', "dead-letter topics are written"),
        (
            {"host": "0.0.0.0", "topics": {"o": {}}},
            "gateway.auth",
            "required when host is '0.0.0.0'",
        ),
        ({"topics": {"o": {"format": "xml"}}}, "gateway.topics.o.format", "json, avro"),
        ({"topics": {"o": {}}, "prot": 1}, "gateway.prot", "did you mean 'port'"),
        ({"topics": {"o": {}}, "max_body": "lots"}, "gateway.max_body", "not a byte size"),
    ],
)
def test_bad_combinations_name_the_key(
    tmp_path: Path, gateway: dict[str, Any], key: str, message: str
) -> None:
    found = problems(write(tmp_path, gateway))
    assert any(k == key and message in m for k, m in found), found


def test_non_loopback_hosts_are_fine_with_auth(tmp_path: Path) -> None:
    auth = {"secret": SECRET, "issuer": "i", "audience": "a"}
    path = write(tmp_path, {"host": "0.0.0.0", "auth": auth, "topics": {"o": {}}})
    assert load_pipeline(path).gateway is not None
    for host in ("localhost", "127.0.0.2", "::1"):
        assert load_pipeline(write(tmp_path, {"host": host, "topics": {"o": {}}})).gateway


def test_check_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"topics": {"o": {"format": "avro"}}})
    assert main(["check", "-f", str(path)]) == 2
    assert "gateway.topics.o.schema: format avro needs a schema" in capsys.readouterr().err
