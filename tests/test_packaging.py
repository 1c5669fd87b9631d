"""The pinned GPU stack resolves as one set (``constraints/gpu-cu128.txt``), and the image uses it; the gpu
extra's lower bounds hold the pins and what transformers and TRL ask of those packages; the pod image has the
trackers and flash attentions ``hardware.POD_IMAGE_MODULES`` lists (every tracker, through the track extra), no other.

The resolution asks PyPI (``pip install --dry-run``, which reads wheel metadata without installing); marked
slow, run in CI."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from gen_emotion.models.hardware import ATTENTION_MODULES, POD_IMAGE_MODULES, TRACKER_MODULES

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
    for name in (
        "vllm",
        "torch",
        "transformers",
        "trl",
        "peft",
        "bitsandbytes",
        "liger-kernel",
        "xgrammar",
        "deepspeed",
    ):
        assert name in pinned, name
    dockerfile = (REPO_ROOT / "runpod" / "Dockerfile").read_text()
    assert "-c constraints/gpu-cu128.txt" in dockerfile and "COPY constraints" in dockerfile
    assert "-c constraints/gpu-cu128.txt" in (REPO_ROOT / "setup.sh").read_text()


def test_every_shipped_accelerate_config_has_its_package_in_the_gpu_extra():
    """``--accelerate-config zero3`` is offered, so ``./setup.sh --gpu`` (the gpu extra) installs DeepSpeed."""
    from gen_emotion.pods.gpus import ACCELERATE_CONFIGS

    gpu = {canonicalize_name(r.name) for r in extra_requirements(["gpu"])}
    needs = {"ddp": "accelerate", "fsdp": "accelerate", "zero3": "deepspeed"}
    assert set(ACCELERATE_CONFIGS) == set(needs)
    assert {needs[name] for name in ACCELERATE_CONFIGS} <= gpu


@pytest.mark.slow
def test_gpu_extra_resolves_to_the_pinned_versions(tmp_path):
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    extras = "gpu,pod,track,ray"  # the image's
    command += ["--report", str(report), "-c", str(CONSTRAINTS), f"{REPO_ROOT}[{extras}]"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for name, version in pins().items():
        assert resolved.get(name) == version, (name, resolved.get(name), version)
    # nothing the image resolves brings a tracker or flash-attn that hardware.POD_IMAGE_MODULES leaves out
    brought = {module for name, module in optional_distributions().items() if canonicalize_name(name) in resolved}
    assert brought == set(POD_IMAGE_MODULES)


def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}


def extra_requirements(names: list[str]) -> list[Requirement]:
    """The requirements of these extras, the extras they name (gen-emotion[train]) expanded."""
    found = []
    for name in names:
        for requirement in extras()[name]:
            if canonicalize_name(requirement.name) == "gen-emotion":
                found += extra_requirements(sorted(requirement.extras))
            else:
                found.append(requirement)
    return found


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def test_gpu_extra_lower_bounds_hold_the_pins_and_what_the_stack_needs():
    pinned = pins()
    gpu = {canonicalize_name(r.name): r for r in extra_requirements(["gpu"])}
    for name, requirement in gpu.items():
        if name in pinned:  # the pinned version is one the extra allows
            assert requirement.specifier.contains(pinned[name], prereleases=True), (str(requirement), pinned[name])
    # and no bound is below what the libraries that use the package ask for
    from transformers.utils.import_utils import BITSANDBYTES_MIN_VERSION

    needs = {"bitsandbytes": Version(BITSANDBYTES_MIN_VERSION)}
    for requirement in map(Requirement, importlib.metadata.requires("trl") or []):
        if canonicalize_name(requirement.name) == "liger-kernel":
            needs["liger-kernel"] = lower_bound(requirement)
    assert set(needs) == {"bitsandbytes", "liger-kernel"}
    for name, version in needs.items():
        assert lower_bound(gpu[name]) >= version, (str(gpu[name]), f"{name}>={version}")


# The distribution of a module the recipe may need where its name says otherwise.
DISTRIBUTIONS = {"flash_attn_interface": "flash-attn-3", "mlflow": "mlflow-skinny"}


def optional_distributions() -> dict[str, str]:
    """Each module a tracker or a flash attention needs (``hardware``), by the distribution that brings it."""
    modules = {m for needs in (*TRACKER_MODULES.values(), *ATTENTION_MODULES.values()) for ms in needs for m in ms}
    return {canonicalize_name(DISTRIBUTIONS.get(m, m)): m for m in modules}


def test_the_pod_image_has_the_optional_modules_its_extras_bring():
    dockerfile = (REPO_ROOT / "runpod" / "Dockerfile").read_text()
    installed = re.search(r'pip install "\.\[([a-z,]+)\]" -c constraints', dockerfile).group(1).split(",")
    names = {canonicalize_name(r.name) for r in extra_requirements(installed)}
    brought = {module for name, module in optional_distributions().items() if name in names}
    assert brought == set(POD_IMAGE_MODULES)
