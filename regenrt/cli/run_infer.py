"""``run-infer``: an engine over a directory of inputs. Parse, call :func:`run_directory`, print the summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import exit_codes_epilog, join_negative_ranges, parse_range, run_cli

PARTIAL = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-infer",
        description="Run an engine made by export-engine over a directory of inputs. The task (phase-recovery, "
                    "inpainting, segmentation) and the pre/post-processing come from the engine's metadata. "
                    "Outputs are written atomically; a re-run skips items already completed (by a manifest) and "
                    "redoes changed or corrupted ones; bad items are listed in OUTPUT/errors.csv.",
        epilog=exit_codes_epilog() + "\n\noutputs: phase-recovery <name>.png (+ <name>.npy); inpainting <name>.png; "
               "segmentation <name>_label.png and <name>_overlay.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a prefix is not a flag: a later flag must not change what today's scripts mean
    )
    parser.add_argument("--engine", required=True, metavar="PATH",
                        help="an export-engine output directory (runs the engine its engine.json names), or one "
                             "artefact: .onnx (ONNX Runtime), .xml (OpenVINO IR), .engine (TensorRT), .torch.pt "
                             "(PyTorch: FP16 with CUDA graphs on a GPU, FP32 on CPU)")
    parser.add_argument("--input", required=True, metavar="DIR", help="directory of inputs (searched recursively)")
    parser.add_argument("--output", required=True, metavar="DIR", help="directory for outputs, manifest, errors")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (default): cuda when the backend offers it here, else cpu; an unavailable "
                             "explicit device is an error, never a silent fallback. With an export directory whose "
                             "engine is a GPU engine, cpu runs the CPU engine recorded beside it. On cuda the "
                             "pre/post-processing runs as numba CUDA kernels on the engine's device buffers")
    parser.add_argument("--batch-size", type=int, default=8, help="items per inference call (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="decode/encode threads (default 2)")
    parser.add_argument("--no-pipeline-graph", action="store_true",
                        help="on a GPU engine, run each batch's upload, kernels, engine and download as separate "
                             "stream operations instead of one CUDA graph per batch shape (captured on a shape's "
                             "second batch and checked against the eager steps); also REGENRT_PIPELINE_GRAPH=0")
    parser.add_argument("--kernels", default="auto", choices=["auto", "numba", "numpy"],
                        help="pre/post-processing kernel set: numba (parallel, compiled), numpy (the reference), "
                             "auto = numba when installed, else numpy (default auto); outputs are identical")
    parser.add_argument("--max-pixels", type=int, default=64_000_000,
                        help="refuse pictures declaring more pixels than this (default 64000000)")
    sizes = parser.add_argument_group("pictures of any size (outputs always have the input's size)")
    sizes.add_argument("--max-batch-pixels", type=int, default=None, metavar="N",
                       help="pixels one inference call may take; batches fill up to it and the pictures decoded at "
                            "once are bounded by it (default: from the memory available, 1-8 million)")
    sizes.add_argument("--tile", type=int, default=None, metavar="SIZE",
                       help="segmentation: run SIZE x SIZE tiles and blend their logits (default: tiles of the "
                            "engine's fixed size, or 512, when a picture is over --max-batch-pixels or larger than a "
                            "fixed-size engine takes; 0: always the whole picture, padded to the model's multiple)")
    sizes.add_argument("--overlap", type=int, default=64, metavar="PX",
                       help="segmentation tiles: overlap between neighbours, blended linearly (default 64)")
    phase = parser.add_argument_group("phase-recovery")
    phase.add_argument("--from-image", action="store_true", default=None,
                       help="inputs are ordinary pictures: use the Fourier phase of their luminance")
    phase.add_argument("--output-range", type=parse_range, default=None, metavar="LOW,HIGH",
                       help="model output values mapped to black..white, e.g. 0,1 or -0.05,-0.01 (negative values "
                            "as written). Default: the range export observed on task-realistic inputs, recorded in "
                            "the engine; values outside clip, and the summary says how many pictures clipped")
    phase.add_argument("--bit-depth", type=int, choices=[8, 16], default=None, help="PNG bit depth (default 8)")
    phase.add_argument("--save-npy", action="store_true", default=None,
                       help="also write the raw output as <name>.npy")
    inpaint = parser.add_argument_group("inpainting (exactly one of --masks / --boxes)")
    inpaint.add_argument("--masks", type=Path, metavar="DIR",
                         help="mask of <stem>.<ext> is DIR/<stem>_mask.* else DIR/<stem>.*; nonzero = hole")
    inpaint.add_argument("--boxes", type=Path, metavar="CSV", help="holes as rectangles: header file,x,y,width,height")
    inpaint.add_argument("--feather", type=int, default=None, metavar="PX",
                         help="blend generated pixels over this many pixels inside each hole's edge (default 0)")
    inpaint.add_argument("--soft-mask", action="store_true", default=None,
                         help="masks are soft: blend by mask/255 inside holes")
    inpaint.add_argument("--submission", type=Path, metavar="CSV",
                         help="with --boxes: write id,value rows of the pixels inside each box (README: format)")
    scale = parser.add_argument_group("scaling out (Ray Data; pip install regenrt[ray])")
    scale.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: the cluster at ADDRESS (e.g. ray://head:10001 or auto), or a local Ray "
                            "without one; same outputs, manifest and errors.csv; --input and --output must be on a "
                            "file system every worker sees")
    scale.add_argument("--ray-actors", type=int, default=1, metavar="N",
                       help="Ray actors, each loading the engine once (default 1; one GPU each with --device cuda)")
    parser.add_argument("--report", action="store_true",
                        help="also write OUTPUT/report.html: counts, throughput and stage times, every error with "
                             "its reason, and a contact sheet of inputs beside their outputs (one self-contained "
                             "file, opens offline)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _common_reason(summary) -> str | None:
    """When most failures share one reason (a fixed-size engine, phase maps given as pictures), that reason once,
    with its fix, rather than only a pointer to errors.csv."""
    from collections import Counter

    reasons = Counter(reason for _, _, reason in summary.errors)
    if not reasons:
        return None
    reason, count = reasons.most_common(1)[0]
    if count == summary.failed and summary.done == 0:
        return f"every item failed for the same reason: {reason}"
    if count * 2 >= summary.failed and count > 1:
        return f"{count} of the {summary.failed} failed for the same reason: {reason}"
    return None


def _run(args: argparse.Namespace) -> int:
    from ..kernels import get_kernels
    from ..runtime import Engine, RunOptions, run_directory

    from ..errors import MissingPathError

    if not Path(args.input).is_dir():  # before the engine loads (seconds, and its banner): the cheap checks first
        raise MissingPathError(f"--input {args.input!r} does not exist or is not a directory; give the folder of "
                               "inputs.")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise MissingPathError(f"--output {args.output!r} is a file; give a directory (created if missing).")
    engine = Engine.load(args.engine, device=args.device, mode="throughput")
    _check_task_options(args, engine)
    if not args.quiet:
        print(engine.describe(), file=sys.stderr)
    options = RunOptions(
        batch_size=args.batch_size, workers=args.workers, kernels=get_kernels(args.kernels),
        max_pixels=args.max_pixels, from_image=bool(args.from_image), output_range=args.output_range,
        bit_depth=args.bit_depth or 8, save_npy=bool(args.save_npy), masks=args.masks, boxes=args.boxes,
        feather=args.feather or 0, soft_mask=bool(args.soft_mask), submission=args.submission,
        pipeline_graph=not args.no_pipeline_graph, max_batch_pixels=args.max_batch_pixels, tile=args.tile,
        overlap=args.overlap,
    )
    if args.ray is not None:
        from ..integrations.ray import infer_dataset

        summary = infer_dataset(args.engine, args.input, args.output, options,
                                address=None if args.ray == "local" else args.ray, num_actors=args.ray_actors,
                                device=engine.device)
    else:
        summary = run_directory(engine, args.input, args.output, options, progress=not args.quiet)
    print(summary.text())
    if args.report:
        from ..report.run_page import write_run_report

        page = write_run_report(Path(args.output) / "report.html", summary, Path(args.input), Path(args.output),
                                engine.task, options, engine.path.name)
        print(f"report: {page}")
    if summary.interrupted:
        print("run-infer: interrupted; completed items are recorded and a re-run resumes.", file=sys.stderr)
        return 130
    if summary.failed:
        print(f"run-infer: {summary.failed} item(s) failed; see {Path(args.output) / 'errors.csv'}", file=sys.stderr)
        common = _common_reason(summary)
        if common:
            print(f"run-infer: {common}", file=sys.stderr)
        return PARTIAL
    return 0


TASK_OPTIONS = {  # option (argparse dest) -> the task it belongs to
    "from_image": "phase-recovery", "output_range": "phase-recovery", "bit_depth": "phase-recovery",
    "save_npy": "phase-recovery", "masks": "inpainting", "boxes": "inpainting", "feather": "inpainting",
    "soft_mask": "inpainting", "submission": "inpainting",
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_task_options(args: argparse.Namespace, engine) -> None:
    """An option of another task, or one that needs another option, is a usage error (exit 2), never ignored."""
    from ..errors import RegenrtError

    given = [dest for dest in TASK_OPTIONS if getattr(args, dest) is not None]
    foreign = [dest for dest in given if TASK_OPTIONS[dest] != engine.task]
    if foreign:
        raise RegenrtError(f"{', '.join(_flag(d) for d in foreign)} appl{'ies' if len(foreign) == 1 else 'y'} to "
                           f"{TASK_OPTIONS[foreign[0]]} engines; {engine.path.name} is a {engine.task} engine. "
                           "Remove it.")
    if args.submission is not None and args.boxes is None:
        raise RegenrtError("--submission writes the pixels inside --boxes rectangles: it needs --boxes CSV.")


def main(argv: list[str] | None = None) -> int:
    argv = join_negative_ranges(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.workers < 1:
        build_parser().error("--batch-size and --workers must be at least 1")
    return run_cli("run-infer", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
