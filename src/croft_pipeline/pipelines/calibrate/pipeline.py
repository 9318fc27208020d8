"""calibrate: the open-set threshold of every trained method and seed at ``calibrate.tpr`` of
the ID validation split. Its own pipeline (and DVC stage), so a new TPR or score reruns only
this and evaluate, never the fits."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.calibrate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.calibrate,
                [
                    "predictions",
                    "train_summary",
                    "params:calibrate",
                    "params:evaluate.scores",
                    "params:evaluate.knn_bank_split",
                ],
                "calibration",
                name="calibrate",
            ),
        ]
    )
