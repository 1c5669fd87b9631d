"""``gen_emotion.models.hardware``: model shapes (config.json, the known table, the name, ``--model-size``), the GPU
memory estimate per recipe, and the checks done before renting or training (vLLM's LoRA ranks, tensor parallel
sizes, QLoRA and one-process tasks on several GPUs; trackers and flash attention the place of training lacks)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO_ROOT

from gen_emotion.config.choices import TRACKERS
from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.models.hardware import (
    KNOWN_SHAPES,
    TRACKER_MODULES,
    VLLM_LORA_RANKS,
    check_gpu_plan,
    check_local_packages,
    check_optional_packages,
    check_pod_packages,
    check_tensor_parallel,
    estimate_memory,
    missing_trackers,
    model_shape,
    module_importable,
    parse_size,
    serving_memory,
    shape_from_config,
    vllm_lora_rank,
    volume_gb,
)
from gen_emotion.tasks.base import get_task

LLAMA_3B_RECIPE = REPO_ROOT / "recipes" / "llama-3.2-3b-instruct-lora.yaml"
QWEN_14B_QLORA_RECIPE = REPO_ROOT / "recipes" / "qwen2.5-14b-instruct-qlora.yaml"
ROBERTA_RECIPE = REPO_ROOT / "recipes" / "roberta-base.yaml"
GEMMA_CLASSIFIER_RECIPE = REPO_ROOT / "recipes" / "gemma-2-2b.yaml"
LLAMA_3B = KNOWN_SHAPES["llama-3.2-3b-instruct"]
QWEN_14B = KNOWN_SHAPES["qwen2.5-14b-instruct"]
GB = 1e9

# The fields of meta-llama/Llama-3.2-3B-Instruct's config.json on the hub that set its size.
LLAMA_3B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 24,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-05,
    "torch_dtype": "bfloat16",
}
# Qwen/Qwen2.5-14B-Instruct's: no head_dim (hidden / heads), untied embeddings.
QWEN_14B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_attention_heads": 40,
    "num_hidden_layers": 48,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}


def llama(*overrides: str):
    return load_recipe(LLAMA_3B_RECIPE, list(overrides))


def write_config(folder, config) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(folder)


# --- model shapes ----------------------------------------------------------------------------------------------


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
        ("135m", 0.135),
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


def test_shape_from_a_real_config_json(tmp_path):
    shape = model_shape(write_config(tmp_path / "Llama-3.2-3B-Instruct", LLAMA_3B_CONFIG))
    assert shape.source == "config.json" and shape.detailed
    assert (shape.hidden, shape.layers, shape.heads, shape.kv_heads, shape.head_dim) == (3072, 28, 24, 8, 128)
    assert (shape.intermediate, shape.vocab, shape.tied_embeddings) == (8192, 128256, True)
    # 28 x (q, o: 3072^2; k, v: 3072 x 1024; gate, up, down: 3072 x 8192) + one tied 128256 x 3072 embedding
    per_layer = 2 * 3072 * 3072 + 2 * 3072 * 1024 + 3 * 3072 * 8192
    assert shape.params_b * 1e9 == pytest.approx(28 * per_layer + 128256 * 3072)
    assert shape.params_b == pytest.approx(3.21, rel=0.01)  # the hub's count (norms are a rounding error)
    # The same shape as the known table's entry for this model.
    assert dataclasses.replace(shape, params_b=LLAMA_3B.params_b, source=LLAMA_3B.source) == LLAMA_3B


def test_shape_of_untied_embeddings_and_head_dim_from_the_width(tmp_path):
    shape = model_shape(write_config(tmp_path / "qwen", QWEN_14B_CONFIG))
    assert shape.head_dim == 5120 // 40 and not shape.tied_embeddings
    assert shape.params_b == pytest.approx(14.77, rel=0.01)  # two 152064 x 5120 embeddings counted
    tied = shape_from_config({**QWEN_14B_CONFIG, "tie_word_embeddings": True})
    assert (shape.params_b - tied.params_b) * 1e9 == pytest.approx(152064 * 5120)


def test_shape_of_a_multimodal_config_reads_its_text_config():
    shape = shape_from_config({"text_config": LLAMA_3B_CONFIG, "vision_config": {"hidden_size": 1}})
    assert shape.hidden == 3072 and shape.layers == 28 and shape.params_b == pytest.approx(3.21, rel=0.01)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"hidden_size": "wide", "num_attention_heads": 8}'])
def test_damaged_config_json_is_a_one_line_error(tmp_path, text):
    (tmp_path / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(GenEmotionError, match="cannot read the model's shape") as err:
        model_shape(str(tmp_path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("meta-llama/Llama-3.2-3B-Instruct", "llama-3.2-3b-instruct"),
        ("Qwen/Qwen2.5-14B-Instruct", "qwen2.5-14b-instruct"),
        ("dunzhang/stella_en_1.5B_v5", "stella_en_1.5b_v5"),
        ("FacebookAI/roberta-base", "roberta-base"),
        ("sentence-transformers/all-MiniLM-L6-v2/", "all-minilm-l6-v2"),
        ("smollm2-135m-instruct", "smollm2-135m-instruct"),
    ],
)
def test_shape_of_a_hub_model_from_the_known_table(name, key):
    """By the id's last part, in any case: the hub is never asked."""
    assert model_shape(name) == KNOWN_SHAPES[key]


