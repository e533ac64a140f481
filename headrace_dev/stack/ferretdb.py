"""FerretDB 1.x (MongoDB wire protocol over SQLite), built from its Go module, patched.

A plain ``go install`` of the module builds a binary that panics at start because the module
lacks ``build/version/version.txt`` (FerretDB#2982), so we copy the module source out of the
Go module cache, write that file, apply ``ferretdb_patches`` (the SQLite backend otherwise
scans the whole collection on every update and hangs on big update commands) and build
``./cmd/ferretdb`` into the cache dir. ``buildInfo`` reports ``ferretdbVersion`` as
``FERRETDB_BUILD`` (e.g. ``v1.24.2-headrace.1``), so clients can tell the patched build.

SQLite runs with ``synchronous=OFF`` (WAL journal): a killed FerretDB loses nothing, an
operating-system crash may; it is a local test stack, and this makes upserts ~1.6x faster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack.component import Component, Log
from headrace_dev.stack.ferretdb_patches import PATCH_LEVEL, apply_patches
from headrace_dev.stack.tools import require_tool, run_logged

__all__ = ["FERRETDB_BUILD", "FERRETDB_VERSION", "FerretDB"]

FERRETDB_VERSION = "v1.24.2"
#: what our build reports as ``ferretdbVersion`` (upstream version + patch level)
FERRETDB_BUILD = f"{FERRETDB_VERSION}-{PATCH_LEVEL}"
_MODULE = "github.com/FerretDB/FerretDB"


@dataclass
class FerretDB(Component):
    """FerretDB (patched) with the SQLite backend, data under the stack's data dir."""

    name: str = "ferretdb"
    marker: str = "ferretdb"
    start_timeout: float = 60.0

    @property
    def binary(self) -> Path:
        return self.paths.cache / f"ferretdb-{FERRETDB_BUILD}" / "ferretdb"

    def install(self, log: Log) -> None:
        if self.binary.exists():
            return
        go = require_tool(
            "go",
            "building FerretDB from its Go module",
            "install Go 1.24+ (https://go.dev/doc/install) or apt-get install golang",
        )
        log(f"building FerretDB {FERRETDB_BUILD} from its Go module (first time only, ~2 min)")
        env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
        install_log = self.paths.log_file("install")
        out = subprocess.run(
            [go, "mod", "download", "-json", f"{_MODULE}@{FERRETDB_VERSION}"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
        try:
            info = json.loads(out.stdout)
        except json.JSONDecodeError:
            info = {}
        if out.returncode != 0 or "Dir" not in info:
            raise StackError(
                f"go mod download {_MODULE}@{FERRETDB_VERSION} failed: "
                f"{info.get('Error') or out.stderr.strip()[-300:]}; fix: check GOPROXY reaches "
                "the Go module proxy"
            )
        build = self.binary.parent
        src = build / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(info["Dir"], src)
        for p in src.rglob("*"):
            p.chmod(p.stat().st_mode | 0o200)
        (src / "build" / "version" / "version.txt").write_text(FERRETDB_BUILD + "\n")
        apply_patches(src)
        tmp = build / "ferretdb.tmp"
        run_logged(
            [go, "build", "-o", str(tmp), "./cmd/ferretdb"],
            log_file=install_log,
            what=f"go build FerretDB {FERRETDB_BUILD}",
            cwd=src,
            env=env,
        )
        tmp.rename(self.binary)
        shutil.rmtree(src, ignore_errors=True)

    def prepare(self, log: Log) -> None:
        (self.data_dir / "sqlite").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "state").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir / 'sqlite'}/?_pragma=synchronous(off)",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.data_dir / 'state'}",
            "--telemetry=disable",
            "--debug-addr=-",
            "--log-level=WARN",
        ]

    def outdated(self, argv: list[str]) -> str | None:
        if argv and argv[0] != str(self.binary):
            return f"it runs {argv[0]}, not the build {FERRETDB_BUILD} ({self.binary})"
        return None

    def healthy(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient[dict[str, object]] = MongoClient(
            self.endpoint(), serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )
        try:
            return bool(client.admin.command("ping").get("ok"))
        finally:
            client.close()

    def endpoint(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"HEADRACE_MONGO_URI": self.endpoint()}
