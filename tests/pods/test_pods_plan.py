"""``gen_emotion.pods.gpus`` and ``gen_emotion.pods.plan``: the GPU table, the launch plan and the
``runpod.create_pod`` request for every shipped recipe, the multi-GPU rules, run names, data URLs, masking of
secrets, and the accelerate configs the plan names. Nothing here calls RunPod: the plan is built by pure
functions."""

from __future__ import annotations

import base64
import inspect
import json

import pytest
import yaml
from conftest import REPO_ROOT

from gen_emotion.config.recipes import load_recipe, recipe_from_dict
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import MASK
from gen_emotion.models.hardware import accelerate_config_path, estimate_memory, model_shape
from gen_emotion.pods.gpus import (
    ACCELERATE_CONFIGS,
    GPU_TYPES,
    check_fits,
    find_gpu,
    pick_gpu,
)
from gen_emotion.pods.plan import (
    LaunchOptions,
    check_data_url,
    check_options,
    mask_request,
    plan_launch,
    pod_env,
    run_name,
)

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"
LLAMA_3B_RECIPE = REPO_ROOT / "recipes" / "llama-3.2-3b-instruct-lora.yaml"
QWEN_14B_QLORA_RECIPE = REPO_ROOT / "recipes" / "qwen2.5-14b-instruct-qlora.yaml"
ROBERTA_RECIPE = REPO_ROOT / "recipes" / "roberta-base.yaml"
ACCELERATE_DIR = REPO_ROOT / "recipes" / "accelerate"
SECRET = "hf_not-a-real-token-0123456789"
WANDB_SECRET = "wandb-not-a-real-key-9876543210"
ENVIRON = {"HF_TOKEN": SECRET, "WANDB_API_KEY": WANDB_SECRET, "RUNPOD_API_KEY": "rp-not-a-real-key"}
IMAGE = "example/gen-emotion:test"
DATA_URL = "https://user:secretpw@host/d.tar.gz?X-Amz-Signature=abc-signature-42"


def plan(recipe=CPU_RECIPE, environ=ENVIRON, dry_run=False, **options):
    options = {"image": IMAGE, **options}
    return plan_launch(LaunchOptions(recipe=str(recipe), **options), environ, dry_run=dry_run)


def write_recipe(tmp_path, model: str, model_settings: dict | None = None, **sections: dict):
    values = {"model": {"name": model, **(model_settings or {})}, **sections}
    path = tmp_path / f"{model.split('/')[-1].lower()}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def decoded_recipe(request: dict):
    text = base64.b64decode(request["env"]["GEN_EMOTION_RECIPE_B64"]).decode()
    return recipe_from_dict(yaml.safe_load(text))


# --- GPU types ------------------------------------------------------------------------------------------------


def test_find_gpu_by_id_or_short_name():
    assert find_gpu("NVIDIA H100 80GB HBM3").memory_gb == 80
    assert find_gpu("h100 sxm").id == "NVIDIA H100 80GB HBM3"
    assert find_gpu("  L40S ").memory_gb == 48
    assert len({gpu.id for gpu in GPU_TYPES}) == len(GPU_TYPES)
    assert len({gpu.name.lower() for gpu in GPU_TYPES}) == len(GPU_TYPES)


def test_unknown_gpu_type_lists_the_known_ones():
    with pytest.raises(GenEmotionError) as err:
        find_gpu("NVIDIA GeForce GTX 1080")
    message = str(err.value)
    assert "unknown GPU type 'NVIDIA GeForce GTX 1080'" in message
    assert "NVIDIA H100 80GB HBM3 (80 GB)" in message and "\n" not in message


def test_gpu_table_is_smallest_first():
    """``pick_gpu`` takes the first that fits: the table must not put a bigger card before a smaller one."""
    memory = [gpu.memory_gb for gpu in GPU_TYPES]
    assert memory == sorted(memory)


@pytest.mark.parametrize(("need", "memory"), [(1, 16), (16, 16), (16.1, 20), (47.9, 48), (81, 94), (141, 141)])
def test_pick_gpu_takes_the_first_that_holds_the_need(need, memory):
    assert pick_gpu(need).memory_gb == memory
    assert pick_gpu(need) == next(gpu for gpu in GPU_TYPES if gpu.memory_gb >= need)


def test_pick_gpu_refuses_what_no_card_holds():
    with pytest.raises(GenEmotionError, match="no GPU type has the 200 GB .*--gpus N --accelerate-config fsdp"):
        pick_gpu(200)


