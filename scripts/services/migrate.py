"""Move an SQLite MLflow store (``mlruns/mlflow.db`` + its artifact folders) into a running server.

MLflow has no tool for this: ``mlflow migrate-filestore`` reads only file stores and writes only
SQLite, and mlflow-export-import re-creates runs under new ids (breaking ``runs:/``, ``models:/m-…``,
registry versions and sbilab's tags that name runs). Both stores are MLflow's own SQLAlchemy schema,
so this copies every row of every table in one transaction, ids included (the way
``migrate-filestore`` writes its rows), after bringing a copy of the source to the server's schema
revision with ``mlflow db upgrade``. Only experiment ids are numbers that two stores share: an
experiment whose name the server already has is merged into it, the others get new ids. Local
artifact locations (``file://…`` or plain paths) are copied into the server's
``--artifacts-destination`` and rewritten to ``mlflow-artifacts:/migrated/<source>/<k>``, so clients
reach them through the server like new ones. Rows the server already has are skipped, so a second
run of the same migration adds nothing; a registered model version that exists with another run
stops the migration before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from .procs import ServiceError

PREFIX = "mlflow-artifacts:/migrated"


@dataclass
class Report:
    """Rows read from the source per table (rows the server had are among them), folders copied."""

    rows: dict[str, int] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    experiments: dict[int, int] = field(default_factory=dict)
    merged: set[int] = field(default_factory=set)  # source experiments that the server already had

    def __str__(self) -> str:
        counted = ", ".join(f"{table} {n}" for table, n in self.rows.items() if n and table in
                            ("experiments", "runs", "params", "metrics", "tags", "logged_models",
                             "registered_models", "model_versions"))
        return f"{counted}; experiment ids {self.experiments}; {len(self.locations)} artifact folder(s)"


def migrate(source: Path, target_url: str, artifacts: Path) -> Report:
    """Copy the store in ``source`` into the PostgreSQL database at ``target_url``, artifacts into ``artifacts``."""
    if not source.is_file():
        raise ServiceError(f"{source}: no such MLflow SQLite file")
    target = sa.create_engine(target_url)
    if target.dialect.name != "postgresql":
        raise ServiceError(f"{target_url}: the target must be the server's PostgreSQL store")
    with tempfile.TemporaryDirectory(prefix="sbilab-migrate-") as tmp:
        copy = Path(tmp) / "source.db"
        try:
            with sqlite3.connect(source) as live, sqlite3.connect(copy) as snapshot:
                live.backup(snapshot)  # consistent even while someone writes to the source
            _revision(sa.create_engine(f"sqlite:///{copy}"))
        except (sqlite3.DatabaseError, sa.exc.DBAPIError) as error:
            raise ServiceError(f"{source}: not an MLflow SQLite store ({str(error).splitlines()[0]})") from None
        _upgrade(copy, _revision(target))
        src = sa.create_engine(f"sqlite:///{copy}")
        src_meta, dst_meta = sa.MetaData(), sa.MetaData()
        src_meta.reflect(src)
        dst_meta.reflect(target)
        token = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]
        report = Report(locations=_locations(src, token))
        with src.connect() as reader, target.begin() as writer:
            _check_registry(reader, writer)
            report.experiments, report.merged = _experiment_ids(reader, writer)
            for old, new in report.locations.items():
                folder = _local_path(old)
                if folder.is_dir():
                    shutil.copytree(folder, artifacts / new[len("mlflow-artifacts:/"):], dirs_exist_ok=True)
            for table in dst_meta.sorted_tables:
                if table.name != "alembic_version" and table.name in src_meta.tables:
                    report.rows[table.name] = _copy_table(reader, writer, src_meta.tables[table.name], table,
                                                          report)
            _reset_sequences(writer, dst_meta.sorted_tables)
    return report


def migrate_into_server(source: Path, state: Path) -> Report:
    """``migrate`` into the server that ``python -m services up`` runs under ``state``."""
    from .stack import read_record

    record = read_record(state)
    if record is None or "backend_store_uri" not in record:
        raise ServiceError(f"no mlflow server runs under {state}: start it first (make server)")
    os.environ["PGPASSFILE"] = record["env"]["PGPASSFILE"]
    return migrate(source, record["backend_store_uri"], Path(record["artifacts_destination"]))


def _revision(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def _upgrade(copy: Path, revision: str) -> None:
    """Bring the copy to the server's schema revision (MLflow's own migrations); fail if it cannot."""
    engine = sa.create_engine(f"sqlite:///{copy}")
    if _revision(engine) == revision:
        return
    done = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{copy}"],
                          capture_output=True, text=True)
    if done.returncode != 0 or _revision(engine) != revision:
        raise ServiceError(f"source schema {_revision(engine)} cannot be brought to the server's {revision} "
                           f"(is the server's MLflow older than the store's?) {done.stderr.strip()[-300:]}")


def _check_registry(reader: sa.Connection, writer: sa.Connection) -> None:
    """Stop when a registered model version exists on the server with another run (two stores, one name)."""
    query = sa.text("SELECT name, version, run_id FROM model_versions")
    theirs = {(name, version): run for name, version, run in writer.execute(query)}
    clashes = [f"{name} v{version}" for name, version, run in reader.execute(query)
               if theirs.get((name, version), run) != run]
    if clashes:
        raise ServiceError(f"the server has other versions under the same names ({', '.join(clashes[:5])}); "
                           "rename those registered models in the source first")


def _experiment_ids(reader: sa.Connection, writer: sa.Connection) -> tuple[dict[int, int], set[int]]:
    """Source experiment id → server id (the server's experiment of the same name, else a new id),
    and the source ids that were merged that way."""
    query = sa.text("SELECT experiment_id, name FROM experiments ORDER BY experiment_id")
    theirs = {name: int(eid) for eid, name in writer.execute(query)}
    next_id = max(theirs.values(), default=0) + 1
    mapping, merged = {}, set()
    for eid, name in reader.execute(query):
        if name in theirs:
            mapping[int(eid)] = theirs[name]
            merged.add(int(eid))
        else:
            mapping[int(eid)], next_id = next_id, next_id + 1
    return mapping, merged


def _locations(src: sa.Engine, token: str) -> dict[str, str]:
    """Local artifact roots of the source's experiments → their new ``mlflow-artifacts:`` URIs."""
    with src.connect() as connection:
        found = connection.execute(sa.text("SELECT DISTINCT artifact_location FROM experiments")).scalars()
        local = sorted({location for location in found if location and urlparse(location).scheme in ("", "file")})
    return {location: f"{PREFIX}/{token}/{index}" for index, location in enumerate(local)}


def _local_path(location: str) -> Path:
    return Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(location)


def _rewrite(value: Any, locations: dict[str, str]) -> Any:
    """A string that starts with a migrated location, pointed at its new one (longest match first)."""
    if not isinstance(value, str):
        return value
    for old in sorted(locations, key=len, reverse=True):
        if value == old or value.startswith(old.rstrip("/") + "/"):
            return locations[old] + value[len(old.rstrip("/")):]
    return value


def _copy_table(reader: sa.Connection, writer: sa.Connection, src: sa.Table, dst: sa.Table, report: Report,
                batch: int = 2000) -> int:
    """Insert the source's rows (locations rewritten, experiment ids mapped), skipping rows the server has."""
    names = [column.name for column in dst.columns if column.name in src.c]
    query = sa.select(*[src.c[n] for n in names])
    if dst.name == "experiments":  # a merged experiment keeps the server's row
        query = query.where(src.c.experiment_id.not_in(sorted(report.merged)))
    count = 0
    for rows in _batches(reader.execute(query), batch):
        values = [{n: _map(n, v, report) for n, v in zip(names, row)} for row in rows]
        writer.execute(pg_insert(dst).on_conflict_do_nothing(), values)
        count += len(rows)
    return count


def _map(column: str, value: Any, report: Report) -> Any:
    if column == "experiment_id" and value is not None:
        mapped = report.experiments.get(int(value), int(value))
        return str(mapped) if isinstance(value, str) else mapped
    return _rewrite(value, report.locations)


def _batches(result: sa.CursorResult, size: int) -> Iterator[list[Any]]:
    while rows := result.fetchmany(size):
        yield rows


def _reset_sequences(writer: sa.Connection, tables: list[sa.Table]) -> None:
    """Point PostgreSQL's serial sequences past the copied ids, so the next new experiment gets a new one."""
    for table in tables:
        for column in table.columns:
            sequence = writer.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": f'"{table.name}"', "c": column.name}).scalar()
            if sequence:
                writer.execute(sa.text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") FROM '
                                       f'"{table.name}"), 0) + 1, false)'), {"s": sequence})
