"""The decode/encode thread pool has the size asked for (default 2)."""
from regenrt.runtime.pipeline import run_directory
from regenrt.tasks.runtime import RunOptions

from .helpers import save_png


def test_an_explicit_count_is_used_and_the_default_is_two_beside_a_cpu_engine(segmentation_setup, tmp_path,
                                                                               monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import regenrt.runtime.pipeline as pipeline
    from regenrt.runtime import Engine
    from regenrt.tasks.synthetic import synthetic_pictures

    for i, pic in enumerate(synthetic_pictures(4, 64, 64, 3, seed=1)):
        save_png(tmp_path / "in" / f"p{i}.png", pic)
    engine = Engine.load(segmentation_setup[1])
    pools: list[int] = []

    class Recording(ThreadPoolExecutor):
        def __init__(self, max_workers=None, thread_name_prefix=""):
            if thread_name_prefix == "regenrt-io":
                pools.append(max_workers)
            super().__init__(max_workers, thread_name_prefix)

    monkeypatch.setattr(pipeline, "ThreadPoolExecutor", Recording)
    for workers in (None, 3):
        summary = run_directory(engine, tmp_path / "in", tmp_path / f"out{workers}", RunOptions(**({} if workers is None else {"workers": workers})))
        assert summary.done == 4
    assert pools == [2, 3]
