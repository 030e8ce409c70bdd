# The rediswq worker image: `rediswq work` as the entrypoint, run as a non-root user.
#
# Use it as it is, with the queue and an item command as the Job's container args:
#     args: ["jobs", "--", "sh", "-c", "process-one \"$1\"", "item", "{}"]
# or build FROM it with your own handler, then run `--handler yourmodule:handle`:
#     FROM rediswq-worker
#     USER root
#     RUN /opt/rediswq/bin/pip install --no-cache-dir yourpackage==1.2.3
#     USER 10001:10001
#
# BASE must provide python3 with the venv module (and its bundled pip). The default, the public slim
# Python image, does; so does Debian with the python3 and python3-venv packages, which is what the
# tests build from where no registry is reachable:
#     podman build --build-arg BASE=localhost/debian-python:bookworm --network=host -t rediswq-worker .
# The build stage fetches the dependencies from PyPI; the final stage installs the wheels it made
# without any network, so neither pip's cache nor a compiler ends up in the image.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/build
COPY pyproject.toml README.md ./
COPY rediswq/ rediswq/
COPY producer/ producer/
COPY worker/ worker/
COPY k8s/ k8s/
# The rediswq wheel first, then a wheel of every dependency it pins, so the final stage needs no index.
RUN /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/build/bin/pip wheel --wheel-dir /wheels /wheels/rediswq-*.whl

FROM ${BASE}
ENV PATH=/opt/rediswq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The wheels are bind-mounted from the build stage for this one step, so no copy of them stays in a layer.
# pip compiles the bytecode at install time, so a read-only root filesystem costs nothing at start-up.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/rediswq \
    && /opt/rediswq/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/rediswq-*.whl \
    && rediswq --version
# A numeric UID, so Kubernetes can check `runAsNonRoot` against the image without a passwd lookup.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/rediswq --shell /usr/sbin/nologin rediswq
USER 10001:10001
WORKDIR /home/rediswq
ENTRYPOINT ["rediswq", "work"]
CMD ["--help"]
