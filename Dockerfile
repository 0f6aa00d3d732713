# syntax=docker/dockerfile:1
# sdbot: one image for the bot (`sdbot run`) and its workers (`sdbot worker`), CPU or CUDA from
# this one file. The wheel ships the embedded model, so the image draws with nothing downloaded.
#
#   docker build -t sdbot .                                      # CPU (PyTorch's CPU wheels)
#   docker build -t sdbot:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .   # CUDA
#
# The CUDA build needs no CUDA base image: PyTorch's CUDA wheels (PyPI's for Linux x86-64, or a
# cuXXX index of PyTorch's) carry their CUDA libraries, and the NVIDIA container toolkit mounts
# the driver (and NVML, for the GPU gauges) at run time.
# BASE may still name another Python 3.11+ image, e.g. a mirror of python:3.11-slim-bookworm.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY alembic alembic
COPY bot bot
COPY common common
COPY generation generation
COPY moderation moderation
COPY storage storage
COPY bench bench
COPY fake_discord fake_discord
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE}
# CPU wheels by default (a few hundred MB); a CUDA index for GPU workers (see above).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0
# opencv (the watermark) links libGL and glib. Debian's security updates are wanted: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
# torch first from its index, then sdbot and the rest from PyPI (pip keeps the torch it has);
# sdbot's own wheel pins its dependencies' ranges (pyproject.toml).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH_SPEC}" \
    && pip install --no-cache-dir /wheels/*.whl
RUN useradd --create-home --uid 10001 --user-group sdbot \
    && install -d -o sdbot -g sdbot /data /models
USER 10001:10001
WORKDIR /home/sdbot
# /data: the SQLite database (when no PostgreSQL) and the images; /models: the Hugging Face cache
# for real checkpoints (SDBOT_MODEL=a hub id). Mount volumes there (compose.yaml does); no VOLUME
# line, which would leave an anonymous volume behind every one-off container (sdbot db upgrade).
# The metrics port listens on every address in here.
ENV SDBOT_DATA_DIR=/data \
    HF_HOME=/models \
    SDBOT_METRICS_HOST=0.0.0.0 \
    SDBOT_METRICS_PORT=9400 \
    PYTHONUNBUFFERED=1
EXPOSE 9400
# /livez: the process answers. Not /readyz, which a shared Redis or database going down turns
# 503 in every container at once: an orchestrator that restarts unhealthy containers would
# restart every worker and reload every model for it. compose.yaml's checks ask /readyz (start
# order, `docker compose ps`); see docs/runbook.md.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('SDBOT_METRICS_PORT', '9400'), timeout=4)"]
ENTRYPOINT ["sdbot"]
CMD ["run"]
