"""`python -m worker` runs the `rediswq` command (what the demo uses to start worker processes)."""

from worker.cli import main

main()
