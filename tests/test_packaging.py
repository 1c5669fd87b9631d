"""The pinned GPU stack resolves as one set (``constraints/gpu-cu128.txt``), and the image uses it.

The resolution asks PyPI (``pip install --dry-run``, which reads wheel metadata without installing); marked
slow, run in CI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

CONSTRAINTS = REPO_ROOT / "constraints" / "gpu-cu128.txt"


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_constraints_pin_the_whole_gpu_stack():
    pinned = pins()
    for name in ("vllm", "torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel", "xgrammar"):
        assert name in pinned, name
    dockerfile = (REPO_ROOT / "runpod" / "Dockerfile").read_text()
    assert "-c constraints/gpu-cu128.txt" in dockerfile and "COPY constraints" in dockerfile
    assert "-c constraints/gpu-cu128.txt" in (REPO_ROOT / "setup.sh").read_text()


@pytest.mark.slow
def test_gpu_extra_resolves_to_the_pinned_versions(tmp_path):
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--report", str(report), "-c", str(CONSTRAINTS), f"{REPO_ROOT}[gpu,pod]"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for name, version in pins().items():
        assert resolved.get(name) == version, (name, resolved.get(name), version)