@pytest.mark.parametrize("key", [key for key, shape in KNOWN_SHAPES.items() if shape.detailed])
def test_known_shapes_agree_with_their_own_parameter_count(key):
    shape = KNOWN_SHAPES[key]
    config = {
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "intermediate_size": shape.intermediate,
        "vocab_size": shape.vocab,
        "tie_word_embeddings": shape.tied_embeddings,
    }
    assert shape_from_config(config).params_b == pytest.approx(shape.params_b, rel=0.02)


def test_shape_from_the_name_when_nothing_else_says():
    shape = model_shape("org/model_7b")
    assert shape.params_b == pytest.approx(7.0) and shape.source == "name" and not shape.detailed
    assert model_shape("mistralai/Mixtral-8x7B-Instruct-v0.1").params_b == pytest.approx(56.0)


def test_model_size_flag_wins(tmp_path):
    assert model_shape("microsoft/Phi-3-mini-4k-instruct", "3.8B").params_b == pytest.approx(3.8)
    assert model_shape("FacebookAI/roberta-base", "0.2B").params_b == pytest.approx(0.2)  # over the table
    local = write_config(tmp_path / "m", LLAMA_3B_CONFIG)
    shape = model_shape(local, "500M")  # over config.json
    assert shape.params_b == pytest.approx(0.5) and shape.source == "--model-size"


def test_unknown_size_asks_for_model_size():
    with pytest.raises(GenEmotionError, match="pass --model-size"):
        model_shape("microsoft/phi-2")
    with pytest.raises(GenEmotionError, match="--model-size 'huge': write it like 14B"):
        model_shape("microsoft/phi-2", "huge")


# --- the memory estimate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "values", "part"),
    [
        ("train.batch_size", (1, 4, 16, 64), "activations_gb"),
        ("train.max_length", (64, 256, 1024), "activations_gb"),
        ("lora.r", (8, 32, 128, 256), "adapter_gb"),
    ],
)
def test_memory_grows_with(key, values, part):
    estimates = [estimate_memory(llama(f"{key}={value}"), LLAMA_3B) for value in values]
    grows = [getattr(memory, part) for memory in estimates]
    train = [memory.train_gb for memory in estimates]
    need = [memory.need_gb for memory in estimates]
    assert grows == sorted(grows) and len(set(grows)) == len(grows)
    assert train == sorted(train) and len(set(train)) == len(train)
    assert need == sorted(need)


