"""A run whose local MLflow store keeps its artifacts outside the store's folder (a copied or
moved project, whose ``mlflow.db`` still names the old ``mlruns/``) stops before the run lock,
kedro-mlflow's run or any node: one line naming both folders and the fix
(``tracking.store``)."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from croft_pipeline.hooks.errors import RunRefused


class TrackingStoreHook:
    """Checks the store kedro-mlflow set up (``after_context_created``) first of all the
    ``before_pipeline_run`` hooks: a ``tryfirst`` wrapper, ahead of ``RunLockHook``'s."""

    @hook_impl(wrapper=True, tryfirst=True)
    def before_pipeline_run(self):
        import mlflow  # MLflow only when a pipeline runs

        from croft_pipeline.tracking.store import misplaced_artifacts

        if problem := misplaced_artifacts(mlflow.get_tracking_uri()):
            raise RunRefused(problem)
        return (yield)
