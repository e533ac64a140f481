"""MariaDB from Debian's packages, run in its own data dir on its own port.

The Debian package provides the binaries only: the system service is never started (see
``tools.apt_install``). ``prepare`` runs ``mariadb-install-db`` once into the stack's data dir;
``bootstrap`` creates the ``headrace`` user (all privileges, so tests can create databases) and
the ``headrace`` database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack.component import Component, Log
from headrace_dev.stack.tools import run_logged

__all__ = ["MYSQL_DATABASE", "MYSQL_PASSWORD", "MYSQL_USER", "MariaDB"]

MYSQL_USER = "headrace"
MYSQL_PASSWORD = os.environ.get("HEADRACE_MYSQL_PASSWORD", "headrace")
MYSQL_DATABASE = "headrace"


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
        candidate = Path(d) / name
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class MariaDB(Component):
    """MariaDB server bound to 127.0.0.1 with a private socket and data dir."""

    name: str = "mariadb"
    marker: str = "mariadbd"
    start_timeout: float = 60.0

    def missing_packages(self) -> list[str]:
        if _find("mariadbd") and _find("mariadb-install-db"):
            return []
        return ["mariadb-server", "mariadb-client"]

    @property
    def socket(self) -> Path:
        sock = self.paths.run / "mariadb.sock"
        if len(str(sock)) < 100:
            return sock
        digest = hashlib.sha1(str(self.paths.root).encode()).hexdigest()[:12]  # noqa: S324
        return Path(f"/tmp/headrace-{digest}-mariadb.sock")  # noqa: S108 - unix socket path limit

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def prepare(self, log: Log) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        install_db = _find("mariadb-install-db")
        if install_db is None:
            raise StackError("mariadb-install-db not found; fix: apt-get install -y mariadb-server")
        log("initialising the MariaDB data dir (first start)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_logged(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._user_args(),
            ],
            log_file=self.paths.log_file(self.name),
            what="mariadb-install-db",
        )

    def command(self) -> list[str]:
        mariadbd = _find("mariadbd")
        if mariadbd is None:
            raise StackError("mariadbd not found; fix: apt-get install -y mariadb-server")
        return [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.paths.run / 'mariadbd.pid'}",
            *self._user_args(),
            "--skip-name-resolve",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=300",
            "--max-allowed-packet=64M",
        ]

    def _root(self) -> object:
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            password="",
            connect_timeout=3,
            autocommit=True,
        )

    def healthy(self) -> bool:
        conn = self._root()
        try:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute("SELECT 1")
                return bool(cur.fetchone()[0] == 1)
        finally:
            conn.close()  # type: ignore[attr-defined]

    def bootstrap(self, log: Log) -> None:
        import pymysql

        conn = self._root()
        try:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute("DROP USER IF EXISTS ''@'localhost'")
                cur.execute(
                    "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s",
                    (MYSQL_USER, MYSQL_PASSWORD),
                )
                cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (MYSQL_USER, MYSQL_PASSWORD))
                cur.execute(
                    "GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (MYSQL_USER,)
                )
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{MYSQL_DATABASE}`")
        finally:
            conn.close()  # type: ignore[attr-defined]
        # The health that matters to users: a TCP login with the published credentials.
        tcp = pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=MYSQL_USER,
            password=MYSQL_PASSWORD,
            database=MYSQL_DATABASE,
            connect_timeout=3,
        )
        tcp.close()

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "HEADRACE_MYSQL_HOST": "127.0.0.1",
            "HEADRACE_MYSQL_PORT": str(self.port),
            "HEADRACE_MYSQL_USER": MYSQL_USER,
            "HEADRACE_MYSQL_PASSWORD": MYSQL_PASSWORD,
            "HEADRACE_MYSQL_DATABASE": MYSQL_DATABASE,
            "HEADRACE_MYSQL_URL": f"mysql+pymysql://{MYSQL_USER}:{MYSQL_PASSWORD}"
            f"@127.0.0.1:{self.port}/{MYSQL_DATABASE}",
        }
