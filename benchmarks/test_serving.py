"""Online serving load (issue 16): requests/s and p50/p99 latency of the PyTriton server (HTTP on loopback, dynamic
batching up to 8) at 1, 4 and 16 concurrent clients, vs the same Predictor called in-process from as many threads.
The model: pix2pix unet_256 ngf 64 (inpainting, 256² picture + mask per request), the engine export-engine chose.
Bounded: 8 requests per client, at most 128 per level. Heavy (an export, a server): only under
``pytest --benchmark``.
"""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from regenrt.runtime import Engine, Predictor, RunOptions
from regenrt.tasks.synthetic import box_masks, synthetic_pictures

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (it needs numpy < 2: run this "
                    "benchmark in an environment of its own with regenrt[serve,test])")

SMOKE = {"clients": []}  # no smoke case: the tests cover the server (tests/integrations/test_pytriton.py)
PER_CLIENT = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(call, clients: int, work) -> tuple[float, list[float]]:
    """Wall time and per-request latencies of ``clients`` threads, each running its share of ``work``."""
    def one_client(chunk):
        session = call()
        lat = []
        for picture, mask in chunk:
            t = time.perf_counter()
            session(picture, mask)
            lat.append(time.perf_counter() - t)
        return lat

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for part in pool.map(one_client, [work[i::clients] for i in range(clients)]) for x in part]
    return time.perf_counter() - start, latencies


@pytest.mark.parametrize("clients", [1, 4, 16])
def test_serving(benchmark, exported, clients):
    from pytriton.client import ModelClient

    from regenrt.integrations.pytriton import serve

    n = clients * PER_CLIENT
    pictures = synthetic_pictures(n, 256, 256, 3, seed=11)
    masks, _ = box_masks(n, 256, 256, seed=12)
    work = [(p, m * 255) for p, m in zip(pictures, masks)]
    engine = Engine.load(exported("unet_256_ngf64"), device="cpu", mode="throughput")  # as run-infer loads it
    predictor = Predictor(engine, RunOptions(batch_size=8))
    predictor.predict(picture=work[0][0], mask=work[0][1])  # warm
    local_s, local_lat = _timed(lambda: (lambda p, m: predictor.predict(picture=p, mask=m)), clients, work)

    http = _port()
    with serve(engine, http_port=http, grpc_port=_port(), metrics_port=_port(), max_batch_size=8):
        url = f"http://127.0.0.1:{http}"

        def client():
            c = ModelClient(url, "inpainting", init_timeout_s=120, inference_timeout_s=120)
            return lambda p, m: c.infer_sample(picture=p, mask=m)

        client()(*work[0])  # warm (model loaded, first batch compiled)
        served_s, served_lat = benchmark.pedantic(lambda: _timed(client, clients, work), rounds=1, iterations=1)

    def pct(lat, q):
        return float(np.percentile(np.array(lat) * 1000, q))

    benchmark.extra_info.update({
        "serving": f"inpainting (unet_256_ngf64, {engine.path.name}), PyTriton HTTP, dynamic batching ≤ 8, "
                   f"{engine.requests} model instance(s)",
        "clients": clients, "requests": n,
        "served_rps": n / served_s, "served_p50_ms": pct(served_lat, 50), "served_p99_ms": pct(served_lat, 99),
        "local_rps": n / local_s, "local_p50_ms": pct(local_lat, 50), "local_p99_ms": pct(local_lat, 99),
    })
