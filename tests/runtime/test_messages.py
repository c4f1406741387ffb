"""Messages a new user acts on: each names what was seen, what was expected and the one thing to do, in the words
of the interface that was called (a Python argument from Python, a flag from the command line)."""
import numpy as np
import pytest

from regenrt.errors import InputError, MissingDependencyError, RegenrtError
from regenrt.runtime import Engine, Predictor

from .helpers import errors_csv, run_infer, save_png


def test_inpainting_predict_file_without_a_mask_says_to_give_one(pix2pix_engine_dir, tmp_path):
    save_png(tmp_path / "p.png", np.zeros((256, 256, 3), np.uint8))
    with pytest.raises(InputError, match=r"takes a mask beside the picture: predict_file\(.*mask="):
        Predictor(Engine.load(pix2pix_engine_dir / "model.onnx")).predict_file(tmp_path / "p.png")


@pytest.mark.parametrize("given,expected", [
    (np.zeros((3, 128, 128), np.uint8), r"channels-first \(3x128x128, CxHxW\).*np.transpose\(picture, \(1, 2, 0\)\)"),
    (np.zeros((4, 64, 64, 3), np.uint8), r"a stack of 4 pictures.*predict_many"),
    ("a.png", r"is a path \('a.png'\).*predict_file\('a.png'\)"),
    (np.zeros((64, 64, 3), np.float32), r"must be 8-bit.*\(x \* 255\)"),
])
def test_a_picture_in_the_wrong_layout_or_type_is_named_with_the_fix(segmentation_setup, given, expected):
    _, seg_dir = segmentation_setup
    predictor = Predictor(Engine.load(seg_dir / "model.onnx"))
    with pytest.raises(InputError, match=expected):
        predictor.predict(picture=given)


def test_engine_infer_says_which_layout_it_saw(segmentation_setup):
    _, seg_dir = segmentation_setup
    engine = Engine.load(seg_dir / "model.onnx")
    with pytest.raises(InputError, match=r"channels-last \(NxHxWxC\).*transpose\(0, 3, 1, 2\).*Predictor"):
        engine.infer(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="float32 model input.*Predictor"):
        engine.infer(np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(InputError, match=r"add the batch axis, x\[None\]"):
        engine.infer(np.zeros((3, 64, 64), np.float32))


def test_asking_for_cuda_without_a_gpu_says_so_not_to_install_a_cpu_runtime(segmentation_setup):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    _, seg_dir = segmentation_setup
    with pytest.raises(MissingDependencyError) as err:
        Engine.load(seg_dir, device="cuda")
    assert "no NVIDIA GPU" in str(err.value) and "device='cpu'" in str(err.value)
    assert "regenrt[openvino]" not in str(err.value)


def test_an_onnx_file_not_written_by_export_engine_is_sent_to_export_engine(tmp_path):
    import torch

    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 8, 8),), str(tmp_path / "user.onnx"),
                      dynamo=False, dynamic_axes={"input": {0: "n"}}, input_names=["input"])
    with pytest.raises(RegenrtError, match=r"export-engine .*user.onnx --task TASK") as err:
        Engine.load(tmp_path / "user.onnx")
    assert "re-export" not in str(err.value)


def test_when_every_item_fails_for_one_reason_the_console_says_it_once(deeplab_engine_dir, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        save_png(tmp_path / "in" / f"p{i}.png", np.zeros((32, 32), np.uint8))  # pictures given to a phase engine
    result = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                       tmp_path / "o", "-q")
    assert result.returncode == 8 and len(errors_csv(tmp_path / "o")) == 3
    assert "every item failed for the same reason" in result.stderr and "--from-image" in result.stderr


def test_messages_reaching_python_name_the_python_argument_and_are_never_cut_mid_word(deeplab_engine_dir, tmp_path):
    from regenrt.wording import shorten

    save_png(tmp_path / "p.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match=r"--from-image \(Python: RunOptions\(from_image=True\)\)"):
        Predictor(Engine.load(deeplab_engine_dir / "model.onnx")).predict_file(tmp_path / "p.png")
    text = "the engine could not run because the file is corrupted. This happens when a copy is interrupted"
    short = shorten(text, 60)
    assert len(short) <= 60 and short.endswith(" …") and short[:-2] == text[:len(short) - 2]
    assert text[len(short) - 2] == " "  # cut at a word boundary


def test_the_segmentation_overlay_leaves_the_background_as_it_is():
    from regenrt.tasks.runtime.segmentation import PALETTE, _overlaid

    picture = np.full((4, 4, 3), 200, np.uint8)
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0] = 1
    overlay = _overlaid(picture, labels, PALETTE[labels])["_overlay.png"]
    assert np.array_equal(overlay[1:], picture[1:]) and not np.array_equal(overlay[0, 0], picture[0, 0])


def test_run_infer_checks_its_folders_before_loading_the_engine_and_leaves_no_lock_behind(deeplab_engine_dir,
                                                                                         tmp_path):
    from regenrt.runtime.manifest import LOCK_NAME

    missing = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "nope", "--output",
                        tmp_path / "o")
    assert missing.returncode == 2 and "--input" in missing.stderr and "task=" not in missing.stderr  # no banner
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", np.zeros((32, 32)))
    done = run_infer("--engine", deeplab_engine_dir / "model.onnx", "--input", tmp_path / "in", "--output",
                     tmp_path / "o", "-q")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "o" / LOCK_NAME).exists() and (tmp_path / "o" / "a.png").exists()


def test_export_refusals_reaching_python_name_the_python_argument_too(tmp_path, monkeypatch):
    """export_checkpoint is called from Python as often as export-engine from a shell: its refusals say both."""
    import torch

    from regenrt.errors import ArchitectureError, UnsafeCheckpointError
    from regenrt.export.pipeline import export_checkpoint
    from regenrt.models import create_model

    torch.save(create_model("deeplabv3plus_r18", in_channels=3, classes=1).state_dict(), tmp_path / "bin.pt")
    with pytest.raises(ArchitectureError, match=r"--task segmentation or --task phase-recovery \(Python: "
                                                 r"export_checkpoint\(task='segmentation'\)"):
        export_checkpoint(tmp_path / "bin.pt", tmp_path / "e")
    torch.save({"state_dict": {}, "extra": ArchitectureError("x")}, tmp_path / "pickled.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"--trust-pickle \(Python: trust_pickle=True"):
        export_checkpoint(tmp_path / "pickled.pt", tmp_path / "e2")
    assert not (tmp_path / "e").exists() and not (tmp_path / "e2").exists()
    from regenrt.export.int8 import import_nncf

    monkeypatch.setitem(__import__("sys").modules, "nncf", None)  # NNCF not installed
    with pytest.raises(MissingDependencyError, match=r"--int8 off \(Python: export_checkpoint\(int8='off'\)\)"):
        import_nncf()
