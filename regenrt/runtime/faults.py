"""What an exception from the engine means for a run: an item's fault, memory, or an engine (device) fault.

A batch that fails is normally retried item by item, so that only the item at fault fails. Two kinds of failure
are not about items:

- **out of memory** arrives as ``MemoryError`` on the host, but as ``torch.OutOfMemoryError`` or numba's
  ``CudaAPIError`` (CUDA_ERROR_OUT_OF_MEMORY) on the GPU: the batch is retried smaller, and out of memory on a single
  item stops the run;
- **a sticky device error** (an illegal memory access, a device-side assert, a launch failure...) poisons the CUDA
  context: every later call in the process fails. Retrying item by item would only blame innocent items, so the run
  stops at once and says to restart the process and check the GPU.

Example::

    reason = engine_fault(exc)      # None, or what is wrong with the device
"""
from __future__ import annotations

# CUresult codes after which the CUDA context is unusable (CUDA driver API, "the process must be terminated")
STICKY_CUDA = {
    700: "an illegal memory access (CUDA_ERROR_ILLEGAL_ADDRESS)",
    702: "a kernel timed out (CUDA_ERROR_LAUNCH_TIMEOUT)",
    709: "the CUDA context was destroyed (CUDA_ERROR_CONTEXT_IS_DESTROYED)",
    710: "a device-side assert (CUDA_ERROR_ASSERT)",
    714: "a hardware stack error (CUDA_ERROR_HARDWARE_STACK_ERROR)",
    715: "an illegal instruction (CUDA_ERROR_ILLEGAL_INSTRUCTION)",
    716: "a misaligned address (CUDA_ERROR_MISALIGNED_ADDRESS)",
    717: "an invalid address space (CUDA_ERROR_INVALID_ADDRESS_SPACE)",
    718: "an invalid program counter (CUDA_ERROR_INVALID_PC)",
    719: "a kernel launch failure (CUDA_ERROR_LAUNCH_FAILED)",
    999: "an unknown CUDA error (CUDA_ERROR_UNKNOWN)",
}
# how the CUDA runtime (torch, TensorRT's logger) words the same errors
STICKY_TEXT = {
    "illegal memory access": 700, "device-side assert": 710, "unspecified launch failure": 719,
    "misaligned address": 716, "illegal instruction": 715, "hardware stack error": 714, "the launch timed out": 702,
    "CUDA_ERROR_ILLEGAL_ADDRESS": 700, "CUDA_ERROR_LAUNCH_FAILED": 719, "CUDA_ERROR_ASSERT": 710,
    "CUDA_ERROR_MISALIGNED_ADDRESS": 716, "CUDA_ERROR_ILLEGAL_INSTRUCTION": 715,
}
OUT_OF_MEMORY_CODE = 2  # CUDA_ERROR_OUT_OF_MEMORY

ENGINE_ADVICE = ("This is the engine's or the GPU's fault, not the items': restart the process (a GPU's CUDA context "
                 "cannot be used again after such an error), check the GPU (nvidia-smi; Xid errors in the kernel log; "
                 "other processes on it) and, if it happens again on the same items, re-export the engine and report "
                 "it")


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Host or device memory exhausted (``MemoryError``, ``torch.OutOfMemoryError``, CUDA_ERROR_OUT_OF_MEMORY)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return (type(exc).__name__ == "CudaAPIError" and _code(exc) == OUT_OF_MEMORY_CODE) \
        or "CUDA_ERROR_OUT_OF_MEMORY" in text or "CUDA out of memory" in text


def engine_fault(exc: BaseException) -> str | None:
    """What is wrong with the device when ``exc`` is a sticky CUDA error (the context is poisoned), else None."""
    if type(exc).__name__ == "CudaAPIError" and _code(exc) in STICKY_CUDA:
        return STICKY_CUDA[_code(exc)]
    text = str(exc)
    for words, code in STICKY_TEXT.items():
        if words in text:
            return STICKY_CUDA[code]
    return None
