"""The runtime's GPU path (regenrt.runtime.device) under numba's CUDA simulator.

``SimulatedDeviceRunner`` gives an ONNX Runtime engine the device interface of the torch-CUDA/TensorRT runners:
its input and output buffers are numba (simulator) device arrays and ``execute`` runs the model on what the
pre-kernels wrote there. So the real task hooks, CUDA kernels, pipeline and Predictor run unchanged; only the
model itself executes on the host. The same path on a real GPU is tests/gpu/test_torch_cuda.py.
"""
import numpy as np
import pytest
import torch

from regenrt.export.pipeline import export_checkpoint
from regenrt.kernels import get_kernels
from regenrt.models import create_model
from regenrt.runtime import Engine
from regenrt.runtime.device import on_device
from regenrt.runtime.pipeline import run_directory
from regenrt.runtime.predictor import Predictor
from regenrt.tasks.runtime import RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

from .helpers import read_png, save_png

cuda = pytest.importorskip("numba.cuda")
HW = 32  # the simulator runs every CUDA thread in Python: keep pictures small


class SimulatedDeviceRunner:
    def __init__(self, host_runner):
        self.host, self.stream, self._slots, self.executed = host_runner, cuda.stream(), {}, []

    def buffers(self, shape):
        if shape not in self._slots:
            out_shape = self.host.infer(np.zeros(shape, np.float32)).shape
            self._slots[shape] = (cuda.device_array(shape, np.float32), cuda.device_array(out_shape, np.float32))
        return self._slots[shape]

    def execute(self, shape):
        inp, out = self._slots[shape]
        x = inp.copy_to_host()
        self.executed.append(x)
        out.copy_to_device(self.host.infer(x))

    def infer(self, x):
        return self.host.infer(x)


def _on_simulated_gpu(engine: Engine) -> Engine:
    return Engine(engine.path, engine.backend, "cuda", engine.metadata, SimulatedDeviceRunner(engine.runner))


@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("device")
    models = {"inpainting": create_model("pix2pix_unet", num_downs=5, ngf=4),
              "phase-recovery": create_model("deeplabv3plus_r18", in_channels=1, classes=1),
              "segmentation": create_model("deeplabv3plus_r18", in_channels=3, classes=4)}
    engines = {}
    for task, model in models.items():
        torch.save(model.eval().state_dict(), root / f"{task}.pt")
        export_checkpoint(root / f"{task}.pt", root / task, task=task, precision="fp32", cpu_engine="onnxruntime",
                          parity_samples=1, input_shape=f"1x{model_channels(task)}x{HW}x{HW}")
        engines[task] = Engine.load(root / task / "model.onnx", device="cpu")
    return engines


def model_channels(task: str) -> int:
    return 1 if task == "phase-recovery" else 3


def _items(task: str, n: int = 3) -> list[dict]:
    pictures = synthetic_pictures(n, HW, HW, 3, seed=5)
    if task == "inpainting":
        return [{"picture": p, "mask": m} for p, m in zip(pictures, box_masks(n, HW, HW, seed=6)[0] * 255)]
    if task == "segmentation":
        return [{"picture": p} for p in pictures]
    rng = np.random.default_rng(7)
    return [{"phase": rng.uniform(-4, 4, (HW, HW))} for _ in range(n)]


