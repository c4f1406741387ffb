"""Fault classes of run-infer: an item's fault is a row of errors.csv and the run goes on; an environment fault
(disk full, an engine failing on every batch, out of memory on one item) stops the run at once with exit code 10
and a message naming the cause and what is left; items not attempted are not marked failed; a re-run completes
the rest byte-identical. Real faults where this machine allows (a 2 MiB tmpfs for a full disk), injected
otherwise (the engine's runner)."""
import shutil
import subprocess

import numpy as np
import pytest

from regenrt.errors import EnvironmentFault
from regenrt.runtime import Engine, RunOptions, run_directory
from regenrt.runtime.manifest import MANIFEST_NAME

from .helpers import errors_csv, run_infer


def _phase_inputs(directory, n, size=64):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        np.save(directory / f"p{i:03d}.npy", rng.uniform(-np.pi, np.pi, (size, size)))


def _done(out_dir):
    path = out_dir / MANIFEST_NAME
    return path.read_text().count("\n") if path.exists() else 0


@pytest.fixture()
def small_disk(tmp_path):
    """A real 2 MiB file system (tmpfs; needs root, else the test skips)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_stops_at_once_and_a_rerun_completes_the_rest(deeplab_engine_dir, tmp_path, small_disk):
    _phase_inputs(tmp_path / "in", 16, size=128)  # 16 x (64 KiB .npy + PNG): fits 2 MiB, not with the ballast
    engine = deeplab_engine_dir / "model.onnx"
    reference = run_infer("--engine", engine, "--input", tmp_path / "in", "--output", tmp_path / "ref",
                          "--save-npy", "-q")
    assert reference.returncode == 0, reference.stderr
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * 1_300_000)
    out = small_disk / "out"
    full = run_infer("--engine", engine, "--input", tmp_path / "in", "--output", out, "--save-npy", "-q",
                     "--batch-size", "2")
    assert full.returncode == 10, (full.returncode, full.stdout, full.stderr)
    assert "disk is full" in full.stderr and "not attempted" in full.stderr and "re-run" in full.stderr
    done = _done(out)
    assert 0 < done < 16
    if (out / "errors.csv").exists():  # nothing was an item's fault: no item is marked failed for a full disk
        assert not errors_csv(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    ballast.unlink()
    resumed = run_infer("--engine", engine, "--input", tmp_path / "in", "--output", out, "--save-npy", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipped {done}" in resumed.stdout
    ref = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("p*")}
    got = {p.name: p.read_bytes() for p in out.glob("p*")}
    assert got == ref


def _engine_with(deeplab_engine_dir, fault):
    """The real engine, its runner wrapped by ``fault(batch, infer)`` (fault injection)."""
    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu")
    infer = engine.runner.infer
    engine.runner.infer = lambda x: fault(x, infer)
    return engine


def test_non_finite_engine_output_is_an_item_failure_and_nothing_is_written(deeplab_engine_dir, tmp_path):
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(2)
    bad = {"p001", "p003"}
    for i in range(5):  # the "bad" items hold large positive phases, the others large negative ones
        lo, hi = (2.5, 3.0) if f"p{i:03d}" in bad else (-3.0, -2.5)
        np.save(tmp_path / "in" / f"p{i:03d}.npy", rng.uniform(lo, hi, (64, 64)))

    def nan_for_positive_items(x, infer):
        y = infer(x)
        y[x.reshape(len(x), -1).mean(axis=1) > 0] = np.nan
        return y

    summary = run_directory(_engine_with(deeplab_engine_dir, nan_for_positive_items), tmp_path / "in",
                            tmp_path / "o", RunOptions(batch_size=2))
    assert (summary.done, summary.failed) == (3, 2)
    errors = errors_csv(tmp_path / "o")
    assert set(errors) == bad and all("NaN/Inf" in r for r in errors.values())
    assert {p.stem for p in (tmp_path / "o").glob("*.png")} == {f"p{i:03d}" for i in range(5)} - bad


def test_an_item_that_breaks_the_engine_fails_alone(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 6)

    def fails_on_one(x, infer):
        if np.any(np.isclose(x[:, 0, 0, 0], np.load(tmp_path / "in" / "p002.npy")[0, 0] / np.pi, atol=1e-6)):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT")
        return infer(x)

    summary = run_directory(_engine_with(deeplab_engine_dir, fails_on_one), tmp_path / "in", tmp_path / "o",
                            RunOptions(batch_size=4))
    assert (summary.done, summary.failed) == (5, 1)
    assert list(errors_csv(tmp_path / "o")) == ["p002"] and "INVALID_ARGUMENT" in errors_csv(tmp_path / "o")["p002"]


def test_out_of_memory_on_a_batch_is_retried_item_by_item(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 5)

    def no_memory_for_batches(x, infer):
        if len(x) > 1:
            raise MemoryError()
        return infer(x)

    summary = run_directory(_engine_with(deeplab_engine_dir, no_memory_for_batches), tmp_path / "in",
                            tmp_path / "o", RunOptions(batch_size=4))
    assert (summary.done, summary.failed) == (5, 0)


def test_an_engine_failing_on_every_batch_stops_the_run_without_blaming_items(deeplab_engine_dir, tmp_path):
    """Three batches failing on every item: the engine is at fault, not the 6 items (no error rows), the message
    says so (not "free space"), and a re-run redoes them."""
    _phase_inputs(tmp_path / "in", 40)
    calls = []

    def broken(x, infer):
        calls.append(len(x))
        raise RuntimeError("[TensorRT] execution failed")

    with pytest.raises(EnvironmentFault, match="failed on every item of 3 batches in a row") as err:
        run_directory(_engine_with(deeplab_engine_dir, broken), tmp_path / "in", tmp_path / "o",
                      RunOptions(batch_size=2, workers=1))
    summary = err.value.summary
    assert summary.failed == 0 and summary.done == 0 and not summary.errors
    assert not (tmp_path / "o" / "errors.csv").exists() and err.value.exit_code == 10
    message = str(err.value)
    assert "engine's or the GPU's fault" in message and "restart the process" in message
    assert "free space" not in message and "resumes with the 40 left" in message
    summary = run_directory(Engine.load(deeplab_engine_dir / "model.onnx", device="cpu"), tmp_path / "in",
                            tmp_path / "o", RunOptions(batch_size=2))
    assert (summary.done, summary.failed) == (40, 0)


@pytest.mark.parametrize("error", ["torch", "numba"])
def test_a_sticky_cuda_error_stops_at_once_without_retries_or_blame(deeplab_engine_dir, tmp_path, error):
    """An illegal memory access poisons the CUDA context: no item-by-item retries (each would fail and be blamed),
    no error rows, exit 10 with what to do."""
    from numba.cuda.cudadrv.driver import CudaAPIError

    _phase_inputs(tmp_path / "in", 12)
    calls = []

    def poisoned(x, infer):
        calls.append(len(x))
        if error == "torch":
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with "
                               "`TORCH_USE_CUDA_DSA` to enable device-side assertions.")
        raise CudaAPIError(700, "Call to cuStreamSynchronize results in CUDA_ERROR_ILLEGAL_ADDRESS")

    with pytest.raises(EnvironmentFault, match="the GPU reported an illegal memory access") as err:
        run_directory(_engine_with(deeplab_engine_dir, poisoned), tmp_path / "in", tmp_path / "o",
                      RunOptions(batch_size=4, workers=1))
    assert calls == [4]  # the first batch, once: no retry of its items one by one
    assert err.value.summary.failed == 0 and not (tmp_path / "o" / "errors.csv").exists()
    assert "restart the process" in str(err.value) and err.value.exit_code == 10


@pytest.mark.parametrize("kind", ["torch", "numba"])
def test_gpu_out_of_memory_is_retried_item_by_item(deeplab_engine_dir, tmp_path, kind):
    """On the GPU, out of memory is torch.OutOfMemoryError or numba's CudaAPIError, not MemoryError."""
    import torch
    from numba.cuda.cudadrv.driver import CudaAPIError

    _phase_inputs(tmp_path / "in", 5)

    def no_memory_for_batches(x, infer):
        if len(x) > 1:
            if kind == "torch":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise CudaAPIError(2, "Call to cuMemAlloc results in CUDA_ERROR_OUT_OF_MEMORY")
        return infer(x)

    summary = run_directory(_engine_with(deeplab_engine_dir, no_memory_for_batches), tmp_path / "in",
                            tmp_path / "o", RunOptions(batch_size=4))
    assert (summary.done, summary.failed) == (5, 0)

    def no_memory_at_all(x, infer):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(EnvironmentFault, match="out of memory running the engine on a single item"):
        run_directory(_engine_with(deeplab_engine_dir, no_memory_at_all), tmp_path / "in", tmp_path / "o2",
                      RunOptions(batch_size=4))


