"""Quix Streams as a peer baseline of ``headrace bench stream --peer quix``: its own venv.

Quix Streams 3.28 requires ``confluent-kafka < 2.13`` and headrace runs a newer one, so it
cannot live in the project's environment. ``ensure_quix()`` builds a virtual environment
under the cache dir (``<cache>/peers/quixstreams-<version>``, see
``headrace_dev.stack.paths``) once, with this interpreter's ``venv`` and pip from PyPI, and
returns its Python. A marker file written last makes it idempotent: a half-built venv (an
interrupted install) is built again. The app it runs is ``headrace_dev/bench/quix_app.py``,
a standalone script (it imports nothing of headrace).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from headrace.errors import HeadraceError

__all__ = ["QUIX_APP", "QUIX_VERSION", "ensure_quix"]

QUIX_VERSION = "3.28.1"
QUIX_APP = Path(__file__).with_name("quix_app.py")


def ensure_quix(cache: Path, log: Callable[[str], None] = print) -> Path:
    """The Python of a venv with ``quixstreams==QUIX_VERSION``, built on first use."""
    home = cache / "peers" / f"quixstreams-{QUIX_VERSION}"
    python = home / "bin" / "python"
    marker = home / ".installed"
    if marker.is_file() and python.is_file():
        return python
    if home.exists():
        shutil.rmtree(home)
    log(f"bench: building the Quix Streams {QUIX_VERSION} peer venv in {home} (once)")
    home.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(home)],
        [str(python), "-m", "pip", "install", "--quiet", f"quixstreams=={QUIX_VERSION}"],
    ]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HeadraceError(
                f"bench --peer quix: {' '.join(argv[-3:])} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-500:]}; the peer needs PyPI "
                f"(quixstreams=={QUIX_VERSION}); remove {home} to retry from scratch"
            )
    marker.write_text(QUIX_VERSION + "\n")
    return python
