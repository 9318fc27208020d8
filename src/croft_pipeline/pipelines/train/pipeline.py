"""train: fit every method per seed -> predictions on every split; the per-epoch validation
curve as a table (dvc plots)."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.train import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.fit_methods,
                [
                    "splits",
                    "image_features_center",
                    "image_features_train_views",
                    "text_features",
                    "id_classes",
                    "params:train",
                    "params:seeds",
                    "params:evaluate.scores",
                    "params:evaluate.knn_bank_split",
                ],
                ["adapter_weights", "train_summary", "training_runs"],
                name="fit_methods",
            ),
            Node(
                nodes.predict_splits,
                [
                    "splits",
                    "image_features_center",
                    "text_features",
                    "adapter_weights",
                    "train_summary",
                ],
                "predictions",
                name="predict_splits",
            ),
            Node(
                nodes.validation_curve,
                "train_summary",
                "validation_accuracy_curve",
                name="validation_curve",
            ),
        ]
    )
