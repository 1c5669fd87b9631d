"""``gen-emotion launch/pods/fetch/stop``: the pod request for every shipped recipe, the GPU table, masking of
secrets, the dry run (a real subprocess), the fetch command, and the accelerate configs. Nothing here calls
RunPod: the request-building functions are pure, and the API call sits behind them."""

from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from gen_emotion.errors import GenEmotionError
from gen_emotion.launch import (
    GPU_TYPES,
    MASK,
    MEMORY_TABLE,
    LaunchOptions,
    check_data_url,
    fetch_command,
    find_gpu,
    format_pods,
    mask_request,
    memory_needed_gb,
    model_params_b,
    parse_size,
    plan_launch,
    pod_env_value,
    read_marker,
    ssh_endpoint,
)
from gen_emotion.recipes import load_recipe, recipe_from_dict

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"
ACCELERATE_DIR = REPO_ROOT / "recipes" / "accelerate"
SECRET = "hf_not-a-real-token-0123456789"
WANDB_SECRET = "wandb-not-a-real-key-9876543210"
ENVIRON = {"HF_TOKEN": SECRET, "WANDB_API_KEY": WANDB_SECRET, "RUNPOD_API_KEY": "rp-not-a-real-key"}
IMAGE = "example/gen-emotion:test"

# Runs the real gen-emotion CLI; registers the pod commands on its parser when cli.py does not do it (yet).
CLI = textwrap.dedent(
    """
    import sys
    from gen_emotion import cli
    from gen_emotion.launch import add_commands

    build = cli.build_parser

    def build_parser():
        parser = build()
        sub = parser._subparsers._group_actions[0]
        if "launch" not in sub.choices:
            add_commands(sub)
        return parser

    cli.build_parser = build_parser
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("RUNPOD_API_KEY", "HF_TOKEN", "WANDB_API_KEY")}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "PYTHONIOENCODING": "utf-8", **env},
        timeout=120,
    )


def write_recipe(tmp_path: Path, model: str, model_settings: dict | None = None, **sections: dict) -> Path:
    values = {"model": {"name": model, **(model_settings or {})}, **sections}
    path = tmp_path / f"{model.split('/')[-1].lower()}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def decoded_recipe(request: dict):
    text = base64.b64decode(request["env"]["GEN_EMOTION_RECIPE_B64"]).decode()
    return recipe_from_dict(yaml.safe_load(text))


# --- model size and the memory table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("smollm2-135m-instruct", 0.135),
        ("HuggingFaceTB/SmolLM2-1.7B-Instruct", 1.7),
        ("meta-llama/Llama-3.2-3B-Instruct", 3.0),
        ("Qwen/Qwen2.5-14B-Instruct", 14.0),
        ("Qwen/Qwen2.5-0.5B", 0.5),
        ("google/gemma-2-9b-it", 9.0),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 56.0),
        ("microsoft/phi-2", None),
        ("14B", 14.0),
        ("dunzhang/stella_en_1.5B_v5", 1.5),  # underscores around the size
        ("org/model_7b", 7.0),
        ("FacebookAI/roberta-base", None),
        ("sentence-transformers/all-MiniLM-L6-v2", None),
    ],
)
def test_parse_size(name, size):
    if size is None:
        assert parse_size(name) is None
    else:
        assert parse_size(name) == pytest.approx(size)


def test_model_size_from_flag_or_error():
    assert model_params_b("microsoft/Phi-3-mini-4k-instruct", "3.8B") == pytest.approx(3.8)
    # Encoders whose names say nothing: the known-size table, by the id's last part, any case.
    assert model_params_b("FacebookAI/roberta-base") == pytest.approx(0.125)
    assert model_params_b("distilbert/distilbert-base-uncased") == pytest.approx(0.066)
    assert model_params_b("distilbert/distilroberta-base") == pytest.approx(0.082)
    assert model_params_b("sentence-transformers/all-MiniLM-L6-v2") == pytest.approx(0.023)
    assert model_params_b("all-minilm-l6-v2") == pytest.approx(0.023)
    assert model_params_b("FacebookAI/roberta-base", "0.2B") == pytest.approx(0.2)  # the flag wins
    assert model_params_b("dunzhang/stella_en_1.5B_v5") == pytest.approx(1.5)
    with pytest.raises(GenEmotionError, match="--model-size"):
        model_params_b("microsoft/Phi-3-mini-4k-instruct")
    with pytest.raises(GenEmotionError, match="--model-size"):
        model_params_b("x", "huge")


def test_memory_table_grows_with_size_and_qlora_never_needs_more():
    for (size, lora, qlora), (next_size, next_lora, next_qlora) in zip(MEMORY_TABLE, MEMORY_TABLE[1:]):
        assert size < next_size and lora <= next_lora and qlora <= next_qlora
    assert all(qlora <= lora for _, lora, qlora in MEMORY_TABLE)
    assert memory_needed_gb(0.135, qlora=False) == 16
    assert memory_needed_gb(14, qlora=False) == 80
    assert memory_needed_gb(14, qlora=True) == 48  # the merged bf16 model for generation sets the floor
    with pytest.raises(GenEmotionError, match="beyond"):
        memory_needed_gb(400, qlora=False)
    # A classifier fine-tuned in full keeps fp32 weights, gradients and Adam's moments: 16 bytes a parameter.
    assert memory_needed_gb(0.125, qlora=False, full_finetune=True) == 16
    assert memory_needed_gb(2.6, qlora=False, full_finetune=True) == 48
    assert memory_needed_gb(4.0, qlora=False, full_finetune=True) == 80
    with pytest.raises(GenEmotionError, match="use_lora"):
        memory_needed_gb(14, qlora=False, full_finetune=True)


# --- GPU types ---------------------------------------------------------------------------------------


def test_find_gpu_by_id_or_short_name():
    assert find_gpu("NVIDIA H100 80GB HBM3").memory_gb == 80
    assert find_gpu("h100 sxm").id == "NVIDIA H100 80GB HBM3"
    assert len({gpu.id for gpu in GPU_TYPES}) == len(GPU_TYPES)


def test_unknown_gpu_type_lists_the_known_ones():
    with pytest.raises(GenEmotionError) as err:
        find_gpu("NVIDIA GeForce GTX 1080")
    message = str(err.value)
    assert "unknown GPU type 'NVIDIA GeForce GTX 1080'" in message
    assert "NVIDIA H100 80GB HBM3 (80 GB)" in message and "\n" not in message


# --- the pod request for each shipped recipe ---------------------------------------------------------


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_pod_request_for_each_recipe(recipe_path):
    import runpod

    recipe = load_recipe(recipe_path)
    if recipe.task == "tfidf":
        # The TF-IDF baseline runs on CPU in seconds: no pod, and the message says how to run it here.
        with pytest.raises(GenEmotionError, match=r"runs on CPU.*gen-emotion cv"):
            plan_launch(LaunchOptions(recipe=str(recipe_path), image=IMAGE), ENVIRON)
        return
    plan = plan_launch(LaunchOptions(recipe=str(recipe_path), image=IMAGE), ENVIRON)
    request = plan.request
    inspect.signature(runpod.create_pod).bind(**request)  # every key is a create_pod argument
    # GPU: a known type with at least the table's memory for this model and method.
    gpu = find_gpu(request["gpu_type_id"])
    full_finetune = recipe.task == "classify" and not recipe.classifier.use_lora
    need = memory_needed_gb(model_params_b(recipe.model.name), recipe.model.load_in_4bit, full_finetune)
    assert gpu.memory_gb >= need == plan.need_gb
    assert request["gpu_count"] == 1 and plan.strategy is None
    # What the pod runs: the command (generation recipes run the pipeline, classifiers are cross-validated),
    # the resolved recipe inline, the volume at /workspace, SSH for fetch.
    env = request["env"]
    assert env["GEN_EMOTION_COMMAND"] == {"generate": "run", "classify": "cv"}[recipe.task]
    assert plan.command == env["GEN_EMOTION_COMMAND"] and "GEN_EMOTION_FOLDS" not in env
    assert decoded_recipe(request) == recipe
    assert decoded_recipe(request).model.load_in_4bit == recipe.model.load_in_4bit
    assert request["image_name"] == IMAGE
    assert request["volume_mount_path"] == "/workspace" and request["ports"] == "22/tcp"
    assert request["volume_in_gb"] >= 50
    # Secrets: the caller's HF_TOKEN and WANDB_API_KEY go to the pod, never the RunPod key; printouts mask them.
    assert env["HF_TOKEN"] == SECRET and env["WANDB_API_KEY"] == WANDB_SECRET
    assert "RUNPOD_API_KEY" not in env
    printed = json.dumps(mask_request(request))
    assert SECRET not in printed and WANDB_SECRET not in printed
    assert json.loads(printed)["env"]["HF_TOKEN"] == MASK
    assert env["HF_TOKEN"] == SECRET  # masking copies


def test_secrets_only_from_the_environment():
    plan = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), image=IMAGE), {})
    assert "HF_TOKEN" not in plan.request["env"] and "WANDB_API_KEY" not in plan.request["env"]
    assert not any("HF_TOKEN is not set" in note for note in plan.notes)  # embedded model: no hub download


def test_qlora_override_passes_through_to_the_pod():
    options = LaunchOptions(
        recipe=str(CPU_RECIPE), overrides=["model.load_in_4bit=true", "model.dtype=auto"], image=IMAGE
    )
    plan = plan_launch(options, ENVIRON)
    assert plan.qlora and decoded_recipe(plan.request).model.load_in_4bit is True
    assert decoded_recipe(plan.request).model.dtype == "auto"


def test_fourteen_b_lora_picks_an_80_gb_gpu_and_shards_over_several(tmp_path):
    recipe = write_recipe(tmp_path, "Qwen/Qwen2.5-14B-Instruct", generate={"backend": "vllm"})
    one = plan_launch(LaunchOptions(recipe=str(recipe), image=IMAGE), ENVIRON)
    assert one.gpu.memory_gb == 80 and one.strategy is None
    assert one.request["volume_in_gb"] >= 4 * 14
    four = plan_launch(LaunchOptions(recipe=str(recipe), gpu="NVIDIA H100 80GB HBM3", gpus=4, image=IMAGE), ENVIRON)
    assert four.strategy == "fsdp" and four.request["gpu_count"] == 4
    assert four.request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "fsdp"
    assert four.request["env"]["GEN_EMOTION_GPUS"] == "4"
    assert decoded_recipe(four.request).generate.tensor_parallel_size == 4
    zero3 = plan_launch(
        LaunchOptions(recipe=str(recipe), gpu="H100 SXM", gpus=2, accelerate_config="zero3", image=IMAGE), ENVIRON
    )
    assert zero3.request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "zero3"
    # Replicas when asked for and they fit; refused when they do not.
    roomy = LaunchOptions(recipe=str(recipe), gpu="NVIDIA H200", gpus=2, accelerate_config="ddp", image=IMAGE)
    assert plan_launch(roomy, ENVIRON).strategy == "ddp"
    with pytest.raises(GenEmotionError, match="too small"):
        plan_launch(LaunchOptions(recipe=str(recipe), gpu="L40S", gpus=4, accelerate_config="ddp"), ENVIRON)
    # Sharded, four 48 GB cards hold what one of them cannot.
    assert plan_launch(LaunchOptions(recipe=str(recipe), gpu="L40S", gpus=4, image=IMAGE), ENVIRON).strategy == "fsdp"


def test_small_model_on_several_gpus_uses_ddp_and_tensor_parallel():
    assert load_recipe(CPU_RECIPE).generate.backend == "vllm"
    plan = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), gpus=2, image=IMAGE), ENVIRON)
    assert plan.strategy == "ddp" and plan.request["gpu_count"] == 2
    assert decoded_recipe(plan.request).generate.tensor_parallel_size == 2
    assert not any("generation uses one GPU" in note for note in plan.notes)  # vLLM uses both
    # The transformers backend generates on one GPU whatever tensor_parallel_size says: a note says so.
    options = LaunchOptions(recipe=str(CPU_RECIPE), overrides=["generate.backend=transformers"], gpus=2, image=IMAGE)
    plan = plan_launch(options, ENVIRON)
    assert plan.strategy == "ddp" and decoded_recipe(plan.request).generate.tensor_parallel_size == 2
    assert any("generation uses one GPU" in note for note in plan.notes)
    # An explicit tensor_parallel_size is kept.
    options = LaunchOptions(recipe=str(CPU_RECIPE), overrides=["generate.tensor_parallel_size=1"], gpus=2, image=IMAGE)
    assert decoded_recipe(plan_launch(options, ENVIRON).request).generate.tensor_parallel_size == 1


def test_cv_on_several_gpus_trains_in_one_process(tmp_path):
    qlora = write_recipe(tmp_path, "Qwen/Qwen2.5-7B-Instruct", {"load_in_4bit": True}, generate={"backend": "vllm"})
    plan = plan_launch(LaunchOptions(recipe=str(qlora), command="cv", gpus=2, image=IMAGE), ENVIRON)
    assert plan.strategy is None and "GEN_EMOTION_ACCELERATE_CONFIG" not in plan.request["env"]
    assert plan.request["env"]["GEN_EMOTION_COMMAND"] == "cv"
    assert decoded_recipe(plan.request).generate.tensor_parallel_size == 2
    assert decoded_recipe(plan.request).model.load_in_4bit is True


def test_classifier_recipes_are_cross_validated(tmp_path):
    roberta = REPO_ROOT / "recipes" / "roberta-base.yaml"
    plan = plan_launch(LaunchOptions(recipe=str(roberta), folds=10, image=IMAGE), ENVIRON)
    assert plan.command == "cv" and plan.task == "classify" and plan.method == "full fine-tune"
    assert plan.params_b == pytest.approx(0.125) and plan.need_gb == 16 and plan.gpu.memory_gb == 16
    assert plan.request["env"]["GEN_EMOTION_COMMAND"] == "cv"
    assert plan.request["env"]["GEN_EMOTION_FOLDS"] == "10"
    assert plan.request["volume_in_gb"] == 50
    assert plan_launch(LaunchOptions(recipe=str(roberta), command="cv", image=IMAGE), ENVIRON).command == "cv"
    # A decoder classifier trains LoRA adapters; QLoRA passes through.
    stella = REPO_ROOT / "recipes" / "stella-en-1.5b-v5.yaml"
    plan = plan_launch(LaunchOptions(recipe=str(stella), overrides=["model.load_in_4bit=true"], image=IMAGE), ENVIRON)
    assert plan.method == "QLoRA" and plan.params_b == pytest.approx(1.5) and plan.command == "cv"
    # A big model fine-tuned in full needs a bigger card than its LoRA twin.
    full = write_recipe(tmp_path, "google/gemma-2-2b", task="classify", classifier={"use_lora": False})
    assert plan_launch(LaunchOptions(recipe=str(full), image=IMAGE), ENVIRON).need_gb == 48
    # What cannot work is refused before any money is spent.
    with pytest.raises(GenEmotionError, match="use --command cv"):
        plan_launch(LaunchOptions(recipe=str(roberta), command="run", image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="--gpus 1"):
        plan_launch(LaunchOptions(recipe=str(roberta), gpus=2, image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="--folds must be at least 2"):
        plan_launch(LaunchOptions(recipe=str(roberta), folds=1, image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="--folds goes with --command cv"):
        plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), folds=5, image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="TF-IDF"):
        plan_launch(LaunchOptions(recipe="tfidf-logreg", command="cv", image=IMAGE), ENVIRON)


def test_cv_of_a_generation_recipe_has_room_for_a_merged_model_per_fold(tmp_path):
    recipe = write_recipe(tmp_path, "meta-llama/Llama-3.2-3B-Instruct", generate={"backend": "vllm"})
    run = plan_launch(LaunchOptions(recipe=str(recipe), image=IMAGE), ENVIRON)
    assert run.command == "run" and run.request["volume_in_gb"] == 50  # 2 x 6 GB + 20, at least 50
    cv = plan_launch(LaunchOptions(recipe=str(recipe), command="cv", folds=10, image=IMAGE), ENVIRON)
    assert cv.request["volume_in_gb"] >= 6 * (1 + 10) + 20  # the download and 10 merged bf16 copies
    lora = LaunchOptions(recipe=str(recipe), overrides=["generate.vllm_lora=true"], command="cv", image=IMAGE)
    assert plan_launch(lora, ENVIRON).request["volume_in_gb"] == 50  # vLLM serves each fold's adapter


def test_refusals(tmp_path):
    big = write_recipe(tmp_path, "Qwen/Qwen2.5-14B-Instruct")
    with pytest.raises(GenEmotionError, match="needs about 80 GB per GPU"):
        plan_launch(LaunchOptions(recipe=str(big), gpu="NVIDIA RTX A4000", image=IMAGE), ENVIRON)
    qlora = write_recipe(tmp_path, "Qwen/Qwen2.5-7B-Instruct", {"load_in_4bit": True})
    with pytest.raises(GenEmotionError, match="QLoRA"):
        plan_launch(LaunchOptions(recipe=str(qlora), gpus=2, image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="--gpus"):
        plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), gpus=0, image=IMAGE), ENVIRON)
    with pytest.raises(GenEmotionError, match="no image"):
        plan_launch(LaunchOptions(recipe=str(CPU_RECIPE)), ENVIRON)
    with pytest.raises(GenEmotionError, match="no spaces"):
        plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), image='me/img:1" x'), ENVIRON)


def test_image_from_environment_and_dry_run_placeholder():
    plan = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE)), {"GEN_EMOTION_IMAGE": "me/img:1"})
    assert plan.request["image_name"] == "me/img:1"
    plan = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE)), {}, dry_run=True)
    assert "--image" in plan.request["image_name"]


def test_data_url_must_be_downloadable_and_is_masked():
    url = "https://bucket.s3.amazonaws.com/data.tar.gz?X-Amz-Signature=deadbeef"
    plan = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), data_url=url, image=IMAGE), ENVIRON)
    assert plan.request["env"]["GEN_EMOTION_DATA"] == url
    assert mask_request(plan.request)["env"]["GEN_EMOTION_DATA"] == "https://bucket.s3.amazonaws.com/data.tar.gz?***"
    with pytest.raises(GenEmotionError, match="presign"):
        check_data_url("s3://bucket/data.tar.gz")
    with pytest.raises(GenEmotionError, match="not an http"):
        check_data_url("../data")


def test_env_values_runpod_cannot_take_are_refused_without_showing_them():
    with pytest.raises(GenEmotionError) as err:
        plan_launch(LaunchOptions(recipe=str(CPU_RECIPE), image=IMAGE), {"HF_TOKEN": 'abc"def'})
    assert "HF_TOKEN" in str(err.value) and 'abc"def' not in str(err.value)


# --- the CLI, as a subprocess ---------------------------------------------------------------------


def test_dry_run_prints_the_request_with_secrets_masked(tmp_path):
    env = {"HF_TOKEN": "some-secret", "WANDB_API_KEY": "other-secret-value"}
    result = run_cli(
        ["launch", str(CPU_RECIPE), "train.max_steps=5", "--dry-run", "--gpus", "2", "--name", "t1"], env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    assert "some-secret" not in both and "other-secret-value" not in both
    assert '"HF_TOKEN": "***"' in result.stdout and '"WANDB_API_KEY": "***"' in result.stdout
    request = json.loads(result.stdout[result.stdout.index("{") :])
    assert request["name"] == "gen-emotion-t1" and request["gpu_count"] == 2
    assert request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert decoded_recipe(request).train.max_steps == 5
    assert "accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2" in result.stdout
    assert "no pod created" in result.stdout


def test_dry_run_of_a_classifier_runs_cv(tmp_path):
    recipe = REPO_ROOT / "recipes" / "distilbert-base-uncased.yaml"
    result = run_cli(["launch", str(recipe), "--folds", "3", "--dry-run", "--name", "t2"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(0.066B, full fine-tune classifier) needs about 16 GB per GPU; the pod runs gen-emotion cv" in result.stdout
    request = json.loads(result.stdout[result.stdout.index("{") :])
    assert request["env"]["GEN_EMOTION_COMMAND"] == "cv" and request["env"]["GEN_EMOTION_FOLDS"] == "3"
    refused = run_cli(["launch", str(REPO_ROOT / "recipes" / "tfidf-logreg.yaml"), "--dry-run"], {}, tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "TF-IDF baseline (task: tfidf): it runs on CPU" in refused.stderr and refused.stdout == ""


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


def test_unknown_gpu_type_on_the_command_line(tmp_path):
    result = run_cli(["launch", str(CPU_RECIPE), "--gpu", "TPU v5", "--dry-run"], {}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "unknown GPU type 'TPU v5'; known types:" in lines[0]
    assert "NVIDIA H100 80GB HBM3" in lines[0]


# --- pods, fetch, stop: what is built from the SDK's answers -------------------------------------------

POD = {
    "id": "abc123",
    "name": "gen-emotion-t1",
    "desiredStatus": "RUNNING",
    "costPerHr": 2.99,
    "gpuCount": 1,
    "uptimeSeconds": 3900,
    "env": ["GEN_EMOTION_RUN_NAME=t1", "HF_TOKEN=x"],
    "machine": {"gpuDisplayName": "H100 SXM"},
    "runtime": {
        "ports": [
            {"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"},
            {"ip": "203.0.113.7", "isIpPublic": True, "privatePort": 22, "publicPort": 22041, "type": "tcp"},
        ]
    },
}


def test_ssh_endpoint_and_run_name_from_pod_info():
    assert ssh_endpoint(POD) == ("203.0.113.7", 22041)
    assert pod_env_value(POD, "GEN_EMOTION_RUN_NAME") == "t1"
    assert pod_env_value({"env": [{"key": "GEN_EMOTION_RUN_NAME", "value": "t2"}]}, "GEN_EMOTION_RUN_NAME") == "t2"
    with pytest.raises(GenEmotionError, match="not running"):
        ssh_endpoint({**POD, "runtime": None, "desiredStatus": "EXITED"})
    with pytest.raises(GenEmotionError, match="no public SSH port"):
        ssh_endpoint({**POD, "runtime": {"ports": POD["runtime"]["ports"][:1]}})


def test_fetch_command_rsync_and_scp(tmp_path):
    known = tmp_path / "known_hosts-abc123"
    out = tmp_path / "runs" / "t1"
    rsync = fetch_command(
        "203.0.113.7",
        22041,
        "/workspace/runs/t1",
        out,
        identity=Path("/home/me/.ssh/id_ed25519"),
        known_hosts=known,
        excludes=("merged*",),
    )
    ssh = f"ssh -p 22041 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known} -i /home/me/.ssh/id_ed25519"
    assert rsync == [
        "rsync",
        "-az",
        "--partial",
        "-e",
        ssh,
        "--exclude=merged*",
        "root@203.0.113.7:/workspace/runs/t1/",
        f"{out}/",
    ]
    scp = fetch_command("203.0.113.7", 22041, "/workspace/runs/t1/", out, tool="scp", known_hosts=known)
    assert scp == [
        "scp",
        "-r",
        "-P",
        "22041",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known}",
        "root@203.0.113.7:/workspace/runs/t1/*",
        f"{out}/",
    ]
    with pytest.raises(GenEmotionError, match="rsync"):
        fetch_command("h", 1, "/r", out, tool="scp", known_hosts=known, excludes=("x",))


def test_format_pods_shows_cost_and_ssh():
    stopped = {**POD, "id": "def456", "desiredStatus": "EXITED", "runtime": None, "costPerHr": 0.5}
    lines = format_pods([POD, stopped])
    assert lines[0].split() == ["ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME", "SSH"]
    assert "abc123" in lines[1] and "2.990" in lines[1] and "1h05m" in lines[1]
    assert "root@203.0.113.7 -p 22041" in lines[1]
    assert "def456" in lines[2] and "EXITED" in lines[2]
    assert "$2.990/hr" in lines[-1]
    assert "HF_TOKEN" not in "\n".join(lines)
    assert format_pods([]) == ["no pods in this account"]


def test_read_marker(tmp_path):
    assert read_marker(tmp_path) is None
    (tmp_path / "FAILED").write_text("exit_status=3\ncommand=run\n--- last lines ---\nkey=not-a-field\n")
    assert read_marker(tmp_path) == ("FAILED", {"exit_status": "3", "command": "run"})


# --- accelerate configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")], ids=["ddp", "fsdp", "zero3"]
)
def test_accelerate_configs_load_and_validate(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = ACCELERATE_DIR / f"{name}.yaml"
    config = load_config_from_file(str(path))  # refuses unknown top-level keys
    assert isinstance(config, ClusterConfig) and config.distributed_type.value == kind
    assert config.mixed_precision == "bf16" and config.num_machines == 1
    parser = launch_command_parser()
    # Every key of the FSDP/DeepSpeed sections is one accelerate launch knows (unknown ones would be ignored).
    known = {action.dest for action in parser._actions}
    section = {**config.fsdp_config, **config.deepspeed_config}
    assert set(section) <= known, set(section) - known
    args = parser.parse_args(["--config_file", str(path), "--num_processes", "4", "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert args.num_processes == 4  # the command line's count wins over the file's
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (
        kind == "MULTI_GPU",
        kind == "FSDP",
        kind == "DEEPSPEED",
    )
    if name == "fsdp":
        # Trainer.save_model writes the adapter only from a full state dict.
        assert args.fsdp_state_dict_type == "FULL_STATE_DICT" and args.fsdp_version == 2
        assert args.fsdp_cpu_ram_efficient_loading
    if name == "zero3":
        assert args.zero_stage == 3 and args.zero3_save_16bit_model