def test_zero_size_and_undecodable_names_are_rows_not_crashes(deeplab_engine_dir, tmp_path):
    _phase_inputs(tmp_path / "in", 2)
    np.save(tmp_path / "in" / "empty.npy", np.zeros((0, 0)))
    weird = bytes(tmp_path / "in") + b"/caf\xe9.npy"  # a Latin-1 name: not valid UTF-8
    with open(weird, "wb") as fh:
        fh.write(b"not an npy file")
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "o", "-q")
    assert result.returncode == 8, result.stderr
    text = (tmp_path / "o" / "errors.csv").read_text(encoding="utf-8")
    assert "empty" in text and "nothing to run" in text and "caf" in text
    assert (tmp_path / "o" / "p000.png").exists() and (tmp_path / "o" / "p001.png").exists()


@pytest.mark.parametrize("dtype", [">f4", "<f8", ">f8", "f2", "longdouble", ">c8"])
def test_every_float_dtype_and_byte_order_works_with_both_kernel_sets(deeplab_engine_dir, tmp_path, dtype):
    """The README's "any float dtype": normalized once at the boundary, so numba and NumPy kernels agree."""
    from regenrt.kernels import get_kernels

    rng = np.random.default_rng(3)
    phase = rng.uniform(-np.pi, np.pi, (64, 64))
    data = np.exp(1j * phase) if dtype.endswith("c8") else phase
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "p.npy", data.astype(dtype))
    engine = Engine.load(deeplab_engine_dir / "model.onnx", device="cpu")
    outs = {}
    for kernels in ("numpy", "numba"):
        summary = run_directory(engine, tmp_path / "in", tmp_path / kernels,
                                RunOptions(kernels=get_kernels(kernels), save_npy=True))
        assert (summary.done, summary.failed) == (1, 0), summary.errors
        outs[kernels] = (tmp_path / kernels / "p.png").read_bytes()
    assert outs["numpy"] == outs["numba"]