@pytest.mark.full(cases=["inpainting", "phase-recovery"])
@pytest.mark.parametrize("task", ["inpainting", "segmentation", "phase-recovery"])
def test_device_path_matches_cpu_path(tiny_engines, task):
    cpu = tiny_engines[task]
    gpu = _on_simulated_gpu(cpu)
    assert on_device(gpu) and not on_device(cpu)
    options = RunOptions(batch_size=2, kernels=get_kernels("numpy"), feather=2 if task == "inpainting" else 0)
    items = _items(task)
    expected = Predictor(cpu, options).predict_many(items)
    got = Predictor(gpu, options).predict_many(items)
    runner = gpu.runner
    # the pre-kernels wrote the engine's input buffer: what the engine ran on is the CPU path's model input
    host_inputs = np.concatenate([cpu_input(cpu, options, item) for item in items])
    assert np.abs(np.concatenate(runner.executed) - host_inputs).max() <= 1e-6
    assert [x.shape[0] for x in runner.executed] == [2, 1]  # batches of 2, the last partial
    for e, g in zip(expected, got):
        assert e.keys() == g.keys()
        for suffix in e:
            if task == "phase-recovery" and suffix == ".png":  # phase uploaded as float32: at most one step
                assert np.abs(e[suffix].astype(int) - g[suffix]).max() <= 1
            else:
                assert np.array_equal(e[suffix], g[suffix]), suffix  # compositing and argmax exact


def cpu_input(engine, options, item):
    from regenrt.tasks.runtime import get_runtime

    return get_runtime(engine.task).prepare(item, engine, options).model_input[None]


def test_pipeline_on_device_writes_what_cpu_writes(tiny_engines, tmp_path):
    cpu = tiny_engines["inpainting"]
    for i, item in enumerate(_items("inpainting", 5)):
        save_png(tmp_path / "in" / f"p{i}.png", item["picture"])
        save_png(tmp_path / "masks" / f"p{i}_mask.png", item["mask"])
    options = RunOptions(batch_size=2, masks=tmp_path / "masks", soft_mask=False)
    run_directory(cpu, tmp_path / "in", tmp_path / "cpu", options)
    summary = run_directory(_on_simulated_gpu(cpu), tmp_path / "in", tmp_path / "gpu", options)
    assert (summary.done, summary.failed) == (5, 0)
    for i in range(5):
        assert np.array_equal(read_png(tmp_path / "cpu" / f"p{i}.png"), read_png(tmp_path / "gpu" / f"p{i}.png"))
        known = _items("inpainting", 5)[i]["mask"] == 0
        assert np.array_equal(read_png(tmp_path / "gpu" / f"p{i}.png")[known], _items("inpainting", 5)[i]["picture"][known])


@pytest.mark.full
def test_a_batch_is_one_launch_each_side_and_buffers_are_reused(tiny_engines, monkeypatch):
    """Per batch: one pre-kernel and one post-kernel launch, the raw inputs staged in buffers reused batch after
    batch (per item, with an allocation per upload, run-infer reached 0.22-0.25 of the engine's speed on an H200)."""
    from regenrt.kernels import numba_cuda as kc
    from regenrt.runtime.device import staging

    launches = []
    for name in ("holes_fill_batch", "composite_batch"):
        original = getattr(kc, name)
        monkeypatch.setattr(kc, name, lambda *a, _f=original, _n=name, **k: (launches.append(_n), _f(*a, **k))[1])
    gpu = _on_simulated_gpu(tiny_engines["inpainting"])
    predictor = Predictor(gpu, RunOptions(batch_size=4, kernels=get_kernels("numpy")))
    items = _items("inpainting", 4)
    first = predictor.predict_many(items)
    stage, _ = staging(gpu.runner)
    (slot,) = stage.slots.values()
    buffers = {**slot.dev_in, **slot.host_in, **slot.host_out}
    assert launches == ["holes_fill_batch", "composite_batch"]
    second = predictor.predict_many(items[::-1])
    assert launches == ["holes_fill_batch", "composite_batch"] * 2
    assert len(stage.slots) == 1 and {**slot.dev_in, **slot.host_in, **slot.host_out} == buffers  # the same ones
    for a, b in zip(first, second[::-1]):
        assert np.array_equal(a[".png"], b[".png"])  # and nothing of the first batch leaks into the second


