# The project image: `docker_env` of MLproject (tag mlstack-train) and base of the dev image.
#   docker build -t mlstack-train .            # what `mlflow run .` runs
#   docker build --target dev -t mlstack-dev .  # + SSH (key only) and JupyterLab (issue #4)
# Dependencies come from the pins in pyproject.toml; no credentials are baked in.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS train

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/mlstack
# Dependencies first, so editing code does not reinstall them. The list is read from
# pyproject.toml, the one place the pins live.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --create-home --uid 1000 --shell /bin/bash dockeruser

COPY --chown=dockeruser:dockeruser . .
USER 1000
CMD ["python", "train.py", "--help"]
