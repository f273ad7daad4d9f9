# One image for every Strata service; docker-compose.yml picks the service with
# `strata run <service>`. Only the packages are copied, so editing tests or docs does not
# invalidate the pip layer.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml ./
COPY strata ./strata
COPY intake ./intake
COPY stores ./stores
COPY query ./query
COPY heartbeat ./heartbeat
RUN pip install . && useradd --system --home /data strata && mkdir -p /data /keys \
    && chown strata /data /keys
USER strata
WORKDIR /data
CMD ["strata", "--help"]
