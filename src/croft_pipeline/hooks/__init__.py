"""Project hooks: one log line per node with its wall time; parameters checked at the start;
every MLflow run of a pipeline run tagged with its provenance, the pipeline's run with readable
Kedro tags; a run's last lines say what it produced."""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from croft_pipeline.config.loader import CONFIG_LOADER_ARGS, ConfigError, parameter_files
from croft_pipeline.config.rules import ParameterError
from croft_pipeline.config.schema import check_known_keys, check_parameters
from croft_pipeline.tracking.provenance import ProvenanceRecorder, recorder_for, ui_address

logger = logging.getLogger(__name__)


class NodeTimingHook:
    """Logs ``node <name> done in <s> s`` after every node."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.info("node %s done in %.2f s", node.name, time.perf_counter() - started)

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.error("node %s failed after %.2f s", node.name, time.perf_counter() - started)


class ParameterCheckHook:
    """Refuses a run's parameters before it starts, as a one-line :class:`ConfigError` (its
    cause the :class:`ParameterError`): an unknown key as soon as the context exists (first of
    the ``after_context_created`` hooks, so before kedro-mlflow opens its store, and before
    anything is written), every value before the pipeline runs (first of the
    ``before_pipeline_run`` hooks; the devices and libraries a value names are checked only
    for a run, not for ``kedro viz`` or a notebook)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        # the loader's parameters, not context.params (Kedro validates those against the type
        # hints of every pipeline's nodes, which imports them all: seconds before the refusal)
        loader = context.config_loader
        with _refused():
            check_known_keys(loader["parameters"], parameter_files(loader))

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, catalog: Any) -> None:
        with _refused():
            check_parameters(catalog.load("parameters"))


@contextmanager
def _refused():
    """A :class:`ParameterError` (or ``RayMissingError``) inside becomes a :class:`ConfigError`
    with its message."""
    from croft_pipeline.distributed import RayMissingError

    try:
        yield
    except (ParameterError, RayMissingError) as error:
        raise ConfigError(str(error)) from error


class ProvenanceHook:
    """Gives the run's nodes the ``provenance`` dataset and tags MLflow with the same facts: the
    pipeline's run at its start (with its description, ``mlflow.note.content``), then, before
    kedro-mlflow ends it, that run and every run nested below it with the facts at the end (the
    data digests of what the run wrote). Wrappers, like ``RunLockHook``: code after ``yield`` in
    ``before_pipeline_run`` runs once kedro-mlflow has opened its run, code before ``yield`` in
    the end hooks before kedro-mlflow closes it."""

    def __init__(self) -> None:
        self._ui, self._catalog = ui_address(None), {}
        self._recorder: ProvenanceRecorder | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            self._ui = ui_address(context.config_loader["mlflow"].get("ui"))
        except (KeyError, ValueError):  # no mlflow.yml: the default address
            self._ui = ui_address(None)

    @hook_impl
    def after_catalog_created(self, conf_catalog: dict[str, Any]) -> None:
        self._catalog = dict(conf_catalog or {})

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any):
        from croft_pipeline import tracking  # MLflow only when a pipeline runs
        from croft_pipeline.datasets import ProvenanceDataset
        from croft_pipeline.hooks.run_lock import pipeline_label

        result = yield  # kedro-mlflow opens the pipeline's run here
        self._recorder = recorder_for(
            run_params["project_path"],
            run_params.get("env") or CONFIG_LOADER_ARGS["default_run_env"],
            pipeline_label(run_params),
            self._catalog,
            tracking.active_run_ref(self._ui),
            run_params.get("runtime_params"),
        )
        catalog["provenance"] = ProvenanceDataset(self._recorder)
        facts = self._recorder.current()
        tracking.tag_active_run({**facts.tags(), "mlflow.note.content": facts.description()})
        return result

    @hook_impl(wrapper=True)
    def after_pipeline_run(self):
        self._tag_runs()
        return (yield)  # kedro-mlflow ends its run here

    @hook_impl(wrapper=True)
    def on_pipeline_error(self):
        self._tag_runs()
        return (yield)

    def _tag_runs(self) -> None:
        """Never fails the run: an untagged run is logged, the run's own outcome stands."""
        import mlflow

        from croft_pipeline import tracking

        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        try:
            tracking.tag_run_tree(recorder.current().tags())
        except (mlflow.exceptions.MlflowException, OSError) as error:
            logger.warning("MLflow runs not tagged with their provenance: %s", error)


