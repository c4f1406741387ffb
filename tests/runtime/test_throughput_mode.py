"""run-infer's throughput mode: OpenVINO compiled with the throughput hint, as many batches in flight as it asks
for infer requests, fed by the pipeline; results identical to the one-request run."""
import numpy as np
import pytest

from regenrt.runtime import Engine, RunOptions, run_directory

pytest.importorskip("openvino")


def test_several_batches_in_flight_give_the_same_outputs(deeplab_engine_dir, deeplab_fixture, tmp_path):
    _, ref = deeplab_fixture
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(11):  # 11 items at batch 2: six batches, the last one partial
        np.save(inputs / f"p{i:02d}.npy", rng.uniform(-np.pi, np.pi, (64, 64)))
    xml = deeplab_engine_dir / "model.openvino.xml"
    fast = Engine.load(xml, device="cpu", mode="throughput")
    one = Engine.load(xml, device="cpu")
    assert one.requests == 1 and fast.requests == int(fast.runner.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    if fast.requests < 2:
        pytest.skip(f"OpenVINO asks for {fast.requests} infer request on this machine: nothing runs in flight")
    summary = run_directory(fast, inputs, tmp_path / "fast", RunOptions(batch_size=2, save_npy=True))
    assert (summary.done, summary.failed) == (11, 0)
    run_directory(one, inputs, tmp_path / "one", RunOptions(batch_size=2, save_npy=True))
    for i in range(11):
        a, b = (np.load(tmp_path / d / f"p{i:02d}.npy") for d in ("fast", "one"))
        assert np.array_equal(a, b)


def test_onnxruntime_sessions_do_not_spin(deeplab_engine_dir):
    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu", mode="throughput")
    options = engine.runner.runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert engine.requests == 1


def test_the_last_batches_are_split_across_the_requests(deeplab_engine_dir, tmp_path):
    """The run's last ``requests`` batches go out ``requests`` times smaller, so the requests finish together
    (one request running the last full batch alone leaves cores idle); outputs stay those of the one-request run."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):
        np.save(inputs / f"p{i:02d}.npy", rng.uniform(-np.pi, np.pi, (64, 64)))
    xml = deeplab_engine_dir / "model.openvino.xml"
    fast = Engine.load(xml, device="cpu", mode="throughput")
    if fast.requests < 2:
        pytest.skip(f"OpenVINO asks for {fast.requests} infer request on this machine: nothing runs in flight")
    sizes, infer = [], fast.infer
    fast.infer = lambda batch: sizes.append(len(batch)) or infer(batch)
    summary = run_directory(fast, inputs, tmp_path / "fast", RunOptions(batch_size=4, save_npy=True))
    assert (summary.done, summary.failed) == (20, 0)
    small = -(-4 // fast.requests)
    assert sum(sizes) == 20 and sizes[0] == 4 and set(sizes[-fast.requests:]) == {small}, sizes
    run_directory(Engine.load(xml, device="cpu"), inputs, tmp_path / "one", RunOptions(batch_size=4, save_npy=True))
    for i in range(20):
        a, b = (np.load(tmp_path / d / f"p{i:02d}.npy") for d in ("fast", "one"))
        assert np.array_equal(a, b)