def test_check_fits_names_bigger_cards():
    check_fits(24, find_gpu("RTX 4090"))
    with pytest.raises(GenEmotionError, match=r"about 30 GB per GPU and NVIDIA GeForce RTX 4090 \(24 GB\)") as err:
        check_fits(30, find_gpu("RTX 4090"))
    assert "'NVIDIA GeForce RTX 5090'" in str(err.value)
    with pytest.raises(GenEmotionError, match="use --gpus N with a sharded config"):
        check_fits(500, find_gpu("B200"))


# --- the pod request for each shipped recipe -------------------------------------------------------------------


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_pod_request_for_each_recipe(recipe_path):
    import runpod

    recipe = load_recipe(recipe_path)
    if recipe.task == "tfidf":
        # The TF-IDF baseline runs on CPU: no pod, and the message says how to run it here.
        with pytest.raises(GenEmotionError, match=r"runs on CPU.*gen-emotion cv"):
            plan(recipe_path, dry_run=True)
        return
    launch_plan = plan(recipe_path, dry_run=True)
    request = launch_plan.request
    inspect.signature(runpod.create_pod).bind(**request)  # every key is a create_pod argument
    # GPU: a known type with at least the estimate's memory for this model and method.
    memory = estimate_memory(recipe, model_shape(recipe.model.name))
    gpu = find_gpu(request["gpu_type_id"])
    assert launch_plan.need_gb == pytest.approx(memory.need_gb)
    assert gpu == launch_plan.gpu and gpu.memory_gb >= memory.need_gb
    assert request["gpu_count"] == 1 and launch_plan.strategy is None
    # What the pod runs: the task's command, the resolved recipe inline, the volume at /workspace, SSH for fetch.
    env = request["env"]
    assert env["GEN_EMOTION_COMMAND"] == {"generate": "run", "classify": "cv"}[recipe.task] == launch_plan.command
    assert "GEN_EMOTION_FOLDS" not in env and "GEN_EMOTION_ACCELERATE_CONFIG" not in env
    assert env["GEN_EMOTION_GPUS"] == "1"
    assert decoded_recipe(request) == recipe
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


def test_gpu_for_the_3b_lora_recipe_holds_the_estimate():
    recipe = load_recipe(LLAMA_3B_RECIPE)
    need = estimate_memory(recipe, model_shape(recipe.model.name)).need_gb
    launch_plan = plan(LLAMA_3B_RECIPE)
    assert launch_plan.gpu.memory_gb >= need == pytest.approx(launch_plan.need_gb)
    assert all(gpu.memory_gb < need for gpu in GPU_TYPES[: GPU_TYPES.index(launch_plan.gpu)])  # the first that fits


def test_a_named_gpu_too_small_is_refused():
    with pytest.raises(GenEmotionError, match="is too small"):
        plan(LLAMA_3B_RECIPE, gpu="NVIDIA RTX A4000")
    assert plan(LLAMA_3B_RECIPE, gpu="H100 SXM").gpu.id == "NVIDIA H100 80GB HBM3"


def test_secrets_only_from_the_environment():
    launch_plan = plan(CPU_RECIPE, environ={})
    assert "HF_TOKEN" not in launch_plan.request["env"] and "WANDB_API_KEY" not in launch_plan.request["env"]
    assert not any("HF_TOKEN is not set" in note for note in launch_plan.notes)  # embedded model: no download
    assert any("HF_TOKEN is not set" in note for note in plan(LLAMA_3B_RECIPE, environ={}).notes)


def test_env_values_runpod_cannot_take_are_refused_without_showing_them():
    with pytest.raises(GenEmotionError) as err:
        plan(CPU_RECIPE, environ={"HF_TOKEN": 'abc"def'})
    assert "HF_TOKEN" in str(err.value) and 'abc"def' not in str(err.value)
    assert pod_env({"A": "1"}, {"HF_TOKEN": "t", "RUNPOD_API_KEY": "k", "OTHER": "x"}) == {"A": "1", "HF_TOKEN": "t"}


def test_the_trackers_settings_go_to_the_pod_and_a_tracking_urls_credentials_are_masked():
    environ = {**ENVIRON, "MLFLOW_TRACKING_URI": "https://me:pw-1234@mlflow.example/", "WANDB_PROJECT": "emotions"}
    environ["MLFLOW_TRACKING_PASSWORD"], environ["MLFLOW_OTHER"] = "pw-1234", "x"  # a secret; a setting unknown here
    launch_plan = plan(LLAMA_3B_RECIPE, overrides=["train.report_to=[wandb, mlflow]"], environ=environ)
    env = launch_plan.request["env"]
    assert env["MLFLOW_TRACKING_URI"] == environ["MLFLOW_TRACKING_URI"] and env["WANDB_PROJECT"] == "emotions"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "pw-1234" and "MLFLOW_OTHER" not in env
    printed = json.dumps(mask_request(launch_plan.request))
    assert "pw-1234" not in printed and WANDB_SECRET not in printed and "mlflow.example" in printed


