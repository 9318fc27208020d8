"""Command-line tools: the ``croft-pipeline`` console (:mod:`console`), the ``dvc.yaml``
generator (:mod:`dvc_stages`) and the import graph both it and publishing read (:mod:`code_deps`),
a PNG of a report page (:mod:`screenshot`), Kedro-Viz opened on one pipeline and stopped whole
(:mod:`viz`)."""
