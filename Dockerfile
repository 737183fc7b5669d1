# quantbeat application image: one image for every role (migrate, worker-*, beat, flower).
# The role is the command given to the `quantbeat` entry point, e.g.
#   docker run --rm quantbeat:latest worker --queues io --pool threads --concurrency 16
#
# Two stages: the first installs the project and its dependencies into a virtualenv, the
# second copies only that virtualenv onto a clean base, so the runtime image carries neither
# the source tree nor the build tooling. Every dependency ships manylinux wheels
# (psycopg[binary] bundles libpq), so no compiler or system libraries are needed.

ARG PYTHON_VERSION=3.11

# --------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
# .dockerignore keeps .venv, var/, .git, tests, caches and .env files out of the context.
COPY . .
# A regular (non-editable) install: packages quant, quantbeat, db (with its migrations as
# package data), workers, tasks and the modules celeryconfig, beat_schedule.
RUN pip install .

# --------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    QUANTBEAT_DATA_DIR=/var/lib/quantbeat \
    NUMBA_CACHE_DIR=/var/lib/quantbeat/numba-cache

# pg_dump/pg_restore/psql for `quantbeat db backup|restore` and the nightly backup task
# (Debian bookworm's client is 15, the compose server's major version).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed uid/gid, so volume ownership is predictable and
# orchestrators that require runAsNonRoot accept the image (Celery also warns when a worker
# runs as root).
RUN groupadd --system --gid 10001 quantbeat \
    && useradd --system --uid 10001 --gid quantbeat --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin quantbeat \
    && mkdir -p /app /var/lib/quantbeat \
    && chown quantbeat:quantbeat /app /var/lib/quantbeat

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# numba compiles the volume-profile kernels once per worker start into NUMBA_CACHE_DIR
# (site-packages is read-only for this user); later starts load them from there.

# Flower's web UI (only the flower service listens).
EXPOSE 5555

ENTRYPOINT ["quantbeat"]
CMD ["--help"]
