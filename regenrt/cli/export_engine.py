"""``export-engine``: checkpoint -> verified ONNX artefacts. Parse, call :func:`export_checkpoint`, print."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import config_value, exit_codes_epilog, run_cli

ARCH_FLAGS = {  # flag -> (option name, type, help)
    "--encoder": ("encoder", str, "DeepLabV3+ encoder: resnet18, resnet34, resnet50 or resnet101"),
    "--in-channels": ("in_channels", int, "input channels (DeepLabV3+ in_channels, U-Net input_nc)"),
    "--classes": ("classes", int, "output channels (DeepLabV3+ classes, U-Net output_nc)"),
    "--output-stride": ("output_stride", int, "DeepLabV3+ encoder output stride, 16 (smp default) or 8; "
                                              "not stored in checkpoints"),
    "--ngf": ("ngf", int, "U-Net base number of filters"),
    "--num-downs": ("num_downs", int, "U-Net downsamplings: 7 for unet_128, 8 for unet_256"),
    "--norm": ("norm", str, "U-Net norm layer: batch or instance"),
}


def build_parser() -> argparse.ArgumentParser:
    from ..export.parity import CALIBRATION_SAMPLES
    from ..models import list_architectures
    from ..tasks import list_tasks

    parser = argparse.ArgumentParser(allow_abbrev=False, 
        prog="export-engine",
        description="Export a PyTorch model to ONNX FP32 and FP16 graphs, each parity-checked against the "
                    "PyTorch model; an artefact that drifts is not published. The model: a checkpoint whose "
                    "architecture is detected from its weights (any segmentation_models_pytorch model — every "
                    "architecture and encoder, built with smp itself where it is installed, regenrt[smp]; "
                    "DeepLabV3+ and Unet with ResNet encoders and torchvision's FCN/DeepLabV3 without it; the "
                    "pix2pix repo's U-Net and ResNet generators), or any network as a torch.export program (.pt2) "
                    "or an ONNX file (give --task). Writes model.onnx, model.fp16.onnx "
                    "and parity.json into the output directory; "
                    "then the fastest verified CPU engine (OpenVINO IR when installed) and, on an NVIDIA GPU, a "
                    "TensorRT (or torch-CUDA) FP16 engine; engine.json records which one `run-infer --engine DIR` "
                    "runs.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", nargs="?",
                        help=".pt/.pth/.ckpt (loaded with weights_only), .safetensors, an smp save_pretrained folder, "
                             "a torch.export program (.pt2) or an ONNX file (.onnx)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output directory (default: ./<checkpoint stem>_engine; demo: ./regenrt-demo)")
    parser.add_argument("--demo", nargs="?", const="inpainting", choices=["inpainting", "segmentation",
                                                                          "phase-recovery"],
                        help="make a demo checkpoint for this task (default inpainting) and export it")
    model = parser.add_argument_group("model (detected from the checkpoint; flags override)")
    model.add_argument("--arch", help=f"architecture or alias: {', '.join(list_architectures())}")
    model.add_argument("--task", choices=list_tasks(),
                       help="task (default from the architecture: classes > 1 -> segmentation, 1 -> phase-recovery; "
                            "pix2pix generators -> inpainting); a .pt2 or .onnx model needs it unless it stores it")
    for flag, (_, kind, text) in ARCH_FLAGS.items():
        model.add_argument(flag, type=kind, help=text)
    model.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any other architecture option, e.g. atrous_rates=6,12,18, for an smp model any "
                            "constructor argument (encoder_output_stride=8), for an ONNX file spatial_multiple=N "
                            "(repeatable)")
    model.add_argument("--mode", choices=["eval", "batch-stats"], default="eval",
                       help="eval: running statistics (default); batch-stats: BatchNorm uses the batch's statistics "
                            "as the pix2pix test script does without --eval (recorded in the artefact)")
    model.add_argument("--state-key", help="entry of a training dict that holds the weights (default: detected)")
    model.add_argument("--trust-pickle", action="store_true",
                       help="UNSAFE: allow a checkpoint that needs pickle code execution; recorded as a warning")
    model.add_argument("--accept-unsafe-torch", action="store_true",
                       help="UNSAFE: unpickle a .pt/.pth with a torch older than 2.10, whose weights-only loader a "
                            "crafted checkpoint can exploit (CVE-2026-24747); refused without this flag. The warning "
                            "is printed even with -q and recorded in every artefact")
    export = parser.add_argument_group("export")
    export.add_argument("--input-shape", metavar="[input:]NxCxHxW",
                        help="example shape, e.g. input:1x1x256x256 (default: 1xCx256x256, 2^num_downs for U-Net); "
                             "batch is always dynamic, H/W too for DeepLabV3+")
    export.add_argument("--precision", choices=["fp32", "fp16"], default="fp16",
                        help="fp16 (default): model.onnx and model.fp16.onnx; fp32: model.onnx only")
    export.add_argument("--cpu-engine", choices=["auto", "onnxruntime", "openvino"], default="auto",
                        help="the engine recorded in engine.json for `run-infer --engine DIR`: auto = also convert to "
                             "OpenVINO IR when OpenVINO is installed (BF16 inference where the CPU has BF16) and pick "
                             "among the artefacts that passed the parity gate, timed here: the engine run-infer runs "
                             "by throughput at --run-batch (default 8), and beside it the batch-1 engine "
                             "(lowest latency, what Engine.load(DIR) runs one request at a time) (default auto)")
    export.add_argument("--int8", choices=["auto", "on", "off"], default="auto",
                        help="OpenVINO INT8 candidate by NNCF post-training quantization, calibrated on task inputs "
                             "and --samples; judged by the same gate, chosen only when it passes and is fastest; "
                             "when refused, layers costing the most accuracy are kept unquantized (said in the "
                             "summary). auto (default): when NNCF and OpenVINO are installed; on: require them; "
                             "off: no INT8 candidate")
    export.add_argument("--cpu-aoti", action="store_true",
                        help="also compile the model ahead of time for this CPU with PyTorch Inductor "
                             "(model.aoti-cpu.pt2 + its fingerprint; FP32, a C++ compiler needed, minutes for "
                             "large models): a CPU candidate gated and timed like the others")
    export.add_argument("--run-batch", type=int, default=8, metavar="N",
                        help="batch size the engine choice is timed at (run-infer's --batch-size, default 8), with "
                             "run-infer's concurrency (OpenVINO: throughput hint and its infer requests)")
    gpu = parser.add_argument_group("GPU engine (NVIDIA)")
    gpu.add_argument("--gpu-engine", choices=["auto", "tensorrt", "aoti", "torch", "none"], default="auto",
                     help="auto (default): when an NVIDIA GPU is visible, build a TensorRT FP16 engine (model.engine "
                          "+ its fingerprint model.engine.json) if TensorRT is installed, else the torch-CUDA FP16 "
                          "artefact (model.torch.pt); gated on the GPU and recorded as the engine, the CPU engine "
                          "beside it (run-infer --device cpu). aoti: the model compiled ahead of time by PyTorch "
                          "Inductor, FP16 (model.aoti.pt2 + its fingerprint). Without a GPU none is built, and "
                          "engine.json records the command that builds it on the GPU machine. tensorrt/aoti/torch: "
                          "require a GPU; none: CPU artefacts only")
    gpu.add_argument("--max-batch", type=int, default=16, metavar="N",
                     help="TensorRT optimization profile: largest batch (default 16); sizes: --input-shape is the "
                          "opt shape, fixed-size models vary the batch only")
    gpu.add_argument("--timing-cache", metavar="FILE",
                     help="TensorRT timing cache, read and updated (default: one per TensorRT version and GPU "
                          "architecture, ~/.cache/regenrt/tensorrt/timing-trt<version>-sm<cc>.cache)")
    gpu.add_argument("--version-compatible", action="store_true",
                     help="TensorRT: build a version-compatible engine (runs on later TensorRT versions)")
    gpu.add_argument("--hardware-compatible", action="store_true",
                     help="TensorRT: build for every Ampere-or-newer GPU, not just this one (slower)")
    export.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript",
                        help="torch ONNX exporter (default torchscript: ~10x faster on these CNNs)")
    gate = parser.add_argument_group("parity gate")
    gate.add_argument("--samples", metavar="DIR",
                      help="your own inputs: .npy model-ready arrays or pictures (task preprocessing); sorted by "
                           "name, every second file calibrates (FP16 ranges, INT8) and the others are judged by the "
                           "gate, so the gate never judges on what calibrated (one file: judged only)")
    gate.add_argument("--parity-samples", type=int, default=4, metavar="N", help="synthetic inputs (default 4)")
    gate.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES, metavar="N",
                      help="synthetic task inputs for FP16 range calibration and INT8 quantization, besides "
                           f"--samples' calibration half (default {CALIBRATION_SAMPLES})")
    gate.add_argument("--fp32-tol", type=float, default=1e-4,
                      help="FP32: max abs error / reference range (default 1e-4)")
    gate.add_argument("--min-psnr", type=float, default=40.0,
                      help="FP16, BF16 and INT8 artefacts, image outputs: minimum PSNR dB on the worst picture "
                           "(default 40; INT8 must clear it by a 0.25 dB guard band)")
    gate.add_argument("--min-argmax", type=float, default=0.995,
                      help="FP16, BF16 and INT8 artefacts, segmentation: minimum argmax agreement on the worst picture "
                           "(default 0.995; INT8 must clear it by 0.1 %%)")
    gate.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs (default 0)")
    out = parser.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    out.add_argument("--json", action="store_true", help="print the parity report as JSON instead of a table")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {name: getattr(args, flag[2:].replace("-", "_"))
                 for flag, (name, _, _) in ARCH_FLAGS.items() if getattr(args, flag[2:].replace("-", "_")) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"export-engine: --set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = config_value(value)
    return overrides


def _export(args: argparse.Namespace) -> int:
    from ..export.parity import Tolerances, format_table
    from ..export.gpu import GpuOptions
    from ..export.pipeline import export_checkpoint

    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    checkpoint, output = args.checkpoint, args.output
    if args.demo:
        from ..demo import make_demo_checkpoint

        output = output or "regenrt-demo"
        checkpoint = make_demo_checkpoint(args.demo, output)
        if log:
            log(f"demo: wrote {'an' if args.demo[0] in 'aeiou' else 'a'} {args.demo} checkpoint with random weights to "
                f"{checkpoint}")
    result = export_checkpoint(
        checkpoint, output, arch=args.arch, overrides=_overrides(args), task=args.task,
        input_shape=args.input_shape, precision=args.precision, mode=args.mode, samples=args.samples,
        trust_pickle=args.trust_pickle, accept_unsafe_torch=args.accept_unsafe_torch, state_key=args.state_key,
        exporter=args.exporter,
        tolerances=Tolerances(args.fp32_tol, args.min_psnr, args.min_argmax),
        parity_samples=args.parity_samples, calibration_samples=args.calibration_samples, seed=args.seed,
        cpu_engine=args.cpu_engine, int8=args.int8, run_batch=args.run_batch, log=log, cpu_aoti=args.cpu_aoti,
        gpu=GpuOptions(args.gpu_engine, args.max_batch, Path(args.timing_cache) if args.timing_cache else None,
                       args.version_compatible, args.hardware_compatible),
    )
    if args.json:
        print(Path(result.output_dir, "parity.json").read_text())
    else:
        print(format_table(result.report["rows"], result.report["metric"]))
        print(f"\nparity gate passed; published to {result.output_dir}: "
              + ", ".join(p.name for p in result.artefacts.values()) + ", parity.json, engine.json")
        print(candidate_lines(result.report.get("candidates", {}), result.engine))
        e = result.engine
        print(f"engine: {e['engine']} ({e['backend']}, {e['precision']}, {e['chosen_by']}); "
              f"run it with `run-infer --engine {result.output_dir}`")
        fast = e.get("latency_engine") or {}
        if fast.get("engine") and fast["engine"] != e["engine"]:
            print(f"batch-1 engine: {fast['engine']} ({fast['backend']}, {fast['precision']}, lowest batch-1 latency): "
                  f"what `Engine.load('{result.output_dir}')` runs one request at a time")
        if e.get("cpu_engine"):
            print(f"CPU engine beside it: {e['cpu_engine']['engine']} (`run-infer --engine {result.output_dir} "
                  "--device cpu`)")
    return 0


def candidate_lines(candidates: dict, engine: dict) -> str:
    """One line per candidate: claimed and executed precision (from the engine's own graph), gate margin, speed."""
    from ..runtime.proof import format_shares

    cpu = engine.get("cpu_engine", engine)
    latency, items = cpu.get("latency_ms", {}), cpu.get("throughput_items_per_s", {})
    lines = ["\ncandidates (precision claimed -> executed, gate margin; > 0 passes):"]
    for entry in candidates.values():
        name = entry["artefact"]
        share = entry.get("proof", {}).get("mac_share") or {}
        executes = format_shares(share) or "-"
        speed = (f"; batch 1 {latency[name]:.1f} ms, {items[name]:.1f} items/s at batch {cpu.get('run_batch')}"
                 if name in latency else "")
        verdict = "passed" if entry["passed"] else "refused"
        notes = [entry.get("variant"), entry.get("claim_broken") and f"not published: {entry['claim_broken']}",
                 entry.get("on_this_cpu") and "GPU engines' graph, not a CPU engine"]
        if entry["passed"] and name not in latency and not any(notes) and latency:
            notes.append("not a CPU engine (gated, not timed)")
        marks = [m for m, pick in (("engine (run-infer)", cpu.get("engine")),
                                   ("batch-1 engine (Engine.load)", (cpu.get("latency_engine") or {}).get("engine")))
                 if name == pick]
        chosen = f"  <- {', '.join(marks)}" if marks else ""
        lines.append(f"  {name}: {entry['precision']} -> {executes}; {verdict}, margin {entry['margin']:+.2f}{speed}"
                     + "".join(f"; {n}" for n in notes if n) + chosen)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from ..errors import SecurityWarning

    warnings.simplefilter("always", SecurityWarning)  # printed on stderr every time, -q or not
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.checkpoint and not args.demo:
        parser.error("give a CHECKPOINT, or --demo to export a built-in demo model")
    if args.checkpoint and args.demo:
        parser.error("give either a CHECKPOINT or --demo, not both")
    return run_cli("export-engine", lambda: _export(args), json_report=args.json)


if __name__ == "__main__":
    sys.exit(main())
