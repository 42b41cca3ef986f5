# bitmatch worker for arm64: aarch64 Python, numpy, onnxruntime and codec, natively on an ARM host or under
# QEMU binfmt_misc on an x86-64 host (the fingerprint then reports arch aarch64 and flags the x86 cpuinfo).
#   docker buildx build --platform linux/arm64 -f docker/worker-arm64.Dockerfile -t bitmatch/worker-arm64 --load .
# BASE must be an arm64 image (tests/docker/stack.py imports one made by mmdebstrap --architectures=arm64).
ARG BASE=python:3.11-slim-bookworm

FROM --platform=linux/arm64 ${BASE} AS build
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

FROM --platform=linux/arm64 ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --create-home --uid 10001 bitmatch \
    && mkdir -p /var/cache/bitmatch \
    && chown bitmatch /var/cache/bitmatch

USER bitmatch
# Inside this image the codec runs natively (target cpu); the image's platform is what makes it aarch64.
# Uploaded codec packages land in $BITMATCH_CACHE/worker; the token comes from the environment at run time
# (BITMATCH_WORKER_TOKEN), never from the image.
ENV BITMATCH_CACHE=/var/cache/bitmatch \
    BITMATCH_WORKER_TARGET=cpu \
    BITMATCH_WORKER_HOST=0.0.0.0 \
    BITMATCH_WORKER_PORT=8200
EXPOSE 8200
# Emulated start-up (numpy, onnxruntime under binfmt QEMU) can take minutes on an x86 host.
HEALTHCHECK --interval=30s --timeout=20s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8200/healthz', timeout=15)"]
ENTRYPOINT ["bitmatch", "worker"]