def test_qlora_override_passes_through_to_the_pod():
    launch_plan = plan(CPU_RECIPE, overrides=["model.load_in_4bit=true", "model.dtype=auto"])
    assert launch_plan.qlora and launch_plan.method == "QLoRA"
    assert decoded_recipe(launch_plan.request).model.load_in_4bit is True


def test_image_from_environment_and_dry_run_placeholder():
    assert plan(CPU_RECIPE, environ={"GEN_EMOTION_IMAGE": "me/img:1"}, image=None).request["image_name"] == "me/img:1"
    dry = plan_launch(LaunchOptions(recipe=str(CPU_RECIPE)), {}, dry_run=True)
    assert "--image" in dry.request["image_name"]
    with pytest.raises(GenEmotionError, match="no image"):
        plan(CPU_RECIPE, image=None)
    with pytest.raises(GenEmotionError, match="no spaces"):
        plan(CPU_RECIPE, image='me/img:1" x')


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpus": 0}, "--gpus must be between 1 and 8"),
        ({"gpus": 9}, "--gpus must be between 1 and 8"),
        ({"command": "train"}, "--command must be one of run, cv"),
        ({"accelerate_config": "fsdp2"}, "--accelerate-config must be one of ddp, fsdp, zero3"),
        ({"cloud": "moon"}, "--cloud must be one of"),
        ({"volume_gb": 5}, "--volume-gb must be at least 10"),
        ({"idle_stop_minutes": -1}, "--idle-stop-minutes must be 0"),
    ],
)
def test_check_options(options, message):
    with pytest.raises(GenEmotionError, match=message):
        check_options(LaunchOptions(recipe="x", **options))


# --- run names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "a/b", "", "../x", "-x", "a b", "x" * 61, "/abs", "a\\b"])
def test_unsafe_run_names_are_refused(name):
    with pytest.raises(GenEmotionError, match="one folder name"):
        run_name(name, None)
    with pytest.raises(GenEmotionError, match="--name"):
        plan(LLAMA_3B_RECIPE, name=name)


def test_run_name_as_given_or_from_the_recipe():
    recipe = load_recipe(CPU_RECIPE)
    assert run_name("t1.v2_x-y", recipe) == "t1.v2_x-y"
    default = run_name(None, recipe)
    assert default.startswith("smollm2-135m-cpu-") and run_name(default, recipe) == default
    launch_plan = plan(CPU_RECIPE, name="t1")
    assert launch_plan.run_name == "t1" and launch_plan.request["name"] == "gen-emotion-t1"
    assert launch_plan.request["env"]["GEN_EMOTION_RUN_NAME"] == "t1"


# --- data URLs and masking --------------------------------------------------------------------------------------


def test_data_url_goes_to_the_pod_and_is_masked_in_printouts():
    launch_plan = plan(CPU_RECIPE, data_url=DATA_URL)
    assert launch_plan.request["env"]["GEN_EMOTION_DATA"] == DATA_URL
    printed = json.dumps(mask_request(launch_plan.request))
    assert "secretpw" not in printed and "abc-signature-42" not in printed
    assert json.loads(printed)["env"]["GEN_EMOTION_DATA"] == "https://***@host/d.tar.gz?X-Amz-Signature=***"
    assert not any("no --data-url" in note for note in launch_plan.notes)
    assert any("no --data-url" in note for note in plan(CPU_RECIPE).notes)


def test_a_dataset_id_goes_to_the_pod_instead_of_a_url():
    launch_plan = plan(CPU_RECIPE, data_id="google-research-datasets/go_emotions")
    env = launch_plan.request["env"]
    assert env["GEN_EMOTION_DATA_ID"] == "google-research-datasets/go_emotions" and "GEN_EMOTION_DATA" not in env
    assert not any("illustrative sample" in note for note in launch_plan.notes)
    with pytest.raises(GenEmotionError, match="not both"):
        plan(CPU_RECIPE, data_id="go_emotions", data_url=DATA_URL)
    with pytest.raises(GenEmotionError, match="is not a dataset id"):
        plan(CPU_RECIPE, data_id="/home/me/data")  # a path of this machine, which the pod cannot read


