"""Backup and restore of a tracking stack: a `pg_dump` of each database plus every object of the
artifact bucket, with a manifest that lets restore check the whole backup before it changes
anything.

A backup directory holds:

    manifest.json         what is in it: databases, objects (key, size, sha256), counts, the
                          MLflow version and schema revision of the store it came from
    manifest.sha256       the manifest's own checksum (a truncated or edited manifest is refused)
    databases/NAME.dump   pg_dump's custom format, one file per database
    objects/ab/abcd...    each object's bytes, named by their sha256 (any S3 key fits; equal
                          files are stored once)

Consistency while the stack serves and trains: every database is dumped first, each in one
snapshot, then the bucket is listed and copied. gc, the one bulk deleter, cannot run during a
backup (`BackupLock`), so every artifact a dumped run refers to that existed when its snapshot
was taken is still there when it is copied, unless a client deleted that very file after the
snapshot (it is then left out, and said); objects written later are copied too and are
harmless extras. Every write acknowledged before `backup` started is in it.

The code needs only a `StoreAccess` (database login, S3 client, bucket), so other launchers
than the native stack can run the same functions (compose does not yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mlstack.stack.config import StackError, StackUsageError, write_private

FORMAT = 1  # manifest format; restore refuses one it does not know
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
MLFLOW_DB = "mlflow"
COPY_THREADS = 8  # objects are small and many: the copy is bound by round trips, not bytes
CHUNK = 1 << 20

Echo = Callable[[str], None]


@dataclass
class StoreAccess:
    """How to reach one stack's stores with the rights backup and restore need.

    `ensure_database(name)` (restore only) creates an empty database `name` with its owner role
    and returns the role pg_restore should create the objects as.
    """

    pg_host: str
    pg_port: int
    pg_user: str  # a superuser: it dumps and re-creates every database
    pg_password: str
    pg_bin: Path  # holds pg_dump and pg_restore
    s3_client: Callable[[], Any] | None  # None: the artifacts are not in a bucket (SFTP)
    bucket: str
    ensure_database: Callable[[str], str] | None = None
    # The databases restore may re-create (each has an owner role in the target stack).
    known_databases: tuple[str, ...] = ("mlflow", "prefect")

    @property
    def artifact_store(self) -> str:
        """Where artifacts live: "s3" (the bucket, in backups) or "sftp" (not in backups)."""
        return "s3" if self.s3_client is not None else "sftp"

    def pg_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore: the password out of argv (and out of `ps`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.pg_host, PGPORT=str(self.pg_port), PGUSER=self.pg_user,
                   PGPASSWORD=self.pg_password, PGCONNECT_TIMEOUT="5")  # fmt: skip
        return env

    def connect(self, dbname: str = "postgres"):
        """A psycopg2 connection as the superuser."""
        import psycopg2

        return psycopg2.connect(
            host=self.pg_host,
            port=self.pg_port,
            user=self.pg_user,
            password=self.pg_password,
            dbname=dbname,
            connect_timeout=5,
        )

    def query(self, dbname: str, sql: str, *args: object) -> list[tuple]:
        """Rows of one query on `dbname`."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def databases(self) -> list[str]:
        """The stack's databases: every one but PostgreSQL's own (postgres, templates)."""
        rows = self.query(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' "
            "ORDER BY datname",
        )
        return [name for (name,) in rows]


@dataclass
class Manifest:
    """What a backup holds; written last, so a backup without one is incomplete."""

    created_at: str
    mlflow_version: str  # of the tool that made the backup (the server's, natively)
    schema_revision: str | None  # alembic revision of the MLflow database
    bucket: str
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)  # name: file,size,sha256
    objects: list[dict[str, Any]] = field(default_factory=list)  # key,size,sha256
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    artifact_store: str = "s3"  # "sftp": the artifacts are not in the backup
    format: int = FORMAT

    def total_bytes(self) -> int:
        """Bytes of every database dump and object."""
        return sum(d["size"] for d in self.databases.values()) + sum(
            o["size"] for o in self.objects
        )

    def to_json(self) -> str:
        """The manifest as written to manifest.json."""
        return json.dumps(self.__dict__, indent=1, sort_keys=True)


