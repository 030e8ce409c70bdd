"""The handler of the sharded failover tests' workers (`--handler helpers_shard_handler:handle`).

Each item's payload is appended, one a line, to $REDISWQ_TEST_LOG.<pid>, as helpers_topology_handler
does, with a shorter sleep: the sharded drain is 30,000 items.
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
    _log.write(lease.payload + b"\n")
    time.sleep(0.0002)  # a drain of 30,000 a few seconds long: long enough to kill things in it
