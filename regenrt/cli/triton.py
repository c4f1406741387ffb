"""``regenrt-triton``: write a Triton Inference Server model repository for a verified engine."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import exit_codes_epilog, join_negative_ranges, parse_range, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regenrt-triton", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write Triton model repository entries for an engine made by export-engine: the engine as "
                    "REPO/NAME_engine (ONNX -> onnxruntime_onnx, OpenVINO IR -> openvino, TensorRT -> tensorrt_plan; "
                    "dims from the engine's metadata, dynamic batching), the task's pre- and post-processing as "
                    "Python-backend models REPO/NAME_pre and REPO/NAME_post (regenrt must be importable by Triton's "
                    "Python backend), and the ensemble REPO/NAME that clients call: raw phase maps / picture + mask "
                    "/ picture in, final pixels out (tensor names as `regenrt.integrations.pytriton` serves). "
                    "--no-pipeline writes the engine alone as REPO/NAME (clients send model-ready NCHW float32).",
        epilog=exit_codes_epilog())
    parser.add_argument("engine", help="an export-engine output directory (its engine.json's engine) or an artefact")
    parser.add_argument("-o", "--repo", required=True, type=Path, help="the model repository directory")
    parser.add_argument("--name", help="model name (default: the task, e.g. phase_recovery)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Triton's max_batch_size (default 8)")
    parser.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="the engine model alone, without the pre/post models and the ensemble")
    parser.add_argument("--bit-depth", type=int, choices=[8, 16], default=8,
                        help="phase-recovery: the served image's bit depth (default 8)")
    parser.add_argument("--output-range", type=parse_range, metavar="LOW,HIGH",
                        help="phase-recovery: the model output range mapped to black..white (default: the range "
                             "export observed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(join_negative_ranges(list(sys.argv[1:] if argv is None else argv)))

    def body() -> int:
        from ..integrations.triton import write_repository

        from ..tasks.runtime import RunOptions

        config = write_repository(args.engine, args.repo, name=args.name, max_batch_size=args.max_batch_size,
                                  instances=args.instances, pipeline=not args.no_pipeline,
                                  options=RunOptions(bit_depth=args.bit_depth, output_range=args.output_range))
        models = sorted(p.parent.name for p in Path(args.repo).glob("*/config.pbtxt"))
        print(f"wrote {config} (models in {args.repo}: {', '.join(models)})")
        return 0

    return run_cli("regenrt-triton", body)


if __name__ == "__main__":
    sys.exit(main())