class BackupLock:
    """One maintenance command at a time per stack (backup, restore, gc): gc deleting objects
    mid-copy would leave a dumped run without its artifacts. An flock on a file that is never
    deleted: the kernel drops it when its holder exits, however it exits, so a crashed command
    leaves nothing stale and two commands can never both hold it."""

    def __init__(self, directory: Path, what: str) -> None:
        self.path = directory / "maintenance.lock"
        self.what = what

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block, or raise StackUsageError naming who holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "? maintenance"
                pid, _, what = holder.partition(" ")
                raise StackUsageError(
                    f"{what or 'maintenance'} is running on this stack (pid {pid}); wait for it "
                    f"to finish, then run {self.what} again"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)  # for the message only
            yield
        finally:
            os.close(fd)  # releases the lock


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def schema_revision(access: StoreAccess) -> str | None:
    """The MLflow database's alembic revision (None when it has no schema yet)."""
    import psycopg2

    try:
        rows = access.query(MLFLOW_DB, "SELECT version_num FROM alembic_version")
    except psycopg2.Error:
        return None
    return rows[0][0] if rows else None


_HAS_TABLE = "SELECT count(*) FROM information_schema.tables WHERE table_name = %s"
COUNTED = {
    "experiments": "experiments",
    "runs": "runs",
    "metric_values": "metrics",
    "params": "params",
    "registered_models": "registered_models",
    "model_versions": "model_versions",
    "aliases": "registered_model_aliases",
}


def _count_rows(cur: Any) -> dict[str, int]:
    """Rows of each COUNTED table present, with cursor `cur` (so in its transaction)."""
    counts = {}
    for label, table in COUNTED.items():
        cur.execute(_HAS_TABLE, (table,))
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[label] = int(cur.fetchone()[0])
    return counts


def store_counts(access: StoreAccess) -> dict[str, int]:
    """Experiments, runs, metrics, registered models and versions, aliases in the MLflow db."""
    conn = access.connect(MLFLOW_DB)
    try:
        with conn.cursor() as cur:
            return _count_rows(cur)
    finally:
        conn.close()


def has_table(access: StoreAccess, dbname: str, table: str) -> bool:
    """Whether `dbname` has a table named `table` (stores of older versions lack some)."""
    return bool(access.query(dbname, _HAS_TABLE, table)[0][0])


def list_objects(access: StoreAccess) -> list[dict[str, Any]]:
    """Every object of the bucket: key and size (none when the stack has no bucket)."""
    if access.s3_client is None:
        return []
    paginator = access.s3_client().get_paginator("list_objects_v2")
    return [
        {"key": obj["Key"], "size": obj["Size"]}
        for page in paginator.paginate(Bucket=access.bucket)
        for obj in page.get("Contents", [])
    ]


def _object_path(root: Path, sha: str) -> Path:
    return root / "objects" / sha[:2] / sha


def pg_tool(access: StoreAccess, name: str) -> str:
    """pg_dump or pg_restore: beside the server's binaries, else on PATH."""
    beside = access.pg_bin / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise StackError(
            f"{name} not found in {access.pg_bin} nor on PATH; install PostgreSQL's client "
            "programs (`apt-get install postgresql-client`)"
        )
    return found


