"""The local stack: install, start, check, stop and describe every component.

``Stack.up`` is idempotent: a component that already runs (by its pid file) is left alone and
only health-checked; installs and builds are cached (see ``paths``); a port held by a process
this stack did not start is an error naming the port, the component and the fix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack import proc
from headrace_dev.stack.component import Component
from headrace_dev.stack.ferretdb import FerretDB
from headrace_dev.stack.kafka import Kafka
from headrace_dev.stack.mariadb import MariaDB
from headrace_dev.stack.moto import Moto
from headrace_dev.stack.paths import StackPaths
from headrace_dev.stack.prometheus import Prometheus
from headrace_dev.stack.tools import apt_install

__all__ = ["DEFAULT_PORTS", "ComponentStatus", "Stack"]

Log = Callable[[str], None]

DEFAULT_PORTS: dict[str, int] = {
    "kafka": 9092,
    "mariadb": 3306,
    "ferretdb": 27017,
    "moto": 5000,
    "prometheus": 9090,
}
_CLASSES: dict[str, type[Component]] = {
    "kafka": Kafka,
    "mariadb": MariaDB,
    "ferretdb": FerretDB,
    "moto": Moto,
    "prometheus": Prometheus,
}


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``stack status``: state is ``running``, ``unhealthy`` or ``stopped``."""

    name: str
    state: str
    pid: int | None
    port: int
    endpoint: str


def _port(name: str) -> int:
    """The component's port: ``$HEADRACE_STACK_<NAME>_PORT`` or the default."""
    raw = os.environ.get(f"HEADRACE_STACK_{name.upper()}_PORT")
    if not raw:
        return DEFAULT_PORTS[name]
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(
            f"HEADRACE_STACK_{name.upper()}_PORT={raw!r} is not a port number; fix: unset it "
            f"or set a number (default {DEFAULT_PORTS[name]})"
        ) from exc


