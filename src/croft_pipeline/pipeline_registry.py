"""The project's pipelines: ingest -> pretrain -> embed -> train -> calibrate | score -> evaluate
(calibrate and score each need train alone), each node tagged
with its pipeline's name (Kedro-Viz filters by tag; ``kedro run --tags`` selects by it)."""

from kedro.pipeline import Pipeline

from croft_pipeline.pipelines import calibrate, embed, evaluate, ingest, pretrain, score, train

PIPELINE_ORDER = ("ingest", "pretrain", "embed", "train", "calibrate", "score", "evaluate")


def pipelines_from(first: str) -> tuple[str, ...]:
    """The pipelines from ``first`` on, in order: each reads only what those before it wrote."""
    return PIPELINE_ORDER[PIPELINE_ORDER.index(first) :]


def register_pipelines() -> dict[str, Pipeline]:
    modules = {
        "ingest": ingest,
        "pretrain": pretrain,
        "embed": embed,
        "train": train,
        "calibrate": calibrate,
        "score": score,
        "evaluate": evaluate,
    }
    pipelines = {
        name: Pipeline(modules[name].create_pipeline(), tags=name) for name in PIPELINE_ORDER
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