@pytest.mark.full
def test_concurrent_predictors_on_one_device_engine(tiny_engines):
    """The runner's buffers and staging are shared: batches from several threads take turns."""
    from concurrent.futures import ThreadPoolExecutor

    cpu = tiny_engines["segmentation"]
    gpu = _on_simulated_gpu(cpu)
    options = RunOptions(batch_size=2, kernels=get_kernels("numpy"))
    items = _items("segmentation", 6)
    expected = Predictor(cpu, options).predict_many(items)
    predictor = Predictor(gpu, options)
    with ThreadPoolExecutor(3) as pool:
        parts = list(pool.map(lambda k: predictor.predict_many(items[k::3]), range(3)))
    for k, part in enumerate(parts):
        for want, got in zip(expected[k::3], part):
            for suffix in want:
                assert np.array_equal(want[suffix], got[suffix]), suffix


@pytest.mark.full
def test_staging_is_bounded_by_count_and_by_pinned_bytes(tiny_engines):
    """Inputs of many sizes: the least recently used shapes' buffers go — beyond a number of shapes, and beyond a
    budget of page-locked bytes (16 shapes of large batches can pin more host memory than a machine has)."""
    from regenrt.runtime.device import Staging, staging

    import threading

    gpu = _on_simulated_gpu(tiny_engines["segmentation"])
    picture = _items("segmentation", 1)[0]["picture"]
    per_item = 2 * (HW * HW * 3 + HW * HW + HW * HW * 3)  # pinned picture + labels + colours, and device twins
    gpu.runner._regenrt_staging = (Staging(keep=16, budget=int(5.5 * per_item)), threading.Lock())
    stage, _ = staging(gpu.runner)
    for n in (1, 2, 3):  # three batch sizes: three shapes of 1, 2 and 3 items
        Predictor(gpu, RunOptions(batch_size=n, kernels=get_kernels("numpy"))).predict_many([{"picture": picture}] * n)
    assert [key[0][0] for key in stage.slots.keys()] == [2, 3]  # 6 items' bytes > the budget: the oldest went
    assert stage.slots.nbytes <= 5.5 * per_item
    counted = Staging(keep=3, budget=10 ** 9)
    for n in range(5):
        counted.slot(n, None)
    assert list(counted.slots.keys()) == [2, 3, 4]


@pytest.mark.full
def test_nan_output_on_the_device_path_is_an_item_failure_not_a_picture(tiny_engines, tmp_path):
    """The device path checks the engine's outputs too: a NaN (FP16 overflow) used to become an all-zero or
    arbitrary picture, written and recorded as done."""
    from regenrt.errors import InferenceError

    for task in ("inpainting", "segmentation", "phase-recovery"):
        cpu = tiny_engines[task]
        gpu = _on_simulated_gpu(cpu)
        host = gpu.runner.host
        gpu.runner.host = type("NaNs", (), {"infer": staticmethod(lambda x: _nan_in_item(host.infer(x), 1))})()
        got = Predictor(gpu, RunOptions(batch_size=1, kernels=get_kernels("numpy")))
        item = _items(task, 1)
        with pytest.raises(InferenceError, match="NaN/Inf"):
            got.predict_many(item)
    gpu = _on_simulated_gpu(tiny_engines["inpainting"])
    host = gpu.runner.host
    gpu.runner.host = type("NaNs", (), {"infer": staticmethod(lambda x: _nan_in_item(host.infer(x), 1))})()
    _write_inpainting(tmp_path, 3)
    summary = run_directory(gpu, tmp_path / "in", tmp_path / "out", RunOptions(batch_size=3, masks=tmp_path / "masks"))
    assert (summary.done, summary.failed) == (2, 1) and summary.errors[0][0] == "p1"
    assert "NaN/Inf" in summary.errors[0][2] and not (tmp_path / "out" / "p1.png").exists()


def _nan_in_item(y, item):
    y = y.copy()
    if len(y) > item:
        y[item, :, 3, 5] = np.nan
    elif len(y) == 1:
        y[0, :, 3, 5] = np.nan
    return y


