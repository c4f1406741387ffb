"""The README and docs/ say what is true: every command line they show uses flags its command has, every flag they
mention exists somewhere, every page they link to exists, and the Python examples run as written."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = {
    "export-engine": "regenrt.cli.export_engine",
    "run-infer": "regenrt.cli.run_infer",
    "regenrt-demo": "regenrt.cli.demo",
    "regenrt-doctor": "regenrt.cli.doctor",
    "regenrt-triton": "regenrt.cli.triton",
}
# flags of other programs the pages show (pytest and its plugins, pip, Ray's CLI; the GPU check's are read from
# its --help below)
OTHER_FLAGS = {*re.findall(r'addoption\("(--[a-z-]+)"', (ROOT / "conftest.py").read_text()),  # this repo's pytest
               "--benchmark-compare", "--benchmark-compare-fail", "--benchmark-json", "--no-deps",
               "--help", "--co", "--address", "--head", "--extra-index-url", "--index-url", "--cc"}


def _help(command: str) -> str:
    module = __import__(COMMANDS[command], fromlist=["main"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def helps() -> dict[str, set[str]]:
    import subprocess
    import sys

    found = {name: set(re.findall(r"--[a-z][a-z0-9-]*", _help(name))) for name in COMMANDS}
    gpu_check = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    found["gpu-check"] = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", gpu_check.split("options:")[-1]))
    return found


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_every_command_line_in_the_docs_uses_flags_its_command_has(helps):
    checked = 0
    for page in PAGES:
        for block in _code_blocks(page.read_text(), "bash"):
            for line in block.splitlines():
                words = line.split("#")[0].split()
                if not words or words[0] not in COMMANDS:
                    continue
                for flag in (w.split("=")[0] for w in words if w.startswith("--")):
                    assert flag in helps[words[0]], f"{page.name}: `{line.strip()}`: {words[0]} has no {flag}"
                checked += 1
    assert checked >= 10  # the pages do show command lines


def test_every_flag_the_docs_mention_exists(helps):
    known = set().union(*helps.values()) | OTHER_FLAGS
    unknown = sorted(f"{page.relative_to(ROOT)}: {flag}" for page in PAGES
                     for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", page.read_text())) if flag not in known)
    assert not unknown, f"flags no command has: {unknown}"


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for page in ("exporting", "running", "api", "benchmarks", "exit-codes", "scaling-out", "kernels", "support"):
        assert f"docs/{page}.md" in text
    history = re.compile(r"\b(session|round|sprint|iteration) \d+\b|\bissue #?\d+\b", re.IGNORECASE)
    for page in PAGES:  # a date and a machine say when and where; numbered stages of development say nothing
        found = history.search(page.read_text())
        assert found is None, f"{page.relative_to(ROOT)} speaks of {found.group(0)!r}"


@pytest.fixture()
def inpainting_folder(tmp_path, monkeypatch):
    """What the examples assume: ckpt.pt (a small pix2pix U-Net), pictures/a.png and masks/a.png, here."""
    from PIL import Image

    from regenrt.models import create_model
    from regenrt.tasks.synthetic import box_masks, synthetic_pictures

    torch.manual_seed(0)
    torch.save(create_model("unet_128", ngf=8).state_dict(), tmp_path / "ckpt.pt")
    (tmp_path / "pictures").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(synthetic_pictures(1, 128, 128, 3, seed=1)[0]).save(tmp_path / "pictures" / "a.png")
    Image.fromarray((box_masks(1, 128, 128, seed=2)[0][0] * 255).astype(np.uint8)).save(tmp_path / "masks" / "a.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.full(cases=["docs/api.md"])
@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_the_python_examples_run_as_written(inpainting_folder, page):
    blocks = _code_blocks((ROOT / page).read_text(), "python")
    assert blocks
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for block in blocks:  # one namespace: a page's later blocks may use what earlier ones made
            exec(compile(block, f"{page} example", "exec"), namespace)
    assert (inpainting_folder / "engine" / "engine.json").exists()


def test_the_exit_code_table_is_the_one_every_help_prints():
    from regenrt.cli.common import exit_codes_epilog, exit_codes_markdown
    from regenrt.errors import EXIT_CODES

    assert exit_codes_markdown() in (ROOT / "docs" / "exit-codes.md").read_text()
    assert "keeps every finished item" in EXIT_CODES[130] and "3 batches in a row" in EXIT_CODES[10]
    assert all(text in exit_codes_epilog() for text in EXIT_CODES.values())
