"""``gen-emotion export-model``: what is refused, and (slow) an exported generation run that loads with plain
transformers and with vLLM and predicts what the run predicted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SAMPLE_DIR

from gen_emotion.cli import main


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("publish") / "tfidf"
    assert main(["run", "recipes/tfidf-logreg.yaml", "--out", str(out)]) == 0
    return out


def one_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err, err


def test_refusals(tfidf_run, tmp_path, capsys, monkeypatch):
    one_error(capsys, ["export-model", str(tfidf_run), "--out", str(tmp_path / "m")], "scikit-learn pickle")
    one_error(capsys, ["export-model", str(tmp_path), "--out", str(tmp_path / "m")], "not a run folder")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    one_error(
        capsys,
        ["export-model", str(tfidf_run), "--out", str(tmp_path / "m"), "--push-to-hub", "me/model"],
        "needs a write token in HF_TOKEN",
    )
    assert not (tmp_path / "m").exists()
    one_error(capsys, ["export-model", str(tfidf_run), "--out", str(tmp_path / "m"), "--private"], "--push-to-hub")


def test_exported_mean_pooling_classifier_works_as_its_card_says(tmp_path, tiny_bert):
    from gen_emotion.classify import load_trained, predict_with
    from gen_emotion.runs import load_run_recipe

    run_dir, out = tmp_path / "run", tmp_path / "model"
    overrides = [f"model.name={tiny_bert}", "train.max_steps=2", "train.batch_size=8", "train.bf16=false"]
    assert main(["run", "recipes/minilm-l6-cpu.yaml", *overrides, "--out", str(run_dir)]) == 0
    assert main(["export-model", str(run_dir), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "emoji.demojize" in card  # the recipe names emojis before tokenizing
    code = card.split("```python\n")[1].split("```")[0].replace("PATH", str(out))
    scope: dict = {}
    exec(code, scope)  # the card's own snippet, with plain transformers
    recipe = load_run_recipe(run_dir)
    model, tokenizer = load_trained(run_dir / "model", recipe)
    expected = predict_with(model, tokenizer, ["I can not wait!"], recipe)
    assert scope["probs"].shape == (1, len(expected[0]))
    assert abs(scope["probs"].detach().numpy() - expected).max() < 1e-5


@pytest.mark.slow
def test_exported_generation_run_loads_and_predicts_what_the_run_did(tmp_path, qwen_instruct_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gen_emotion.generate import TransformersGenerator
    from gen_emotion.labels import is_canonical
    from gen_emotion.prompts import make_encoder
    from gen_emotion.runs import load_run_recipe
    from gen_emotion.vllm_backend import VLLMGenerator

    run_dir = tmp_path / "run"
    overrides = [f"model.name={qwen_instruct_dir}", "train.max_steps=2", "data.eval_rows=0", "generate.dtype=float32"]
    assert (
        main(["run", "recipes/smollm2-135m-cpu.yaml", *overrides, "--backend", "transformers", "--out", str(run_dir)])
        == 0
    )
    out = tmp_path / "model"
    assert main(["export-model", str(run_dir), "--out", str(out), "--merged"]) == 0
    card = (out / "README.md").read_text()
    assert "SemEval-2018 Task 1" in card and "structured_outputs" in card and "macro_f1" in card
    assert not (out / "training_args.bin").exists()
    description = json.loads((out / "gen_emotion.json").read_text())
    assert description["generation"]["repetition_penalty"] == 1.0
    recipe = load_run_recipe(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)  # the exported tokenizer, nothing of the run's folder
    encoder = make_encoder(tokenizer, recipe)
    assert AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32) is not None
    with (run_dir / "test_predictions.csv").open(newline="") as handle:
        expected = [row["output"] for row in csv.DictReader(handle)]
    texts = [row["Tweet"] for row in csv.DictReader((SAMPLE_DIR / "test.csv").open(newline=""))]
    prompts = [encoder.prompt_ids(text) for text in texts]
    generator = TransformersGenerator(str(out), None, recipe, encoder.stop_ids)
    assert generator.generate(prompts, desc=None) == expected
    generator.close()
    engine = VLLMGenerator(str(out), None, recipe, encoder.stop_ids)
    try:
        assert all(is_canonical(o) for o in engine.generate(prompts, desc=None))
    finally:
        engine.close()
