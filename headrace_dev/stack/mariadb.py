"""MariaDB from Debian's packages, run in its own data dir on its own port.

The Debian package provides the binaries only: the system service is never started (see
``tools.apt_install``). ``prepare`` runs ``mariadb-install-db`` once into the stack's data dir;
``bootstrap`` creates the ``headrace`` user (all privileges, so tests can create databases) and
the ``headrace`` database.

The server writes a row-based binlog for change data capture (``type: mysql_cdc``):
``log_bin``, ``binlog_format=ROW``, ``binlog_row_image=FULL``, ``binlog_row_metadata=FULL``
(column names in the row events), ``server_id=1``, binlogs kept
``EXPIRE_LOGS_DAYS`` days; the user holds REPLICATION SLAVE, REPLICATION CLIENT and RELOAD
(inside ALL PRIVILEGES, granted explicitly too). ``log_bin`` cannot be switched on at run
time, so ``bootstrap`` restarts, once, a running server that was started without it (a
checkout from before CDC); the other settings are re-applied with ``SET GLOBAL`` every time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack import proc
from headrace_dev.stack.component import Component, Log
from headrace_dev.stack.tools import run_logged

__all__ = ["MYSQL_DATABASE", "MYSQL_PASSWORD", "MYSQL_USER", "MariaDB"]

MYSQL_USER = "headrace"
MYSQL_PASSWORD = os.environ.get("HEADRACE_MYSQL_PASSWORD", "headrace")
MYSQL_DATABASE = "headrace"
#: server id of the stack's MariaDB (a CDC reader registers with another id)
SERVER_ID = 1
#: days binlogs are kept: long enough for a CDC source stopped over a long weekend
EXPIRE_LOGS_DAYS = 7
#: the binlog settings CDC needs: (variable, value it must have, the option that sets it)
BINLOG_SETTINGS = (
    ("log_bin", "ON", "--log-bin=mariadb-bin"),
    ("binlog_format", "ROW", "--binlog-format=ROW"),
    ("binlog_row_image", "FULL", "--binlog-row-image=FULL"),
    ("binlog_row_metadata", "FULL", "--binlog-row-metadata=FULL"),
    ("server_id", str(SERVER_ID), f"--server-id={SERVER_ID}"),
    ("expire_logs_days", str(EXPIRE_LOGS_DAYS), f"--expire-logs-days={EXPIRE_LOGS_DAYS}"),
)


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
            *(option for _var, _value, option in BINLOG_SETTINGS),
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

    def _binlog_off(self) -> bool:
        """The running server was started without ``--log-bin`` (needs a restart)."""
        conn = self._root()
        try:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute("SELECT @@log_bin")
                return bool(int(cur.fetchone()[0]) == 0)
        finally:
            conn.close()  # type: ignore[attr-defined]

    def _restart(self, log: Log) -> None:
        """Stop the running server (SIGTERM: a clean InnoDB shutdown, a few seconds on the
        stack's small data) and start it again with :meth:`command`."""
        pid_file = self.paths.pid_file(self.name)
        log(
            "mariadb runs without the binlog that CDC (type: mysql_cdc) reads: restarting it "
            "once with log_bin, binlog_format=ROW, binlog_row_image=FULL (a few seconds)"
        )
        proc.stop(pid_file, timeout=60)
        proc.spawn(
            self.command(),
            pid_file=pid_file,
            log_file=self.paths.log_file(self.name),
            marker=self.marker,
            cwd=self.paths.root,
            env=self.process_env(),
        )
        if not proc.wait_until(self.healthy, timeout=self.start_timeout, interval=0.3):
            raise StackError(
                f"mariadb did not come back within {self.start_timeout:.0f}s after the restart "
                f"that enables the binlog; see {self.paths.log_file(self.name)}"
            )

    def bootstrap(self, log: Log) -> None:
        import pymysql

        if self._binlog_off():
            self._restart(log)
        conn = self._root()
        try:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute(
                    "SET GLOBAL binlog_format = 'ROW', binlog_row_image = 'FULL', "
                    "binlog_row_metadata = 'FULL', "
                    "server_id = %s, expire_logs_days = %s",
                    (SERVER_ID, EXPIRE_LOGS_DAYS),
                )
                cur.execute("DROP USER IF EXISTS ''@'localhost'")
                cur.execute(
                    "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s",
                    (MYSQL_USER, MYSQL_PASSWORD),
                )
                cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (MYSQL_USER, MYSQL_PASSWORD))
                cur.execute(
                    "GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (MYSQL_USER,)
                )
                cur.execute(
                    "GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO %s@'%%'",
                    (MYSQL_USER,),
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
