#!/usr/bin/env bash
# regenrt's two set-up-and-run commands (each creates .venv and installs what it needs on first use):
#   ./dev.sh demo [regenrt-demo args]    demo checkpoint -> export-engine + parity report -> run-infer
#   ./dev.sh test [--full] [pytest args] run the test suite: .venv (NumPy 2, everything) and, with no arguments but
#                                        --full and output flags (-q, -v, -x, -rA, --tb=...), .venv-serve too
#                                        (PyTriton's serving tests: nvidia-pytriton needs numpy < 2); one summary line.
#                                        The quick set by default (about 8 min on 2 cores); --full adds the slower
#                                        cases and the benchmarks' smoke cases (what CI runs, about 20 min)
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
  # smp and timm for the tests of smp checkpoints (regenrt[smp]): their torchvision dependency comes from PyPI, whose
  # compiled ops do not match the CPU build of torch, so it is installed without its dependencies and the tests stub
  # its meta registrations (conftest.py); huggingface_hub with its own
  "$py" -m pip install -q --no-deps torchvision==0.28.0 segmentation-models-pytorch==0.6.0 timm==1.0.31
  "$py" -m pip install -q huggingface_hub
  touch "$stamp"
}

serving_tests="tests/integrations/test_pytriton.py tests/integrations/test_triton_ensemble.py"

setup_serving() {  # PyTriton's own environment: regenrt + nvidia-pytriton, which brings numpy < 2
  local sv=${REGENRT_SERVE_VENV:-.venv-serve}
  [ -x "$sv/bin/python" ] || python3 -m venv "$sv"
  local stamp="$sv/.regenrt-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  local log="$sv/pip.log"
  {
    "$sv/bin/python" -m pip install -q --upgrade pip &&
    { "$sv/bin/python" -c "import torch" 2>/dev/null ||
      "$sv/bin/python" -m pip install -q "${REGENRT_TORCH_SPEC:-torch==2.13.0}"; } &&
    PYTHONWARNINGS="ignore:Editable installation" "$sv/bin/python" -m pip install -q -e ".[serve-test]"
  } >"$log" 2>&1 || { tail -20 "$log"; return 1; }
  touch "$stamp"
}

run_tests() {
  local both=1 a
  for a in "$@"; do
    case "$a" in --full|-q|-qq|-v|-vv|-x|-r*|--tb=*|--durations=*|-p|no:cacheprovider) ;; *) both=0 ;; esac
  done
  if [ "$both" = 0 ] || [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    exec "$py" -m pytest "$@"   # (PyTriton has wheels for Linux x86-64 only)
  fi
  local out=.test-results rc=0 rc_serving=0
  mkdir -p "$out"
  rm -f "$out"/*.xml
  "$py" -m pytest "$@" --junitxml="$out/main.xml" || rc=$?
  echo "--- the serving tests in .venv-serve (nvidia-pytriton needs numpy < 2) ---"
  if setup_serving; then
    # shellcheck disable=SC2086
    REGENRT_SERVING_ENV=1 "${REGENRT_SERVE_VENV:-.venv-serve}/bin/python" -m pytest "$@" $serving_tests \
      --junitxml="$out/serving.xml" || rc_serving=$?
  else
    rc_serving=1
    echo "could not build .venv-serve (see the pip output above)"
  fi
  "$py" tools/test_summary.py "$out/main.xml" "$out/serving.xml"
  [ "$rc" = 0 ] && [ "$rc_serving" = 0 ]
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo) setup; exec "$venv/bin/regenrt-demo" "$@" ;;
  test) setup; run_tests "$@" ;;
  bench) setup; PYTHONWARNINGS="ignore:Editable installation" "$py" -m pip install -q -e ".[test,bench]"; exec "$py" -m pytest --benchmark "$@" ;;
  gpu-check) exec "${REGENRT_PYTHON:-python3}" tools/gpu_check.py "$@" ;;
  *) echo "usage: ./dev.sh demo [task] [-o DIR] | ./dev.sh test [--full] [pytest args] | ./dev.sh bench [pytest args]" \
          "| ./dev.sh gpu-check [--help]" >&2
     exit 2 ;;
esac
