# syntax=docker/dockerfile:1
# OneFlow AI gateway image: a build stage that installs the package into a virtual environment,
# and a slim runtime stage that runs it as an unprivileged user.
#
#   docker build -t oneflow-ai:2.0.0 .
#   docker run -p 8000:8000 --env-file .env oneflow-ai:2.0.0
#
# The same image runs the migration Job: `oneflow db upgrade`.

# The base is pinned by digest (the multi-platform index of python:3.11-slim-bookworm, as
# docker-library/repo-info recorded it), so a rebuild gets the same base until the pin is moved:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # the tag's digest now
# and override it with `make docker-build PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/oneflow
WORKDIR /src
# Dependencies first, so that a code change does not reinstall them: exactly the versions and
# files of requirements.lock (pip refuses any file whose hash is not there), setuptools included,
# which then builds the package without fetching anything else.
COPY requirements.lock ./
RUN /opt/oneflow/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/oneflow/bin/pip install --no-deps --no-build-isolation . \
    && /opt/oneflow/bin/python -m compileall -q /opt/oneflow/lib

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 oneflow \
    && useradd --system --uid 10001 --gid oneflow --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin oneflow \
    && mkdir -p /app && chown oneflow:oneflow /app
COPY --from=build /opt/oneflow /opt/oneflow
ENV PATH=/opt/oneflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["oneflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
