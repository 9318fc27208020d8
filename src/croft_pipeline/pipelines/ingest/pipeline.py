"""ingest: render/read images -> manifest -> splits -> GX validation gate -> catalog."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.ingest import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.render_dataset,
                ["params:ingest", "project_dir"],
                "emojishift_receipt",
                name="render_dataset",
            ),
            Node(
                nodes.build_manifest_table,
                ["emojishift_receipt", "params:ingest", "project_dir"],
                ["manifest_candidate", "ingest_skipped", "id_classes_candidate"],
                name="build_manifest",
            ),
            Node(
                nodes.build_splits,
                ["manifest_candidate", "params:ingest", "params:seeds"],
                "splits_candidate",
                name="build_splits",
            ),
            Node(
                nodes.build_pretrain_pairs_table,
                ["manifest_candidate", "params:ingest"],
                "pretrain_pairs_candidate",
                name="build_pretrain_pairs",
            ),
            Node(
                nodes.openset_class_kinds,
                ["emojishift_receipt", "params:ingest"],
                "openset_kinds_candidate",
                name="describe_openset_classes",
            ),
            Node(
                nodes.validate_data,
                [
                    "manifest_candidate",
                    "splits_candidate",
                    "id_classes_candidate",
                    "params:ingest",
                    "project_dir",
                ],
                "data_validation_report",
                name="validate_data",
            ),
            Node(
                nodes.publish_validated,
                [
                    "data_validation_report",
                    "manifest_candidate",
                    "splits_candidate",
                    "pretrain_pairs_candidate",
                    "id_classes_candidate",
                    "openset_kinds_candidate",
                    "params:ingest",
                ],
                [
                    "manifest",
                    "splits",
                    "pretrain_pairs",
                    "id_classes",
                    "openset_kinds",
                    "dataset_roots",
                ],
                name="publish_validated_data",
            ),
        ]
    )