SESSION_TAG = "kedro.session_id"  # kedro-mlflow's `run_id` tag, renamed: it is no MLflow run id
KEDRO_DEFAULT_RUNNER = "SequentialRunner"  # what KedroSession.run uses when given none


class PipelineRunTagsHook:
    """Rewrites two tags kedro-mlflow copies from Kedro's run parameters onto the pipeline's
    run: ``run_id`` (Kedro's session id) becomes ``kedro.session_id``, and ``runner`` (the runner
    object's repr) its class name; and tags the run ``croft.role: pipeline``. A wrapper: after
    ``yield``, kedro-mlflow has opened and tagged its run."""

    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params: dict[str, Any]):
        from croft_pipeline import tracking  # MLflow only when a pipeline runs

        result = yield
        tracking.tag_active_run(pipeline_run_tags(run_params), remove=("run_id",))
        return result


def pipeline_run_tags(run_params: dict[str, Any]) -> dict[str, str]:
    """The pipeline run's tags that replace kedro-mlflow's ``run_id`` and ``runner``."""
    from croft_pipeline.tracking import ROLE

    return {
        SESSION_TAG: str(run_params["run_id"]),
        "runner": runner_class(run_params.get("runner")),
        ROLE: "pipeline",
    }


def runner_class(recorded: str | None) -> str:
    """The runner's class name from what Kedro records: a class name, an object's repr
    (``<kedro.runner.sequential_runner.SequentialRunner object at 0x7f...>``), or ``None``
    (Kedro's default runner)."""
    if recorded in (None, "", "None"):
        return KEDRO_DEFAULT_RUNNER
    found = re.fullmatch(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", recorded)
    return found.group(1).rsplit(".", 1)[-1] if found else recorded


# What a run produced for its user (its last log lines), in this order, when the run made it.
HEADLINE_OUTPUTS = (
    "evaluation_report",
    "evaluation_headline",
    "evaluation_metrics",
    "model_registration",
)


class RunSummaryHook:
    """Ends a run with one line per headline artifact it produced (the report, the metrics, the
    registered version and its aliases) and the command to try next."""

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        produced = pipeline.all_outputs()
        root = Path(run_params["project_path"])
        for name in HEADLINE_OUTPUTS:
            if name in produced and (line := _produced_line(name, catalog, root)):
                logger.info("produced %s", line)


def _produced_line(name: str, catalog: Any, root: Path) -> str:
    if name == "model_registration":
        registration = catalog.load(name)
        if not registration.get("registered"):
            from croft_pipeline.publishing.experiments import aliases_stay

            line = f"no registered version ({registration.get('reason', 'registration off')})"
            held = "alias_versions" in registration  # an experiment's (publishing.experiments)
            return f"{line}; {aliases_stay(registration)}" if held else line
        aliases = ", ".join(f"@{alias}" for alias in registration["aliases"])
        champion = registration.get("champion_version")
        return (
            f"{registration['model_uri']} ({aliases}; champion: "
            f"{'version ' + champion if champion else 'none yet'}); next: "
            f"croft-pipeline predict --images DIR --out predictions.csv"
        )
    filepath = getattr(catalog.get(name), "_filepath", None)
    if filepath is None:
        return ""
    path = Path(str(filepath))
    return str(path.relative_to(root) if path.is_relative_to(root) else path)
