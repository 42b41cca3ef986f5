# syntax=docker/dockerfile:1
# bitmatch worker on the build platform's CPU (x86-64 normally): `bitmatch worker --target cpu`.
#   docker build -f docker/worker-cpu.Dockerfile -t bitmatch/worker-cpu .
#   docker run -e BITMATCH_WORKER_TOKEN=secret -p 127.0.0.1:8200:8200 bitmatch/worker-cpu
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/bitmatch
COPY pyproject.toml README.md ./
COPY codec/ codec/
COPY worker/ worker/
COPY server/ server/
COPY bitmatch/ bitmatch/
RUN pip install . \
    && useradd --system --create-home --uid 10001 bitmatch \
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
