"""Prometheus from Debian's packages, scraping every headrace process.

Targets are found by file-based service discovery: each headrace process (or ``headrace run``)
writes a JSON target file into ``<stack>/conf/prometheus/targets/``; Prometheus re-reads the
folder every 5 s and scrapes every 5 s. The folder's ``.scrape-interval`` file announces that
interval, so a process waits for its final scrape before it exits (``headrace.metrics_server``).
Alerting rules are loaded from ``<stack>/conf/prometheus/rules/``.
"""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace.metrics_server import INTERVAL_FILE
from headrace.observability import ALERTS
from headrace_dev.stack.component import Component, Log

__all__ = ["Prometheus"]

_CONFIG = """# written by headrace stack up; edits are overwritten
global:
  scrape_interval: {interval}s
  evaluation_interval: {interval}s
rule_files:
  - {rules}/*.yml
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: headrace
    file_sd_configs:
      - files: ["{targets}/*.json"]
        refresh_interval: {interval}s
"""
#: seconds between scrapes, also announced to headrace processes in the targets folder
SCRAPE_INTERVAL = 5


def _find_prometheus() -> str | None:
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None


@dataclass
class Prometheus(Component):
    """Prometheus server on 127.0.0.1 with file-based service discovery for headrace targets."""

    name: str = "prometheus"
    marker: str = "prometheus"
    start_timeout: float = 60.0

    @property
    def conf_dir(self) -> Path:
        return self.paths.conf / "prometheus"

    @property
    def targets_dir(self) -> Path:
        return self.conf_dir / "targets"

    @property
    def rules_dir(self) -> Path:
        return self.conf_dir / "rules"

    def missing_packages(self) -> list[str]:
        return [] if _find_prometheus() else ["prometheus"]

    def prepare(self, log: Log) -> None:
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "prometheus.yml").write_text(
            _CONFIG.format(
                rules=self.rules_dir,
                port=self.port,
                targets=self.targets_dir,
                interval=SCRAPE_INTERVAL,
            )
        )
        # tells processes that register here a Prometheus watches: they wait for a final scrape
        (self.targets_dir / INTERVAL_FILE).write_text(f"{SCRAPE_INTERVAL}\n")
        shutil.copyfile(ALERTS, self.rules_dir / "headrace.yml")

    def command(self) -> list[str]:
        binary = _find_prometheus()
        if binary is None:
            raise StackError("prometheus not found; fix: apt-get install -y prometheus")
        return [
            binary,
            f"--config.file={self.conf_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ]

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint()}/-/ready", timeout=3) as resp:  # noqa: S310
            return bool(resp.status == 200)

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "HEADRACE_PROMETHEUS_URL": self.endpoint(),
            "HEADRACE_PROMETHEUS_TARGETS": str(self.targets_dir),
        }
