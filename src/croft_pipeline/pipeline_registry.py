"""The project's pipelines: ingest -> pretrain -> embed -> train -> evaluate, each node tagged
with its pipeline's name (Kedro-Viz filters by tag; ``kedro run --tags`` selects by it)."""

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
    pipelines = {
        name: Pipeline(modules[name].create_pipeline(), tags=name) for name in PIPELINE_ORDER
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
