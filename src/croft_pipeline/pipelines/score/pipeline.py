"""score: every OOD score of every evaluated sample -> threshold-free metrics -> paired
intervals; WiSE-FT curves; ROC and histogram tables (dvc plots). Nothing here reads the
calibrated threshold (evaluate applies it)."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.score import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.score_samples,
                [
                    "predictions",
                    "train_summary",
                    "openset_kinds",
                    "negative_labels",
                    "image_features_center",
                    "text_features",
                    "adapter_weights",
                    "params:evaluate",
                ],
                ["evaluation_scores", "score_choices"],
                name="score_samples",
            ),
            Node(
                nodes.compute_metrics,
                ["evaluation_scores", "params:evaluate"],
                ["score_results", "evaluation_domain_results"],
                name="compute_metrics",
            ),
            Node(
                nodes.compare_with_intervals,
                ["evaluation_scores", "score_results", "params:evaluate"],
                "evaluation_comparisons",
                name="compare_with_intervals",
            ),
            Node(
                nodes.trace_wise_curves,
                [
                    "splits",
                    "image_features_center",
                    "text_features",
                    "adapter_weights",
                    "train_summary",
                    "params:train.wise",
                ],
                "wise_curves",
                name="trace_wise_curves",
            ),
            Node(
                nodes.tabulate_curves,
                ["evaluation_scores", "params:evaluate"],
                ["roc_curve", "score_histogram"],
                name="tabulate_curves",
            ),
        ]
    )