def _dump_database(access: StoreAccess, name: str, out: Path, snapshot: str | None) -> None:
    """pg_dump `name` into `out`, from the exported `snapshot` when given."""
    at = [f"--snapshot={snapshot}"] if snapshot else []
    result = subprocess.run(
        [pg_tool(access, "pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
         *at, f"--file={out}", name],
        env=access.pg_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(f"pg_dump of database '{name}' failed: {_last_line(result.stderr)}")
    out.chmod(0o600)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def _copy_object(access: StoreAccess, client: Any, key: str, root: Path) -> dict[str, Any] | None:
    """Download one object into the backup under its sha256; its manifest entry, or None when
    it was deleted after the listing (a client's DELETE through the proxy, later than the
    dump's snapshot)."""
    from botocore.exceptions import ClientError

    tmp_dir = root / "objects" / "tmp"
    try:
        body = client.get_object(Bucket=access.bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    with tempfile.NamedTemporaryFile(dir=tmp_dir, delete=False) as tmp:
        digest = hashlib.sha256()
        size = 0
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
            tmp.write(chunk)
            size += len(chunk)
    sha = digest.hexdigest()
    target = _object_path(root, sha)
    target.parent.mkdir(exist_ok=True)
    os.replace(tmp.name, target)
    return {"key": key, "size": size, "sha256": sha}


def backup(access: StoreAccess, dest: Path, lock_dir: Path, echo: Echo) -> Manifest:
    """Back up every database and every object into `dest` (which must not exist or be empty).

    Written into `<dest>.partial` and renamed at the end, so `dest` is either a whole backup
    or absent. Returns the manifest.
    """
    dest = dest.resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StackUsageError(f"{dest} exists and is not empty; back up into a new directory")
    partial = dest.with_name(dest.name + ".partial")
    started = time.monotonic()
    with BackupLock(lock_dir, "backup").held():
        if partial.exists():
            shutil.rmtree(partial)  # left by a backup that died: never part of a backup
        try:
            # Private: the dumps hold every database, Prefect's blocks included.
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.mkdir(mode=0o700)
            manifest = _write_backup(access, partial, echo)
            manifest.seconds = round(time.monotonic() - started, 2)
            _write_manifest(partial, manifest)
            if dest.exists():
                dest.rmdir()
            os.replace(partial, dest)
        except PermissionError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise StackUsageError(
                f"cannot write the backup ({exc}); choose a --to directory you can write"
            ) from exc
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    echo(
        f"backup complete: {dest} ({len(manifest.databases)} databases, "
        f"{len(manifest.objects)} objects, {_mb(manifest.total_bytes())}, "
        f"{manifest.seconds:.1f}s)"
    )
    return manifest


def _write_backup(access: StoreAccess, root: Path, echo: Echo) -> Manifest:
    (root / "databases").mkdir(mode=0o700)
    (root / "objects" / "tmp").mkdir(mode=0o700, parents=True)
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        mlflow_version=version("mlflow-skinny"),
        artifact_store=access.artifact_store,
        schema_revision=schema_revision(access),
        bucket=access.bucket,
    )
    # Databases first, objects after: see the module docstring.
    for name in access.databases():
        t0 = time.monotonic()
        out = root / "databases" / f"{name}.dump"
        if name == MLFLOW_DB:
            # The counts come from the very snapshot pg_dump dumps, so they are exact.
            conn = access.connect(MLFLOW_DB)
            try:
                conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_export_snapshot()")
                    snapshot = cur.fetchone()[0]
                    manifest.counts = _count_rows(cur)
                    _dump_database(access, name, out, snapshot)
            finally:
                conn.close()
        else:
            _dump_database(access, name, out, None)
        size = out.stat().st_size
        manifest.databases[name] = {"file": f"databases/{name}.dump", "size": size,
                                    "sha256": sha256_file(out)}  # fmt: skip
        echo(f"database {name}: {_mb(size)} in {time.monotonic() - t0:.1f}s")
    if access.s3_client is None:
        echo("artifacts: on the SFTP store, not in this backup: copy its folder with your "
             "file backups")  # fmt: skip
        (root / "objects" / "tmp").rmdir()
        return manifest
    listed = list_objects(access)
    echo(f"objects: copying {len(listed)} ({_mb(sum(o['size'] for o in listed))}) ...")
    client = access.s3_client()
    done = gone = 0
    t0 = time.monotonic()
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        for entry in pool.map(lambda o: _copy_object(access, client, o["key"], root), listed):
            done += 1
            if entry is None:
                gone += 1
                continue
            manifest.objects.append(entry)
            if done % 1000 == 0:
                echo(f"objects: {done}/{len(listed)} ({time.monotonic() - t0:.0f}s)")
    (root / "objects" / "tmp").rmdir()
    if gone:
        echo(f"objects: {gone} deleted while the backup ran (not in it)")
    manifest.counts["objects"] = len(manifest.objects)
    return manifest


def _write_manifest(root: Path, manifest: Manifest) -> None:
    text = manifest.to_json()
    write_private(root / MANIFEST, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    write_private(root / MANIFEST_SUM, f"{digest}  {MANIFEST}\n")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def read_manifest(src: Path) -> Manifest:
    """The manifest of backup `src`, checked against its checksum; StackUsageError if the
    backup is incomplete or its manifest damaged."""
    path, sum_path = src / MANIFEST, src / MANIFEST_SUM
    if not path.exists() or not sum_path.exists():
        raise StackUsageError(
            f"{src} is not a complete backup (no {MANIFEST} / {MANIFEST_SUM}); "
            "use a directory written by `backup`"
        )
    text = path.read_text(errors="replace")
    expected = sum_path.read_text().split()[0] if sum_path.read_text().split() else ""
    if hashlib.sha256(text.encode()).hexdigest() != expected:
        raise StackUsageError(
            f"backup {src} is damaged: {MANIFEST} does not match {MANIFEST_SUM}; nothing was "
            "changed, restore from another backup"
        )
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise StackUsageError(
            f"backup {src} has manifest format {data.get('format')}, this version reads "
            f"{FORMAT}; restore it with the mlstack version that made it"
        )
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise StackUsageError(
            f"backup {src} has a manifest this version cannot read ({exc}); nothing was "
            "changed, restore it with the mlstack version that made it"
        ) from exc
    _check_names(src, manifest)
    return manifest


_SHA = re.compile(r"^[0-9a-f]{64}$")
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check_names(src: Path, manifest: Manifest) -> None:
    """Every name the manifest gives is one backup writes: no path or SQL can hide in it."""
    for name, entry in manifest.databases.items():
        if not _DB_NAME.match(name) or entry.get("file") != f"databases/{name}.dump":
            raise StackUsageError(
                f"backup {src} is damaged: database entry {name!r} is not one backup writes; "
                "nothing was changed, restore from another backup"
            )
    for entry in manifest.objects:
        if not _SHA.match(str(entry.get("sha256", ""))) or not entry.get("key"):
            raise StackUsageError(
                f"backup {src} is damaged: object entry {str(entry)[:80]} is not one backup "
                "writes; nothing was changed, restore from another backup"
            )


def verify(src: Path, echo: Echo) -> Manifest:
    """Check every file of backup `src` against its manifest (present, size, sha256); the
    manifest, or StackUsageError naming the first bad file. Changes nothing."""
    src = src.resolve()
    manifest = read_manifest(src)
    files = [(d["file"], d["size"], d["sha256"]) for d in manifest.databases.values()]
    files += [
        (str(_object_path(Path(), o["sha256"])), o["size"], o["sha256"]) for o in manifest.objects
    ]
    checked: set[str] = set()
    for rel, size, sha in files:
        if rel in checked:
            continue
        path = src / rel
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != size:
            problem = f"has {path.stat().st_size} bytes, the manifest says {size}"
        elif sha256_file(path) != sha:
            problem = "does not match its sha256"
        if problem:
            raise StackUsageError(
                f"backup {src} is damaged: {rel} {problem}; nothing was changed, restore "
                "from another backup"
            )
        checked.add(rel)
    echo(f"backup verified: {len(checked)} files, {_mb(manifest.total_bytes())}")
    return manifest


def _migrations():
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config("postgresql://unused"))


def head_revision() -> str:
    """The schema revision the installed MLflow creates and upgrades to."""
    return _migrations().get_current_head()


def known_revision(revision: str | None) -> bool:
    """Whether the installed MLflow knows `revision` (so it can open or upgrade the store)."""
    if revision is None:
        return True
    try:
        return _migrations().get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown revision
        return False


def target_contents(access: StoreAccess) -> dict[str, int]:
    """What the target already holds: runs, registered models, experiments besides Default,
    objects in the bucket, Prefect flow runs (zeros mean empty)."""
    found: dict[str, int] = {}
    databases = access.databases()
    if MLFLOW_DB in databases and schema_revision(access):
        counts = store_counts(access)
        found["runs"] = counts.get("runs", 0)
        found["registered models"] = counts.get("registered_models", 0)
        found["experiments"] = max(0, counts.get("experiments", 0) - 1)  # Default is always there
    if "prefect" in databases:
        if has_table(access, "prefect", "flow_run"):
            # A fresh runner's schedule creates future runs at once: those are not data.
            sql = "SELECT count(*) FROM flow_run WHERE state_type IS DISTINCT FROM 'SCHEDULED'"
            found["Prefect flow runs"] = int(access.query("prefect", sql)[0][0])
    if access.s3_client is not None:
        page = access.s3_client().list_objects_v2(Bucket=access.bucket, MaxKeys=1000)
        found["objects"] = int(page.get("KeyCount", 0))
    return found


def check_restorable(access: StoreAccess, src: Path, force: bool, echo: Echo) -> Manifest:
    """Everything restore checks before it changes anything: the whole backup against its
    manifest, a schema this MLflow knows, and an empty target (unless `force`)."""
    src = src.resolve()
    manifest = verify(src, echo)
    if not known_revision(manifest.schema_revision):
        raise StackUsageError(
            f"backup {src} holds MLflow schema {manifest.schema_revision} (MLflow "
            f"{manifest.mlflow_version}), newer than this MLflow {version('mlflow-skinny')} "
            "knows; restore it with that MLflow version or newer"
        )
    if manifest.artifact_store != access.artifact_store:
        raise StackUsageError(
            f"backup {src} is of a stack with --artifacts {manifest.artifact_store}, this one "
            f"has --artifacts {access.artifact_store}; restore it into a stack like its own"
        )
    unknown = sorted(set(manifest.databases) - set(access.known_databases))
    if unknown:
        raise StackUsageError(
            f"backup {src} holds databases this stack has no role for ({', '.join(unknown)}); "
            "nothing was changed, restore it with the mlstack version that made it"
        )
    contents = target_contents(access)
    if any(contents.values()) and not force:
        held = ", ".join(f"{n} {what}" for what, n in contents.items() if n)
        raise StackUsageError(
            f"the target stack is not empty ({held}); restore into a fresh stack, or pass "
            "--force to replace everything it holds"
        )
    if access.ensure_database is None:
        raise StackError("this StoreAccess cannot create databases; restore needs it")
    return manifest


def restore(
    access: StoreAccess,
    src: Path,
    lock_dir: Path,
    echo: Echo,
    force: bool = False,
    checked: bool = False,
    hold_lock: bool = True,
) -> Manifest:
    """Restore backup `src` into the stack `access` reaches (its MLflow server stopped).

    Checks first (`check_restorable`, skipped when the caller has just run it: `checked`),
    changes after: each database is re-created from its dump and the bucket is made to hold
    exactly the backup's objects. `hold_lock=False`: the caller holds the BackupLock.
    Returns the manifest.
    """
    src = src.resolve()
    manifest = read_manifest(src) if checked else check_restorable(access, src, force, echo)
    started = time.monotonic()
    with BackupLock(lock_dir, "restore").held() if hold_lock else contextlib.nullcontext():
        for name, entry in manifest.databases.items():
            t0 = time.monotonic()
            _restore_database(access, name, src / entry["file"])
            echo(f"database {name}: restored in {time.monotonic() - t0:.1f}s")
        _restore_objects(access, manifest, src, echo)
    echo(
        f"restore complete from {src}: {manifest.counts.get('runs', 0)} runs, "
        f"{len(manifest.objects)} objects in {time.monotonic() - started:.1f}s"
    )
    return manifest


def _restore_database(access: StoreAccess, name: str, dump: Path) -> None:
    conn = access.connect("postgres")
    conn.autocommit = True  # DROP/CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            # WITH (FORCE): a client left connected (a stopped server's pool) must not block it.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
    assert access.ensure_database is not None
    owner = access.ensure_database(name)
    result = subprocess.run(
        [pg_tool(access, "pg_restore"), "--no-owner", "--no-privileges", f"--role={owner}",
         "--exit-on-error", "--single-transaction", f"--dbname={name}", str(dump)],
        env=access.pg_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(
            f"pg_restore of database '{name}' failed: {_last_line(result.stderr)}; the target "
            "is partly restored: fix the cause and restore again with --force"
        )


def _restore_objects(access: StoreAccess, manifest: Manifest, src: Path, echo: Echo) -> None:
    if access.s3_client is None:
        return  # check_restorable made sure the backup holds no objects
    client = access.s3_client()
    wanted = {o["key"] for o in manifest.objects}
    stale = [o["key"] for o in list_objects(access) if o["key"] not in wanted]
    for i in range(0, len(stale), 1000):  # only with --force can the bucket hold any
        batch = [{"Key": key} for key in stale[i : i + 1000]]
        client.delete_objects(Bucket=access.bucket, Delete={"Objects": batch, "Quiet": True})
    if stale:
        echo(f"objects: removed {len(stale)} not in the backup")
    echo(f"objects: uploading {len(manifest.objects)} ...")

    def upload(entry: dict[str, Any]) -> None:
        with open(_object_path(src, entry["sha256"]), "rb") as fh:
            client.put_object(Bucket=access.bucket, Key=entry["key"], Body=fh)

    t0 = time.monotonic()
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        for done, _ in enumerate(pool.map(upload, manifest.objects), start=1):
            if done % 1000 == 0:
                echo(f"objects: {done}/{len(manifest.objects)} ({time.monotonic() - t0:.0f}s)")
