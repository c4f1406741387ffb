"""TensorRTRunner's stream and execution-context bookkeeping, against stand-ins for torch's CUDA pieces and
TensorRT's execution context that record which stream every operation was queued on and which addresses each
context holds (no GPU, no TensorRT here). Catches: buffers zeroed on another stream than the one the kernels
write on, the replay check queued on the default stream, one context shared by several shapes (and pointed at
a freed tensor by the replay check)."""
import contextlib
import itertools
import sys
import types

import numpy as np
import pytest

DEFAULT = 0  # the legacy default stream's handle


class World:
    """What the fakes share: the current stream, the tensors by address, the log of operations."""

    def __init__(self):
        self.current, self.tensors, self.log, self.capturing = [DEFAULT], {}, [], None
        self.profile = ((1, 1, 8, 8), (4, 1, 8, 8), (4, 1, 8, 8))  # batches 1..4 of 1x8x8
        self.context_bytes = 1000
        self.ptrs, self.handles = itertools.count(0x1000, 0x1000), itertools.count(1)

    def record(self, op, **kw):
        self.log.append({"op": op, "stream": self.current[-1], **kw})


def fake_torch(world: World) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.float32, torch.float16, torch.uint8 = "float32", "float16", "uint8"

    class Tensor:
        def __init__(self, data, device):
            self.data, self.device, self.ptr = np.array(data, np.float32), device, next(world.ptrs)
            self.shape = self.data.shape
            world.tensors[self.ptr] = self
            if device == "cuda":
                world.record("alloc", ptr=self.ptr)

        def data_ptr(self):
            return self.ptr

        def copy_(self, src, non_blocking=False):
            world.record("copy", ptr=self.ptr)
            self.data[...] = src.data
            return self

        def fill_(self, value):
            world.record("fill", ptr=self.ptr)
            self.data[...] = value
            return self

        def zero_(self):
            return self.fill_(0.0)

        def pin_memory(self):
            return self

        def to(self, device, non_blocking=False, copy=False):
            world.record("to_host", ptr=self.ptr)
            return Tensor(self.data.copy(), device)

        def cpu(self):
            return self.to("cpu")

        def numpy(self):
            return self.data

        def all(self):
            return bool(np.all(self.data))

    torch.Tensor = Tensor
    torch.from_numpy = lambda a: Tensor(a, "cpu")
    torch.zeros = lambda shape, dtype=None, device="cpu": Tensor(np.zeros(shape), device)
    torch.empty = lambda shape, dtype=None, device="cpu": Tensor(np.full(shape, 7.0), device)
    torch.empty_like = lambda t: Tensor(np.full(t.shape, 7.0), t.device)
    torch.randn = lambda shape, device="cpu", generator=None: Tensor(np.random.default_rng(0).standard_normal(shape), device)
    torch.Generator = lambda device="cpu": types.SimpleNamespace(manual_seed=lambda s: None)
    torch.isfinite = lambda t: Tensor(np.isfinite(t.data), t.device)
    torch.allclose = lambda a, b, rtol=0, atol=0: bool(np.allclose(a.data, b.data, rtol=rtol, atol=atol))

    class Stream:
        def __init__(self):
            self.cuda_stream = next(world.handles)

        def synchronize(self):
            world.record("sync", handle=self.cuda_stream)

    @contextlib.contextmanager
    def stream(s):
        world.current.append(s.cuda_stream)
        try:
            yield
        finally:
            world.current.pop()

    class CUDAGraph:
        def __init__(self):
            self.work = []

        def replay(self):
            world.record("replay")
            for run in self.work:
                run()

    @contextlib.contextmanager
    def graph(g, stream=None, capture_error_mode="global"):
        world.record("capture", mode=capture_error_mode)
        world.capturing = g
        world.current.append(stream.cuda_stream)
        try:
            yield
        finally:
            world.current.pop()
            world.capturing = None

    torch.cuda = types.SimpleNamespace(Stream=Stream, stream=stream, CUDAGraph=CUDAGraph, graph=graph,
                                       is_available=lambda: True)
    return torch


