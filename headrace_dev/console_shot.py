"""Open the headrace console in headless Chromium: what each panel shows, and a PNG of it.

``screenshot(url, path)`` loads the console (``/consoles/headrace.html``, served by the local
stack's Prometheus) twice in Debian's ``chromium``: once to read the DOM after the page's
JavaScript ran (each panel's ``data-state``: ``data``, ``empty`` with its explicit text, or
``error``), once to save the screenshot. Chromium's virtual time (``--virtual-time-budget``)
lets the page's queries finish before either is taken; the page marks ``<body
data-headrace-ready="1">`` once every graph settled. Used by the browser test and by the chaos
runner (one screenshot per fault episode). ``ensure_chromium()`` installs the Debian package
the first time (a test dependency only; not needed to run headrace).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack.paths import StackPaths
from headrace_dev.stack.tools import Log, apt_install

__all__ = [
    "ConsoleView",
    "console_link",
    "ensure_chromium",
    "find_chromium",
    "read_console",
    "screenshot",
]

#: flags that work as root in a container: no sandbox, no GPU, nothing phoning home
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


@dataclass
class ConsoleView:
    """What the console showed: ``states`` maps each panel key to ``data``, ``empty``,
    ``error`` or ``loading`` (never settled); ``empty_texts`` the explicit text of each panel
    shown empty; ``ready`` whether every panel settled; ``screenshot`` the PNG (if taken)."""

    states: dict[str, str] = field(default_factory=dict)
    empty_texts: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    screenshot: Path | None = None

    def summary(self) -> str:
        """One line per panel: ``key: state (text)``, for assertion messages."""
        return "\n".join(
            f"{key}: {state}" + (f" ({self.empty_texts[key]})" if key in self.empty_texts else "")
            for key, state in self.states.items()
        )


def console_link(
    prometheus_url: str,
    *,
    pipeline: str | None = None,
    duration: float | None = None,
    end: float | None = None,
) -> str:
    """The console's URL on ``prometheus_url``: only ``pipeline``'s processes (a regular
    expression; default all), graphs over the last ``duration`` seconds (default the
    console's hour), ending at ``end`` (Unix seconds; default now). A fault episode's
    screenshot: ``duration`` from before the fault to after the recovery, ``end`` after it."""
    url = prometheus_url.rstrip("/") + "/consoles/headrace.html"
    if pipeline:
        url += "?" + urllib.parse.urlencode({"pipeline": pipeline})
    if duration is not None or end is not None:
        # the console library's time control reads its range from this fragment
        window = {"duration": int(duration or 3600), "endTime": end or 0}
        url += "#pctc" + urllib.parse.quote(json.dumps(window, separators=(",", ":")))
    return url


def find_chromium() -> str | None:
    """Path of Debian's ``chromium`` (or another Chromium on PATH), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(log: Log = print, paths: StackPaths | None = None) -> str:
    """Chromium's path, installing Debian's ``chromium`` with the stack's apt mechanism the
    first time (its output goes to the stack's install log). StackError when that fails."""
    found = find_chromium()
    if found:
        return found
    stack = paths or StackPaths.from_env()
    stack.ensure()
    apt_install(["chromium"], log_file=stack.log_file("install"), log=log)
    found = find_chromium()
    if found is None:
        raise StackError(
            "chromium is still not on PATH after apt-get install chromium; see "
            f"{stack.log_file('install')}; fix: apt-get install -y chromium"
        )
    return found


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise StackError(
            "chromium not found (needed to open the console); fix: apt-get install -y "
            "chromium, or call headrace_dev.console_shot.ensure_chromium()"
        )
    with tempfile.TemporaryDirectory(prefix="headrace-chromium-") as profile:
        cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"chromium did not finish within {timeout:.0f}s: {cmd}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-10:])
        raise StackError(f"chromium exited {result.returncode}: {cmd}\n{tail}")
    return result


class _Panels(HTMLParser):
    """Reads the panels' ids, states, titles and shown empty texts out of the console DOM."""

    def __init__(self, view: ConsoleView) -> None:
        super().__init__()
        self.view = view
        self._panel: str | None = None
        self._capture: str | None = None  # "title" | "empty"
        self._empty_shown = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.view.ready = a.get("data-headrace-ready") == "1"
        elif "headrace_panel" in classes and (a.get("id") or "").startswith("panel-"):
            self._panel = (a.get("id") or "")[len("panel-") :]
            self.view.states[self._panel] = a.get("data-state") or "?"
        elif self._panel and tag == "h3":
            self._capture, self._text = "title", []
        elif self._panel and "headrace_empty" in classes:
            self._capture, self._text = "empty", []
            self._empty_shown = "display: none" not in (a.get("style") or "")

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self._capture or tag not in ("h3", "div") or self._panel is None:
            return
        text = " ".join("".join(self._text).split())
        if self._capture == "title":
            self.view.titles[self._panel] = text
        elif self._empty_shown:
            self.view.empty_texts[self._panel] = text
        self._capture = None


def read_console(url: str, *, wait: float = 15.0, timeout: float = 60.0) -> ConsoleView:
    """Load ``url`` in headless Chromium, let its queries finish (up to ``wait`` seconds of
    the page's virtual time) and read every panel's state from the resulting DOM."""
    result = _chromium([f"--virtual-time-budget={int(wait * 1000)}", "--dump-dom", url], timeout)
    view = ConsoleView()
    parser = _Panels(view)
    parser.feed(result.stdout)
    parser.close()
    if not view.states:
        raise StackError(
            f"{url} shows no headrace panels (is it the headrace console? is Prometheus "
            f"started with --web.console.templates?); page starts: {result.stdout[:300]!r}"
        )
    return view


def screenshot(
    url: str,
    path: Path,
    *,
    width: int = 1400,
    height: int = 4200,
    wait: float = 15.0,
    timeout: float = 60.0,
) -> ConsoleView:
    """Save a PNG of the console at ``url`` to ``path`` (folders created) and return what
    each panel showed. Raises StackError when Chromium is missing or fails, or when the
    page is not the console."""
    view = read_console(url, wait=wait, timeout=timeout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _chromium(
        [
            f"--virtual-time-budget={int(wait * 1000)}",
            f"--window-size={width},{height}",
            f"--screenshot={path.resolve()}",
            url,
        ],
        timeout,
    )
    if not path.is_file() or path.stat().st_size == 0:
        raise StackError(f"chromium wrote no screenshot to {path} for {url}")
    view.screenshot = path
    return view
