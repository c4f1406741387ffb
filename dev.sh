#!/usr/bin/env bash
# regenrt's two set-up-and-run commands (each creates .venv and installs what it needs on first use):
#   ./dev.sh demo [regenrt-demo args]    demo checkpoint -> export-engine + parity report -> run-infer
#   ./dev.sh test [pytest args]          run the test suite (what CI runs)
#   ./dev.sh bench [pytest args]         the benchmark suite (pytest --benchmark), with OpenCV for comparison rows
#   ./dev.sh gpu-check [args]            on an NVIDIA GPU machine: GPU tests + benchmarks -> gpu-check/report.{json,md}
#                                        (uses the Python that holds the CUDA torch, REGENRT_PYTHON, default python3;
#                                        installs regenrt with --no-deps, so that torch is never touched)
set -euo pipefail
cd "$(dirname "$0")"
venv=${REGENRT_VENV:-.venv}
py="$venv/bin/python"

setup() {
  [ -x "$py" ] || python3 -m venv "$venv"
  local stamp="$venv/.regenrt-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  "$py" -m pip install -q --upgrade pip
  # Install torch first, pinned: an unpinned torch in a fresh environment can pull several GB of CUDA wheels.
  # Override with REGENRT_TORCH_SPEC (e.g. "torch==2.6.0"); pyproject.toml only asks for torch>=2.6.
  "$py" -c "import torch" 2>/dev/null || "$py" -m pip install -q "${REGENRT_TORCH_SPEC:-torch==2.13.0}"
  # setuptools prints an informational "Editable installation" notice for every -e install: silence that one only
  PYTHONWARNINGS="ignore:Editable installation" "$py" -m pip install -q -e ".[test]"
  touch "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo) setup; exec "$venv/bin/regenrt-demo" "$@" ;;
  test) setup; exec "$py" -m pytest "$@" ;;
  bench) setup; PYTHONWARNINGS="ignore:Editable installation" "$py" -m pip install -q -e ".[test,bench]"; exec "$py" -m pytest --benchmark "$@" ;;
  gpu-check) exec "${REGENRT_PYTHON:-python3}" tools/gpu_check.py "$@" ;;
  *) echo "usage: ./dev.sh demo [task] [-o DIR] | ./dev.sh test [pytest args] | ./dev.sh bench [pytest args]" \
          "| ./dev.sh gpu-check [--help]" >&2
     exit 2 ;;
esac
