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
# BASE must provide python3 with the venv module (and its bundled pip). The default, the public slim
# Python image, does; so does Debian with the python3 and python3-venv packages, which is what the
# tests build from where no registry is reachable:
#     podman build --build-arg BASE=localhost/debian-python:bookworm --network=host -t rediswq-worker .
# The build stage fetches the dependencies from PyPI (with the host's network: `--network=host` for a
# podman build), builds the rediswq wheel and installs both into a venv, /opt/rediswq; the final stage
# copies that venv alone, so no sources, wheels, pip cache or compiler end up in the image.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/rediswq
# The dependencies first, resolved from pyproject.toml alone (empty package folders stand in for the
# sources), so this slow layer is reused until pyproject.toml changes. Build with --no-cache to pick
# up newer releases within the pinned ranges.
WORKDIR /deps
COPY pyproject.toml ./
# dumb-init (its PyPI wheel carries the binary) is the image's PID 1: item commands that leave
# background processes behind would otherwise leave a zombie each (`rediswq work` as PID 1 does not
# reap orphans), and a long run would exhaust the pod's pids. It forwards signals to the worker.
RUN mkdir -p rediswq/lua producer worker k8s \
    && touch README.md \
    && /opt/rediswq/bin/pip install . dumb-init==1.2.5.post1 \
    && /opt/rediswq/bin/pip uninstall --yes rediswq
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rediswq/ rediswq/
COPY producer/ producer/
COPY worker/ worker/
COPY k8s/ k8s/
RUN /opt/rediswq/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/rediswq/bin/pip install --no-deps --no-index /wheels/rediswq-*.whl \
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
RUN rediswq --version \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/rediswq --shell /usr/sbin/nologin rediswq
USER 10001:10001
WORKDIR /home/rediswq
ENTRYPOINT ["dumb-init", "--", "rediswq", "work"]
CMD ["--help"]
