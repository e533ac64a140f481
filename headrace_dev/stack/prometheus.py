"""Prometheus from Debian's packages, scraping every headrace process.

Targets are found by file-based service discovery: each headrace process (or ``headrace run``)
writes a JSON target file into ``<stack>/conf/prometheus/targets/``; Prometheus re-reads the
folder every 5 s and scrapes every 5 s. The folder's ``.scrape-interval`` file announces that
interval, so a process waits for its final scrape before it exits (``headrace.metrics_server``).
Alerting rules are loaded from ``<stack>/conf/prometheus/rules/``. The headrace console
(``headrace/observability/consoles``) is copied to ``<stack>/conf/prometheus/consoles/`` and
``console_libraries/`` and served at ``/consoles/headrace.html``. ``stack up`` copies them
again for a running Prometheus too (it reads them at each request); one started without the
console flags (an older ``stack up``) is reported as outdated.
"""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace.metrics_server import INTERVAL_FILE
from headrace.observability import ALERTS, CONSOLE_PATH, CONSOLES
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

    @property
    def consoles_dir(self) -> Path:
        """``--web.console.templates``: the shipped console templates (``*.html``)."""
        return self.conf_dir / "consoles"

    @property
    def console_libraries_dir(self) -> Path:
        """``--web.console.libraries``: the shipped console library (``*.lib``)."""
        return self.conf_dir / "console_libraries"

    def _console_folders(self) -> tuple[tuple[str, Path], ...]:
        return (("*.html", self.consoles_dir), ("*.lib", self.console_libraries_dir))

    def console_url(self) -> str:
        """Where this Prometheus serves the headrace console."""
        return self.endpoint() + CONSOLE_PATH

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
        self.install_consoles()

    def install_consoles(self) -> list[Path]:
        """Copy the shipped console templates and library into the stack's conf folders
        (idempotent; Prometheus reads them at each request, so a copy takes effect at once
        for a Prometheus started with ``command()``). Returns the files written."""
        written = []
        for pattern, folder in self._console_folders():
            folder.mkdir(parents=True, exist_ok=True)
            for source in sorted(CONSOLES.glob(pattern)):
                written.append(Path(shutil.copyfile(source, folder / source.name)))
        return written

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
            *self._console_flags(),
        ]

    def _console_flags(self) -> list[str]:
        return [
            f"--web.console.templates={self.consoles_dir}",
            f"--web.console.libraries={self.console_libraries_dir}",
        ]

    def outdated(self, argv: list[str]) -> str | None:
        if argv and not set(self._console_flags()) <= set(argv):
            return (
                "it was started without the headrace console (--web.console.templates="
                f"{self.consoles_dir}), so {self.console_url()} answers 404"
            )
        if argv and self._stale_consoles():
            return f"its console files in {self.conf_dir} differ from this checkout's"
        return None

    def _stale_consoles(self) -> list[str]:
        """Names of shipped console files whose installed copy is missing or different."""
        stale = []
        for pattern, folder in self._console_folders():
            for source in sorted(CONSOLES.glob(pattern)):
                copy = folder / source.name
                if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                    stale.append(source.name)
        return stale

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint()}/-/ready", timeout=3) as resp:  # noqa: S310
            return bool(resp.status == 200)

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "HEADRACE_PROMETHEUS_URL": self.endpoint(),
            "HEADRACE_PROMETHEUS_TARGETS": str(self.targets_dir),
            "HEADRACE_CONSOLE_URL": self.console_url(),
        }
