"""pretrain: train (or reuse) the project's CLIP checkpoint -> zero-shot check -> model spec."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.pretrain import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.pretrain_clip,
                [
                    "pretrain_pairs",
                    "dataset_roots",
                    "project_dir",
                    "params:clip",
                    "params:pretrain",
                    "params:ingest",
                ],
                "clip_pretrain_report",
                name="pretrain_clip",
            ),
            Node(
                nodes.describe_clip_model,
                [
                    "clip_pretrain_report",
                    "splits",
                    "id_classes",
                    "dataset_roots",
                    "project_dir",
                    "params:clip",
                    "params:pretrain",
                ],
                "clip_model_spec",
                name="describe_clip_model",
            ),
        ]
    )
