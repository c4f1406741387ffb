"""``regenrt-triton``: write a Triton Inference Server model repository for a verified engine."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import exit_codes_epilog, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regenrt-triton", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a Triton model repository entry for an engine made by export-engine: REPO/NAME/"
                    "config.pbtxt and REPO/NAME/1/<model file> (ONNX -> onnxruntime_onnx, OpenVINO IR -> openvino, "
                    "TensorRT -> tensorrt_plan), with dims from the engine's metadata and dynamic batching. Clients "
                    "send model-ready NCHW float32 tensors (no pre/post-processing model is generated).",
        epilog=exit_codes_epilog())
    parser.add_argument("engine", help="an export-engine output directory (its engine.json's engine) or an artefact")
    parser.add_argument("-o", "--repo", required=True, type=Path, help="the model repository directory")
    parser.add_argument("--name", help="model name (default: the task, e.g. phase_recovery)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Triton's max_batch_size (default 8)")
    parser.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from ..integrations.triton import write_repository

        config = write_repository(args.engine, args.repo, name=args.name, max_batch_size=args.max_batch_size,
                                  instances=args.instances)
        print(f"wrote {config} and {config.parent / '1'}")
        return 0

    return run_cli("regenrt-triton", body)


if __name__ == "__main__":
    sys.exit(main())
