"""The handler of the failover tests' workers (`--handler helpers_topology_handler:handle`).

Each item's payload is appended, one a line, to $REDISWQ_TEST_LOG.<pid>: the test reads every
worker's file to count items processed, lost and redone. A short sleep keeps the drain going long
enough for the test to kill a master or move a slot in the middle of it.
"""

from __future__ import annotations

import os
import time

from rediswq import Lease

_log = None


def handle(lease: Lease) -> None:
    global _log
    if _log is None:
        _log = open(f"{os.environ['REDISWQ_TEST_LOG']}.{os.getpid()}", "ab", buffering=0)  # noqa: SIM115
    time.sleep(0.002)
    _log.write(lease.payload + b"\n")
