# The rediswq worker image: `rediswq work` as the entrypoint, run as a non-root user.
#
# Use it as it is, with the queue and an item command as the Job's container args:
#     args: ["jobs", "--", "sh", "-c", "process-one \"$1\"", "item", "{}"]
# or build FROM it with your own handler, then run `--handler yourmodule:handle` (the working
# directory, /home/rediswq, is searched first for the module):
#     FROM rediswq-worker
#     USER root
#     RUN /opt/rediswq/bin/pip install --no-cache-dir yourdependency==1.2.3
#     USER 10001:10001
#     COPY yourmodule.py ./
#
# BASE must provide python3 (3.11: requirements/*.txt pin CPython 3.11 wheels by hash) with the venv
# module (and its bundled pip). The default, the public slim Python 3.11 image, does; so does Debian 12
# with the python3 and python3-venv packages, which is what the tests build from where no registry is
# reachable:
#     podman build --build-arg BASE=localhost/debian-python:bookworm --network=host -t rediswq-worker .
# The build stage fetches the dependencies from PyPI (with the host's network: `--network=host` for a
# podman build), each pinned with its sha256 in requirements/image.txt and requirements/build.txt
# (written by requirements/lock.py), so a changed or substituted file fails the build instead of
# entering the image; it builds the rediswq wheel and installs it into a venv, /opt/rediswq; the final
# stage copies that venv alone, so no sources, wheels, pip cache or compiler end up in the image.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/rediswq && python3 -m venv /opt/build
# The dependencies first, from the hashed lists alone, so this slow layer is reused until they change.
# dumb-init (its PyPI wheel carries the binary) is the image's PID 1: item commands that leave
# background processes behind would otherwise leave a zombie each (`rediswq work` as PID 1 does not
# reap orphans), and a long run would exhaust the pod's pids. It forwards signals to the worker.
# setuptools and wheel (build.txt) go into a venv of their own that builds the wheel, not the image.
# image.txt holds the metrics extra too (prometheus_client: `rediswq work --metrics-port`, `rediswq exporter`).
WORKDIR /deps
COPY requirements/image.txt requirements/build.txt ./
RUN /opt/rediswq/bin/pip install --require-hashes --only-binary :all: -r image.txt \
    && /opt/build/bin/pip install --require-hashes --only-binary :all: -r build.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rediswq/ rediswq/
COPY producer/ producer/
COPY worker/ worker/
COPY kit/ kit/
COPY cli/ cli/
COPY k8s/ k8s/
# No build isolation: the wheel is built with build.txt's pinned setuptools, not whatever PyPI serves.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/rediswq/bin/pip install --no-deps --no-index /wheels/rediswq_k8s-*.whl \
    && /opt/rediswq/bin/pip check

FROM ${BASE}
ENV PATH=/opt/rediswq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# COPY, not a bind mount of the build stage: COPY --from is checked by content, so a changed source never
# reuses a stale cached layer (buildah 1.28 reuses a RUN --mount=from= step even when the stage changed).
# pip compiled the bytecode at install time, so a read-only root filesystem costs nothing at start-up.
COPY --from=build /opt/rediswq /opt/rediswq
# A numeric UID, so Kubernetes can check `runAsNonRoot` against the image without a passwd lookup.
# dumb-init (PID 1) holds the container's environment, Redis password included: executable but not
# readable by the worker's user, it runs non-dumpable (the kernel's rule for unreadable programs), so
# an item cannot read its /proc/1/environ (the worker closes its own; docs/security.md).
RUN rediswq --version \
    && chmod 0711 "$(command -v dumb-init)" \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/rediswq --shell /usr/sbin/nologin rediswq
USER 10001:10001
WORKDIR /home/rediswq
ENTRYPOINT ["dumb-init", "--", "rediswq", "work"]
CMD ["--help"]
