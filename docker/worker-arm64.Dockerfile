# syntax=docker/dockerfile:1
# bitmatch worker for arm64: aarch64 Python, numpy, onnxruntime and codec, natively on an ARM host or under
# QEMU binfmt_misc on an x86-64 host (the fingerprint then reports arch aarch64 and flags the x86 cpuinfo).
#   docker buildx build --platform linux/arm64 -f docker/worker-arm64.Dockerfile -t bitmatch/worker-arm64 --load .
FROM --platform=linux/arm64 python:3.11-slim

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
# Inside this image the codec runs natively (target cpu); the image's platform is what makes it aarch64.
ENV BITMATCH_CACHE=/var/cache/bitmatch \
    BITMATCH_WORKER_TARGET=cpu \
    BITMATCH_WORKER_HOST=0.0.0.0 \
    BITMATCH_WORKER_PORT=8200
EXPOSE 8200
# Emulated start-up (numpy, onnxruntime under binfmt QEMU) can take minutes on an x86 host.
HEALTHCHECK --interval=30s --timeout=20s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8200/healthz', timeout=15)"]
ENTRYPOINT ["bitmatch", "worker"]
