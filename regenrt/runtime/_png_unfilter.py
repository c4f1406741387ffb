"""The numba half of regenrt's PNG reader (:mod:`regenrt.runtime.png`): undoing the row filters. A module of its
own so numba caches the compiled function on disk (it does not cache functions built inside other functions) and
so ``import regenrt.runtime.png`` stays free of numba."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)  # decode workers run it side by side
def unfilter(raw, h, stride, bpp, out):
    """PNG's five row filters undone (PNG spec 9.2), one loop per filter type; False on an unknown type."""
    zero = np.zeros(stride, np.uint8)
    for y in range(h):
        src, row = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], out[y]
        up = out[y - 1] if y > 0 else zero
        kind = raw[y * (stride + 1)]
        if kind == 0:
            for x in range(stride):
                row[x] = src[x]
        elif kind == 1:
            for x in range(bpp):
                row[x] = src[x]
            for x in range(bpp, stride):
                row[x] = (np.int32(src[x]) + row[x - bpp]) & 0xFF
        elif kind == 2:
            for x in range(stride):
                row[x] = (np.int32(src[x]) + up[x]) & 0xFF
        elif kind == 3:
            for x in range(bpp):
                row[x] = (np.int32(src[x]) + (np.int32(up[x]) >> 1)) & 0xFF
            for x in range(bpp, stride):
                row[x] = (np.int32(src[x]) + ((np.int32(row[x - bpp]) + up[x]) >> 1)) & 0xFF
        elif kind == 4:
            for x in range(bpp):  # a = c = 0: the predictor is b
                row[x] = (np.int32(src[x]) + up[x]) & 0xFF
            for x in range(bpp, stride):
                a, b, c = np.int32(row[x - bpp]), np.int32(up[x]), np.int32(up[x - bpp])
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                row[x] = (np.int32(src[x]) + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 0xFF
        else:
            return False
    return True
