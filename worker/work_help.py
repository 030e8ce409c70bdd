"""The help of `rediswq work` beyond its options: modes, stopping, outages, exit codes.

Shown by `rediswq work --help`, from which the README's CLI reference is generated (tests/clidoc.py).
"""

EPILOG = """\b
Command mode (rediswq work QUEUE -- COMMAND [ARG]...):
  Each item runs COMMAND in a new session, with the payload on standard
  input and in place of every {} in the arguments (as UTF-8; bytes that are
  not UTF-8 pass through unchanged; an item whose payload has a NUL byte,
  or is too long for an argument (exec fails with "Argument list too long":
  128 KiB on Linux), is dead-lettered at once: read such payloads from
  standard input instead of {}). Its environment adds
  REDISWQ_QUEUE, REDISWQ_ITEM_ID and REDISWQ_ATTEMPT (1 on the first lease).
  The item gets no Redis credentials: REDISWQ_URL, REDIS_URL, REDIS_PASSWORD,
  REDISCLI_AUTH, REDISWQ_TLS_KEY, REDISWQ_SENTINEL_PASSWORD and any variable
  holding the URL, its password or the sentinels' password are dropped from
  its environment (and from os.environ, in handler mode); --pass-env NAME
  passes one on. Nor can it read the worker's: the worker is non-dumpable
  (its /proc/PID/environ and memory are closed to its own user) and
  overwrites the password in its command line and environment blocks. A
  handler runs in the worker's process and can reach all it holds.
  Exit status 0 completes the item; anything else fails it (retried after a
  backoff, dead-lettered once --max-attempts are spent), with the exit
  status and the last 2000 bytes of its standard error kept as the error.
  Its standard output and standard error pass through to the worker's. Put
  -- before COMMAND so its options are not taken for the worker's.

\b
  A payload is data, never code: no shell runs between it and COMMAND. Do
  not put {} inside a shell script string (sh -c 'convert {}' pastes the
  payload in as shell code: an item `x; rm -rf ~` runs rm); pass it as an
  argument of the script, or read it from standard input:
    rediswq work jobs -- sh -c 'convert -- "$1" out/' _ {}
    rediswq work jobs -- sh -c 'read -r f; convert -- "$f" out/'
  (the worker warns at start when a sh -c or bash -c script holds {}). A
  payload starting with - would be taken for an option by most programs:
  put -- before {} when COMMAND accepts it (e.g. rm -- {}).

\b
Handler mode (rediswq work QUEUE --handler package.module:function):
  Calls function(lease) for each item (a rediswq.Lease, not the payload) in
  one of --concurrency threads; the
  current directory is searched for the module while it is imported, then
  taken off sys.path (an import inside the handler never finds a file that
  lies in the current directory). lease.payload is the
  item (bytes); lease.id, lease.attempt too. Returning completes the item,
  raising fails it with the exception's type, message and traceback.

\b
Items that run long, and broken handlers:
  An item running longer than --warn-after gets a warning line once per
  lease period. With --item-timeout, an overrunning command's process group
  is killed; a handler gets TimeLimitExceeded (a BaseException) raised in
  its thread, which reaches Python code but not a call blocked in C (one
  long sleep, a socket read without a timeout). Either way the item fails
  ("time limit of N s exceeded") and the worker goes on. A handler still
  running 2 s after its limit cannot be stopped: its lease is no longer
  renewed, the item is failed (an attempt charged), and the worker stops as
  on SIGTERM with exit 5, for the pod to be replaced. A leased item never
  waits for a busy slot longer than half of --lease-secs: it is given back
  (no attempt charged) for another worker to run. Once the last
  --stop-after-failures items all failed with the same error, the worker
  stops as on SIGTERM with exit 6: those items were charged one attempt,
  those failing alike meanwhile in other slots are given back.

\b
Leases and stopping:
  Leases are renewed every third of --lease-secs while their items run, so a
  short lease is safe: it is how long a dead pod's items wait before another
  worker takes them over. On SIGTERM or SIGINT the worker leases nothing
  more, gives back items it has not started, lets running ones finish for up
  to --grace-secs, then kills them (their whole process group) and gives
  them back: no attempt is charged. A second signal ends the grace period at
  once. The worker is gone within --grace-secs + 3 s of the first signal,
  even if Redis stops answering: set the Pod's terminationGracePeriodSeconds
  to at least that. A leased item waiting its turn is started only while its
  lease has time left on the worker's own clock (at least 1 s, or a quarter
  of --lease-secs if less): a worker that was frozen past that point (SIGSTOP,
  a paused node) gives the item back instead of running it a second time
  beside the worker that took its expired lease over.

\b
Redis outages:
  Every Redis call waits at most a third of --lease-secs for a reply (at
  least 0.5 s, at most 30 s), so a stalled Redis is noticed before leases
  run out. A dropped connection that the next try opens again is logged only
  with -v; an outage (a call that timed out, or a second failure in a row)
  is logged once when noticed and once when Redis answers again. Calls are
  retried for up to --reconnect-secs, backing off from 0.1 s to a sixth of
  --lease-secs (at most 5 s), so renewals resume before leases run out.

\b
Progress and waiting:
  Every --progress-secs (30 s) a line says this run's done and failed, the
  items running, the rate since the last line, the queue's pending and
  leased (one Redis call), and what the worker waits for when it has
  nothing to run: "waiting for the queue to be closed", "waiting for 2
  items leased by other workers", "waiting for 3 retries due in 12 s".
  With --until closed a queue that is never closed would keep the worker
  waiting for ever: --max-wait SECS ends it with exit 7 once it held and
  leased nothing for that long and the queue is still open and empty
  (nothing pending, leased or delayed).

\b
Summary:
  At exit one line says what this run did (done, failed, dead-lettered,
  given back, lost) and, once the queue drained, how many dead letters the
  queue holds (see `rediswq dead list QUEUE`).

\b
Exit codes:
  0  the queue is drained: nothing pending, delayed or leased by any worker
     (with --until closed: and closed). A worker with nothing left to lease
     waits while others hold leases, and takes over any that expire, so 0
     means the whole queue is done.
  1  runtime error: Redis unreachable for --reconnect-secs, Redis answered
     with an error, or the queue's state vanished while it ran
  2  usage or configuration error: bad option, URL or password, handler not
     importable, command not found, no such queue (nothing was ever added
     to it: --until closed waits for a producer)
  3  stopped before the queue drained: --max-items reached, SIGTERM or
     SIGINT
  4  the queue drained, but it holds dead letters (items that spent their
     attempts, whichever worker ran them); --allow-dead exits 0 instead
  5  an item overran --item-timeout and its handler thread could not be
     stopped: replace the pod (the item was charged an attempt)
  6  the last --stop-after-failures items all failed with the same error
     (a broken handler or command): stopped early
  7  --until closed with --max-wait: nothing to lease for that long and
     the queue is still open and empty (its producer is missing)
"""

__all__ = ["EPILOG"]