def test_longer_sequences_need_more_kv_cache_for_generation():
    short, long = (estimate_memory(llama(f"train.max_length={n}"), LLAMA_3B) for n in (128, 2048))
    assert short.generate_gb < long.generate_gb


def test_the_rank_only_changes_the_adapter():
    low, high = (estimate_memory(llama(f"lora.r={r}"), LLAMA_3B) for r in (8, 256))
    assert (low.weights_gb, low.activations_gb, low.logits_gb) == (high.weights_gb, high.activations_gb, high.logits_gb)
    assert low.adapter_gb < high.adapter_gb


def test_lora_adapter_of_llama_3b_at_rank_128_counted_by_hand():
    hidden, layers, heads, kv_heads, head_dim, inter = 3072, 28, 24, 8, 128, 8192  # its config.json
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    # rank x (inputs + outputs) of each projection: q, k, v, o, gate, up, down
    per_layer = (hidden + q_width) + 2 * (hidden + kv_width) + (q_width + hidden) + 3 * (hidden + inter)
    params = 128 * per_layer * layers
    assert params == 194_510_848
    memory = estimate_memory(llama("lora.r=128"), model_shape("meta-llama/Llama-3.2-3B-Instruct"))
    assert memory.adapter_gb == pytest.approx(params * 16 / GB)  # fp32 weights, gradients, Adam's two moments
    # Adapters on q_proj and v_proj only.
    only_qv = estimate_memory(llama("lora.r=128", "lora.target_modules=[q_proj, v_proj]"), LLAMA_3B)
    assert only_qv.adapter_gb == pytest.approx(128 * layers * ((hidden + q_width) + (hidden + kv_width)) * 16 / GB)


def test_runs_on_one_base_are_served_from_one_base_and_a_lora_slot_each():
    """``gen-emotion serve A B C``: the base once; each run adds its adapter in bf16 at the engine's LoRA rank."""
    one, low, high = llama(), llama("lora.r=16"), llama("lora.r=64")
    alone = serving_memory([one], LLAMA_3B)
    assert alone == estimate_memory(one, LLAMA_3B).generate_gb  # one run: its merged copy
    two, three = serving_memory([low, low], LLAMA_3B), serving_memory([low, low, low], LLAMA_3B)
    slot = three - two
    assert slot > 0 and two == pytest.approx(alone + 2 * slot)
    assert slot == pytest.approx(16 / 128 * 194_510_848 * 2 / GB / one.generate.gpu_memory_utilization)
    assert two < 1.1 * alone < 2 * alone  # two merged copies would need two bases
    assert serving_memory([low, high], LLAMA_3B) == serving_memory([high, high], LLAMA_3B)  # slots at the larger rank


def test_lora_keeps_the_base_weights_in_bf16():
    memory = estimate_memory(llama(), LLAMA_3B)
    assert memory.weights_gb == pytest.approx(LLAMA_3B.params_b * 2)


def test_gradient_checkpointing_lowers_activations_only():
    plain = estimate_memory(llama("train.gradient_checkpointing=false"), LLAMA_3B)
    checkpointed = estimate_memory(llama("train.gradient_checkpointing=true"), LLAMA_3B)
    assert checkpointed.activations_gb < plain.activations_gb / 2
    assert (checkpointed.weights_gb, checkpointed.adapter_gb) == (plain.weights_gb, plain.adapter_gb)
    assert checkpointed.train_gb < plain.train_gb


def test_qlora_lowers_the_weights():
    lora = estimate_memory(llama(), LLAMA_3B)
    qlora = estimate_memory(llama("model.load_in_4bit=true"), LLAMA_3B)
    # 4-bit linear layers (with their scales), the embeddings stay bf16
    embeddings = LLAMA_3B.vocab * LLAMA_3B.hidden * 2 / GB
    assert embeddings < qlora.weights_gb < lora.weights_gb / 2
    assert qlora.adapter_gb == lora.adapter_gb and qlora.train_gb < lora.train_gb