@pytest.mark.parametrize("url", ["https://host/d.tar.gz", "http://host:8080/d.zip?x=1", "HTTPS://host/d.tgz"])
def test_http_data_urls_are_accepted(url):
    assert check_data_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/data.tar.gz", "aws s3 presign"),
        ("../data", "not an http"),
        ("/home/me/data.tar.gz", "not an http"),
        ("file:///home/me/data.tar.gz", "not an http"),
        ("ftp://user:secretpw@host/d.tar.gz?sig=abc-signature-42", "not an http"),
        ("s3://user:secretpw@bucket/d.tar.gz?sig=abc-signature-42", "presign"),
    ],
)
def test_data_urls_the_pod_cannot_read_are_refused_masked(url, message):
    with pytest.raises(GenEmotionError, match=message) as err:
        check_data_url(url)
    assert "secretpw" not in str(err.value) and "abc-signature-42" not in str(err.value)


# --- several GPUs --------------------------------------------------------------------------------------------------


def test_llama_3b_on_two_gpus_plans_ddp_and_tensor_parallel():
    launch_plan = plan(LLAMA_3B_RECIPE, gpus=2)
    assert launch_plan.strategy == "ddp" and launch_plan.request["gpu_count"] == 2
    assert launch_plan.request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert launch_plan.request["env"]["GEN_EMOTION_GPUS"] == "2"
    assert decoded_recipe(launch_plan.request).generate.tensor_parallel_size == 2
    assert launch_plan.request["min_vcpu_count"] == 8


@pytest.mark.parametrize("gpus", [3, 6])
def test_llama_3b_on_gpus_that_cannot_share_its_heads_is_refused(gpus):
    with pytest.raises(GenEmotionError, match=f"tensor_parallel_size={gpus}: .* 24 attention heads and 8 KV heads"):
        plan(LLAMA_3B_RECIPE, gpus=gpus)


def test_an_explicit_tensor_parallel_size_is_kept():
    launch_plan = plan(CPU_RECIPE, overrides=["generate.tensor_parallel_size=1"], gpus=2)
    assert decoded_recipe(launch_plan.request).generate.tensor_parallel_size == 1


def test_transformers_generation_on_several_gpus_gets_a_note():
    assert not any("generation uses one GPU" in note for note in plan(LLAMA_3B_RECIPE, gpus=2).notes)  # vLLM: all
    launch_plan = plan(LLAMA_3B_RECIPE, overrides=["generate.backend=transformers"], gpus=2)
    assert any("generation uses one GPU" in note for note in launch_plan.notes)


def test_heads_only_limit_the_gpus_where_vllm_splits_the_model():
    """SmolLM2-135M has 9 attention heads and 3 KV heads: vLLM cannot split it over 2 GPUs, while the
    transformers backend generates on one GPU whatever the count (training still uses both)."""
    with pytest.raises(GenEmotionError, match="tensor_parallel_size=2: .* 9 attention heads and 3 KV heads"):
        plan(CPU_RECIPE, gpus=2)
    assert plan(CPU_RECIPE, gpus=3).strategy == "ddp"
    launch_plan = plan(CPU_RECIPE, overrides=["generate.backend=transformers"], gpus=2)
    assert launch_plan.strategy == "ddp" and launch_plan.request["gpu_count"] == 2


def test_qlora_14b_on_two_gpus_plans_ddp():
    launch_plan = plan(QWEN_14B_QLORA_RECIPE, gpus=2)
    assert launch_plan.strategy == "ddp" and launch_plan.method == "QLoRA"
    assert launch_plan.request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert decoded_recipe(launch_plan.request).model.load_in_4bit is True


@pytest.mark.parametrize("config", ["fsdp", "zero3"])
def test_qlora_14b_sharded_is_refused(config):
    with pytest.raises(GenEmotionError, match=f"QLoRA .* cannot be sharded with {config}"):
        plan(QWEN_14B_QLORA_RECIPE, gpus=2, accelerate_config=config)


def test_qlora_14b_on_gpus_that_cannot_share_its_heads_is_refused():
    with pytest.raises(GenEmotionError, match="tensor_parallel_size=5: .* 40 attention heads and 8 KV heads"):
        plan(QWEN_14B_QLORA_RECIPE, gpus=5)


