"""A user's ONNX with external data: the data files must be plain files inside the model's directory. Absolute
or climbing locations, symbolic links and hard links are refused with a typed error before ONNX Runtime opens
anything (it would refuse some of them itself, but as an untyped error, exit 1). Real files and links."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from regenrt.errors import RegenrtError
from regenrt.runtime.engine import check_external_data


def _model(directory, location):
    """A one-node ONNX whose weight lives in external data at ``location`` (relative to ``directory``)."""
    weight = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    path = directory / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())  # as a user's file may be: no checks on save
    return path


def _data(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ones((4,), np.float32).tobytes())


def test_plain_data_file_beside_the_model_is_accepted(tmp_path):
    _data(tmp_path / "model.onnx.data")
    check_external_data(_model(tmp_path, "model.onnx.data"))
    _data(tmp_path / "weights" / "w.bin")
    check_external_data(_model(tmp_path, "weights/w.bin"))


@pytest.mark.parametrize("case", ["absolute", "climbing", "symlink", "linked-dir", "hardlink", "missing"])
def test_data_outside_or_through_links_is_refused(tmp_path, case):
    outside = tmp_path / "outside"
    _data(outside / "secret.bin")
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    location = {"absolute": str(outside / "secret.bin"), "climbing": "../outside/secret.bin",
                "symlink": "w.bin", "linked-dir": "d/secret.bin", "hardlink": "w.bin", "missing": "nope.bin"}[case]
    if case == "symlink":
        os.symlink(outside / "secret.bin", model_dir / "w.bin")
    elif case == "linked-dir":
        os.symlink(outside, model_dir / "d")
    elif case == "hardlink":
        os.link(outside / "secret.bin", model_dir / "w.bin")
    with pytest.raises(RegenrtError, match="external data"):
        check_external_data(_model(model_dir, location))


def test_external_data_files_are_part_of_the_engine_identity(tmp_path):
    from regenrt.runtime.engine import artefact_files

    _data(tmp_path / "weights" / "w.bin")
    path = _model(tmp_path, "weights/w.bin")
    assert artefact_files(path) == [path, tmp_path / "weights" / "w.bin"]
