"""Compile every numba CUDA kernel of regenrt to PTX, without a GPU: NVVM only (``pip install "numba-cuda[cu12]"``).

    python tools/cuda_compile_check.py [--cc 9.0]

The test suite runs the kernels under numba's CUDA simulator, which executes them as Python and never compiles
them: a kernel that types or lowers wrongly for a real GPU passes there and fails only on the device. This
compiles each kernel with the argument types its launcher passes (any layout: launchers accept strided views) for
the given compute capability (default 9.0: H100 and H200). Exit status: 0 when every kernel
compiles, 1 when one does not (each error printed), 2 when numba-cuda or NVVM is missing here.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def signatures() -> dict[str, tuple]:
    """Kernel name -> the argument types its launcher passes (the launcher's docstring says which arrays)."""
    from numba import types

    f32, u8, flag, i64, f64, i32 = (types.float32, types.uint8, types.boolean, types.int64, types.float64,
                                    types.int32)

    def a(dtype, ndim):
        return types.Array(dtype, ndim, "A")

    return {
        "_phase_kernel": (a(f32, 2), a(f32, 4), i64, flag, flag, f64, f64),
        "_planes_kernel": (a(f32, 3), a(f32, 4), i64, flag, flag, f64, f64),
        "_phase_batch_kernel": (a(f32, 3), a(f32, 4), flag, flag, f64, f64),
        "_holes_batch_kernel": (a(u8, 4), a(u8, 3), a(f32, 4), i64, f32),
        "_rgb_batch_kernel": (a(u8, 4), a(f32, 1), a(f32, 1), a(f32, 4), i64),
        "_composite_batch_kernel": (a(f32, 4), a(u8, 4), a(u8, 3), a(f32, 3), flag, flag, a(u8, 4), a(i32, 2), flag),
        "_argmax_batch_kernel": (a(f32, 4), a(u8, 2), a(u8, 3), a(u8, 4), a(i32, 2), flag),
        "_phase_finish_batch_kernel": (a(f32, 4), f64, f64, f64, a(u8, 3), a(f64, 3)),
    }


def kernel_names(module) -> set[str]:
    """Every kernel the module defines (private ``_..._kernel`` names, by the module's convention)."""
    return {name for name in vars(module) if name.startswith("_") and name.endswith("_kernel")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0)")
    args = parser.parse_args(argv)
    cc = tuple(int(p) for p in args.cc.split("."))
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:  # numba's own, deprecated CUDA target is not what runs
        print("cuda-compile-check: numba-cuda is not installed (regenrt's `cuda` extra); "
              "pip install \"numba-cuda[cu12]\"")
        return 2
    try:
        import numba.cuda.dispatcher as dispatcher
        from numba import cuda

        import regenrt.kernels.numba_cuda as kernels
    except ImportError as exc:
        print(f"cuda-compile-check: numba-cuda is not installed ({exc}); pip install \"numba-cuda[cu12]\"")
        return 2
    # device functions compile for "the current device": without a driver there is none, so name the target
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    table = signatures()
    missing = kernel_names(kernels) - set(table)
    failed = [f"{name}: no signature in tools/cuda_compile_check.py" for name in sorted(missing)]
    for name, sig in table.items():
        try:
            ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, sig, cc=cc)
        except Exception as exc:  # noqa: BLE001 - every kernel's error is reported
            if "NVVM" in str(exc) or "libnvvm" in str(exc):
                print(f"cuda-compile-check: NVVM not found ({exc}); pip install \"numba-cuda[cu12]\"")
                return 2
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        print(f"{name}: compiled for sm_{cc[0]}{cc[1]} ({len(ptx)} bytes of PTX)")
    for line in failed:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"  # the real compiler, not the simulator (read when numba loads)
    sys.exit(main())
