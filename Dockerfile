# neuron-service image. Works with the classic builder (DOCKER_BUILDKIT=0) as well as BuildKit:
# no RUN --mount, no heredocs, no COPY --chmod. Any Python 3.11+ base with pip in PATH will do;
# CI builds on a local Debian bookworm base (deploy/scripts/base-image.sh).
ARG BASE_IMAGE=python:3.12-slim

# --- build: wheels for the pinned runtime dependencies and for the service itself ---
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# The lock alone first, so the dependency layer is reused while only the code changes.
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --no-deps --only-binary=:all: --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: the wheels installed into a clean base, nothing else ---
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="neuron-service" \
      org.opencontainers.image.description="Prediction microservice around one sigmoid neuron, served by gunicorn." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    NEURON_BIND=0.0.0.0:8000 \
    NEURON_GRPC_BIND=0.0.0.0:8081 \
    NEURON_MODEL_DIR=/data \
    NEURON_JOB_DIR=/data/jobs \
    PROMETHEUS_MULTIPROC_DIR=/dev/shm/neuron-metrics

# Only the pinned wheels from the build stage: --no-index, so nothing unpinned sneaks in.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 neuron \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin neuron \
    && mkdir -p /data \
    && chown 10001:10001 /data

WORKDIR /app
COPY gunicorn.conf.py ./
# The model versions (and training jobs' bodies, /data/jobs) live here: mount a named volume so
# they outlive the container.
VOLUME ["/data"]
# 8000: HTTP (REST and V2 REST); 8081: the Open Inference Protocol over gRPC (h2c).
EXPOSE 8000 8081
USER 10001:10001

# Slim images have no curl: urlopen raises (exit 1) on a refused connection or a 503 from /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]

# gunicorn.conf.py puts the worker heartbeat and the metrics files on /dev/shm (tmpfs).
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "service.wsgi:app"]
