"""The disk caches are bounded: the least recently used files go first, until the limit holds."""
import os
import time

from regenrt.runtime.disk_cache import prune


def test_the_least_recently_used_files_go_until_the_cache_fits(tmp_path):
    for i in range(5):
        path = tmp_path / "openvino" / f"blob{i}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 1000)
        old = time.time() - 1000 + i * 100
        os.utime(path, (old, old))
    removed = prune(tmp_path / "openvino", limit=2500)
    left = sorted(p.name for p in (tmp_path / "openvino").iterdir())
    assert removed == 3000 and left == ["blob3", "blob4"]
    assert prune(tmp_path / "openvino", limit=2500) == 0
