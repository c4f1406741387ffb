"""Online serving for real: Triton (bundled with nvidia-pytriton) on 127.0.0.1, started and stopped by the module
fixture, a regenrt Predictor bound with dynamic batching. Concurrent HTTP clients get exactly the Predictor's
answers; malformed requests get a clear error and the server keeps answering."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (it needs numpy < 2: ./dev.sh test runs "
                    "these tests in .venv-serve, an environment of their own)")

from pytriton.client import ModelClient  # noqa: E402
from pytriton.client.exceptions import PyTritonClientInferenceServerError  # noqa: E402

from regenrt.integrations.pytriton import serve  # noqa: E402
from regenrt.runtime import Engine, Predictor, RunOptions  # noqa: E402
from regenrt.tasks.synthetic import box_masks, synthetic_pictures  # noqa: E402

from .ports import free_ports  # noqa: E402


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("triton") / "triton.log"


@pytest.fixture(scope="module")
def served(inpainting_engine, server_log):
    """(Triton's log goes to a file: written to the console, the server's own process printed the refused
    requests' tracebacks into pytest's progress line.)"""
    engine = Engine.load(inpainting_engine, device="cpu")
    http, grpc, metrics = free_ports(3)
    with serve(engine, http_port=http, grpc_port=grpc, metrics_port=metrics, max_batch_size=4,
               log_file=server_log) as triton:
        assert triton.is_alive()
        yield f"http://127.0.0.1:{http}", Predictor(engine, RunOptions(batch_size=1))


def _requests(n, seed):
    pictures = synthetic_pictures(n, 128, 128, 3, seed=seed)
    masks, _ = box_masks(n, 128, 128, seed=seed + 1)
    return [(p, m * 255) for p, m in zip(pictures, masks)]


def test_concurrent_clients_get_the_predictors_answers(served):
    url, predictor = served
    work = _requests(24, seed=3)

    def client(chunk):
        with ModelClient(url, "inpainting", init_timeout_s=60) as c:
            return [c.infer_sample(picture=p, mask=m)["image"] for p, m in chunk]

    with ThreadPoolExecutor(6) as pool:  # 6 clients x 4 requests, in flight together: Triton batches them
        answers = [a for part in pool.map(client, [work[i::6] for i in range(6)]) for a in part]
    expected = [predictor.predict(picture=p, mask=m)[".png"] for i in range(6) for p, m in work[i::6]]
    for got, want in zip(answers, expected):
        assert got.dtype == np.uint8 and got.shape == (128, 128, 3)
        assert np.array_equal(got, want)


def test_malformed_requests_get_clear_errors_and_the_server_stays_up(served, server_log):
    url, predictor = served
    (picture, mask), = _requests(1, seed=9)
    with ModelClient(url, "inpainting", init_timeout_s=60) as c:
        with pytest.raises(PyTritonClientInferenceServerError, match="mask is 64x64 but the picture is 128x128"):
            c.infer_sample(picture=picture, mask=mask[:64, :64])
        with pytest.raises(PyTritonClientInferenceServerError, match="not binary"):
            c.infer_sample(picture=picture, mask=(np.arange(128 * 128) % 7).astype(np.uint8).reshape(128, 128))
        with pytest.raises(Exception, match="(?i)float|FP32|dtype|data type"):  # Triton's own type check
            c.infer_sample(picture=picture.astype(np.float32), mask=mask)
        good = c.infer_sample(picture=picture, mask=mask)["image"]  # still up, still right
    assert np.array_equal(good, predictor.predict(picture=picture, mask=mask)[".png"])
    assert "mask is 64x64 but the picture is 128x128" in server_log.read_text(errors="replace")  # logged, there
