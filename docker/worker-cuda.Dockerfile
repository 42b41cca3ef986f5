# bitmatch worker on an NVIDIA GPU: `bitmatch worker --target cuda` with onnxruntime-gpu (CUDA 12, cuDNN 9).
#   docker build -f docker/worker-cuda.Dockerfile -t bitmatch/worker-cuda .
#   docker run --gpus all -e BITMATCH_WORKER_TOKEN=secret -p 127.0.0.1:8200:8200 bitmatch/worker-cuda
# Needs the NVIDIA Container Toolkit on the host (it mounts the driver and nvidia-smi into the container).
# The CUDA EP options that matter for exactness are the runtime's, not the image's: codec/runtime.py's
# ort-cuda sets use_tf32=0, cudnn_conv_algo_search=DEFAULT (no timing-dependent algorithm choice) and
# session.disable_cpu_ep_fallback=1 (a node the CUDA EP cannot run fails instead of running on the CPU).
ARG BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE}
# The GPU wheel's version, pinned (the CPU wheel's is docker/constraints.txt's; the GPU build trails it).
ARG ONNXRUNTIME_GPU_VERSION=1.31.1

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /opt/bitmatch
COPY pyproject.toml README.md ./
COPY codec/ codec/
COPY worker/ worker/
COPY server/ server/
COPY bitmatch/ bitmatch/
# onnxruntime-gpu ships the same `onnxruntime` module as the CPU wheel the base dependencies pull in, so the
# CPU wheel goes first (the `cuda` extra of pyproject.toml names the same requirement).
RUN pip install . \
    && pip uninstall -y onnxruntime \
    && pip install "onnxruntime-gpu>=1.18" "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && useradd --system --create-home --uid 10001 bitmatch \
    && mkdir -p /var/cache/bitmatch \
    && chown bitmatch /var/cache/bitmatch

USER bitmatch
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    BITMATCH_CACHE=/var/cache/bitmatch \
    BITMATCH_WORKER_TARGET=cuda \
    BITMATCH_WORKER_HOST=0.0.0.0 \
    BITMATCH_WORKER_PORT=8200
EXPOSE 8200
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8200/healthz', timeout=5)"]
ENTRYPOINT ["bitmatch", "worker"]
