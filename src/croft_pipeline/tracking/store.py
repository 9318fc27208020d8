"""A local MLflow store and where it keeps its artifacts, for a project that was copied or moved.

An SQLite store (``mlflow.db``) records absolute paths: each experiment's artifact location
(``<project>/mlruns/<experiment id>``), each run's artifact URI, each registered version's source
and storage location, each logged model's. A copy of the project still names the old folder, and
its runs would write there without a word. :func:`misplaced_artifacts` finds that (a run then
stops before it starts: ``hooks.tracking_store``); :func:`relocate` points the paths at the
``mlruns/`` beside the database (``croft-pipeline relocate-store``). MLflow has no API to change
an artifact location: :func:`relocate` rewrites the rows by hand, with ``sqlite3``, in one
transaction, in the columns that MLflow 3's schema keeps paths in (:data:`PATH_COLUMNS`).
Kedro-free.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

ARTIFACT_DIR = "mlruns"  # beside mlflow.db: MLflow's default artifact root, from the project root
FIX = "croft-pipeline relocate-store"
PATH_COLUMNS = (  # (table, column, which rows): where the SQLite store keeps artifact paths
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("model_versions", "source", ""),  # MLflow 3: models:/<model id>; a path before
    ("model_versions", "storage_location", ""),
    ("logged_models", "artifact_location", ""),
    ("trace_tags", "value", "key = 'mlflow.artifactLocation'"),
)


class StoreError(RuntimeError):
    """The store cannot be relocated; the message says what to do."""


@dataclass(frozen=True)
class Relocated:
    old: str  # an artifact root the store named
    new: str  # the mlruns/ beside the database
    rows: dict[str, int]  # rows rewritten, by table


def sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (a relative one from the working directory, as
    MLflow opens it); ``None`` for any other store."""
    prefix = "sqlite:///"
    return Path(os.path.realpath(uri[len(prefix) :])) if uri.startswith(prefix) else None


def local_path(location: str) -> Path | None:
    """The folder of a local artifact location (a path or a ``file:`` URI); ``None`` for a
    remote one (``mlflow-artifacts:``, ``s3://``, ...)."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location) if not parsed.scheme else None


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def misplaced_artifacts(tracking_uri: str) -> str | None:
    """One line naming the database, the folder outside it where it keeps an experiment's
    artifacts, and the fix; ``None`` when every local artifact location lies under the
    database's folder (or the store is not a local SQLite file, or does not exist yet)."""
    database = sqlite_database(tracking_uri)
    if database is None or not database.is_file():
        return None
    from mlflow import MlflowClient  # an MLflow API does this part: reading the experiments
    from mlflow.entities import ViewType

    root = database.parent
    for experiment in MlflowClient(tracking_uri).search_experiments(view_type=ViewType.ALL):
        path = local_path(experiment.artifact_location)
        if path is not None and not _inside(path, root):
            return (
                f"the MLflow store {database} keeps the artifacts of experiment "
                f"{experiment.name!r} in {path}, outside {root}: the project was copied or "
                f"moved, and its runs would write into the old folder; run `{FIX}` in {root} "
                f"(it points mlflow.db's artifact paths at {root / ARTIFACT_DIR})"
            )
    return None


def relocate(database: str | os.PathLike) -> list[Relocated]:
    """Point every artifact path of ``database`` under an old artifact root (the folder of an
    experiment's location that lies outside the database's folder) at the same path under the
    ``mlruns/`` beside the database, in one transaction. Refused (:class:`StoreError`) when that
    ``mlruns/`` does not exist: copy it first. Returns one :class:`Relocated` per old root."""
    database = Path(os.path.realpath(database))
    if not database.is_file():
        raise StoreError(f"{database}: no such MLflow database")
    target = database.parent / ARTIFACT_DIR
    with closing(sqlite3.connect(database)) as db, db:  # commits, or rolls back on an error
        old_roots = sorted(
            {
                str(path.parent)
                for (location,) in db.execute("SELECT artifact_location FROM experiments")
                if (path := local_path(location or "")) is not None
                and not _inside(path, database.parent)
            }
        )
        if old_roots and not target.is_dir():
            raise StoreError(
                f"{target} does not exist: copy the {ARTIFACT_DIR}/ folder that was beside the "
                f"old {database.name} ({old_roots[0]}) next to {database}, then run `{FIX}` again"
            )
        columns = [entry for entry in PATH_COLUMNS if _has_column(db, *entry[:2])]
        return [_rewrite(db, columns, old, str(target)) for old in old_roots]


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info('{table}')"))


def _rewrite(db: sqlite3.Connection, columns, old: str, new: str) -> Relocated:
    """Replace the prefix ``old`` (as a path and as a ``file:`` URI) with ``new`` in
    ``columns``: a value equal to it, or under it (followed by ``/``)."""
    rows: dict[str, int] = {}
    prefixes = [(old, new), (Path(old).as_uri(), Path(new).as_uri())]
    for table, column, where in columns:
        for before, after in prefixes:
            cursor = db.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE ({column} = ? OR substr({column}, 1, ?) = ?)"
                + (f" AND {where}" if where else ""),
                (after, len(before) + 1, before, len(before) + 1, before + "/"),
            )
            rows[table] = rows.get(table, 0) + cursor.rowcount
    return Relocated(old, new, rows)
