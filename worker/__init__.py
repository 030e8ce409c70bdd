"""The worker runtime and the `rediswq` command line (built on rediswq's public API only)."""
