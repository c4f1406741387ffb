"""``regenrt-demo``: the whole path on a built-in demo — checkpoint, export + parity gate, run-infer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import exit_codes_epilog, run_cli


def _demo(args: argparse.Namespace) -> int:
    from ..demo import demo_folder, make_demo_checkpoint, make_demo_inputs
    from ..export.parity import format_table
    from ..export.pipeline import export_checkpoint
    from ..runtime import Engine, RunOptions, run_directory

    root = demo_folder(args.output, args.task)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.train_seconds > 0:
        log(f"demo: training a small {args.task} model on procedural pictures for {args.train_seconds:g} s "
            "(--train-seconds 0: random weights)")
    ckpt = make_demo_checkpoint(args.task, root, train_seconds=args.train_seconds, log=log)
    kind = "trained" if args.train_seconds > 0 else "random-weight"
    log(f"demo: wrote {'an' if kind[0] in 'aeiou' else 'a'} {kind} {args.task} checkpoint to {ckpt}")
    result = export_checkpoint(ckpt, root / "engine", log=log)
    print(format_table(result.report["rows"], result.report["metric"]))
    print(f"\nparity gate passed; engines in {result.output_dir}")
    extra = make_demo_inputs(args.task, root, n=args.items)
    if args.engine == "chosen":  # what engine.json names for run-infer: the fastest verified engine on this machine
        engine = Engine.load(result.output_dir, device="cpu", mode="throughput")
        why = "the engine export chose (engine.json)"
    else:
        engine = Engine.load(result.artefacts[args.engine], device="cpu", mode="throughput")
        why = f"--engine {args.engine}"
    log(f"run-infer: {engine.describe()} on {args.items} demo inputs — {why}")
    summary = run_directory(engine, root / "inputs", root / "outputs", RunOptions(batch_size=4, **extra),
                            progress=True)
    print(summary.text())
    from ..demo import contact_sheet

    sheet = contact_sheet(args.task, root)
    print(f"outputs in {root / 'outputs'}; what they should be in {root / 'truth'}; side by side: {sheet}")
    if args.train_seconds > 0:
        print(WHAT_TO_EXPECT[args.task])
    return 0 if not summary.failed else 8


WHAT_TO_EXPECT = {  # what a minute of training on 2 CPU cores shows (measured: see regenrt.demo)
    "segmentation": "expect: the scenes' shapes told apart by shape (the *_overlay.png files), rough at the edges",
    "inpainting": "expect: the holes (masks/) filled with the surrounding colours, blurred where edges cross them",
    "phase-recovery": "expect: a blurred average, not the picture: recovering a picture from its Fourier phase takes "
                      "far more than a minute of training (the demo shows the path: export, gate, run)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="regenrt-demo", epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a demo checkpoint (a small model trained for a minute on procedural pictures), export it "
                    "with the parity gate, then run the engine export chose over generated inputs with run-infer's "
                    "pipeline. Everything goes to OUTPUT/<task>/ (checkpoint, engine/, inputs/, masks/, outputs/).")
    parser.add_argument("task", nargs="?", default="inpainting",
                        choices=["inpainting", "segmentation", "phase-recovery"],
                        help="default inpainting (holes filled; segmentation: labelled shapes; phase-recovery: the "
                             "export path, its outputs are not yet pictures after a minute of training)")
    parser.add_argument("-o", "--output", default="regenrt-demo",
                        help="directory for everything, one folder per task inside (default ./regenrt-demo)")
    parser.add_argument("--train-seconds", type=float, default=60.0,
                        help="train the demo model this long on procedural pictures first (default 60; 0 keeps "
                             "random weights: the plumbing without a meaningful picture)")
    parser.add_argument("--items", type=int, default=16, help="number of demo inputs (default 16)")
    parser.add_argument("--engine", choices=["chosen", "fp32", "fp16"], default="chosen",
                        help="engine to run: chosen (default: the one export recorded in engine.json as fastest "
                             "verified here), fp32 (model.onnx) or fp16 (model.fp16.onnx)")
    args = parser.parse_args(argv)
    return run_cli("regenrt-demo", lambda: _demo(args))


if __name__ == "__main__":
    sys.exit(main())
