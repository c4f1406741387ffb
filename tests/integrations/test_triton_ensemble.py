"""The Triton ensemble regenrt writes (raw inputs -> <name>_pre -> <name>_engine -> <name>_post -> final pixels):

- its four configs parsed back with Triton's ModelConfig proto, and the ensemble's wiring checked (every step's
  tensors exist in that model's config, every ensemble tensor is produced before it is read);
- the pre and post steps (the code the Python-backend models run) around the repository's engine file give
  exactly ``Predictor``'s answers, for all three tasks;
- run for real in Triton (the server bundled with nvidia-pytriton): the ensemble and the two Python-backend models
  as written; only the engine model runs in a Python-backend stand-in, since the bundled server has no ONNX Runtime
  backend (the stand-in runs the same model file with regenrt's Engine and keeps regenrt's config otherwise).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from regenrt.errors import InputError
from regenrt.integrations.triton import write_repository
from regenrt.integrations.triton_steps import STEP_FILE, Step
from regenrt.runtime import Engine, Predictor, RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .ports import free_ports
from .test_triton import _model_config


def _phase_items(n, h=64, w=96):
    return [{"phase": p} for p in np.random.default_rng(0).uniform(-np.pi, np.pi, (n, h, w)).astype(np.float32)]


def _picture_items(n, size, with_mask, seed=3):
    pictures = synthetic_pictures(n, size, size, 3, seed=seed)
    masks = box_masks(n, size, size, seed=seed + 1)[0] * 255
    return [{"picture": p, "mask": m} if with_mask else {"picture": p} for p, m in zip(pictures, masks)]


def _parse(config_path):
    from google.protobuf import text_format

    return text_format.Parse(Path(config_path).read_text(), _model_config()())


def _check_wiring(repo: Path, name: str):
    """Triton's rules for an ensemble, checked on the parsed configs: each step's input_map keys are inputs of that
    model, output_map keys outputs of it; each value read is an ensemble input or an earlier step's output; every
    ensemble output is produced. Returns the parsed configs by model name."""
    configs = {p.parent.name: _parse(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == {name, f"{name}_pre", f"{name}_engine", f"{name}_post"}
    ensemble = configs[name]
    assert ensemble.platform == "ensemble" and (repo / name / "1").is_dir()
    available = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert model.max_batch_size == ensemble.max_batch_size
        inputs = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        assert set(step.input_map) == set(inputs), step.model_name
        for key, value in step.input_map.items():
            assert value in available, f"{step.model_name} reads {value} before anything produces it"
            assert available[value][0] == inputs[key][0]
        for key, value in step.output_map.items():
            assert key in outputs
            available[value] = outputs[key]
    for t in ensemble.output:
        assert t.name in available and available[t.name][0] == t.data_type
    return configs


def test_phase_repository_wiring_and_configs(deeplab_engine_dir, tmp_path):
    config = write_repository(deeplab_engine_dir / "model.onnx", tmp_path / "repo", name="phase", max_batch_size=4)
    assert config == tmp_path / "repo" / "phase" / "config.pbtxt"
    configs = _check_wiring(tmp_path / "repo", "phase")
    assert configs["phase_engine"].platform == "onnxruntime_onnx"
    assert configs["phase_pre"].backend == "python" and configs["phase_post"].backend == "python"
    assert [t.name for t in configs["phase"].input] == ["phase"] and [t.name for t in configs["phase"].output] == ["image"]
    assert (tmp_path / "repo" / "phase_pre" / "1" / "model.py").is_file()
    assert (tmp_path / "repo" / "phase_engine" / "1" / "model.onnx").read_bytes() == \
        (deeplab_engine_dir / "model.onnx").read_bytes()


@pytest.mark.parametrize("task", ["phase-recovery", "phase-recovery per size", "inpainting", "segmentation"])
def test_steps_around_the_repository_engine_equal_the_predictor(task, deeplab_engine_dir, inpainting_engine,
                                                                segmentation_setup, tmp_path):
    per_size = deeplab_engine_dir / "model.openvino.resize-matmul.xml"
    if task == "phase-recovery per size" and not per_size.exists():
        pytest.skip("model.openvino.resize-matmul.xml is not in this export: OpenVINO is not installed here"
                    if importlib.util.find_spec("openvino") is None else
                    "model.openvino.resize-matmul.xml is not in this export: it is built on CPUs where OpenVINO runs "
                    "BF16 only")
    source, items = {
        "phase-recovery": (deeplab_engine_dir, _phase_items(3)),
        "phase-recovery per size": (per_size, _phase_items(3)),
        "inpainting": (inpainting_engine, _picture_items(3, 128, True)),
        "segmentation": (segmentation_setup[1], _picture_items(3, 64, False)),
    }[task]
    task = task.split(" per size")[0]
    options = RunOptions(bit_depth=16) if task == "phase-recovery" else None
    config = write_repository(source, tmp_path / "repo", name="m", options=options)
    configs = _check_wiring(tmp_path / "repo", "m")
    served = list(configs["m_engine"].input[0].dims)[1:]
    if task == "phase-recovery" and min(served) > 0:  # an IR compiled per size is served at the export's size
        items = _phase_items(3, *served)  # (model.openvino.resize-matmul.xml, where export chose it)
    pre, post = (Step.load(tmp_path / "repo" / f"m_{k}" / "1" / STEP_FILE) for k in ("pre", "post"))
    engine_file = next(p for p in (tmp_path / "repo" / "m_engine" / "1").glob("model.*") if p.suffix != ".bin")
    engine = Engine.load(engine_file, device="cpu")
    raw = {name: np.stack([item[name] for item in items]) for name in items[0]}
    model_input = pre(raw)
    final = post({**raw, **{post.output_name: engine.infer(model_input[pre.input_name])}})
    expected = Predictor(Engine.load(source, device="cpu", mode="throughput"), options).predict_many(items)  # the
    # engine the repository serves: engine.json's (its batch-1 engine can be another artefact)
    outputs = {t.name: t for t in configs["m"].output}
    assert set(final) == set(outputs)
    for suffix in expected[0]:
        name = suffix.lstrip("_").split(".")[0] or "image"
        assert np.array_equal(final[name], np.stack([e[suffix] for e in expected])), name
    if task == "phase-recovery":
        uint16 = _model_config().DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_name["TYPE_UINT16"].number
        assert final["image"].dtype == np.uint16 and outputs["image"].data_type == uint16
    assert config.parent.name == "m"


def test_step_errors_name_the_item(inpainting_engine, tmp_path):
    write_repository(inpainting_engine, tmp_path / "repo", name="m")
    pre = Step.load(tmp_path / "repo" / "m_pre" / "1" / STEP_FILE)
    items = _picture_items(2, 128, True)
    not_binary = (np.arange(128 * 128) % 7).astype(np.uint8).reshape(128, 128)
    masks = np.stack([items[0]["mask"], not_binary])
    with pytest.raises(InputError, match="item 1: .*not binary"):
        pre({"picture": np.stack([i["picture"] for i in items]), "mask": masks})
    with pytest.raises(InputError, match="missing input tensor"):
        pre({"picture": np.stack([i["picture"] for i in items])})


LOAD_UNDER_AVX2_CAP = """
import json, sys
from regenrt.errors import RegenrtError
from regenrt.integrations.triton_steps import Step
try:
    Step.load(sys.argv[1])
    print(json.dumps({"loaded": True}))
