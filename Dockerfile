# syntax=docker/dockerfile:1
#
# jobstream worker image.
#
#   docker build -t jobstream .
#   docker run --rm -e JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092 \
#     -e JOBSTREAM_SCHEMA_DIRS='["/app/examples/schemas"]' jobstream worker --app examples.demo_jobs
#
# Two stages: the builder has a compiler (for any dependency that ships no wheel)
# and installs everything into a virtualenv; the runtime stage copies only that
# virtualenv, so no compiler, headers or pip caches end up in the final image.
# Service images extend this one: `FROM jobstream` + `COPY myservice /app/myservice`
# (/app is on PYTHONPATH) and run `worker --app myservice.jobs` with their schema_dirs.

ARG PYTHON_IMAGE=python:3.11-slim

########################################################################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Build tools for source-only dependencies. Not version-pinned on purpose: this
# stage is thrown away, and Debian drops old package revisions from its mirrors,
# so exact pins would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first (pinned, with hashes where the lock has them): this layer
# is reused as long as requirements.lock does not change.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# Then the project itself, without touching the pinned dependency set.
# .dockerignore keeps tests, the chart, VCS data and caches out of the context.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv

########################################################################
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="jobstream" \
      org.opencontainers.image.description="Kafka background-job worker" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes and
# the venv was byte-compiled in the builder. PYTHONUNBUFFERED: logs reach
# `docker logs` / kubectl immediately. PYTHONPATH=/app: where service code and
# the demo app live. HTTP on 0.0.0.0: 127.0.0.1 (the app default) would make
# /metrics and the probes unreachable from outside the container.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    JOBSTREAM_WORKER__HTTP_HOST=0.0.0.0

# A fixed, non-root uid/gid (10001) that the Helm chart's securityContext expects.
RUN groupadd --system --gid 10001 jobstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin jobstream

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The demo job module (`--app examples.demo_jobs`) and its schemas (examples/schemas), used
# by docker-compose and the chart's default values. Owned by root: the worker never writes here.
COPY examples ./examples

USER 10001:10001

EXPOSE 9400

ENTRYPOINT ["jobstream"]
CMD ["worker"]
