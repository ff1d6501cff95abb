# Every image of the project, one target each. Packages come only from the pins in
# pyproject.toml, through docker/install.py; no credentials are baked into any image.
#
#   target         tag                            what it runs                     built by
#   mlflow-server  mlstack-mlflow-server:3.17.2   the tracking server (+ bucket)   docker compose build
#   serve          mlstack-serve-core             our model server, scikit-learn   make serve-image
#   serve (TF)     mlstack-serve-tensorflow       ... with TensorFlow, for digits  make serve-image SERVE_DEPS=tensorflow
#   train          mlstack-train                  MLproject's docker_env image     make image
#   dev            mlstack-dev                    train + SSH (key only), Jupyter  make dev-image
#   pipelines      mlstack-pipelines              train + Prefect: server and runner  compose
#   client         mlstack-client                 the web client (Streamlit)          compose
#
# Stages: base -> mlflow-server; base -> core -> serve; core -> tensorflow -> train -> dev,
# train -> pipelines; base -> client. (Docker's classic builder builds every stage above a target, so the
# targets few need come last.)
# `serve` sits on `core` unless --build-arg SERVE_DEPS=tensorflow puts it on `tensorflow`, so
# both serving images are one set of instructions. Dependency layers come before code layers:
# an edit rebuilds only the code layer (about a second).
ARG BASE_IMAGE=python:3.11-slim
ARG SERVE_DEPS=core

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true
COPY pyproject.toml docker/install.py /opt/mlstack-build/


# The tracking server: MLflow without the data-science packages its server never imports
# (docker/install.py --slim-mlflow), plus the PostgreSQL and S3 drivers.
FROM base AS mlflow-server
RUN python /opt/mlstack-build/install.py tracking-server --slim-mlflow \
        --warm "mlflow.server mlflow.server.handlers mlflow.server.fastapi_app psycopg2 boto3 mlflow.store.tracking.sqlalchemy_store mlflow.store.artifact.s3_artifact_repo" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin mlflow
# compose's one-shot jobs (the bucket, Prefect's database) run this image too.
COPY docker/create_bucket.py docker/create_database.py /opt/stack/
USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]


# The library's own dependencies: enough to log to a tracking server and serve scikit-learn.
FROM base AS core
RUN python /opt/mlstack-build/install.py core \
        --warm "mlflow.pyfunc mlflow.pyfunc.scoring_server mlflow.sklearn mlflow.tracking skops.io sklearn.linear_model pandas fastparquet uvicorn starlette.applications orjson pydantic_settings requests" \
    && useradd --create-home --uid 1000 --shell /bin/bash dockeruser
WORKDIR /opt/mlstack

FROM core AS tensorflow
ENV TF_CPP_MIN_LOG_LEVEL=2
RUN python /opt/mlstack-build/install.py tensorflow --warm "tensorflow keras mlflow.tensorflow"


# Our model server: only the library, no training scripts, notebooks or tests.
#   docker run -p 127.0.0.1:8080:8080 -e MLFLOW_TRACKING_URI=http://... mlstack-serve-core
# hadolint ignore=DL3006
FROM ${SERVE_DEPS} AS serve
WORKDIR /opt/mlstack
COPY --chown=dockeruser:dockeruser mlstack/ mlstack/
# For `--log-predictions /var/lib/mlstack/predictions` with a volume mounted there (compose
# logs to MLflow instead).
RUN python -m compileall -q mlstack \
    && mkdir -p /var/lib/mlstack/predictions \
    && chown dockeruser:dockeruser /var/lib/mlstack/predictions
USER 1000
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=3)"]
ENTRYPOINT ["python", "-m", "mlstack.serving", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model-uri", "models:/wine@champion"]


# MLproject's docker_env image: the code and everything its entry points need.
# `make image` passes SOURCE_COMMIT/SOURCE_DIRTY so a run can tell when the image's code is stale.
FROM tensorflow AS train
RUN python /opt/mlstack-build/install.py train \
    --warm "mlflow mlflow.sklearn mlflow.tensorflow mlflow.data matplotlib.figure sklearn.model_selection sklearn.metrics mlflow.store.tracking.sqlalchemy_store"
COPY --chown=dockeruser:dockeruser . .
RUN python -m compileall -q mlstack
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
    && python /opt/mlstack-build/install.py devcontainer --warm "jupyterlab ipykernel" \
    # '*' = no password can ever match; unlike a locked '!' account, key logins still work.
    && usermod -p '*' dockeruser \
    && mkdir -p /etc/ssh/host-keys /etc/ssh/authorized_keys /run/sshd
COPY docker/sshd.conf /etc/ssh/sshd_config.d/00-mlstack.conf
VOLUME ["/etc/ssh/host-keys"]
EXPOSE 22 8888
ENTRYPOINT ["python", "-m", "mlstack.entrypoints.devcontainer"]
CMD []


# The Prefect server and the retraining runner (compose profile pipelines): what training
# needs, plus Prefect.
FROM train AS pipelines
USER 0
RUN python /opt/mlstack-build/install.py pipelines --warm "prefect prefect.server.api.server" \
    && mkdir -p /var/lib/mlstack/labels && chown 1000:1000 /var/lib/mlstack/labels
USER 1000
EXPOSE 4200
CMD ["python", "-m", "mlstack.pipelines", "serve"]


# The web client (compose profile client): Streamlit and the library's client modules only;
# it talks to our model server over HTTP, so it needs neither MLflow nor TensorFlow.
FROM base AS client
RUN python /opt/mlstack-build/install.py client --warm "streamlit pandas" \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin dockeruser
WORKDIR /opt/mlstack
COPY --chown=dockeruser:dockeruser mlstack/ mlstack/
USER 1000
EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=3)"]
ENTRYPOINT ["python", "-m", "mlstack.client", "--host", "0.0.0.0", "--port", "8501"]
CMD ["--server-url", "http://serve:8080"]
