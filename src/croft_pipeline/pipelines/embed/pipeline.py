"""embed: center-view features for every split image, A views per train image, class prompts,
NegLabel's negative labels (WordNet vocabulary, mined against the class prompts)."""

from kedro.pipeline import Node, Pipeline

from croft_pipeline.pipelines.embed import nodes

IMAGE_INPUTS = [
    "splits",
    "clip_model_spec",
    "dataset_roots",
    "project_dir",
    "params:clip",
    "params:embed",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.embed_center_views,
                IMAGE_INPUTS,
                "image_features_center",
                name="embed_center_views",
            ),
            Node(
                nodes.embed_train_views,
                IMAGE_INPUTS,
                "image_features_train_views",
                name="embed_train_views",
            ),
            Node(
                nodes.embed_class_prompts,
                ["id_classes", "clip_model_spec", "project_dir", "params:clip"],
                "text_features",
                name="embed_class_prompts",
            ),
            Node(
                nodes.read_negative_vocabulary,
                "params:embed",
                "negative_vocabulary",
                name="read_negative_vocabulary",
            ),
            Node(
                nodes.embed_negative_labels,
                [
                    "negative_vocabulary",
                    "text_features",
                    "clip_model_spec",
                    "project_dir",
                    "params:clip",
                    "params:embed",
                ],
                "negative_labels",
                name="embed_negative_labels",
            ),
        ]
    )
