# The project images, built from the pins in pyproject.toml; no credentials are baked in.
#   make image        # target train, tag mlstack-train: MLproject's docker_env (`mlflow run .`)
#   make dev-image    # target dev, tag mlstack-dev: + SSH (key only), JupyterLab and git
# `make image` passes SOURCE_COMMIT/SOURCE_DIRTY so a run can tell when the image's code is stale.
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
# Declared late so a new commit rebuilds only this layer. mlstack.provenance compares them with
# the commit `mlflow run` records, and refuses to run stale code.
ARG SOURCE_COMMIT=unknown
ARG SOURCE_DIRTY=unknown
ENV MLSTACK_IMAGE_CODE_DIR=/opt/mlstack \
    MLSTACK_IMAGE_COMMIT=${SOURCE_COMMIT} \
    MLSTACK_IMAGE_DIRTY=${SOURCE_DIRTY}
LABEL org.opencontainers.image.revision=${SOURCE_COMMIT}
USER 1000
CMD ["python", "train.py", "--help"]


# The dev image people SSH into (VS Code Remote-SSH) and run JupyterLab in. It starts as root
# only to run sshd (which needs it to switch users); logins and JupyterLab are dockeruser's.
FROM train AS dev
# hadolint ignore=DL3002
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server openssh-client git \
    && rm -rf /var/lib/apt/lists/* \
    # Host keys made by the package would be shared by every container of this image.
    && rm -f /etc/ssh/ssh_host_* \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['devcontainer']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    # '*' = no password can ever match; unlike a locked '!' account, key logins still work.
    && usermod -p '*' dockeruser \
    && mkdir -p /etc/ssh/host-keys /etc/ssh/authorized_keys /run/sshd
COPY stack/dev/sshd.conf /etc/ssh/sshd_config.d/00-mlstack.conf
VOLUME ["/etc/ssh/host-keys"]
EXPOSE 22 8888
ENTRYPOINT ["python", "-m", "mlstack.devcontainer"]
CMD []