def _write_inpainting(tmp_path, n):
    for i, item in enumerate(_items("inpainting", n)):
        save_png(tmp_path / "in" / f"p{i}.png", item["picture"])
        save_png(tmp_path / "masks" / f"p{i}_mask.png", item["mask"])


@pytest.mark.full
def test_a_failed_device_batch_is_retried_item_by_item(tiny_engines, tmp_path):
    """Phase on the device: the retry of a failed batch used to fail every item (KeyError 'phase': the batch had
    popped it)."""
    gpu = _on_simulated_gpu(tiny_engines["phase-recovery"])
    host = gpu.runner.host

    def fails_on_batches(x):
        if len(x) > 1:
            raise RuntimeError("[TensorRT] batch too large for the profile")
        return host.infer(x)

    gpu.runner.host = type("Flaky", (), {"infer": staticmethod(fails_on_batches)})()
    (tmp_path / "in").mkdir()
    for i, item in enumerate(_items("phase-recovery", 3)):
        np.save(tmp_path / "in" / f"p{i}.npy", item["phase"])
    summary = run_directory(gpu, tmp_path / "in", tmp_path / "out", RunOptions(batch_size=3))
    assert (summary.done, summary.failed) == (3, 0), summary.errors


def test_the_device_path_takes_the_runners_own_lock(tiny_engines):
    """The torch and TensorRT runners guard their buffers with ``_lock`` in their host ``infer``: the device path
    must take that same lock, or an ``engine.infer`` and a pipeline batch could interleave on one buffer."""
    import threading

    from regenrt.runtime.device import staging

    gpu = _on_simulated_gpu(tiny_engines["segmentation"])
    gpu.runner._lock = threading.Lock()
    assert staging(gpu.runner)[1] is gpu.runner._lock
    other = _on_simulated_gpu(tiny_engines["segmentation"])  # a runner without one gets its own
    assert staging(other.runner)[1] is not gpu.runner._lock


class GraphRunner(SimulatedDeviceRunner):
    """A runner that offers pipeline capture: ``capture(work)`` records the work as a "graph" whose replay runs it
    again (what a CUDA graph does with the same buffers); ``enqueue`` is the engine as plain stream work."""

    def __init__(self, host_runner, replays_work=True):
        super().__init__(host_runner)
        self.captures, self.replays, self.eager_executes, self.replays_work = 0, 0, 0, replays_work

    def execute(self, shape):
        self.eager_executes += 1
        super().execute(shape)

    def enqueue(self, shape):
        super().execute(shape)

    def capture(self, work):
        self.captures += 1
        runner = self

        class Graph:
            def replay(self):
                runner.replays += 1
                if runner.replays_work:
                    work()

        return Graph()


@pytest.mark.full
@pytest.mark.parametrize("task", ["inpainting", "segmentation"])  # (phase: the same code; slow in the simulator)
def test_pipeline_graph_captured_once_per_shape_and_replayed(tiny_engines, task):
    """The whole device pipeline of a shape is captured on its second batch and replayed from then on (checked
    over two poisons first); its results equal the eager pipeline's."""
    cpu = tiny_engines[task]
    runner = GraphRunner(cpu.runner)
    gpu = Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, runner)
    options = RunOptions(batch_size=1, kernels=get_kernels("numpy"))
    items = _items(task, 3)
    expected = Predictor(_on_simulated_gpu(cpu), options).predict_many(items)
    got = Predictor(gpu, options).predict_many(items)
    assert runner.captures == 1  # one shape: captured once
    assert runner.eager_executes == 2  # the first batch, and the eager reference of the capture check
    assert runner.replays == 2 + 1  # two poisoned check replays, then the third batch
    for e, g in zip(expected, got):
        for suffix in e:
            assert np.array_equal(e[suffix], g[suffix]), suffix


