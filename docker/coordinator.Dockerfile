# bitmatch coordinator: `bitmatch serve` (REST API, scheduler, dashboard) with its SQLite database in a volume.
#   docker build -f docker/coordinator.Dockerfile -t bitmatch/coordinator .
# BASE: as in worker-cpu.Dockerfile.
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
