"""``croft-pipeline``: predict a folder of images with a served model, or say what a model is;
and, after copying or moving the project, point its MLflow store at its own ``mlruns/``.

    croft-pipeline predict --model models:/croft-clip@champion --images DIR --out predictions.csv
    croft-pipeline info --model models:/croft-clip@champion
    croft-pipeline relocate-store        # in the project root: mlflow.db's artifact paths

``--model`` is an MLflow model URI (``models:/name@alias``, ``models:/name/version``) or a local
model folder. A file the model refuses gets a CSV row with its ``error`` (exit status 0, the
count in the last line); ``--strict`` stops at it instead (exit status 1, nothing written). The pipelines themselves run with ``kedro run`` (or ``python -m croft_pipeline``).
Not ``cli.py``: Kedro imports ``<package>.cli`` as the project's own ``kedro`` commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import croft_pipeline  # noqa: F401  (offline defaults before MLflow loads)
from croft_pipeline.serving.predict_folder import DEFAULT_BATCH_SIZE
from croft_pipeline.tracking.server import denied, is_remote

DEFAULT_MODEL = "models:/croft-clip@champion"
FALLBACK_MODEL = "models:/croft-clip@candidate"  # the last registered run's model
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # conf/base/mlflow.yml, from the project root
ERRORS_SHOWN = 5  # refused files named on stderr; all of them are in the CSV's error column


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="croft-pipeline", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="predict every image of a folder into a CSV")
    info = commands.add_parser("info", help="what a model is: CLIP, method, classes, metrics")
    for command in (predict, info):
        command.add_argument(
            "--model",
            help=f"default: {DEFAULT_MODEL}, or {FALLBACK_MODEL} while no version is champion "
            "(the quality gates have not passed yet; a note on stderr says so)",
        )
        command.add_argument(
            "--tracking-uri",
            default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
            help=f"MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI or "
            f"{DEFAULT_TRACKING_URI})",
        )
    predict.add_argument("--images", required=True, help="folder of images (searched recursively)")
    predict.add_argument("--out", required=True, help="CSV file to write")
    predict.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first file the model refuses, naming it, and write nothing (default: "
        "a row with its error, the other files predicted)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    store = commands.add_parser(
        "relocate-store",
        help="after copying or moving the project: point mlflow.db's artifact paths at the "
        "mlruns/ beside it",
    )
    store.add_argument("--db", default="mlflow.db", help="the SQLite store (default: mlflow.db)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error it expects (a bad folder, model or URI) is one line on stderr
    and exit status 1."""
    args = parser().parse_args(argv)
    if args.command == "relocate-store":
        return relocate_store(args.db)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_registry_uri(args.tracking_uri)
    try:
        if args.model is None:
            args.model = default_model(args.command)
        print(COMMANDS[args.command](args))
    except (OSError, ValueError, KeyError, MlflowException) as error:
        refused = denied(args.tracking_uri, error, os.environ.get("MLFLOW_TRACKING_USERNAME"))
        message = refused if is_remote(args.tracking_uri) and refused else error
        hint = _hint(args.model or DEFAULT_MODEL, error)
        print(f"croft-pipeline {args.command}: {message}{hint}", file=sys.stderr)
        return 1
    return 0


def default_model(command: str) -> str:
    """``DEFAULT_MODEL``; while its alias is not set but ``FALLBACK_MODEL``'s is, the fallback,
    with a note on stderr quoting the version's description (its gates' outcome)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from croft_pipeline.publishing.registry import alias_version

    name, alias = _name_and_alias(DEFAULT_MODEL)
    if alias_version(name, alias) is not None:
        return DEFAULT_MODEL
    try:
        version = MlflowClient().get_model_version_by_alias(*_name_and_alias(FALLBACK_MODEL))
    except MlflowException:
        return DEFAULT_MODEL  # neither is set: the error and its hint say what to do
    print(
        f"croft-pipeline {command}: no version of {name!r} is {alias} yet; using "
        f"{FALLBACK_MODEL}, version {version.version}: {version.description or ''}",
        file=sys.stderr,
    )
    return FALLBACK_MODEL


def _name_and_alias(model: str) -> tuple[str, str]:
    name, alias = model.removeprefix("models:/").split("@", 1)
    return name, alias


def _hint(model: str, error: Exception) -> str:
    """What to do when the alias a URI names is not set (``champion`` moves only when the quality
    gates pass), in the same line: the aliases the registered model does have."""
    if "@" not in model or "alias" not in str(error).lower() or "not found" not in str(error):
        return ""
    name, alias = _name_and_alias(model)
    text = f" No version of {name!r} has the alias {alias!r}"
    if alias == "champion":
        text += (
            " (it moves only when the quality gates pass; the gates of each version are in its "
            "description, `croft-pipeline info --model models:/<name>/<version>`, and the last "
            "run's in data/08_reporting/model_registration.json)"
        )
    aliases = _aliases(name)
    if not aliases:
        return f"{text}; {name!r} has no aliases: `kedro run` registers a version."
    listed = ", ".join(f"@{a} (version {v})" for a, v in sorted(aliases.items()))
    use = "candidate" if "candidate" in aliases else sorted(aliases)[0]
    return f"{text}; its aliases: {listed}. Use models:/{name}@{use}."


def _aliases(name: str) -> dict[str, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def predict(args: argparse.Namespace) -> str:
    from croft_pipeline.serving.predict_folder import predict_folder

    result = predict_folder(
        args.model,
        args.images,
        args.out,
        args.batch_size,
        progress=not args.no_progress,
        strict=args.strict,
    )
    for row in result.errors.head(ERRORS_SHOWN).itertuples():
        print(f"croft-pipeline predict: {row.path}: {row.error}", file=sys.stderr)
    if len(result.errors) > ERRORS_SHOWN:
        more = len(result.errors) - ERRORS_SHOWN
        print(f"croft-pipeline predict: {more} more in the error column", file=sys.stderr)
    return result.summary(args.out)


def info(args: argparse.Namespace) -> str:
    from croft_pipeline.serving.model_info import format_info, model_info

    facts = model_info(args.model)
    return json.dumps(facts, indent=2) if args.json else format_info(facts)


def relocate_store(database: str) -> int:
    """``tracking.store.relocate``, one line per old artifact root (or the error, exit 1)."""
    import sqlite3

    from croft_pipeline.tracking.store import StoreError, relocate

    try:
        moved = relocate(database)
    except (StoreError, sqlite3.Error) as error:
        print(f"croft-pipeline relocate-store: {error}", file=sys.stderr)
        return 1
    for entry in moved:
        counts = ", ".join(f"{rows} {table}" for table, rows in entry.rows.items() if rows)
        print(f"{database}: artifact paths under {entry.old} now under {entry.new} ({counts})")
    if not moved:
        print(f"{database}: every artifact path already lies beside it; nothing to do")
    return 0


COMMANDS = {"predict": predict, "info": info}


if __name__ == "__main__":
    sys.exit(main())
