# bitmatch worker on the build platform's CPU (x86-64 normally): `bitmatch worker --target cpu`.
#   docker build -f docker/worker-cpu.Dockerfile -t bitmatch/worker-cpu .
#   docker run -e BITMATCH_WORKER_TOKEN=secret -p 127.0.0.1:8200:8200 bitmatch/worker-cpu
# BASE is any Debian-like image with python3.11 and its venv module (tests/docker/stack.py builds one with
# mmdebstrap); the build stage's virtualenv is all the final image takes from it.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# Extra pip options, e.g. "--no-index --find-links /wheels" for an offline build from docker/wheels.
ARG PIP_INSTALL_OPTIONS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /opt/bitmatch
COPY docker/wheels/ /wheels/
COPY docker/constraints.txt ./
COPY pyproject.toml README.md ./
COPY codec/ codec/
COPY worker/ worker/
COPY server/ server/
COPY bitmatch/ bitmatch/
# The project's pinned versions (docker/constraints.txt); never the [train] extra, so no torch.
RUN python3 -m venv /opt/venv \
    && pip install . --constraint constraints.txt ${PIP_INSTALL_OPTIONS}

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --create-home --uid 10001 bitmatch \
    && mkdir -p /var/cache/bitmatch \
    && chown bitmatch /var/cache/bitmatch

USER bitmatch
# Uploaded codec packages land in $BITMATCH_CACHE/worker; the token comes from the environment at run time
# (BITMATCH_WORKER_TOKEN), never from the image.
ENV BITMATCH_CACHE=/var/cache/bitmatch \
    BITMATCH_WORKER_TARGET=cpu \
    BITMATCH_WORKER_HOST=0.0.0.0 \
    BITMATCH_WORKER_PORT=8200
EXPOSE 8200
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8200/healthz', timeout=5)"]
ENTRYPOINT ["bitmatch", "worker"]