def test_qlora_of_a_model_known_by_its_size_only():
    qlora = load_recipe(QWEN_14B_QLORA_RECIPE, ["model.name=org/big-14B"])
    bf16 = load_recipe(QWEN_14B_QLORA_RECIPE, ["model.name=org/big-14B", "model.load_in_4bit=false"])
    shape = model_shape("org/big-14B")
    assert estimate_memory(qlora, shape).weights_gb < estimate_memory(bf16, shape).weights_gb / 2


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-14B-Instruct", "org/big-14B"], ids=["by-shape", "by-size"])
def test_serving_the_quantized_base_lowers_generation_memory_only(name):
    bf16_base = load_recipe(QWEN_14B_QLORA_RECIPE, [f"model.name={name}"])
    nf4_base = load_recipe(QWEN_14B_QLORA_RECIPE, [f"model.name={name}", "generate.quantized_base=true"])
    shape = model_shape(name)
    bf16, nf4 = estimate_memory(bf16_base, shape), estimate_memory(nf4_base, shape)
    assert nf4.train_gb == bf16.train_gb
    # the base's bf16 weights (2 bytes a parameter) become nf4 ones (its embeddings stay bf16): over half is saved
    assert bf16.generate_gb - nf4.generate_gb > shape.params_b * 2 / 2


def test_sharding_splits_the_weights_over_the_gpus():
    recipe = llama()
    one = estimate_memory(recipe, LLAMA_3B)
    replicas = estimate_memory(recipe, LLAMA_3B, gpus=4, sharded=False)
    shards = estimate_memory(recipe, LLAMA_3B, gpus=4, sharded=True)
    assert replicas == one  # DDP: a whole replica on every GPU
    assert shards.weights_gb == pytest.approx(one.weights_gb / 4)
    assert shards.adapter_gb == pytest.approx(one.adapter_gb / 4)
    assert shards.activations_gb == one.activations_gb  # each GPU still runs its own batch
    assert shards.train_gb < one.train_gb


def test_full_fine_tuning_of_an_encoder():
    recipe = load_recipe(ROBERTA_RECIPE)
    shape = model_shape(recipe.model.name)
    memory = estimate_memory(recipe, shape)
    # fp32 weights, gradients and Adam's two moments: 16 bytes a parameter; no generation
    assert memory.weights_gb == pytest.approx(0.125e9 * 16 / GB)
    assert memory.generate_gb == 0 and memory.adapter_gb == 0
    assert memory.train_gb > memory.weights_gb
    lora = estimate_memory(load_recipe(ROBERTA_RECIPE, ["classifier.use_lora=true"]), shape)
    assert lora.train_gb < memory.train_gb


def test_full_fine_tuning_needs_more_than_lora_of_the_same_model():
    shape = model_shape("google/gemma-2-2b")
    lora = estimate_memory(load_recipe(GEMMA_CLASSIFIER_RECIPE), shape)
    full = estimate_memory(load_recipe(GEMMA_CLASSIFIER_RECIPE, ["classifier.use_lora=false"]), shape)
    assert full.weights_gb == pytest.approx(shape.params_b * 16)
    assert full.need_gb > 2 * lora.need_gb


def test_classifiers_count_their_own_max_length():
    gemma = KNOWN_SHAPES["gemma-2-2b"]
    short, long = (
        estimate_memory(load_recipe(GEMMA_CLASSIFIER_RECIPE, [f"classifier.max_length={n}"]), gemma) for n in (64, 512)
    )
    assert short.activations_gb < long.activations_gb and short.logits_gb == long.logits_gb == 0


def test_need_is_training_with_its_margin_or_generation():
    memory = estimate_memory(llama(), LLAMA_3B)
    assert memory.need_gb >= memory.train_gb * 1.1 and memory.need_gb >= memory.generate_gb
    assert "training" in memory.describe() and "generation" in memory.describe()


