"""INT8 candidates: NNCF quantization, the leave-one-out ranking of the layers that cost accuracy, and the
mixed-precision repair the export falls back to when the gate refuses the INT8 IR. Real NNCF, real OpenVINO."""
import json

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from regenrt.export.int8 import (bypassed, fp32_weights, mixed_name, output_layers, quantize, quantized_layers,  # noqa: E402
                                 read_stable, sensitivity)
from regenrt.export.onnx_export import export_onnx  # noqa: E402
from regenrt.export.parity import compare  # noqa: E402
from regenrt.export.pipeline import export_checkpoint  # noqa: E402
from regenrt.export.parity import Tolerances  # noqa: E402
from regenrt.models import create_model  # noqa: E402
from regenrt.runtime.backends.openvino import cpu_has_int8, read_metadata  # noqa: E402
from regenrt.tasks import get_task  # noqa: E402

pytestmark = pytest.mark.skipif(not cpu_has_int8(), reason="OpenVINO reports no INT8 support on this CPU")


def _phase_model():
    torch.manual_seed(0)
    model = create_model("deeplabv3plus_r18", in_channels=1, classes=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


class _Ctx:
    """The slice of BuildContext that quantize() reads."""

    def __init__(self, calibration, metric=None):
        self.calibration = calibration
        if metric:
            self.metric = metric

    def derived(self, precision, **extra):
        return {"precision": precision, "input": {"example_shape": [1, *self.calibration.shape[1:]]}, **extra}


def _psnr(ref, y):
    return compare(ref, y)["psnr_db"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    work = tmp_path_factory.mktemp("int8")
    model = _phase_model()
    inputs = get_task("phase-recovery").make_inputs({"in_channels": 1}, 6, 96, 96, 5).astype(np.float32)
    source = work / "model.onnx"
    export_onnx(model, source, example=torch.from_numpy(inputs[:1]), dynamic_hw=True, spatial_multiple=16)
    xml = quantize(source, work / "model.openvino.int8.xml", _Ctx(inputs[:4]), ignored=())
    with torch.no_grad():
        ref = model(torch.from_numpy(inputs[4:])).numpy()
    return source, xml, inputs[4:], ref


def _run(xml_or_model, x):
    import openvino as ov

    compiled = ov.Core().compile_model(xml_or_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return np.concatenate([request.infer({0: x[i:i + 1]})[compiled.outputs[0]].copy() for i in range(len(x))])


@pytest.mark.full
def test_ranking_covers_every_quantized_layer_and_its_head_costs_the_most(quantized):
    source, xml, x, ref = quantized
    import openvino as ov

    names = quantized_layers(ov.Core().read_model(str(xml)))
    ranking, info = sensitivity(source, xml, x)
    assert sorted(ranking) == sorted(names) and len(names) > 10
    without = info["cost_without"]
    assert without[ranking[0]] == min(without.values()) < info["int8_cost"]  # bypassing the top layer helps most
    # the bypass really leaves that input unquantized: the layer's data input is no FakeQuantize any more
    model = bypassed(ov.Core(), xml, ranking[:1])
    op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() == ranking[0])
    assert op.input_value(0).get_node().get_type_name() != "FakeQuantize"


def test_bypass_puts_the_fp32_weights_back_as_the_ignored_scope_does(quantized):
    """The quantized IR stores 8-bit (7-bit where INT8 saturates) weights; a layer NNCF ignores keeps its FP32
    weights, so the prediction must too: bypassing every layer with its weights comes closer to FP32 than with
    its input alone (the weights' rounding gone; measured: +0.7 dB on a VNNI CPU, where weights are 8-bit; on the
    DeepLabV3+ R50 phase model under an AVX2 cap, 7-bit weights, its two costliest layers: 36.4 -> 40.6 dB)."""
    source, xml, x, ref = quantized
    import openvino as ov

    core = ov.Core()
    names = quantized_layers(core.read_model(str(xml)))
    weights = fp32_weights(read_stable(core, source))
    assert set(names) <= set(weights)  # every quantized layer's FP32 weights found (grouped ones included)
    model = bypassed(core, xml, names[:1], weights)
    op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() == names[0])
    assert np.array_equal(op.input_value(1).get_node().get_data(), weights[names[0]])
    data_only, with_weights = (_psnr(ref, _run(bypassed(core, xml, names, w), x)) for w in (None, weights))
    assert with_weights > data_only, (data_only, with_weights)


@pytest.mark.full
def test_requantizing_with_the_costliest_layers_ignored_gains_accuracy(quantized, tmp_path):
    source, xml, x, ref = quantized
    ranking, _ = sensitivity(source, xml, x)
    calibration = get_task("phase-recovery").make_inputs({"in_channels": 1}, 4, 96, 96, 5).astype(np.float32)
    mixed = quantize(source, tmp_path / mixed_name(xml.name), _Ctx(calibration), ignored=tuple(ranking[:4]))
    assert mixed.name == "model.openvino.int8-mixed.xml"
    assert read_metadata(mixed)["int8"]["kept_unquantized"] == sorted(ranking[:4])
    assert _psnr(ref, _run(str(mixed), x)) > _psnr(ref, _run(str(xml), x))


@pytest.mark.full
def test_export_repairs_a_refused_int8_ir_and_says_what_it_kept(tmp_path):
    """A gate set 0.5 dB above what plain INT8 reaches on this model (any CPU kind): the export keeps the
    costliest layers in FP32 (predicted by the ranking, then verified by the real gate) and publishes the mixed IR;
    the kept layers are in parity.json and in the IR's metadata, and the proof shows them executing in FP32."""
    ckpt = tmp_path / "phase.pt"
    torch.save(_phase_model().state_dict(), ckpt)
    common = dict(input_shape="input:1x1x96x96", precision="fp32", parity_samples=1, calibration_samples=4,
                  int8="on", run_batch=1)  # (the engine's choice is not what this checks)
    first = export_checkpoint(ckpt, tmp_path / "plain", **common)
    plain = first.report["candidates"]["openvino-int8"]
    # INT8 candidates are judged on 16 more pictures (4 cases of 4); float ones on the gate's cases only
    content = {r["case"] for r in first.report["rows"] if r["artefact"] == plain["artefact"] and r["case"].startswith("content ")}
    assert len(content) == 4 and all(r["case"].startswith("content 4x1x96x96") for r in first.report["rows"]
                                     if r["artefact"] == plain["artefact"] and r["case"] in content)
    assert not any(r["case"].startswith("content ") for r in first.report["rows"] if r["artefact"] == "model.onnx")
    int8_psnr = min(r["psnr_db"] for r in first.report["rows"] if r["artefact"] == plain["artefact"])
    lines = []
    second = export_checkpoint(ckpt, tmp_path / "mixed", tolerances=Tolerances(min_psnr_db=int8_psnr + 0.5),
                               log=lines.append, **common)
    report = json.loads((tmp_path / "mixed" / "parity.json").read_text())
    assert report["candidates"]["openvino-int8"]["passed"] is False
    mixed = report["candidates"]["openvino-int8-mixed"]
    assert mixed["passed"] is True, mixed
    assert mixed["kept_unquantized"] and mixed["proof"]["mac_share"].get("fp32", 0) > 0
    assert mixed["proof"]["mac_share"]["int8"] > 0.5
    published = tmp_path / "mixed" / "model.openvino.int8-mixed.xml"
    assert published.exists() and not (tmp_path / "mixed" / "model.openvino.int8.xml").exists()
    assert read_metadata(published)["int8"]["kept_unquantized"] == sorted(mixed["kept_unquantized"])
    assert any("costliest layer" in line and "in FP32" in line for line in lines)
    assert second.report["passed"] is True


@pytest.mark.parametrize("rest", ["fp32", "bf16"])
def test_unquantized_layers_run_in_the_precision_the_metadata_names(quantized, tmp_path, rest):
    """The INT8 IR's unquantized layers compile in ``int8.unquantized_run_in``, read back from the compiled model;
    bf16 on a CPU without BF16 is refused with what to do (on every CPU kind one of the two branches runs)."""
    from regenrt.errors import RegenrtError
    from regenrt.export.int8 import with_unquantized_in
    from regenrt.runtime.backends.openvino import OpenVinoRunner, cpu_precisions

    _, xml, x, _ = quantized
    path = with_unquantized_in(xml, tmp_path / "model.openvino.int8-rest.xml", rest)
    assert read_metadata(path)["int8"]["unquantized_run_in"] == rest and read_metadata(path)["precision"] == "int8"
    if rest == "bf16" and "bf16" not in cpu_precisions():
        with pytest.raises(RegenrtError, match="BF16"):
            OpenVinoRunner(path, cache=False)
        return
    runner = OpenVinoRunner(path, cache=False)
    compiled_hint = str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    assert ("bf" in compiled_hint) == (rest == "bf16")  # the property reads e.g. <type: 'bfloat16'>
    proof = runner.proof()
    assert proof["mac_share"]["int8"] > 0.5 and f"INFERENCE_PRECISION_HINT={runner.hint}" in proof["source"]


def test_segmentation_layers_are_ranked_by_the_labels_they_flip():
    """For segmentation a layer costs the labels it flips, not the noise it adds to logits: a layer adding much
    noise far from every decision boundary costs nothing; one nudging logits across a boundary costs the most."""
    from regenrt.export.int8 import task_cost

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    ref[:, 0] += 3.0  # class 0 wins by a wide margin on most pixels
    top2 = np.sort(ref, axis=1)
    near = (top2[:, -1] - top2[:, -2]) < 0.2  # the few pixels near a boundary
    far = (top2[:, -1] - top2[:, -2]) > 2.0
    loud = ref + 0.4 * rng.standard_normal(ref.shape).astype(np.float32) * far[:, None]  # noisy, flips ~none
    quiet = ref.copy()
    winner = np.argmax(ref, axis=1)
    for b, y, x in zip(*np.nonzero(near)):  # a small push that flips every near-boundary label
        quiet[b, winner[b, y, x], y, x] -= 0.3
    seg, image = task_cost("segmentation"), task_cost("image")
    assert image(loud, ref) > image(quiet, ref)  # by output noise, "loud" looks costlier
    assert seg(quiet, ref) > seg(loud, ref)  # by the task's criterion it is "quiet" that costs accuracy


def _generator_tail():
    """A pix2pix decoder's shape in small: ConvTranspose -> BatchNorm (OpenVINO leaves it unfused) -> ReLU ->
    ConvTranspose with a bias (OpenVINO gives it a generated name, new on every read) -> Tanh."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.ConvTranspose2d(16, 16, 4, 2, 1, bias=False),
                        nn.BatchNorm2d(16), nn.ReLU(), nn.ConvTranspose2d(16, 3, 4, 2, 1), nn.Tanh()).eval()
    with torch.no_grad():
        net[3].running_mean.uniform_(-0.5, 0.5)
        net[3].running_var.uniform_(0.5, 2.0)
    return net


def test_generated_layer_names_are_stable_so_an_ignored_scope_finds_them(tmp_path):
    """OpenVINO numbers generated names anew on every read; an ignored scope naming a layer by the first read's
    name found nothing in NNCF's own read, and the layer was quantized anyway (seen on the trained U-Net's output
    ConvTranspose). read_stable names the same layer the same way in every read, and quantize() honours it."""
    import openvino as ov

    source = tmp_path / "tail.onnx"
    export_onnx(_generator_tail(), source, example=torch.zeros(1, 3, 32, 32), dynamic_hw=True)
    core = ov.Core()
    raw = [[op.get_friendly_name() for op in core.read_model(str(source)).get_ordered_ops()] for _ in range(2)]
    assert raw[0] != raw[1]  # what OpenVINO does: the same file, other names
    stable = [[op.get_friendly_name() for op in read_stable(core, source).get_ordered_ops()] for _ in range(2)]
    assert stable[0] == stable[1] and any("#" in n for n in stable[0])
    generated = [n for n in output_layers(read_stable(core, source)) if "#" in n]
    assert generated, output_layers(read_stable(core, source))
    calibration = np.random.default_rng(0).uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    xml = quantize(source, tmp_path / "m.xml", _Ctx(calibration), ignored=tuple(generated), float_output=False)
    assert not set(generated) & set(quantized_layers(core.read_model(str(xml))))
    assert read_metadata(xml)["int8"]["kept_unquantized"] == sorted(generated)


def test_image_outputs_keep_their_output_layer_unquantized_and_no_batchnorm_input_is_quantized(tmp_path):
    """For image outputs the output layer stays unquantized (its input's noise reaches the pixels directly), and no
    FakeQuantize sits between a ConvTranspose and its unfused BatchNorm; both measured on a trained U-Net (worst
    held-out picture 33.5 -> 45.4 dB). A segmentation model's output layer is quantized as before."""
    import openvino as ov

    source = tmp_path / "tail.onnx"
    net = _generator_tail()
    export_onnx(net, source, example=torch.zeros(1, 3, 32, 32), dynamic_hw=True)
    core = ov.Core()
    rng = np.random.default_rng(1)
    calibration = rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    image = quantize(source, tmp_path / "image.xml", _Ctx(calibration, "image"), ignored=())
    seg = quantize(source, tmp_path / "seg.xml", _Ctx(calibration, "segmentation"), ignored=())
    out = output_layers(read_stable(core, source))
    assert read_metadata(image)["int8"]["output_layers_unquantized"] == out
    assert read_metadata(seg)["int8"]["output_layers_unquantized"] == []
    assert not set(out) & set(quantized_layers(core.read_model(str(image))))
    assert set(out) <= set(quantized_layers(core.read_model(str(seg))))
    for xml in (image, seg):
        model = core.read_model(str(xml))
        fed = [op.input_value(0).get_node().get_type_name() for op in model.get_ordered_ops()
               if op.get_type_name() == "BatchNormInference"]
        assert fed and "FakeQuantize" not in fed
    x = rng.uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert _psnr(ref, _run(str(image), x)) > _psnr(ref, _run(str(seg), x))
