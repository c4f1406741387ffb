"""``regenrt-demo``: the whole path on a built-in demo — checkpoint, export + parity gate, run-infer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import exit_codes_epilog, run_cli


def _demo(args: argparse.Namespace) -> int:
    from ..demo import make_demo_checkpoint, make_demo_inputs
    from ..export.parity import format_table
    from ..export.pipeline import export_checkpoint
    from ..runtime import Engine, RunOptions, run_directory

    root = Path(args.output)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    ckpt = make_demo_checkpoint(args.task, root)
    log(f"demo: wrote a {args.task} checkpoint with random weights to {ckpt}")
    result = export_checkpoint(ckpt, root / "engine", log=log)
    print(format_table(result.report["rows"]))
    print(f"\nparity gate passed; engines in {result.output_dir}")
    extra = make_demo_inputs(args.task, root, n=args.items)
    engine = Engine.load(result.artefacts[args.precision], device="cpu")
    log(f"run-infer: {engine.describe()} on {args.items} demo inputs")
    summary = run_directory(engine, root / "inputs", root / "outputs", RunOptions(batch_size=4, **extra),
                            progress=True)
    print(summary.text())
    print(f"outputs in {root / 'outputs'}")
    return 0 if not summary.failed else 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="regenrt-demo", epilog=exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make a demo checkpoint (random weights), export it with the parity gate, then run the FP16 "
                    "engine over generated inputs with run-infer's pipeline.")
    parser.add_argument("task", nargs="?", default="phase-recovery",
                        choices=["phase-recovery", "inpainting", "segmentation"], help="default phase-recovery")
    parser.add_argument("-o", "--output", default="regenrt-demo", help="directory for everything (default ./regenrt-demo)")
    parser.add_argument("--items", type=int, default=16, help="number of demo inputs (default 16)")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp16", help="engine to run (default fp16)")
    args = parser.parse_args(argv)
    return run_cli("regenrt-demo", lambda: _demo(args))


if __name__ == "__main__":
    sys.exit(main())