def test_tensor_parallel_splits_the_served_model():
    one, four = (estimate_memory(llama(f"generate.tensor_parallel_size={n}"), LLAMA_3B) for n in (1, 4))
    assert four.generate_gb < one.generate_gb / 2 and four.train_gb == one.train_gb


def test_volume_holds_the_download_and_merged_copies():
    assert volume_gb(KNOWN_SHAPES["smollm2-135m-instruct"]) == 50  # the floor
    assert volume_gb(QWEN_14B) >= 2 * 2 * QWEN_14B.params_b + 20  # download + one merged bf16 copy
    assert volume_gb(LLAMA_3B, merged_copies=10) >= 2 * LLAMA_3B.params_b * 11 + 20
    assert volume_gb(LLAMA_3B, merged_copies=10) % 10 == 0


# --- checks before renting or training ------------------------------------------------------------------------


@pytest.mark.parametrize(("rank", "served"), [(1, 1), (2, 8), (16, 16), (24, 32), (128, 128), (300, 320), (512, 512)])
def test_vllm_lora_rank_rounds_up(rank, served):
    assert vllm_lora_rank(rank) == served and served in VLLM_LORA_RANKS


def test_vllm_lora_rank_refuses_what_vllm_cannot_serve():
    with pytest.raises(GenEmotionError, match=r"lora.r=600: vLLM serves LoRA adapters up to rank 512"):
        vllm_lora_rank(600)


@pytest.mark.parametrize(("shape", "tp"), [(LLAMA_3B, 3), (LLAMA_3B, 6), (QWEN_14B, 3), (QWEN_14B, 5)])
def test_tensor_parallel_size_must_share_the_heads(shape, tp):
    with pytest.raises(GenEmotionError, match=f"tensor_parallel_size={tp}: m has {shape.heads} attention heads") as err:
        check_tensor_parallel(shape, tp, "m")
    assert "use 1, 2, 4, 8 GPUs" in str(err.value)


@pytest.mark.parametrize("shape", [LLAMA_3B, QWEN_14B], ids=["llama-3b", "qwen-14b"])
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_tensor_parallel_sizes_that_share_the_heads(shape, tp):
    check_tensor_parallel(shape, tp, "m")


def test_tensor_parallel_of_a_model_known_by_its_size_only_is_not_checked():
    check_tensor_parallel(model_shape("org/model_7b"), 3, "org/model_7b")


def test_tasks_that_train_over_several_gpus():
    assert get_task("generate").multi_gpu and not get_task("classify").multi_gpu


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_check_gpu_plan_refuses_sharded_qlora(strategy):
    recipe = load_recipe(QWEN_14B_QLORA_RECIPE)
    with pytest.raises(GenEmotionError, match=f"QLoRA .* cannot be sharded with {strategy}: use the ddp"):
        check_gpu_plan(recipe, True, 2, strategy, QWEN_14B)
    check_gpu_plan(recipe, True, 1, strategy, QWEN_14B)  # one GPU: nothing is sharded


def test_check_gpu_plan_accepts_qlora_replicas_with_ddp():
    check_gpu_plan(load_recipe(QWEN_14B_QLORA_RECIPE), True, 2, "ddp", QWEN_14B)


@pytest.mark.parametrize("recipe_path", [ROBERTA_RECIPE, GEMMA_CLASSIFIER_RECIPE], ids=lambda p: p.stem)
def test_check_gpu_plan_refuses_several_gpus_for_a_one_process_task(recipe_path):
    recipe = load_recipe(recipe_path)
    task = get_task(recipe.task)
    shape = model_shape(recipe.model.name)
    with pytest.raises(GenEmotionError, match=r"\(task: classify\) trains in one process on one GPU"):
        check_gpu_plan(recipe, task.multi_gpu, 2, "ddp", shape)
    check_gpu_plan(recipe, task.multi_gpu, 1, None, shape)


