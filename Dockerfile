# syntax=docker/dockerfile:1
# The datasync-operator image: `docker build -t datasync-operator:0.1.0 .`
#
# Stage 1 builds the operator's wheel and the wheels of its dependencies; the final stage
# installs them offline into a clean Python and keeps nothing else: no compilers, no source,
# no pip cache, no wheels. It runs as a numeric non-root user on a read-only root filesystem
# (see the Helm chart's securityContext). tests/chart/test_dockerfile.py checks these
# properties and replays the two pip steps in clean virtualenvs.

# ---- stage 1: wheels ---------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

# ---- stage 2: runtime --------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="datasync-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages AWS DataSync task executions declaratively" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The wheels are bind-mounted from stage 1 for this step only, so none stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels datasync-operator \
    && groupadd --system --gid 10001 datasync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin datasync

USER 10001:10001
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["datasync-operator", "run"]
