"""ingest: render/read images -> manifest -> splits -> GX validation gate -> catalog.

Every node before the gate writes only memory datasets (``*_candidate``); the gate node returns
all the files, tables and reports, so Kedro saves nothing of a run that fails.
"""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.ingest import nodes

PUBLISHED = [  # the catalog entries of conf/base/catalog_ingest.yml that the gate node returns
    "emojishift_receipt",
    "manifest",
    "ingest_skipped",
    "splits",
    "pretrain_pairs",
    "id_classes",
    "openset_kinds",
    "dataset_roots",
    "data_validation_report",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.render_dataset,
                ["params:ingest", "project_dir"],
                "render_receipt_candidate",
                name="render_dataset",
            ),
            Node(
                nodes.build_manifest_table,
                ["render_receipt_candidate", "params:ingest", "project_dir"],
                ["manifest_candidate", "skipped_candidate", "id_classes_candidate"],
                name="build_manifest_table",
            ),
            Node(
                nodes.build_splits,
                ["manifest_candidate", "params:ingest", "params:seeds", "project_dir"],
                "splits_candidate",
                name="build_splits",
            ),
            Node(
                nodes.build_pretrain_pairs_table,
                ["manifest_candidate", "params:ingest"],
                "pretrain_pairs_candidate",
                name="build_pretrain_pairs_table",
            ),
            Node(
                nodes.openset_class_kinds,
                ["render_receipt_candidate", "params:ingest"],
                "openset_kinds_candidate",
                name="openset_class_kinds",
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
                "validation_report_candidate",
                name="validate_data",
            ),
            Node(
                nodes.publish_validated,
                {
                    "report": "validation_report_candidate",
                    "render_receipt": "render_receipt_candidate",
                    "manifest": "manifest_candidate",
                    "skipped": "skipped_candidate",
                    "splits": "splits_candidate",
                    "pretrain_pairs": "pretrain_pairs_candidate",
                    "id_classes": "id_classes_candidate",
                    "openset_kinds": "openset_kinds_candidate",
                    "params": "params:ingest",
                },
                {name: name for name in PUBLISHED},
                name="publish_validated",
            ),
        ]
    )