class Stack:
    """The set of local servers the integration tests and the demo talk to."""

    def __init__(self, paths: StackPaths, log: Log = print) -> None:
        self.paths = paths
        self.log = log
        self.components: dict[str, Component] = {
            name: cls(paths=paths, port=_port(name)) for name, cls in _CLASSES.items()
        }

    def select(self, names: Iterable[str] | None) -> list[Component]:
        """Components by name (all when ``names`` is empty), or StackError for an unknown name."""
        wanted = list(names or [])
        if not wanted:
            return list(self.components.values())
        unknown = [n for n in wanted if n not in self.components]
        if unknown:
            raise StackError(
                f"unknown stack component {unknown[0]!r}; components are: "
                + ", ".join(self.components)
            )
        return [self.components[n] for n in wanted]

    # -- up ---------------------------------------------------------------------------------

    def up(self, names: Iterable[str] | None = None) -> list[ComponentStatus]:
        """Install (first time), start and health-check the components; write the env file."""
        self.paths.ensure()
        comps = self.select(names)
        missing = sorted({pkg for c in comps for pkg in c.missing_packages()})
        apt_install(missing, log_file=self.paths.log_file("install"), log=self.log)
        with ThreadPoolExecutor(max_workers=len(comps)) as pool:
            for fut in [pool.submit(c.install, self.log) for c in comps]:
                fut.result()
        started: list[Component] = []
        for comp in comps:
            pid = self._pid(comp)
            if pid is not None:
                if isinstance(comp, Prometheus):
                    comp.install_consoles()  # read per request: takes effect without a restart
                self._note_outdated(comp, pid)
                continue
            self._check_ports_free(comp)
            comp.prepare(self.log)
            self.log(f"starting {comp.name} on {comp.endpoint()}")
            proc.spawn(
                comp.command(),
                pid_file=self.paths.pid_file(comp.name),
                log_file=self.paths.log_file(comp.name),
                marker=comp.marker,
                cwd=comp.cwd() or self.paths.root,
                env=comp.process_env(),
            )
            started.append(comp)
        with ThreadPoolExecutor(max_workers=len(comps)) as pool:
            errors = [e for e in pool.map(self._await_ready, comps) if e]
        self.write_env_file()
        if errors:
            raise StackError("\n".join(errors))
        return self.status([c.name for c in comps])

    def _note_outdated(self, comp: Component, pid: int) -> None:
        """Say so when a running component is outdated (e.g. an older FerretDB build):
        ``up`` never restarts a running component by itself."""
        why = comp.outdated(proc.command_line(pid))
        if why:
            self.log(
                f"{comp.name} (pid {pid}) is outdated: {why}; it is left running; to switch: "
                f"headrace stack down {comp.name} && headrace stack up {comp.name}"
            )

    def _check_ports_free(self, comp: Component) -> None:
        ports = [comp.port]
        if isinstance(comp, Kafka):
            ports.append(comp.controller_port)
        for port in ports:
            if proc.port_in_use(port):
                raise StackError(
                    f"port {port} (for {comp.name}) is in use by a process this stack did not "
                    f"start; fix: stop it (see `ss -ltnp 'sport = :{port}'`) or pick another "
                    f"port with HEADRACE_STACK_{comp.name.upper()}_PORT"
                )

    def _await_ready(self, comp: Component) -> str | None:
        """Wait for health then bootstrap; return an error line, or None when ready."""
        deadline = time.monotonic() + comp.start_timeout
        pid = proc.recorded_pid(self.paths.pid_file(comp.name))
        while time.monotonic() < deadline:
            if pid is None or proc.exited(pid):
                return (
                    f"{comp.name} exited during start; see {self.paths.log_file(comp.name)}"
                    f"\n{_tail(self.paths.log_file(comp.name))}"
                )
            if proc.wait_until(comp.healthy, timeout=1.0, interval=0.5):
                try:
                    comp.bootstrap(self.log)
                except Exception as exc:
                    return f"{comp.name} started but its setup failed: {exc}"
                return None
        return (
            f"{comp.name} did not answer its health check within {comp.start_timeout:.0f}s; "
            f"see {self.paths.log_file(comp.name)}"
        )

    # -- down / status ----------------------------------------------------------------------

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop the components this stack started (by pid); return the names that were running."""
        stopped = []
        for comp in reversed(self.select(names)):
            if proc.stop(self.paths.pid_file(comp.name), timeout=30):
                stopped.append(comp.name)
        return stopped

    def status(self, names: Iterable[str] | None = None) -> list[ComponentStatus]:
        """Each component's state (running = pid alive and health check answers), pid and port."""
        rows = []
        for comp in self.select(names):
            pid = self._pid(comp)
            if pid is None:
                state = "stopped"
            else:
                state = "running" if proc.wait_until(comp.healthy, timeout=2) else "unhealthy"
            rows.append(ComponentStatus(comp.name, state, pid, comp.port, comp.endpoint()))
        return rows

    def _pid(self, comp: Component) -> int | None:
        return proc.read_pid(self.paths.pid_file(comp.name))

    def write_env_file(self) -> Path:
        """Write every component's endpoints to ``<stack>/env`` (KEY=VALUE, shell-sourceable)."""
        env: dict[str, str] = {"HEADRACE_STACK_DIR": str(self.paths.root)}
        for comp in self.components.values():
            env.update(comp.env())
        env["HEADRACE_GATEWAY_SECRET"] = self.gateway_secret()
        lines = ["# written by `headrace stack up`: endpoints of the local stack"]
        lines += [f"{k}={v}" for k, v in env.items()]
        self.paths.env_file.write_text("\n".join(lines) + "\n")
        return self.paths.env_file

    def gateway_secret(self) -> str:
        """The HS256 secret of the example pipelines' gateways on this stack: random, made
        once and kept in ``<stack>/conf/gateway-secret`` (mode 0600), so tokens minted
        earlier stay valid across ``stack up``s."""
        import secrets

        path = self.paths.conf / "gateway-secret"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32) + "\n")
        return path.read_text().strip()

    def log_path(self, name: str) -> Path:
        self.select([name])
        return self.paths.log_file(name)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  | " + line for line in text[-lines:])
