"""docker-compose.kafka.yml stays equivalent to the local stack: same ports and credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from headrace_dev.stack import DEFAULT_PORTS
from headrace_dev.stack.mariadb import MYSQL_DATABASE, MYSQL_PASSWORD, MYSQL_USER
from headrace_dev.stack.moto import AWS_ENV

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]

# local stack component -> compose service
PAIRS = {"kafka": "kafka", "mariadb": "mysql", "ferretdb": "mongodb", "moto": "moto"}


def _published(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for spec in service.get("ports", []):
        host_ip, host_port, _container = spec.split(":")
        assert host_ip == "127.0.0.1", f"{spec}: publish on 127.0.0.1 only, like the local stack"
        ports.add(int(host_port))
    return ports


def test_every_component_has_a_service_on_the_same_port() -> None:
    for component, service in PAIRS.items():
        assert DEFAULT_PORTS[component] in _published(SERVICES[service]), (component, service)


def test_prometheus_listens_where_the_local_stack_does() -> None:
    prom = SERVICES["prometheus"]
    assert f"--web.listen-address=127.0.0.1:{DEFAULT_PORTS['prometheus']}" in prom["command"]


def test_mysql_credentials_match_the_local_stack() -> None:
    env = SERVICES["mysql"]["environment"]
    assert env["MYSQL_USER"] == MYSQL_USER
    assert env["MYSQL_PASSWORD"] == MYSQL_PASSWORD
    assert env["MYSQL_DATABASE"] == MYSQL_DATABASE


def test_kafka_is_kraft_advertising_loopback() -> None:
    env = SERVICES["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://127.0.0.1:{DEFAULT_PORTS['kafka']}"


def test_documented_endpoints_match_the_env_file_names() -> None:
    text = (ROOT / "docker-compose.kafka.yml").read_text()
    for key in (
        "HEADRACE_KAFKA_BOOTSTRAP",
        "HEADRACE_MYSQL_URL",
        "HEADRACE_MONGO_URI",
        "HEADRACE_AWS_ENDPOINT",
        "HEADRACE_PROMETHEUS_URL",
    ):
        assert key in text
    for key, value in AWS_ENV.items():
        assert f"{key}={value}" in text
