"""Runtime: engines (backends selected by artefact kind), tasks' pre/post-processing and the pipeline."""
