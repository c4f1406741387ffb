"""The Triton model repository regenrt writes, parsed back with Triton's own ModelConfig protobuf (from the
tritonclient wheel) and checked against the engine's metadata; the model file is the verified artefact, byte for
byte. The ensemble with the pre/post models: test_triton_ensemble.py."""
import importlib.util

import pytest

from regenrt.errors import RegenrtError
from regenrt.integrations.triton import write_repository
from regenrt.runtime.engine import backend_for


def _model_config():
    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip("tritonclient is not installed (pip install regenrt[triton]): no ModelConfig proto to parse with")
    import pathlib

    path = pathlib.Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("model_config_pb2", path)  # without grpcio
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


@pytest.mark.parametrize("artefact,platform,backend,file", [
    ("model.onnx", "onnxruntime_onnx", "", "model.onnx"),
    ("model.openvino.xml", "", "openvino", "model.xml"),
])
def test_repository_config_parses_and_matches_the_engine(deeplab_engine_dir, tmp_path, artefact, platform, backend,
                                                         file):
    from google.protobuf import text_format

    source = deeplab_engine_dir / artefact
    if not source.exists():
        pytest.skip(f"{artefact} was not published on this machine")
    config_path = write_repository(source, tmp_path / "repo", name="phase", max_batch_size=8, instances=2,
                                   pipeline=False)
    config = text_format.Parse(config_path.read_text(), _model_config()())
    metadata = backend_for(source).read_metadata(source)
    assert (config.name, config.platform, config.backend, config.max_batch_size) == ("phase", platform, backend, 8)
    assert [i.name for i in config.input] == ["input"] and [o.name for o in config.output] == ["output"]
    assert list(config.input[0].dims) == [metadata["input"]["channels"], -1, -1]  # dynamic H, W
    assert list(config.output[0].dims) == [metadata["output"]["channels"], -1, -1]
    assert config.HasField("dynamic_batching") and config.instance_group[0].count == 2
    assert (config_path.parent / "1" / file).read_bytes() == source.read_bytes()
    if file == "model.xml":
        assert (config_path.parent / "1" / "model.bin").read_bytes() == source.with_suffix(".bin").read_bytes()


def test_an_ir_compiled_per_size_is_served_at_the_export_size(deeplab_engine_dir, tmp_path):
    """model.openvino.resize-matmul.xml (BF16 CPUs) runs its output tail f32 only when compiled for one size:
    Triton compiles once, so the repository holds the IR at the export's H/W (batch dynamic), and OpenVINO compiling
    that file as a server would gives what regenrt's runner gives."""
    import numpy as np
    import openvino as ov
    from google.protobuf import text_format

    from regenrt.runtime.backends.openvino import OpenVinoRunner

    source = deeplab_engine_dir / "model.openvino.resize-matmul.xml"
    if not source.exists():
        pytest.skip("model.openvino.resize-matmul.xml is built on CPUs with BF16 only (tests/export/"
                    "test_resize_tail.py checks that it is not built elsewhere)")
    metadata = backend_for(source).read_metadata(source)
    assert metadata["specialize_hw"]
    config_path = write_repository(source, tmp_path / "repo", name="phase", pipeline=False)
    config = text_format.Parse(config_path.read_text(), _model_config()())
    size = metadata["input"]["example_shape"][2:]
    assert list(config.input[0].dims) == [metadata["input"]["channels"], *size]
    served = config_path.parent / "1" / "model.xml"
    assert backend_for(served).read_metadata(served) == metadata  # the claim travels with the file
    x = np.random.default_rng(0).uniform(-1, 1, (2, metadata["input"]["channels"], *size)).astype(np.float32)
    server = ov.Core().compile_model(str(served), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    got = server.create_infer_request().infer({0: x})[0]
    want = OpenVinoRunner(source, cache=False).infer(x)  # (a tail left bf16 would be ~1e-3 of the range off)
    assert np.abs(got - want).max() <= 1e-5 * (want.max() - want.min())


def test_fixed_size_engine_dims_and_refusals(pix2pix_engine_dir, tmp_path):
    from google.protobuf import text_format

    config = text_format.Parse(write_repository(pix2pix_engine_dir / "model.onnx", tmp_path / "r",
                                                pipeline=False).read_text(), _model_config()())
    assert config.name == "inpainting" and list(config.input[0].dims) == [3, 256, 256]
    with pytest.raises(RegenrtError, match="at least 1"):
        write_repository(pix2pix_engine_dir / "model.onnx", tmp_path / "r2", max_batch_size=0)


def test_command_line_form(deeplab_engine_dir, tmp_path):
    import subprocess
    import sys

    from google.protobuf import text_format

    result = subprocess.run([sys.executable, "-m", "regenrt.cli.triton", str(deeplab_engine_dir / "model.onnx"), "-o",
                             str(tmp_path / "repo"), "--name", "phase", "--max-batch-size", "4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    ensemble = text_format.Parse((tmp_path / "repo" / "phase" / "config.pbtxt").read_text(), _model_config()())
    config = text_format.Parse((tmp_path / "repo" / "phase_engine" / "config.pbtxt").read_text(), _model_config()())
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 4
    assert config.max_batch_size == 4 and config.platform == "onnxruntime_onnx"
    plain = subprocess.run([sys.executable, "-m", "regenrt.cli.triton", str(deeplab_engine_dir / "model.onnx"), "-o",
                            str(tmp_path / "plain"), "--no-pipeline"], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["phase_recovery"]
    bad = subprocess.run([sys.executable, "-m", "regenrt.cli.triton", str(tmp_path / "none.onnx"), "-o",
                          str(tmp_path / "r2")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
