# One image for every Driftboard process: web, GPU workers, publish worker, beat, migrations.
#   docker build -t driftboard .                                   # CPU build of torch
#   docker build -t driftboard:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# CUDA wheels bring their own CUDA libraries; a GPU host needs only the NVIDIA driver and container toolkit.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DRIFTBOARD_VAR_DIR=/srv/driftboard/var \
    DRIFTBOARD_ARTIFACT_ROOT=/srv/driftboard/artifacts

RUN useradd --create-home --uid 1000 driftboard \
    && mkdir -p /srv/driftboard/var /srv/driftboard/artifacts /srv/driftboard/prometheus \
    && chown -R driftboard:driftboard /srv/driftboard

WORKDIR /app
COPY requirements.txt .
# torch first, from the index of the wanted build; the pinned version then satisfies requirements.txt.
RUN pip install "torch==$(sed -n 's/^torch==//p' requirements.txt)" --index-url "$TORCH_INDEX_URL" \
    && pip install -r requirements.txt

COPY --chown=driftboard:driftboard . .

USER driftboard
EXPOSE 8000
CMD ["gunicorn", "driftboard.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "4", \
     "--threads", "4", "--timeout", "120", "--forwarded-allow-ips", "*", "--access-logfile", "-"]
