"""Methods on cached CLIP features: CRoFT (faithful and clean) and the baselines.

One contract (:class:`Method`: fit on features, return logits), one registry (:data:`METHODS`),
and :func:`build_method` to rebuild a method for serving from its name, configuration, text
features and logit scale (then :meth:`Method.load_state_dict`).

Lazy (PEP 562): ``croft_pipeline.methods.params`` (the torch-free hyper-parameter models the
start-of-run check reads) imports without torch; a name below loads the methods on first use.
"""

_HOMES = {
    **dict.fromkeys(
        (
            "METHODS",
            "EvalSet",
            "FitReport",
            "LogFn",
            "Method",
            "NonFiniteLossError",
            "TrainSet",
            "partition_id",
        ),
        "base",
    ),
    **dict.fromkeys(("build_method", "restore_method"), "registry"),
    **dict.fromkeys(("Selected", "fit_selected", "grid_points"), "selection"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from croft_pipeline.methods import base, registry, selection  # registry: registers them all

    return getattr({"base": base, "registry": registry, "selection": selection}[_HOMES[name]], name)