def test_bf16_lora_of_a_14b_model_is_sharded_over_several_gpus(tmp_path):
    recipe = write_recipe(tmp_path, "Qwen/Qwen2.5-14B-Instruct", generate={"backend": "vllm"})
    one = plan(recipe)
    assert one.gpu.memory_gb == 80 and one.strategy is None
    four = plan(recipe, gpu="L40S", gpus=4)  # four 48 GB cards hold, sharded, what one of them cannot
    assert four.strategy == "fsdp" and four.need_gb < one.need_gb
    assert four.memory.weights_gb == pytest.approx(one.memory.weights_gb / 4)
    zero3 = plan(recipe, gpu="H100 SXM", gpus=2, accelerate_config="zero3")
    assert zero3.request["env"]["GEN_EMOTION_ACCELERATE_CONFIG"] == "zero3"
    assert plan(recipe, gpu="NVIDIA H200", gpus=2, accelerate_config="ddp").strategy == "ddp"  # replicas fit
    with pytest.raises(GenEmotionError, match="too small"):
        plan(recipe, gpu="L40S", gpus=4, accelerate_config="ddp")  # replicas do not


def test_cv_of_a_generation_recipe_on_two_gpus_trains_each_fold_under_accelerate():
    launch_plan = plan(LLAMA_3B_RECIPE, command="cv", gpus=2)
    env = launch_plan.request["env"]
    assert launch_plan.command == env["GEN_EMOTION_COMMAND"] == "cv"
    assert launch_plan.strategy == env["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    assert any("cv trains each fold over all the GPUs" in note for note in launch_plan.notes)


def test_a_classifier_on_two_gpus_is_refused():
    with pytest.raises(GenEmotionError, match=r"\(task: classify\) trains in one process on one GPU"):
        plan(ROBERTA_RECIPE, gpus=2)


# --- commands, folds and volumes -----------------------------------------------------------------------------------


def test_classifier_recipes_are_cross_validated():
    launch_plan = plan(ROBERTA_RECIPE, folds=10)
    assert launch_plan.command == "cv" and launch_plan.task == "classify" and launch_plan.method == "full fine-tune"
    assert launch_plan.params_b == pytest.approx(0.125) and launch_plan.gpu.memory_gb == 16
    assert launch_plan.request["env"]["GEN_EMOTION_FOLDS"] == "10"
    assert launch_plan.request["volume_in_gb"] == 50
    stella = REPO_ROOT / "recipes" / "stella-en-1.5b-v5.yaml"
    qlora = plan(stella, overrides=["model.load_in_4bit=true"])
    assert qlora.method == "QLoRA" and qlora.params_b == pytest.approx(1.54) and qlora.command == "cv"


@pytest.mark.parametrize(
    ("recipe", "options", "message"),
    [
        (ROBERTA_RECIPE, {"folds": 1}, "--folds must be at least 2"),
        (CPU_RECIPE, {"folds": 5}, "--folds goes with --command cv"),
        ("tfidf-logreg", {"command": "cv"}, r"\(task: tfidf\) runs on CPU"),
    ],
)
def test_commands_that_cannot_work_are_refused(recipe, options, message):
    with pytest.raises(GenEmotionError, match=message):
        plan(recipe, **options)


def test_cv_of_a_generation_recipe_has_room_for_a_merged_model_per_fold(tmp_path):
    recipe = write_recipe(tmp_path, "meta-llama/Llama-3.2-3B-Instruct", generate={"backend": "vllm"})
    run = plan(recipe)
    assert run.command == "run" and run.request["volume_in_gb"] == 50  # 2 x 6.4 GB + 20, at least 50
    cv = plan(recipe, command="cv", folds=10)
    assert cv.request["volume_in_gb"] >= 6.4 * (1 + 10) + 20  # the download and 10 merged bf16 copies
    assert plan(recipe, command="cv", overrides=["generate.vllm_lora=true"]).request["volume_in_gb"] == 50
    assert plan(recipe, volume_gb=300).request["volume_in_gb"] == 300


def test_model_size_for_a_model_whose_name_does_not_say(tmp_path):
    recipe = write_recipe(tmp_path, "microsoft/phi-2")
    with pytest.raises(GenEmotionError, match="--model-size"):
        plan(recipe)
    launch_plan = plan(recipe, model_size="2.7B")
    assert launch_plan.params_b == pytest.approx(2.7) and launch_plan.shape.source == "--model-size"


# --- accelerate configs ---------------------------------------------------------------------------------------------


def test_every_accelerate_config_the_plan_names_is_shipped():
    for name in ACCELERATE_CONFIGS:
        assert accelerate_config_path(name) == ACCELERATE_DIR / f"{name}.yaml"
    with pytest.raises(GenEmotionError, match="no such file"):
        accelerate_config_path("fsdp2")


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
    args = parser.parse_args(["--config_file", str(path), "--num_processes", "4", "-m", "gen_emotion.runs.worker"])
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
