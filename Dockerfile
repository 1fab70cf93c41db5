# syntax=docker/dockerfile:1
# One image recipe for every Syllabus service. The extras decide what goes in:
#
#   docker build -t syllabus-core  --build-arg EXTRAS=triton .            ingest, question-gen, rationale, api-annotator
#   docker build -t syllabus-embed --build-arg EXTRAS=embed,triton .      sycophancy-filter, dataset-builder
#   docker build -t syllabus-train --build-arg EXTRAS=train .             trainer
#   docker build -t syllabus-serve --build-arg EXTRAS=serve,train .       server
#
# torch==2.13.0 from PyPI is the CUDA build; for a CPU-only image pass
#   --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# The container runs `syllabus serve <name>` as the unprivileged user 10001, on a read-only
# root file system in Kubernetes (writable: /tmp).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment with the package and the chosen extras ---------------
FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN python -m venv /opt/syllabus
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY services ./services
COPY plugins ./plugins
RUN if [ -n "${EXTRAS}" ]; then target=".[${EXTRAS}]"; else target="."; fi \
    && /opt/syllabus/bin/pip install --no-cache-dir "${target}" \
    && /opt/syllabus/bin/syllabus --version

# ---- runtime: the environment and nothing else -----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=""
LABEL org.opencontainers.image.title="syllabus" \
      org.opencontainers.image.description="Syllabus services (extras: ${EXTRAS})" \
      org.opencontainers.image.licenses="Apache-2.0"
# /work: the trainer's work_dir in compose (a named volume there takes this owner)
RUN groupadd --system --gid 10001 syllabus \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/syllabus --create-home \
       --shell /usr/sbin/nologin syllabus \
    && install -d -o 10001 -g 10001 /work
COPY --from=build /opt/syllabus /opt/syllabus
# caches and temporary files go to /tmp (the only writable path on a read-only root);
# nothing is downloaded from a model hub at run time
ENV PATH=/opt/syllabus/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    SYLLABUS_HTTP__PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# the same endpoint the Kubernetes liveness probe uses (no token needed)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('SYLLABUS_HTTP__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["syllabus"]
CMD ["--help"]
