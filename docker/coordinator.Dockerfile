# syntax=docker/dockerfile:1
# bitmatch coordinator: `bitmatch serve` (REST API, scheduler, dashboard) with its SQLite database in a volume.
#   docker build -f docker/coordinator.Dockerfile -t bitmatch/coordinator .
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
    && mkdir -p /var/lib/bitmatch \
    && chown bitmatch /var/lib/bitmatch
# The integer package of the workers' known-answer health check, built once into the image (seeded, so
# every build has the same digest).
RUN bitmatch codec build-random --precision int16 --channels 8,8 --seed 1 --out /opt/bitmatch/health-int16

USER bitmatch
# The write token comes from the environment at run time (BITMATCH_TOKEN), never from the image.
ENV BITMATCH_DATA_DIR=/var/lib/bitmatch
VOLUME ["/var/lib/bitmatch"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/openapi.json', timeout=5)"]
ENTRYPOINT ["bitmatch", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--db", "sqlite:////var/lib/bitmatch/bitmatch.sqlite3", "--workers-config", "/etc/bitmatch/workers.json", "--health-package", "/opt/bitmatch/health-int16"]