def test_check_gpu_plan_refuses_a_rank_vllm_cannot_serve():
    shape = LLAMA_3B
    with pytest.raises(GenEmotionError, match="lora.r=600"):
        check_gpu_plan(llama("lora.r=600", "generate.vllm_lora=true"), True, 1, None, shape)
    check_gpu_plan(llama("lora.r=600"), True, 1, None, shape)  # a merged copy is served: any rank
    transformers = llama("lora.r=600", "generate.vllm_lora=true", "generate.backend=transformers")
    check_gpu_plan(transformers, True, 1, None, shape)  # vLLM serves nothing


def test_check_gpu_plan_checks_the_tensor_parallel_size():
    with pytest.raises(GenEmotionError, match="tensor_parallel_size=3"):
        check_gpu_plan(llama("generate.tensor_parallel_size=3"), True, 3, "ddp", LLAMA_3B)
    check_gpu_plan(llama("generate.tensor_parallel_size=4"), True, 4, "ddp", LLAMA_3B)
    # The transformers backend generates on one GPU: the size is unused there.
    check_gpu_plan(llama("generate.tensor_parallel_size=3", "generate.backend=transformers"), True, 3, "ddp", LLAMA_3B)


# --- trackers and flash attention, where the recipe trains ----------------------------------------------------


def test_missing_trackers_follow_the_modules_of_the_place_of_training():
    assert missing_trackers(["none"], set().__contains__) == []
    assert missing_trackers(["tensorboard", "wandb", "mlflow"], {"tensorboard"}.__contains__) == ["wandb", "mlflow"]
    assert missing_trackers(["mlflow"], {"mlflow"}.__contains__) == []
    # what report_to may name is declared once, in the recipe's choices; each tracker has its modules here
    assert set(TRACKERS) == {"none", *TRACKER_MODULES}


def test_the_pod_image_has_every_tracker_but_no_flash_attention():
    for setting in ("train.report_to=[tensorboard, wandb, mlflow]", "train.report_to=[none]"):
        check_pod_packages(llama(setting))
    with pytest.raises(GenEmotionError, match="^model.attn_implementation=flash_attention_2, but the pod image"):
        check_pod_packages(llama("model.attn_implementation=flash_attention_2"))


def test_a_tracker_missing_where_the_recipe_runs_is_refused_naming_the_extra():
    message = (
        r"^train.report_to names wandb, but this Python has no wandb: install the trackers there "
        r'\(pip install "gen-emotion\[track\]"\), or set train.report_to=none$'
    )
    for recipe in (
        llama("train.report_to=[tensorboard, wandb]"),
        load_recipe("tfidf-logreg", ["train.report_to=wandb"]),
    ):
        with pytest.raises(GenEmotionError, match=message):  # TF-IDF reports its figures too
            check_optional_packages(recipe, {"tensorboard"}.__contains__, "this Python")
    check_local_packages(llama("train.report_to=[tensorboard, wandb, mlflow]"))  # the track extra is installed here


def test_this_python_is_asked_for_flash_attention(tmp_path, monkeypatch):
    recipe = llama("model.attn_implementation=flash_attention_2")
    if not (module_importable("flash_attn") or module_importable("kernels")):
        with pytest.raises(GenEmotionError, match="^model.attn_implementation=flash_attention_2, but this Python"):
            check_local_packages(recipe)
    (tmp_path / "flash_attn").mkdir()  # installed: the import system finds it
    (tmp_path / "flash_attn" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    check_local_packages(recipe)


def test_peak_memory_and_machine_say_what_this_process_used_and_where():
    from gen_emotion.models.hardware import machine, peak_memory

    peak = peak_memory()
    assert peak["peak_rss_mib"] > 10 and set(peak) <= {"peak_rss_mib", "peak_cuda_mib", "peak_cuda_reserved_mib"}
    assert set(machine()) == {"python", "platform", "cpus"} and machine()["cpus"] >= 1
