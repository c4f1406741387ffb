"""Engine and Predictor as a production pipeline uses them: metadata-driven, validated, thread-safe, loud."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest

from regenrt.errors import InputError, MissingDependencyError, RegenrtError
from regenrt.runtime import Engine, Predictor, RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures


def test_engine_reads_task_and_contract_from_metadata(deeplab_engine_dir):
    engine = Engine.load(deeplab_engine_dir / "model.fp16.onnx", device="cpu")
    assert engine.task == "phase-recovery" and engine.channels == 1 and engine.static_hw is None
    assert engine.backend.name == "onnxruntime" and "fp16" in engine.describe()


def test_input_validation_before_running(deeplab_engine_dir):
    engine = Engine.load(deeplab_engine_dir / "model.onnx")
    with pytest.raises(InputError, match="takes 1 channel"):
        engine.infer(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="multiples of 16"):
        engine.infer(np.zeros((1, 1, 64, 70), np.float32))
    bad = np.zeros((2, 1, 64, 64), np.float32)
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        engine.infer(bad)
    with pytest.raises(InputError, match="NxCxHxW"):
        engine.infer(np.zeros((64, 64), np.float32))


def test_unavailable_device_is_an_error_not_a_fallback(deeplab_engine_dir):
    # without a GPU: says so; with one but ONNX Runtime's CPU build: the extra that brings its CUDA provider
    with pytest.raises(MissingDependencyError,
                       match="device 'cuda' was requested.*(no NVIDIA GPU is visible|regenrt\\[onnx-gpu\\])"):
        Engine.load(deeplab_engine_dir / "model.onnx", device="cuda")


def test_artefacts_without_metadata_or_unknown_kind_are_refused(tmp_path, deeplab_engine_dir):
    model = onnx.load(str(deeplab_engine_dir / "model.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(RegenrtError, match="not written by export-engine .*no regenrt metadata.*export-engine .*--task"):
        Engine.load(tmp_path / "bare.onnx")
    (tmp_path / "m.xyz").write_bytes(b"x")
    with pytest.raises(RegenrtError, match="no backend opens 'm.xyz'"):
        Engine.load(tmp_path / "m.xyz")


def test_predictor_in_memory_from_threads(pix2pix_engine_dir):
    predictor = Predictor(Engine.load(pix2pix_engine_dir / "model.onnx"), RunOptions(batch_size=2))
    pics = synthetic_pictures(4, 256, 256, 3, seed=11)
    masks, _ = box_masks(4, 256, 256, seed=12)
    items = [{"picture": p, "mask": m} for p, m in zip(pics, masks)]
    serial = predictor.predict_many(items)
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda d: predictor.predict(**d), items))
    for a, b, pic, mask in zip(serial, threaded, pics, masks):
        assert np.array_equal(a[".png"], b[".png"])
        assert np.array_equal(a[".png"][mask == 0], pic[mask == 0])


def test_predictor_rejects_bad_arrays(pix2pix_engine_dir):
    predictor = Predictor(Engine.load(pix2pix_engine_dir / "model.onnx"))
    pic = synthetic_pictures(1, 256, 256, 3)[0]
    with pytest.raises(InputError, match="mask is 128x256"):
        predictor.predict(picture=pic, mask=np.zeros((256, 128), np.uint8))
    # a picture smaller than the generator's fixed 256x256 is padded to it and cropped back (it used to be refused)
    small, mask = pic[:128, :96].copy(), np.zeros((128, 96), np.uint8)
    mask[40:60, 30:50] = 255
    out = predictor.predict(picture=small, mask=mask)[".png"]
    assert out.shape == small.shape and np.array_equal(out[mask == 0], small[mask == 0])


def test_max_pixels_guard(deeplab_engine_dir, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "p.png")
    predictor = Predictor(Engine.load(deeplab_engine_dir / "model.onnx"), RunOptions(from_image=True, max_pixels=1000))
    with pytest.raises(InputError, match="64x64 = 4096 pixels, over the limit of 1000"):
        predictor.predict_file(tmp_path / "p.png")


def test_doctor_lists_backends_and_missing_extras():
    out = subprocess.run([sys.executable, "-m", "regenrt.cli.doctor"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "onnxruntime" in out.stdout and "backend onnxruntime (.onnx): devices ['cpu']" in out.stdout
    assert "tensorrt" in out.stdout
    from regenrt.runtime.backends.openvino import executes_bf16, int8_saturates

    cpu = next(line for line in out.stdout.splitlines() if line.strip().startswith("CPU:"))  # the probes' answers
    assert ("bf16: yes" in cpu) == executes_bf16() and ("saturating" in cpu) == int8_saturates()


def test_only_regenrt_errors_leave_the_python_api(deeplab_engine_dir, tmp_path):
    """Bad inputs to the Predictor raise RegenrtError subclasses only (a float16 big-endian map works; an object
    array, a 0x0 map, a file that is not an array and an engine that fails are typed errors)."""
    from regenrt.errors import InferenceError, RegenrtError
    from regenrt.runtime import Predictor

    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu")
    predictor = Predictor(engine)
    ok = predictor.predict(phase=np.zeros((64, 64), ">f2"))
    assert ok[".png"].shape == (64, 64)
    for bad in (np.array([[object()]]), np.zeros((0, 0)), "not an array"):
        with pytest.raises(RegenrtError):
            predictor.predict(phase=bad)
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(RegenrtError):
        predictor.predict_file(tmp_path / "x.npy")
    engine.runner.infer = lambda x: (_ for _ in ()).throw(RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT"))
    with pytest.raises(InferenceError, match="INVALID_ARGUMENT"):
        predictor.predict(phase=np.zeros((64, 64)))
    engine.runner.infer = lambda x: np.full((len(x), 1, 64, 64), np.nan, np.float32)
    with pytest.raises(InferenceError, match="NaN"):
        predictor.predict(phase=np.zeros((64, 64)))


def test_the_suite_never_writes_the_users_cache():
    """Compiled-model caches of the suite go to a temporary folder (a run used to add ~0.8 GB to ~/.cache)."""
    from pathlib import Path

    from regenrt.runtime.backends.openvino import cache_dir

    assert not Path(cache_dir()).resolve().is_relative_to((Path.home() / ".cache").resolve())
