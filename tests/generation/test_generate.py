"""The transformers backend on the real tokenizers and templates (tiny random models, ``conftest.FAMILIES``):
the prompt ids it sends are training's, it stops on the end-of-turn token, every output is in the grammar,
and nothing of the model's ``generation_config.json`` (Qwen2.5's repetition penalty) is inherited."""

from __future__ import annotations

import pytest
from conftest import masked_first_step

from gen_emotion.config.recipes import recipe_from_dict
from gen_emotion.core import labels
from gen_emotion.core.labels import is_canonical
from gen_emotion.data.formats import read_train
from gen_emotion.generation.branches import branch_probabilities
from gen_emotion.generation.generate import TransformersGenerator, batch_inputs, run_in_shards
from gen_emotion.generation.prompts import make_encoder
from gen_emotion.models.loading import load_tokenizer


def family_setup(family, **generate):
    name, path, template = family
    recipe = recipe_from_dict(
        {"model": {"name": path}, "prompt": {"template": template}, "generate": {"batch_size": 8, **generate}}
    )
    encoder = make_encoder(load_tokenizer(path, recipe.model), recipe.prompt, recipe.data)
    generator = TransformersGenerator(path, None, recipe, encoder.stop_ids)
    return recipe, encoder, generator


def test_prompt_ids_sent_are_the_training_prompt_ids(family, sample_dir):
    _, encoder, generator = family_setup(family)
    texts = read_train(sample_dir / "train.csv").texts[:6]
    prompts = [encoder.prompt_ids(text) for text in texts]
    batch = batch_inputs(generator.tokenizer, prompts)
    for ids, mask, prompt in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), prompts):
        assert [t for t, m in zip(ids, mask) if m] == prompt
        assert ids[len(ids) - len(prompt) :] == prompt  # left padding: the prompt ends where generation starts


def test_outputs_are_in_the_grammar_and_end_on_the_end_of_turn(family, sample_dir):
    import torch

    recipe, encoder, generator = family_setup(family)
    texts = read_train(sample_dir / "train.csv").texts[:8]
    prompts = [encoder.prompt_ids(text) for text in texts]
    outputs = generator.generate(prompts, desc=None)
    assert all(is_canonical(output) for output in outputs), outputs
    batch = batch_inputs(generator.tokenizer, prompts)
    with torch.inference_mode():
        out = generator.model.generate(
            **batch, generation_config=generator.decoding(False), logits_processor=generator._logits_processors()
        )
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        assert encoder.end_of_turn_id in row, "generation ran to max_new_tokens without ending its turn"
        answer = row[: row.index(encoder.end_of_turn_id)]
        assert is_canonical(encoder.tokenizer.decode(answer).strip())
    generator.close()


