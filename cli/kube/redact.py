"""What `job submit --dry-run` must not print: secret-looking values of the containers' environment.

A dry run's output ends up in terminals, CI logs and pull requests. A value is hidden when its
variable's name says it is a secret (PASSWORD, TOKEN, SECRET, KEY ...), or when it is a URL with a
password or a secret query parameter. A Kubernetes reference `$(NAME)` is no secret (the kubelet
fills it in from another variable, e.g. a Secret's), so a value made of references only is shown:
`redis://:$(REDIS_PASSWORD)@redis:6379/0` stays as it is.
"""

from __future__ import annotations

import re
from typing import Any

from rediswq.urls import redact

#: Words in a variable's name that mark its value as a secret (PASSWD, PASSPHRASE, API_KEY, AUTH_TOKEN
#: ...). Broad on purpose: a dry run that hides a harmless value costs a look at the flag.
SECRET_NAME_WORDS = ("PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "SECRET", "KEY", "AUTH", "CREDENTIAL")
HIDDEN = "***"

_REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_.-]*\)")


def shown_value(name: str, value: str) -> str:
    """`value` as a dry run may print it: `***`, the URL redacted, or as it is."""
    plain = _REFERENCE.sub("", value)
    if not plain:
        return value
    if any(word in name.upper() for word in SECRET_NAME_WORDS):
        return HIDDEN
    if "://" in plain and redact(plain) != plain:
        return redact(value)
    return value


def redact_containers(job: dict[str, Any]) -> None:
    """Hide, in place, the secret-looking `value`s of every container's `env` in a Job's JSON."""
    pod = job.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for variable in container.get("env", []):
            if isinstance(variable.get("value"), str):
                variable["value"] = shown_value(variable.get("name", ""), variable["value"])
