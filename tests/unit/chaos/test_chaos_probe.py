"""The chaos runner's Kafka probe survives its client dying: a librdkafka abort in the probe
(seen once during a broker restart, it took the whole runner down) ends only the probe's
child process; that reading is None with the reason, and the next one starts a new child."""

from __future__ import annotations

import os
import signal
import threading
import time

from headrace_dev.chaos.probe import Progress


def test_a_child_killed_mid_read_costs_one_reading() -> None:
    # nothing listens on port 1: a reading takes seconds to fail, time enough to kill it
    progress = Progress("127.0.0.1:1", "shop.", ("headrace-shop",))
    try:
        progress._connection()
        child = progress._child
        assert child is not None
        killer = threading.Timer(1.5, os.kill, (child.pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        assert progress.read() is None
        killer.join()
        assert time.monotonic() - started < 30
        assert progress.last_error is not None
        assert "probe process failed" in progress.last_error
        assert progress.read() is None  # a new child: Kafka is still unreachable, it says so
        assert progress._child is not None and progress._child.pid != child.pid
        assert progress.last_error is not None
        assert "Broker transport failure" in progress.last_error
    finally:
        progress.close()
