"""Runs a Supervisor over trivial children, for tests/test_supervisor.py.

Usage: python -m tests.supervisor_harness DIR CHILDREN [CRASH_INDEX]

Each child appends "<index> <pid> <monotonic time>" to DIR/starts when it
starts, then waits for SIGTERM and exits 0. The child CRASH_INDEX exits
with status 3 right after recording its start, to exercise the back-off.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from phizer.process.listeners import Listener
from phizer.process.supervisor import Supervisor


def main() -> int:
    directory, children = sys.argv[1], int(sys.argv[2])
    crash_index = int(sys.argv[3]) if len(sys.argv) > 3 else -1

    def child_main(index: int, listener: Listener) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        with open(os.path.join(directory, "starts"), "a") as log:
            log.write(f"{index} {os.getpid()} {time.monotonic()}\n")
        if index == crash_index:
            return 3
        signal.sigwait({signal.SIGTERM})
        return 0

    listeners = [Listener("127.0.0.1", 0, hold_while_down=True) for _ in range(children)]
    for listener in listeners:
        listener.open()
    return Supervisor(listeners, child_main, stop_grace=5.0).run()


if __name__ == "__main__":
    raise SystemExit(main())