@pytest.mark.full
def test_pipeline_graph_off_switch_and_replay_check(tiny_engines, monkeypatch):
    cpu = tiny_engines["segmentation"]
    items = _items("segmentation", 2)
    off = GraphRunner(cpu.runner)
    Predictor(Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, off),
              RunOptions(batch_size=1, pipeline_graph=False, kernels=get_kernels("numpy"))).predict_many(items)
    assert off.captures == 0 and off.eager_executes == 2
    monkeypatch.setenv("REGENRT_PIPELINE_GRAPH", "0")
    env_off = GraphRunner(cpu.runner)
    Predictor(Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, env_off),
              RunOptions(batch_size=1, kernels=get_kernels("numpy"))).predict_many(items)
    assert env_off.captures == 0
    monkeypatch.delenv("REGENRT_PIPELINE_GRAPH")
    on = GraphRunner(cpu.runner)  # a graph made, then the switch turned off: the graph is not replayed any more
    engine = Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, on)
    Predictor(engine, RunOptions(batch_size=1, kernels=get_kernels("numpy"))).predict_many(items)
    replays = on.replays
    Predictor(engine, RunOptions(batch_size=1, pipeline_graph=False, kernels=get_kernels("numpy"))).predict_many(items)
    assert on.captures == 1 and on.replays == replays

    stale = GraphRunner(cpu.runner, replays_work=False)  # a graph whose replay rewrites nothing: refused by the check
    expected = Predictor(_on_simulated_gpu(cpu), RunOptions(batch_size=1, kernels=get_kernels("numpy"))
                         ).predict_many(items)
    with pytest.warns(RuntimeWarning, match="could not be used .*did not rewrite .*runs its steps eagerly"):
        got = Predictor(Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, stale),
                        RunOptions(batch_size=1, kernels=get_kernels("numpy"))).predict_many(items)
    assert stale.captures == 1  # tried once for the shape, not on every batch
    for e, g in zip(expected, got):  # and every item still right (eager)
        for suffix in e:
            assert np.array_equal(e[suffix], g[suffix])


@pytest.mark.full
def test_pipeline_graph_recaptured_when_the_runners_buffers_change(tiny_engines):
    """A runner that evicted and re-made a shape's buffers: the old graph points at freed memory — never replay it."""
    cpu = tiny_engines["segmentation"]
    runner = GraphRunner(cpu.runner)
    predictor = Predictor(Engine(cpu.path, cpu.backend, "cuda", cpu.metadata, runner),
                          RunOptions(batch_size=1, kernels=get_kernels("numpy")))
    items = _items("segmentation", 3)
    predictor.predict_many(items[:2])
    assert runner.captures == 1
    runner._slots.clear()  # the runner dropped its buffers (its own LRU)
    predictor.predict_many(items[2:])
    assert runner.captures == 2


def test_the_device_stage_runs_on_its_own_thread(tiny_engines, tmp_path):
    """The GPU stage (fill, replay, synchronize, results) does not block the main thread: it runs on one inference
    thread of its own, the next batch queued behind it (the main thread gathers decodes and hands out writes)."""
    import threading

    cpu = tiny_engines["segmentation"]
    gpu = _on_simulated_gpu(cpu)
    threads = []
    host = gpu.runner.host
    gpu.runner.host = type("Where", (), {"infer": staticmethod(
        lambda x: (threads.append(threading.current_thread().name), host.infer(x))[1])})()
    (tmp_path / "in").mkdir()
    for i, item in enumerate(_items("segmentation", 4)):
        save_png(tmp_path / "in" / f"p{i}.png", item["picture"])
    summary = run_directory(gpu, tmp_path / "in", tmp_path / "out", RunOptions(batch_size=2))
    assert (summary.done, summary.failed) == (4, 0)
    executed = threads[-2:]  # the two batches (earlier entries: the buffers' shape probe)
    assert executed and all(name.startswith("regenrt-infer") for name in executed), threads