def fake_trt(world: World) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.TensorIOMode = types.SimpleNamespace(INPUT=1, OUTPUT=2)
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})

    profile = world.profile  # (min, opt, max) of the input, as the engine was built

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):  # TensorRT: False (and an error logged) outside the profile
            if not all(lo <= d <= hi for lo, d, hi in zip(profile[0], shape, profile[2])) or len(shape) != 4:
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.shape

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, handle):
            world.record("enqueue", handle=handle, context=id(self), **dict(self.addresses))
            inp, out = self.addresses["input"], self.addresses["output"]  # bound now: a graph replays these

            def run():
                world.tensors[out].data[...] = 2 * world.tensors[inp].data

            if world.capturing is not None:
                world.capturing.work.append(run)
            else:
                run()
            return True

    class Engine:
        num_io_tensors = 2
        device_memory_size_v2 = world.context_bytes

        def get_tensor_profile_shape(self, name, profile_index):
            return [list(dims) for dims in profile]

        def get_tensor_name(self, i):
            return ("input", "output")[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            return Engine()

    trt.Runtime = Runtime
    return trt


@pytest.fixture()
def runner_world(monkeypatch, tmp_path):
    import numba.cuda

    from regenrt.runtime.backends import tensorrt as backend

    world = World()
    monkeypatch.setitem(sys.modules, "torch", fake_torch(world))
    monkeypatch.setattr(numba.cuda, "external_stream", lambda handle: ("numba stream", handle), raising=False)
    monkeypatch.setattr(backend, "import_tensorrt", lambda: fake_trt(world))
    monkeypatch.setattr(backend, "check_fingerprint", lambda *a, **k: {})
    monkeypatch.setattr(backend, "current_environment", lambda: {})
    (tmp_path / "model.engine").write_bytes(b"engine")
    return world, lambda graphs: backend.TensorRTRunner(tmp_path / "model.engine", cuda_graphs=graphs)


@pytest.mark.parametrize("graphs", [False, True])
def test_every_operation_on_the_runner_stream_and_a_context_per_shape(runner_world, graphs):
    world, make = runner_world
    runner = make(graphs)
    assert runner.stream == ("numba stream", runner.torch_stream.cuda_stream)
    rng = np.random.default_rng(0)
    full, tail = rng.standard_normal((4, 1, 8, 8)).astype(np.float32), rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    for x in (full, tail, full[::-1].copy(), tail):
        assert np.allclose(runner.infer(x), 2 * x)  # each shape's graph replays its own buffers
    mine = runner.torch_stream.cuda_stream
    device_ops = [e for e in world.log if e["op"] in ("alloc", "copy", "fill", "enqueue", "replay", "to_host")]
    assert device_ops and all(e["stream"] == mine for e in device_ops), \
        [e for e in device_ops if e["stream"] != mine][:3]
    assert all(e["handle"] == mine for e in world.log if e["op"] == "enqueue")
    slots = runner._slots
    assert set(slots) == {(4, 1, 8, 8), (3, 1, 8, 8)}
    (ca, ia, oa, _, _), (cb, ib, ob, _, _) = slots[(4, 1, 8, 8)], slots[(3, 1, 8, 8)]
    assert ca is not cb  # one execution context per shape
    for context, inp, out in ((ca, ia, oa), (cb, ib, ob)):  # still bound to its own buffers after the checks
        assert context.addresses == {"input": inp.data_ptr(), "output": out.data_ptr()}
        assert context.shape == inp.shape
    if graphs:
        check = [e for e in world.log if e["op"] == "enqueue" and e["context"] not in (id(ca), id(cb))]
        assert check, "the replay check's eager run uses a context of its own"


def test_contexts_are_kept_for_a_bounded_number_of_shapes(runner_world, monkeypatch):
    """Inputs of many sizes: the least recently used shapes' contexts, buffers and graphs go."""
    from regenrt.runtime import lru

    monkeypatch.setattr(lru, "MAX_SHAPES", 2)
    world, make = runner_world
    runner = make(True)
    rng = np.random.default_rng(0)
    for n in (1, 2, 1, 3):  # 1 used again before 3 arrives: 2 is the oldest and goes
        x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
        assert np.allclose(runner.infer(x), 2 * x)
    assert [s[0] for s in runner._slots] == [1, 3]


def test_shapes_outside_the_profile_are_refused_and_large_batches_split(runner_world):
    """set_input_shape's answer is read (False outside the profile), and a batch beyond the profile's largest is
    run in parts instead of failing obscurely."""
    from regenrt.errors import InputError

    world, make = runner_world
    runner = make(False)
    assert runner.max_batch == 4
    x = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    assert np.allclose(runner.infer(x), 2 * x)  # 4 + 4 + 2
    assert {s[0] for s in runner._slots} == {4, 2}
    with pytest.raises(InputError, match=r"takes inputs from \(1, 1, 8, 8\) to \(4, 1, 8, 8\).*got \(1, 1, 9, 8\)"):
        runner.infer(np.zeros((1, 1, 9, 8), np.float32))
    with pytest.raises(InputError, match="a batch of 5 exceeds"):
        runner.buffers((5, 1, 8, 8))


def test_an_output_shape_that_does_not_fit_is_refused(runner_world, monkeypatch):
    world, make = runner_world
    runner = make(False)
    from regenrt.errors import RegenrtError

    original = runner.engine.create_execution_context

    def dynamic_output():
        context = original()
        context.get_tensor_shape = lambda name: (-1, 1, 8, 8)  # an unresolved dimension
        return context

    runner.engine.create_execution_context = dynamic_output
    with pytest.raises(RegenrtError, match=r"output of shape \(-1, 1, 8, 8\)"):
        runner.infer(np.zeros((2, 1, 8, 8), np.float32))


def test_contexts_are_bounded_by_bytes(runner_world, monkeypatch):
    """Each context holds the engine's whole activation memory: 16 of them can exhaust a GPU."""
    world, make = runner_world
    world.context_bytes = 10_000
    monkeypatch.setenv("REGENRT_GPU_CACHE_MB", str(25_000 / (1 << 20)))  # room for two contexts
    runner = make(False)
    for n in (1, 2, 3, 4):
        runner.infer(np.zeros((n, 1, 8, 8), np.float32))
    assert [s[0] for s in runner._slots] == [3, 4] and runner._slots.nbytes <= 25_000


def test_graphs_are_captured_thread_local(runner_world):
    """Global capture mode: another thread's cudaMalloc or synchronize (a second engine, a Ray or Triton worker)
    invalidates the capture in progress."""
    world, make = runner_world
    runner = make(True)
    runner.infer(np.zeros((2, 1, 8, 8), np.float32))
    modes = [e["mode"] for e in world.log if e["op"] == "capture"]
    assert modes == ["thread_local"]
    runner.capture(lambda: runner.enqueue((2, 1, 8, 8)))
    assert [e["mode"] for e in world.log if e["op"] == "capture"] == ["thread_local"] * 2
