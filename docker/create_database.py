"""Create a PostgreSQL database if it does not exist, then exit 0 (compose's one-shot job for
Prefect's database, beside MLflow's in the same server).

Idempotent, so `docker compose up` can run it every time. Waits (bounded) for the server.
Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD (a role that may create databases, which
then owns it), DATABASE (the name).
"""

import os
import sys
import time

import psycopg2
from psycopg2 import sql

ATTEMPTS = 30


def main() -> int:
    name = os.environ["DATABASE"]
    problem = "no attempt"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            conn = psycopg2.connect(dbname="postgres", connect_timeout=3)
        except psycopg2.OperationalError as exc:
            problem = str(exc).strip().splitlines()[0]
            print(f"waiting for PostgreSQL ({problem}), try {attempt}/{ATTEMPTS}", file=sys.stderr)
            time.sleep(2)
            continue
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
            else:
                print(f"database {name} already exists")
        conn.close()
        return 0
    print(f"error: cannot create database {name}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
