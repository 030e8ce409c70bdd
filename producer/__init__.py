"""The enqueue side of the `rediswq` command line (built on rediswq's public API only)."""