except RegenrtError as exc:
    print(json.dumps({"loaded": False, "message": str(exc)}))
"""


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_the_serving_node_refuses_an_int8_ir_that_would_drift_there(inpainting_engine, tmp_path):
    """The pre step loads on the serving node: an INT8 IR quantized with only its first layer guarded (VNNI
    machines; every INT8 IR before regenrt recorded it) is refused where INT8 saturates — reproduced with oneDNN
    capped at AVX2 — as regenrt's runner refuses it; one quantized with 7-bit weights loads."""
    import json
    import os
    import subprocess
    import sys

    write_repository(inpainting_engine, tmp_path / "repo", name="m")
    step_file = tmp_path / "repo" / "m_pre" / "1" / STEP_FILE
    record = json.loads(step_file.read_text())
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    for fix in ("first_layer_only", None, "enable"):
        int8 = {"unquantized_run_in": "fp32", **({"overflow_fix": fix} if fix else {})}
        edited = tmp_path / f"{fix}.json"
        edited.write_text(json.dumps({**record, "metadata": {**record["metadata"], "precision": "int8", "int8": int8}}))
        done = subprocess.run([sys.executable, "-c", LOAD_UNDER_AVX2_CAP, str(edited)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if fix == "enable":
            assert answer == {"loaded": True}
        else:
            assert not answer["loaded"] and "saturate" in answer["message"] and "Re-export it here" in answer["message"]


def test_the_post_step_validates_but_computes_no_model_input(inpainting_engine, tmp_path):
    from dataclasses import replace

    write_repository(inpainting_engine, tmp_path / "repo", name="m")
    pre, post = (Step.load(tmp_path / "repo" / f"m_{k}" / "1" / STEP_FILE) for k in ("pre", "post"))
    items = _picture_items(2, 128, True)
    raw = {name: np.stack([item[name] for item in items]) for name in items[0]}
    model_input = pre(raw)["input"]
    calls = []
    post.options = replace(post.options, kernels=replace(post.options.kernels,
                                                         holes_fill=lambda *a, **k: calls.append(a)))
    engine = Engine.load(inpainting_engine, device="cpu")
    final = post({**raw, "output": engine.infer(model_input)})
    assert final["image"].shape == (2, 128, 128, 3) and calls == []
    with pytest.raises(InputError, match="item 0: mask is 64x64 but the picture is 128x128"):
        post({"picture": raw["picture"][:1], "mask": raw["mask"][:1, :64, :64], "output": engine.infer(model_input)[:1]})


def test_engine_only_repository_keeps_the_plain_layout(deeplab_engine_dir, tmp_path):
    config = write_repository(deeplab_engine_dir / "model.onnx", tmp_path / "repo", name="phase", pipeline=False)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["phase"]
    assert _parse(config).platform == "onnxruntime_onnx"


ENGINE_STAND_IN = '''"""Test stand-in for Triton's ONNX Runtime backend: the same model file through regenrt's Engine."""
import triton_python_backend_utils as pb_utils

from regenrt.runtime import Engine


class TritonPythonModel:
    def initialize(self, args):
        self.engine = Engine.load({path!r}, device="cpu")

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "input").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", self.engine.infer(x))]))
        return responses
'''


@pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                    reason="nvidia-pytriton is not installed (it needs numpy < 2: ./dev.sh test runs this test in "
                           ".venv-serve, an environment of their own)")
def test_the_ensemble_runs_in_triton(inpainting_engine, tmp_path):
    from pytriton.client import ModelClient
    from pytriton.client.exceptions import PyTritonClientInferenceServerError
    from pytriton.triton import Triton, TritonConfig

    from regenrt.integrations.pytriton import _stub_finds_this_python

    repo = tmp_path / "repo"
    write_repository(inpainting_engine, repo, name="inpainting", max_batch_size=4)
    engine_dir = repo / "inpainting_engine"
    config = engine_dir / "config.pbtxt"
    config.write_text(config.read_text().replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
    (engine_dir / "1" / "model.py").write_text(ENGINE_STAND_IN.format(path=str(engine_dir / "1" / "model.onnx")))
    _check_wiring(repo, "inpainting")
    _stub_finds_this_python()
    http, grpc, metrics = free_ports(3)
    items = _picture_items(5, 128, True, seed=11)
    expected = Predictor(Engine.load(inpainting_engine, device="cpu")).predict_many(items)
    triton = Triton(config=TritonConfig(model_repository=repo, http_address="127.0.0.1", http_port=http,
                                        grpc_address="127.0.0.1", grpc_port=grpc, metrics_address="127.0.0.1",
                                        metrics_port=metrics))
    triton.run()
    try:
        with ModelClient(f"http://127.0.0.1:{http}", "inpainting", init_timeout_s=120) as client:
            for item, want in zip(items, expected):
                got = client.infer_sample(**item)["image"]
                assert got.dtype == np.uint8 and np.array_equal(got, want[".png"])
            batch = client.infer_batch(picture=np.stack([i["picture"] for i in items[:3]]),
                                       mask=np.stack([i["mask"] for i in items[:3]]))["image"]
            assert np.array_equal(batch, np.stack([e[".png"] for e in expected[:3]]))
            with pytest.raises(PyTritonClientInferenceServerError, match="mask is 64x64 but the picture is 128x128"):
                client.infer_sample(picture=items[0]["picture"], mask=items[0]["mask"][:64, :64])
            assert np.array_equal(client.infer_sample(**items[1])["image"], expected[1][".png"])  # still up
    finally:
        triton.stop()
