"""`python -m rediswq_cli` runs the `rediswq` command (what the demo uses to start worker processes)."""

from rediswq_cli.main import main

main()