def greedy_by_hand(model, prompt: list[int], steps: int, penalty: float = 1.0) -> list[int]:
    """Plain greedy decoding, one forward per token, with an optional repetition penalty (as transformers does)."""
    import torch

    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            if penalty != 1.0:
                seen = torch.tensor(sorted(set(ids)))
                scores = logits[seen]
                logits[seen] = torch.where(scores < 0, scores * penalty, scores / penalty)
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def test_model_generation_config_is_not_inherited(qwen_instruct_dir, sample_dir, tmp_path):
    """A folder whose generation_config.json sets a penalty (the hub's Qwen2.5 ships 1.05; here 10, so that the
    tiny model shows it): our greedy output is plain greedy decoding, while transformers' own default inherits it."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "qwen"
    shutil.copytree(qwen_instruct_dir, folder)
    config_path = folder / "generation_config.json"
    shipped = json.loads(config_path.read_text())
    assert shipped["repetition_penalty"] == 1.05 and shipped["do_sample"]  # what the hub's folder ships
    config_path.write_text(json.dumps({**shipped, "repetition_penalty": 10.0, "do_sample": False}))

    recipe, encoder, generator = family_setup(("qwen2.5-instruct", str(folder), "default"), constrained=False)
    greedy, sampled = generator.decoding(False), generator.decoding(True)
    assert greedy.repetition_penalty == sampled.repetition_penalty == 1.0
    assert (sampled.top_k, sampled.top_p, sampled.min_p) == (0, 1.0, 0.0)
    assert sampled.temperature == recipe.generate.temperature
    inheriting = AutoModelForCausalLM.from_pretrained(folder).eval()  # transformers' defaults: the folder's config
    stop, steps, differs = set(encoder.stop_ids), generator.max_new_tokens, False
    for text in read_train(sample_dir / "train.csv").texts[:3]:
        prompt = encoder.prompt_ids(text)
        by_hand = greedy_by_hand(generator.model, prompt, steps)
        kept = by_hand[: next((i for i, t in enumerate(by_hand) if t in stop), len(by_hand))]
        assert (
            generator.generate([prompt], desc=None)[0]
            == encoder.tokenizer.decode(kept, skip_special_tokens=True).strip()
        )
        with torch.inference_mode():
            default = inheriting.generate(torch.tensor([prompt]), max_new_tokens=steps)[0, len(prompt) :].tolist()
        differs |= default != by_hand
    assert differs, "the folder's penalty changed nothing: the check above proves nothing"


def test_sampling_is_seeded_and_in_the_grammar(qwen_instruct_dir, sample_dir):
    family = ("qwen2.5-instruct", str(qwen_instruct_dir), "default")
    _, encoder, generator = family_setup(family)
    prompts = [encoder.prompt_ids(text) for text in read_train(sample_dir / "train.csv").texts[:4]]
    first = generator.sample(prompts, 3, seed=7, desc=None)
    assert generator.sample(prompts, 3, seed=7, desc=None) == first
    assert all(len(outs) == 3 and all(is_canonical(o) for o in outs) for outs in first)


def test_run_in_shards_resumes_and_checks_ids(tmp_path):
    calls = []

    def fake(start, stop, index):
        calls.append(index)
        return [f"out-{i}" for i in range(start, stop)]

    ids = [f"id{i}" for i in range(10)]
    first = run_in_shards(fake, ids, tmp_path, shard_size=4, desc=None)
    assert first == [f"out-{i}" for i in range(10)] and calls == [0, 1, 2]
    (tmp_path / "shard-00001.json").unlink()
    assert run_in_shards(fake, ids, tmp_path, shard_size=4, desc=None) == first
    assert calls == [0, 1, 2, 1]  # only the missing shard again
    from gen_emotion.core.errors import GenEmotionError

    with pytest.raises(GenEmotionError, match="holds other rows"):
        run_in_shards(fake, [f"x{i}" for i in range(10)], tmp_path, shard_size=4, desc=None)
    (tmp_path / "shard-00002.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(GenEmotionError, match="damaged"):
        run_in_shards(fake, ids, tmp_path, shard_size=4, desc=None)


def test_greedy_steps_are_the_greedy_pass_with_its_log_probabilities(family, sample_dir):
    recipe, encoder, generator = family_setup(family, dtype="float32")
    texts = read_train(sample_dir / "train.csv").texts[:6]
    prompts = [encoder.prompt_ids(text) for text in texts]
    greedy = generator.generate(prompts, desc=None)
    scored = generator.generate_steps(prompts, 5, desc=None)
    assert [text for text, _ in scored] == greedy
    for prompt, (text, steps) in zip(prompts, scored):
        assert "".join(step.chosen for step in steps).strip() == text
        expected = masked_first_step(generator, prompt)  # a forward over the prompt alone, under the grammar
        top = sorted((logprob for _, logprob in steps[0].top), reverse=True)[:5]
        assert top == pytest.approx(expected.topk(5).values.tolist(), abs=1e-3)
        assert steps[0].chosen in dict(steps[0].top)
        probs = branch_probabilities(steps, labels.SEMEVAL)
        chosen = labels.SEMEVAL.from_canonical(text)
        assert ((probs > 0) | (chosen == 0)).all()  # every label written has a share of its slot
    generator.close()


def test_model_revision_reaches_every_loader_of_a_hub_model(pinned_hub, qwen_instruct_dir):
    """A hub id loads at ``model.revision``: its tokenizer, its weights, the transformers backend's model (the hub's
    default branch holds another architecture); a local folder has no revisions and is given none."""
    from gen_emotion.models.loading import hub_revision, load_causal_lm

    pinned = recipe_from_dict({"model": {"name": pinned_hub, "revision": "pinned"}})
    default = recipe_from_dict({"model": {"name": pinned_hub}})
    assert load_tokenizer(pinned_hub, default.model).eos_token == "<|eot_id|>"  # main: the Llama, what a dropped
    assert load_causal_lm(pinned_hub, default.model).config.model_type == "llama"  # revision would load
    tokenizer, qwen = load_tokenizer(pinned_hub, pinned.model), load_tokenizer(str(qwen_instruct_dir), pinned.model)
    assert tokenizer.eos_token == "<|im_end|>" and len(tokenizer) == len(qwen)
    assert load_causal_lm(pinned_hub, pinned.model).config.model_type == "qwen2"
    encoder = make_encoder(tokenizer, pinned.prompt, pinned.data)
    generator = TransformersGenerator(pinned_hub, None, pinned, encoder.stop_ids)
    assert generator.model.config.model_type == "qwen2"
    assert hub_revision(pinned_hub, pinned.model) == "pinned"
    assert hub_revision(str(qwen_instruct_dir), pinned.model) is None