def test_npy_header_is_checked_before_loading(deeplab_engine_dir, tmp_path):
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "huge.npy", "wb") as fh:  # declares 1e5 x 1e5 float64 (80 GB), holds nothing
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)})
    np.save(tmp_path / "in" / "ok.npy", np.zeros((64, 64)))
    summary = run_directory(Engine.load(deeplab_engine_dir / "model.onnx", device="cpu"), tmp_path / "in",
                            tmp_path / "o")
    assert (summary.done, summary.failed) == (1, 1)
    assert "refused before loading" in errors_csv(tmp_path / "o")["huge"]


def _fuzzed_npy(rng, n):
    """Corrupted headers, truncated data, absurd shapes and dtypes: what a fuzzer feeds the decoder."""
    import io as _io

    good = _io.BytesIO()
    np.save(good, rng.uniform(-3, 3, (16, 16)).astype("<f4"))
    base = good.getvalue()
    header_end = base.index(b"\n") + 1
    headers = [b"{'descr': '<f4', 'fortran_order': False, 'shape': (16, 16), }",
               b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }",
               b"{'descr': '|V1000000000', 'fortran_order': False, 'shape': (2, 2), }",
               b"{'descr': '<U200000000', 'fortran_order': False, 'shape': (1, 1), }",
               b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4, 4, 4, 64, 64), }",
               b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }",
               b"{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 16), }",
               b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (16, 16), }",
               b"{'descr': '<f4', 'fortran_order': False, 'shape': (16, 16), 'x': \"\"\"}",
               b"{'descr': '<f4', 'fortran_order': False, 'shape': (16, 16)"]
    for k in range(n):
        kind = k % 4
        if kind == 0:  # a byte of the header flipped
            data = bytearray(base)
            data[rng.integers(6, header_end)] = rng.integers(0, 256)
        elif kind == 1:  # truncated anywhere
            data = base[:rng.integers(0, len(base))]
        elif kind == 2:  # a chosen absurd header, with or without data
            text = headers[k // 4 % len(headers)]
            data = b"\x93NUMPY\x01\x00" + len(text + b"\n").to_bytes(2, "little") + text + b"\n"
            data += base[header_end:][:rng.integers(0, 2048)]
        else:  # random bytes in the header's dict
            data = bytearray(base)
            for _ in range(4):
                data[rng.integers(10, header_end - 1)] = rng.choice(list(b"(){}[],:'0123456789<>fuUVO \""))
        yield bytes(data)


@pytest.mark.filterwarnings("ignore:Data type alias:DeprecationWarning")  # (fuzzed headers name old dtype aliases)
def test_fuzzed_npy_files_are_input_errors_and_allocate_nothing(tmp_path):
    """Every fuzzed .npy becomes an InputError with a reason (a fuzzer found tokenize.TokenError from NumPy's header
    parser, and a MemoryError for a shape the pixel limit did not stop); nothing is allocated for a header that
    promises more than the limit."""
    import tracemalloc

    from regenrt.errors import InputError
    from regenrt.runtime.io import load_npy_checked

    rng = np.random.default_rng(11)
    path = tmp_path / "f.npy"
    outcomes = {"ok": 0, "input_error": 0}
    tracemalloc.start()
    try:
        for data in _fuzzed_npy(rng, 1600):
            path.write_bytes(data)
            tracemalloc.reset_peak()
            try:
                load_npy_checked(path, max_pixels=1 << 20)
                outcomes["ok"] += 1
            except InputError as exc:
                assert str(exc), "an InputError must say why"
                outcomes["input_error"] += 1
            assert tracemalloc.get_traced_memory()[1] < 64 << 20  # no allocation beyond the limit's size
    finally:
        tracemalloc.stop()
    assert outcomes["input_error"] > 800 and outcomes["ok"] > 0


def test_fuzzed_npy_in_a_run_are_rows_of_errors_csv(deeplab_engine_dir, tmp_path):
    rng = np.random.default_rng(12)
    (tmp_path / "in").mkdir()
    for k, data in enumerate(_fuzzed_npy(rng, 24)):
        (tmp_path / "in" / f"f{k:02d}.npy").write_bytes(data)
    summary = run_directory(Engine.load(deeplab_engine_dir / "model.onnx", device="cpu"), tmp_path / "in",
                            tmp_path / "o", RunOptions(batch_size=4))
    assert summary.done + summary.failed == 24 and summary.failed > 0
    reasons = errors_csv(tmp_path / "o")
    assert len(reasons) == summary.failed and all(r for r in reasons.values())
    assert not any("TokenError" in r or "MemoryError" in r for r in reasons.values())
