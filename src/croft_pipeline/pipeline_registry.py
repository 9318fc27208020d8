"""The project's pipelines: ingest -> pretrain -> embed -> train -> evaluate."""

from kedro.pipeline import Pipeline

from croft_pipeline.pipelines import embed, evaluate, ingest, pretrain, train

PIPELINE_ORDER = ("ingest", "pretrain", "embed", "train", "evaluate")


def register_pipelines() -> dict[str, Pipeline]:
    modules = {
        "ingest": ingest,
        "pretrain": pretrain,
        "embed": embed,
        "train": train,
        "evaluate": evaluate,
    }
    pipelines = {name: modules[name].create_pipeline() for name in PIPELINE_ORDER}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
