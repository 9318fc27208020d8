"""The project's configuration: how Kedro loads it (:mod:`.loader`), the rules a value must
keep (:mod:`.rules`) and the typed model of every parameter, checked when a run starts
(:mod:`.schema`). Importing this package loads neither torch nor open_clip."""
