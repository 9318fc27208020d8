"""evaluate: the calibrated threshold applied to score's metrics -> summary -> headline -> plots ->
report -> MLflow -> register the model (last: a run that fails earlier registers nothing)."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.evaluate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.apply_threshold,
                ["evaluation_scores", "score_results", "calibration", "params:evaluate"],
                "evaluation_results",
                name="apply_threshold",
            ),
            Node(
                nodes.summarise_metrics,
                ["evaluation_results", "evaluation_domain_results"],
                ["evaluation_summary", "evaluation_domain_summary", "evaluation_metrics"],
                name="summarise_metrics",
            ),
            Node(
                nodes.summarise_headline,
                ["evaluation_summary", "evaluation_comparisons", "params:evaluate"],
                "evaluation_headline",
                name="summarise_headline",
            ),
            Node(
                nodes.render_plots,
                [
                    "evaluation_scores",
                    "evaluation_summary",
                    "evaluation_domain_summary",
                    "wise_curves",
                    "calibration",
                    "params:evaluate",
                ],
                "evaluation_plots",
                name="render_plots",
            ),
            Node(
                nodes.render_report,
                [
                    "evaluation_summary",
                    "evaluation_domain_summary",
                    "evaluation_comparisons",
                    "train_summary",
                    "evaluation_plots",
                    "evaluation_scores",
                    "calibration",
                    "provenance",
                    "params:evaluate",
                ],
                "evaluation_report",
                name="render_report",
            ),
            Node(
                nodes.log_to_mlflow,
                ["evaluation_results", "evaluation_summary", "evaluation_report", "training_runs"],
                "evaluation_logged",
                name="log_to_mlflow",
            ),
            Node(
                nodes.register_model,
                [
                    "train_summary",
                    "calibration",
                    "text_features",
                    "clip_model_spec",
                    "adapter_weights",
                    "evaluation_summary",
                    "evaluation_comparisons",
                    "evaluation_logged",
                    "predictions",
                    "evaluation_scores",
                    "image_features_center",
                    "project_dir",
                    "provenance",
                    "params:clip",
                    "params:evaluate",
                    "params:ingest",
                ],
                "model_registration",
                name="register_model",
            ),
        ]
    )
