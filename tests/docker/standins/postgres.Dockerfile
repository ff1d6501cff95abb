# TEST-ONLY stand-in for postgres:15.8-bookworm (no registry here): Debian's PostgreSQL 15 with
# the official image's contract as far as docker-compose.yml uses it: POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB on first start, PGDATA=/var/lib/postgresql/data, pg_isready.
FROM python:3.11-slim
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
EXPOSE 5432
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
