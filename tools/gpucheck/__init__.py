"""The pieces of ``./dev.sh gpu-check`` (tools/gpu_check.py): the stage runner (:mod:`.stages`), the per-test
results each stage's pytest writes as it goes (:mod:`.live`), the goals read from those rows (:mod:`.goals`) and
the report (:mod:`.report`). Plain modules of a script, not part of the regenrt package."""
