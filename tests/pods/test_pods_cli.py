"""``gen-emotion launch/pods/fetch/stop`` on the command line: the real CLI in a subprocess (``python -m
gen_emotion.cli.parser``) where what matters is what a user sees (secrets masked, one-line errors, no traceback), and
``parser.main`` in this process for the other refusals. Nothing here calls RunPod: ``launch`` runs with
``--dry-run``, and the other commands stop at the missing API key."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from gen_emotion.cli import parser as cli
from gen_emotion.config.recipes import recipe_from_dict

CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"
LLAMA_3B_RECIPE = REPO_ROOT / "recipes" / "llama-3.2-3b-instruct-lora.yaml"
IMAGE = "example/gen-emotion:test"
DROPPED = ("RUNPOD_API_KEY", "HF_TOKEN", "WANDB_API_KEY", "GEN_EMOTION_IMAGE")
ISSUE_OVERRIDES = ["lora.r=-1", "train.batch_size=0", "train.learning_rate=-3", "data.fold=99", "prompt.template=nope"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in DROPPED}
    return subprocess.run(
        [sys.executable, "-m", "gen_emotion.cli.parser", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "PYTHONIOENCODING": "utf-8", **env},
        timeout=120,
    )


def printed_request(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


def decoded_recipe(request: dict):
    return recipe_from_dict(yaml.safe_load(base64.b64decode(request["env"]["GEN_EMOTION_RECIPE_B64"]).decode()))


@pytest.fixture
def main(monkeypatch, capsys):
    """``parser.main`` in this process, without secrets in the environment: returns (status, stdout, stderr)."""
    for name in DROPPED:
        monkeypatch.delenv(name, raising=False)

    def call(*args: str) -> tuple[int, str, str]:
        status = cli.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return call


# --- the dry run, as a subprocess ------------------------------------------------------------------------------


def test_dry_run_prints_the_request_with_secrets_and_data_url_masked(tmp_path):
    env = {"HF_TOKEN": "some-secret", "WANDB_API_KEY": "other-secret-value"}
    url = "https://user:secretpw@host/d.tar.gz?X-Amz-Signature=abc-signature-42"
    args = ["launch", str(CPU_RECIPE), "train.max_steps=5", "--dry-run", "--name", "t1", "--data-url", url]
    result = run_cli(args, env, tmp_path)
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    for secret in ("some-secret", "other-secret-value", "secretpw", "abc-signature-42"):
        assert secret not in both
    assert '"HF_TOKEN": "***"' in result.stdout and '"WANDB_API_KEY": "***"' in result.stdout
    request = printed_request(result.stdout)
    assert request["env"]["GEN_EMOTION_DATA"] == "https://***@host/d.tar.gz?X-Amz-Signature=***"
    assert request["name"] == "gen-emotion-t1" and request["gpu_count"] == 1
    assert decoded_recipe(request).train.max_steps == 5
    assert "no pod created" in result.stdout


def test_the_issue_example_is_one_line_without_traceback(tmp_path):
    result = run_cli(["launch", "--dry-run", str(LLAMA_3B_RECIPE), *ISSUE_OVERRIDES], {}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen-emotion: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_tfidf_recipe_is_refused_in_one_line(tmp_path):
    result = run_cli(["launch", str(REPO_ROOT / "recipes" / "tfidf-logreg.yaml"), "--dry-run"], {}, tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "(task: tfidf) runs on CPU" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [["pods"], ["stop", "abc123"], ["fetch", "abc123"], ["launch", str(CPU_RECIPE), "--image", IMAGE]],
    ids=["pods", "stop", "fetch", "launch"],
)
def test_missing_api_key_is_a_one_line_error(tmp_path, args):
    result = run_cli(args, {"HF_TOKEN": "some-secret"}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen-emotion: error: RUNPOD_API_KEY is not set"), result.stderr
    assert result.stdout == ""


# --- refusals, with cli.main in this process --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lora.r=-1", "lora.r must be at least 1, got -1"),
        ("train.batch_size=0", "train.batch_size must be at least 1, got 0"),
        ("train.learning_rate=-3", "train.learning_rate must be above 0, got -3.0"),
        ("data.fold=99", "data.fold must be in 0..9 (data.folds=10), got 99"),
        ("prompt.template=nope", "prompt.template: prompt template 'nope'"),
    ],
)
def test_each_bad_override_of_the_issue_is_refused(main, override, message):
    assert override in ISSUE_OVERRIDES
    status, out, err = main("launch", "--dry-run", str(LLAMA_3B_RECIPE), override)
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("name", ["..", "a/b", ""])
def test_unsafe_run_names_are_refused(main, name):
    status, out, err = main("launch", str(CPU_RECIPE), "--dry-run", "--name", name)
    assert status == 2 and out == ""
    assert err.startswith(f"gen-emotion: error: --name {name!r}: a run name is one folder name")
    assert len(err.splitlines()) == 1


def test_unknown_gpu_type(main):
    status, _, err = main("launch", str(CPU_RECIPE), "--gpu", "TPU v5", "--dry-run")
    assert status == 2 and len(err.splitlines()) == 1
    assert "unknown GPU type 'TPU v5'; known types:" in err and "NVIDIA H100 80GB HBM3" in err


def test_three_gpus_for_llama_3b_are_refused(main):
    status, out, err = main("launch", str(LLAMA_3B_RECIPE), "--dry-run", "--gpus", "3")
    assert status == 2 and out == ""
    assert "tensor_parallel_size=3" in err and "use 1, 2, 4, 8 GPUs" in err


def test_a_classifier_on_two_gpus_is_refused(main):
    status, out, err = main("launch", str(REPO_ROOT / "recipes" / "roberta-base.yaml"), "--dry-run", "--gpus", "2")
    assert status == 2 and out == "" and "trains in one process on one GPU" in err


# --- plans, with cli.main in this process -----------------------------------------------------------------------


def test_two_gpus_for_llama_3b_plan_ddp(main):
    status, out, err = main("launch", str(LLAMA_3B_RECIPE), "--dry-run", "--gpus", "2", "--name", "t2")
    assert status == 0, err
    assert "accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2" in out
    request = printed_request(out)
    assert request["gpu_count"] == 2 and request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert decoded_recipe(request).generate.tensor_parallel_size == 2


def test_qlora_14b_on_two_gpus(main):
    qlora = str(REPO_ROOT / "recipes" / "qwen2.5-14b-instruct-qlora.yaml")
    status, out, err = main("launch", qlora, "--dry-run", "--gpus", "2", "--accelerate-config", "fsdp")
    assert status == 2 and out == "" and "QLoRA (model.load_in_4bit) cannot be sharded with fsdp" in err
    status, out, err = main("launch", qlora, "--dry-run", "--gpus", "2")
    assert status == 0, err
    assert printed_request(out)["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"


def test_cv_of_a_generation_recipe_on_two_gpus(main):
    status, out, err = main("launch", str(LLAMA_3B_RECIPE), "--dry-run", "--command", "cv", "--gpus", "2")
    assert status == 0, err
    env = printed_request(out)["env"]
    assert env["GEN_EMOTION_COMMAND"] == "cv" and env["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert "cv trains each fold over all the GPUs" in err


def test_dry_run_of_a_classifier_runs_cv(main):
    recipe = REPO_ROOT / "recipes" / "distilbert-base-uncased.yaml"
    status, out, err = main("launch", str(recipe), "--folds", "3", "--dry-run", "--name", "t3")
    assert status == 0, err
    assert "(0.066B, full fine-tune classifier) needs about " in out and "the pod runs gen-emotion cv" in out
    env = printed_request(out)["env"]
    assert env["GEN_EMOTION_COMMAND"] == "cv" and env["GEN_EMOTION_FOLDS"] == "3"
