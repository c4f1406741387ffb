import os
import subprocess
import sys

import numpy as np
from PIL import Image


def run_infer(*args, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "regenrt.cli.run_infer", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


def save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def read_png(path):
    with Image.open(path) as img:
        return np.asarray(img)


def errors_csv(out_dir):
    import csv

    with open(out_dir / "errors.csv", newline="") as fh:
        return {row["item"]: row["reason"] for row in csv.DictReader(fh)}
