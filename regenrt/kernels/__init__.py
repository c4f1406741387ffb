"""Pre/post-processing math: NumPy references (``reference``); faster kernels plug in beside them."""
