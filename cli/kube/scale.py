"""`rediswq job scale --auto`: keep a worker Job's parallelism matched to its queue.

The rule, evaluated every --interval seconds until the Job finishes:

    parallelism = max(clamp(ceil(outstanding / items_per_pod), min, max), pods holding leases)

`outstanding` is pending + delayed (waiting for a retry) + leased (being worked on right now);
`pods holding leases` counts the Job's live pods that hold at least one lease (`Queue.holders()` names
the worker of every live lease, and a worker's name is its pod's name, from the Downward API).

Why the floor: lowering a Job's parallelism makes the Job controller delete active pods, and it does not
know which ones are half-way through an item. A pod holding a lease would get SIGTERM, give its leases
back and exit; the work it did on them is lost and redone. So the scaler never asks for fewer pods
than hold leases: as the queue drains, pods go when they have nothing left, not mid-item.

How this differs from KEDA (k8s/components/keda): KEDA reads one number, the exporter's `waiting`
(`pending`, from GET /queues/NAME). It cannot see items that are leased (in flight in some pod) or
delayed (waiting for a retry), because they are not in that count. Near the end of a run it is 0 while
pods are still working, KEDA computes zero and scales the workload down, killing pods that still hold
work; delayed retries are invisible to it until they come back. This scaler reads `Queue.stats()`
(pending, delayed and leased together) and `Queue.holders()`, so in-flight work keeps its pods.
It also patches the existing Job's `parallelism` (a mutable field) instead of starting new Jobs, as
KEDA's ScaledJob does, so one Job with one podFailurePolicy and one backoffLimit drains the queue.

Once any pod of the Job has exited 0 (the queue was drained), the Job controller starts no new pods
whatever the parallelism says; scaling up then has no effect, and the Job completes as its pods end.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

import rediswq
from rediswq_cli.kube.cluster import Cluster

# A worker name names its pod as a whole token: "pod", "pod:1234", "1234@pod", "pod/2".
_TOKEN_SEPARATORS = re.compile(r"[:/@\s]+")


def desired_parallelism(
    outstanding: int, holding: int, items_per_pod: int, minimum: int, maximum: int
) -> int:
    """ceil(outstanding / items_per_pod) bounded by minimum..maximum, and never below `holding`."""
    wanted = math.ceil(outstanding / items_per_pod) if outstanding > 0 else 0
    return max(min(max(wanted, minimum), maximum), holding)


def holding_pods(holders: list[rediswq.LeaseInfo], pods: set[str] | None) -> set[str]:
    """The pods (of `pods`) whose workers hold leases; with `pods` unknown, every distinct worker."""
    if pods is None:
        return {h.worker for h in holders if h.worker}
    held = set()
    for h in holders:
        for token in _TOKEN_SEPARATORS.split(h.worker):
            if token in pods:
                held.add(token)
    return held


def live_pods(cluster: Cluster, job_name: str) -> set[str] | None:
    """Names of the Job's pods that have not ended; None if we may not list pods (RBAC)."""
    try:
        listing = cluster.core.list_namespaced_pod(
            cluster.namespace,
            label_selector=f"job-name={job_name}",
            _request_timeout=cluster.request_timeout_secs,
        )
    except ApiException as e:
        if e.status == 403:
            return None
        raise
    return {name for pod in listing.items or [] if (name := _live_pod_name(pod, job_name))}


def _live_pod_name(pod: client.V1Pod, job_name: str) -> str | None:
    """The name of a pod of the Job that has not ended; None for any other pod."""
    meta = pod.metadata
    # The label checked again: the selector is the server's, this is ours.
    if meta is None or not meta.name or (meta.labels or {}).get("job-name") != job_name:
        return None
    ended = pod.status is not None and pod.status.phase in ("Succeeded", "Failed")
    return None if ended else str(meta.name)


@dataclass(frozen=True)
class Decision:
    """One look at the queue and the Job, and the parallelism it calls for."""

    current: int
    wanted: int
    outstanding: int
    holding: int
    pods_known: bool

    def describe(self, items_per_pod: int, minimum: int, maximum: int) -> str:
        change = (
            f"parallelism {self.current} -> {self.wanted}"
            if self.wanted != self.current
            else f"parallelism stays {self.current}"
        )
        holders = "pods hold leases" if self.pods_known else "workers hold leases (pods not listable)"
        return (
            f"{change}: {self.outstanding} outstanding / {items_per_pod} per pod, "
            f"bounds {minimum}..{maximum}, {self.holding} {holders}"
        )


def decide(
    cluster: Cluster,
    job: client.V1Job,
    queue: rediswq.Queue,
    items_per_pod: int,
    minimum: int,
    maximum: int,
) -> Decision:
    stats = queue.stats()
    holders = queue.holders(count=stats.leased + 100)
    name = str(job.metadata.name) if job.metadata and job.metadata.name else ""
    pods = live_pods(cluster, name)
    holding = len(holding_pods(holders, pods))
    current = int(job.spec.parallelism or 0) if job.spec else 0
    wanted = desired_parallelism(stats.outstanding, holding, items_per_pod, minimum, maximum)
    return Decision(current, wanted, stats.outstanding, holding, pods is not None)


def apply(cluster: Cluster, name: str, parallelism: int) -> None:
    cluster.batch.patch_namespaced_job(
        name,
        cluster.namespace,
        {"spec": {"parallelism": parallelism}},
        _request_timeout=cluster.request_timeout_secs,
    )
