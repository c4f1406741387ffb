"""The manifest: a recorded item is in the file (the OS has it) before ``record`` returns — all a killed process
needs — and the re-run trusts an entry only while every output still hashes to what was recorded."""
import json

from regenrt.hashing import sha256_bytes
from regenrt.runtime.manifest import MANIFEST_NAME, Manifest


def test_each_record_reaches_the_file_at_once_and_outputs_are_verified(tmp_path):
    manifest = Manifest(tmp_path)
    for i in range(3):
        (tmp_path / f"a{i}.png").write_bytes(b"x%d" % i)
        manifest.record(f"a{i}", "src", "eng", "opt", {f"a{i}.png": sha256_bytes(b"x%d" % i)})
        lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()  # another reader, before close
        assert [json.loads(line)["id"] for line in lines] == [f"a{k}" for k in range(i + 1)]
    manifest.close()
    again = Manifest(tmp_path)
    assert again.is_done("a1", "src", "eng", "opt", tmp_path)
    (tmp_path / "a1.png").write_bytes(b"")  # what a power loss can leave of an output written without fsync
    assert not again.is_done("a1", "src", "eng", "opt", tmp_path)
    (tmp_path / "a2.png").unlink()
    assert not again.is_done("a2", "src", "eng", "opt", tmp_path)
    assert not again.is_done("a0", "src", "other engine", "opt", tmp_path)
